//! The fault driver: a whole cluster as real processes on loopback, each of
//! which can be killed (SIGKILL) and started again during traffic.
//!
//! [`LocalCluster`] runs its own Redis, MariaDB and Kafka-API broker (tansu)
//! in a directory of its own, so restarting them touches nothing else on
//! the machine, and the im-server roles on top: two transfers, two
//! connectors, a REST API and an offline worker. The connectors reach the
//! transfers through one [`ChaosProxy`] per transfer, which applies the
//! internal-link faults. Every process is a child of this one, stopped by
//! its own handle, and all are killed when the cluster is dropped.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use im_proto::internal::Envelope;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::{ChaosProxy, Faults};

/// The kinds of process the driver kills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProcessKind {
    /// A connector (client links).
    Connector,
    /// A transfer (routing).
    Transfer,
    /// The offline worker (Kafka to MySQL).
    OfflineWorker,
    /// The REST API.
    RestApi,
    /// Redis (user status; it keeps nothing on disk, so a restart empties it).
    Redis,
    /// The Kafka-API broker.
    Broker,
    /// MariaDB.
    MariaDb,
    /// The single-node server (every role in one process, on SQLite).
    SingleNode,
}

impl ProcessKind {
    /// Every kind of a cluster, in the order of a summary table.
    pub const CLUSTER: [ProcessKind; 7] = [
        ProcessKind::Connector,
        ProcessKind::Transfer,
        ProcessKind::OfflineWorker,
        ProcessKind::RestApi,
        ProcessKind::Redis,
        ProcessKind::Broker,
        ProcessKind::MariaDb,
    ];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            ProcessKind::Connector => "connector",
            ProcessKind::Transfer => "transfer",
            ProcessKind::OfflineWorker => "offline-worker",
            ProcessKind::RestApi => "rest-api",
            ProcessKind::Redis => "redis",
            ProcessKind::Broker => "broker",
            ProcessKind::MariaDb => "mariadb",
            ProcessKind::SingleNode => "single-node",
        }
    }
}

/// Where the programs are.
#[derive(Debug, Clone)]
pub struct Tools {
    /// The im-server binary.
    pub server: PathBuf,
    /// The tansu broker binary.
    pub tansu: PathBuf,
}

impl Tools {
    /// `server` and the tansu that scripts/kafka.sh builds: `IM_TANSU_BIN`,
    /// else `$IM_TOOLS/tansu/bin/tansu`, else `~/.cache/im-tools/...`.
    pub fn with_server(server: impl Into<PathBuf>) -> Tools {
        let tansu = std::env::var_os("IM_TANSU_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let tools = std::env::var_os("IM_TOOLS")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| {
                        let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
                        Path::new(&home).join(".cache/im-tools")
                    });
                tools.join("tansu/bin/tansu")
            });
        // Absolute: the processes run in directories of their own.
        let server = server.into();
        Tools {
            server: std::path::absolute(&server).unwrap_or(server),
            tansu: std::path::absolute(&tansu).unwrap_or(tansu),
        }
    }
}

/// How the cluster is set up.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Seeds the internal proxies.
    pub seed: u64,
    /// Faults on connector-to-transfer traffic.
    pub to_transfer: Faults,
    /// Faults on transfer-to-connector traffic.
    pub to_connector: Faults,
    /// The connectors' retransmission timeout towards clients.
    pub ack_timeout_ms: u64,
    /// The connectors' retransmissions before giving a link up.
    pub max_retries: u32,
    /// User-status lease (a killed connector's devices vanish after it).
    pub lease_secs: u64,
    /// More flags for every im-server process.
    pub extra_args: Vec<String>,
    /// Connector processes (`c1`, `c2`, ...), at least one.
    pub connectors: usize,
    /// MariaDB's InnoDB buffer pool, MiB. The chaos runs' data fits in
    /// 64; a benchmark's grows past it, and then every statement waits on
    /// page reads (docs/DESIGN.md, "Where the cluster's time goes").
    pub buffer_pool_mib: usize,
}

impl ClusterOptions {
    /// The chaos runs' setup: `Faults::internal()` both ways on the
    /// internal links, and connectors that retransmit soon and often
    /// (100 ms, 40 times: many acks never arrive), with 3 s leases.
    pub fn chaos(seed: u64) -> ClusterOptions {
        ClusterOptions {
            seed,
            to_transfer: Faults::internal(),
            to_connector: Faults::internal(),
            ack_timeout_ms: 100,
            max_retries: 40,
            lease_secs: 3,
            extra_args: Vec::new(),
            connectors: 2,
            buffer_pool_mib: 64,
        }
    }
}

