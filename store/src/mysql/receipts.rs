//! DELIVERED and READ: the acknowledgements that move a device's cursors or a
//! user's read cursor, and the receipts they owe each message's sender.

use std::collections::{BTreeMap, HashSet};

use sqlx::{FromRow, MySqlConnection, MySqlPool};

use super::retry::retry;
use super::rows::{api_int, is_unique_violation, sql_int, Text};
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
pub(super) async fn mark_delivered(
    pool: &MySqlPool,
    user: UserId,
    device: &str,
    messages: &[DeliveredMessage],
) -> StoreResult<Vec<ReceiptRecord>> {
    let at_ms = now_ms();
    let user_id = sql_int(user);
    retry(|| async move {
        let mut tx = pool.begin().await?;
        // The stored message, not the ack's copy of its fields, says where it
        // belongs and who sent it. An unknown id acknowledges nothing.
        let mut acked: Vec<Receipted> = Vec::with_capacity(messages.len());
        for message in messages {
            let stored = sqlx::query_as::<_, Receipted>(
                "SELECT msg_id, conversation_id, seq, from_user, client_msg_id \
                 FROM messages WHERE msg_id = ?",
            )
            .bind(sql_int(message.msg_id))
            .fetch_optional(&mut *tx)
            .await?;
            acked.extend(stored);
        }

        // Each cursor moves to the highest seq acked in its conversation.
        let mut cursors: BTreeMap<&str, i64> = BTreeMap::new();
        for message in &acked {
            let cursor = cursors
                .entry(message.conversation_id.0.as_str())
                .or_default();
            *cursor = (*cursor).max(message.seq);
        }
        for (conversation, seq) in cursors {
            sqlx::query(
                "INSERT INTO device_cursors (user_id, device_id, conversation_id, seq) \
                 VALUES (?, ?, ?, ?) \
                 ON DUPLICATE KEY UPDATE seq = GREATEST(seq, VALUES(seq))",
            )
            .bind(user_id)
            .bind(device)
            .bind(conversation)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        }

        // Messages from others; messages sent by `user` only move the cursor.
        let mut from_others: Vec<i64> = acked
            .iter()
            .filter(|m| m.from_user != user_id)
            .map(|m| m.msg_id)
            .collect();
        from_others.sort_unstable();
        from_others.dedup();
        let mut receipted = HashSet::new();
        for msg_id in from_others {
            // Whichever device acks first takes the message's offline row too.
            sqlx::query(
                "UPDATE offline SET has_read = 1 \
                 WHERE user_id = ? AND msg_id = ? AND receipt_kind = 0 AND has_read = 0",
            )
            .bind(user_id)
            .bind(msg_id)
            .execute(&mut *tx)
            .await?;
            if insert_receipt(&mut tx, ReceiptKind::Delivered, msg_id, user, at_ms).await? {
                receipted.insert(msg_id);
            }
        }

        let mut receipts = Vec::new();
        for message in acked {
            if receipted.remove(&message.msg_id) {
                let receipt = send_receipt(&mut tx, ReceiptKind::Delivered, message, user, at_ms);
                receipts.push(receipt.await?);
            }
        }
        tx.commit().await?;
        Ok(receipts)
    })
    .await
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
    retry(|| async move {
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
        let mut receipts = Vec::new();
        for message in covered {
            if insert_receipt(&mut tx, ReceiptKind::Read, message.msg_id, user, at_ms).await? {
                receipts
                    .push(send_receipt(&mut tx, ReceiptKind::Read, message, user, at_ms).await?);
            }
        }
        tx.commit().await?;
        Ok(receipts)
    })
    .await
}

/// Stores `by_user`'s receipt of `kind` for the message, unless it exists
/// already: each message gets at most one of each kind per recipient, however
/// many devices or read marks report it. True if this call stored it. A plain
/// insert whose duplicate-key error says "exists": `INSERT IGNORE` would also
/// swallow a failed foreign key, and an upsert reports an unchanged row as
/// written.
async fn insert_receipt(
    conn: &mut MySqlConnection,
    kind: ReceiptKind,
    msg_id: i64,
    by_user: UserId,
    at_ms: u64,
) -> StoreResult<bool> {
    let inserted =
        sqlx::query("INSERT INTO receipts (msg_id, by_user, kind, at_ms) VALUES (?, ?, ?, ?)")
            .bind(msg_id)
            .bind(sql_int(by_user))
            .bind(kind.as_i64())
            .bind(sql_int(at_ms))
            .execute(&mut *conn)
            .await;
    match inserted {
        Ok(_) => Ok(true),
        Err(e) if is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The unread offline row that carries a receipt [`insert_receipt`] stored
/// to the message's sender, and the receipt.
async fn send_receipt(
    conn: &mut MySqlConnection,
    kind: ReceiptKind,
    message: Receipted,
    by_user: UserId,
    at_ms: u64,
) -> StoreResult<ReceiptRecord> {
    sqlx::query(
        "INSERT INTO offline (user_id, msg_id, receipt_kind, receipt_by) VALUES (?, ?, ?, ?) \
         ON DUPLICATE KEY UPDATE id = id",
    )
    .bind(message.from_user)
    .bind(message.msg_id)
    .bind(kind.as_i64())
    .bind(sql_int(by_user))
    .execute(&mut *conn)
    .await?;
    Ok(ReceiptRecord {
        kind,
        msg_id: api_int(message.msg_id),
        conversation_id: message.conversation_id.0,
        seq: api_int(message.seq),
        client_msg_id: message.client_msg_id.0,
        to_user: api_int(message.from_user),
        by_user,
        at_ms,
    })
}
