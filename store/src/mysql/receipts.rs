//! DELIVERED and READ: the acknowledgements that move a device's cursors or a
//! user's read cursor, and the receipts they owe each message's sender.

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::{FromRow, MySql, MySqlConnection, MySqlPool, QueryBuilder};

use super::offline::{claim_rows, RowKey};
use super::retry::retry_when;
use super::rows::MESSAGE_ROW;
use super::rows::{api_int, is_duplicate, push_list, sql_int, Text, ROWS_PER_STATEMENT};
use crate::types::{now_ms, DeliveredMessage, ReceiptKind, ReceiptRecord, UserId};
use crate::{StoreError, StoreResult};

/// What a receipt needs to know of its message.
#[derive(FromRow)]
struct Receipted {
    msg_id: i64,
    conversation_id: Text,
    seq: i64,
    from_user: i64,
    client_msg_id: Text,
}

/// A device of `user` acknowledged `messages`. Two devices of a user often
/// ack the same messages at once, in whatever order each received them, so
/// the rows they share are written in one order, whatever the acks' order:
/// the cursors by conversation id, then the offline rows and receipts by
/// msg_id; one device waits for the other instead of deadlocking. The
/// senders' offline rows, which only the call that made the receipt writes,
/// are added last in the acks' order, so they are numbered as SQLite
/// numbers them.
///
/// Each step is one multi-row statement per [`ROWS_PER_STATEMENT`]
/// messages, not one per message: a connector reports a burst of acks at
/// once, and an offline drain's burst is hundreds of messages.
pub(super) async fn mark_delivered(
    pool: &MySqlPool,
    user: UserId,
    device: &str,
    messages: &[DeliveredMessage],
) -> StoreResult<Vec<ReceiptRecord>> {
    let at_ms = now_ms();
    let user_id = sql_int(user);
    let mut ids: Vec<i64> = messages.iter().map(|m| sql_int(m.msg_id)).collect();
    ids.sort_unstable();
    ids.dedup();
    let ids = &ids;
    // A receipt another device stored between this one's check and insert
    // fails the insert as a duplicate; the next attempt finds it stored.
    retry_when(is_duplicate, || async move {
        let mut tx = pool.begin().await?;
        // The stored message, not the ack's copy of its fields, says where it
        // belongs and who sent it. An unknown id acknowledges nothing.
        let stored = stored_messages(&mut tx, ids).await?;

        // Each cursor moves to the highest seq acked in its conversation.
        let mut cursors: BTreeMap<&str, i64> = BTreeMap::new();
        for message in stored.values() {
            let cursor = cursors
                .entry(message.conversation_id.0.as_str())
                .or_default();
            *cursor = (*cursor).max(message.seq);
        }
        let cursors: Vec<(&str, i64)> = cursors.into_iter().collect();
        for chunk in cursors.chunks(ROWS_PER_STATEMENT) {
            QueryBuilder::<MySql>::new(
                "INSERT INTO device_cursors (user_id, device_id, conversation_id, seq) ",
            )
            .push_values(chunk, |mut row, &(conversation, seq)| {
                row.push_bind(user_id)
                    .push_bind(device)
                    .push_bind(conversation)
                    .push_bind(seq);
            })
            .push(" ON DUPLICATE KEY UPDATE seq = GREATEST(seq, VALUES(seq))")
            .build()
            .execute(&mut *tx)
            .await?;
        }

        // Messages from others (in msg_id order); messages sent by `user`
        // only move the cursor. Whichever device acks first takes the
        // message's offline row too.
        let from_others: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| stored.get(id).is_some_and(|m| m.from_user != user_id))
            .collect();
        let rows: Vec<RowKey> = from_others
            .iter()
            .map(|&id| (api_int(id), MESSAGE_ROW, 0))
            .collect();
        claim_rows(&mut tx, user, &rows).await?;
        let mut receipted: HashSet<i64> =
            insert_receipts(&mut tx, ReceiptKind::Delivered, &from_others, user, at_ms)
                .await?
                .into_iter()
                .collect();

        let mut owed = Vec::new();
        for message in messages {
            if receipted.remove(&sql_int(message.msg_id)) {
                owed.extend(stored.get(&sql_int(message.msg_id)));
            }
        }
        let receipts = send_receipts(&mut tx, ReceiptKind::Delivered, &owed, user, at_ms).await?;
        tx.commit().await?;
        Ok(receipts)
    })
    .await
}

/// The stored messages among `ids`, by msg_id.
async fn stored_messages(
    tx: &mut MySqlConnection,
    ids: &[i64],
) -> StoreResult<HashMap<i64, Receipted>> {
    let mut stored = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let mut select = QueryBuilder::<MySql>::new(
            "SELECT msg_id, conversation_id, seq, from_user, client_msg_id \
             FROM messages WHERE msg_id IN ",
        );
        push_list(&mut select, chunk.iter().copied());
        let rows: Vec<Receipted> = select.build_query_as().fetch_all(&mut *tx).await?;
        stored.extend(rows.into_iter().map(|row| (row.msg_id, row)));
    }
    Ok(stored)
}

