//! Appending messages (the group commit), reading them back, and the
//! conversation list.

use std::collections::{BTreeMap, HashMap};

use sqlx::{FromRow, MySql, MySqlConnection, MySqlPool, QueryBuilder};

use super::begin_snapshot;
use super::retry::retry_when;
use super::rows::{
    api_int, is_duplicate, message_columns, parse_conversation, sql_int, MessageRow, Text,
};
use crate::types::{
    conversation_of, now_ms, Appended, ConversationSummary, NewMessage, StoredMessage, Target,
    UserId,
};
use crate::{StoreError, StoreResult};

/// Offline rows per INSERT: far below the 65,535 placeholders a statement
/// may carry, however large the group.
const OFFLINE_ROWS_PER_INSERT: usize = 1000;

/// What append makes of one message of the batch.
enum Planned {
    /// A resend of a message stored before this batch.
    Stored(StoredMessage),
    /// A resend of the message at this index of the batch.
    SameAs(usize),
    /// A message to store.
    New,
}

/// A conversation the batch writes to, locked for the transaction.
struct Allocator {
    kind: &'static str,
    last_seq: i64,
    last_msg_id: Option<i64>,
}

/// One transaction for the whole batch. A resend racing its original into
/// another conversation collides on the (from_user, client_msg_id) key, the
/// one wait the conversation locks do not cover; run again, the batch finds
/// the original and reports the resend as a duplicate.
pub(super) async fn append(pool: &MySqlPool, batch: &[NewMessage]) -> StoreResult<Vec<Appended>> {
    let sent_at_ms = now_ms();
    retry_when(is_duplicate, || append_once(pool, batch, sent_at_ms)).await
}

async fn append_once(
    pool: &MySqlPool,
    batch: &[NewMessage],
    sent_at_ms: u64,
) -> StoreResult<Vec<Appended>> {
    let mut tx = pool.begin().await?;

    // Which messages are resends: of one stored earlier, or of one earlier in
    // this batch.
    let mut plans = Vec::with_capacity(batch.len());
    let mut first_of: HashMap<(UserId, &str), usize> = HashMap::new();
    for (index, message) in batch.iter().enumerate() {
        let key = (message.from_user, message.client_msg_id.as_str());
        if let Some(&first) = first_of.get(&key) {
            plans.push(Planned::SameAs(first));
            continue;
        }
        first_of.insert(key, index);
        let earlier: Option<MessageRow> = sqlx::query_as(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages m WHERE m.from_user = ? AND m.client_msg_id = ?"
        ))
        .bind(sql_int(message.from_user))
        .bind(&message.client_msg_id)
        .fetch_optional(&mut *tx)
        .await?;
        plans.push(match earlier {
            Some(row) => Planned::Stored(row.into()),
            None => Planned::New,
        });
    }

    // Lock every conversation that gets a message, in id order, so batches
    // writing to the same conversations wait for each other instead of
    // deadlocking. The lock holds each last_seq until commit.
    let mut allocators: BTreeMap<String, Allocator> = BTreeMap::new();
    for (message, plan) in batch.iter().zip(&plans) {
        if let Planned::New = plan {
            let kind = match message.target {
                Target::User(_) => "direct",
                Target::Group(_) => "group",
            };
            allocators
                .entry(conversation_of(message.from_user, message.target))
                .or_insert(Allocator {
                    kind,
                    last_seq: 0,
                    last_msg_id: None,
                });
        }
    }
    for (conversation, allocator) in &mut allocators {
        allocator.last_seq =
            lock_conversation(&mut tx, conversation, allocator.kind, sent_at_ms).await?;
    }

    // Stored in batch order; a resend of a message earlier in the batch
    // comes after it, and is answered with it.
    let mut appended: Vec<Appended> = Vec::with_capacity(batch.len());
    for (message, plan) in batch.iter().zip(plans) {
        let next = match plan {
            Planned::New => Appended {
                message: insert(&mut tx, &mut allocators, message, sent_at_ms).await?,
                duplicate: false,
            },
            Planned::Stored(message) => Appended {
                message,
                duplicate: true,
            },
            Planned::SameAs(first) => Appended {
                message: appended[first].message.clone(),
                duplicate: true,
            },
        };
        appended.push(next);
    }
    for (conversation, allocator) in &allocators {
        sqlx::query(
            "UPDATE conversations SET last_seq = ?, last_msg_id = ?, updated_at_ms = ? \
             WHERE id = ?",
        )
        .bind(allocator.last_seq)
        .bind(allocator.last_msg_id)
        .bind(sql_int(sent_at_ms))
        .bind(conversation)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(appended)
}

