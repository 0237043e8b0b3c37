//! WAL checkpoints beside the hot writer instead of inside its commits.
//!
//! SQLite's default runs a checkpoint inside the commit that takes the WAL
//! past 1,000 pages: the hot writer copied pages into the database file and
//! synced it while every caller of its batch, and everything queued behind
//! it, waited. In the chat benchmark at 5,800 msg/s (single node) that made
//! its commits 12-60 ms and send-to-arrival p99 150-460 ms. With
//! checkpoints on a thread of their own, commits were 2-10 ms and p99
//! 17-81 ms.
//!
//! That thread's checkpoints are `PASSIVE`: they wait for nobody, and so
//! under steady writes never catch the WAL's last frame, and SQLite never
//! starts the WAL over: it would grow without end. Past `restart_frames`
//! the thread asks the writer to run a `RESTART` checkpoint between two
//! transactions. Most frames are copied by then; the writer copies the
//! rest and the next commit starts at the WAL's beginning.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

use crate::{StoreError, StoreResult};

/// Least time between two checkpoints: pages that many commits rewrite are
/// copied once per pause, not once per commit.
const PAUSE: Duration = Duration::from_millis(10);

/// The writer's side of its checkpoint thread, which ends when this drops.
pub(super) struct Checkpoints {
    tick: SyncSender<()>,
    restart_due: Arc<AtomicBool>,
}

impl Checkpoints {
    /// Turns off `writer`'s own checkpoints and starts a thread that makes
    /// them on a connection of its own to `path`.
    pub(super) fn start(
        writer: &Connection,
        path: &Path,
        restart_frames: i64,
    ) -> StoreResult<Checkpoints> {
        let conn = super::open_rusqlite(path, false)?;
        let (checkpoints, ticks) = Checkpoints::new(writer)?;
        let due = checkpoints.restart_due.clone();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                while ticks.recv().is_ok() {
                    passive(&conn, &due, restart_frames);
                    std::thread::sleep(PAUSE);
                }
            })
            .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        Ok(checkpoints)
    }

    /// The writer's side, and the wakeups it sends.
    fn new(writer: &Connection) -> StoreResult<(Checkpoints, Receiver<()>)> {
        writer.pragma_update(None, "wal_autocheckpoint", 0)?;
        let (tick, ticks) = sync_channel(1);
        let restart_due = Arc::new(AtomicBool::new(false));
        Ok((Checkpoints { tick, restart_due }, ticks))
    }

    /// Called by the writer after each commit, outside any transaction:
    /// starts the WAL over if the thread asked, then wakes the thread.
    pub(super) fn committed(&self, writer: &Connection) {
        if self.restart_due.swap(false, Ordering::Relaxed) {
            let restart = writer.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()));
            if let Err(error) = restart {
                tracing::warn!(%error, "WAL restart failed");
            }
        }
        // One wakeup pending is enough.
        let _ = self.tick.try_send(());
    }
}

/// Copies what it can without waiting; asks for a restart past
/// `restart_frames`.
fn passive(conn: &Connection, restart_due: &AtomicBool, restart_frames: i64) {
    let frames = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        row.get::<_, i64>(1)
    });
    match frames {
        Ok(frames) if frames > restart_frames => restart_due.store(true, Ordering::Relaxed),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "WAL checkpoint failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::BUSY_TIMEOUT;

    /// The size the WAL reaches over 20 rounds of 100 commits of 4 KiB,
    /// each round checkpointed as under steady writes: a reader holds the
    /// snapshot of the round's start while the round is written, so the
    /// passive checkpoint copies only up to there, as one racing the writer
    /// does.
    fn wal_bytes_after_rounds(restart_frames: i64) -> u64 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.db");
        let open = || {
            let conn = Connection::open(&path).unwrap();
            conn.busy_timeout(BUSY_TIMEOUT).unwrap();
            conn
        };
        let mut writer = open();
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
                 CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB);",
            )
            .unwrap();
        let (checkpoints, _ticks) = Checkpoints::new(&writer).unwrap();
        let (mut reader, checkpointer) = (open(), open());
        let body = vec![7u8; 4096];
        let mut id = 0i64;
        let mut commit = |writer: &mut Connection| {
            id += 1;
            writer
                .execute("INSERT INTO t (id, body) VALUES (?, ?)", (id, &body))
                .unwrap();
            checkpoints.committed(writer);
        };
        for _ in 0..20 {
            let snapshot = reader.transaction().unwrap();
            let _: i64 = snapshot
                .query_row("SELECT COUNT(*) FROM t", [], |row| row.get(0))
                .unwrap();
            for _ in 0..100 {
                commit(&mut writer);
            }
            passive(&checkpointer, &checkpoints.restart_due, restart_frames);
            drop(snapshot);
            commit(&mut writer);
        }
        let rows: i64 = writer
            .query_row("SELECT COUNT(*) FROM t", [], |row| row.get(0))
            .unwrap();
        assert_eq!(rows, 20 * 101, "every commit is there");
        std::fs::metadata(dir.path().join("wal.db-wal"))
            .unwrap()
            .len()
    }

    #[test]
    fn the_wal_starts_over_under_steady_writes() {
        // Each commit adds two or three 4 KiB frames: over 16 MB in all.
        let never = wal_bytes_after_rounds(i64::MAX);
        assert!(
            never > 16 << 20,
            "without restarts the WAL holds every commit: {never} bytes"
        );
        let restarted = wal_bytes_after_rounds(256);
        assert!(
            restarted < 4 << 20,
            "restarted past 256 frames, the WAL stays small: {restarted} bytes"
        );
    }
}
