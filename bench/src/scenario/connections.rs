//! `connections`: open N authenticated links and hold them with
//! heartbeats. Reports the login rate (first logins of new devices, then
//! logins again of the same devices), the resident memory each idle link
//! costs the processes holding links, and their CPU while the links idle.
//!
//! Links are spread over every connector, over several 127.0.0.x source
//! addresses, and over load processes of `per_process` links at most.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::accounts::Accounts;
use crate::link::source_addr;
use crate::procfs::{self, CpuMeter};
use crate::progress::Progress;
use crate::scenario::hold::{self, HeldLinks, LinkSpec, LoadProcesses, Opened};
use crate::target::Target;

/// How big a `connections` run is.
#[derive(Debug, Clone)]
pub struct ConnectionsPlan {
    /// Links to open.
    pub links: usize,
    /// How long to watch the idle links' CPU.
    pub idle: Duration,
    /// Logins in flight at once, per process.
    pub concurrency: usize,
    /// Most links one process of the generator holds.
    pub per_process: usize,
    /// Source addresses (127.0.0.2 and up) to spread links over.
    pub sources: usize,
    /// The generator binary: links are held in load processes started from
    /// it (`per_process` links each), so their memory and CPU are measured
    /// apart; `None` keeps every link in this process.
    pub load_exe: Option<PathBuf>,
}

/// One round of logins.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoginRound {
    /// Links logged in.
    pub opened: u64,
    /// Links that failed.
    pub failed: u64,
    /// Seconds from the first connect to the last `SyncDone`.
    pub secs: f64,
    /// Logins per second.
    pub per_sec: f64,
    /// One of the errors, if any.
    pub first_error: Option<String>,
    /// CPU of the server's processes meanwhile, % of one core.
    pub server_cpu_percent: f64,
    /// CPU of the generator's processes meanwhile, % of one core.
    pub generator_cpu_percent: f64,
}

/// What `connections` measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConnectionsResult {
    /// Links asked for.
    pub requested: usize,
    /// Links tried (fewer if the server cannot hold as many).
    pub attempted: usize,
    /// Why fewer were tried, if they were.
    pub capped_by: Option<String>,
    /// Distinct users the links log in as.
    pub users: usize,
    /// Connectors the links are spread over.
    pub connectors: usize,
    /// Source addresses the links are spread over.
    pub source_addrs: usize,
    /// Generator processes that held links (1 = just this one).
    pub load_processes: usize,
    /// First logins (each device new to the server).
    pub first_login: LoginRound,
    /// Logins again of the same devices, after all were closed.
    pub relogin: LoginRound,
    /// Resident memory of the link-holding processes before, KiB.
    pub rss_before_kib: u64,
    /// ... and with every link open and idle, KiB.
    pub rss_after_kib: u64,
    /// (after - before) / links, KiB.
    pub rss_per_link_kib: f64,
    /// Seconds the idle CPU was watched.
    pub idle_secs: f64,
    /// CPU of the link-holding processes while idle, % of one core.
    pub idle_cpu_percent: f64,
    /// CPU of all the server's processes while idle, % of one core.
    pub idle_server_cpu_percent: f64,
    /// Links that dropped while held.
    pub dropped: u64,
    /// The generator's resident memory per link held, KiB.
    pub generator_rss_per_link_kib: f64,
}

/// Where the links of one round are held.
enum Held {
    Here(HeldLinks),
    Elsewhere(LoadProcesses),
}

impl Held {
    fn pids(&self) -> Vec<u32> {
        match self {
            Held::Here(_) => vec![std::process::id()],
            Held::Elsewhere(p) => p.pids(),
        }
    }

    async fn close(self) -> anyhow::Result<u64> {
        match self {
            Held::Here(links) => Ok(links.close().await),
            Held::Elsewhere(p) => p.close().await,
        }
    }
}

/// Users the scenario needs at least, for `links` links (one user may be
/// logged in on up to 20 devices).
pub fn users_needed(links: usize) -> usize {
    links.div_ceil(20).max(1)
}

