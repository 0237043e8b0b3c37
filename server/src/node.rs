//! One component of a cluster as a process: a connector, a transfer, a REST
//! API instance or an offline worker, on MySQL, Redis and Kafka, linked to
//! the transfers over internal links.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use im_connector::{Connector, Registry};
use im_offline_worker::{ensure_topic, run_worker, KafkaConfig, KafkaLog, WorkerConfig};
use im_rest_api::AppState;
use im_store::Store;
use im_transfer::cluster::{
    serve, ConnectorLinks, PeerConfig, RemoteCommits, RemoteNotifier, RemoteTransfer,
    TransferClient, TransferService,
};
use im_transfer::{Router, Transfer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Role;
use crate::{open_status, open_store, Config, STOP_GRACE};

/// How long a starting node waits for its links to the transfers before it
/// serves anyway (calls fail with a retryable error until they are up).
const LINK_WAIT: Duration = Duration::from_secs(10);

/// A started cluster component.
pub struct RunningNode {
    /// The role it runs.
    pub role: Role,
    /// REST API address (rest-api).
    pub http_addr: Option<SocketAddr>,
    /// Client link address (connector).
    pub link_addr: Option<SocketAddr>,
    /// WebSocket client link address (connector).
    pub ws_addr: Option<SocketAddr>,
    /// Internal link address (transfer).
    pub transfer_addr: Option<SocketAddr>,
    /// Stops the outward-facing part first (client links, HTTP, consuming).
    front: CancellationToken,
    /// Then the internal links.
    internal: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    store: Arc<dyn Store>,
}

fn kafka(config: &Config) -> KafkaConfig {
    KafkaConfig {
        brokers: config.kafka_brokers.clone().unwrap_or_default(),
        topic: config.kafka_topic.clone(),
    }
}

fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    crate::listen(addr).with_context(|| format!("binding {what} on {addr}"))
}

/// Waits (bounded) until every transfer is linked; a node starts serving
/// anyway, and its calls fail with a retryable error until they are.
async fn wait_for_transfers(client: &TransferClient) {
    if !client.wait_linked(LINK_WAIT).await {
        tracing::warn!("not every transfer is reachable yet; starting anyway");
    }
}

/// Starts the component `config.role` names (not `all`: see `crate::start`).
pub async fn start_node(config: Config) -> anyhow::Result<RunningNode> {
    config.validate().map_err(anyhow::Error::msg)?;
    let store = open_store(&config).await?;
    let front = CancellationToken::new();
    let internal = CancellationToken::new();
    let peer = PeerConfig::default();
    let mut node = RunningNode {
        role: config.role,
        http_addr: None,
        link_addr: None,
        ws_addr: None,
        transfer_addr: None,
        front: front.clone(),
        internal: internal.clone(),
        tasks: Vec::new(),
        store: store.clone(),
    };
    match config.role {
        Role::All => anyhow::bail!("--role all is started by im_server::start"),
        Role::Transfer => {
            let status = open_status(&config).await?;
            let kafka = kafka(&config);
            ensure_topic(&kafka, config.kafka_partitions)
                .await
                .context("creating the Kafka topic")?;
            let log = KafkaLog::connect(&kafka).context("connecting to Kafka")?;
            let links = Arc::new(ConnectorLinks::new());
            let router = Arc::new(Router::new(status, links.clone()));
            let service = Arc::new(TransferService {
                transfer: Arc::new(Transfer::without_log(store.clone(), router)),
                log: Arc::new(log),
                links,
                peer,
            });
            let listener = bind(config.transfer_addr, "internal links")?;
            node.transfer_addr = Some(listener.local_addr()?);
            node.tasks
                .push(tokio::spawn(serve(listener, service, internal.clone())));
        }
        Role::Connector => {
            let status = open_status(&config).await?;
            let mut connector_config = config.connector();
            if connector_config.connector_id == "local" {
                // Every connector needs its own id in user status.
                connector_config.connector_id = format!(
                    "connector-{}",
                    &uuid::Uuid::new_v4().simple().to_string()[..8]
                );
            }
            let registry = Arc::new(Registry::new(
                connector_config.connector_id.clone(),
                connector_config.push_queue,
            ));
            let transfer = RemoteTransfer::start(
                config.transfers.clone(),
                &connector_config.connector_id,
                registry.clone(),
                peer,
                internal.clone(),
            );
            wait_for_transfers(transfer.client()).await;
            let connector = Arc::new(Connector {
                config: connector_config,
                store: store.clone(),
                transfer: Arc::new(transfer),
                status,
                registry,
            });
            let tcp = bind(config.link_addr, "client links")?;
            let ws = bind(config.ws_addr, "WebSocket links")?;
            node.link_addr = Some(tcp.local_addr()?);
            node.ws_addr = Some(ws.local_addr()?);
            let listeners = im_connector::Listeners {
                tcp,
                websocket: Some(ws),
            };
            node.tasks.push(tokio::spawn(im_connector::run(
                listeners,
                connector,
                front.clone(),
            )));
        }
        Role::RestApi => {
            let status = open_status(&config).await?;
            let notifier = RemoteNotifier::start(config.transfers.clone(), peer, internal.clone());
            wait_for_transfers(notifier.client()).await;
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
            let app = im_rest_api::app(AppState {
                store: store.clone(),
                status,
                notifier: Arc::new(notifier),
                files_dir: config.data_dir.join("files"),
                max_upload_bytes: config.max_upload_bytes,
            });
            let listener = bind(config.http_addr, "REST")?;
            node.http_addr = Some(listener.local_addr()?);
            let stop = front.clone();
            node.tasks.push(tokio::spawn(async move {
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await;
                if let Err(error) = served {
                    tracing::error!(%error, "REST server failed");
                }
            }));
        }
        Role::OfflineWorker => {
            let kafka = kafka(&config);
            ensure_topic(&kafka, config.kafka_partitions)
                .await
                .context("creating the Kafka topic")?;
            let listener = RemoteCommits::start(config.transfers.clone(), peer, internal.clone());
            wait_for_transfers(listener.client()).await;
            let worker = WorkerConfig {
                kafka,
                group: config.kafka_group.clone(),
                max_batch: 1024,
                instance_id: config.kafka_instance_id.clone(),
            };
            let stop = front.clone();
            let store = store.clone();
            node.tasks.push(tokio::spawn(async move {
                if let Err(error) = run_worker(worker, store, Arc::new(listener), stop).await {
                    tracing::error!(%error, "offline worker failed");
                }
            }));
        }
    }
    tracing::info!(role = ?node.role, http = ?node.http_addr, links = ?node.link_addr,
        transfer = ?node.transfer_addr, "serving");
    Ok(node)
}

impl RunningNode {
    /// Stops in order: client links, HTTP and consuming first, then the
    /// internal links, then the store.
    pub async fn shutdown(self) {
        self.front.cancel();
        // A transfer's one task serves the internal links; every other
        // role's tasks end with the front and still use the links meanwhile.
        if self.role == Role::Transfer {
            self.internal.cancel();
        }
        for task in self.tasks {
            let _ = tokio::time::timeout(STOP_GRACE, task).await;
        }
        self.internal.cancel();
        self.store.close().await;
        tracing::info!("stopped");
    }
}
