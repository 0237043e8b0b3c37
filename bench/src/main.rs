//! `im-bench`: runs the benchmark scenarios against the single-node server
//! and/or a local cluster, prints the markdown tables and writes them, with
//! every number as JSON, to the output directory. Exits 1 if a scenario
//! failed or a check (everything delivered, in order) did not hold.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use im_bench::plan::Plan;
use im_bench::progress::Progress;
use im_bench::report::{Machine, ModeReport, Report};
use im_bench::scenario::Scenario;
use im_bench::target::{own_fd_limit, Mode, Target};
use im_bench::{procfs, run_mode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Modes {
    /// The single-node server.
    Single,
    /// The local cluster.
    Cluster,
    /// The single node, then the cluster.
    Both,
}

/// Load generator and benchmarks of the IM server.
#[derive(Debug, Parser)]
#[command(name = "im-bench", version, about)]
struct Cli {
    /// Scenarios to run (default: all, in this order).
    #[arg(value_enum)]
    scenarios: Vec<Scenario>,
    /// The targets' scales (200,000 links, 1,000 pairs, groups up to
    /// 10,000, 10,000 offline messages) instead of the quick size.
    #[arg(long)]
    full: bool,
    /// What to run against.
    #[arg(long, value_enum, default_value = "both")]
    mode: Modes,
    /// Where report.md and report.json go.
    #[arg(long, default_value = "bench-report")]
    out: PathBuf,
    /// The im-server binary (default: the one beside this program, else
    /// target/release/im-server).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// RUST_LOG of the server's processes.
    #[arg(long, env = "IM_BENCH_SERVER_LOG", default_value = "warn")]
    server_log: String,
    /// Links for `connections`.
    #[arg(long)]
    links: Option<usize>,
    /// Pairs for `chat`.
    #[arg(long)]
    pairs: Option<usize>,
    /// Seconds of each `chat` measurement.
    #[arg(long)]
    seconds: Option<f64>,
    /// The fixed rate of `chat`'s second load, messages/s (default: half
    /// of what saturation delivered).
    #[arg(long)]
    rate: Option<f64>,
    /// Repetitions of each `chat` load.
    #[arg(long)]
    reps: Option<usize>,
    /// Group sizes for `group` (comma-separated).
    #[arg(long, value_delimiter = ',')]
    group_sizes: Option<Vec<usize>>,
    /// Messages in `group`'s burst after the first one (they go out at
    /// once, so at most what the link's send window holds besides the
    /// first: 255).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=255))]
    group_burst: Option<u16>,
    /// Queued messages for `offline`.
    #[arg(long)]
    offline_messages: Option<usize>,
    /// No progress on stderr.
    #[arg(long)]
    quiet: bool,
    /// Internal: run as a load process holding the links of this spec.
    #[arg(long, hide = true)]
    hold_links: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.mode != Modes::Single && std::env::var_os("RUST_LOG").is_none() {
        // The cluster's processes inherit it; set before any thread starts.
        std::env::set_var("RUST_LOG", &cli.server_log);
    }
    // A load process runs on one thread: there are as many of them as the
    // links need, and with a thread pool in each, waking one another's
    // threads was an eighth of their CPU while links were opened.
    let runtime = if cli.hold_links.is_some() {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(procfs::cores().clamp(1, 4))
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("im-bench: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(spec) = &cli.hold_links {
        return match runtime.block_on(im_bench::scenario::hold::load_process_main(spec)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("im-bench load process: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match runtime.block_on(run_until_signal(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("im-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn plan(cli: &Cli) -> Plan {
    let exe = std::env::current_exe().ok();
    let mut plan = if cli.full {
        Plan::full(exe)
    } else {
        Plan::quick(exe)
    };
    if !cli.scenarios.is_empty() {
        let mut chosen = cli.scenarios.clone();
        chosen.sort();
        chosen.dedup();
        plan.scenarios = chosen;
    }
    if let Some(links) = cli.links {
        plan.connections.links = links.max(1);
    }
    if let Some(pairs) = cli.pairs {
        plan.chat.pairs = pairs.max(1);
    }
    if let Some(secs) = cli.seconds {
        plan.chat.measure = std::time::Duration::from_secs_f64(secs.max(0.1));
    }
    if let Some(rate) = cli.rate {
        plan.chat.rate = Some(rate.max(1.0));
    }
    if let Some(reps) = cli.reps {
        plan.chat.reps = reps.max(1);
    }
    if let Some(sizes) = &cli.group_sizes {
        plan.group.sizes = sizes.clone();
    }
    if let Some(burst) = cli.group_burst {
        plan.group.burst = usize::from(burst);
    }
    if let Some(k) = cli.offline_messages {
        plan.offline.messages = k.max(1);
    }
    plan
}

fn server_bin(cli: &Cli) -> PathBuf {
    if let Some(bin) = &cli.server_bin {
        return bin.clone();
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("im-server")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("target/release/im-server"))
}

/// Runs [`run`] until it ends or this process gets SIGINT or SIGTERM. On a
/// signal the run is dropped, and with it the servers and load processes
/// it started: their handles kill them when dropped. (Without this, a
/// SIGTERM ended this process at once and left its server running.)
async fn run_until_signal(cli: Cli) -> anyhow::Result<bool> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        result = run(cli) => result,
        _ = interrupt.recv() => anyhow::bail!("interrupted (SIGINT); the servers it started are stopped"),
        _ = terminate.recv() => anyhow::bail!("terminated (SIGTERM); the servers it started are stopped"),
    }
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    let plan = plan(&cli);
    let server_bin = server_bin(&cli);
    if !server_bin.exists() {
        anyhow::bail!(
            "no server binary at {} (cargo build --release -p im-server, or --server-bin)",
            server_bin.display()
        );
    }
    let progress = Progress::stderr(cli.quiet);
    let modes = match cli.mode {
        Modes::Single => vec![Mode::Single],
        Modes::Cluster => vec![Mode::Cluster],
        Modes::Both => vec![Mode::Single, Mode::Cluster],
    };
    let started = Instant::now();
    let mut report = Report {
        size: plan.size.clone(),
        started_at_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        machine: Machine {
            cores: procfs::cores(),
            open_files_limit: own_fd_limit(),
        },
        ..Report::default()
    };
    for mode in modes {
        let progress = progress.with_prefix(mode.name());
        progress.step("starting the server");
        let setup = Instant::now();
        let target = match mode {
            Mode::Single => Target::single(&server_bin, &cli.server_log).await,
            Mode::Cluster => Target::cluster(&server_bin, plan.cluster_connectors()).await,
        };
        let target = match target {
            Ok(target) => target,
            Err(e) => {
                progress.step(format!("server did not start: {e:#}"));
                let mut failed = ModeReport::new(mode);
                failed.errors.push(format!("starting the server: {e:#}"));
                report.modes.push(failed);
                continue;
            }
        };
        let setup_secs = setup.elapsed().as_secs_f64();
        let mut result = run_mode(&target, &plan, &progress).await;
        result.setup_secs = setup_secs;
        if !result.problems().is_empty() {
            if let Some(dir) = target.log_dir() {
                let kept = cli.out.join(format!("logs-{}", mode.name()));
                match copy_logs(&dir, &kept) {
                    Ok(()) => progress.step(format!("server logs kept in {}", kept.display())),
                    Err(e) => progress.step(format!("keeping the server logs failed: {e}")),
                }
            }
        }
        progress.step("stopping the server");
        target.stop().await;
        report.modes.push(result);
    }
    report.total_secs = started.elapsed().as_secs_f64();
    let (md, json) = report.write(&cli.out)?;
    println!("{}", report.markdown());
    eprintln!("im-bench: wrote {} and {}", md.display(), json.display());
    Ok(report.problems().is_empty())
}

/// Copies the `*.log` files of `from` into `to`.
fn copy_logs(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "log") {
            if let Some(name) = path.file_name() {
                std::fs::copy(&path, to.join(name))?;
            }
        }
    }
    Ok(())
}
