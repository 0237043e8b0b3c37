//! The server under test, always in processes of its own so that their
//! memory and CPU can be read from `/proc`: the single-node `im-server`
//! (`--role all` on a fresh SQLite data directory), or a whole cluster of
//! real processes started by the chaos crate's `LocalCluster`, with no
//! faults on its internal links.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _};
use im_chaos::cluster::{ClusterOptions, LocalCluster, Tools};
use im_chaos::Faults;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::procfs;

/// The MySQL connections each process of the benchmark's cluster pools
/// (`--database-connections`; the server's default is 16). Known-device
/// logins waited on the pool; 32 gave 1.05-1.10x the logins/s
/// (docs/DESIGN.md, "Logins wait for MariaDB"). The harness's MariaDB
/// allows 1,000 connections; the full run's 15 pooled processes take 480.
const BENCH_DATABASE_CONNECTIONS: u32 = 32;

/// The harness's MariaDB buffer pool, MiB. The chaos runs' 64 held the
/// full chat's tables only until its third saturation run; past that,
/// pages were read back all the time and the half rate collapsed (717 of
/// 2,526 msg/s delivered, p99 19 s; docs/DESIGN.md).
const BENCH_BUFFER_POOL_MIB: usize = 1_024;

/// Open files a server process keeps for other things than links.
const FD_MARGIN: usize = 1_000;

/// Single node or cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One `im-server --role all` process on SQLite.
    Single,
    /// Connectors, transfers, REST API and offline worker on MariaDB,
    /// Redis and a Kafka-API broker.
    Cluster,
}

impl Mode {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Single => "single",
            Mode::Cluster => "cluster",
        }
    }
}

/// One process of the server under test.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerProcess {
    /// `server`, `c1`, `t2`, `rest`, `worker`, `redis`, `mariadb`, `broker`.
    pub name: String,
    /// Its pid.
    pub pid: u32,
    /// True for the processes that hold client links.
    pub holds_links: bool,
}

/// What keeps the server up; dropping it stops the processes.
enum Guard {
    None,
    Single(Box<SingleNode>),
    Cluster(Box<LocalCluster>),
}

/// The single-node server's process and its data directory.
struct SingleNode {
    child: Child,
    dir: tempfile::TempDir,
}

/// A running server under test.
pub struct Target {
    /// Single node or cluster.
    pub mode: Mode,
    /// The REST API's base URL.
    pub http_url: String,
    /// Where client links connect (one per connector).
    pub link_addrs: Vec<SocketAddr>,
    /// Its processes.
    pub processes: Vec<ServerProcess>,
    /// Most links each connector may hold (its `--max-links`).
    pub links_per_connector: usize,
    guard: Guard,
}

/// The most links a process with this open-files limit can hold.
pub fn links_for_fd_limit(limit: u64) -> usize {
    (limit as usize).saturating_sub(FD_MARGIN).max(100)
}

/// The open-files limit processes started from here get (our own).
pub fn own_fd_limit() -> u64 {
    procfs::open_files_limit(std::process::id()).unwrap_or(1024)
}

