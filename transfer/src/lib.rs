//! Routes messages between connectors: checks that a sender may write where
//! it writes, makes the message durable through the message log, and pushes
//! it, its receipts and live events to the connectors holding each recipient
//! device (found in user status). Offline recipients need nothing more: the
//! message log stored their offline rows with the message.

pub mod cluster;
mod notifier;
mod push;
mod router;
mod send;
pub mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use im_offline_worker::{MessageLog, Submission};
use im_proto::v1::{PresenceEvent, SendMessage};
use im_proto::{Body, ErrorCode};
use im_store::{DeliveredMessage, OfflineKey, Store, StoreError, UserId};

pub use notifier::Notifier;
pub use push::{Connectors, Push};
pub use router::Router;
pub use send::PendingSend;

/// Why a request from a device was refused or failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct TransferError {
    /// The code the client sees.
    pub code: ErrorCode,
    /// A human-readable reason, safe to show the client.
    pub message: String,
}

impl TransferError {
    /// An error with a code and a reason.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        TransferError {
            code,
            message: message.into(),
        }
    }
}

impl From<StoreError> for TransferError {
    fn from(error: StoreError) -> Self {
        let code = error.code();
        if code == ErrorCode::Internal {
            tracing::error!(%error, "store failed");
            return TransferError::new(code, "internal error");
        }
        TransferError::new(code, error.to_string())
    }
}

/// What a connector asks of the transfer on behalf of its devices.
#[async_trait]
pub trait TransferApi: Send + Sync + 'static {
    /// Checks and queues a message from `device` of `user`. Returns once it is
    /// queued (so one device's messages keep their order); the pending value
    /// resolves when it is durable (SENT).
    async fn submit(
        &self,
        user: UserId,
        device: &str,
        send: SendMessage,
    ) -> Result<PendingSend, TransferError>;
    /// A device acked these messages: move its cursors and send DELIVERED.
    async fn delivered(
        &self,
        user: UserId,
        device: &str,
        messages: &[DeliveredMessage],
    ) -> Result<(), TransferError>;
    /// A device acked live receipts: claim their offline rows.
    async fn receipts_delivered(
        &self,
        user: UserId,
        keys: &[OfflineKey],
    ) -> Result<(), TransferError>;
    /// `user` read `conversation` up to `seq`: send READ receipts.
    async fn read(&self, user: UserId, conversation: &str, seq: u64) -> Result<(), TransferError>;
    /// `user`'s first device came online, or last went offline.
    async fn presence(&self, user: UserId, online: bool);
}

/// The transfer of one process.
pub struct Transfer {
    store: Arc<dyn Store>,
    log: Option<Arc<dyn MessageLog>>,
    router: Arc<Router>,
    /// False only to show that a chaos run catches what it prevents.
    dedupe: bool,
}

impl Transfer {
    /// A transfer over a store, a message log and a router. The log must
    /// report its commits to the same router.
    pub fn new(store: Arc<dyn Store>, log: Arc<dyn MessageLog>, router: Arc<Router>) -> Self {
        Transfer {
            store,
            log: Some(log),
            router,
            dedupe: true,
        }
    }

    /// A cluster transfer: submits arrive over internal links and go to
    /// Kafka (`cluster::TransferService`), so `submit` is refused here.
    pub fn without_log(store: Arc<dyn Store>, router: Arc<Router>) -> Self {
        Transfer {
            store,
            log: None,
            router,
            dedupe: true,
        }
    }

    /// Validates `send` from `device` of `user` and checks that the user may
    /// write to its target; returns what goes into the message log.
    pub async fn check(
        &self,
        user: UserId,
        device: &str,
        send: SendMessage,
    ) -> Result<Submission, TransferError> {
        let mut submission = send::check(self.store.as_ref(), user, device, send).await?;
        if !self.dedupe {
            // A fresh key each time: the store no longer sees a resend as
            // the same message.
            let key = &mut submission.message.client_msg_id;
            *key = format!("{key}~{}", uuid::Uuid::new_v4().simple());
        }
        Ok(submission)
    }

    /// Switches off resend deduplication (see `Config::unsafe_no_dedupe`).
    pub fn without_dedupe(mut self) -> Self {
        self.dedupe = false;
        self
    }

    /// The router, which also serves as the `Notifier` for the REST API.
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }
}

#[async_trait]
impl TransferApi for Transfer {
    async fn submit(
        &self,
        user: UserId,
        device: &str,
        send: SendMessage,
    ) -> Result<PendingSend, TransferError> {
        let submission = self.check(user, device, send).await?;
        let log = self.log.as_ref().ok_or_else(|| {
            TransferError::new(
                ErrorCode::Internal,
                "this transfer takes submits over internal links",
            )
        })?;
        let pending = log
            .submit(submission)
            .await
            .map_err(|e| TransferError::new(ErrorCode::ShuttingDown, e.to_string()))?;
        Ok(PendingSend::new(pending))
    }

    async fn delivered(
        &self,
        user: UserId,
        device: &str,
        messages: &[DeliveredMessage],
    ) -> Result<(), TransferError> {
        let receipts = self.store.mark_delivered(user, device, messages).await?;
        self.router.route_receipts(receipts).await;
        Ok(())
    }

    async fn receipts_delivered(
        &self,
        user: UserId,
        keys: &[OfflineKey],
    ) -> Result<(), TransferError> {
        self.store.claim_offline_keys(user, keys).await?;
        Ok(())
    }

    async fn read(&self, user: UserId, conversation: &str, seq: u64) -> Result<(), TransferError> {
        let receipts = self.store.mark_read(user, conversation, seq).await?;
        self.router.route_receipts(receipts).await;
        Ok(())
    }

    async fn presence(&self, user: UserId, online: bool) {
        let friends = match self.store.friends(user).await {
            Ok(friends) => friends,
            Err(error) => {
                tracing::warn!(%error, user, "cannot load friends for presence");
                return;
            }
        };
        let event = Body::Presence(PresenceEvent {
            user_id: user,
            online,
        });
        let friends: Vec<UserId> = friends.iter().map(|f| f.user_id).collect();
        self.router.notify(&friends, event).await;
    }
}
