//! The MySQL (MariaDB) backend: one database the nodes of a cluster share.
//!
//! SQLite has one writer; InnoDB runs transactions side by side and orders
//! them with row locks, so each transaction here locks what its checks rely
//! on. Every connection runs READ COMMITTED: a statement sees the latest
//! commit (a check made after taking a lock sees what the lock protects), and
//! no gap locks are taken, which would make inserts into the same range
//! deadlock. Where two transactions can still lock rows in opposite orders,
//! InnoDB breaks the tie by rolling one back, and `retry` runs it again.
//!
//! The multi-statement reads (history, the conversation list) run in a
//! REPEATABLE READ snapshot instead, so their statements agree.

mod accounts;
mod acks;
mod batch;
mod devices;
mod friends;
mod groups;
mod messages;
mod offline;
mod receipts;
mod retry;
mod rows;

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::{Connection, Executor, MySql, Transaction};

use self::acks::{Ack, AckQueue, Answer};
use self::friends::FriendChecks;
use self::rows::corrupt;
use crate::types::*;
use crate::{Store, StoreError, StoreResult};

/// How the cluster's store connects, beside its URL.
#[derive(Debug, Clone, Copy)]
pub struct MySqlOptions {
    /// Connections this process pools: the writers of the message log, the
    /// offline pulls, the logins and the REST reads, each holding one for a
    /// statement or transaction at a time. Every process of a cluster has
    /// its own pool, and all of them must fit the server's
    /// `max_connections` (151 in Debian's MariaDB).
    pub connections: u32,
}

impl Default for MySqlOptions {
    /// 16 connections: six pooled processes (`scripts/cluster.sh`) take 96.
    fn default() -> MySqlOptions {
        MySqlOptions { connections: 16 }
    }
}

/// A pooled connection idle at least this long is pinged before it is
/// handed out. sqlx pings every connection it hands out by default, and
/// again as it takes it back: three round trips to the server for each
/// statement run on the pool. One used this recently needs no ping; one
/// whose statement failed (the server restarted, say) fails the ping on
/// its way back and is closed there.
const PING_IF_IDLE: Duration = Duration::from_secs(1);

/// How long a node waits for another to finish migrating.
const MIGRATION_LOCK_WAIT: Duration = Duration::from_secs(60);

/// What every new connection runs first. Strict mode turns a value too long
/// for its column into an error rather than a silently cut one.
const SESSION_SETUP: [&str; 2] = [
    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
    "SET SESSION sql_mode = CONCAT(@@sql_mode, ',STRICT_ALL_TABLES')",
];

/// The cluster [`Store`]: a MySQL or MariaDB database.
#[derive(Debug, Clone)]
pub struct MySqlStore {
    pool: MySqlPool,
    acks: AckQueue,
    friend_checks: FriendChecks,
}

impl MySqlStore {
    /// Connects to the database `url` names (`mysql://user:pass@host:port/db`)
    /// and brings its schema up to date.
    pub async fn connect(url: &str) -> Result<MySqlStore, StoreError> {
        MySqlStore::connect_with(url, MySqlOptions::default()).await
    }

