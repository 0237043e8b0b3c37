//! The two ends of a chat pair, each a task driving one link: the sender
//! keeps its window of messages in flight (at a paced rate or as fast as
//! receipts come back) and times SENT and DELIVERED; the recipient acks
//! what arrives and times it from the send time the text carries.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use im_client::{ContentType, ReceiptKind, SendMessage};
use im_proto::Body;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use crate::link::{retryable, BenchLink, LinkError, RESEND_AFTER};
use crate::stats::Latencies;

/// The schedule of one measurement, shared by every task.
#[derive(Debug)]
pub struct Clock {
    /// What send times in message texts count from.
    pub base: Instant,
    /// Sending starts.
    pub start: Instant,
    /// The measurement starts (after the warm-up).
    pub from: Instant,
    /// The measurement ends, and sending stops.
    pub to: Instant,
    /// After sending stops, senders give up waiting for receipts once
    /// none came for this long.
    pub drain_idle: std::time::Duration,
}

impl Clock {
    fn measured(&self, at: Instant) -> bool {
        at >= self.from && at < self.to
    }
}

/// What a sender is asked to do.
#[derive(Debug)]
pub struct SenderJob {
    /// The recipient's user id.
    pub peer: u64,
    /// Makes this run's client message ids unique: `{tag}-{n}`.
    pub tag: String,
    /// Messages in flight at most.
    pub in_flight: usize,
    /// Messages per second, or `None` to keep the window full.
    pub rate: Option<f64>,
    /// Where in its period (0 to 1) this sender's paced messages fall, so
    /// that senders spread their sends over the period instead of all
    /// sending at the same instant: the offered load is even, not bursts
    /// of one message from every sender at once.
    pub phase: f64,
    /// The schedule.
    pub clock: Arc<Clock>,
}

impl SenderJob {
    /// When paced message `n` is due: `start + (n + phase) / rate`.
    fn due_at(&self, n: u64, rate: f64) -> Instant {
        let secs = (n as f64 + self.phase) / rate;
        self.clock.start + std::time::Duration::from_secs_f64(secs)
    }

    /// How many messages are due by `now`: all of them when not paced.
    fn due_by(&self, now: Instant) -> u64 {
        let Some(rate) = self.rate else {
            return u64::MAX;
        };
        let periods = (now - self.clock.start).as_secs_f64() * rate - self.phase;
        if periods < 0.0 {
            0
        } else {
            periods as u64 + 1
        }
    }
}

/// What a sender did.
#[derive(Debug)]
pub struct SenderOut {
    /// The link, unless it failed.
    pub link: Option<BenchLink>,
    /// The recipient's user id.
    pub peer: u64,
    /// Messages sent.
    pub sent: u64,
    /// ... of which during the measurement.
    pub sent_in_window: u64,
    /// SENT receipts.
    pub sent_receipts: u64,
    /// DELIVERED receipts.
    pub delivered_receipts: u64,
    /// DELIVERED receipts that came during the measurement.
    pub delivered_in_window: u64,
    /// Messages still without DELIVERED at the end.
    pub unfinished: u64,
    /// Sends repeated after a "resend later" error.
    pub resent: u64,
    /// Send to SENT of measured messages.
    pub to_sent: Latencies,
    /// Send to DELIVERED of measured messages.
    pub to_delivered: Latencies,
    /// Why it stopped early, if it did.
    pub error: Option<String>,
}

/// A message waiting for its DELIVERED receipt.
struct InFlight {
    at: Instant,
    measured: bool,
}

/// Sends until `clock.to`, then waits for the receipts still owed (every
/// SENT and every DELIVERED), giving up once none came for
/// `clock.drain_idle`.
pub async fn send(link: BenchLink, job: SenderJob) -> SenderOut {
    let mut out = SenderOut {
        link: None,
        peer: job.peer,
        sent: 0,
        sent_in_window: 0,
        sent_receipts: 0,
        delivered_receipts: 0,
        delivered_in_window: 0,
        unfinished: 0,
        resent: 0,
        to_sent: Latencies::default(),
        to_delivered: Latencies::default(),
        error: None,
    };
    let mut link = link;
    let mut waiting = HashMap::new();
    let mut unsent = HashSet::new();
    match sender_loop(&mut link, &job, &mut out, &mut waiting, &mut unsent).await {
        Ok(()) => out.link = Some(link),
        Err(e) => out.error = Some(e.to_string()),
    }
    out.unfinished = waiting.len() as u64;
    out
}