/// One process the driver owns.
struct Process {
    kind: ProcessKind,
    program: PathBuf,
    args: Vec<String>,
    cwd: PathBuf,
    /// The port it listens on, if any; a restart waits for it.
    port: Option<u16>,
    child: Option<Child>,
}

/// A running cluster of real processes.
pub struct LocalCluster {
    processes: BTreeMap<String, Process>,
    http_port: u16,
    link_ports: Vec<u16>,
    internal: Vec<ChaosProxy<Envelope>>,
    kills: BTreeMap<ProcessKind, u32>,
    /// Last, so it is removed after the processes are killed.
    dir: tempfile::TempDir,
}

/// A fresh directory for a cluster's data and logs, removed with the
/// cluster unless `IM_CHAOS_KEEP` is set (then its path is printed).
fn cluster_dir() -> std::io::Result<tempfile::TempDir> {
    let mut dir = tempfile::Builder::new().prefix("im-chaos-").tempdir()?;
    if std::env::var_os("IM_CHAOS_KEEP").is_some() {
        dir.disable_cleanup(true);
        eprintln!("im-chaos: keeping {}", dir.path().display());
    }
    Ok(dir)
}

/// A free loopback port (bound and released; the window for a clash is
/// small, and a clash shows as a process that does not come up).
fn free_port() -> std::io::Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn answering(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).await.is_ok()
}

fn whoami() -> String {
    std::process::Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "root".into())
}

fn error(message: String) -> std::io::Error {
    std::io::Error::other(message)
}

impl LocalCluster {
    /// Starts the single-node server (on SQLite, in a directory of its
    /// own) as one process, named "server", and waits until it listens.
    pub async fn single_node(
        tools: &Tools,
        options: &ClusterOptions,
    ) -> std::io::Result<LocalCluster> {
        let dir = cluster_dir()?;
        std::fs::create_dir_all(dir.path().join("logs"))?;
        let root = dir.path().to_path_buf();
        let (http_port, link_port) = (free_port()?, free_port()?);
        let mut cluster = LocalCluster {
            processes: BTreeMap::new(),
            http_port,
            link_ports: vec![link_port],
            internal: Vec::new(),
            kills: BTreeMap::new(),
            dir,
        };
        let mut args = vec![
            "--data-dir".to_owned(),
            root.join("data").display().to_string(),
            "--http-addr".into(),
            format!("127.0.0.1:{http_port}"),
            "--link-addr".into(),
            format!("127.0.0.1:{link_port}"),
            "--ws-addr".into(),
            format!("127.0.0.1:{}", free_port()?),
            "--ack-timeout-ms".into(),
            options.ack_timeout_ms.to_string(),
            "--max-retries".into(),
            options.max_retries.to_string(),
        ];
        args.extend(options.extra_args.iter().cloned());
        cluster.define(
            "server",
            ProcessKind::SingleNode,
            tools.server.clone(),
            args,
            root,
            Some(link_port),
        );
        cluster.launch("server").await?;
        Ok(cluster)
    }

