//! Between SQLite rows and the store's records: the message row every query
//! that returns messages shares; the conversions shared with the MySQL
//! backend live in `crate::convert`.

use sqlx::FromRow;

pub(super) use crate::convert::{
    api_int, is_unique_violation, message_columns, missing_reference, offline_row,
    parse_conversation, role_from_sql, sql_int, status_from_sql, status_to_sql, UnreadColumns,
    MESSAGE_ROW,
};
use crate::types::{FileRef, StoredMessage};

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
