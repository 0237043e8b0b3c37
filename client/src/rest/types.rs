//! The JSON bodies of the REST API, as typed structs. They serialize back to
//! the same shape, which is what the CLI prints.

use im_proto::v1::FileRef;
use serde::{Deserialize, Deserializer, Serialize};

/// An account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Numeric user id, as used on the link.
    pub id: u64,
    /// Unique login name.
    pub name: String,
    /// Creation time, milliseconds since the Unix epoch.
    #[serde(default)]
    pub created_at_ms: u64,
}

/// Answer to a login: the bearer token and who it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Bearer token for REST calls and the link's `Login`.
    pub token: String,
    /// The logged-in user.
    pub user: User,
}

/// Where a friend request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestStatus {
    /// Not answered yet.
    Pending,
    /// Accepted: the two users are friends.
    Accepted,
    /// Rejected by the recipient.
    Rejected,
}

/// A friend request, sent or received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendRequest {
    /// Request id, used to accept or reject it.
    pub id: u64,
    /// Who asked.
    pub from_user: u64,
    /// Name of who asked.
    #[serde(default, deserialize_with = "null_default")]
    pub from_name: String,
    /// Who was asked.
    pub to_user: u64,
    /// Name of who was asked.
    #[serde(default, deserialize_with = "null_default")]
    pub to_name: String,
    /// The note sent with the request.
    #[serde(default, deserialize_with = "null_default")]
    pub note: String,
    /// Where the request stands.
    pub status: RequestStatus,
    /// Creation time, milliseconds since the Unix epoch.
    #[serde(default)]
    pub created_at_ms: u64,
}

/// One entry of the friend list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Friend {
    /// The friend's user id.
    pub user_id: u64,
    /// The friend's name.
    pub name: String,
    /// A private display name set with `set_remark`.
    #[serde(default)]
    pub remark: Option<String>,
    /// When the friendship began, milliseconds since the Unix epoch.
    #[serde(default)]
    pub since_ms: u64,
    /// Whether any device of the friend is online.
    #[serde(default)]
    pub online: bool,
}

/// A group as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Group id (the conversation id is `g{id}`).
    pub id: u64,
    /// Display name.
    pub name: String,
    /// User id of the creator.
    pub creator: u64,
    /// Creation time, milliseconds since the Unix epoch.
    #[serde(default)]
    pub created_at_ms: u64,
}

/// A member's role in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupRole {
    /// Made the group; may dissolve it.
    Creator,
    /// May kick members.
    Admin,
    /// An ordinary member.
    Member,
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    /// The member's user id.
    pub user_id: u64,
    /// The member's name.
    pub name: String,
    /// The member's role.
    pub role: GroupRole,
    /// When they joined, milliseconds since the Unix epoch.
    #[serde(default)]
    pub joined_at_ms: u64,
}

/// A group with its members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    /// Group id.
    pub id: u64,
    /// Display name.
    pub name: String,
    /// User id of the creator.
    pub creator: u64,
    /// Creation time, milliseconds since the Unix epoch.
    #[serde(default)]
    pub created_at_ms: u64,
    /// Everyone in the group.
    #[serde(default)]
    pub members: Vec<GroupMember>,
}

/// One-to-one or group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConversationKind {
    /// Two users; id `u{lo}-{hi}`.
    Direct,
    /// A group; id `g{id}`.
    Group,
}

/// What a stored message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentKind {
    /// Text only.
    Text,
    /// An uploaded image, with an optional caption.
    Image,
    /// An uploaded file, with an optional caption.
    File,
}

impl ContentKind {
    /// `text`, `image` or `file`.
    pub fn as_str(self) -> &'static str {
        match self {
            ContentKind::Text => "text",
            ContentKind::Image => "image",
            ContentKind::File => "file",
        }
    }
}

/// A file reference inside a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// Id for `GET /v1/files/{id}`.
    #[serde(deserialize_with = "string_or_number")]
    pub file_id: String,
    /// Original file name.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// MIME type.
    #[serde(default, deserialize_with = "null_default")]
    pub mime: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: u64,
}

