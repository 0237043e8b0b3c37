//! The hot writes of the single node, merged into one transaction per
//! wakeup: the message log's appends and every link's acks (cursors,
//! DELIVERED receipts, claimed offline rows) queue here, and one task runs
//! everything waiting in one transaction.
//!
//! Each ack used to be a transaction of its own on the one writer
//! connection: a BEGIN, a COMMIT and the WAL pages it touched, written
//! again for every link. Merged, pages shared by many writes (the
//! conversation, the offline queue's index) go to the WAL once per batch,
//! and acks that arrive while an append's fsync runs ride on the next one.

use sqlx::{SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::{begin_lazy_write, begin_write, messages, offline, receipts};
use crate::types::{Appended, DeliveredMessage, NewMessage, OfflineKey, ReceiptRecord, UserId};
use crate::{StoreError, StoreResult};

/// Most requests in one transaction.
const MAX_BATCH: usize = 512;
/// Requests waiting for the writer before callers wait to queue.
const QUEUE: usize = 8192;

/// One write the batcher runs.
enum Op {
    Append(Vec<NewMessage>),
    Delivered {
        user: UserId,
        device: String,
        messages: Vec<DeliveredMessage>,
    },
    Claim {
        user: UserId,
        keys: Vec<OfflineKey>,
    },
}

/// What an [`Op`] returns.
enum Done {
    Appended(Vec<Appended>),
    Receipts(Vec<ReceiptRecord>),
    Claimed(Vec<OfflineKey>),
}

type Request = (Op, oneshot::Sender<StoreResult<Done>>);

/// The queue in front of the writer task. The task ends when every clone
/// is dropped.
#[derive(Debug, Clone)]
pub(super) struct Batcher {
    tx: mpsc::Sender<Request>,
}

impl Batcher {
    pub(super) fn start(writer: SqlitePool) -> Batcher {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write(writer, rx));
        Batcher { tx }
    }

    pub(super) async fn append(&self, batch: Vec<NewMessage>) -> StoreResult<Vec<Appended>> {
        match self.run(Op::Append(batch)).await? {
            Done::Appended(appended) => Ok(appended),
            _ => Err(mismatch()),
        }
    }

    pub(super) async fn delivered(
        &self,
        user: UserId,
        device: String,
        messages: Vec<DeliveredMessage>,
    ) -> StoreResult<Vec<ReceiptRecord>> {
        let op = Op::Delivered {
            user,
            device,
            messages,
        };
        match self.run(op).await? {
            Done::Receipts(receipts) => Ok(receipts),
            _ => Err(mismatch()),
        }
    }

    pub(super) async fn claim(
        &self,
        user: UserId,
        keys: Vec<OfflineKey>,
    ) -> StoreResult<Vec<OfflineKey>> {
        match self.run(Op::Claim { user, keys }).await? {
            Done::Claimed(claimed) => Ok(claimed),
            _ => Err(mismatch()),
        }
    }

    /// Runs `op` in the next transaction and returns its result once that
    /// transaction has committed.
    async fn run(&self, op: Op) -> StoreResult<Done> {
        let closed = || StoreError::Database(sqlx::Error::PoolClosed);
        let (done, reply) = oneshot::channel();
        self.tx.send((op, done)).await.map_err(|_| closed())?;
        reply.await.map_err(|_| closed())?
    }
}

/// `apply` answers each op with its own kind of result; this is the error
/// if that ever changed.
fn mismatch() -> StoreError {
    StoreError::Database(sqlx::Error::Protocol(
        "batched write answered with another kind of result".into(),
    ))
}

async fn write(writer: SqlitePool, mut rx: mpsc::Receiver<Request>) {
    let mut requests: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut requests, MAX_BATCH).await > 0 {
        let ops: Vec<&Op> = requests.iter().map(|(op, _)| op).collect();
        match together(&writer, &ops).await {
            Ok(results) => {
                for ((_, reply), result) in requests.drain(..).zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            // Nothing of the batch was written. One at a time, so a write
            // that fails fails only its own caller.
            Err(error) if requests.len() == 1 => {
                let (_, reply) = requests.pop().expect("one request");
                let _ = reply.send(Err(error));
            }
            Err(error) => {
                tracing::warn!(%error, requests = requests.len(), "batched write failed; writing one at a time");
                for (op, reply) in requests.drain(..) {
                    let result = together(&writer, &[&op]).await;
                    let _ = reply.send(result.map(|mut done| done.pop().expect("one result")));
                }
            }
        }
    }
}

/// Runs `ops` in one transaction. It syncs the WAL if any op stores
/// messages (a SENT promises they survive a power cut); acks alone are
/// lazy writes (see `begin_lazy_write`).
async fn together(writer: &SqlitePool, ops: &[&Op]) -> StoreResult<Vec<Done>> {
    let durable = ops.iter().any(|op| matches!(op, Op::Append(_)));
    let mut tx = if durable {
        begin_write(writer).await?
    } else {
        begin_lazy_write(writer).await?
    };
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        results.push(apply(&mut tx, op).await?);
    }
    tx.commit().await?;
    Ok(results)
}

async fn apply(conn: &mut SqliteConnection, op: &Op) -> StoreResult<Done> {
    Ok(match op {
        Op::Append(batch) => Done::Appended(messages::append(conn, batch).await?),
        Op::Delivered {
            user,
            device,
            messages,
        } => Done::Receipts(receipts::mark_delivered(conn, *user, device, messages).await?),
        Op::Claim { user, keys } => Done::Claimed(offline::claim_keys(conn, *user, keys).await?),
    })
}
