//! `offline`: a user receives K messages while offline (sent by a few
//! friends at once, each message acknowledged SENT, so all are stored and
//! queued), then logs in.
//! Reports the time from connecting until every message is delivered
//! (`SyncDone`, which follows the catch-up), and checks that they came in
//! order, each once, marked offline.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context as _};
use im_client::{ChatMessage, ContentType, ReceiptKind, SendMessage};
use im_proto::Body;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::accounts::Accounts;
use crate::link::{retryable, BenchLink, Endpoint, RESEND_AFTER};
use crate::procfs::CpuMeter;
use crate::progress::Progress;
use crate::target::Target;

/// Socket buffer of the two links.
const BUFFER: usize = 64 * 1024;
/// Longest wait for the K sends to be stored.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(300);

/// How big an `offline` run is.
#[derive(Debug, Clone)]
pub struct OfflinePlan {
    /// Messages queued for the offline user.
    pub messages: usize,
    /// Friends of the user who send them, each its share in a
    /// conversation of its own, at once.
    pub senders: usize,
    /// Sends in flight (without SENT) per sender while queueing.
    pub in_flight: usize,
}

/// What `offline` measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OfflineResult {
    /// Messages queued.
    pub queued: usize,
    /// Friends who sent them.
    pub senders: usize,
    /// Seconds the sender took to get every SENT.
    pub queue_secs: f64,
    /// Messages in the catch-up.
    pub received: usize,
    /// `SyncDone.offline_count`: offline rows the login claimed.
    pub offline_count: u32,
    /// From connecting until `SyncDone`, ms.
    pub drain_ms: f64,
    /// Messages per second over that time.
    pub per_sec: f64,
    /// Each message once, in `seq` order and in the order sent.
    pub in_order: bool,
    /// Every message was marked offline.
    pub all_offline: bool,
    /// CPU of the server's processes during the drain, % of one core.
    pub server_cpu_percent: f64,
}

/// Runs `offline` against `target` with new users from `accounts`: the
/// recipient and its friends who send.
pub async fn run(
    target: &Target,
    accounts: &mut Accounts,
    plan: &OfflinePlan,
    progress: &Progress,
) -> anyhow::Result<OfflineResult> {
    let recipient = accounts.fresh("or").await?;
    let senders = plan.senders.clamp(1, plan.messages.max(1));
    let mut friends = Vec::new();
    for _ in 0..senders {
        let sender = accounts.fresh("os").await?;
        accounts.befriend(&sender, &recipient).await?;
        friends.push(sender);
    }
    let addrs = &target.link_addrs;
    let at = |i: usize| Endpoint {
        addr: addrs[i % addrs.len()],
        source: None,
    };
    progress.step(format!(
        "offline: queueing {} messages from {senders} friends",
        plan.messages
    ));
    let bar = progress.bar(plan.messages as u64, "queueing");
    let started = Instant::now();
    let queues = friends.iter().enumerate().map(|(i, sender)| {
        // Sender i sends messages i, i + senders, ...: its share.
        let share = (plan.messages + senders - 1 - i) / senders;
        let bar = &bar;
        async move {
            let (link, _) = BenchLink::connect(at(i), BUFFER, &sender.token, "offline").await?;
            let link = queue(link, recipient.id, share, plan.in_flight, bar).await?;
            link.close().await;
            anyhow::Ok(())
        }
    });
    tokio::time::timeout(QUEUE_TIMEOUT, futures::future::try_join_all(queues))
        .await
        .context("queueing the offline messages took too long")??;
    bar.finish_and_clear();
    let queue_secs = started.elapsed().as_secs_f64();

    progress.step(format!("offline: logging in to {} messages", plan.messages));
    let cpu = CpuMeter::start(&target.all_pids());
    let started = Instant::now();
    let (link, logged_in) =
        BenchLink::connect(at(senders), BUFFER, &recipient.token, "phone").await?;
    let drain = started.elapsed();
    let server_cpu_percent = cpu.percent();
    link.close().await;

    let messages: Vec<_> = logged_in
        .catch_up
        .into_iter()
        .filter_map(|f| match f.body {
            Some(Body::Message(m)) => Some(m),
            _ => None,
        })
        .collect();
    let in_order = messages.len() == plan.messages && in_order(&messages);
    Ok(OfflineResult {
        queued: plan.messages,
        senders,
        queue_secs,
        received: messages.len(),
        offline_count: logged_in.offline_count,
        drain_ms: drain.as_secs_f64() * 1e3,
        per_sec: messages.len() as f64 / drain.as_secs_f64().max(1e-9),
        in_order,
        all_offline: messages.iter().all(|m| m.offline),
        server_cpu_percent,
    })
}

/// True if, in each conversation, the messages came once each in `seq`
/// order (1, 2, 3, ...) and in the order their sender sent them.
fn in_order(messages: &[ChatMessage]) -> bool {
    let mut next: HashMap<&str, (u64, usize)> = HashMap::new();
    messages.iter().all(|m| {
        let (seq, n) = next.entry(m.conversation_id.as_str()).or_insert((m.seq, 0));
        let ok = m.seq == *seq && m.text == format!("offline {n}");
        *seq += 1;
        *n += 1;
        ok
    })
}

/// Sends `count` messages to `to`, at most `in_flight` without SENT, and
/// returns once every one has its SENT.
async fn queue(
    mut link: BenchLink,
    to: u64,
    count: usize,
    in_flight: usize,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<BenchLink> {
    let message = |n: usize| {
        Body::Send(SendMessage {
            client_msg_id: format!("o-{n}"),
            to_user: to,
            content_type: ContentType::Text as i32,
            text: format!("offline {n}"),
            ..Default::default()
        })
    };
    let (mut sent, mut stored) = (0usize, 0usize);
    let mut frames = Vec::new();
    // Sends to repeat (same id) after a "resend later", and when.
    let mut resend: Vec<(Instant, usize)> = Vec::new();
    while stored < count {
        let now = Instant::now();
        if link.can_send() {
            let due: Vec<usize> = resend.iter().filter(|r| r.0 <= now).map(|r| r.1).collect();
            resend.retain(|r| r.0 > now);
            for n in due {
                link.send(message(n))?;
            }
        }
        while sent < count && sent - stored < in_flight && link.can_send() {
            link.send(message(sent))?;
            sent += 1;
        }
        link.flush().await?;
        let wake = [link.retransmit_at(), resend.iter().map(|r| r.0).min()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| now + Duration::from_secs(1));
        tokio::select! {
            got = link.recv(&mut frames) => {
                got?;
                for frame in frames.drain(..) {
                    match frame.body {
                        Some(Body::Receipt(r)) if r.kind == ReceiptKind::Sent as i32 => {
                            stored += 1;
                            bar.inc(1);
                        }
                        Some(Body::Error(e)) if retryable(&e) => {
                            let n = e.client_msg_id.strip_prefix("o-").and_then(|n| n.parse().ok());
                            if let Some(n) = n {
                                resend.push((Instant::now() + RESEND_AFTER, n));
                            }
                        }
                        Some(Body::Error(e)) => bail!("send refused: {e:?}"),
                        _ => {}
                    }
                }
            }
            _ = tokio::time::sleep_until(wake) => link.retransmit()?,
        }
    }
    link.flush().await?;
    Ok(link)
}
