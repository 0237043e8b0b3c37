//! Server configuration from flags and environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use im_connector::ConnectorConfig;

/// The IM server: REST API and client links in one process, data in SQLite.
#[derive(Debug, Clone, Parser)]
#[command(name = "im-server", version, about)]
pub struct Config {
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
    /// Retransmissions of a frame before its link is closed.
    #[arg(long, env = "IM_MAX_RETRIES", default_value_t = 5)]
    pub max_retries: u32,
    /// Largest file upload in bytes.
    #[arg(long, env = "IM_MAX_UPLOAD_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_upload_bytes: usize,
}

impl Config {
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
            ..ConnectorConfig::default()
        };
        c.ack.timeout = Duration::from_millis(self.ack_timeout_ms);
        c.ack.max_retries = self.max_retries;
        c
    }
}