    /// Starts Redis, MariaDB and the broker, then the im-server roles, and
    /// waits until each listens.
    pub async fn start(tools: &Tools, options: &ClusterOptions) -> std::io::Result<LocalCluster> {
        if !tools.tansu.exists() {
            return Err(error(format!(
                "no tansu at {} (scripts/kafka.sh start builds it)",
                tools.tansu.display()
            )));
        }
        let dir = cluster_dir()?;
        for sub in ["logs", "redis", "broker", "data"] {
            std::fs::create_dir_all(dir.path().join(sub))?;
        }
        let mut cluster = LocalCluster {
            processes: BTreeMap::new(),
            http_port: free_port()?,
            link_ports: Vec::new(),
            internal: Vec::new(),
            kills: BTreeMap::new(),
            dir,
        };
        let root = cluster.dir.path().to_path_buf();

        let redis_port = free_port()?;
        cluster.define(
            "redis",
            ProcessKind::Redis,
            "redis-server".into(),
            vec![
                "--port".into(),
                redis_port.to_string(),
                "--bind".into(),
                "127.0.0.1".into(),
                "--save".into(),
                String::new(),
                "--appendonly".into(),
                "no".into(),
            ],
            root.join("redis"),
            Some(redis_port),
        );
        let mysql_port = free_port()?;
        install_mariadb(&root).await?;
        cluster.define(
            "mariadb",
            ProcessKind::MariaDb,
            "mariadbd".into(),
            vec![
                "--no-defaults".into(),
                format!("--datadir={}", root.join("mysql").display()),
                format!("--socket={}", root.join("mysql.sock").display()),
                format!("--pid-file={}", root.join("mysql.pid").display()),
                format!("--port={mysql_port}"),
                "--bind-address=127.0.0.1".into(),
                "--skip-grant-tables".into(),
                "--skip-log-bin".into(),
                format!("--innodb-buffer-pool-size={}M", options.buffer_pool_mib),
                // Each im-server process pools up to 16 connections, and a
                // benchmark may start a dozen connectors.
                "--max-connections=1000".into(),
                format!("--user={}", whoami()),
            ],
            root.clone(),
            Some(mysql_port),
        );
        let broker_port = free_port()?;
        let broker_url = format!("tcp://127.0.0.1:{broker_port}");
        cluster.define(
            "broker",
            ProcessKind::Broker,
            tools.tansu.clone(),
            vec![
                "broker".into(),
                "--listener-url".into(),
                broker_url.clone(),
                "--advertised-listener-url".into(),
                broker_url,
                "--storage-engine".into(),
                "sqlite://broker.db".into(),
            ],
            root.join("broker"),
            Some(broker_port),
        );
        for name in ["redis", "mariadb", "broker"] {
            cluster.launch(name).await?;
        }

        let mut common = vec![
            "--database-url".to_owned(),
            format!("mysql://root@127.0.0.1:{mysql_port}/test"),
            "--redis-url".into(),
            format!("redis://127.0.0.1:{redis_port}"),
            "--kafka-brokers".into(),
            format!("127.0.0.1:{broker_port}"),
            "--kafka-partitions".into(),
            "4".into(),
            "--status-lease-secs".into(),
            options.lease_secs.to_string(),
            "--ack-timeout-ms".into(),
            options.ack_timeout_ms.to_string(),
            "--max-retries".into(),
            options.max_retries.to_string(),
            "--data-dir".into(),
            root.join("data").display().to_string(),
        ];
        common.extend(options.extra_args.iter().cloned());
        let mut internal_addrs = Vec::new();
        for i in 1..=2u64 {
            let port = free_port()?;
            let name = format!("t{i}");
            let mut args = vec!["--role".into(), "transfer".into()];
            args.extend(common.iter().cloned());
            args.extend(["--transfer-addr".into(), format!("127.0.0.1:{port}")]);
            cluster.define(
                &name,
                ProcessKind::Transfer,
                tools.server.clone(),
                args,
                root.clone(),
                Some(port),
            );
            let proxy = ChaosProxy::<Envelope>::start(
                SocketAddr::from(([127, 0, 0, 1], port)),
                options.seed.wrapping_add(i << 32),
                options.to_transfer,
                options.to_connector,
            )
            .await?;
            internal_addrs.push(proxy.addr().to_string());
            cluster.internal.push(proxy);
        }
        // Only the connectors go through the proxies; the worker and the
        // REST API link to the transfers directly.
        let direct: Vec<String> = ["t1", "t2"]
            .iter()
            .map(|t| format!("127.0.0.1:{}", cluster.processes[*t].port.unwrap_or(0)))
            .collect();
        let connectors: Vec<String> = (1..=options.connectors.max(1))
            .map(|i| format!("c{i}"))
            .collect();
        for name in &connectors {
            let port = free_port()?;
            let mut args = vec!["--role".into(), "connector".into()];
            args.extend(common.iter().cloned());
            args.extend([
                "--transfers".into(),
                internal_addrs.join(","),
                "--connector-id".into(),
                name.clone(),
                "--link-addr".into(),
                format!("127.0.0.1:{port}"),
                "--ws-addr".into(),
                format!("127.0.0.1:{}", free_port()?),
            ]);
            cluster.define(
                name,
                ProcessKind::Connector,
                tools.server.clone(),
                args,
                root.clone(),
                Some(port),
            );
            cluster.link_ports.push(port);
        }
        let mut rest = vec!["--role".into(), "rest-api".into()];
        rest.extend(common.iter().cloned());
        rest.extend([
            "--transfers".into(),
            direct.join(","),
            "--http-addr".into(),
            format!("127.0.0.1:{}", cluster.http_port),
        ]);
        let http_port = cluster.http_port;
        cluster.define(
            "rest",
            ProcessKind::RestApi,
            tools.server.clone(),
            rest,
            root.clone(),
            Some(http_port),
        );
        let mut worker = vec!["--role".into(), "offline-worker".into()];
        worker.extend(common.iter().cloned());
        worker.extend([
            "--transfers".into(),
            direct.join(","),
            "--kafka-instance-id".into(),
            "worker".into(),
        ]);
        cluster.define(
            "worker",
            ProcessKind::OfflineWorker,
            tools.server.clone(),
            worker,
            root.clone(),
            None,
        );
        let names = ["t1", "t2"]
            .into_iter()
            .map(String::from)
            .chain(connectors)
            .chain(["rest".into(), "worker".into()]);
        for name in names {
            cluster.launch(&name).await?;
        }
        Ok(cluster)
    }

