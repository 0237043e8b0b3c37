//! DELIVERED and READ: the acknowledgements that move a device's cursors or a
//! user's read cursor, and the receipts they owe each message's sender.

use sqlx::{FromRow, SqliteConnection, SqlitePool};

use super::begin_write;
use super::rows::{api_int, sql_int};
use crate::types::{now_ms, ReceiptKind, ReceiptRecord, UserId};
use crate::{StoreError, StoreResult};

/// What a receipt needs to know of its message.
#[derive(FromRow)]
struct Receipted {
    msg_id: i64,
    conversation_id: String,
    seq: i64,
    from_user: i64,
    client_msg_id: String,
}

/// `user` read `conversation` up to `seq`. The cursor stops at the
/// conversation's last seq: a cursor ahead of it would swallow the READ
/// receipts of messages not yet sent.
pub(super) async fn mark_read(
    writer: &SqlitePool,
    user: UserId,
    conversation: &str,
    seq: u64,
) -> StoreResult<Vec<ReceiptRecord>> {
    let at_ms = now_ms();
    let user_id = sql_int(user);
    let mut tx = begin_write(writer).await?;
    let (start_seq, read_seq, last_seq): (i64, i64, i64) = sqlx::query_as(
        "SELECT m.start_seq, m.read_seq, c.last_seq \
         FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id \
         WHERE m.conversation_id = ? AND m.user_id = ?",
    )
    .bind(conversation)
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(StoreError::Forbidden)?;
    // Messages from before the user joined were never theirs to read.
    let read_from = read_seq.max(start_seq);
    let read_to = sql_int(seq).min(last_seq);
    if read_to <= read_from {
        return Ok(Vec::new());
    }
    sqlx::query(
        "UPDATE conversation_members SET read_seq = ? WHERE conversation_id = ? AND user_id = ?",
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
    let mut receipts = Vec::new();
    for message in covered {
        let receipt = store_receipt(&mut tx, ReceiptKind::Read, message, user, at_ms).await?;
        receipts.extend(receipt);
    }
    tx.commit().await?;
    Ok(receipts)
}

/// Stores `by_user`'s receipt of `kind` for `message` and an unread offline
/// row carrying it to the sender, unless that receipt exists already: each
/// message gets at most one of each kind per recipient, however many devices
/// or read marks report it.
async fn store_receipt(
    conn: &mut SqliteConnection,
    kind: ReceiptKind,
    message: Receipted,
    by_user: UserId,
    at_ms: u64,
) -> StoreResult<Option<ReceiptRecord>> {
    let inserted = sqlx::query(
        "INSERT OR IGNORE INTO receipts (msg_id, by_user, kind, at_ms) VALUES (?, ?, ?, ?)",
    )
    .bind(message.msg_id)
    .bind(sql_int(by_user))
    .bind(kind.as_i64())
    .bind(sql_int(at_ms))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(None);
    }
    sqlx::query(
        "INSERT OR IGNORE INTO offline (user_id, msg_id, receipt_kind, receipt_by) \
         VALUES (?, ?, ?, ?)",
    )
    .bind(message.from_user)
    .bind(message.msg_id)
    .bind(kind.as_i64())
    .bind(sql_int(by_user))
    .execute(&mut *conn)
    .await?;
    Ok(Some(ReceiptRecord {
        kind,
        msg_id: api_int(message.msg_id),
        conversation_id: message.conversation_id,
        seq: api_int(message.seq),
        client_msg_id: message.client_msg_id,
        to_user: api_int(message.from_user),
        by_user,
        at_ms,
    }))
}
