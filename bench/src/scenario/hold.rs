//! Opening many links and holding them with heartbeats, in this process
//! or spread over load processes (this binary run again with
//! `--hold-links SPEC`), since one process may hold only so many sockets.
//!
//! A load process reads its links from the spec file, says `ready` on
//! stdout, opens them when it reads `go` on stdin, prints how that went
//! (one JSON line), holds them until it reads `close`, then prints how many
//! dropped meanwhile and exits.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::link::{BenchLink, Endpoint};

/// Socket buffer to start an idle link with: it carries acks and pongs.
const IDLE_BUFFER: usize = 256;

/// One link to open: who logs in, as which device, where, from where.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkSpec {
    /// Login token.
    pub token: String,
    /// Device id.
    pub device: String,
    /// Connector address.
    pub addr: SocketAddr,
    /// Local address to connect from.
    pub source: Option<IpAddr>,
}

/// What a load process is asked to do.
#[derive(Debug, Serialize, Deserialize)]
pub struct HoldSpec {
    /// The links.
    pub links: Vec<LinkSpec>,
    /// Logins in progress at once.
    pub concurrency: usize,
}

/// How opening a batch of links went.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Opened {
    /// Links logged in (up to `SyncDone`).
    pub opened: u64,
    /// Links that failed to open or log in.
    pub failed: u64,
    /// From the start until the last one was done, seconds.
    pub secs: f64,
    /// One of the errors, if any.
    pub first_error: Option<String>,
}

/// Links held in this process.
pub struct HeldLinks {
    stop: CancellationToken,
    tasks: JoinSet<()>,
    dropped: Arc<AtomicU64>,
}

impl HeldLinks {
    /// Links that closed while held.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Closes every link; returns how many had dropped before.
    pub async fn close(mut self) -> u64 {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
        self.dropped()
    }
}