    /// [`MySqlStore::connect`] with a pool of `options.connections`.
    pub async fn connect_with(url: &str, options: MySqlOptions) -> Result<MySqlStore, StoreError> {
        let pool_size = options.connections.max(1);
        let options = MySqlConnectOptions::from_str(url)?;
        let pool = MySqlPoolOptions::new()
            .max_connections(pool_size)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IF_IDLE {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    for statement in SESSION_SETUP {
                        conn.execute(statement).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options.clone())
            .await?;
        migrate(&pool).await?;
        tracing::info!(
            host = options.get_host(),
            port = options.get_port(),
            database = options.get_database().unwrap_or(""),
            "mysql store connected"
        );
        Ok(MySqlStore {
            acks: acks::start(&pool),
            friend_checks: friends::start_checks(&pool),
            pool,
        })
    }

    /// Transactions the acks (DELIVERED, and claims of live receipts) took
    /// so far: fewer than the acks when the group commit joined them.
    pub fn ack_transactions(&self) -> u64 {
        self.acks.trips()
    }

    /// Statements the friendship checks took so far: fewer than the checks
    /// when they were read together.
    pub fn friend_check_reads(&self) -> u64 {
        self.friend_checks.trips()
    }

    /// Closes the pool, waiting for calls in progress to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The name of the server-wide lock migrations of this database take. Lock
/// names stop at 64 characters, database names do not, hence the hash.
macro_rules! migration_lock {
    () => {
        "CONCAT('im_store_migrate:', SHA1(DATABASE()))"
    };
}

/// Brings the schema up to date, one node at a time: nodes starting together
/// would otherwise apply the same migration twice. sqlx has a lock of its
/// own for this, but asks for it with `GET_LOCK(name, -1)`, which MariaDB
/// answers at once (with NULL) instead of waiting; this one waits.
async fn migrate(pool: &MySqlPool) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    let locked: Option<i64> =
        sqlx::query_scalar(concat!("SELECT GET_LOCK(", migration_lock!(), ", ?)"))
            .bind(MIGRATION_LOCK_WAIT.as_secs())
            .fetch_one(&mut *conn)
            .await?;
    if locked != Some(1) {
        let waited = std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "another node held the migration lock too long",
        );
        return Err(StoreError::Database(sqlx::Error::Io(waited)));
    }
    let mut migrator: Migrator = sqlx::migrate!("../sql/mysql");
    migrator.set_locking(false);
    let migrated = migrator.run_direct(&mut *conn).await;
    sqlx::query(concat!("SELECT RELEASE_LOCK(", migration_lock!(), ")"))
        .execute(&mut *conn)
        .await?;
    Ok(migrated?)
}

/// Starts a read-only transaction that sees one snapshot throughout. The
/// isolation level set here holds for this transaction only; the
/// connection's own (READ COMMITTED) comes back after it.
async fn begin_snapshot(pool: &MySqlPool) -> sqlx::Result<Transaction<'static, MySql>> {
    let mut conn = pool.acquire().await?;
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await?;
    let start = Cow::Borrowed("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY");
    Transaction::begin(conn, Some(start)).await
}

#[async_trait]
impl Store for MySqlStore {
    async fn close(&self) {
        MySqlStore::close(self).await
    }

    async fn create_user(&self, name: &str, password_hash: &str) -> StoreResult<User> {
        accounts::create_user(&self.pool, name, password_hash).await
    }

    async fn user_by_name(&self, name: &str) -> StoreResult<Option<(User, String)>> {
        accounts::user_by_name(&self.pool, name).await
    }

    async fn user(&self, id: UserId) -> StoreResult<Option<User>> {
        accounts::user(&self.pool, id).await
    }

    async fn create_token(&self, user: UserId, token_hash: &str) -> StoreResult<()> {
        accounts::create_token(&self.pool, user, token_hash).await
    }

    async fn token_user(&self, token_hash: &str) -> StoreResult<Option<UserId>> {
        accounts::token_user(&self.pool, token_hash).await
    }

    async fn revoke_token(&self, token_hash: &str) -> StoreResult<bool> {
        accounts::revoke_token(&self.pool, token_hash).await
    }

    async fn create_friend_request(
        &self,
        from: UserId,
        to: UserId,
        note: &str,
    ) -> StoreResult<FriendRequest> {
        friends::create_request(&self.pool, from, to, note).await
    }

    async fn friend_request(&self, id: u64) -> StoreResult<Option<FriendRequest>> {
        friends::request(&self.pool, id).await
    }

    async fn pending_friend_requests(&self, user: UserId) -> StoreResult<Vec<FriendRequest>> {
        friends::pending_requests(&self.pool, user).await
    }

    async fn resolve_friend_request(&self, id: u64, accept: bool) -> StoreResult<FriendRequest> {
        friends::resolve_request(&self.pool, id, accept).await
    }

    async fn friends(&self, user: UserId) -> StoreResult<Vec<Friend>> {
        friends::friends(&self.pool, user).await
    }

    async fn are_friends(&self, a: UserId, b: UserId) -> StoreResult<bool> {
        self.friend_checks.call((a, b)).await
    }

    async fn remove_friend(&self, user: UserId, friend: UserId) -> StoreResult<bool> {
        friends::remove_friend(&self.pool, user, friend).await
    }

    async fn set_remark(
        &self,
        user: UserId,
        friend: UserId,
        remark: Option<&str>,
    ) -> StoreResult<bool> {
        friends::set_remark(&self.pool, user, friend, remark).await
    }

    async fn create_group(&self, creator: UserId, name: &str) -> StoreResult<Group> {
        groups::create_group(&self.pool, creator, name).await
    }

    async fn group(&self, id: GroupId) -> StoreResult<Option<Group>> {
        groups::group(&self.pool, id).await
    }