    #[allow(clippy::too_many_arguments)]
    fn define(
        &mut self,
        name: &str,
        kind: ProcessKind,
        program: PathBuf,
        args: Vec<String>,
        cwd: PathBuf,
        port: Option<u16>,
    ) {
        self.processes.insert(
            name.to_owned(),
            Process {
                kind,
                program,
                args,
                cwd,
                port,
                child: None,
            },
        );
    }

    /// Starts `name` and waits (up to a minute) until it listens.
    async fn launch(&mut self, name: &str) -> std::io::Result<()> {
        let log_path = self.dir.path().join("logs").join(format!("{name}.log"));
        let process = self
            .processes
            .get_mut(name)
            .ok_or_else(|| error(format!("no process {name}")))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let mut command = Command::new(&process.program);
        if process.kind == ProcessKind::Broker {
            // tansu logs every request at info: gigabytes in a minute.
            command.env("RUST_LOG", "warn");
        }
        let child = command
            .args(&process.args)
            .current_dir(&process.cwd)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                error(format!(
                    "starting {name} ({}): {e}",
                    process.program.display()
                ))
            })?;
        process.child = Some(child);
        let Some(port) = process.port else {
            return Ok(());
        };
        for _ in 0..600 {
            if answering(port).await {
                return Ok(());
            }
            if let Some(child) = process.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(error(format!(
                        "{name} exited ({status}); see {}",
                        log_path.display()
                    )));
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(error(format!(
            "{name} did not listen on {port}; see {}",
            log_path.display()
        )))
    }

    /// SIGKILLs `name`, leaves it down for `down`, starts it again and
    /// waits until it listens.
    pub async fn kill_and_restart(&mut self, name: &str, down: Duration) -> std::io::Result<()> {
        let process = self
            .processes
            .get_mut(name)
            .ok_or_else(|| error(format!("no process {name}")))?;
        if let Some(mut child) = process.child.take() {
            child.start_kill()?;
            child.wait().await?;
        }
        *self.kills.entry(process.kind).or_default() += 1;
        tracing::info!(name, "killed");
        tokio::time::sleep(down).await;
        self.launch(name).await?;
        tracing::info!(name, "restarted");
        Ok(())
    }

    /// The names of the processes of `kind`.
    pub fn names(&self, kind: ProcessKind) -> Vec<String> {
        self.processes
            .iter()
            .filter(|(_, p)| p.kind == kind)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The REST API's base URL.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// The connectors' client-link addresses.
    pub fn link_addrs(&self) -> Vec<SocketAddr> {
        self.link_ports
            .iter()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
            .collect()
    }

    /// The proxies between connectors and transfers.
    pub fn internal_proxies(&self) -> &[ChaosProxy<Envelope>] {
        &self.internal
    }

    /// Kills so far, per kind.
    pub fn kills(&self) -> &BTreeMap<ProcessKind, u32> {
        &self.kills
    }

    /// Where the processes' logs are.
    pub fn log_dir(&self) -> PathBuf {
        self.dir.path().join("logs")
    }
}

/// Creates an empty MariaDB data directory under `root`.
async fn install_mariadb(root: &Path) -> std::io::Result<()> {
    let log = std::fs::File::create(root.join("logs").join("mariadb-install.log"))?;
    let status = Command::new("mariadb-install-db")
        .arg("--no-defaults")
        .arg(format!("--datadir={}", root.join("mysql").display()))
        .arg(format!("--user={}", whoami()))
        .arg("--auth-root-authentication-method=normal")
        .arg("--skip-name-resolve")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .await
        .map_err(|e| error(format!("running mariadb-install-db: {e}")))?;
    if !status.success() {
        return Err(error(format!(
            "mariadb-install-db failed ({status}); see {}",
            root.join("logs/mariadb-install.log").display()
        )));
    }
    Ok(())
}

/// Kills one process of each of `kinds` (for a kind with several, one
/// picked by the seed), in an order the seed shuffles, waiting `every`
/// before each kill; each stays down for `down`.
pub async fn kill_each(
    cluster: &mut LocalCluster,
    kinds: &[ProcessKind],
    seed: u64,
    every: Duration,
    down: Duration,
) -> std::io::Result<()> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut order = kinds.to_vec();
    order.shuffle(&mut rng);
    for kind in order {
        tokio::time::sleep(every).await;
        let names = cluster.names(kind);
        let Some(name) = names.choose(&mut rng) else {
            continue;
        };
        cluster.kill_and_restart(name, down).await?;
    }
    Ok(())
}