/// `user` read `conversation` up to `seq`. The cursor stops at the
/// conversation's last seq: a cursor ahead of it would swallow the READ
/// receipts of messages not yet sent.
pub(super) async fn mark_read(
    pool: &MySqlPool,
    user: UserId,
    conversation: &str,
    seq: u64,
) -> StoreResult<Vec<ReceiptRecord>> {
    let at_ms = now_ms();
    let user_id = sql_int(user);
    retry_when(is_duplicate, || async move {
        let mut tx = pool.begin().await?;
        // The membership row lock orders this against other read marks of the
        // same user and against leaving or rejoining.
        let (start_seq, read_seq): (i64, i64) = sqlx::query_as(
            "SELECT start_seq, read_seq FROM conversation_members \
             WHERE conversation_id = ? AND user_id = ? FOR UPDATE",
        )
        .bind(conversation)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::Forbidden)?;
        // Not locked: a message still being appended is not read yet.
        let last_seq: i64 = sqlx::query_scalar("SELECT last_seq FROM conversations WHERE id = ?")
            .bind(conversation)
            .fetch_one(&mut *tx)
            .await?;
        // Messages from before the user joined were never theirs to read.
        let read_from = read_seq.max(start_seq);
        let read_to = sql_int(seq).min(last_seq);
        if read_to <= read_from {
            return Ok(Vec::new());
        }
        sqlx::query(
            "UPDATE conversation_members SET read_seq = ? \
             WHERE conversation_id = ? AND user_id = ?",
        )
        .bind(read_to)
        .bind(conversation)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        let covered: Vec<Receipted> = sqlx::query_as(
            "SELECT msg_id, conversation_id, seq, from_user, client_msg_id FROM messages \
             WHERE conversation_id = ? AND seq > ? AND seq <= ? AND from_user <> ? ORDER BY seq",
        )
        .bind(conversation)
        .bind(read_from)
        .bind(read_to)
        .bind(user_id)
        .fetch_all(&mut *tx)
        .await?;
        let mut ids: Vec<i64> = covered.iter().map(|m| m.msg_id).collect();
        ids.sort_unstable();
        let stored: HashSet<i64> = insert_receipts(&mut tx, ReceiptKind::Read, &ids, user, at_ms)
            .await?
            .into_iter()
            .collect();
        let owed: Vec<&Receipted> = covered
            .iter()
            .filter(|m| stored.contains(&m.msg_id))
            .collect();
        let receipts = send_receipts(&mut tx, ReceiptKind::Read, &owed, user, at_ms).await?;
        tx.commit().await?;
        Ok(receipts)
    })
    .await
}

/// Stores `by_user`'s receipts of `kind` for the messages `msg_ids` (sorted)
/// that have none yet: each message gets at most one of each kind per
/// recipient, however many devices or read marks report it. Returns the
/// msg_ids it stored receipts for.
///
/// The check is a plain read, not a locking one: gap locks on the receipts
/// key would make the many members of a group who ack one message deadlock
/// each other's inserts. A receipt another device stored since this
/// transaction's snapshot fails the insert as a duplicate instead, and the
/// caller's retry reads it. A plain insert, not `INSERT IGNORE`, which would
/// also swallow a failed foreign key.
async fn insert_receipts(
    tx: &mut MySqlConnection,
    kind: ReceiptKind,
    msg_ids: &[i64],
    by_user: UserId,
    at_ms: u64,
) -> StoreResult<Vec<i64>> {
    let mut stored = Vec::new();
    for chunk in msg_ids.chunks(ROWS_PER_STATEMENT) {
        let mut select = QueryBuilder::<MySql>::new("SELECT msg_id FROM receipts WHERE by_user = ");
        select
            .push_bind(sql_int(by_user))
            .push(" AND kind = ")
            .push_bind(kind.as_i64())
            .push(" AND msg_id IN ");
        push_list(&mut select, chunk.iter().copied());
        let existing: HashSet<i64> = select
            .build_query_scalar()
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
        let new: Vec<i64> = chunk
            .iter()
            .copied()
            .filter(|id| !existing.contains(id))
            .collect();
        if new.is_empty() {
            continue;
        }
        QueryBuilder::<MySql>::new("INSERT INTO receipts (msg_id, by_user, kind, at_ms) ")
            .push_values(&new, |mut row, &msg_id| {
                row.push_bind(msg_id)
                    .push_bind(sql_int(by_user))
                    .push_bind(kind.as_i64())
                    .push_bind(sql_int(at_ms));
            })
            .build()
            .execute(&mut *tx)
            .await?;
        stored.extend(new);
    }
    Ok(stored)
}

/// The unread offline rows that carry receipts [`insert_receipts`] stored to
/// the messages' senders, added in the order given, and the receipts.
async fn send_receipts(
    tx: &mut MySqlConnection,
    kind: ReceiptKind,
    messages: &[&Receipted],
    by_user: UserId,
    at_ms: u64,
) -> StoreResult<Vec<ReceiptRecord>> {
    for chunk in messages.chunks(ROWS_PER_STATEMENT) {
        QueryBuilder::<MySql>::new(
            "INSERT INTO offline (user_id, msg_id, receipt_kind, receipt_by) ",
        )
        .push_values(chunk, |mut row, message| {
            row.push_bind(message.from_user)
                .push_bind(message.msg_id)
                .push_bind(kind.as_i64())
                .push_bind(sql_int(by_user));
        })
        .push(" ON DUPLICATE KEY UPDATE id = id")
        .build()
        .execute(&mut *tx)
        .await?;
    }
    Ok(messages
        .iter()
        .map(|message| ReceiptRecord {
            kind,
            msg_id: api_int(message.msg_id),
            conversation_id: message.conversation_id.0.clone(),
            seq: api_int(message.seq),
            client_msg_id: message.client_msg_id.0.clone(),
            to_user: api_int(message.from_user),
            by_user,
            at_ms,
        })
        .collect())
}