    async fn group_members(&self, id: GroupId) -> StoreResult<Vec<GroupMember>> {
        groups::members(&self.pool, id).await
    }

    async fn group_member_ids(&self, id: GroupId) -> StoreResult<Vec<UserId>> {
        groups::member_ids(&self.pool, id).await
    }

    async fn member_role(&self, group: GroupId, user: UserId) -> StoreResult<Option<Role>> {
        groups::member_role(&self.pool, group, user).await
    }

    async fn add_member(&self, group: GroupId, user: UserId, role: Role) -> StoreResult<()> {
        groups::add_member(&self.pool, group, user, role).await
    }

    async fn remove_member(&self, group: GroupId, user: UserId) -> StoreResult<bool> {
        groups::remove_member(&self.pool, group, user).await
    }

    async fn set_role(&self, group: GroupId, user: UserId, role: Role) -> StoreResult<bool> {
        groups::set_role(&self.pool, group, user, role).await
    }

    async fn dissolve_group(&self, group: GroupId) -> StoreResult<Vec<UserId>> {
        groups::dissolve(&self.pool, group).await
    }

    async fn groups_of(&self, user: UserId) -> StoreResult<Vec<Group>> {
        groups::groups_of(&self.pool, user).await
    }

    async fn create_file(&self, file: &FileRecord) -> StoreResult<()> {
        accounts::create_file(&self.pool, file).await
    }

    async fn file(&self, id: &str) -> StoreResult<Option<FileRecord>> {
        accounts::file(&self.pool, id).await
    }

    async fn append_messages(&self, batch: &[NewMessage]) -> StoreResult<Vec<Appended>> {
        messages::append(&self.pool, batch).await
    }

    async fn messages_after(
        &self,
        conversation: &str,
        after_seq: u64,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        messages::after(&self.pool, conversation, after_seq, limit).await
    }

    async fn history(
        &self,
        user: UserId,
        conversation: &str,
        before_seq: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        messages::history(&self.pool, user, conversation, before_seq, limit).await
    }

    async fn conversations(&self, user: UserId) -> StoreResult<Vec<ConversationSummary>> {
        messages::conversations(&self.pool, user).await
    }

    async fn offline_unread(&self, user: UserId, limit: u32) -> StoreResult<Vec<OfflineRow>> {
        offline::unread(&self.pool, user, limit).await
    }

    async fn claim_offline(&self, row_id: u64) -> StoreResult<bool> {
        offline::claim(&self.pool, row_id).await
    }

    async fn claim_offline_keys(
        &self,
        user: UserId,
        keys: &[OfflineKey],
    ) -> StoreResult<Vec<OfflineKey>> {
        let ack = Ack::Claim {
            user,
            keys: keys.to_vec(),
        };
        match self.acks.call(ack).await? {
            Answer::Claimed(claimed) => Ok(claimed),
            Answer::Receipts(_) => Err(corrupt("receipts answering a claim".into())),
        }
    }

    async fn register_device(&self, user: UserId, device: &str) -> StoreResult<bool> {
        devices::register(&self.pool, user, device).await
    }

    async fn login_device(
        &self,
        token_hash: &str,
        device: &str,
    ) -> StoreResult<Option<(UserId, bool)>> {
        devices::login(&self.pool, token_hash, device).await
    }

    async fn device_cursors(&self, user: UserId, device: &str) -> StoreResult<Vec<DeviceCursor>> {
        devices::cursors(&self.pool, user, device).await
    }

    async fn release_offline(&self, row_ids: &[u64]) -> StoreResult<()> {
        offline::release(&self.pool, row_ids).await
    }

    async fn mark_delivered(
        &self,
        user: UserId,
        device: &str,
        messages: &[DeliveredMessage],
    ) -> StoreResult<Vec<ReceiptRecord>> {
        let ack = Ack::Delivered {
            user,
            device: device.to_owned(),
            messages: messages.to_vec(),
        };
        match self.acks.call(ack).await? {
            Answer::Receipts(receipts) => Ok(receipts),
            Answer::Claimed(_) => Err(corrupt("claims answering a delivered ack".into())),
        }
    }

    async fn mark_read(
        &self,
        user: UserId,
        conversation: &str,
        seq: u64,
    ) -> StoreResult<Vec<ReceiptRecord>> {
        receipts::mark_read(&self.pool, user, conversation, seq).await
    }
}
