//! Appending messages (the group commit), reading them back, and the
//! conversation list.

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::{FromRow, MySql, MySqlConnection, MySqlPool, QueryBuilder};

use super::begin_snapshot;
use super::retry::retry_when;
use super::rows::{
    api_int, corrupt, is_duplicate, message_columns, parse_conversation, push_any_of, push_list,
    sql_int, MessageRow, Text, IN_VALUES, ROWS_PER_STATEMENT,
};
use crate::types::{
    conversation_of, now_ms, Appended, ConversationSummary, NewMessage, StoredMessage, Target,
    UserId,
};
use crate::{StoreError, StoreResult};

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
    let mut keys: Vec<(UserId, &str)> = batch
        .iter()
        .map(|m| (m.from_user, m.client_msg_id.as_str()))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let mut earlier = stored_by_client_id(&mut tx, &keys).await?;
    let mut first_of: HashMap<(UserId, &str), usize> = HashMap::new();
    let mut plans = Vec::with_capacity(batch.len());
    for (index, message) in batch.iter().enumerate() {
        let key = (message.from_user, message.client_msg_id.as_str());
        if let Some(&first) = first_of.get(&key) {
            plans.push(Planned::SameAs(first));
            continue;
        }
        first_of.insert(key, index);
        plans.push(match earlier.remove(&(key.0, key.1.to_owned())) {
            Some(stored) => Planned::Stored(stored),
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
    lock_conversations(&mut tx, &mut allocators, sent_at_ms).await?;

    // Each new message takes the next seq of its conversation, in batch
    // order.
    let mut new: Vec<NewRow> = Vec::new();
    for (index, (message, plan)) in batch.iter().zip(&plans).enumerate() {
        if let Planned::New = plan {
            let conversation_id = conversation_of(message.from_user, message.target);
            let allocator = allocators
                .get_mut(&conversation_id)
                .expect("every conversation of a new message is locked");
            allocator.last_seq += 1;
            new.push(NewRow {
                index,
                seq: allocator.last_seq,
                conversation_id,
                msg_id: 0,
            });
        }
    }
    insert_messages(&mut tx, batch, &mut new, sent_at_ms).await?;
    for row in &new {
        allocators
            .get_mut(&row.conversation_id)
            .expect("locked above")
            .last_msg_id = Some(row.msg_id);
    }
    insert_offline_rows(&mut tx, batch, &new).await?;
    update_conversations(&mut tx, &allocators, sent_at_ms).await?;
    tx.commit().await?;

    // Answered in batch order; a resend of a message earlier in the batch
    // comes after it, and is answered with it.
    let mut new = new.into_iter();
    let mut appended: Vec<Appended> = Vec::with_capacity(batch.len());
    for (index, (message, plan)) in batch.iter().zip(plans).enumerate() {
        let next = match plan {
            Planned::New => {
                let row = new.next().filter(|r| r.index == index).expect("in order");
                Appended {
                    message: stored_message(message, row, sent_at_ms),
                    duplicate: false,
                }
            }
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
    Ok(appended)
}

/// A message of the batch that is new: where it goes, and its msg_id once
/// inserted.
struct NewRow {
    index: usize,
    conversation_id: String,
    seq: i64,
    msg_id: i64,
}

/// The stored messages among `keys` (sender, client id), by key. One
/// statement per [`ROWS_PER_STATEMENT`] keys, each key a point on the
/// `(from_user, client_msg_id)` unique key.
async fn stored_by_client_id(
    tx: &mut MySqlConnection,
    keys: &[(UserId, &str)],
) -> StoreResult<HashMap<(UserId, String), StoredMessage>> {
    let mut stored = HashMap::new();
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let mut select = QueryBuilder::<MySql>::new(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages m WHERE "
        ));
        let pairs = chunk.iter().map(|&(user, id)| (sql_int(user), id));
        push_any_of(&mut select, ("m.from_user", "m.client_msg_id"), pairs);
        let rows: Vec<MessageRow> = select.build_query_as().fetch_all(&mut *tx).await?;
        for row in rows {
            let message = StoredMessage::from(row);
            stored.insert((message.from_user, message.client_msg_id.clone()), message);
        }
    }
    Ok(stored)
}

/// Creates the conversations that are new and locks every row, in id
/// order; sets each allocator's last seq. The insert's no-op update takes
/// each row's exclusive lock at once: a shared lock first (what `INSERT
/// IGNORE` takes on an existing row) would have to be upgraded by the `FOR
/// UPDATE`, and two batches upgrading the same row deadlock.
async fn lock_conversations(
    tx: &mut MySqlConnection,
    allocators: &mut BTreeMap<String, Allocator>,
    sent_at_ms: u64,
) -> StoreResult<()> {
    let all: Vec<(&String, &'static str)> = allocators.iter().map(|(c, a)| (c, a.kind)).collect();
    let mut last_seqs: HashMap<String, i64> = HashMap::with_capacity(all.len());
    for chunk in all.chunks(IN_VALUES) {
        QueryBuilder::<MySql>::new("INSERT INTO conversations (id, kind, updated_at_ms) ")
            .push_values(chunk, |mut row, (conversation, kind)| {
                row.push_bind(conversation.as_str())
                    .push_bind(*kind)
                    .push_bind(sql_int(sent_at_ms));
            })
            .push(" ON DUPLICATE KEY UPDATE id = id")
            .build()
            .execute(&mut *tx)
            .await?;
        let mut select =
            QueryBuilder::<MySql>::new("SELECT id, last_seq FROM conversations WHERE id IN ");
        push_list(&mut select, chunk.iter().map(|(c, _)| c.as_str()));
        select.push(" FOR UPDATE");
        let rows: Vec<(Text, i64)> = select.build_query_as().fetch_all(&mut *tx).await?;
        last_seqs.extend(rows.into_iter().map(|(id, seq)| (id.0, seq)));
    }
    for (conversation, allocator) in allocators.iter_mut() {
        allocator.last_seq = *last_seqs
            .get(conversation)
            .ok_or_else(|| corrupt(format!("conversation {conversation} not locked")))?;
    }
    Ok(())
}

/// Inserts the new messages in batch order and reads back the msg_id each
/// was given (by its conversation and seq: ids are increasing within a
/// statement, but consecutive only under some `innodb_autoinc_lock_mode`s).
async fn insert_messages(
    tx: &mut MySqlConnection,
    batch: &[NewMessage],
    new: &mut [NewRow],
    sent_at_ms: u64,
) -> StoreResult<()> {
    for chunk in new.chunks_mut(ROWS_PER_STATEMENT) {
        QueryBuilder::<MySql>::new(
            "INSERT INTO messages (conversation_id, seq, from_user, to_user, to_group, \
             client_msg_id, content_type, text, file_id, file_name, file_mime, file_size, \
             sent_at_ms) ",
        )
        .push_values(chunk.iter(), |mut row, new| {
            let message = &batch[new.index];
            let (to_user, to_group) = targets(message.target);
            let file = message.file.as_ref();
            row.push_bind(new.conversation_id.as_str())
                .push_bind(new.seq)
                .push_bind(sql_int(message.from_user))
                .push_bind(sql_int(to_user))
                .push_bind(sql_int(to_group))
                .push_bind(message.client_msg_id.as_str())
                .push_bind(message.content_type)
                .push_bind(message.text.as_str())
                .push_bind(file.map(|f| f.file_id.as_str()))
                .push_bind(file.map(|f| f.name.as_str()))
                .push_bind(file.map(|f| f.mime.as_str()))
                .push_bind(file.map(|f| sql_int(f.size)))
                .push_bind(sql_int(sent_at_ms));
        })
        .build()
        .execute(&mut *tx)
        .await?;
        let mut select =
            QueryBuilder::<MySql>::new("SELECT conversation_id, seq, msg_id FROM messages WHERE ");
        let pairs = chunk
            .iter()
            .map(|new| (new.conversation_id.as_str(), new.seq));
        push_any_of(&mut select, ("conversation_id", "seq"), pairs);
        let rows: Vec<(Text, i64, i64)> = select.build_query_as().fetch_all(&mut *tx).await?;
        let ids: HashMap<(String, i64), i64> = rows
            .into_iter()
            .map(|(conversation, seq, msg_id)| ((conversation.0, seq), msg_id))
            .collect();
        for new in chunk.iter_mut() {
            new.msg_id = *ids
                .get(&(new.conversation_id.clone(), new.seq))
                .ok_or_else(|| corrupt(format!("message {} not read back", new.seq)))?;
        }
    }
    Ok(())
}

/// An unread offline row per recipient of each new direct message,
/// numbered in batch order and, within a message, in the order its
/// recipients are listed. The sender has the message already; a recipient
/// listed twice gets one row. A group's members catch up by their cursors
/// instead.
async fn insert_offline_rows(
    tx: &mut MySqlConnection,
    batch: &[NewMessage],
    new: &[NewRow],
) -> StoreResult<()> {
    let mut rows: Vec<(i64, i64)> = Vec::new();
    let mut seen: HashSet<UserId> = HashSet::new();
    for new in new {
        let message = &batch[new.index];
        if matches!(message.target, Target::Group(_)) {
            continue;
        }
        seen.clear();
        for &recipient in &message.recipients {
            if recipient != message.from_user && seen.insert(recipient) {
                rows.push((sql_int(recipient), new.msg_id));
            }
        }
    }
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        QueryBuilder::<MySql>::new("INSERT INTO offline (user_id, msg_id) ")
            .push_values(chunk, |mut row, &(user, msg_id)| {
                row.push_bind(user).push_bind(msg_id);
            })
            .build()
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// Moves each locked conversation to its new last message, in one
/// statement: every row exists and is locked, so the upsert only updates.
async fn update_conversations(
    tx: &mut MySqlConnection,
    allocators: &BTreeMap<String, Allocator>,
    sent_at_ms: u64,
) -> StoreResult<()> {
    let all: Vec<(&String, &Allocator)> = allocators.iter().collect();
    for chunk in all.chunks(ROWS_PER_STATEMENT) {
        QueryBuilder::<MySql>::new(
            "INSERT INTO conversations (id, kind, last_seq, last_msg_id, updated_at_ms) ",
        )
        .push_values(chunk, |mut row, (conversation, allocator)| {
            row.push_bind(conversation.as_str())
                .push_bind(allocator.kind)
                .push_bind(allocator.last_seq)
                .push_bind(allocator.last_msg_id)
                .push_bind(sql_int(sent_at_ms));
        })
        .push(
            " ON DUPLICATE KEY UPDATE last_seq = VALUES(last_seq), \
             last_msg_id = VALUES(last_msg_id), updated_at_ms = VALUES(updated_at_ms)",
        )
        .build()
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// `to_user` and `to_group` of a message to `target`; the other is 0.
fn targets(target: Target) -> (UserId, u64) {
    match target {
        Target::User(user) => (user, 0),
        Target::Group(group) => (0, group),
    }
}

/// What the store made of a new message of the batch.
fn stored_message(message: &NewMessage, row: NewRow, sent_at_ms: u64) -> StoredMessage {
    let (to_user, to_group) = targets(message.target);
    StoredMessage {
        msg_id: api_int(row.msg_id),
        conversation_id: row.conversation_id,
        seq: api_int(row.seq),
        from_user: message.from_user,
        to_user,
        to_group,
        client_msg_id: message.client_msg_id.clone(),
        content_type: message.content_type,
        text: message.text.clone(),
        file: message.file.clone(),
        sent_at_ms,
    }
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
