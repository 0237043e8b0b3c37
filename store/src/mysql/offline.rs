//! The offline queue: rows a user has not received on any device yet, each
//! claimed by exactly one puller through a compare-and-set on `has_read`.

use std::collections::HashSet;

use sqlx::{FromRow, MySqlPool};

use super::retry::retry;
use super::rows::{api_int, corrupt, message_columns, sql_int, MessageRow};
use crate::types::{
    OfflineItem, OfflineKey, OfflineRow, ReceiptKind, ReceiptRecord, StoredMessage, UserId,
};
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
    pool: &MySqlPool,
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
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(UnreadRow::into_offline_row).collect()
}

/// One statement: the row lock makes a second claimer wait, then find
/// `has_read = 1` and match nothing.
pub(super) async fn claim(pool: &MySqlPool, row_id: u64) -> StoreResult<bool> {
    let done = retry(|| async move {
        Ok(
            sqlx::query("UPDATE offline SET has_read = 1 WHERE id = ? AND has_read = 0")
                .bind(sql_int(row_id))
                .execute(pool)
                .await?,
        )
    })
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The row of `key` among a user's rows: (msg_id, receipt_kind, receipt_by).
fn row_key(key: OfflineKey) -> (u64, i64, u64) {
    match key {
        OfflineKey::Message(msg_id) => (msg_id, MESSAGE_ROW, 0),
        OfflineKey::Receipt {
            msg_id,
            kind,
            by_user,
        } => (msg_id, kind.as_i64(), by_user),
    }
}

/// Rows are claimed in key order, so two pullers claiming overlapping sets
/// lock them in the same order; the answer lists the claimed keys in the
/// order asked.
pub(super) async fn claim_keys(
    pool: &MySqlPool,
    user: UserId,
    keys: &[OfflineKey],
) -> StoreResult<Vec<OfflineKey>> {
    let mut ordered: Vec<(u64, i64, u64)> = keys.iter().map(|&key| row_key(key)).collect();
    ordered.sort_unstable();
    ordered.dedup();
    let ordered = &ordered;
    let claimed: HashSet<(u64, i64, u64)> = retry(|| async move {
        let mut tx = pool.begin().await?;
        let mut claimed = HashSet::new();
        for &(msg_id, kind, by_user) in ordered {
            let done = sqlx::query(
                "UPDATE offline SET has_read = 1 WHERE user_id = ? AND msg_id = ? \
                 AND receipt_kind = ? AND receipt_by = ? AND has_read = 0",
            )
            .bind(sql_int(user))
            .bind(sql_int(msg_id))
            .bind(kind)
            .bind(sql_int(by_user))
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                claimed.insert((msg_id, kind, by_user));
            }
        }
        tx.commit().await?;
        Ok(claimed)
    })
    .await?;
    let mut reported = HashSet::new();
    Ok(keys
        .iter()
        .copied()
        .filter(|&key| claimed.contains(&row_key(key)) && reported.insert(key))
        .collect())
}

/// One statement per row inside one transaction, in id order so that two
/// releases of overlapping rows do not deadlock.
pub(super) async fn release(pool: &MySqlPool, row_ids: &[u64]) -> StoreResult<()> {
    let mut ordered = row_ids.to_vec();
    ordered.sort_unstable();
    ordered.dedup();
    let ordered = &ordered;
    retry(|| async move {
        let mut tx = pool.begin().await?;
        for &row_id in ordered {
            sqlx::query("UPDATE offline SET has_read = 0 WHERE id = ?")
                .bind(sql_int(row_id))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    })
    .await
}
