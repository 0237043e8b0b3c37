//! The SQLite backend: one database file in WAL mode.
//!
//! Two writers share the file: the hot writer's thread (`batch`: messages,
//! acks, read marks, new devices) and `writer`, a sqlx pool of one
//! connection for the rest. SQLite allows one writer at a time anyway; with
//! several write connections, two transactions that both read and then try
//! to write can only be untangled by failing one (`SQLITE_BUSY`, which the
//! busy timeout does not wait out), and the others poll the file lock. So
//! each takes the `WriteTurn` for a whole transaction, a plain fair queue in
//! front of the file. Reads go through `reader`, a few query-only
//! connections that WAL lets run beside the writers, each statement seeing
//! the last commit, and the login's reads through `inline`.

mod accounts;
mod acl;
mod batch;
mod checkpoint;
mod devices;
mod friends;
mod groups;
mod hot;
mod inline;
mod messages;
mod offline;
mod rows;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use crate::types::*;
use crate::{Store, StoreError, StoreResult};

static MIGRATOR: Migrator = sqlx::migrate!("../sql/sqlite");

/// Whose turn it is to write the file: the hot writer's thread or one of
/// sqlx's writes, each taking it for a whole transaction, so neither polls
/// SQLite's lock while the other writes (`BUSY_TIMEOUT` is only the
/// fallback). True once the store is closed.
type WriteTurn = Arc<tokio::sync::Mutex<bool>>;

/// How long a statement waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Reading connections (query-only): enough for REST reads beside the offline pulls.
const READERS: u32 = 4;

/// The VFS every connection opens the file with. "unix-excl" takes one
/// exclusive `fcntl` lock on the file for the whole process, the first time
/// the file is read, and keeps the WAL index in this process's memory: the
/// connections of this process then lock one another in memory only. With
/// "unix", every transaction of every connection took and dropped the
/// file's and the WAL index's locks with `fcntl` calls, a tenth of the
/// server's samples while devices logged in. No other process can open the
/// file while this one has it, which also keeps a second server off the same
/// data directory. A read-only connection would still lock with `fcntl`
/// under this VFS, so readers open read-write and refuse writes with
/// `query_only`.
const VFS: &str = "unix-excl";

/// "The database is locked" when a store opens is another process holding
/// the file (see [`VFS`]); any other error is itself.
fn in_use_or(path: &Path, error: sqlx::Error) -> StoreError {
    const SQLITE_BUSY: &str = "5";
    match &error {
        sqlx::Error::Database(db) if db.code().as_deref() == Some(SQLITE_BUSY) => {
            StoreError::InUse(path.to_owned())
        }
        _ => StoreError::Database(error),
    }
}

/// A `rusqlite` connection to the file at `path` (which must exist), through
/// [`VFS`]; `query_only` refuses writes.
fn open_rusqlite(path: &Path, query_only: bool) -> StoreResult<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = rusqlite::Connection::open_with_flags_and_vfs(path, flags, VFS)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    if query_only {
        conn.pragma_update(None, "query_only", true)?;
    }
    Ok(conn)
}

/// The single-node [`Store`]: one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// The reads of every login, on the caller's thread.
    inline: Arc<inline::InlineReaders>,
    /// Appends and acks, merged into one transaction per wakeup.
    batch: batch::Batcher,
    /// Taken by every write on `writer` and by the hot writer.
    turn: WriteTurn,
    /// Friendships, memberships and live tokens, as every send and every
    /// login checks them.
    acl: Arc<acl::Acl>,
}

/// How the single node's store runs, beside where its file is.
#[derive(Debug, Clone, Copy, Default)]
pub struct SqliteOptions {
    /// The nice value the hot writer's thread asks for (-20 to 19; 0 leaves
    /// it as the process is). Every message waits for that one thread,
    /// which otherwise gets the same share of the CPU as each of the
    /// runtime's workers; below 0 it runs ahead of them. Lowering it below 0
    /// needs CAP_SYS_NICE or an RLIMIT_NICE that allows it (systemd:
    /// `LimitNICE=`); refused, the writer keeps the normal priority and the
    /// store logs a warning.
    pub writer_nice: i32,
}

