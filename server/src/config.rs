//! Server configuration from flags and environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use im_connector::ConnectorConfig;
use im_store::MySqlOptions;

/// Which component(s) a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Everything in one process: the single-node default.
    All,
    /// Client links; reaches the transfers over internal links.
    Connector,
    /// Routes messages between connectors and writes them to Kafka.
    Transfer,
    /// The HTTP/JSON API.
    RestApi,
    /// Consumes Kafka and writes MySQL.
    OfflineWorker,
}

/// The IM server: REST API and client links in one process, data in SQLite;
/// or, with `--role`, one component of a cluster on MySQL, Redis and Kafka.
#[derive(Debug, Clone, Parser)]
#[command(name = "im-server", version, about)]
pub struct Config {
    /// What this process runs. Every role but `all` needs --database-url;
    /// see docs/DESIGN.md for what else each one needs.
    #[arg(long, env = "IM_ROLE", value_enum, default_value = "all")]
    pub role: Role,
    /// Where a transfer listens for internal links.
    #[arg(long, env = "IM_TRANSFER_ADDR", default_value = "127.0.0.1:9100")]
    pub transfer_addr: SocketAddr,
    /// The transfers a connector, REST API or offline worker links to
    /// (comma-separated host:port; names are resolved at each connect).
    #[arg(long, env = "IM_TRANSFERS", value_delimiter = ',', value_parser = parse_host_port)]
    pub transfers: Vec<String>,
    /// Kafka bootstrap servers (host:port,...) for transfers and workers.
    #[arg(long, env = "IM_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// The topic messages go through.
    #[arg(long, env = "IM_KAFKA_TOPIC", default_value = "im.messages")]
    pub kafka_topic: String,
    /// Partitions the topic is created with if it does not exist.
    #[arg(long, env = "IM_KAFKA_PARTITIONS", default_value_t = 16,
          value_parser = clap::value_parser!(i32).range(1..=1024))]
    pub kafka_partitions: i32,
    /// The offline workers' consumer group.
    #[arg(long, env = "IM_KAFKA_GROUP", default_value = "im-offline-worker")]
    pub kafka_group: String,
    /// An offline worker's static group membership id (`group.instance.id`):
    /// restarted with the same id, it gets its partitions back at once.
    /// Unique per worker; unset for dynamic membership.
    #[arg(long, env = "IM_KAFKA_INSTANCE_ID")]
    pub kafka_instance_id: Option<String>,
    /// The nice value of the single node's SQLite writer thread, which every
    /// message waits for: below 0 it runs ahead of the link tasks (chat
    /// saturation +10-20%, group bursts possibly slower: docs/DESIGN.md).
    /// Needs CAP_SYS_NICE or a LimitNICE= that allows it; without, the
    /// writer keeps the normal priority and the server logs a warning.
    /// 0 (the default) leaves it.
    #[arg(long, env = "IM_WRITER_NICE", default_value_t = 0, allow_hyphen_values = true,
          value_parser = clap::value_parser!(i32).range(-20..=19))]
    pub writer_nice: i32,
    /// Directory for the SQLite database and uploaded files (created if missing).
    #[arg(long, env = "IM_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Address of the REST API.
    #[arg(long, env = "IM_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// Address for client links (length-prefixed protobuf over TCP).
    #[arg(long, env = "IM_LINK_ADDR", default_value = "127.0.0.1:9000")]
    pub link_addr: SocketAddr,
    /// Address for client links over WebSocket (each binary message one frame).
    #[arg(long, env = "IM_WS_ADDR", default_value = "127.0.0.1:9001")]
    pub ws_addr: SocketAddr,
    /// Store in MySQL/MariaDB (`mysql://user:pass@host:port/db`) instead of
    /// the SQLite file in the data directory.
    #[arg(long, env = "IM_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Connections this process keeps to that database. Every process of a
    /// cluster pools its own, and together they must stay within the
    /// database's `max_connections` (151 in Debian's MariaDB). More helps
    /// logins, which wait on the pool (docs/DESIGN.md).
    #[arg(long, env = "IM_DATABASE_CONNECTIONS", default_value_t = MySqlOptions::default().connections,
          value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub database_connections: u32,
    /// Keep user status in Redis (`redis://host:port`) instead of in-process.
    #[arg(long, env = "IM_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key.
    #[arg(long, env = "IM_REDIS_PREFIX", default_value = "im")]
    pub redis_prefix: String,
    /// Seconds a device stays in Redis user status unless its connector
    /// renews it (it does so every third of this).
    #[arg(long, env = "IM_STATUS_LEASE_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(3..=3_600))]
    pub status_lease_secs: u64,
    /// Id of this connector in user status.
    #[arg(long, env = "IM_CONNECTOR_ID", default_value = "local")]
    pub connector_id: String,
    /// Most client links held at once.
    #[arg(long, env = "IM_MAX_LINKS", default_value_t = 10_000)]
    pub max_links: usize,
    /// Largest frame payload in bytes.
    #[arg(long, env = "IM_MAX_FRAME_BYTES", default_value_t = im_proto::DEFAULT_MAX_FRAME_BYTES as u32,
          value_parser = clap::value_parser!(u32).range(64..=16_777_216))]
    pub max_frame_bytes: u32,
    /// Close a link after this many seconds without a frame.
    #[arg(long, env = "IM_IDLE_TIMEOUT_SECS", default_value_t = 45,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub idle_timeout_secs: u64,
    /// Heartbeat interval suggested to clients, in seconds.
    #[arg(long, env = "IM_HEARTBEAT_SECS", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub heartbeat_secs: u64,
    /// Seconds a new link may take to log in.
    #[arg(long, env = "IM_LOGIN_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub login_timeout_secs: u64,
    /// Milliseconds before an unacked frame is sent again (doubling after).
    #[arg(long, env = "IM_ACK_TIMEOUT_MS", default_value_t = 2_000,
          value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub ack_timeout_ms: u64,
    /// Milliseconds an ack of the client's frames waits to go out with the
    /// next frame to that client (a Send's SENT receipt) before it goes
    /// alone; 0 acks at once.
    #[arg(long, env = "IM_ACK_HOLD_MS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(0..=1_000))]
    pub ack_hold_ms: u64,
    /// Retransmissions of a frame before its link is closed.
    #[arg(long, env = "IM_MAX_RETRIES", default_value_t = 5)]
    pub max_retries: u32,
    /// Pushes queued per link before further ones are dropped and re-read
    /// from the store once the link has caught up.
    #[arg(long, env = "IM_PUSH_QUEUE", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub push_queue: u32,
    /// Largest file upload in bytes.
    #[arg(long, env = "IM_MAX_UPLOAD_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_upload_bytes: usize,
    /// Switches off resend deduplication: a resend of a message is stored
    /// and delivered again. Only for showing that the chaos checker catches
    /// duplicates; never use it for real.
    #[arg(long, hide = true)]
    pub unsafe_no_dedupe: bool,
}