async fn sender_loop(
    link: &mut BenchLink,
    job: &SenderJob,
    out: &mut SenderOut,
    waiting: &mut HashMap<u64, InFlight>,
    unsent: &mut HashSet<u64>,
) -> Result<(), LinkError> {
    let clock = &job.clock;
    let prefix = format!("{}-", job.tag);
    let mut frames = Vec::new();
    // Messages to send again (same id) after a "resend later", and when.
    let mut resend: VecDeque<(Instant, u64)> = VecDeque::new();
    let mut last_receipt = clock.to;
    sleep_until(clock.start).await;
    loop {
        let now = Instant::now();
        while resend.front().is_some_and(|(at, _)| *at <= now) && link.can_send() {
            let Some((_, n)) = resend.pop_front() else {
                break;
            };
            if let Some(m) = waiting.get(&n) {
                link.send(message(job, &prefix, n, m.at))?;
                out.resent += 1;
            }
        }
        let sending = now < clock.to;
        if sending {
            let due = job.due_by(now);
            while waiting.len() < job.in_flight && out.sent < due && link.can_send() {
                let at = Instant::now();
                let n = out.sent;
                link.send(message(job, &prefix, n, at))?;
                let measured = clock.measured(at);
                out.sent += 1;
                out.sent_in_window += u64::from(measured);
                waiting.insert(n, InFlight { at, measured });
                unsent.insert(n);
            }
        } else if (waiting.is_empty() && unsent.is_empty())
            || now >= last_receipt.max(clock.to) + clock.drain_idle
        {
            link.flush().await?;
            return Ok(());
        }
        link.flush().await?;
        let mut wake = if sending {
            match job.rate {
                Some(r) if waiting.len() < job.in_flight => job.due_at(out.sent, r),
                _ => clock.to,
            }
        } else {
            last_receipt.max(clock.to) + clock.drain_idle
        };
        for at in link
            .retransmit_at()
            .into_iter()
            // With the window full a due resend waits for an ack (which
            // recv brings), not for a timer that has already fired.
            .chain(resend.front().filter(|_| link.can_send()).map(|r| r.0))
        {
            wake = wake.min(at);
        }
        tokio::select! {
            got = link.recv(&mut frames) => {
                got?;
                let now = Instant::now();
                for frame in frames.drain(..) {
                    match frame.body {
                        Some(Body::Receipt(r)) => {
                            last_receipt = now;
                            on_receipt(r, &prefix, now, clock, out, waiting, unsent)
                        }
                        Some(Body::Error(e)) if retryable(&e) => {
                            if let Some(n) = number(&e.client_msg_id, &prefix) {
                                resend.push_back((now + RESEND_AFTER, n));
                            }
                        }
                        Some(Body::Error(e)) => {
                            return Err(LinkError::Protocol(format!("send refused: {e:?}")))
                        }
                        _ => {}
                    }
                }
            }
            _ = sleep_until(wake) => link.retransmit()?,
        }
    }
}

/// Message `n` of this sender, sent (first) at `at`.
fn message(job: &SenderJob, prefix: &str, n: u64, at: Instant) -> Body {
    let nanos = (at - job.clock.base).as_nanos();
    Body::Send(SendMessage {
        client_msg_id: format!("{prefix}{n}"),
        to_user: job.peer,
        content_type: ContentType::Text as i32,
        text: format!("{n}:{nanos}"),
        ..Default::default()
    })
}

/// The `n` of a client message id `{prefix}{n}`.
fn number(client_msg_id: &str, prefix: &str) -> Option<u64> {
    client_msg_id.strip_prefix(prefix)?.parse().ok()
}

fn on_receipt(
    r: im_client::Receipt,
    prefix: &str,
    now: Instant,
    clock: &Clock,
    out: &mut SenderOut,
    waiting: &mut HashMap<u64, InFlight>,
    unsent: &mut HashSet<u64>,
) {
    let Some(n) = number(&r.client_msg_id, prefix) else {
        return;
    };
    match ReceiptKind::try_from(r.kind) {
        // A SENT may come after the DELIVERED (in the cluster they travel
        // different ways), so the sender waits for both.
        Ok(ReceiptKind::Sent) => {
            unsent.remove(&n);
            out.sent_receipts += 1;
            if let Some(m) = waiting.get(&n).filter(|m| m.measured) {
                out.to_sent.record(now - m.at);
            }
        }
        Ok(ReceiptKind::Delivered) => {
            if let Some(m) = waiting.remove(&n) {
                out.delivered_receipts += 1;
                out.delivered_in_window += u64::from(clock.measured(now));
                if m.measured {
                    out.to_delivered.record(now - m.at);
                }
            }
        }
        _ => {}
    }
}

