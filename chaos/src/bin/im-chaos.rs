//! `im-chaos soak`: chat traffic through the chaos proxy for a chosen time,
//! in rounds, against the single-node server or a whole cluster of real
//! processes, while the fault driver kills and restarts them. Prints a
//! summary table; exits 1 if any round lost, doubled or reordered a
//! message or got a receipt wrong.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use im_chaos::cluster::{kill_each, ClusterOptions, LocalCluster, ProcessKind, Tools};
use im_chaos::{chat_run, ChaosProxy, Faults, Report, RunConfig};

#[derive(Parser)]
#[command(
    name = "im-chaos",
    about = "Fault injection runs against the IM server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs chaos rounds for a chosen time and prints a summary table.
    Soak(SoakArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    /// One im-server process on SQLite.
    Single,
    /// Two transfers, two connectors, REST, worker, Redis, MariaDB, broker.
    Cluster,
}

#[derive(clap::Args)]
struct SoakArgs {
    /// How long to run, in minutes (no round starts after this).
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// What to run against.
    #[arg(long, value_enum, default_value = "cluster")]
    mode: Mode,
    /// The im-server binary (default: the one beside this program).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Seed of the whole soak (default: random; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Users per round.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(3..=200))]
    users: u64,
    /// Devices per user.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=4))]
    devices: u64,
    /// Messages each device sends per round.
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    sends: u64,
    /// Milliseconds a device waits between its sends (so a round's traffic
    /// outlasts its kills).
    #[arg(long, default_value_t = 700, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pace_ms: u64,
}

/// Sums over rounds.
#[derive(Default)]
struct Totals {
    rounds: usize,
    failed_rounds: usize,
    report: Report,
}

impl Totals {
    fn add(&mut self, r: &Report) {
        let t = &mut self.report;
        t.users += r.users;
        t.devices += r.devices;
        t.groups += r.groups;
        t.sent += r.sent;
        t.absences += r.absences;
        t.expected += r.expected;
        t.delivered += r.delivered;
        t.offline += r.offline;
        t.reads += r.reads;
        t.echoes += r.echoes;
        t.receipts_partial += r.receipts_partial;
        t.receipts += r.receipts;
        t.loss += r.loss;
        t.duplicates += r.duplicates;
        t.order += r.order;
        t.strays += r.strays;
        t.seq_clashes += r.seq_clashes;
        t.receipts_missing += r.receipts_missing;
        t.receipts_wrong += r.receipts_wrong;
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs (the fault driver's kills, say) only when RUST_LOG asks.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let Command::Soak(args) = cli.command;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("im-chaos: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(soak(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("im-chaos: {e}");
            ExitCode::from(2)
        }
    }
}

fn default_server_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("im-server")))
        .unwrap_or_else(|| PathBuf::from("im-server"))
}

fn round_config(args: &SoakArgs, seed: u64, round: usize) -> RunConfig {
    let users = args.users as usize;
    RunConfig {
        seed: seed.wrapping_add(round as u64),
        users,
        devices_per_user: args.devices as usize,
        groups: 3,
        sends_per_device: args.sends as usize,
        group_share: 0.3,
        read_share: 0.3,
        absences: users,
        away: Duration::from_secs(2),
        pace: Duration::from_millis(args.pace_ms),
        cuts: 4,
        cut_every: Duration::from_millis(1500),
        settle: Duration::from_secs(30),
        name_prefix: format!("r{round}u"),
    }
}

