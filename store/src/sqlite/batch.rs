//! The hot writes of the single node, merged into one transaction per
//! wakeup: the message log's appends, every link's acks (cursors,
//! DELIVERED receipts, claimed offline rows), read marks and new devices
//! queue here, and one thread runs everything waiting in one transaction.
//!
//! Each ack used to be a transaction of its own on the one writer
//! connection: a BEGIN, a COMMIT and the WAL pages it touched, written
//! again for every link. Merged, pages shared by many writes (the
//! conversation, the offline queue's index) go to the WAL once per batch,
//! and acks that arrive while an append's fsync runs ride on the next one.

use std::path::Path;

use rusqlite::limits::Limit;
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::checkpoint::Checkpoints;
use super::{hot, WriteTurn};
use crate::types::{Appended, DeliveredMessage, NewMessage, OfflineKey, ReceiptRecord, UserId};
use crate::{StoreError, StoreResult};

/// Most requests in one transaction: as many as the queue holds, so one
/// commit serves everything waiting (1,000-1,900 requests per transaction
/// at saturation in the chat benchmark, where 512 had capped them).
const MAX_BATCH: usize = QUEUE;
/// Requests waiting for the writer before callers wait to queue.
const QUEUE: usize = 8192;
/// WAL frames (pages) past which the writer starts the WAL over (see
/// `checkpoint`): 32 MiB of 4 KiB pages.
const RESTART_FRAMES: i64 = 8192;
/// A batch of acks alone (no message, no read mark: nobody's message
/// waits for it) smaller than this waits `GATHER` for more before it is
/// written. Chat at 3,000 msg/s, alternate runs: server CPU 94-95% ->
/// 70-72%, send-to-arrival p99 8.4-8.9 -> 6.8-6.9 ms and p50 1.2 ->
/// 2.2 ms; saturation 15,899-17,781 -> 19,259-19,443 msg/s.
const GATHER_BELOW: usize = 64;
const GATHER: std::time::Duration = std::time::Duration::from_millis(1);
/// The hot connection's page cache: a negative `cache_size` is KiB.
///
/// Bigger is not free. A B-tree split renumbers a page to the lock page's
/// number (page 262,145 with 4 KiB pages) for a moment, and a commit after
/// that walks the cache's whole hash table to drop pages past the file's
/// end. With 64 MiB that walk was 12% of the writer's samples at
/// 6,000 msg/s (perf). Chat at 6,000 msg/s, alternate runs: 64 MiB, server
/// CPU 112-117%, send-to-arrival p50 6.4-10.8 ms; 8 MiB, 106-110%,
/// 4.3-5.4 ms; 2 MiB (SQLite's default), 108-109%, 4.4-5.4 ms. 8 MiB keeps
/// more of the indexes than the default as the file grows.
const HOT_CACHE_KIB: i64 = -8 * 1024;

/// The longest string or blob the hot connection writes. Nothing it is
/// given comes near (a message's text is at most 16 KiB, checked before it
/// gets here); a longer one is a bug, and fails its own write alone.
const HOT_MAX_VALUE_BYTES: i32 = 1 << 20;

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
    Register {
        user: UserId,
        device: String,
    },
}

/// What an [`Op`] returns.
enum Done {
    Appended(Vec<Appended>),
    Receipts(Vec<ReceiptRecord>),
    Claimed(Vec<OfflineKey>),
    /// Whether the device was new.
    Registered(bool),
    /// A read mark by a non-member: refused before it wrote anything.
    Forbidden,
}

type Request = (Op, oneshot::Sender<StoreResult<Done>>);

/// The queue in front of the writer thread. The thread ends when every
/// clone is dropped.
#[derive(Debug, Clone)]
pub(super) struct Batcher {
    tx: mpsc::Sender<Request>,
}

impl Batcher {
    /// Opens the hot path's own connection to the database at `path`
    /// (already made and migrated) and starts the writer thread, which
    /// takes `turn` for each batch, so the file has one writer at a time.
    pub(super) fn start(turn: WriteTurn, path: &Path, nice: i32) -> StoreResult<Batcher> {
        let conn = super::open_rusqlite(path, false)?;
        // No foreign-key checks on this connection: each is one more
        // B-tree search (the sender, the conversation, the recipient, the
        // message) in the one writer's time, and what this connection
        // writes names users, conversations and messages the caller has
        // just checked or stored, none of which is ever deleted. Alternate
        // runs of one build pair: `examples/hot_writes` (100,000 messages)
        // 38,601 -> 42,312 msg/s (medians of 3); quick chat at saturation
        // 68.0k -> 74.9k msg/s. The other connections (accounts, friends,
        // groups) and the cluster's MySQL keep them.
        conn.pragma_update(None, "foreign_keys", false)?;
        conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, HOT_MAX_VALUE_BYTES);
        // Every hot write searches the indexes of messages, offline rows,
        // receipts and cursors; each page the cache misses is a read from
        // the file.
        conn.pragma_update(None, "cache_size", HOT_CACHE_KIB)?;
        let checkpoints = Checkpoints::start(&conn, path, RESTART_FRAMES)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let runtime = tokio::runtime::Handle::try_current().ok();
        std::thread::Builder::new()
            .name("sqlite-hot".into())
            .spawn(move || {
                set_nice(nice);
                write(turn, conn, rx, checkpoints, runtime)
            })
            .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
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