impl SqliteStore {
    /// Opens the database at `path`, creating it (and its directory) if
    /// missing, and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, SqliteOptions::default()).await
    }

    /// [`open`](SqliteStore::open) with `settings`.
    pub async fn open_with(
        path: &Path,
        settings: SqliteOptions,
    ) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .vfs(VFS);

        // FULL syncs the WAL on every commit: a SENT receipt promises the
        // message survives a power cut, not only a crash of this process.
        // Each write transaction sets its own level (`begin_write`,
        // `begin_lazy_write`); this is the level of the rest.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            // A local file: nothing to ping before handing it out.
            .test_before_acquire(false)
            .connect_with(
                options
                    .clone()
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full),
            )
            .await
            .map_err(|e| in_use_or(path, e))?;
        MIGRATOR.run(&writer).await?;

        // Opened after the writer has made the file and switched it to WAL
        // (a lasting property of the file, so readers need not set it).
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            // As for the writer: a ping is one more round trip to the
            // connection's worker thread on every read, for a local file
            // that cannot have gone away (a login's reads spent a tenth of
            // their time in it).
            .test_before_acquire(false)
            .connect_with(options.pragma("query_only", "ON"))
            .await?;

        tracing::info!(path = %path.display(), "sqlite store open");
        let turn = WriteTurn::default();
        let batch = batch::Batcher::start(turn.clone(), path, settings.writer_nice)?;
        Ok(SqliteStore {
            writer,
            reader,
            inline: Arc::new(inline::InlineReaders::new(path)),
            batch,
            turn,
            acl: Arc::default(),
        })
    }

    /// Closes both pools, waiting for calls in progress to finish.
    pub async fn close(&self) {
        // Waits for the hot writer's batch in progress; later ones fail.
        *self.turn.lock().await = true;
        self.inline.close();
        self.reader.close().await;
        self.writer.close().await;
    }

    /// Runs `write`, one of the writes on sqlx's writing connection, in its
    /// turn.
    async fn gated<T>(&self, write: impl std::future::Future<Output = T>) -> T {
        let _turn = self.turn.lock().await;
        write.await
    }
}

/// Starts a write transaction. IMMEDIATE takes the write lock at BEGIN rather
/// than at the first write, so a transaction never has to upgrade a read lock
/// (the one wait SQLite cannot resolve), even with another process on the file.
///
/// Its commit syncs the WAL (`synchronous = FULL`): what it wrote survives a
/// power cut, and so does every lazy write before it (see
/// [`begin_lazy_write`]).
async fn begin_write(writer: &SqlitePool) -> sqlx::Result<Transaction<'static, Sqlite>> {
    // The pragma, a connection setting read at each commit, runs in the
    // same `sqlite3_exec` as the BEGIN (sqlx runs a custom BEGIN that way):
    // outside the transaction, on the one connection that then runs it.
    writer
        .begin_with("PRAGMA synchronous = FULL; BEGIN IMMEDIATE")
        .await
}

/// A write transaction whose commit does not wait for the disk
/// (`synchronous = NORMAL`), for what the acks of devices write: cursors,
/// DELIVERED receipts, offline rows claimed and released. A process crash
/// loses none of it (the WAL is written at commit); a power cut can lose
/// the last of it, but only together: a cursor rolled back with the
/// receipt its ack made, so the device is sent the message again and its
/// new ack makes the receipt again. The WAL is one sequential file, so the
/// next synced commit (every stored message is one) makes all of it
/// durable. Three syncs per message (store, deliver, claim the receipt)
/// become about one.
async fn begin_lazy_write(writer: &SqlitePool) -> sqlx::Result<Transaction<'static, Sqlite>> {
    writer
        .begin_with("PRAGMA synchronous = NORMAL; BEGIN IMMEDIATE")
        .await
}

#[async_trait]
impl Store for SqliteStore {
    async fn close(&self) {
        SqliteStore::close(self).await
    }

    async fn create_user(&self, name: &str, password_hash: &str) -> StoreResult<User> {
        self.gated(accounts::create_user(&self.writer, name, password_hash))
            .await
    }

