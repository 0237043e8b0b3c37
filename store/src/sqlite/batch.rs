//! The hot writes of the single node, merged into one transaction per
//! wakeup: the message log's appends, every link's acks (cursors,
//! DELIVERED receipts, claimed offline rows) and read marks queue here, and one task runs
//! everything waiting in one transaction.
//!
//! Each ack used to be a transaction of its own on the one writer
//! connection: a BEGIN, a COMMIT and the WAL pages it touched, written
//! again for every link. Merged, pages shared by many writes (the
//! conversation, the offline queue's index) go to the WAL once per batch,
//! and acks that arrive while an append's fsync runs ride on the next one.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, TransactionBehavior};
use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use super::{hot, BUSY_TIMEOUT};
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
    Read {
        user: UserId,
        conversation: String,
        seq: u64,
    },
}

/// What an [`Op`] returns.
enum Done {
    Appended(Vec<Appended>),
    Receipts(Vec<ReceiptRecord>),
    Claimed(Vec<OfflineKey>),
    /// A read mark by a non-member: refused before it wrote anything.
    Forbidden,
}

type Request = (Op, oneshot::Sender<StoreResult<Done>>);

/// The queue in front of the writer task. The task ends when every clone
/// is dropped.
#[derive(Debug, Clone)]
pub(super) struct Batcher {
    tx: mpsc::Sender<Request>,
}

impl Batcher {
    /// Opens the hot path's own connection to the database at `path`
    /// (already made and migrated) and starts the writer task. `writer` is
    /// the sqlx pool of one writing connection; the task holds it while a
    /// batch runs, so the file has one writer at a time.
    pub(super) fn start(writer: SqlitePool, path: &Path) -> StoreResult<Batcher> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "foreign_keys", true)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write(writer, Arc::new(Mutex::new(conn)), rx));
        Ok(Batcher { tx })
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

    pub(super) async fn read(
        &self,
        user: UserId,
        conversation: String,
        seq: u64,
    ) -> StoreResult<Vec<ReceiptRecord>> {
        let op = Op::Read {
            user,
            conversation,
            seq,
        };
        match self.run(op).await? {
            Done::Receipts(receipts) => Ok(receipts),
            Done::Forbidden => Err(StoreError::Forbidden),
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

async fn write(writer: SqlitePool, conn: Arc<Mutex<Connection>>, mut rx: mpsc::Receiver<Request>) {
    loop {
        let mut requests: Vec<Request> = Vec::with_capacity(MAX_BATCH);
        if rx.recv_many(&mut requests, MAX_BATCH).await == 0 {
            return;
        }
        // sqlx's one writing connection, held for the batch: its own writes
        // (accounts, groups, read marks) wait in its pool instead of
        // polling SQLite's file lock while this connection writes.
        let lease = match writer.acquire().await {
            Ok(lease) => lease,
            Err(error) => {
                let error = error.to_string();
                for (_, reply) in requests {
                    let e = sqlx::Error::Protocol(format!("store closed: {error}"));
                    let _ = reply.send(Err(StoreError::Database(e)));
                }
                continue;
            }
        };
        let conn = conn.clone();
        // A panic loses only that batch: its callers see their replies
        // dropped (an error), and the connection is used again.
        let _ = tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            write_batch(&mut conn, requests);
        })
        .await;
        drop(lease);
    }
}

fn write_batch(conn: &mut Connection, mut requests: Vec<Request>) {
    let ops: Vec<&Op> = requests.iter().map(|(op, _)| op).collect();
    match together(conn, &ops) {
        Ok(results) => {
            for ((_, reply), result) in requests.into_iter().zip(results) {
                let _ = reply.send(Ok(result));
            }
        }
        // Nothing of the batch was written. One at a time, so a write that
        // fails fails only its own caller.
        Err(error) if requests.len() == 1 => {
            let (_, reply) = requests.pop().expect("one request");
            let _ = reply.send(Err(error));
        }
        Err(error) => {
            tracing::warn!(%error, requests = requests.len(), "batched write failed; writing one at a time");
            for (op, reply) in requests {
                let result = together(conn, &[&op]);
                let _ = reply.send(result.map(|mut done| done.pop().expect("one result")));
            }
        }
    }
}

/// Runs `ops` in one transaction. It syncs the WAL if any op stores
/// messages (a SENT promises they survive a power cut) or is a user's read
/// mark; acks alone are lazy writes (see `begin_lazy_write`).
fn together(conn: &mut Connection, ops: &[&Op]) -> StoreResult<Vec<Done>> {
    let durable = ops
        .iter()
        .any(|op| matches!(op, Op::Append(_) | Op::Read { .. }));
    conn.execute_batch(if durable {
        "PRAGMA synchronous = FULL"
    } else {
        "PRAGMA synchronous = NORMAL"
    })?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        results.push(match op {
            Op::Append(batch) => Done::Appended(hot::append(&tx, batch)?),
            Op::Delivered {
                user,
                device,
                messages,
            } => Done::Receipts(hot::mark_delivered(&tx, *user, device, messages)?),
            Op::Claim { user, keys } => Done::Claimed(hot::claim_keys(&tx, *user, keys)?),
            Op::Read {
                user,
                conversation,
                seq,
            } => match hot::mark_read(&tx, *user, conversation, *seq) {
                Ok(receipts) => Done::Receipts(receipts),
                // Refused before any write: the rest of the batch goes on.
                Err(StoreError::Forbidden) => Done::Forbidden,
                Err(error) => return Err(error),
            },
        });
    }
    tx.commit()?;
    Ok(results)
}