    pub(super) async fn register(&self, user: UserId, device: String) -> StoreResult<bool> {
        match self.run(Op::Register { user, device }).await? {
            Done::Registered(new) => Ok(new),
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

/// Gives the calling thread (the writer) the nice value `nice`, if the
/// process may. At saturation in the chat benchmark the writer was
/// runnable 92% of the time but ran 61%: it waited in the run queue behind
/// the runtime's workers and the load generator, each getting an equal
/// share, while every message waits for it. At nice -10 (alternate runs of
/// one build, 1,000 pairs): 20,067 / 21,199 -> 23,212 / 24,295 msg/s.
fn set_nice(nice: i32) {
    if nice == 0 {
        return;
    }
    let thread = rustix::thread::gettid();
    match rustix::process::setpriority_process(Some(thread), nice) {
        Ok(()) => tracing::info!(nice, "sqlite hot writer runs at its own priority"),
        Err(error) => tracing::warn!(
            nice,
            %error,
            "the sqlite hot writer keeps the normal priority: a nice value below 0 \
             needs CAP_SYS_NICE or an RLIMIT_NICE that allows it (systemd: LimitNICE=)"
        ),
    }
}

/// The writer: a thread of its own, so that from one batch to the next it
/// waits for nothing but the queue. As a tokio task handing each batch to
/// `spawn_blocking`, it spent over a quarter of its time (measured at
/// saturation in the chat benchmark) waiting to be scheduled again behind
/// the hundreds of link tasks each batch's replies had just woken, with
/// the database idle.
fn write(
    turn: WriteTurn,
    mut conn: Connection,
    mut rx: mpsc::Receiver<Request>,
    checkpoints: Checkpoints,
    runtime: Option<tokio::runtime::Handle>,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut requests: Vec<Request> = Vec::with_capacity(MAX_BATCH);
        requests.push(first);
        drain(&mut rx, &mut requests);
        if requests.len() < GATHER_BELOW && !requests.iter().any(|(op, _)| durable(op)) {
            std::thread::sleep(GATHER);
            drain(&mut rx, &mut requests);
        }
        // Taken and given back on this thread, without the runtime. This
        // used to be a lease of sqlx's writing connection, which sqlx gives
        // back from a task of its own: in the chat benchmark at 8,000 msg/s
        // the thread spent 28-56% of every second (about 44% typically)
        // waiting for that task to be scheduled behind the link tasks, and
        // made 5-13 transactions a second.
        let closed = turn.blocking_lock();
        if *closed {
            for (_, reply) in requests {
                let e = sqlx::Error::PoolClosed;
                let _ = reply.send(Err(StoreError::Database(e)));
            }
            continue;
        }
        // A panic loses only that batch: its callers see their replies
        // dropped (an error), and the connection is used again.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            write_batch(&mut conn, requests, runtime.as_ref());
            checkpoints.committed(&conn);
        }));
        drop(closed);
    }
}

/// Moves what is queued into `requests`, up to `MAX_BATCH`.
fn drain(rx: &mut mpsc::Receiver<Request>, requests: &mut Vec<Request>) {
    while requests.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(request) => requests.push(request),
            Err(_) => break,
        }
    }
}

/// Whether `op` must be on disk before its caller hears back.
fn durable(op: &Op) -> bool {
    matches!(op, Op::Append(_) | Op::Read { .. })
}

/// Runs `requests` and answers them. A committed batch's answers are
/// handed to one task on `runtime`, which wakes the callers and drops the
/// requests: from this thread each reply woke its caller through the
/// runtime's shared queue and its I/O driver, and each request was freed
/// here, far from the thread that allocated it. That was 9.5% of this
/// thread's samples in `examples/hot_writes` (perf), time in which the one
/// writer writes nothing.
fn write_batch(
    conn: &mut Connection,
    mut requests: Vec<Request>,
    runtime: Option<&tokio::runtime::Handle>,
) {
    let ops: Vec<&Op> = requests.iter().map(|(op, _)| op).collect();
    match together(conn, &ops) {
        Ok(results) => {
            let answer = move || {
                for ((_, reply), result) in requests.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            };
            match runtime {
                Some(runtime) => drop(runtime.spawn(async move { answer() })),
                None => answer(),
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
/// mark; acks and new devices alone are lazy writes (see
/// `begin_lazy_write`): a power cut loses the newest transactions only, so
/// a device whose registration it loses lost its later acks too and starts
/// over as new.
fn together(conn: &mut Connection, ops: &[&Op]) -> StoreResult<Vec<Done>> {
    let synced = ops.iter().any(|op| durable(op));
    conn.execute_batch(if synced {
        "PRAGMA synchronous = FULL"
    } else {
        "PRAGMA synchronous = NORMAL"
    })?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut st = hot::Statements::new(&tx);
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        results.push(match op {
            Op::Append(batch) => Done::Appended(hot::append(&mut st, batch)?),
            Op::Delivered {
                user,
                device,
                messages,
            } => Done::Receipts(hot::mark_delivered(&mut st, *user, device, messages)?),
            Op::Claim { user, keys } => Done::Claimed(hot::claim_keys(&mut st, *user, keys)?),
            Op::Read {
                user,
                conversation,
                seq,
            } => match hot::mark_read(&mut st, *user, conversation, *seq) {
                Ok(receipts) => Done::Receipts(receipts),
                // Refused before any write: the rest of the batch goes on.
                Err(StoreError::Forbidden) => Done::Forbidden,
                Err(error) => return Err(error),
            },
            Op::Register { user, device } => {
                Done::Registered(hot::register_device(&mut st, *user, device)?)
            }
        });
    }
    drop(st);
    tx.commit()?;
    Ok(results)
}
