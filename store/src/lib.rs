//! The durable store behind one trait. The single-node default is
//! [`SqliteStore`]; the cluster mode plugs in [`MySqlStore`] behind the same
//! trait.
//!
//! The store holds data, not policy: who may kick whom, or who may message
//! whom, is decided by the callers (rest_api, transfer) from what it returns.

mod convert;
mod error;
mod mysql;
mod sqlite;
pub mod types;

use async_trait::async_trait;

pub use error::StoreError;
pub use mysql::{MySqlOptions, MySqlStore};
pub use sqlite::{SqliteOptions, SqliteStore};
pub use types::*;

/// Result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// Everything the IM server keeps durably.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Closes the connections after the last write; the default does nothing.
    async fn close(&self) {}

    // ---- accounts and tokens ----

    /// Creates an account. `StoreError::NameTaken` if the name is in use.
    async fn create_user(&self, name: &str, password_hash: &str) -> StoreResult<User>;
    /// The user with this name and their password hash.
    async fn user_by_name(&self, name: &str) -> StoreResult<Option<(User, String)>>;
    /// The user with this id.
    async fn user(&self, id: UserId) -> StoreResult<Option<User>>;
    /// Records a login token (its SHA-256, hex) for `user`.
    async fn create_token(&self, user: UserId, token_hash: &str) -> StoreResult<()>;
    /// The user a live (not revoked) token belongs to.
    async fn token_user(&self, token_hash: &str) -> StoreResult<Option<UserId>>;
    /// Revokes a token; true if it was live.
    async fn revoke_token(&self, token_hash: &str) -> StoreResult<bool>;

    // ---- friends ----

    /// Records a pending request. `Conflict` if one is already pending between
    /// the two (either direction).
    async fn create_friend_request(
        &self,
        from: UserId,
        to: UserId,
        note: &str,
    ) -> StoreResult<FriendRequest>;
    /// A request by id.
    async fn friend_request(&self, id: u64) -> StoreResult<Option<FriendRequest>>;
    /// Pending requests to or from `user`, newest first.
    async fn pending_friend_requests(&self, user: UserId) -> StoreResult<Vec<FriendRequest>>;
    /// Moves a pending request to accepted or rejected. On accept, in the same
    /// transaction: the friendship both ways, and the direct conversation with
    /// both users as members (start_seq = its current last seq). `Conflict` if
    /// the request is no longer pending.
    async fn resolve_friend_request(&self, id: u64, accept: bool) -> StoreResult<FriendRequest>;
    /// `user`'s friends, by name.
    async fn friends(&self, user: UserId) -> StoreResult<Vec<Friend>>;
    /// True if each has the other as a friend.
    async fn are_friends(&self, a: UserId, b: UserId) -> StoreResult<bool>;
    /// Ends a friendship both ways; true if there was one.
    async fn remove_friend(&self, user: UserId, friend: UserId) -> StoreResult<bool>;
    /// Sets (or clears, with None) `user`'s remark for `friend`; false if not friends.
    async fn set_remark(
        &self,
        user: UserId,
        friend: UserId,
        remark: Option<&str>,
    ) -> StoreResult<bool>;

    // ---- groups ----

    /// Creates a group with `creator` as its creator member, and its conversation.
    async fn create_group(&self, creator: UserId, name: &str) -> StoreResult<Group>;
    /// A live (not dissolved) group.
    async fn group(&self, id: GroupId) -> StoreResult<Option<Group>>;
    /// Members of a group with names and roles, creator first.
    async fn group_members(&self, id: GroupId) -> StoreResult<Vec<GroupMember>>;
    /// Ids of a group's members.
    async fn group_member_ids(&self, id: GroupId) -> StoreResult<Vec<UserId>>;
    /// `user`'s role in the group, if a member.
    async fn member_role(&self, group: GroupId, user: UserId) -> StoreResult<Option<Role>>;
    /// Adds a member (and their conversation membership, start_seq = the current
    /// last seq). `Conflict` if already a member.
    async fn add_member(&self, group: GroupId, user: UserId, role: Role) -> StoreResult<()>;
    /// Removes a member (and their conversation membership); true if they were one.
    async fn remove_member(&self, group: GroupId, user: UserId) -> StoreResult<bool>;
    /// Changes a member's role; false if not a member.
    async fn set_role(&self, group: GroupId, user: UserId, role: Role) -> StoreResult<bool>;
    /// Marks a group dissolved and removes every member; returns who they were.
    async fn dissolve_group(&self, group: GroupId) -> StoreResult<Vec<UserId>>;
    /// Live groups `user` belongs to, by id.
    async fn groups_of(&self, user: UserId) -> StoreResult<Vec<Group>>;

    // ---- files ----

    /// Records an uploaded file.
    async fn create_file(&self, file: &FileRecord) -> StoreResult<()>;
    /// A file by id.
    async fn file(&self, id: &str) -> StoreResult<Option<FileRecord>>;

    // ---- messages ----

    /// Appends messages in one transaction (group commit). For each: if
    /// (from_user, client_msg_id) exists, returns the stored one with
    /// `duplicate: true` and writes nothing; otherwise allocates the next seq of
    /// its conversation and a global msg_id, stores it, and writes one unread
    /// offline row per recipient. Results are in input order.
    async fn append_messages(&self, batch: &[NewMessage]) -> StoreResult<Vec<Appended>>;
    /// Messages of a conversation with seq in (after_seq, after_seq + limit], in order.
    async fn messages_after(
        &self,
        conversation: &str,
        after_seq: u64,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>>;
    /// History page for a member: messages with seq < before_seq (or the newest
    /// if None) and seq > the member's start_seq, newest first, at most `limit`.
    /// `Forbidden` if `user` is not a member of the conversation.
    async fn history(
        &self,
        user: UserId,
        conversation: &str,
        before_seq: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>>;
    /// `user`'s conversations, most recently active first, with unread counts.
    async fn conversations(&self, user: UserId) -> StoreResult<Vec<ConversationSummary>>;

    // ---- offline queue, cursors, receipts ----

    /// Up to `limit` unread offline rows of `user`, in row id order.
    async fn offline_unread(&self, user: UserId, limit: u32) -> StoreResult<Vec<OfflineRow>>;
    /// The compare-and-set: `UPDATE offline SET has_read = 1 WHERE id = ? AND
    /// has_read = 0`. True for exactly one caller per row.
    async fn claim_offline(&self, row_id: u64) -> StoreResult<bool>;
    /// Claims the offline rows of `user` named by `keys` (the same CAS, by key);
    /// returns which keys this call claimed.
    async fn claim_offline_keys(
        &self,
        user: UserId,
        keys: &[OfflineKey],
    ) -> StoreResult<Vec<OfflineKey>>;
    /// Registers a device on first login: creates its cursors at the current
    /// last seq of each of the user's conversations, so a new device starts
    /// from now (what no device has yet still comes from the offline rows).
    /// Returns true if the device was new.
    async fn register_device(&self, user: UserId, device: &str) -> StoreResult<bool>;
    /// A link's login: the user a live token belongs to, with `device`
    /// registered as [`register_device`](Store::register_device) does, and
    /// whether it was new; None for a token that is not live. A backend may
    /// answer both in one statement.
    async fn login_device(
        &self,
        token_hash: &str,
        device: &str,
    ) -> StoreResult<Option<(UserId, bool)>> {
        let Some(user) = self.token_user(token_hash).await? else {
            return Ok(None);
        };
        let new = self.register_device(user, device).await?;
        Ok(Some((user, new)))
    }
    /// The device's cursor for every conversation of the user: the highest seq
    /// it has acked, or the member's start_seq where it has none, with the
    /// conversation's last seq.
    async fn device_cursors(&self, user: UserId, device: &str) -> StoreResult<Vec<DeviceCursor>>;
    /// Undoes claims of rows that were handed to a device which then went away
    /// without acknowledging them: `UPDATE offline SET has_read = 0 WHERE id IN`.
    async fn release_offline(&self, row_ids: &[u64]) -> StoreResult<()>;
    /// A device of `user` acknowledged these messages. In one transaction:
    /// advance the device's cursors (never lowering them), claim the user's
    /// offline rows for them, and for each message from someone else that has
    /// no DELIVERED receipt by `user` yet, store one (unique per message and
    /// user) plus an unread offline row for the sender. Returns the receipts
    /// this call created. Messages sent by `user` itself only move the cursor.
    async fn mark_delivered(
        &self,
        user: UserId,
        device: &str,
        messages: &[DeliveredMessage],
    ) -> StoreResult<Vec<ReceiptRecord>>;
    /// `user` read `conversation` up to `seq`: raises the read cursor (never
    /// lowers it), and for each message from someone else newly covered stores a
    /// READ receipt (once per message and reader) and an unread offline row for
    /// its sender. Returns the new receipts. `Forbidden` if not a member.
    async fn mark_read(
        &self,
        user: UserId,
        conversation: &str,
        seq: u64,
    ) -> StoreResult<Vec<ReceiptRecord>>;
}
