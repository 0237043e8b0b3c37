//! Plain records the store reads and writes. Ids are `u64` on the wire and
//! `i64` in SQL; the conversion lives in the backends.

use serde::{Deserialize, Serialize};

/// A user's numeric id.
pub type UserId = u64;
/// A group's numeric id.
pub type GroupId = u64;
/// A message's global id.
pub type MsgId = u64;

/// Milliseconds since the Unix epoch, the one clock every record uses.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A registered account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Assigned by the store.
    pub id: UserId,
    /// Unique login name.
    pub name: String,
    /// Creation time.
    pub created_at_ms: u64,
}

/// Where a friend request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Waiting for the recipient.
    Pending,
    /// The recipient accepted; the two are friends.
    Accepted,
    /// The recipient said no.
    Rejected,
}

/// A request from one user to befriend another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendRequest {
    /// Assigned by the store.
    pub id: u64,
    /// Who asked.
    pub from_user: UserId,
    /// Name of who asked.
    pub from_name: String,
    /// Who is asked.
    pub to_user: UserId,
    /// Name of who is asked.
    pub to_name: String,
    /// Free text from the asker.
    pub note: String,
    /// Current state.
    pub status: RequestStatus,
    /// When it was made.
    pub created_at_ms: u64,
}

/// One entry in a user's friend list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Friend {
    /// The friend's id.
    pub user_id: UserId,
    /// The friend's name.
    pub name: String,
    /// The owner's private name for this friend, if set.
    pub remark: Option<String>,
    /// When the friendship started.
    pub since_ms: u64,
}

/// A role within a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Plain member.
    Member = 1,
    /// May kick members.
    Admin = 2,
    /// Made the group; may dissolve it and appoint admins.
    Creator = 3,
}

impl Role {
    /// The integer stored in SQL.
    pub fn as_i64(self) -> i64 {
        self as i64
    }

    /// The role stored as `value`, if it is one.
    pub fn from_i64(value: i64) -> Option<Role> {
        match value {
            1 => Some(Role::Member),
            2 => Some(Role::Admin),
            3 => Some(Role::Creator),
            _ => None,
        }
    }
}

/// A chat group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Assigned by the store.
    pub id: GroupId,
    /// Display name.
    pub name: String,
    /// Who made it.
    pub creator: UserId,
    /// When it was made.
    pub created_at_ms: u64,
}

/// A member of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    /// The member.
    pub user_id: UserId,
    /// The member's name.
    pub name: String,
    /// The member's role.
    pub role: Role,
    /// When they joined.
    pub joined_at_ms: u64,
}

/// An uploaded file (image or any file) a message may refer to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Opaque id (a UUID).
    pub id: String,
    /// Who uploaded it.
    pub owner: UserId,
    /// Original file name.
    pub name: String,
    /// MIME type.
    pub mime: String,
    /// Size in bytes.
    pub size: u64,
    /// Upload time.
    pub created_at_ms: u64,
}

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Target {
    /// One-to-one with this user.
    User(UserId),
    /// To every member of this group.
    Group(GroupId),
}

/// The conversation id of a one-to-one chat: the same for both sides.
pub fn direct_conversation(a: UserId, b: UserId) -> String {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    format!("u{lo}-{hi}")
}

/// The conversation id of a group chat.
pub fn group_conversation(group: GroupId) -> String {
    format!("g{group}")
}

/// Whether `conversation` is a group chat's (see [`group_conversation`]).
pub fn is_group_conversation(conversation: &str) -> bool {
    conversation.starts_with('g')
}

/// The conversation a message from `from` to `target` belongs to.
pub fn conversation_of(from: UserId, target: Target) -> String {
    match target {
        Target::User(to) => direct_conversation(from, to),
        Target::Group(group) => group_conversation(group),
    }
}

/// A message to be stored. `recipients` are the users (not the sender) it
/// goes to; the transfer computes them from friendship or membership. Each
/// recipient of a direct message gets an offline row; a group's members
/// catch up by their devices' cursors instead (read diffusion: one row per
/// group message, however many members).
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    /// Sender.
    pub from_user: UserId,
    /// Client-made id; (from_user, client_msg_id) is unique.
    pub client_msg_id: String,
    /// Destination.
    pub target: Target,
    /// `im_proto::v1::ContentType` as i32.
    pub content_type: i32,
    /// Text body (empty for files unless a caption is given).
    pub text: String,
    /// The file an image or file message refers to.
    pub file: Option<FileRef>,
    /// Users the message goes to (an offline row each, if direct).
    pub recipients: Vec<UserId>,
}

/// The file reference carried in a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// `FileRecord::id`.
    pub file_id: String,
    /// File name.
    pub name: String,
    /// MIME type.
    pub mime: String,
    /// Size in bytes.
    pub size: u64,
}

/// A stored message with its global id and per-conversation sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// Global id, increasing in commit order.
    pub msg_id: MsgId,
    /// See `conversation_of`.
    pub conversation_id: String,
    /// 1, 2, 3 ... within the conversation.
    pub seq: u64,
    /// Sender.
    pub from_user: UserId,
    /// Recipient of a one-to-one message, else 0.
    pub to_user: UserId,
    /// Group of a group message, else 0.
    pub to_group: GroupId,
    /// The sender's client-made id.
    pub client_msg_id: String,
    /// `im_proto::v1::ContentType` as i32.
    pub content_type: i32,
    /// Text body.
    pub text: String,
    /// File reference for image and file messages.
    pub file: Option<FileRef>,
    /// Commit time.
    pub sent_at_ms: u64,
}

