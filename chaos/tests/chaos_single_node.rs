//! A chaos run on the single-node server: clients (reconnecting `Session`s)
//! reach it through the seeded chaos proxy, which drops 30% of acks and some
//! frames, duplicates, delays and reorders frames both ways, and cuts every
//! link several times. Users chat 1:1 and in a group; the checker then
//! demands, for every user: each message meant for them arrived exactly
//! once, in per-conversation seq order, and every send got its SENT.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use im_chaos::{ChaosProxy, Faults};
use im_client::{
    AckConfig, Event, LinkOptions, RestClient, Session, SessionEvent, SessionOptions, Target,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const USERS: usize = 4;
const SENDS_PER_USER: usize = 25;

fn faults() -> Faults {
    Faults {
        drop_ack: 0.3,
        drop_frame: 0.03,
        duplicate: 0.05,
        reorder: 0.05,
        delay: 0.05,
        max_delay: Duration::from_millis(20),
    }
}

fn seed() -> u64 {
    std::env::var("IM_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random)
}

/// One message as its sender recorded it (from its SENT receipt).
#[derive(Debug, Clone)]
struct Sent {
    msg_id: u64,
    conversation: String,
    seq: u64,
    recipients: Vec<usize>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_through_the_chaos_proxy_loses_doubles_and_reorders_nothing() {
    let seed = seed();
    println!("chaos seed {seed} (rerun with IM_CHAOS_SEED={seed})");
    let dir = tempfile::tempdir().unwrap();
    let mut config = im_server::Config::new(
        dir.path().to_path_buf(),
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    );
    // Retransmit soon and often: many acks never arrive.
    config.ack_timeout_ms = 100;
    config.max_retries = 40;
    let server = im_server::start(config).await.unwrap();
    let proxy = ChaosProxy::start(server.link_addr, seed, faults(), faults())
        .await
        .unwrap();

    // Users, all friends with each other, and one group of all of them.
    let mut rests = Vec::new();
    let mut ids = Vec::new();
    for i in 0..USERS {
        let rest = RestClient::new(&server.http_url()).unwrap();
        let name = format!("user{i}");
        rest.register(&name, "password-1").await.unwrap();
        let session = rest.login(&name, "password-1").await.unwrap();
        ids.push(session.user.id);
        rests.push(rest.with_token(&session.token));
    }
    for i in 0..USERS {
        for j in i + 1..USERS {
            let request = rests[i]
                .send_friend_request(&format!("user{j}"), "hi")
                .await
                .unwrap();
            rests[j].accept_friend_request(request.id).await.unwrap();
        }
    }
    let group = rests[0].create_group("all").await.unwrap().id;
    for rest in &rests[1..] {
        rest.join_group(group).await.unwrap();
    }

    let options = SessionOptions {
        link: LinkOptions {
            ack: AckConfig {
                capacity: 256,
                timeout: Duration::from_millis(100),
                max_backoff: Duration::from_millis(800),
                max_retries: 40,
            },
            ..LinkOptions::default()
        },
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(300),
        ..SessionOptions::default()
    };
    let mut sessions = Vec::new();
    let mut receivers = Vec::new();
    for rest in &rests {
        let addr = proxy.addr().to_string();
        let (session, events) =
            Session::connect(addr, rest.token().unwrap(), "phone", options.clone())
                .await
                .unwrap();
        sessions.push(session);
        receivers.push(events);
    }
    // Each user's received messages: (conversation, seq, msg_id).
    let mut collectors = Vec::new();
    for mut events in receivers {
        collectors.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(event) = events.recv().await {
                match event {
                    SessionEvent::Link(Event::Message(m)) => {
                        got.push((m.conversation_id, m.seq, m.msg_id))
                    }
                    SessionEvent::Link(Event::Closed { .. }) => break,
                    _ => {}
                }
            }
            got
        }));
    }

    // Everyone sends at once: to a random friend or to the group.
    let mut senders = Vec::new();
    for (me, session) in sessions.iter().enumerate() {
        let session = session.clone();
        let ids = ids.clone();
        let mut rng = StdRng::seed_from_u64(seed.wrapping_add(1000 + me as u64));
        senders.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            for k in 0..SENDS_PER_USER {
                let (target, recipients) = if rng.gen_bool(0.3) {
                    (
                        Target::Group(group),
                        (0..USERS).filter(|u| *u != me).collect(),
                    )
                } else {
                    let mut to = rng.gen_range(0..USERS - 1);
                    if to >= me {
                        to += 1;
                    }
                    (Target::User(ids[to]), vec![to])
                };
                let receipt = session
                    .send_text(target, format!("u{me} #{k}"))
                    .await
                    .unwrap();
                sent.push(Sent {
                    msg_id: receipt.msg_id,
                    conversation: receipt.conversation_id,
                    seq: receipt.seq,
                    recipients,
                });
            }
            sent
        }));
    }
    // Cut every link a few times while the traffic runs.
    let cutter = {
        let proxy = &proxy;
        async move {
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_millis(400)).await;
                proxy.cut_all();
            }
        }
    };
    let (sent, ()) = tokio::join!(
        async {
            let mut all = Vec::new();
            for s in senders {
                all.extend(
                    tokio::time::timeout(Duration::from_secs(120), s)
                        .await
                        .expect("sends finish")
                        .unwrap(),
                );
            }
            all
        },
        cutter
    );

    // Wait until every recipient should have everything, then close.
    let mut expected: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); USERS];
    for s in &sent {
        for r in &s.recipients {
            expected[*r].insert(s.msg_id);
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for session in &sessions {
        session.close().await;
    }
    let mut loss = 0;
    let mut duplicates = 0;
    let mut order = 0;
    for (u, collector) in collectors.into_iter().enumerate() {
        let got = collector.await.unwrap();
        let mut counts: HashMap<u64, usize> = HashMap::new();
        let mut last: BTreeMap<String, u64> = BTreeMap::new();
        for (conversation, seq, msg_id) in &got {
            *counts.entry(*msg_id).or_default() += 1;
            let prev = last.insert(conversation.clone(), *seq).unwrap_or(0);
            if *seq <= prev {
                order += 1;
            }
        }
        duplicates += counts.values().filter(|c| **c > 1).count();
        loss += expected[u]
            .iter()
            .filter(|m| !counts.contains_key(m))
            .count();
    }
    let [frames, acks, dropped, duplicated, reordered, cuts] = proxy.stats().snapshot();
    println!(
        "seed {seed}: {} messages sent; proxy saw {frames} frames: {acks} acks dropped, \
         {dropped} frames dropped, {duplicated} duplicated, {reordered} reordered, {cuts} cuts; \
         loss {loss}, duplicates {duplicates}, order {order}",
        sent.len()
    );
    assert_eq!(
        sent.len(),
        USERS * SENDS_PER_USER,
        "every send got its SENT"
    );
    let distinct: BTreeSet<(String, u64)> = sent
        .iter()
        .map(|s| (s.conversation.clone(), s.seq))
        .collect();
    assert_eq!(distinct.len(), sent.len(), "one seq per message");
    assert!(acks > 0 && cuts >= 4, "the proxy did its job");
    assert_eq!((loss, duplicates, order), (0, 0, 0), "seed {seed}");
    server.shutdown().await;
}