/// A `host:port` with a valid port (the host is resolved when connecting).
fn parse_host_port(s: &str) -> Result<String, String> {
    let s = s.trim();
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(s.to_owned())
        }
        _ => Err(format!("{s:?} is not host:port")),
    }
}

impl Config {
    /// Checks that the role has the engines it needs; the error names the
    /// missing flag.
    pub fn validate(&self) -> Result<(), String> {
        let need = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                let role = clap::ValueEnum::to_possible_value(&self.role)
                    .map(|v| v.get_name().to_owned())
                    .unwrap_or_default();
                Err(format!("--role {role} needs {what}"))
            }
        };
        if self.role == Role::All {
            return Ok(());
        }
        need(self.database_url.is_some(), "--database-url (MySQL)")?;
        match self.role {
            Role::All => Ok(()),
            Role::Connector => {
                need(self.redis_url.is_some(), "--redis-url")?;
                need(!self.transfers.is_empty(), "--transfers")
            }
            Role::Transfer => {
                need(self.redis_url.is_some(), "--redis-url")?;
                need(self.kafka_brokers.is_some(), "--kafka-brokers")
            }
            Role::RestApi => {
                need(self.redis_url.is_some(), "--redis-url")?;
                need(!self.transfers.is_empty(), "--transfers")
            }
            Role::OfflineWorker => {
                need(self.kafka_brokers.is_some(), "--kafka-brokers")?;
                need(!self.transfers.is_empty(), "--transfers")
            }
        }
    }

    /// Defaults for everything, serving from `data_dir` on the given addresses.
    pub fn new(data_dir: PathBuf, http_addr: SocketAddr, link_addr: SocketAddr) -> Self {
        let mut config = Config::parse_from(["im-server"]);
        config.data_dir = data_dir;
        config.http_addr = http_addr;
        config.link_addr = link_addr;
        // Tests and embedders that pick their ports get a free WebSocket one.
        config.ws_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        config
    }

    /// The connector's part of the configuration.
    pub fn connector(&self) -> ConnectorConfig {
        let mut c = ConnectorConfig {
            connector_id: self.connector_id.clone(),
            max_links: self.max_links,
            max_frame_bytes: self.max_frame_bytes as usize,
            login_timeout: Duration::from_secs(self.login_timeout_secs),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            heartbeat_interval: Duration::from_secs(self.heartbeat_secs),
            status_refresh: Duration::from_secs(self.status_lease_secs) / 3,
            push_queue: self.push_queue as usize,
            ack_hold: Duration::from_millis(self.ack_hold_ms),
            ..ConnectorConfig::default()
        };
        c.ack.timeout = Duration::from_millis(self.ack_timeout_ms);
        c.ack.max_retries = self.max_retries;
        c
    }
}