    async fn user_by_name(&self, name: &str) -> StoreResult<Option<(User, String)>> {
        accounts::user_by_name(&self.reader, name).await
    }

    async fn user(&self, id: UserId) -> StoreResult<Option<User>> {
        accounts::user(&self.reader, id).await
    }

    async fn create_token(&self, user: UserId, token_hash: &str) -> StoreResult<()> {
        self.gated(accounts::create_token(&self.writer, user, token_hash))
            .await
    }

    async fn token_user(&self, token_hash: &str) -> StoreResult<Option<UserId>> {
        if let Some(user) = self.acl.token_user(token_hash) {
            return Ok(Some(user));
        }
        let epoch = self.acl.epoch();
        let user = accounts::token_user(&self.reader, token_hash).await?;
        if let Some(user) = user {
            self.acl.keep_token(epoch, token_hash, user);
        }
        Ok(user)
    }

    async fn revoke_token(&self, token_hash: &str) -> StoreResult<bool> {
        let revoked = self
            .gated(accounts::revoke_token(&self.writer, token_hash))
            .await;
        self.acl.changed();
        revoked
    }

    async fn create_friend_request(
        &self,
        from: UserId,
        to: UserId,
        note: &str,
    ) -> StoreResult<FriendRequest> {
        self.gated(friends::create_request(&self.writer, from, to, note))
            .await
    }

    async fn friend_request(&self, id: u64) -> StoreResult<Option<FriendRequest>> {
        friends::request(&self.reader, id).await
    }

    async fn pending_friend_requests(&self, user: UserId) -> StoreResult<Vec<FriendRequest>> {
        friends::pending_requests(&self.reader, user).await
    }

    async fn resolve_friend_request(&self, id: u64, accept: bool) -> StoreResult<FriendRequest> {
        let resolved = self
            .gated(friends::resolve_request(&self.writer, id, accept))
            .await;
        self.acl.changed();
        resolved
    }

    async fn friends(&self, user: UserId) -> StoreResult<Vec<Friend>> {
        self.inline.read(|c| friends::friends(c, user))
    }

    async fn are_friends(&self, a: UserId, b: UserId) -> StoreResult<bool> {
        if self.acl.friends(a, b) {
            return Ok(true);
        }
        let epoch = self.acl.epoch();
        let yes = friends::are_friends(&self.reader, a, b).await?;
        if yes {
            self.acl.keep_friends(epoch, a, b);
        }
        Ok(yes)
    }

    async fn remove_friend(&self, user: UserId, friend: UserId) -> StoreResult<bool> {
        let removed = self
            .gated(friends::remove_friend(&self.writer, user, friend))
            .await;
        self.acl.changed();
        removed
    }

    async fn set_remark(
        &self,
        user: UserId,
        friend: UserId,
        remark: Option<&str>,
    ) -> StoreResult<bool> {
        self.gated(friends::set_remark(&self.writer, user, friend, remark))
            .await
    }

    async fn create_group(&self, creator: UserId, name: &str) -> StoreResult<Group> {
        let created = self
            .gated(groups::create_group(&self.writer, creator, name))
            .await;
        self.acl.changed();
        created
    }

    async fn group(&self, id: GroupId) -> StoreResult<Option<Group>> {
        groups::group(&self.reader, id).await
    }

    async fn group_members(&self, id: GroupId) -> StoreResult<Vec<GroupMember>> {
        groups::members(&self.reader, id).await
    }

    async fn group_member_ids(&self, id: GroupId) -> StoreResult<Vec<UserId>> {
        if let Some(members) = self.acl.members(id) {
            return Ok(members);
        }
        let epoch = self.acl.epoch();
        let members = groups::member_ids(&self.reader, id).await?;
        self.acl.keep_members(epoch, id, &members);
        Ok(members)
    }

    async fn member_role(&self, group: GroupId, user: UserId) -> StoreResult<Option<Role>> {
        if let Some(role) = self.acl.role(group, user) {
            return Ok(Some(role));
        }
        let epoch = self.acl.epoch();
        let role = groups::member_role(&self.reader, group, user).await?;
        if let Some(role) = role {
            self.acl.keep_role(epoch, group, user, role);
        }
        Ok(role)
    }

