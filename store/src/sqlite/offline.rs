//! The offline queue: rows a user has not received on any device yet, each
//! claimed by exactly one puller through a compare-and-set on `has_read`.

use sqlx::{FromRow, SqlitePool};

use super::begin_lazy_write;
use super::rows::{api_int, corrupt, message_columns, sql_int, MessageRow};
use crate::types::{OfflineItem, OfflineRow, ReceiptKind, ReceiptRecord, StoredMessage, UserId};
use crate::StoreResult;

/// `offline.receipt_kind` of a row holding the message itself.
const MESSAGE_ROW: i64 = 0;

#[derive(FromRow)]
struct UnreadRow {
    row_id: i64,
    row_user: i64,
    receipt_kind: i64,
    receipt_by: i64,
    receipt_at_ms: i64,
    #[sqlx(flatten)]
    message: MessageRow,
}

impl UnreadRow {
    fn into_offline_row(self) -> StoreResult<OfflineRow> {
        let message = StoredMessage::from(self.message);
        let item = if self.receipt_kind == MESSAGE_ROW {
            OfflineItem::Message(message)
        } else {
            let kind = ReceiptKind::from_i64(self.receipt_kind)
                .ok_or_else(|| corrupt(format!("offline receipt kind {}", self.receipt_kind)))?;
            // A receipt row belongs to the message's sender, who is its recipient.
            OfflineItem::Receipt(ReceiptRecord {
                kind,
                msg_id: message.msg_id,
                conversation_id: message.conversation_id,
                seq: message.seq,
                client_msg_id: message.client_msg_id,
                to_user: api_int(self.row_user),
                by_user: api_int(self.receipt_by),
                at_ms: api_int(self.receipt_at_ms),
            })
        };
        Ok(OfflineRow {
            id: api_int(self.row_id),
            item,
        })
    }
}

pub(super) async fn unread(
    reader: &SqlitePool,
    user: UserId,
    limit: u32,
) -> StoreResult<Vec<OfflineRow>> {
    let rows: Vec<UnreadRow> = sqlx::query_as(concat!(
        "SELECT o.id AS row_id, o.user_id AS row_user, o.receipt_kind, o.receipt_by, \
           COALESCE(r.at_ms, 0) AS receipt_at_ms, ",
        message_columns!(),
        " FROM offline o \
          JOIN messages m ON m.msg_id = o.msg_id \
          LEFT JOIN receipts r \
            ON r.msg_id = o.msg_id AND r.by_user = o.receipt_by AND r.kind = o.receipt_kind \
          WHERE o.user_id = ? AND o.has_read = 0 \
          ORDER BY o.id LIMIT ?"
    ))
    .bind(sql_int(user))
    .bind(i64::from(limit))
    .fetch_all(reader)
    .await?;
    rows.into_iter().map(UnreadRow::into_offline_row).collect()
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
