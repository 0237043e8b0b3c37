//! Appending messages (the group commit), reading them back, and the
//! conversation list.

use std::collections::HashMap;

use sqlx::{FromRow, SqliteConnection, SqlitePool};

use super::rows::{api_int, message_columns, parse_conversation, sql_int, MessageRow};
use crate::types::{
    conversation_of, now_ms, Appended, ConversationSummary, NewMessage, StoredMessage, Target,
    UserId,
};
use crate::{StoreError, StoreResult};

/// Stores a batch inside the caller's transaction (see `batch`): one commit,
/// one fsync, however many messages.
pub(super) async fn append(
    conn: &mut SqliteConnection,
    batch: &[NewMessage],
) -> StoreResult<Vec<Appended>> {
    let sent_at_ms = now_ms();
    let mut appended = Vec::with_capacity(batch.len());
    for message in batch {
        // Looked up inside the transaction, so a resend later in the same
        // batch finds the copy stored just before it.
        let earlier: Option<MessageRow> = sqlx::query_as(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages m WHERE m.from_user = ? AND m.client_msg_id = ?"
        ))
        .bind(sql_int(message.from_user))
        .bind(&message.client_msg_id)
        .fetch_optional(&mut *conn)
        .await?;
        let (message, duplicate) = match earlier {
            Some(row) => (row.into(), true),
            None => (insert(conn, message, sent_at_ms).await?, false),
        };
        appended.push(Appended { message, duplicate });
    }
    Ok(appended)
}

/// Stores one new message: the next seq of its conversation, a new msg_id,
/// and an unread offline row per recipient.
async fn insert(
    conn: &mut SqliteConnection,
    message: &NewMessage,
    sent_at_ms: u64,
) -> StoreResult<StoredMessage> {
    let conversation_id = conversation_of(message.from_user, message.target);
    let (to_user, to_group, kind) = match message.target {
        Target::User(user) => (user, 0, "direct"),
        Target::Group(group) => (0, group, "group"),
    };
    sqlx::query("INSERT OR IGNORE INTO conversations (id, kind, updated_at_ms) VALUES (?, ?, ?)")
        .bind(&conversation_id)
        .bind(kind)
        .bind(sql_int(sent_at_ms))
        .execute(&mut *conn)
        .await?;
    // The writer holds the database's write lock, so nothing else can take
    // the same seq between this and the commit.
    let seq: i64 = sqlx::query_scalar(
        "UPDATE conversations SET last_seq = last_seq + 1, updated_at_ms = ? \
         WHERE id = ? RETURNING last_seq",
    )
    .bind(sql_int(sent_at_ms))
    .bind(&conversation_id)
    .fetch_one(&mut *conn)
    .await?;
    let file = message.file.as_ref();
    let msg_id: i64 = sqlx::query_scalar(
        "INSERT INTO messages (conversation_id, seq, from_user, to_user, to_group, \
         client_msg_id, content_type, text, file_id, file_name, file_mime, file_size, \
         sent_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING msg_id",
    )
    .bind(&conversation_id)
    .bind(seq)
    .bind(sql_int(message.from_user))
    .bind(sql_int(to_user))
    .bind(sql_int(to_group))
    .bind(&message.client_msg_id)
    .bind(message.content_type)
    .bind(&message.text)
    .bind(file.map(|f| f.file_id.as_str()))
    .bind(file.map(|f| f.name.as_str()))
    .bind(file.map(|f| f.mime.as_str()))
    .bind(file.map(|f| sql_int(f.size)))
    .bind(sql_int(sent_at_ms))
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query("UPDATE conversations SET last_msg_id = ? WHERE id = ?")
        .bind(msg_id)
        .bind(&conversation_id)
        .execute(&mut *conn)
        .await?;
    // The sender has the message already; IGNORE drops a recipient listed twice.
    for &recipient in message
        .recipients
        .iter()
        .filter(|&&r| r != message.from_user)
    {
        sqlx::query("INSERT OR IGNORE INTO offline (user_id, msg_id) VALUES (?, ?)")
            .bind(sql_int(recipient))
            .bind(msg_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(StoredMessage {
        msg_id: api_int(msg_id),
        conversation_id,
        seq: api_int(seq),
        from_user: message.from_user,
        to_user,
        to_group,
        client_msg_id: message.client_msg_id.clone(),
        content_type: message.content_type,
        text: message.text.clone(),
        file: message.file.clone(),
        sent_at_ms,
    })
}

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
