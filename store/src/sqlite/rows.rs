//! Between SQL rows and the store's records: integer conversions, the message
//! row every query that returns messages shares, and error mapping.

use sqlx::FromRow;

use crate::types::{
    ConversationKind, FileRef, GroupId, RequestStatus, Role, StoredMessage, UserId,
};
use crate::StoreError;

/// A `u64` from the API as SQL's `i64`. A value past `i64::MAX` names no row,
/// so it is clamped (and finds nothing) rather than wrapped to a negative id.
pub(super) fn sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A stored `i64` as the API's `u64`; the schema stores no negative ids,
/// sequences or times.
pub(super) fn api_int(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// The columns a [`MessageRow`] reads, from `messages` aliased `m`.
macro_rules! message_columns {
    () => {
        "m.msg_id, m.conversation_id, m.seq, m.from_user, m.to_user, m.to_group, \
         m.client_msg_id, m.content_type, m.text, m.file_id, m.file_name, m.file_mime, \
         m.file_size, m.sent_at_ms"
    };
}
pub(super) use message_columns;

/// One row of `messages`, as [`message_columns!`] selects it.
#[derive(FromRow)]
pub(super) struct MessageRow {
    msg_id: i64,
    conversation_id: String,
    seq: i64,
    from_user: i64,
    to_user: i64,
    to_group: i64,
    client_msg_id: String,
    content_type: i32,
    text: String,
    file_id: Option<String>,
    file_name: Option<String>,
    file_mime: Option<String>,
    file_size: Option<i64>,
    sent_at_ms: i64,
}

impl From<MessageRow> for StoredMessage {
    fn from(row: MessageRow) -> StoredMessage {
        let file = row.file_id.map(|file_id| FileRef {
            file_id,
            name: row.file_name.unwrap_or_default(),
            mime: row.file_mime.unwrap_or_default(),
            size: api_int(row.file_size.unwrap_or(0)),
        });
        StoredMessage {
            msg_id: api_int(row.msg_id),
            conversation_id: row.conversation_id,
            seq: api_int(row.seq),
            from_user: api_int(row.from_user),
            to_user: api_int(row.to_user),
            to_group: api_int(row.to_group),
            client_msg_id: row.client_msg_id,
            content_type: row.content_type,
            text: row.text,
            file,
            sent_at_ms: api_int(row.sent_at_ms),
        }
    }
}

/// What a conversation id says: its kind, and the other user (for `user`) of
/// a direct one or the group of a group one; the unused id is 0.
pub(super) fn parse_conversation(
    id: &str,
    user: UserId,
) -> Result<(ConversationKind, UserId, GroupId), StoreError> {
    let corrupt = || corrupt(format!("conversation id {id:?}"));
    if let Some(pair) = id.strip_prefix('u') {
        let (lo, hi) = pair.split_once('-').ok_or_else(corrupt)?;
        let lo: UserId = lo.parse().map_err(|_| corrupt())?;
        let hi: UserId = hi.parse().map_err(|_| corrupt())?;
        let peer = if lo == user { hi } else { lo };
        Ok((ConversationKind::Direct, peer, 0))
    } else if let Some(group) = id.strip_prefix('g') {
        let group: GroupId = group.parse().map_err(|_| corrupt())?;
        Ok((ConversationKind::Group, 0, group))
    } else {
        Err(corrupt())
    }
}

/// How a request status is stored.
pub(super) fn status_to_sql(status: RequestStatus) -> &'static str {
    match status {
        RequestStatus::Pending => "pending",
        RequestStatus::Accepted => "accepted",
        RequestStatus::Rejected => "rejected",
    }
}

/// The request status stored as `value`.
pub(super) fn status_from_sql(value: &str) -> Result<RequestStatus, StoreError> {
    match value {
        "pending" => Ok(RequestStatus::Pending),
        "accepted" => Ok(RequestStatus::Accepted),
        "rejected" => Ok(RequestStatus::Rejected),
        other => Err(corrupt(format!("request status {other:?}"))),
    }
}

/// The role stored as `value`.
pub(super) fn role_from_sql(value: i64) -> Result<Role, StoreError> {
    Role::from_i64(value).ok_or_else(|| corrupt(format!("role {value}")))
}

/// A stored value the schema should not allow; reported like any database
/// failure (logged, `INTERNAL` to clients).
pub(super) fn corrupt(what: String) -> StoreError {
    StoreError::Database(sqlx::Error::Decode(format!("unexpected {what}").into()))
}

/// True if `error` is a UNIQUE or PRIMARY KEY constraint failure.
pub(super) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

/// Maps a FOREIGN KEY failure (an id that names no row, such as an unknown
/// user) to `NotFound`; anything else stays a database error.
pub(super) fn missing_reference(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(e) if e.is_foreign_key_violation() => StoreError::NotFound,
        _ => StoreError::Database(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_conversation_names_the_other_user() {
        let (kind, peer, group) = parse_conversation("u3-17", 3).unwrap();
        assert_eq!((kind, peer, group), (ConversationKind::Direct, 17, 0));
        let (_, peer, _) = parse_conversation("u3-17", 17).unwrap();
        assert_eq!(peer, 3);
    }

    #[test]
    fn group_conversation_names_the_group() {
        let parsed = parse_conversation("g42", 3).unwrap();
        assert_eq!(parsed, (ConversationKind::Group, 0, 42));
    }

    #[test]
    fn malformed_conversation_ids_are_errors() {
        for id in ["", "x1", "u1", "u1-", "gx", "u-2"] {
            assert!(parse_conversation(id, 1).is_err(), "{id}");
        }
    }

    #[test]
    fn ids_past_i64_are_clamped_not_wrapped() {
        assert_eq!(sql_int(u64::MAX), i64::MAX);
        assert_eq!(sql_int(7), 7);
        assert_eq!(api_int(-1), 0);
    }
}
