//! Keeps long-lived client links.
//!
//! `server::run` accepts links (TCP, and WebSocket carrying the same frames); each runs `link::serve`, which owns the
//! socket and the link's two state machines (ACK window, reorder buffer) and
//! feeds a `Session` (what the frames mean for one device: login, catch-up,
//! sends, acks, pushes). The `Registry` is how the transfer reaches a session.

mod config;
mod link;
mod mailbox;
mod registry;
mod report;
mod server;
mod session;
mod transport;

use std::sync::Arc;

use im_store::Store;
use im_transfer::TransferApi;
use im_user_status::UserStatus;

pub use config::ConnectorConfig;
pub use registry::Registry;
pub use server::{run, Listeners};

/// What every link of a connector shares.
pub struct Connector {
    /// Tuning and limits.
    pub config: ConnectorConfig,
    /// Tokens, cursors, the offline queue and catch-up reads.
    pub store: Arc<dyn Store>,
    /// Where sends, acks and reads go.
    pub transfer: Arc<dyn TransferApi>,
    /// Where this connector records its devices.
    pub status: Arc<dyn UserStatus>,
    /// This connector's sessions, reachable by the transfer.
    pub registry: Arc<Registry>,
}
