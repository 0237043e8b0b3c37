//! The offline queue: rows a user has not received on any device yet, each
//! claimed by exactly one puller through a compare-and-set on `has_read`.

use rusqlite::{params, Connection};
use sqlx::SqlitePool;

use super::begin_lazy_write;
use super::hot::stored_message;
use super::rows::{api_int, corrupt, message_columns, sql_int};
use crate::types::{OfflineItem, OfflineRow, ReceiptKind, ReceiptRecord, UserId};
use crate::StoreResult;

/// `offline.receipt_kind` of a row holding the message itself.
const MESSAGE_ROW: i64 = 0;

/// The unread rows of `user`, oldest first: messages, and receipts of the
/// user's own messages.
pub(super) fn unread(conn: &Connection, user: UserId, limit: u32) -> StoreResult<Vec<OfflineRow>> {
    let mut statement = conn.prepare_cached(concat!(
        "SELECT ",
        message_columns!(),
        ", o.id, o.user_id, o.receipt_kind, o.receipt_by, COALESCE(r.at_ms, 0) \
          FROM offline o \
          JOIN messages m ON m.msg_id = o.msg_id \
          LEFT JOIN receipts r \
            ON r.msg_id = o.msg_id AND r.by_user = o.receipt_by AND r.kind = o.receipt_kind \
          WHERE o.user_id = ? AND o.has_read = 0 \
          ORDER BY o.id LIMIT ?"
    ))?;
    let mut rows = statement.query(params![sql_int(user), i64::from(limit)])?;
    let mut unread = Vec::new();
    while let Some(row) = rows.next()? {
        // The message's columns come first, as `stored_message` reads them.
        let message = stored_message(row)?;
        let [id, row_user, kind, by, at_ms]: [i64; 5] = [
            row.get(14)?,
            row.get(15)?,
            row.get(16)?,
            row.get(17)?,
            row.get(18)?,
        ];
        let item = if kind == MESSAGE_ROW {
            OfflineItem::Message(message)
        } else {
            let kind = ReceiptKind::from_i64(kind)
                .ok_or_else(|| corrupt(format!("offline receipt kind {kind}")))?;
            // A receipt row belongs to the message's sender, who is its recipient.
            OfflineItem::Receipt(ReceiptRecord {
                kind,
                msg_id: message.msg_id,
                conversation_id: message.conversation_id,
                seq: message.seq,
                client_msg_id: message.client_msg_id,
                to_user: api_int(row_user),
                by_user: api_int(by),
                at_ms: api_int(at_ms),
            })
        };
        unread.push(OfflineRow {
            id: api_int(id),
            item,
        });
    }
    Ok(unread)
}

pub(super) async fn claim(writer: &SqlitePool, row_id: u64) -> StoreResult<bool> {
    let done = sqlx::query("UPDATE offline SET has_read = 1 WHERE id = ? AND has_read = 0")
        .bind(sql_int(row_id))
        .execute(writer)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// One statement per row inside one transaction: no bound on how many ids a
/// single `IN (...)` may carry, and the statement is prepared once.
pub(super) async fn release(writer: &SqlitePool, row_ids: &[u64]) -> StoreResult<()> {
    let mut tx = begin_lazy_write(writer).await?;
    for &row_id in row_ids {
        sqlx::query("UPDATE offline SET has_read = 0 WHERE id = ?")
            .bind(sql_int(row_id))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}
