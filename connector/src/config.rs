//! A connector's tuning and limits.

use std::time::Duration;

use im_proto::{AckConfig, DEFAULT_MAX_FRAME_BYTES};

/// Tuning and limits of one connector.
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    /// Unique id of this connector in user status.
    pub connector_id: String,
    /// Most links held at once; more are refused.
    pub max_links: usize,
    /// Largest frame payload accepted or sent.
    pub max_frame_bytes: usize,
    /// How long a new link may take to send `Login`.
    pub login_timeout: Duration,
    /// A link silent this long is closed.
    pub idle_timeout: Duration,
    /// The heartbeat interval suggested to clients.
    pub heartbeat_interval: Duration,
    /// The server side's ACK window.
    pub ack: AckConfig,
    /// Longest an ack of the client's frames waits for another frame to
    /// ride with (see `link`).
    pub ack_hold: Duration,
    /// How far past `lastId` frames are buffered.
    pub reorder_capacity: usize,
    /// Pushes queued per device before it counts as a slow consumer.
    pub push_queue: usize,
    /// Sends of one link waiting to become durable; more are left unacked
    /// (the client resends them).
    pub max_pending_sends: usize,
    /// Most messages pushed in one catch-up after login.
    pub max_catch_up: usize,
    /// How long shutdown waits for links to finish their pending sends.
    pub drain_timeout: Duration,
    /// How often this connector renews its devices' leases in user status.
    pub status_refresh: Duration,
}

impl Default for ConnectorConfig {
    fn default() -> Self {
        ConnectorConfig {
            connector_id: "local".into(),
            max_links: 10_000,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            login_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(15),
            ack: AckConfig::default(),
            ack_hold: Duration::from_millis(20),
            reorder_capacity: 256,
            push_queue: 4096,
            max_pending_sends: 256,
            max_catch_up: 100_000,
            drain_timeout: Duration::from_secs(5),
            status_refresh: Duration::from_secs(10),
        }
    }
}
