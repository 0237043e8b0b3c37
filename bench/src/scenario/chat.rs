//! `chat`: P pairs of friends; in each pair one user sends 1:1 text
//! messages to the other, keeping up to `in_flight` of them in flight (sent,
//! and its DELIVERED receipt not back yet). The recipient acks what
//! arrives, which is what makes the server store and send the DELIVERED
//! receipt. Measured at saturation (every sender keeps its window full)
//! and at a fixed offered rate (half of what saturation delivered), each
//! a few times, the report giving the medians.
//!
//! Every message carries its send time, so the recipient can tell the
//! send-to-arrival latency; the sender times SENT and DELIVERED.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::accounts::Accounts;
use crate::link::{BenchLink, Endpoint};
use crate::procfs::CpuMeter;
use crate::progress::Progress;
use crate::scenario::connect_all;
use crate::scenario::pair::{receive, send, Clock, ReceiverState, SenderJob, SenderOut};
use crate::stats::{median, Latencies, Percentiles};
use crate::target::Target;

/// Socket buffer of a busy link.
const BUSY_BUFFER: usize = 64 * 1024;

/// How big a `chat` run is.
#[derive(Debug, Clone)]
pub struct ChatPlan {
    /// Sender/recipient pairs.
    pub pairs: usize,
    /// Messages each sender keeps in flight.
    pub in_flight: usize,
    /// Sending before the measurement starts.
    pub warmup: Duration,
    /// The measurement.
    pub measure: Duration,
    /// Repetitions of each load (the report gives medians).
    pub reps: usize,
    /// After sending stops, how long senders wait for the receipts still
    /// owed once none come any more.
    pub drain: Duration,
    /// The fixed offered rate, messages/s in all; `None`: half of what
    /// saturation delivered. A set rate compares two builds at one load.
    pub rate: Option<f64>,
}

/// One measurement.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChatRun {
    /// The offered rate, messages/s in all; `None` at saturation.
    pub offered_per_sec: Option<f64>,
    /// Messages sent during the measurement, per second.
    pub sent_per_sec: f64,
    /// DELIVERED receipts back at the senders during the measurement, per
    /// second: messages that made the whole trip.
    pub delivered_per_sec: f64,
    /// Messages sent in the whole run (warm-up and drain included).
    pub sent: u64,
    /// SENT receipts the senders got.
    pub sent_receipts: u64,
    /// Messages the recipients got.
    pub arrived: u64,
    /// DELIVERED receipts the senders got.
    pub delivered_receipts: u64,
    /// Messages a recipient got out of `seq` order or twice.
    pub out_of_order: u64,
    /// Sends repeated after a "resend later" error from the server.
    pub resent: u64,
    /// True when every message sent arrived once and got SENT and DELIVERED.
    pub complete: bool,
    /// Send to SENT, for messages sent during the measurement.
    pub to_sent: Percentiles,
    /// Send to arrival at the recipient.
    pub to_arrival: Percentiles,
    /// Send to DELIVERED back at the sender.
    pub to_delivered: Percentiles,
    /// CPU of the server's processes during the measurement, % of one core.
    pub server_cpu_percent: f64,
    /// CPU of the generator during the measurement, % of one core.
    pub generator_cpu_percent: f64,
    /// One of the errors, if any.
    pub error: Option<String>,
}

/// Repetitions of one load and their medians.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChatLoad {
    /// The median of each number over the runs; `complete` if all were.
    pub median: ChatRun,
    /// Every run.
    pub runs: Vec<ChatRun>,
}

