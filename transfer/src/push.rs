//! What the transfer hands a connector for one device.

use std::sync::Arc;

use im_proto::Body;
use im_store::{ReceiptRecord, StoredMessage, UserId};

/// One thing to push to one device.
#[derive(Debug, Clone)]
pub enum Push {
    /// A chat message (live).
    Message {
        /// The stored message.
        message: Arc<StoredMessage>,
        /// The device that sent it, which already has it.
        origin_device: Arc<str>,
    },
    /// A DELIVERED or READ receipt for a message this user sent.
    Receipt(Arc<ReceiptRecord>),
    /// A live-only event.
    Event(Arc<Body>),
    /// Close the device's link if it logged in with this token.
    Revoke {
        /// `im_store::hash_token` of the revoked token.
        token_hash: Arc<str>,
    },
    /// Pushes may have been lost on the way (a link to a transfer broke):
    /// send the device, from the store, every message newer than what it
    /// has. Made by a connector for its own sessions; never on the wire.
    Resync,
}

/// The connectors, as the transfer sees them: deliver a push to a device on
/// a named connector. Never blocks: a device that cannot take more is cut off
/// by its connector (it catches up at its next login).
pub trait Connectors: Send + Sync + 'static {
    /// Queues `push` for `device` of `user` on `connector`.
    fn push(&self, connector: &str, user: UserId, device: &str, push: Push);

    /// Queues `Push::Resync` for every device this process holds (only a
    /// connector holds any).
    fn resync_all(&self) {}
}