/// Result of appending one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    /// The stored message (the earlier one if this was a resend).
    pub message: StoredMessage,
    /// True when (from_user, client_msg_id) was already stored: nothing new was
    /// written and the message must not be delivered again.
    pub duplicate: bool,
}

/// DELIVERED or READ (SENT is never stored: it is the answer to the send).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReceiptKind {
    /// A device of the recipient has the message.
    Delivered,
    /// The recipient read the message.
    Read,
}

impl ReceiptKind {
    /// The integer stored in SQL (the `im_proto::v1::ReceiptKind` value).
    pub fn as_i64(self) -> i64 {
        match self {
            ReceiptKind::Delivered => 2,
            ReceiptKind::Read => 3,
        }
    }

    /// The kind stored as `value`, if it is one.
    pub fn from_i64(value: i64) -> Option<ReceiptKind> {
        match value {
            2 => Some(ReceiptKind::Delivered),
            3 => Some(ReceiptKind::Read),
            _ => None,
        }
    }
}

/// A stored receipt, on its way back to the message's sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptRecord {
    /// DELIVERED or READ.
    pub kind: ReceiptKind,
    /// The message it is about.
    pub msg_id: MsgId,
    /// The message's conversation.
    pub conversation_id: String,
    /// The message's sequence.
    pub seq: u64,
    /// The message's client-made id.
    pub client_msg_id: String,
    /// The message's sender: who gets this receipt.
    pub to_user: UserId,
    /// The recipient who got or read it.
    pub by_user: UserId,
    /// When.
    pub at_ms: u64,
}

/// Identifies one offline row of a user: a message, or a receipt about one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OfflineKey {
    /// The row for a message to this user.
    Message(MsgId),
    /// The row for a receipt to this user.
    Receipt {
        /// The message the receipt is about.
        msg_id: MsgId,
        /// DELIVERED or READ.
        kind: ReceiptKind,
        /// Who delivered or read it.
        by_user: UserId,
    },
}

/// What an offline row holds.
#[derive(Debug, Clone, PartialEq)]
pub enum OfflineItem {
    /// A message no device of the user has received yet.
    Message(StoredMessage),
    /// A receipt no device of the user has received yet.
    Receipt(ReceiptRecord),
}

/// One unread offline row.
#[derive(Debug, Clone, PartialEq)]
pub struct OfflineRow {
    /// Row id; rows of one user are pulled in id order.
    pub id: u64,
    /// What the row holds.
    pub item: OfflineItem,
}

/// A message a device has acknowledged, as the connector pushed it: the
/// fields are the stored message's (the client acks frame ids, never
/// message fields). SQLite takes them as given; MySQL reads the messages
/// back, one statement per batch of acks, and skips ids it does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredMessage {
    /// The message.
    pub msg_id: MsgId,
    /// Its conversation.
    pub conversation_id: String,
    /// Its sequence.
    pub seq: u64,
    /// Its sender, who is owed the DELIVERED receipt.
    pub from_user: UserId,
    /// The sender's id for it, which the receipt carries back.
    pub client_msg_id: String,
}

impl From<&StoredMessage> for DeliveredMessage {
    fn from(m: &StoredMessage) -> Self {
        DeliveredMessage {
            msg_id: m.msg_id,
            conversation_id: m.conversation_id.clone(),
            seq: m.seq,
            from_user: m.from_user,
            client_msg_id: m.client_msg_id.clone(),
        }
    }
}

/// Whether a conversation is one-to-one or a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationKind {
    /// Two users.
    Direct,
    /// A group.
    Group,
}

/// One line of a user's recent-conversations list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationSummary {
    /// Conversation id.
    pub id: String,
    /// Direct or group.
    pub kind: ConversationKind,
    /// The other user of a direct conversation, else 0.
    pub peer_user: UserId,
    /// The group of a group conversation, else 0.
    pub group_id: GroupId,
    /// Highest sequence in the conversation.
    pub last_seq: u64,
    /// Highest sequence this user has marked read.
    pub read_seq: u64,
    /// Messages from others after `read_seq`.
    pub unread: u64,
    /// The newest message, if any.
    pub last_message: Option<StoredMessage>,
}

/// Where a device stands in one conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCursor {
    /// The conversation.
    pub conversation_id: String,
    /// Highest seq the device has acked (or the member's start_seq).
    pub cursor: u64,
    /// The conversation's last seq.
    pub last_seq: u64,
}

/// What the store keeps of a login token: its SHA-256, hex-encoded, so a
/// leaked database does not leak usable tokens.
pub fn hash_token(token: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl OfflineRow {
    /// The key that names this row among its user's rows.
    pub fn key(&self) -> OfflineKey {
        match &self.item {
            OfflineItem::Message(m) => OfflineKey::Message(m.msg_id),
            OfflineItem::Receipt(r) => OfflineKey::Receipt {
                msg_id: r.msg_id,
                kind: r.kind,
                by_user: r.by_user,
            },
        }
    }
}
