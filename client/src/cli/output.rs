//! What the CLI prints: one JSON document per command on stdout, events as
//! JSON Lines, errors as `{"error":{"code","message"}}` on stderr.

use std::io::Write;

use im_client::im_proto::v1::{ChatMessage, FileRef, Receipt};
use im_client::{
    ClientError, ContentType, ErrorCode, Event, FriendEventKind, GroupEventKind, ReceiptKind,
};
use serde::Serialize;
use serde_json::{json, Value};

/// A failed command: a stable code and a message.
#[derive(Debug)]
pub struct CliError {
    /// Stable code: the server's (e.g. `NOT_FRIENDS`) or the CLI's.
    pub code: String,
    /// Human-readable detail.
    pub message: String,
}

impl CliError {
    /// An error with a CLI-side code such as `NOT_LOGGED_IN`.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        CliError {
            code: code.to_string(),
            message: message.into(),
        }
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        CliError {
            code: e.code().to_string(),
            message: e.message(),
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::new("IO", e.to_string())
    }
}

/// The result of a CLI command.
pub type CliResult<T = ()> = Result<T, CliError>;

/// Prints one JSON document on stdout.
pub fn print_json(value: &impl Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("{}", error_json(&CliError::new("INTERNAL", e.to_string()))),
    }
}

/// Prints one JSON line on stdout and flushes, so a pipe sees it at once.
pub fn print_line(value: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

/// The error document printed on stderr.
pub fn error_json(e: &CliError) -> Value {
    json!({ "error": { "code": e.code, "message": e.message } })
}

/// An enum value's wire name in lower case (`SENT` → `sent`).
fn lower(name: Option<&str>) -> String {
    name.unwrap_or("unspecified").to_ascii_lowercase()
}

/// `text`, `image` or `file`.
pub fn content_name(value: i32) -> String {
    lower(ContentType::try_from(value).ok().map(|c| c.as_str_name()))
}

fn file_json(file: &Option<FileRef>) -> Value {
    match file {
        Some(f) => json!({ "file_id": f.file_id, "name": f.name, "mime": f.mime, "size": f.size }),
        None => Value::Null,
    }
}

/// A chat message as JSON.
pub fn message_json(m: &ChatMessage) -> Value {
    json!({
        "type": "message",
        "msg_id": m.msg_id,
        "conversation_id": m.conversation_id,
        "seq": m.seq,
        "from_user": m.from_user,
        "to_user": (m.to_user != 0).then_some(m.to_user),
        "to_group": (m.to_group != 0).then_some(m.to_group),
        "client_msg_id": m.client_msg_id,
        "content_type": content_name(m.content_type),
        "text": m.text,
        "file": file_json(&m.file),
        "sent_at_ms": m.sent_at_ms,
        "offline": m.offline,
    })
}

/// A receipt as JSON.
pub fn receipt_json(r: &Receipt) -> Value {
    json!({
        "type": "receipt",
        "kind": lower(ReceiptKind::try_from(r.kind).ok().map(|k| k.as_str_name())),
        "msg_id": r.msg_id,
        "conversation_id": r.conversation_id,
        "seq": r.seq,
        "client_msg_id": r.client_msg_id,
        "by_user": r.by_user,
        "at_ms": r.at_ms,
    })
}

/// Any link event as one JSON object with a `type`.
pub fn event_json(event: &Event) -> Value {
    match event {
        Event::Message(m) => message_json(m),
        Event::Receipt(r) => receipt_json(r),
        Event::SyncDone {
            offline_count,
            synced_count,
        } => json!({
            "type": "sync_done",
            "offline_count": offline_count,
            "synced_count": synced_count,
        }),
        Event::FriendRequest(f) => json!({
            "type": "friend_request",
            "request_id": f.request_id,
            "from_user": f.from_user,
            "from_name": f.from_name,
            "note": f.note,
        }),
        Event::Friend(f) => json!({
            "type": "friend",
            "kind": lower(FriendEventKind::try_from(f.kind).ok().map(|k| k.as_str_name())),
            "user_id": f.user_id,
            "name": f.name,
        }),
        Event::Presence(p) => json!({
            "type": "presence",
            "user_id": p.user_id,
            "online": p.online,
        }),
        Event::Group(g) => json!({
            "type": "group",
            "kind": lower(GroupEventKind::try_from(g.kind).ok().map(|k| k.as_str_name())),
            "group_id": g.group_id,
            "user_id": g.user_id,
        }),
        Event::Error(e) => json!({
            "type": "error",
            "code": ErrorCode::try_from(e.code).map(|c| c.name()).unwrap_or("UNKNOWN"),
            "message": e.message,
            "ref_id": e.ref_id,
            "client_msg_id": e.client_msg_id,
        }),
        Event::Closed { code, message } => json!({
            "type": "closed",
            "code": code.map(|c| c.name()),
            "message": message,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_render_with_a_type_and_lowercase_kinds() {
        let receipt = Receipt {
            kind: ReceiptKind::Delivered as i32,
            msg_id: 4,
            by_user: 9,
            ..Default::default()
        };
        let v = event_json(&Event::Receipt(receipt));
        assert_eq!(v["type"], "receipt");
        assert_eq!(v["kind"], "delivered");
        let closed = event_json(&Event::Closed {
            code: Some(ErrorCode::TokenRevoked),
            message: "bye".into(),
        });
        assert_eq!(closed["code"], "TOKEN_REVOKED");
        let m = message_json(&ChatMessage {
            to_group: 3,
            content_type: ContentType::Image as i32,
            ..Default::default()
        });
        assert_eq!(
            (m["to_user"].clone(), m["to_group"].clone()),
            (Value::Null, json!(3))
        );
        assert_eq!(m["content_type"], "image");
    }
}
