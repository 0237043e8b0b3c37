//! Composes the components into one process: the single-node default
//! (SQLite file, in-process user status, in-process message log), or the same
//! process on the cluster engines' MySQL and Redis when given their URLs.

mod config;
mod node;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use im_connector::{Connector, Registry};
use im_offline_worker::BatchingLog;
use im_rest_api::AppState;
use im_store::{MySqlOptions, MySqlStore, SqliteOptions, SqliteStore, Store};
use im_transfer::{Router, Transfer};
use im_user_status::{MemoryUserStatus, RedisUserStatus, UserStatus};
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{Config, Role};
pub use node::{start_node, RunningNode};

/// Upper bound on each stage of shutdown.
pub(crate) const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

/// A started server. Dropping it without `shutdown` leaves tasks running.
pub struct RunningServer {
    /// Where the REST API listens.
    pub http_addr: SocketAddr,
    /// Where client links connect.
    pub link_addr: SocketAddr,
    /// Where WebSocket client links connect.
    pub ws_addr: SocketAddr,
    shutdown: CancellationToken,
    links: JoinHandle<()>,
    http: JoinHandle<std::io::Result<()>>,
    log_writer: JoinHandle<()>,
    connector: Arc<Connector>,
    store: Arc<dyn Store>,
}

/// The store the configuration names: MySQL if a database URL is given, else
/// the SQLite file in the data directory.
pub(crate) async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(url) = &config.database_url {
        let options = MySqlOptions {
            connections: config.database_connections,
        };
        let store = MySqlStore::connect_with(url, options)
            .await
            .context("connecting to the MySQL database")?;
        return Ok(Arc::new(store));
    }
    let db = config.data_dir.join("im.db");
    let options = SqliteOptions {
        writer_nice: config.writer_nice,
    };
    let store = SqliteStore::open_with(&db, options)
        .await
        .with_context(|| format!("opening {}", db.display()))?;
    Ok(Arc::new(store))
}

/// User status in Redis if a URL is given, else in-process.
pub(crate) async fn open_status(config: &Config) -> anyhow::Result<Arc<dyn UserStatus>> {
    let Some(url) = &config.redis_url else {
        return Ok(Arc::new(MemoryUserStatus::new()));
    };
    let lease = std::time::Duration::from_secs(config.status_lease_secs);
    let status = RedisUserStatus::connect(url, &config.redis_prefix, lease)
        .await
        .context("connecting to Redis")?;
    Ok(Arc::new(status))
}

/// Connections the kernel queues for a listener until they are accepted.
/// `TcpListener::bind` asks for 128 (mio's default): in the connections
/// benchmark, 512 logins in flight overflowed that 1,567 times in one run,
/// and each overflow is a client that resends its SYN a second later. The
/// kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` with a backlog of [`LISTEN_BACKLOG`].
pub(crate) fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restart can bind while the last
    // run's connections are in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Opens the store (creating the data directory and applying migrations),
/// binds both listeners and starts serving.
pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let store = open_store(&config).await?;
    let status = open_status(&config).await?;
    let connector_config = config.connector();
    let registry = Arc::new(Registry::new(
        connector_config.connector_id.clone(),
        connector_config.push_queue,
    ));
    let router = Arc::new(Router::new(status.clone(), registry.clone()));
    let (log, log_writer) = BatchingLog::start(store.clone(), router.clone(), 8192, 4096);
    let mut transfer = Transfer::new(store.clone(), Arc::new(log), router.clone());
    if config.unsafe_no_dedupe {
        tracing::warn!("resend deduplication is OFF: resends are stored twice");
        transfer = transfer.without_dedupe();
    }
    let transfer = Arc::new(transfer);
    let connector = Arc::new(Connector {
        config: connector_config,
        store: store.clone(),
        transfer,
        status: status.clone(),
        registry,
    });

    let http_listener = listen(config.http_addr)
        .with_context(|| format!("binding REST on {}", config.http_addr))?;
    let link_listener = listen(config.link_addr)
        .with_context(|| format!("binding links on {}", config.link_addr))?;
    let ws_listener = listen(config.ws_addr)
        .with_context(|| format!("binding WebSocket links on {}", config.ws_addr))?;
    let ws_addr = ws_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;
    let link_addr = link_listener.local_addr()?;

    let app = im_rest_api::app(AppState {
        store: store.clone(),
        status,
        notifier: router,
        files_dir: config.data_dir.join("files"),
        max_upload_bytes: config.max_upload_bytes,
    });
    let shutdown = CancellationToken::new();
    let http = tokio::spawn(std::future::IntoFuture::into_future(
        axum::serve(http_listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned()),
    ));
    let listeners = im_connector::Listeners {
        tcp: link_listener,
        websocket: Some(ws_listener),
    };
    let links = tokio::spawn(im_connector::run(
        listeners,
        connector.clone(),
        shutdown.clone(),
    ));
    tracing::info!(%http_addr, %link_addr, %ws_addr, data_dir = %config.data_dir.display(), "serving");
    Ok(RunningServer {
        http_addr,
        link_addr,
        ws_addr,
        shutdown,
        links,
        http,
        log_writer,
        connector,
        store,
    })
}

impl RunningServer {
    /// Base URL of the REST API.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// Stops in order: stop accepting, let links finish their pending sends
    /// and tell clients why they close, stop HTTP, drain the message log, and
    /// close the store so the SQLite file is checkpointed and consistent.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        // The connector bounds its own drain; these bounds only guard against
        // a stuck task holding the process forever.
        let _ = tokio::time::timeout(STOP_GRACE, self.links).await;
        let _ = tokio::time::timeout(STOP_GRACE, self.http).await;
        // The log writer ends when its last sender (held via the transfer) is
        // gone and its queue is drained.
        drop(self.connector);
        if tokio::time::timeout(STOP_GRACE, self.log_writer)
            .await
            .is_err()
        {
            tracing::warn!("message log did not drain in time");
        }
        self.store.close().await;
        tracing::info!("stopped");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::TcpStream;
    use tokio::task::JoinSet;

    use super::listen;

    /// A burst of connections the server has not accepted yet all complete
    /// at once. With tokio's backlog of 128 the kernel drops the SYNs past
    /// it, and those clients wait a second to send them again.
    #[tokio::test]
    async fn a_burst_of_connections_waits_in_the_backlog_unaccepted() {
        const BURST: usize = 1_000;
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut connects = JoinSet::new();
        for _ in 0..BURST {
            connects.spawn(tokio::time::timeout(
                Duration::from_millis(700),
                TcpStream::connect(addr),
            ));
        }
        let mut open = Vec::with_capacity(BURST);
        while let Some(done) = connects.join_next().await {
            if let Ok(Ok(stream)) = done.unwrap() {
                open.push(stream);
            }
        }
        assert_eq!(open.len(), BURST, "connections that completed in time");
        drop(listener);
    }
}