/// Runs `connections` against `target` with users from `accounts`.
pub async fn run(
    target: &Target,
    accounts: &mut Accounts,
    plan: &ConnectionsPlan,
    progress: &Progress,
) -> anyhow::Result<ConnectionsResult> {
    let capacity = target.link_capacity();
    let attempted = plan.links.min(capacity);
    let capped_by = (attempted < plan.links).then(|| {
        format!(
            "{} connector(s) x {} links (the open-files limit of a process)",
            target.link_addrs.len(),
            target.links_per_connector
        )
    });
    accounts.ensure(users_needed(attempted), progress).await?;
    let users = accounts.users().len().min(attempted);
    let addrs = &target.link_addrs;
    let specs: Vec<LinkSpec> = (0..attempted)
        .map(|i| {
            let account = &accounts.users()[i % users];
            LinkSpec {
                token: account.token.clone(),
                device: format!("c{}", i / users),
                addr: addrs[i % addrs.len()],
                source: source_addr(i / addrs.len(), plan.sources),
            }
        })
        .collect();
    let link_pids = target.link_pids();
    let mut result = ConnectionsResult {
        requested: plan.links,
        attempted,
        capped_by,
        users,
        connectors: addrs.len(),
        source_addrs: plan.sources.clamp(1, 250).min(attempted.max(1)),
        ..ConnectionsResult::default()
    };

    settle(&target.all_pids()).await;
    result.rss_before_kib = procfs::total_rss_kib(&link_pids);
    let generator_before = procfs::total_rss_kib(&[std::process::id()]);
    progress.step(format!(
        "connections: opening {attempted} links (new devices)"
    ));
    let (first, held) = open(target, &specs, plan, progress, "first logins").await?;
    result.first_login = first;
    result.load_processes = match &held {
        Held::Here(_) => 1,
        Held::Elsewhere(p) => p.len(),
    };

    // Let the logins' work finish, then watch the links idle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    result.rss_after_kib = procfs::total_rss_kib(&link_pids);
    let opened = result.first_login.opened.max(1);
    result.rss_per_link_kib =
        result.rss_after_kib.saturating_sub(result.rss_before_kib) as f64 / opened as f64;
    let generator_rss = match &held {
        Held::Here(_) => procfs::total_rss_kib(&held.pids()).saturating_sub(generator_before),
        Held::Elsewhere(_) => procfs::total_rss_kib(&held.pids()),
    };
    result.generator_rss_per_link_kib = generator_rss as f64 / opened as f64;
    progress.step(format!(
        "connections: {} open; watching them idle for {:?}",
        result.first_login.opened, plan.idle
    ));
    let idle_links = CpuMeter::start(&link_pids);
    let idle_all = CpuMeter::start(&target.all_pids());
    tokio::time::sleep(plan.idle).await;
    result.idle_cpu_percent = idle_links.percent();
    result.idle_server_cpu_percent = idle_all.percent();
    result.idle_secs = plan.idle.as_secs_f64();
    result.dropped = held.close().await?;

    // The same devices again, now known to the server.
    settle(&target.all_pids()).await;
    progress.step(format!(
        "connections: opening {attempted} links again (known devices)"
    ));
    let (again, held) = open(target, &specs, plan, progress, "logins again").await?;
    result.relogin = again;
    result.dropped += held.close().await?;
    settle(&target.all_pids()).await;
    Ok(result)
}

/// Opens `specs` here or in load processes and measures the round.
async fn open(
    target: &Target,
    specs: &[LinkSpec],
    plan: &ConnectionsPlan,
    progress: &Progress,
    what: &str,
) -> anyhow::Result<(LoginRound, Held)> {
    let bar = progress.bar(specs.len() as u64, what);
    let server_cpu = CpuMeter::start(&target.all_pids());
    let here = std::process::id();
    let (opened, held, generator_cpu): (Opened, Held, f64) = match &plan.load_exe {
        // Links in processes of their own, even when one would do, so
        // their memory and CPU are the generator's alone.
        Some(exe) => {
            // The load processes are not born yet: count their CPU from
            // the totals they report at the end.
            let mine = CpuMeter::start(&[here]);
            let (opened, processes) = LoadProcesses::open(
                exe,
                specs.to_vec(),
                plan.per_process,
                plan.concurrency,
                &bar,
            )
            .await?;
            let children = children_cpu_percent(&processes.pids(), opened.secs);
            (
                opened,
                Held::Elsewhere(processes),
                mine.percent() + children,
            )
        }
        None => {
            let mine = CpuMeter::start(&[here]);
            let (opened, links) = hold::open_and_hold(specs.to_vec(), plan.concurrency, &bar).await;
            (opened, Held::Here(links), mine.percent())
        }
    };
    bar.finish_and_clear();
    let round = LoginRound {
        opened: opened.opened,
        failed: opened.failed,
        secs: opened.secs,
        per_sec: opened.opened as f64 / opened.secs.max(1e-9),
        first_error: opened.first_error,
        server_cpu_percent: server_cpu.percent(),
        generator_cpu_percent: generator_cpu,
    };
    Ok((round, held))
}

/// CPU the load processes used in their life so far, as % of one core
/// over `secs`.
fn children_cpu_percent(pids: &[u32], secs: f64) -> f64 {
    let ticks: u64 = pids
        .iter()
        .filter_map(|p| procfs::sample(*p))
        .map(|s| s.cpu_ticks)
        .sum();
    100.0 * ticks as f64 / procfs::clock_ticks() as f64 / secs.max(1e-3)
}

/// Waits (up to 30 s) until the server's processes are quiet: below 30%
/// of a core over half a second, plus 10% for each process past the first
/// (a cluster's broker and worker poll even when idle), so one round's
/// aftermath does not count in the next.
pub async fn settle(pids: &[u32]) {
    let quiet = 30.0 + 10.0 * pids.len().saturating_sub(1) as f64;
    for _ in 0..60 {
        let meter = CpuMeter::start(pids);
        tokio::time::sleep(Duration::from_millis(500)).await;
        if meter.percent() < quiet {
            return;
        }
    }
}
