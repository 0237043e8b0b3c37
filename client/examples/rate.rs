//! Message rate through a running server or cluster: registers `pairs` pairs
//! of friends, connects every user (through the load balancer, if given
//! one), and has one side of each pair send `messages` texts to the other,
//! all pairs at once. Prints how long until every message had its SENT and
//! until every one had reached its recipient, as messages per second.
//!
//!   cargo run --release -p im-client --example rate -- \
//!       --http http://127.0.0.1:7080 --link 127.0.0.1:7000 --pairs 20 --messages 200
//!
//! A first measuring tool for the cluster; issue 5's load generator is the
//! full benchmark.

use std::time::{Duration, Instant};

use clap::Parser;
use futures::future::join_all;
use im_client::{Event, Link, LinkOptions, RestClient, Target};

#[derive(Parser)]
struct Args {
    /// REST base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    http: String,
    /// Client link address.
    #[arg(long, default_value = "127.0.0.1:9000")]
    link: String,
    /// Sender/recipient pairs, all sending at once.
    #[arg(long, default_value_t = 10)]
    pairs: usize,
    /// Messages each sender sends.
    #[arg(long, default_value_t = 100)]
    messages: usize,
    /// Messages a sender keeps in flight (waiting for SENT).
    #[arg(long, default_value_t = 32)]
    in_flight: usize,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
}

async fn user(http: &str, name: &str) -> anyhow::Result<(RestClient, u64)> {
    let rest = RestClient::new(http)?;
    rest.register(name, "rate-password").await?;
    let session = rest.login(name, "rate-password").await?;
    Ok((rest.with_token(&session.token), session.user.id))
}

async fn connect(
    link: &str,
    rest: &RestClient,
) -> anyhow::Result<(Link, tokio::sync::mpsc::Receiver<Event>)> {
    let token = rest.token().unwrap_or_default();
    let (link, mut events) = Link::connect(link, token, "rate", LinkOptions::default()).await?;
    while let Some(e) = events.recv().await {
        if matches!(e, Event::SyncDone { .. }) {
            break;
        }
    }
    Ok((link, events))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut pairs = Vec::new();
    for i in 0..args.pairs {
        let (a, _) = user(&args.http, &format!("rate-{}-{i}-a", &run[..8])).await?;
        let (b, b_id) = user(&args.http, &format!("rate-{}-{i}-b", &run[..8])).await?;
        let request = a
            .send_friend_request(&format!("rate-{}-{i}-b", &run[..8]), "rate")
            .await?;
        b.accept_friend_request(request.id).await?;
        let (a_link, _a_events) = connect(&args.link, &a).await?;
        let (b_link, b_events) = connect(&args.link, &b).await?;
        pairs.push((a_link, _a_events, b_link, b_events, b_id));
    }
    let total = args.pairs * args.messages;
    println!(
        "{} pairs connected; sending {total} messages ({} per sender, {} in flight each)",
        args.pairs, args.messages, args.in_flight
    );
    let start = Instant::now();
    let deadline = Duration::from_secs(args.timeout_secs);
    let runs = pairs
        .into_iter()
        .map(|(a_link, a_events, b_link, mut b_events, b_id)| {
            let (messages, in_flight) = (args.messages, args.in_flight.max(1));
            async move {
                let receive = async {
                    let mut got = 0;
                    while got < messages {
                        match b_events.recv().await {
                            Some(Event::Message(_)) => got += 1,
                            Some(Event::Closed { message, .. }) => {
                                anyhow::bail!("recipient link closed: {message}")
                            }
                            None => anyhow::bail!("recipient link gone"),
                            _ => {}
                        }
                    }
                    Ok(start.elapsed())
                };
                let send = async {
                    for chunk in (0..messages).collect::<Vec<_>>().chunks(in_flight) {
                        let sends = chunk
                            .iter()
                            .map(|i| a_link.send_text(Target::User(b_id), format!("rate {i}")));
                        for sent in join_all(sends).await {
                            sent?;
                        }
                    }
                    anyhow::Ok(start.elapsed())
                };
                let (sent, received) = tokio::try_join!(send, receive)?;
                drop(a_events);
                a_link.close().await;
                b_link.close().await;
                anyhow::Ok((sent, received))
            }
        });
    let results = tokio::time::timeout(deadline, join_all(runs)).await?;
    let mut sent_all = Duration::ZERO;
    let mut received_all = Duration::ZERO;
    for r in results {
        let (s, r) = r?;
        sent_all = sent_all.max(s);
        received_all = received_all.max(r);
    }
    let rate = |d: Duration| total as f64 / d.as_secs_f64();
    println!(
        "all SENT after {:.2} s: {:.0} msg/s",
        sent_all.as_secs_f64(),
        rate(sent_all)
    );
    println!(
        "all delivered after {:.2} s: {:.0} msg/s",
        received_all.as_secs_f64(),
        rate(received_all)
    );
    Ok(())
}