/// Creates the conversation if it is new and locks its row; returns its last
/// seq. The insert's no-op update takes the row's exclusive lock at once: a
/// shared lock first (what `INSERT IGNORE` takes on an existing row) would
/// have to be upgraded by the `FOR UPDATE`, and two batches upgrading the same
/// row deadlock.
async fn lock_conversation(
    conn: &mut MySqlConnection,
    conversation: &str,
    kind: &str,
    sent_at_ms: u64,
) -> StoreResult<i64> {
    sqlx::query(
        "INSERT INTO conversations (id, kind, updated_at_ms) VALUES (?, ?, ?) \
         ON DUPLICATE KEY UPDATE id = id",
    )
    .bind(conversation)
    .bind(kind)
    .bind(sql_int(sent_at_ms))
    .execute(&mut *conn)
    .await?;
    let last_seq = sqlx::query_scalar("SELECT last_seq FROM conversations WHERE id = ? FOR UPDATE")
        .bind(conversation)
        .fetch_one(&mut *conn)
        .await?;
    Ok(last_seq)
}

/// Stores one new message: the next seq of its (locked) conversation, a new
/// msg_id, and an unread offline row per recipient.
async fn insert(
    conn: &mut MySqlConnection,
    allocators: &mut BTreeMap<String, Allocator>,
    message: &NewMessage,
    sent_at_ms: u64,
) -> StoreResult<StoredMessage> {
    let conversation_id = conversation_of(message.from_user, message.target);
    let (to_user, to_group) = match message.target {
        Target::User(user) => (user, 0),
        Target::Group(group) => (0, group),
    };
    let allocator = allocators
        .get_mut(&conversation_id)
        .expect("every conversation of a new message is locked");
    allocator.last_seq += 1;
    let seq = allocator.last_seq;
    let file = message.file.as_ref();
    let msg_id = sqlx::query(
        "INSERT INTO messages (conversation_id, seq, from_user, to_user, to_group, \
         client_msg_id, content_type, text, file_id, file_name, file_mime, file_size, \
         sent_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
    .execute(&mut *conn)
    .await?
    .last_insert_id();
    let msg_id = sql_int(msg_id);
    allocator.last_msg_id = Some(msg_id);

    // The sender has the message already; a recipient listed twice gets one
    // row. Rows are numbered in the order the recipients are listed.
    let mut recipients: Vec<UserId> = Vec::with_capacity(message.recipients.len());
    for &recipient in &message.recipients {
        if recipient != message.from_user && !recipients.contains(&recipient) {
            recipients.push(recipient);
        }
    }
    for chunk in recipients.chunks(OFFLINE_ROWS_PER_INSERT) {
        QueryBuilder::<MySql>::new("INSERT INTO offline (user_id, msg_id) ")
            .push_values(chunk, |mut row, &recipient| {
                row.push_bind(sql_int(recipient)).push_bind(msg_id);
            })
            .build()
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
    pool: &MySqlPool,
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
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(StoredMessage::from).collect())
}

/// `Forbidden` if `user` is not a member of the conversation.
pub(super) async fn history(
    pool: &MySqlPool,
    user: UserId,
    conversation: &str,
    before_seq: Option<u64>,
    limit: u32,
) -> StoreResult<Vec<StoredMessage>> {
    // One snapshot: the membership checked is the one the page uses.
    let mut tx = begin_snapshot(pool).await?;
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
    id: Text,
    last_seq: i64,
    read_seq: i64,
    unread: i64,
}

pub(super) async fn conversations(
    pool: &MySqlPool,
    user: UserId,
) -> StoreResult<Vec<ConversationSummary>> {
    let user_id = sql_int(user);
    // One snapshot, so the summaries and their last messages agree.
    let mut tx = begin_snapshot(pool).await?;
    // Unread counts messages from others past both the read cursor and the
    // point the user joined. Within one millisecond, the later msg_id is the
    // more recent activity.
    let summaries: Vec<SummaryRow> = sqlx::query_as(
        "SELECT c.id, c.last_seq, m.read_seq, \
           (SELECT COUNT(*) FROM messages x WHERE x.conversation_id = c.id \
              AND x.seq > GREATEST(m.read_seq, m.start_seq) AND x.from_user <> m.user_id) \
             AS unread \
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
            let id = row.id.0;
            let (kind, peer_user, group_id) = parse_conversation(&id, user)?;
            Ok(ConversationSummary {
                last_message: last_messages.remove(&id),
                id,
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