impl ChatLoad {
    fn of(runs: Vec<ChatRun>) -> ChatLoad {
        let m = |f: fn(&ChatRun) -> f64| median(runs.iter().map(f));
        let c = |f: fn(&ChatRun) -> u64| median(runs.iter().map(|r| f(r) as f64)) as u64;
        let p = |f: fn(&ChatRun) -> Percentiles| {
            Percentiles::median_of(&runs.iter().map(f).collect::<Vec<_>>())
        };
        let median = ChatRun {
            offered_per_sec: runs.first().and_then(|r| r.offered_per_sec),
            sent_per_sec: m(|r| r.sent_per_sec),
            delivered_per_sec: m(|r| r.delivered_per_sec),
            sent: c(|r| r.sent),
            sent_receipts: c(|r| r.sent_receipts),
            arrived: c(|r| r.arrived),
            delivered_receipts: c(|r| r.delivered_receipts),
            out_of_order: runs.iter().map(|r| r.out_of_order).sum(),
            resent: runs.iter().map(|r| r.resent).sum(),
            complete: !runs.is_empty() && runs.iter().all(|r| r.complete),
            to_sent: p(|r| r.to_sent),
            to_arrival: p(|r| r.to_arrival),
            to_delivered: p(|r| r.to_delivered),
            server_cpu_percent: m(|r| r.server_cpu_percent),
            generator_cpu_percent: m(|r| r.generator_cpu_percent),
            error: runs.iter().find_map(|r| r.error.clone()),
        };
        ChatLoad { median, runs }
    }
}

/// What `chat` measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChatResult {
    /// Pairs.
    pub pairs: usize,
    /// Messages in flight per sender.
    pub in_flight: usize,
    /// Seconds each measurement lasted.
    pub measure_secs: f64,
    /// Every sender keeping its window full.
    pub saturation: ChatLoad,
    /// Half the saturation rate, offered evenly.
    pub half_rate: ChatLoad,
}

/// The links of the pairs, handed from run to run.
struct Pairs {
    senders: Vec<(BenchLink, u64)>,
    receivers: Vec<(BenchLink, ReceiverState)>,
}

/// Runs `chat` against `target` with users from `accounts`.
pub async fn run(
    target: &Target,
    accounts: &mut Accounts,
    plan: &ChatPlan,
    progress: &Progress,
) -> anyhow::Result<ChatResult> {
    accounts.befriend_pairs(plan.pairs, progress).await?;
    let users = &accounts.users()[..2 * plan.pairs];
    let addrs = &target.link_addrs;
    // Senders on connector i, recipients on the same one for even pairs
    // and the next one for odd pairs: half the traffic crosses.
    let logins: Vec<(Endpoint, String)> = (0..2 * plan.pairs)
        .map(|u| {
            let pair = u / 2;
            let at = if u % 2 == 0 { pair } else { pair + pair % 2 };
            let endpoint = Endpoint {
                addr: addrs[at % addrs.len()],
                source: None,
            };
            (endpoint, users[u].token.clone())
        })
        .collect();
    progress.step(format!("chat: connecting {} pairs", plan.pairs));
    let links = connect_all(&logins, BUSY_BUFFER, "chat", progress).await?;
    let mut pairs = Pairs {
        senders: Vec::new(),
        receivers: Vec::new(),
    };
    for (u, link) in links.into_iter().enumerate() {
        if u % 2 == 0 {
            pairs.senders.push((link, users[u + 1].id));
        } else {
            pairs
                .receivers
                .push((link, ReceiverState::new(users[u - 1].id)));
        }
    }

    let mut result = ChatResult {
        pairs: plan.pairs,
        in_flight: plan.in_flight,
        measure_secs: plan.measure.as_secs_f64(),
        ..ChatResult::default()
    };
    let mut round = 0;
    let mut saturated = Vec::new();
    for rep in 0..plan.reps {
        progress.step(format!(
            "chat: saturation, run {} of {}",
            rep + 1,
            plan.reps
        ));
        let run = measure(target, &mut pairs, plan, None, round).await?;
        round += 1;
        saturated.push(run);
    }
    result.saturation = ChatLoad::of(saturated);
    let half = plan
        .rate
        .unwrap_or(result.saturation.median.delivered_per_sec / 2.0);
    let mut fixed = Vec::new();
    for rep in 0..plan.reps {
        progress.step(format!(
            "chat: {half:.0} msg/s offered, run {} of {}",
            rep + 1,
            plan.reps
        ));
        let run = measure(target, &mut pairs, plan, Some(half.max(1.0)), round).await?;
        round += 1;
        fixed.push(run);
    }
    result.half_rate = ChatLoad::of(fixed);
    for (link, _) in pairs.senders.into_iter() {
        link.close().await;
    }
    for (link, _) in pairs.receivers.into_iter() {
        link.close().await;
    }
    Ok(result)
}

