//! Reads run on the caller's own thread, on query-only `rusqlite`
//! connections kept in a small pool: the reads every login makes.
//!
//! Why not the sqlx reader pool: sqlx-sqlite runs each statement on a
//! worker thread of its connection and hands the answer back through a
//! channel, two thread wakeups per statement. A login of a known device
//! reads four times (is the device known, its cursors, its unread offline
//! rows, its user's friends for presence). In the connections benchmark
//! (19,000 known devices logging in again, single node) thread switches
//! were 37% of the server's samples and sqlx's worker threads 31%, with
//! SQLite's own code under 1%. Each of these reads is an index look-up in
//! pages the cache holds, a few microseconds: less than the two wakeups
//! it replaced, so running it where it is asked for beats handing it over.
//! WAL lets them run beside the writer without waiting for it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::Connection;

use crate::StoreResult;

/// Idle connections kept; more are opened while more threads read at
/// once, and closed again after.
const KEEP_IDLE: usize = 8;

#[derive(Debug)]
pub(super) struct InlineReaders {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl InlineReaders {
    /// Readers of the database at `path`, which must exist and be in WAL
    /// mode already.
    pub(super) fn new(path: &Path) -> InlineReaders {
        InlineReaders {
            path: path.to_owned(),
            idle: Mutex::default(),
        }
    }

    /// Runs `read` on an idle connection (or a new one), on this thread.
    pub(super) fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let idle = self.lock().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.connect()?,
        };
        let result = read(&conn);
        let mut idle = self.lock();
        if idle.len() < KEEP_IDLE {
            idle.push(conn);
        }
        result
    }

    /// Closes the idle connections.
    pub(super) fn close(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn connect(&self) -> StoreResult<Connection> {
        super::open_rusqlite(&self.path, true)
    }
}
