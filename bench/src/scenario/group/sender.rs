//! The sending member of a `group` run.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use im_client::{ContentType, ReceiptKind, SendMessage};
use im_proto::{Body, Frame};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep, Instant};
use tokio_util::sync::CancellationToken;

use super::MEMBER_BUFFER;
use crate::link::{retryable, BenchLink, Endpoint, LinkError};

/// What the sender did besides sending.
#[derive(Debug, Default)]
pub(super) struct SenderReport {
    /// Times the server closed the sender's link, and the first reason.
    pub(super) closed: u32,
    pub(super) first_close: Option<String>,
    /// Sends repeated: after a reconnect, or a "resend later".
    pub(super) resent: u64,
}

/// The sending member: on each command sends that many messages at once
/// and answers with the instant they went out; acks and counts the
/// DELIVERED receipts that come back (each message and member once). Like
/// any client, when the server closes its link it logs in again and
/// resends what had no SENT yet (same client ids).
pub(super) async fn sender(
    login: (Endpoint, String),
    mut link: BenchLink,
    group: u64,
    mut commands: mpsc::Receiver<(usize, oneshot::Sender<Instant>)>,
    receipts: Arc<AtomicU64>,
    stop: CancellationToken,
) -> SenderReport {
    let mut report = SenderReport::default();
    let prefix = format!("g{group}-");
    let message = |n: u64| {
        Body::Send(SendMessage {
            client_msg_id: format!("{prefix}{n}"),
            to_group: group,
            content_type: ContentType::Text as i32,
            text: format!("group message {n}"),
            ..Default::default()
        })
    };
    let mut unsent: BTreeSet<u64> = BTreeSet::new();
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut resend: Vec<u64> = Vec::new();
    let mut n = 0u64;
    let mut frames = Vec::new();
    loop {
        let step: Result<bool, LinkError> = async {
            for m in resend.drain(..) {
                link.send(message(m))?;
                report.resent += 1;
            }
            link.flush().await?;
            let retransmit_at = link.retransmit_at();
            tokio::select! {
                _ = stop.cancelled() => return Ok(false),
                Some((count, reply)) = commands.recv() => {
                    let at = Instant::now();
                    for _ in 0..count {
                        link.send(message(n))?;
                        unsent.insert(n);
                        n += 1;
                    }
                    link.flush().await?;
                    let _ = reply.send(at);
                }
                got = link.recv(&mut frames) => {
                    got?;
                    let new = take_receipts(&mut frames, &prefix, &mut unsent, &mut seen, &mut resend);
                    receipts.fetch_add(new, Ordering::Relaxed);
                }
                _ = sleep_until_some(retransmit_at) => link.retransmit()?,
            }
            Ok(true)
        }
        .await;
        match step {
            Ok(true) => {}
            Ok(false) => {
                link.close().await;
                return report;
            }
            Err(e) => {
                report.closed += 1;
                report.first_close.get_or_insert(e.to_string());
                // Log in again; the catch-up brings the receipts not acked.
                let (again, logged_in) = loop {
                    if stop.is_cancelled() {
                        return report;
                    }
                    match BenchLink::connect(login.0, MEMBER_BUFFER, &login.1, "group").await {
                        Ok(ok) => break ok,
                        Err(_) => sleep(Duration::from_millis(100)).await,
                    }
                };
                link = again;
                let mut catch_up = logged_in.catch_up;
                let new =
                    take_receipts(&mut catch_up, &prefix, &mut unsent, &mut seen, &mut resend);
                receipts.fetch_add(new, Ordering::Relaxed);
                resend = unsent.iter().copied().collect();
            }
        }
    }
}

/// Takes the sender's receipts out of `frames`: SENT ends a send's wait,
/// a retryable error asks for a resend, and each DELIVERED (message,
/// member) not seen before counts. Returns how many new DELIVERED.
fn take_receipts(
    frames: &mut Vec<Frame>,
    prefix: &str,
    unsent: &mut BTreeSet<u64>,
    seen: &mut HashSet<(u64, u64)>,
    resend: &mut Vec<u64>,
) -> u64 {
    let number = |id: &str| id.strip_prefix(prefix).and_then(|n| n.parse::<u64>().ok());
    let mut new = 0;
    for frame in frames.drain(..) {
        match frame.body {
            Some(Body::Receipt(r)) if r.kind == ReceiptKind::Sent as i32 => {
                if let Some(n) = number(&r.client_msg_id) {
                    unsent.remove(&n);
                }
            }
            Some(Body::Receipt(r)) if r.kind == ReceiptKind::Delivered as i32 => {
                new += u64::from(seen.insert((r.msg_id, r.by_user)));
            }
            Some(Body::Error(e)) if retryable(&e) => {
                resend.extend(number(&e.client_msg_id));
            }
            _ => {}
        }
    }
    new
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
