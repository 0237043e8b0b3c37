//! `group`: a group of G members, every one online on one link. One member
//! sends one message to the group, then a burst of a few more; every other
//! member's link times the arrivals. Reports deliveries per second and the
//! time until the last member has the message (or the whole burst), and
//! when the sender has every DELIVERED receipt back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use im_proto::Body;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::{sleep, Instant};
use tokio_util::sync::CancellationToken;

use crate::accounts::Accounts;
use crate::link::{BenchLink, Endpoint};
use crate::procfs::CpuMeter;
use crate::progress::Progress;
use crate::scenario::connect_all;
use crate::target::Target;

mod sender;

use sender::sender;

/// Socket buffer of a member's link.
const MEMBER_BUFFER: usize = 4 * 1024;
/// How often the coordinator looks at the members' counts.
const POLL: Duration = Duration::from_millis(2);

/// How big a `group` run is.
#[derive(Debug, Clone)]
pub struct GroupPlan {
    /// Group sizes, each run in turn.
    pub sizes: Vec<usize>,
    /// Messages in the burst after the first one.
    pub burst: usize,
    /// Longest wait for a round to reach every member.
    pub timeout: Duration,
}

/// One fan-out round: some messages sent at once to the group.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FanoutRound {
    /// Messages sent.
    pub messages: usize,
    /// Deliveries owed: messages x other members.
    pub expected: u64,
    /// Deliveries that happened.
    pub deliveries: u64,
    /// From the send until the median member had every message, ms.
    pub median_member_ms: f64,
    /// ... until the last arrival of the round, ms: when the round is
    /// complete, until the last member had every message.
    pub last_member_ms: f64,
    /// Deliveries per second over that time.
    pub deliveries_per_sec: f64,
    /// ... until the sender had every DELIVERED receipt, ms (if it did).
    pub receipts_ms: Option<f64>,
    /// CPU of the server's processes meanwhile, % of one core.
    pub server_cpu_percent: f64,
    /// True if every member got every message.
    pub complete: bool,
}

/// What `group` measured for one group size.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroupResult {
    /// Members, the sender included.
    pub members: usize,
    /// Seconds to log every member in.
    pub connect_secs: f64,
    /// One message.
    pub one: FanoutRound,
    /// The burst.
    pub burst: FanoutRound,
    /// Times the server closed the sender's link (it logged in again and
    /// resent what had no SENT).
    pub sender_closed: u32,
    /// Why, the first time.
    pub sender_close_reason: Option<String>,
    /// Sends the sender repeated.
    pub resent: u64,
    /// Why something went wrong, if it did.
    pub error: Option<String>,
}

/// Runs `group` for every size of the plan.
pub async fn run(
    target: &Target,
    accounts: &mut Accounts,
    plan: &GroupPlan,
    progress: &Progress,
) -> anyhow::Result<Vec<GroupResult>> {
    let mut results = Vec::new();
    for &size in &plan.sizes {
        let size = size.max(2);
        let group = accounts.group(size, progress).await?;
        progress.step(format!("group: {size} members"));
        results.push(run_size(target, accounts, plan, size, group, progress).await?);
    }
    Ok(results)
}

/// A member's arrivals: one instant per message, in order.
type Arrivals = Vec<Instant>;

