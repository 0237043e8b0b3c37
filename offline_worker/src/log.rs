//! The in-process message log: bounded queue, one writer, group commit.

use std::sync::Arc;

use async_trait::async_trait;
use im_store::{Appended, NewMessage, Store, UserId};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// A message on its way into the log, with where it came from.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The message to store.
    pub message: NewMessage,
    /// The sending device, so its own copy is not pushed back to it.
    pub origin_device: String,
}

/// A message the log has made durable.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The sender.
    pub from_user: UserId,
    /// The sending device.
    pub origin_device: String,
    /// Users who receive it (not the sender).
    pub recipients: Vec<UserId>,
    /// The stored message; `duplicate` if it had been stored before.
    pub appended: Appended,
}

/// Why a message could not be logged.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    /// The log is shutting down and takes no more messages.
    #[error("message log is closed")]
    Closed,
    /// The store failed to commit the batch.
    #[error("store failed: {0}")]
    Store(String),
    /// No word came that the message was stored; it may have been or not
    /// (a resend with the same client id finds out).
    #[error("message not confirmed in time")]
    Unconfirmed,
}

/// Resolves when the submitted message is durable.
pub type Pending = oneshot::Receiver<Result<Appended, LogError>>;

/// Hears about every committed batch, in commit order, before the senders
/// are told their messages are durable.
#[async_trait]
pub trait CommitListener: Send + Sync + 'static {
    /// Called once per committed batch, duplicates included.
    async fn committed(&self, batch: &[Committed]);
}

/// Where messages become durable.
#[async_trait]
pub trait MessageLog: Send + Sync + 'static {
    /// Queues a message. Returns once it is queued (so calls from one task
    /// keep their order); the returned receiver resolves when it is durable.
    async fn submit(&self, submission: Submission) -> Result<Pending, LogError>;
}

type Request = (Submission, oneshot::Sender<Result<Appended, LogError>>);

/// The single-node log: a bounded queue drained by one writer task that
/// appends everything waiting (up to `max_batch`) in one store transaction.
#[derive(Debug, Clone)]
pub struct BatchingLog {
    tx: mpsc::Sender<Request>,
}

impl BatchingLog {
    /// Starts the writer and the task that routes what it commits. Both end
    /// once every `BatchingLog` clone is dropped and the queue is drained
    /// and routed, so awaiting the handle after dropping them is a clean
    /// shutdown.
    pub fn start(
        store: Arc<dyn Store>,
        listener: Arc<dyn CommitListener>,
        queue_capacity: usize,
        max_batch: usize,
    ) -> (BatchingLog, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(queue_capacity.max(1));
        let (committed_tx, committed_rx) = mpsc::channel(ROUTED_BEHIND);
        let writer = tokio::spawn(write_batches(store, rx, committed_tx, max_batch.max(1)));
        let router = tokio::spawn(announce(listener, committed_rx));
        let both = tokio::spawn(async move {
            let _ = writer.await;
            let _ = router.await;
        });
        (BatchingLog { tx }, both)
    }
}

#[async_trait]
impl MessageLog for BatchingLog {
    async fn submit(&self, submission: Submission) -> Result<Pending, LogError> {
        let (done, pending) = oneshot::channel();
        self.tx
            .send((submission, done))
            .await
            .map_err(|_| LogError::Closed)?;
        Ok(pending)
    }
}

/// Committed batches the writer may run ahead of the router: it appends the
/// next batch while the last is routed, instead of leaving the store idle
/// while the router looks up and pushes a batch.
const ROUTED_BEHIND: usize = 4;

/// A committed batch and the senders waiting to hear that it is durable.
type Announcement = (
    Vec<Committed>,
    Vec<oneshot::Sender<Result<Appended, LogError>>>,
);

async fn write_batches(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<Request>,
    committed_tx: mpsc::Sender<Announcement>,
    max_batch: usize,
) {
    let mut requests = Vec::with_capacity(max_batch);
    // One wakeup takes everything already queued: under load batches grow and
    // the cost of a commit (an fsync) is shared by many messages.
    while rx.recv_many(&mut requests, max_batch).await > 0 {
        // The messages move into the batch; their senders' devices and reply
        // channels stay beside it, in the same order.
        let (messages, waiting): (Vec<NewMessage>, Vec<_>) = requests
            .drain(..)
            .map(|(s, done)| (s.message, (s.origin_device, done)))
            .unzip();
        match store.append_messages(&messages).await {
            Ok(appended) => {
                let announcement: Announcement = messages
                    .into_iter()
                    .zip(waiting)
                    .zip(appended)
                    .map(|((message, (origin_device, done)), appended)| {
                        let c = Committed {
                            from_user: message.from_user,
                            origin_device,
                            recipients: message.recipients,
                            appended,
                        };
                        (c, done)
                    })
                    .unzip();
                // The router takes batches in commit order.
                if committed_tx.send(announcement).await.is_err() {
                    tracing::error!("message router stopped; log writer ends");
                    return;
                }
            }
            Err(error) => {
                tracing::error!(%error, batch = waiting.len(), "append failed");
                let error = LogError::Store(error.to_string());
                for (_, done) in waiting {
                    let _ = done.send(Err(error.clone()));
                }
            }
        }
    }
    tracing::debug!("message log drained");
}

/// Routes each committed batch, in commit order, then tells its senders
/// their messages are durable: a SENT never overtakes the routing of its
/// message.
async fn announce(listener: Arc<dyn CommitListener>, mut rx: mpsc::Receiver<Announcement>) {
    while let Some((committed, replies)) = rx.recv().await {
        listener.committed(&committed).await;
        for (c, done) in committed.into_iter().zip(replies) {
            let _ = done.send(Ok(c.appended));
        }
    }
}