/// What a recipient keeps from run to run, and counts in one.
#[derive(Debug)]
pub struct ReceiverState {
    /// The sender's user id.
    pub peer: u64,
    /// The highest `seq` seen in the conversation.
    pub last_seq: u64,
    /// Messages from the peer this run.
    pub arrived: u64,
    /// Messages out of `seq` order or seen twice.
    pub out_of_order: u64,
    /// Send to arrival of measured messages.
    pub to_arrival: Latencies,
}

impl ReceiverState {
    /// Nothing received yet from `peer`.
    pub fn new(peer: u64) -> ReceiverState {
        ReceiverState {
            peer,
            last_seq: 0,
            arrived: 0,
            out_of_order: 0,
            to_arrival: Latencies::default(),
        }
    }

    /// The same conversation, counters cleared.
    pub fn next_round(self) -> ReceiverState {
        ReceiverState {
            last_seq: self.last_seq,
            ..ReceiverState::new(self.peer)
        }
    }
}

/// Acks and times what arrives until `stop`.
pub async fn receive(
    mut link: BenchLink,
    mut state: ReceiverState,
    clock: Arc<Clock>,
    stop: CancellationToken,
) -> (Option<BenchLink>, ReceiverState, Option<String>) {
    let mut frames = Vec::new();
    loop {
        if let Err(e) = link.flush().await {
            return (None, state, Some(e.to_string()));
        }
        tokio::select! {
            _ = stop.cancelled() => return (Some(link), state, None),
            got = link.recv(&mut frames) => {
                if let Err(e) = got {
                    return (None, state, Some(e.to_string()));
                }
                let now = Instant::now();
                for frame in frames.drain(..) {
                    if let Some(Body::Message(m)) = frame.body {
                        if m.from_user != state.peer {
                            continue;
                        }
                        state.arrived += 1;
                        if state.last_seq != 0 && m.seq != state.last_seq + 1 {
                            state.out_of_order += 1;
                        }
                        state.last_seq = state.last_seq.max(m.seq);
                        let sent_at = m
                            .text
                            .split_once(':')
                            .and_then(|(_, nanos)| nanos.parse::<u64>().ok())
                            .map(|nanos| clock.base + std::time::Duration::from_nanos(nanos));
                        if let Some(at) = sent_at.filter(|at| clock.measured(*at)) {
                            state.to_arrival.record(now - at);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn job(rate: f64, phase: f64) -> SenderJob {
        let start = Instant::now();
        SenderJob {
            peer: 2,
            tag: "t".into(),
            in_flight: 32,
            rate: Some(rate),
            phase,
            clock: Arc::new(Clock {
                base: start,
                start,
                from: start,
                to: start + Duration::from_secs(10),
                drain_idle: Duration::from_secs(1),
            }),
        }
    }

    #[test]
    fn paced_sends_fall_at_the_senders_phase() {
        // 2 msg/s: a period of 500 ms; half a period in, 250 ms.
        let job = job(2.0, 0.5);
        let start = job.clock.start;
        let ms = Duration::from_millis;
        assert_eq!(job.due_by(start), 0);
        assert_eq!(job.due_by(start + ms(249)), 0);
        assert_eq!(job.due_by(start + ms(251)), 1);
        assert_eq!(job.due_by(start + ms(751)), 2);
        assert_eq!(job.due_at(0, 2.0), start + ms(250));
        assert_eq!(job.due_at(2, 2.0), start + ms(1250));
    }

    #[test]
    fn senders_spread_over_the_period() {
        let (first, second) = (job(1.0, 0.0), job(1.0, 0.5));
        assert_eq!(first.due_at(0, 1.0), first.clock.start);
        let offset = second.due_at(0, 1.0) - second.clock.start;
        assert_eq!(offset, Duration::from_millis(500));
    }

    #[test]
    fn unpaced_senders_have_everything_due() {
        let mut job = job(1.0, 0.0);
        job.rate = None;
        assert_eq!(job.due_by(job.clock.start), u64::MAX);
    }
}