/// One measurement: every pair's sender and recipient in a task of its
/// own, sending from a common start for warm-up plus measurement, then
/// draining; the links are handed back for the next one.
async fn measure(
    target: &Target,
    pairs: &mut Pairs,
    plan: &ChatPlan,
    offered: Option<f64>,
    round: usize,
) -> anyhow::Result<ChatRun> {
    let base = Instant::now();
    let start = base + Duration::from_millis(50);
    let clock = Arc::new(Clock {
        base,
        start,
        from: start + plan.warmup,
        to: start + plan.warmup + plan.measure,
        drain_idle: plan.drain,
    });
    let per_sender = offered.map(|rate| rate / pairs.senders.len().max(1) as f64);
    let stop = CancellationToken::new();
    let mut receivers = JoinSet::new();
    for (i, (link, state)) in pairs.receivers.drain(..).enumerate() {
        let (clock, stop) = (clock.clone(), stop.clone());
        receivers.spawn(async move { (i, receive(link, state, clock, stop).await) });
    }
    let mut senders = JoinSet::new();
    let senders_n = pairs.senders.len().max(1) as f64;
    for (i, (link, peer)) in pairs.senders.drain(..).enumerate() {
        let job = SenderJob {
            peer,
            tag: format!("r{round}"),
            in_flight: plan.in_flight,
            rate: per_sender,
            phase: i as f64 / senders_n,
            clock: clock.clone(),
        };
        senders.spawn(async move { (i, send(link, job).await) });
    }

    tokio::time::sleep_until(clock.from).await;
    let server = CpuMeter::start(&target.all_pids());
    let generator = CpuMeter::start(&[std::process::id()]);
    tokio::time::sleep_until(clock.to).await;
    let mut run = ChatRun {
        offered_per_sec: offered,
        server_cpu_percent: server.percent(),
        generator_cpu_percent: generator.percent(),
        ..ChatRun::default()
    };

    let mut outs: Vec<Option<SenderOut>> = (0..senders.len()).map(|_| None).collect();
    while let Some(joined) = senders.join_next().await {
        let (i, out) = joined.context("sender task")?;
        outs[i] = Some(out);
    }
    stop.cancel();
    let mut states: Vec<Option<(BenchLink, ReceiverState)>> =
        (0..receivers.len()).map(|_| None).collect();
    let mut to_arrival = Latencies::default();
    while let Some(joined) = receivers.join_next().await {
        let (i, (link, state, error)) = joined.context("receiver task")?;
        to_arrival.merge(&state.to_arrival);
        run.arrived += state.arrived;
        run.out_of_order += state.out_of_order;
        if let Some(e) = error {
            run.error.get_or_insert(format!("recipient: {e}"));
        }
        states[i] = link.map(|l| (l, state.next_round()));
    }

    let (mut to_sent, mut to_delivered) = (Latencies::default(), Latencies::default());
    let (mut sent_in_window, mut delivered_in_window, mut unfinished) = (0, 0, 0);
    for (i, out) in outs.into_iter().enumerate() {
        let out = out.context("a sender did not report")?;
        to_sent.merge(&out.to_sent);
        to_delivered.merge(&out.to_delivered);
        run.sent += out.sent;
        run.sent_receipts += out.sent_receipts;
        run.delivered_receipts += out.delivered_receipts;
        sent_in_window += out.sent_in_window;
        delivered_in_window += out.delivered_in_window;
        unfinished += out.unfinished;
        run.resent += out.resent;
        if let Some(e) = out.error {
            run.error.get_or_insert(format!("sender: {e}"));
        }
        let receiver = states[i].take();
        match (out.link, receiver) {
            (Some(link), Some(receiver)) => {
                pairs.senders.push((link, out.peer));
                pairs.receivers.push(receiver);
            }
            _ => anyhow::bail!(
                "pair {i} lost a link: {}",
                run.error.clone().unwrap_or_default()
            ),
        }
    }
    let secs = plan.measure.as_secs_f64();
    run.sent_per_sec = sent_in_window as f64 / secs;
    run.delivered_per_sec = delivered_in_window as f64 / secs;
    run.to_sent = to_sent.summary();
    run.to_arrival = to_arrival.summary();
    run.to_delivered = to_delivered.summary();
    run.complete = unfinished == 0
        && run.error.is_none()
        && run.out_of_order == 0
        && run.sent == run.sent_receipts
        && run.sent == run.arrived
        && run.sent == run.delivered_receipts;
    Ok(run)
}
