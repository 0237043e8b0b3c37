//! Between SQL values and the store's records, for both backends: integer
//! conversions, the stored forms of enums and conversation ids, the message
//! columns every query that returns messages selects, and error mapping.

use crate::types::{
    ConversationKind, GroupId, OfflineItem, OfflineRow, ReceiptKind, ReceiptRecord, RequestStatus,
    Role, StoredMessage, UserId,
};
use crate::StoreError;

/// A `u64` from the API as SQL's `i64`. A value past `i64::MAX` names no row,
/// so it is clamped (and finds nothing) rather than wrapped to a negative id.
pub(crate) fn sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A stored `i64` as the API's `u64`; the schema stores no negative ids,
/// sequences or times.
pub(crate) fn api_int(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// The columns a backend's `MessageRow` reads, from `messages` aliased `m`.
macro_rules! message_columns {
    () => {
        "m.msg_id, m.conversation_id, m.seq, m.from_user, m.to_user, m.to_group, \
         m.client_msg_id, m.content_type, m.text, m.file_id, m.file_name, m.file_mime, \
         m.file_size, m.sent_at_ms"
    };
}
pub(crate) use message_columns;

/// What a conversation id says: its kind, and the other user (for `user`) of
/// a direct one or the group of a group one; the unused id is 0.
pub(crate) fn parse_conversation(
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
pub(crate) fn status_to_sql(status: RequestStatus) -> &'static str {
    match status {
        RequestStatus::Pending => "pending",
        RequestStatus::Accepted => "accepted",
        RequestStatus::Rejected => "rejected",
    }
}

/// The request status stored as `value`.
pub(crate) fn status_from_sql(value: &str) -> Result<RequestStatus, StoreError> {
    match value {
        "pending" => Ok(RequestStatus::Pending),
        "accepted" => Ok(RequestStatus::Accepted),
        "rejected" => Ok(RequestStatus::Rejected),
        other => Err(corrupt(format!("request status {other:?}"))),
    }
}

/// The role stored as `value`.
pub(crate) fn role_from_sql(value: i64) -> Result<Role, StoreError> {
    Role::from_i64(value).ok_or_else(|| corrupt(format!("role {value}")))
}

/// `offline.receipt_kind` of a row holding the message itself.
pub(crate) const MESSAGE_ROW: i64 = 0;

/// The columns of one unread `offline` row, beside its message.
pub(crate) struct UnreadColumns {
    pub(crate) id: i64,
    pub(crate) user: i64,
    pub(crate) receipt_kind: i64,
    pub(crate) receipt_by: i64,
    pub(crate) receipt_at_ms: i64,
}

/// An unread row as the store hands it out: the message itself, or a
/// receipt about it for its sender.
pub(crate) fn offline_row(
    row: UnreadColumns,
    message: StoredMessage,
) -> Result<OfflineRow, StoreError> {
    let item = if row.receipt_kind == MESSAGE_ROW {
        OfflineItem::Message(message)
    } else {
        let kind = ReceiptKind::from_i64(row.receipt_kind)
            .ok_or_else(|| corrupt(format!("offline receipt kind {}", row.receipt_kind)))?;
        // A receipt row belongs to the message's sender, who is its recipient.
        OfflineItem::Receipt(ReceiptRecord {
            kind,
            msg_id: message.msg_id,
            conversation_id: message.conversation_id,
            seq: message.seq,
            client_msg_id: message.client_msg_id,
            to_user: api_int(row.user),
            by_user: api_int(row.receipt_by),
            at_ms: api_int(row.receipt_at_ms),
        })
    };
    Ok(OfflineRow {
        id: api_int(row.id),
        item,
    })
}

/// A stored value the schema should not allow; reported like any database
/// failure (logged, `INTERNAL` to clients).
pub(crate) fn corrupt(what: String) -> StoreError {
    StoreError::Database(sqlx::Error::Decode(format!("unexpected {what}").into()))
}

/// True if `error` is a UNIQUE or PRIMARY KEY constraint failure.
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

/// Maps a FOREIGN KEY failure (an id that names no row, such as an unknown
/// user) to `NotFound`; anything else stays a database error.
pub(crate) fn missing_reference(error: sqlx::Error) -> StoreError {
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