async fn soak(args: SoakArgs) -> std::io::Result<bool> {
    let seed = args.seed.unwrap_or_else(rand::random);
    println!("soak seed {seed} (rerun with --seed {seed})");
    let tools = Tools::with_server(args.server_bin.clone().unwrap_or_else(default_server_bin));
    let options = ClusterOptions::chaos(seed);
    let (mut cluster, kinds): (LocalCluster, &[ProcessKind]) = match args.mode {
        Mode::Single => (
            LocalCluster::single_node(&tools, &options).await?,
            &[ProcessKind::SingleNode],
        ),
        Mode::Cluster => (
            LocalCluster::start(&tools, &options).await?,
            &ProcessKind::CLUSTER,
        ),
    };
    let proxy: ChaosProxy = ChaosProxy::balance(
        cluster.link_addrs(),
        seed,
        Faults::headline(),
        Faults::headline(),
    )
    .await?;
    let http = cluster.http_url();
    let started = Instant::now();
    let until = Duration::from_secs_f64(args.minutes.max(0.0) * 60.0);
    let mut totals = Totals::default();
    while started.elapsed() < until || totals.rounds == 0 {
        let round = totals.rounds;
        let run = round_config(&args, seed, round);
        let round_seed = run.seed;
        let faults = async {
            let killed = kill_each(
                &mut cluster,
                kinds,
                round_seed,
                Duration::from_secs(2),
                Duration::from_millis(300),
            )
            .await;
            for internal in cluster.internal_proxies() {
                internal.cut_all();
            }
            if let Err(e) = killed {
                eprintln!("round {round}: fault driver: {e}");
            }
        };
        let result = tokio::select! {
            result = chat_run(&http, &proxy, &run, faults) => result,
            _ = stop_signal() => {
                // Dropping the cluster (below) kills what it started.
                eprintln!("round {round}: interrupted; stopping");
                totals.failed_rounds += 1;
                break;
            }
        };
        totals.rounds += 1;
        match result {
            Ok(report) => {
                let clean = report.clean();
                if !clean {
                    totals.failed_rounds += 1;
                }
                eprintln!(
                    "round {round} (seed {round_seed}) {:>5.0}s {}: {report:?}",
                    started.elapsed().as_secs_f64(),
                    if clean { "clean" } else { "FAILED" },
                );
                totals.add(&report);
            }
            Err(e) => {
                totals.failed_rounds += 1;
                eprintln!("round {round} (seed {round_seed}): the run itself failed: {e}");
            }
        }
    }
    print_table(&args, seed, started.elapsed(), &totals, &proxy, &cluster);
    Ok(totals.failed_rounds == 0)
}

fn print_table(
    args: &SoakArgs,
    seed: u64,
    took: Duration,
    totals: &Totals,
    proxy: &ChaosProxy,
    cluster: &LocalCluster,
) {
    let client = proxy.stats().snapshot();
    let mut internal = [0u64; 7];
    for p in cluster.internal_proxies() {
        for (sum, v) in internal.iter_mut().zip(p.stats().snapshot()) {
            *sum += v;
        }
    }
    let r = &totals.report;
    let mode = match args.mode {
        Mode::Single => "single node",
        Mode::Cluster => "cluster",
    };
    let secs = took.as_secs();
    let mut rows: Vec<(String, String)> = vec![
        ("mode".into(), mode.into()),
        ("seed".into(), seed.to_string()),
        (
            "duration".into(),
            format!("{}m {:02}s", secs / 60, secs % 60),
        ),
        (
            "rounds (failed)".into(),
            format!("{} ({})", totals.rounds, totals.failed_rounds),
        ),
        ("users".into(), r.users.to_string()),
        ("devices".into(), r.devices.to_string()),
        ("groups".into(), r.groups.to_string()),
        ("messages sent (SENT)".into(), r.sent.to_string()),
        (
            "deliveries owed / made (in catch-up)".into(),
            format!("{} / {} ({})", r.expected, r.delivered, r.offline),
        ),
        ("device absences".into(), r.absences.to_string()),
        (
            "reads / receipts".into(),
            format!("{} / {}", r.reads, r.receipts),
        ),
    ];
    let names = [
        "frames seen",
        "acks dropped",
        "other frames dropped",
        "frames duplicated",
        "frames reordered",
        "link cuts (all links)",
        "connections cut mid-frame",
    ];
    for (i, name) in names.iter().enumerate() {
        let value = if cluster.internal_proxies().is_empty() {
            client[i].to_string()
        } else {
            format!("{} client / {} internal", client[i], internal[i])
        };
        rows.push(((*name).into(), value));
    }
    for kind in ProcessKind::CLUSTER
        .iter()
        .chain([ProcessKind::SingleNode].iter())
    {
        if let Some(n) = cluster.kills().get(kind) {
            rows.push((format!("kills: {}", kind.name()), n.to_string()));
        }
    }
    for (name, n) in [
        ("loss", r.loss),
        ("duplicates", r.duplicates),
        ("order violations", r.order),
        ("strays", r.strays),
        ("seq clashes", r.seq_clashes),
        ("receipts missing", r.receipts_missing),
        ("receipts wrong", r.receipts_wrong),
    ] {
        rows.push((name.into(), n.to_string()));
    }
    let ok = totals.failed_rounds == 0;
    rows.push(("result".into(), if ok { "PASS" } else { "FAIL" }.into()));
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    println!("| {:width$} | value |", "soak");
    println!("|{}|---|", "-".repeat(width + 2));
    for (k, v) in rows {
        println!("| {k:width$} | {v} |");
    }
}

/// Ctrl-C or SIGTERM.
async fn stop_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