/// Opens `specs` with at most `concurrency` logins in flight, each link
/// then held with heartbeats (at the interval its `LoginOk` asks for) in a
/// task of its own. Returns once every link is open or failed.
pub async fn open_and_hold(
    specs: Vec<LinkSpec>,
    concurrency: usize,
    bar: &ProgressBar,
) -> (Opened, HeldLinks) {
    let started = Instant::now();
    let total = specs.len();
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let stop = CancellationToken::new();
    let dropped = Arc::new(AtomicU64::new(0));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Result<(), String>>();
    let mut tasks = JoinSet::new();
    for (i, spec) in specs.into_iter().enumerate() {
        let (gate, stop, dropped, done) =
            (gate.clone(), stop.clone(), dropped.clone(), done_tx.clone());
        tasks.spawn(async move {
            let endpoint = Endpoint {
                addr: spec.addr,
                source: spec.source,
            };
            let permit = gate.acquire_owned().await;
            let opened = BenchLink::connect(endpoint, IDLE_BUFFER, &spec.token, &spec.device).await;
            drop(permit);
            match opened {
                Ok((link, logged_in)) => {
                    let _ = done.send(Ok(()));
                    let every =
                        Duration::from_millis(logged_in.login_ok.heartbeat_interval_ms.into());
                    if !hold(link, every, i, stop).await {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    let _ = done.send(Err(e.to_string()));
                }
            }
        });
    }
    drop(done_tx);
    let mut result = Opened::default();
    while let Some(done) = done_rx.recv().await {
        match done {
            Ok(()) => result.opened += 1,
            Err(e) => {
                result.failed += 1;
                result.first_error.get_or_insert(e);
            }
        }
        bar.inc(1);
        if (result.opened + result.failed) as usize == total {
            break;
        }
    }
    result.secs = started.elapsed().as_secs_f64();
    let held = HeldLinks {
        stop,
        tasks,
        dropped,
    };
    (result, held)
}

/// Holds one link until `stop`: acks what comes, pings every `every`
/// (the first at a point spread by `i`, so heartbeats do not come in
/// waves; `recv` would ping on its own a heartbeat after the last write).
/// False if the link dropped first.
async fn hold(mut link: BenchLink, every: Duration, i: usize, stop: CancellationToken) -> bool {
    let every = every.max(Duration::from_millis(100));
    let offset = every.mul_f64((i.wrapping_mul(7_919) % 1_000) as f64 / 1_000.0);
    let mut next_ping = Instant::now() + offset;
    let mut frames = Vec::new();
    loop {
        if link.flush().await.is_err() {
            return false;
        }
        tokio::select! {
            _ = stop.cancelled() => return true,
            got = link.recv(&mut frames) => {
                if got.is_err() {
                    return false;
                }
                frames.clear();
            }
            _ = tokio::time::sleep_until(next_ping) => {
                next_ping += every;
                if link.ping().is_err() {
                    return false;
                }
            }
        }
    }
}

/// Links held by load processes.
pub struct LoadProcesses {
    children: Vec<LoadProcess>,
    _dir: tempfile::TempDir,
}

struct LoadProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl LoadProcess {
    async fn line(&mut self) -> anyhow::Result<String> {
        self.stdout
            .next_line()
            .await?
            .context("load process ended early")
    }

    async fn say(&mut self, word: &str) -> anyhow::Result<()> {
        self.stdin.write_all(format!("{word}\n").as_bytes()).await?;
        Ok(self.stdin.flush().await?)
    }
}

impl LoadProcesses {
    /// Starts one load process (`exe --hold-links SPEC`) per chunk of
    /// `specs`, waits until each is ready, then starts them all at once
    /// and waits until every link is open or failed.
    pub async fn open(
        exe: &Path,
        specs: Vec<LinkSpec>,
        per_process: usize,
        concurrency: usize,
        bar: &ProgressBar,
    ) -> anyhow::Result<(Opened, LoadProcesses)> {
        let dir = tempfile::Builder::new()
            .prefix("im-bench-load-")
            .tempdir()?;
        let mut children = Vec::new();
        // As few processes as hold them all, but one per core at least (a
        // load process runs on one thread: 5,000 links in one process were
        // bound by its core), with the links spread evenly: 15,000 and
        // 4,000 left the first process opening links alone for most of the
        // round.
        let processes = specs
            .len()
            .div_ceil(per_process.max(1))
            .max(crate::procfs::cores())
            .clamp(1, specs.len().max(1));
        let chunk = specs.len().div_ceil(processes).max(1);
        for (i, chunk) in specs.chunks(chunk).enumerate() {
            let path: PathBuf = dir.path().join(format!("links-{i}.json"));
            let spec = HoldSpec {
                links: chunk.to_vec(),
                concurrency,
            };
            std::fs::write(&path, serde_json::to_vec(&spec)?)?;
            let mut child = Command::new(exe)
                .arg("--hold-links")
                .arg(&path)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting load process {}", exe.display()))?;
            let stdin = child.stdin.take().context("load process stdin")?;
            let stdout = BufReader::new(child.stdout.take().context("load process stdout")?);
            children.push(LoadProcess {
                child,
                stdin,
                stdout: stdout.lines(),
            });
        }
        for child in &mut children {
            let line = child.line().await?;
            if line != "ready" {
                bail!("load process said {line:?} instead of ready");
            }
        }
        let started = Instant::now();
        for child in &mut children {
            child.say("go").await?;
        }
        let mut total = Opened::default();
        for child in &mut children {
            let opened: Opened = serde_json::from_str(&child.line().await?)?;
            bar.inc(opened.opened + opened.failed);
            total.opened += opened.opened;
            total.failed += opened.failed;
            if total.first_error.is_none() {
                total.first_error = opened.first_error;
            }
        }
        total.secs = started.elapsed().as_secs_f64();
        Ok((
            total,
            LoadProcesses {
                children,
                _dir: dir,
            },
        ))
    }

    /// Their pids.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().filter_map(|c| c.child.id()).collect()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// Closes every link and waits for the processes to exit; returns how
    /// many links had dropped while held.
    pub async fn close(mut self) -> anyhow::Result<u64> {
        let mut dropped = 0;
        for child in &mut self.children {
            child.say("close").await?;
        }
        for child in &mut self.children {
            dropped += child.line().await?.parse::<u64>().unwrap_or(0);
            child.child.wait().await?;
        }
        Ok(dropped)
    }
}

/// The load process's side: `im-bench --hold-links SPEC`.
pub async fn load_process_main(spec: &Path) -> anyhow::Result<()> {
    let spec: HoldSpec = serde_json::from_slice(&std::fs::read(spec)?)?;
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    say(&mut stdout, "ready").await?;
    if stdin.next_line().await?.as_deref() != Some("go") {
        return Ok(());
    }
    let (opened, held) = open_and_hold(spec.links, spec.concurrency, &ProgressBar::hidden()).await;
    say(&mut stdout, &serde_json::to_string(&opened)?).await?;
    // Hold until told to close (or the parent is gone).
    while let Some(line) = stdin.next_line().await? {
        if line == "close" {
            break;
        }
    }
    let dropped = held.close().await;
    say(&mut stdout, &dropped.to_string()).await
}

async fn say(stdout: &mut tokio::io::Stdout, line: &str) -> anyhow::Result<()> {
    stdout.write_all(format!("{line}\n").as_bytes()).await?;
    Ok(stdout.flush().await?)
}