fn free_port() -> std::io::Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn wait_listening(addr: SocketAddr, child: &mut Child, log: &Path) -> anyhow::Result<()> {
    for _ in 0..600 {
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("im-server exited ({status}); see {}", log.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("im-server did not listen on {addr}; see {}", log.display())
}

impl Target {
    /// Starts `server_bin --role all` on a fresh data directory and free
    /// ports, its log level `log_level`, allowed as many links as its
    /// open-files limit leaves room for.
    pub async fn single(server_bin: &Path, log_level: &str) -> anyhow::Result<Target> {
        let dir = tempfile::Builder::new().prefix("im-bench-").tempdir()?;
        let (http, link, ws) = (free_port()?, free_port()?, free_port()?);
        let max_links = links_for_fd_limit(own_fd_limit());
        let log_path = dir.path().join("server.log");
        let log = std::fs::File::create(&log_path)?;
        let mut child = Command::new(server_bin)
            .args(["--role", "all", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--http-addr", &format!("127.0.0.1:{http}")])
            .args(["--link-addr", &format!("127.0.0.1:{link}")])
            .args(["--ws-addr", &format!("127.0.0.1:{ws}")])
            .args(["--max-links", &max_links.to_string()])
            .env("RUST_LOG", log_level)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", server_bin.display()))?;
        let link_addr = SocketAddr::from(([127, 0, 0, 1], link));
        wait_listening(link_addr, &mut child, &log_path).await?;
        wait_listening(
            SocketAddr::from(([127, 0, 0, 1], http)),
            &mut child,
            &log_path,
        )
        .await?;
        let pid = child.id().context("server pid")?;
        Ok(Target {
            mode: Mode::Single,
            http_url: format!("http://127.0.0.1:{http}"),
            link_addrs: vec![link_addr],
            processes: vec![ServerProcess {
                name: "server".into(),
                pid,
                holds_links: true,
            }],
            links_per_connector: max_links,
            guard: Guard::Single(Box::new(SingleNode { child, dir })),
        })
    }

    /// Starts the chaos crate's local cluster (its own Redis, MariaDB and
    /// tansu broker; two transfers, `connectors` connectors, a REST API and
    /// an offline worker) with no faults, and finds its processes' pids. The
    /// processes inherit `RUST_LOG` from this one.
    pub async fn cluster(server_bin: &Path, connectors: usize) -> anyhow::Result<Target> {
        let tools = Tools::with_server(server_bin);
        let max_links = links_for_fd_limit(own_fd_limit());
        let options = ClusterOptions {
            to_transfer: Faults::default(),
            to_connector: Faults::default(),
            ack_timeout_ms: 2_000,
            max_retries: 5,
            lease_secs: 30,
            extra_args: vec![
                "--max-links".into(),
                max_links.to_string(),
                "--database-connections".into(),
                BENCH_DATABASE_CONNECTIONS.to_string(),
            ],
            connectors,
            buffer_pool_mib: BENCH_BUFFER_POOL_MIB,
            ..ClusterOptions::chaos(0)
        };
        let cluster = LocalCluster::start(&tools, &options)
            .await
            .context("starting the local cluster")?;
        let processes = cluster_processes();
        let connectors = processes.iter().filter(|p| p.holds_links).count();
        if connectors != cluster.link_addrs().len() {
            bail!(
                "found {connectors} connector processes for {} link addresses",
                cluster.link_addrs().len()
            );
        }
        Ok(Target {
            mode: Mode::Cluster,
            http_url: cluster.http_url(),
            link_addrs: cluster.link_addrs(),
            processes,
            links_per_connector: max_links,
            guard: Guard::Cluster(Box::new(cluster)),
        })
    }

    /// A server started elsewhere (a test's in-process server, say).
    pub fn external(
        mode: Mode,
        http_url: String,
        link_addrs: Vec<SocketAddr>,
        processes: Vec<ServerProcess>,
        links_per_connector: usize,
    ) -> Target {
        Target {
            mode,
            http_url,
            link_addrs,
            processes,
            links_per_connector,
            guard: Guard::None,
        }
    }

    /// Pids of the processes that hold links.
    pub fn link_pids(&self) -> Vec<u32> {
        self.processes
            .iter()
            .filter(|p| p.holds_links)
            .map(|p| p.pid)
            .collect()
    }

    /// Pids of every process of the server.
    pub fn all_pids(&self) -> Vec<u32> {
        self.processes.iter().map(|p| p.pid).collect()
    }

    /// Most links the whole server may hold.
    pub fn link_capacity(&self) -> usize {
        self.links_per_connector * self.link_addrs.len()
    }

    /// Where its logs are, if it has some of its own.
    pub fn log_dir(&self) -> Option<PathBuf> {
        match &self.guard {
            Guard::None => None,
            Guard::Single(node) => Some(node.dir.path().to_path_buf()),
            Guard::Cluster(cluster) => Some(cluster.log_dir()),
        }
    }

    /// Stops the server: the single node with SIGTERM (it drains and closes
    /// its SQLite file), then SIGKILL if it is not gone in 20 s; a cluster
    /// by killing its processes.
    pub async fn stop(self) {
        match self.guard {
            Guard::None => {}
            Guard::Single(node) => {
                let SingleNode { mut child, dir } = *node;
                if let Some(pid) = child.id() {
                    let _ = Command::new("kill")
                        .args(["-TERM", &pid.to_string()])
                        .status()
                        .await;
                }
                if tokio::time::timeout(Duration::from_secs(20), child.wait())
                    .await
                    .is_err()
                {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                }
                drop(dir);
            }
            Guard::Cluster(cluster) => {
                // Dropping the cluster SIGKILLs its processes and removes
                // its directory at once, while MariaDB may still be
                // writing there: wait for them, then remove what is left.
                let dir = cluster.log_dir().parent().map(Path::to_path_buf);
                drop(cluster);
                for _ in 0..100 {
                    if self.processes.iter().all(|p| gone(p.pid)) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                if let Some(dir) = dir.filter(|_| std::env::var_os("IM_CHAOS_KEEP").is_none()) {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
        }
    }
}

/// True once `pid` has exited (a zombie waiting to be reaped counts).
fn gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// This process's children that make up a local cluster, named as the
/// cluster names them.
fn cluster_processes() -> Vec<ServerProcess> {
    let mut found = Vec::new();
    let mut transfers = 0;
    for child in procfs::children(std::process::id()) {
        let name = match child.program() {
            "redis-server" => "redis".to_owned(),
            "mariadbd" => "mariadb".to_owned(),
            "tansu" => "broker".to_owned(),
            "im-server" => match child.flag("--role") {
                Some("connector") => child.flag("--connector-id").unwrap_or("c?").to_owned(),
                // Started t1 first, so in pid order.
                Some("transfer") => {
                    transfers += 1;
                    format!("t{transfers}")
                }
                Some("rest-api") => "rest".to_owned(),
                Some("offline-worker") => "worker".to_owned(),
                _ => continue,
            },
            _ => continue,
        };
        let holds_links = child.flag("--role") == Some("connector");
        found.push(ServerProcess {
            name,
            pid: child.pid,
            holds_links,
        });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}