    // Each change below clears the cache whether or not it succeeded: a
    // failed call may still have committed (a lost answer).

    async fn add_member(&self, group: GroupId, user: UserId, role: Role) -> StoreResult<()> {
        let added = self
            .gated(groups::add_member(&self.writer, group, user, role))
            .await;
        self.acl.changed();
        added
    }

    async fn remove_member(&self, group: GroupId, user: UserId) -> StoreResult<bool> {
        let removed = self
            .gated(groups::remove_member(&self.writer, group, user))
            .await;
        self.acl.changed();
        removed
    }

    async fn set_role(&self, group: GroupId, user: UserId, role: Role) -> StoreResult<bool> {
        let set = self
            .gated(groups::set_role(&self.writer, group, user, role))
            .await;
        self.acl.changed();
        set
    }

    async fn dissolve_group(&self, group: GroupId) -> StoreResult<Vec<UserId>> {
        let dissolved = self.gated(groups::dissolve(&self.writer, group)).await;
        self.acl.changed();
        dissolved
    }

    async fn groups_of(&self, user: UserId) -> StoreResult<Vec<Group>> {
        groups::groups_of(&self.reader, user).await
    }

    async fn create_file(&self, file: &FileRecord) -> StoreResult<()> {
        self.gated(accounts::create_file(&self.writer, file)).await
    }

    async fn file(&self, id: &str) -> StoreResult<Option<FileRecord>> {
        accounts::file(&self.reader, id).await
    }

    async fn append_messages(&self, batch: &[NewMessage]) -> StoreResult<Vec<Appended>> {
        self.batch.append(batch.to_vec()).await
    }

    async fn messages_after(
        &self,
        conversation: &str,
        after_seq: u64,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        messages::after(&self.reader, conversation, after_seq, limit).await
    }

    async fn history(
        &self,
        user: UserId,
        conversation: &str,
        before_seq: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        messages::history(&self.reader, user, conversation, before_seq, limit).await
    }

    async fn conversations(&self, user: UserId) -> StoreResult<Vec<ConversationSummary>> {
        messages::conversations(&self.reader, user).await
    }

    async fn offline_unread(&self, user: UserId, limit: u32) -> StoreResult<Vec<OfflineRow>> {
        self.inline.read(|c| offline::unread(c, user, limit))
    }

    async fn claim_offline(&self, row_id: u64) -> StoreResult<bool> {
        self.gated(offline::claim(&self.writer, row_id)).await
    }

    async fn claim_offline_keys(
        &self,
        user: UserId,
        keys: &[OfflineKey],
    ) -> StoreResult<Vec<OfflineKey>> {
        self.batch.claim(user, keys.to_vec()).await
    }

    async fn register_device(&self, user: UserId, device: &str) -> StoreResult<bool> {
        if self.inline.read(|c| devices::known(c, user, device))? {
            return Ok(false);
        }
        // New devices' writes merge with the rest in the hot writer's
        // transactions: one at a time, each was a transaction and an fsync
        // of its own, and new-device logins queued behind them.
        self.batch.register(user, device.to_owned()).await
    }

    async fn device_cursors(&self, user: UserId, device: &str) -> StoreResult<Vec<DeviceCursor>> {
        self.inline.read(|c| devices::cursors(c, user, device))
    }

    async fn release_offline(&self, row_ids: &[u64]) -> StoreResult<()> {
        self.gated(offline::release(&self.writer, row_ids)).await
    }

    async fn mark_delivered(
        &self,
        user: UserId,
        device: &str,
        messages: &[DeliveredMessage],
    ) -> StoreResult<Vec<ReceiptRecord>> {
        let (device, messages) = (device.to_owned(), messages.to_vec());
        self.batch.delivered(user, device, messages).await
    }

    async fn mark_read(
        &self,
        user: UserId,
        conversation: &str,
        seq: u64,
    ) -> StoreResult<Vec<ReceiptRecord>> {
        self.batch.read(user, conversation.to_owned(), seq).await
    }
}
