//! The offline queue: rows a user has not received on any device yet, each
//! claimed by exactly one puller through a compare-and-set on `has_read`.

use rusqlite::{params, Connection};
use sqlx::SqlitePool;

use super::begin_lazy_write;
use super::hot::stored_message;
use super::rows::{message_columns, offline_row, sql_int, UnreadColumns};
use crate::types::{OfflineRow, UserId};
use crate::StoreResult;

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
        let columns = UnreadColumns {
            id: row.get(14)?,
            user: row.get(15)?,
            receipt_kind: row.get(16)?,
            receipt_by: row.get(17)?,
            receipt_at_ms: row.get(18)?,
        };
        unread.push(offline_row(columns, message)?);
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