async fn run_size(
    target: &Target,
    accounts: &Accounts,
    plan: &GroupPlan,
    size: usize,
    group: u64,
    progress: &Progress,
) -> anyhow::Result<GroupResult> {
    let addrs = &target.link_addrs;
    let logins: Vec<(Endpoint, String)> = accounts.users()[..size]
        .iter()
        .enumerate()
        .map(|(i, account)| {
            let endpoint = Endpoint {
                addr: addrs[i % addrs.len()],
                source: None,
            };
            (endpoint, account.token.clone())
        })
        .collect();
    let started = Instant::now();
    let mut links = connect_all(&logins, MEMBER_BUFFER, "group", progress).await?;
    let mut result = GroupResult {
        members: size,
        connect_secs: started.elapsed().as_secs_f64(),
        ..GroupResult::default()
    };
    let sender_link = links.remove(0);
    let sender_login = logins[0].clone();
    let total = 1 + plan.burst;
    let stop = CancellationToken::new();
    // Whatever happens below, the sender and members stop with this run.
    let _stop_on_return = stop.clone().drop_guard();
    // How many members have 1, and have all, of the messages.
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let mut members = JoinSet::new();
    for link in links {
        let (stop, counts) = (stop.clone(), counts.clone());
        members.spawn(member(link, group, total, counts, stop));
    }
    let receipts = Arc::new(AtomicU64::new(0));
    let (commands, command_rx) = mpsc::channel(4);
    let sender = tokio::spawn(sender(
        sender_login,
        sender_link,
        group,
        command_rx,
        receipts.clone(),
        stop.clone(),
    ));
    let others = (size - 1) as u64;

    let send = async |count: usize| -> anyhow::Result<Instant> {
        let (reply, at) = oneshot::channel();
        commands
            .send((count, reply))
            .await
            .context("group sender gone")?;
        at.await.context("group sender gone")
    };
    let wait = async |slot: usize, receipts_owed: u64, sent_at: Instant| -> Option<f64> {
        let deadline = sent_at + plan.timeout;
        while counts[slot].load(Ordering::Relaxed) < others && Instant::now() < deadline {
            sleep(POLL).await;
        }
        while receipts.load(Ordering::Relaxed) < receipts_owed && Instant::now() < deadline {
            sleep(POLL).await;
        }
        (receipts.load(Ordering::Relaxed) >= receipts_owed)
            .then(|| sent_at.elapsed().as_secs_f64() * 1e3)
    };

    let cpu = CpuMeter::start(&target.all_pids());
    let one_at = send(1).await?;
    let one_receipts = wait(0, others, one_at).await;
    let one_cpu = cpu.percent();
    let cpu = CpuMeter::start(&target.all_pids());
    let burst_at = send(plan.burst).await?;
    let burst_receipts = wait(1, others * total as u64, burst_at).await;
    let burst_cpu = cpu.percent();

    stop.cancel();
    let mut arrivals: Vec<Arrivals> = Vec::new();
    while let Some(joined) = members.join_next().await {
        let (got, error) = joined.context("member task")?;
        if let Some(e) = error {
            result.error.get_or_insert(format!("member: {e}"));
        }
        arrivals.push(got);
    }
    let sent = sender.await.context("sender task")?;
    result.sender_closed = sent.closed;
    result.sender_close_reason = sent.first_close;
    result.resent = sent.resent;
    result.one = round(&arrivals, 0..1, one_at, others);
    result.one.receipts_ms = one_receipts;
    result.one.server_cpu_percent = one_cpu;
    result.burst = round(&arrivals, 1..total, burst_at, others);
    result.burst.receipts_ms = burst_receipts;
    result.burst.server_cpu_percent = burst_cpu;
    Ok(result)
}

/// The round of messages `range` (indexes into each member's arrivals),
/// sent at `sent_at` to `others` members. Its time is that of the last
/// arrival of the round: when every member has every message, the time
/// until the last member had them.
fn round(
    arrivals: &[Arrivals],
    range: std::ops::Range<usize>,
    sent_at: Instant,
    others: u64,
) -> FanoutRound {
    let messages = range.len();
    let since = |at: &Instant| (*at - sent_at).as_secs_f64() * 1e3;
    let deliveries: u64 = arrivals
        .iter()
        .map(|a| a.len().min(range.end).saturating_sub(range.start) as u64)
        .sum();
    let last = arrivals
        .iter()
        .filter_map(|a| {
            a.get(range.start..a.len().min(range.end))?
                .last()
                .map(since)
        })
        .fold(0.0, f64::max);
    let mut done: Vec<f64> = arrivals
        .iter()
        .filter(|a| a.len() >= range.end)
        .map(|a| since(&a[range.end - 1]))
        .collect();
    done.sort_by(f64::total_cmp);
    FanoutRound {
        messages,
        expected: messages as u64 * others,
        deliveries,
        median_member_ms: done.get(done.len() / 2).copied().unwrap_or(0.0),
        last_member_ms: last,
        deliveries_per_sec: if last > 0.0 {
            deliveries as f64 / (last / 1e3)
        } else {
            0.0
        },
        receipts_ms: None,
        server_cpu_percent: 0.0,
        complete: done.len() as u64 == others,
    }
}

/// One member: acks and timestamps the group's messages until it has
/// `total` or is stopped.
async fn member(
    mut link: BenchLink,
    group: u64,
    total: usize,
    counts: Arc<[AtomicU64; 2]>,
    stop: CancellationToken,
) -> (Arrivals, Option<String>) {
    let mut arrivals = Vec::with_capacity(total);
    let mut frames = Vec::new();
    loop {
        if let Err(e) = link.flush().await {
            return (arrivals, Some(e.to_string()));
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            got = link.recv(&mut frames) => {
                if let Err(e) = got {
                    return (arrivals, Some(e.to_string()));
                }
                let now = Instant::now();
                let before = arrivals.len();
                for frame in frames.drain(..) {
                    if matches!(&frame.body, Some(Body::Message(m)) if m.to_group == group) {
                        arrivals.push(now);
                    }
                }
                if before == 0 && !arrivals.is_empty() {
                    counts[0].fetch_add(1, Ordering::Relaxed);
                }
                if before < total && arrivals.len() >= total {
                    counts[1].fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    link.close().await;
    (arrivals, None)
}
