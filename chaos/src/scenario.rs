//! The traffic driver and checker of a chaos run: users who are all friends
//! and share a group, each on a reconnecting `Session` through a link
//! address (the chaos proxy), send 1:1 and group messages at once while the
//! proxy cuts every link now and then; then every user's received messages
//! are checked against what was sent to them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use im_client::{
    AckConfig, ClientError, Event, LinkOptions, RestClient, Session, SessionEvent, SessionOptions,
    Target,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::ChaosProxy;

/// The size and timing of a run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Seeds the senders' choices (the proxy has its own seed).
    pub seed: u64,
    /// Users, each with one device.
    pub users: usize,
    /// Messages each user sends.
    pub sends_per_user: usize,
    /// Chance a send goes to the group rather than one friend.
    pub group_share: f64,
    /// Link cuts during the run, this far apart.
    pub cuts: u32,
    /// Time between cuts.
    pub cut_every: Duration,
    /// Names are prefixed with this (runs may share a server).
    pub name_prefix: String,
}

/// What a run saw.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Messages that got their SENT.
    pub sent: usize,
    /// Deliveries expected (one per recipient).
    pub expected: usize,
    /// Messages handed to the applications (a catch-up also brings a device
    /// its own messages from before, which are not "expected").
    pub delivered: usize,
    /// Expected deliveries that never came.
    pub loss: usize,
    /// Messages a user got more than once.
    pub duplicates: usize,
    /// Messages that came at or below the seq already seen in their
    /// conversation.
    pub order: usize,
    /// Two messages given the same (conversation, seq).
    pub seq_clashes: usize,
}

impl Report {
    /// True when nothing was lost, doubled or out of order.
    pub fn clean(&self) -> bool {
        self.loss == 0 && self.duplicates == 0 && self.order == 0 && self.seq_clashes == 0
    }
}

struct Sent {
    msg_id: u64,
    conversation: String,
    seq: u64,
    recipients: Vec<usize>,
}

/// Link options for a lossy network: retransmit soon and often.
pub fn lossy_link_options() -> SessionOptions {
    SessionOptions {
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
    }
}

/// Runs the chat traffic through `proxy` against the server whose REST API
/// is at `http`, and checks what arrived.
pub async fn chat_run(
    http: &str,
    proxy: &ChaosProxy,
    config: &RunConfig,
) -> Result<Report, ClientError> {
    let n = config.users;
    let mut rests = Vec::new();
    let mut ids = Vec::new();
    for i in 0..n {
        let rest = RestClient::new(http)?;
        let name = format!("{}{i}", config.name_prefix);
        rest.register(&name, "password-1").await?;
        let session = rest.login(&name, "password-1").await?;
        ids.push(session.user.id);
        rests.push(rest.with_token(&session.token));
    }
    for i in 0..n {
        for j in i + 1..n {
            let to = format!("{}{j}", config.name_prefix);
            let request = rests[i].send_friend_request(&to, "hi").await?;
            rests[j].accept_friend_request(request.id).await?;
        }
    }
    let group = rests[0].create_group("all").await?.id;
    for rest in &rests[1..] {
        rest.join_group(group).await?;
    }
    let link: SocketAddr = proxy.addr();
    let mut sessions = Vec::new();
    let mut collectors = Vec::new();
    for rest in &rests {
        let token = rest.token().unwrap_or_default();
        let (session, mut events) =
            Session::connect(link.to_string(), token, "phone", lossy_link_options()).await?;
        sessions.push(session);
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
    let mut senders = Vec::new();
    for (me, session) in sessions.iter().enumerate() {
        let (session, ids) = (session.clone(), ids.clone());
        let mut rng = StdRng::seed_from_u64(config.seed.wrapping_add(1000 + me as u64));
        let (sends, share) = (config.sends_per_user, config.group_share);
        senders.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            for k in 0..sends {
                let (target, recipients) = if rng.gen_bool(share) {
                    (Target::Group(group), (0..n).filter(|u| *u != me).collect())
                } else {
                    let mut to = rng.gen_range(0..n - 1);
                    if to >= me {
                        to += 1;
                    }
                    (Target::User(ids[to]), vec![to])
                };
                let receipt = session.send_text(target, format!("u{me} #{k}")).await?;
                sent.push(Sent {
                    msg_id: receipt.msg_id,
                    conversation: receipt.conversation_id,
                    seq: receipt.seq,
                    recipients,
                });
            }
            Ok::<_, ClientError>(sent)
        }));
    }
    let cutter = async {
        for _ in 0..config.cuts {
            tokio::time::sleep(config.cut_every).await;
            proxy.cut_all();
        }
    };
    let (sent, ()) = tokio::join!(
        async {
            let mut all = Vec::new();
            for s in senders {
                match s.await {
                    Ok(Ok(sent)) => all.extend(sent),
                    Ok(Err(e)) => return Err(e),
                    Err(e) => return Err(ClientError::Protocol(format!("sender panicked: {e}"))),
                }
            }
            Ok(all)
        },
        cutter
    );
    let sent = sent?;
    let mut expected: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); n];
    for s in &sent {
        for r in &s.recipients {
            expected[*r].insert(s.msg_id);
        }
    }
    // Give the last deliveries (and their retransmissions) time to land.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for session in &sessions {
        session.close().await;
    }
    let mut report = Report {
        sent: sent.len(),
        expected: expected.iter().map(BTreeSet::len).sum(),
        ..Report::default()
    };
    let distinct: BTreeSet<(&str, u64)> = sent
        .iter()
        .map(|s| (s.conversation.as_str(), s.seq))
        .collect();
    report.seq_clashes = sent.len() - distinct.len();
    for (u, collector) in collectors.into_iter().enumerate() {
        let got = collector.await.unwrap_or_default();
        report.delivered += got.len();
        let mut counts: HashMap<u64, usize> = HashMap::new();
        let mut last: BTreeMap<String, u64> = BTreeMap::new();
        for (conversation, seq, msg_id) in &got {
            *counts.entry(*msg_id).or_default() += 1;
            if *seq <= last.insert(conversation.clone(), *seq).unwrap_or(0) {
                report.order += 1;
            }
        }
        report.duplicates += counts.values().filter(|c| **c > 1).count();
        report.loss += expected[u]
            .iter()
            .filter(|m| !counts.contains_key(m))
            .count();
    }
    Ok(report)
}
