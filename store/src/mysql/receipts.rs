//! READ marks, which move a user's read cursor, and the receipts both READ
//! and DELIVERED (`acks`) owe each message's sender.

use std::collections::{HashMap, HashSet};

use sqlx::{FromRow, MySql, MySqlConnection, MySqlPool, QueryBuilder};

use super::retry::retry_when;
use super::rows::{
    api_int, is_duplicate, push_any_of, push_list, sql_int, Text, IN_POINTS, ROWS_PER_STATEMENT,
};
use crate::types::{now_ms, ReceiptKind, ReceiptRecord, UserId};
use crate::{StoreError, StoreResult};

/// What a receipt needs to know of its message.
#[derive(FromRow)]
pub(super) struct Receipted {
    pub(super) msg_id: i64,
    pub(super) conversation_id: Text,
    pub(super) seq: i64,
    pub(super) from_user: i64,
    client_msg_id: Text,
}

/// The stored messages among `ids`, by msg_id.
pub(super) async fn stored_messages(
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
        let mut pairs: Vec<(i64, UserId)> = covered.iter().map(|m| (m.msg_id, user)).collect();
        pairs.sort_unstable();
        let stored: HashSet<(i64, UserId)> =
            insert_receipts(&mut tx, ReceiptKind::Read, &pairs, at_ms)
                .await?
                .into_iter()
                .collect();
        let owed: Vec<(&Receipted, UserId)> = covered
            .iter()
            .filter(|m| stored.contains(&(m.msg_id, user)))
            .map(|m| (m, user))
            .collect();
        let receipts = send_receipts(&mut tx, ReceiptKind::Read, &owed, at_ms).await?;
        tx.commit().await?;
        Ok(receipts)
    })
    .await
}

/// Stores the receipts of `kind` that `pairs` (msg_id, by whom; sorted)
/// name and that are not stored yet: each message gets at most one of each
/// kind per recipient, however many devices or read marks report it.
/// Returns the pairs it stored receipts for.
///
/// The check is a plain read, not a locking one: gap locks on the receipts
/// key would make the many members of a group who ack one message deadlock
/// each other's inserts. A receipt another device stored since this
/// transaction's snapshot fails the insert as a duplicate instead, and the
/// caller's retry reads it. A plain insert, not `INSERT IGNORE`, which would
/// also swallow a failed foreign key.
pub(super) async fn insert_receipts(
    tx: &mut MySqlConnection,
    kind: ReceiptKind,
    pairs: &[(i64, UserId)],
    at_ms: u64,
) -> StoreResult<Vec<(i64, UserId)>> {
    let mut stored = Vec::new();
    for chunk in pairs.chunks(IN_POINTS) {
        // The primary key named: see `push_any_of`.
        let mut select = QueryBuilder::<MySql>::new(
            "SELECT msg_id, by_user FROM receipts FORCE INDEX (PRIMARY) WHERE kind = ",
        );
        select.push_bind(kind.as_i64()).push(" AND (");
        let points = chunk.iter().map(|&(msg_id, by)| (msg_id, sql_int(by)));
        push_any_of(&mut select, ("msg_id", "by_user"), points);
        select.push(")");
        let existing: HashSet<(i64, i64)> = select
            .build_query_as()
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
        let new: Vec<(i64, UserId)> = chunk
            .iter()
            .copied()
            .filter(|&(msg_id, by)| !existing.contains(&(msg_id, sql_int(by))))
            .collect();
        if new.is_empty() {
            continue;
        }
        QueryBuilder::<MySql>::new("INSERT INTO receipts (msg_id, by_user, kind, at_ms) ")
            .push_values(&new, |mut row, &(msg_id, by)| {
                row.push_bind(msg_id)
                    .push_bind(sql_int(by))
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
/// the messages' senders (each message with the user the receipt is by),
/// added in the order given, and the receipts.
pub(super) async fn send_receipts(
    tx: &mut MySqlConnection,
    kind: ReceiptKind,
    messages: &[(&Receipted, UserId)],
    at_ms: u64,
) -> StoreResult<Vec<ReceiptRecord>> {
    for chunk in messages.chunks(ROWS_PER_STATEMENT) {
        QueryBuilder::<MySql>::new(
            "INSERT INTO offline (user_id, msg_id, receipt_kind, receipt_by) ",
        )
        .push_values(chunk, |mut row, (message, by)| {
            row.push_bind(message.from_user)
                .push_bind(message.msg_id)
                .push_bind(kind.as_i64())
                .push_bind(sql_int(*by));
        })
        .push(" ON DUPLICATE KEY UPDATE id = id")
        .build()
        .execute(&mut *tx)
        .await?;
    }
    Ok(messages
        .iter()
        .map(|&(message, by_user)| ReceiptRecord {
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