/// A message from history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// Global message id.
    pub msg_id: u64,
    /// Conversation it belongs to.
    pub conversation_id: String,
    /// Position in the conversation (1, 2, 3 ...).
    pub seq: u64,
    /// Sender.
    pub from_user: u64,
    /// Recipient of a direct message.
    #[serde(default, deserialize_with = "zero_as_none")]
    pub to_user: Option<u64>,
    /// Recipient group of a group message.
    #[serde(default, deserialize_with = "zero_as_none")]
    pub to_group: Option<u64>,
    /// The sender's id for the message.
    #[serde(default, deserialize_with = "null_default")]
    pub client_msg_id: String,
    /// What it carries.
    pub content_type: ContentKind,
    /// Text, or the caption of an image or file.
    #[serde(default, deserialize_with = "null_default")]
    pub text: String,
    /// The file of an image or file message.
    #[serde(default)]
    pub file: Option<FileInfo>,
    /// When the server stored it, milliseconds since the Unix epoch.
    #[serde(default)]
    pub sent_at_ms: u64,
}

/// A recent conversation with its unread count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// `u{lo}-{hi}` or `g{id}`.
    pub id: String,
    /// Direct or group.
    pub kind: ConversationKind,
    /// The other user of a direct conversation.
    #[serde(default, deserialize_with = "zero_as_none")]
    pub peer_user: Option<u64>,
    /// The group of a group conversation.
    #[serde(default, deserialize_with = "zero_as_none")]
    pub group_id: Option<u64>,
    /// Highest sequence in the conversation.
    #[serde(default)]
    pub last_seq: u64,
    /// Highest sequence this user marked read.
    #[serde(default)]
    pub read_seq: u64,
    /// Messages from others after `read_seq`.
    #[serde(default)]
    pub unread: u64,
    /// The newest message, if any.
    #[serde(default)]
    pub last_message: Option<StoredMessage>,
}

/// One page of history, newest last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagePage {
    /// The messages of this page.
    pub messages: Vec<StoredMessage>,
    /// Pass as `before_seq` for the previous page; `None` at the beginning.
    #[serde(default)]
    pub next_before_seq: Option<u64>,
}

/// An uploaded file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    /// Id for `GET /v1/files/{id}` and for `FileRef.file_id`.
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
    /// Uploader's user id.
    #[serde(default)]
    pub owner: u64,
    /// File name.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// MIME type.
    #[serde(default, deserialize_with = "null_default")]
    pub mime: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: u64,
    /// Upload time, milliseconds since the Unix epoch.
    #[serde(default)]
    pub created_at_ms: u64,
}

impl FileMeta {
    /// The reference a chat message carries for this file.
    pub fn to_file_ref(&self) -> FileRef {
        FileRef {
            file_id: self.id.clone(),
            name: self.name.clone(),
            mime: self.mime.clone(),
            size: self.size,
        }
    }
}

/// The REST error body.
#[derive(Debug, Deserialize)]
pub(crate) struct ApiErrorBody {
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// `null` (or a missing field, with `#[serde(default)]`) as the type's default.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// An optional id: `null`, a missing field or `0` (the server's "none")
/// are all `None`.
fn zero_as_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(Option::<u64>::deserialize(d)?.filter(|id| *id != 0))
}

/// File ids are strings on the link; accept a JSON number too.
fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(u64),
    }
    Ok(match Id::deserialize(d)? {
        Id::Text(s) => s,
        Id::Number(n) => n.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_tolerates_nulls_and_numeric_file_ids() {
        let page: MessagePage = serde_json::from_str(
            r#"{"messages":[{"msg_id":7,"conversation_id":"u1-2","seq":1,"from_user":1,
            "to_user":2,"to_group":0,"client_msg_id":"c","content_type":"image",
            "text":null,"file":{"file_id":42,"name":"a.png","mime":"image/png","size":3},
            "sent_at_ms":5}],"next_before_seq":null}"#,
        )
        .unwrap();
        let m = &page.messages[0];
        assert_eq!(m.text, "");
        assert_eq!((m.to_user, m.to_group), (Some(2), None));
        assert_eq!(m.content_type, ContentKind::Image);
        assert_eq!(m.file.as_ref().unwrap().file_id, "42");
        assert_eq!(page.next_before_seq, None);
    }

    #[test]
    fn enums_use_lowercase_names() {
        let m: GroupMember =
            serde_json::from_str(r#"{"user_id":1,"name":"a","role":"admin","joined_at_ms":0}"#)
                .unwrap();
        assert_eq!(m.role, GroupRole::Admin);
        assert_eq!(
            serde_json::to_value(RequestStatus::Pending).unwrap(),
            "pending"
        );
    }
}
