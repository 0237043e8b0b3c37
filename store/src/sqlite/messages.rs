//! Reading messages back, and the conversation list. Appending them (the
//! group commit) is on the hot path, `hot`.

use std::collections::HashMap;

use sqlx::{FromRow, SqlitePool};

use super::rows::{api_int, message_columns, parse_conversation, sql_int, MessageRow};
use crate::types::{ConversationSummary, StoredMessage, UserId};
use crate::{StoreError, StoreResult};

pub(super) async fn after(
    reader: &SqlitePool,
    conversation: &str,
    after_seq: u64,
    limit: u32,
) -> StoreResult<Vec<StoredMessage>> {
    let rows: Vec<MessageRow> = sqlx::query_as(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages m WHERE m.conversation_id = ? AND m.seq > ? AND m.seq <= ? \
         ORDER BY m.seq"
    ))
    .bind(conversation)
    .bind(sql_int(after_seq))
    .bind(sql_int(after_seq.saturating_add(u64::from(limit))))
    .fetch_all(reader)
    .await?;
    Ok(rows.into_iter().map(StoredMessage::from).collect())
}

/// `Forbidden` if `user` is not a member of the conversation.
pub(super) async fn history(
    reader: &SqlitePool,
    user: UserId,
    conversation: &str,
    before_seq: Option<u64>,
    limit: u32,
) -> StoreResult<Vec<StoredMessage>> {
    // One read transaction: the membership checked is the one the page uses.
    let mut tx = reader.begin().await?;
    let start_seq: i64 = sqlx::query_scalar(
        "SELECT start_seq FROM conversation_members WHERE conversation_id = ? AND user_id = ?",
    )
    .bind(conversation)
    .bind(sql_int(user))
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(StoreError::Forbidden)?;
    let rows: Vec<MessageRow> = sqlx::query_as(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages m WHERE m.conversation_id = ? AND m.seq > ? AND m.seq < ? \
         ORDER BY m.seq DESC LIMIT ?"
    ))
    .bind(conversation)
    .bind(start_seq)
    .bind(before_seq.map_or(i64::MAX, sql_int))
    .bind(i64::from(limit))
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows.into_iter().map(StoredMessage::from).collect())
}

#[derive(FromRow)]
struct SummaryRow {
    id: String,
    last_seq: i64,
    read_seq: i64,
    unread: i64,
}

pub(super) async fn conversations(
    reader: &SqlitePool,
    user: UserId,
) -> StoreResult<Vec<ConversationSummary>> {
    let user_id = sql_int(user);
    // One read transaction, so the summaries and their last messages agree.
    let mut tx = reader.begin().await?;
    // Unread counts messages from others past both the read cursor and the
    // point the user joined. Within one millisecond, the later msg_id is the
    // more recent activity.
    let summaries: Vec<SummaryRow> = sqlx::query_as(
        "SELECT c.id, c.last_seq, m.read_seq, \
           (SELECT COUNT(*) FROM messages x WHERE x.conversation_id = c.id \
              AND x.seq > MAX(m.read_seq, m.start_seq) AND x.from_user <> m.user_id) AS unread \
         FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id \
         WHERE m.user_id = ? \
         ORDER BY c.updated_at_ms DESC, c.last_msg_id DESC, c.id",
    )
    .bind(user_id)
    .fetch_all(&mut *tx)
    .await?;
    // A last message from before the user joined is not theirs to see.
    let last_messages: Vec<MessageRow> = sqlx::query_as(concat!(
        "SELECT ",
        message_columns!(),
        " FROM conversation_members cm \
          JOIN conversations c ON c.id = cm.conversation_id \
          JOIN messages m ON m.msg_id = c.last_msg_id \
          WHERE cm.user_id = ? AND m.seq > cm.start_seq"
    ))
    .bind(user_id)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;

    let mut last_messages: HashMap<String, StoredMessage> = last_messages
        .into_iter()
        .map(|row| {
            let message = StoredMessage::from(row);
            (message.conversation_id.clone(), message)
        })
        .collect();
    summaries
        .into_iter()
        .map(|row| {
            let (kind, peer_user, group_id) = parse_conversation(&row.id, user)?;
            Ok(ConversationSummary {
                last_message: last_messages.remove(&row.id),
                id: row.id,
                kind,
                peer_user,
                group_id,
                last_seq: api_int(row.last_seq),
                read_seq: api_int(row.read_seq),
                unread: api_int(row.unread),
            })
        })
        .collect()
}
