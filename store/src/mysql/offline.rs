//! The offline queue: rows a user has not received on any device yet, each
//! claimed by exactly one puller through a compare-and-set on `has_read`.

use std::collections::HashSet;

use sqlx::{FromRow, MySql, MySqlConnection, MySqlPool, QueryBuilder};

use super::retry::retry;
use super::rows::{
    api_int, message_columns, offline_row, push_list, sql_int, MessageRow, UnreadColumns,
    IN_VALUES, MESSAGE_ROW,
};
use crate::types::{OfflineKey, OfflineRow, StoredMessage, UserId};
use crate::StoreResult;

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
        let columns = UnreadColumns {
            id: self.row_id,
            user: self.row_user,
            receipt_kind: self.receipt_kind,
            receipt_by: self.receipt_by,
            receipt_at_ms: self.receipt_at_ms,
        };
        offline_row(columns, StoredMessage::from(self.message))
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

/// A row among a user's rows: (msg_id, receipt_kind, receipt_by).
pub(super) type RowKey = (u64, i64, u64);

/// The row of `key` among a user's rows.
pub(super) fn row_key(key: OfflineKey) -> RowKey {
    match key {
        OfflineKey::Message(msg_id) => (msg_id, MESSAGE_ROW, 0),
        OfflineKey::Receipt {
            msg_id,
            kind,
            by_user,
        } => (msg_id, kind.as_i64(), by_user),
    }
}

/// Rows named by one locking read: four values each, under [`IN_VALUES`].
const CLAIM_ROWS: usize = IN_VALUES / 4;

/// Claims those of the rows `keys` (user and row; sorted) names that are
/// unread, in two statements per [`CLAIM_ROWS`] keys rather than one per
/// row: a locking read of the rows, which sees the latest commit and holds
/// them to the end of the transaction, then one update of the unread ones
/// by id. The read walks the unique key in its order, so two claims of
/// overlapping rows lock them in the same order and one waits for the
/// other, then finds them read. It names each row by its whole key: by
/// (user, msg_id) alone, a sender's claim of a group message's receipts
/// read and locked every member's receipt row of that message once per
/// statement (10,000 rows each, for a 10,000-member group). Returns the
/// keys it claimed.
pub(super) async fn claim_rows(
    tx: &mut MySqlConnection,
    keys: &[(UserId, RowKey)],
) -> StoreResult<HashSet<(UserId, RowKey)>> {
    let mut claimed = HashSet::new();
    for chunk in keys.chunks(CLAIM_ROWS) {
        let mut select = QueryBuilder::<MySql>::new(
            "SELECT id, user_id, msg_id, receipt_kind, receipt_by, has_read \
             FROM offline FORCE INDEX (offline_row) \
             WHERE (user_id, msg_id, receipt_kind, receipt_by) IN ",
        );
        select.push_tuples(chunk, |mut row, &(user, (msg_id, kind, by_user))| {
            row.push_bind(sql_int(user))
                .push_bind(sql_int(msg_id))
                .push_bind(kind)
                .push_bind(sql_int(by_user));
        });
        select.push(" FOR UPDATE");
        let rows: Vec<(i64, i64, i64, i64, i64, i64)> =
            select.build_query_as().fetch_all(&mut *tx).await?;
        let mut won = Vec::new();
        for (id, user, msg_id, kind, by_user, has_read) in rows {
            let key = (api_int(user), (api_int(msg_id), kind, api_int(by_user)));
            if has_read == 0 && chunk.binary_search(&key).is_ok() {
                won.push(id);
                claimed.insert(key);
            }
        }
        if won.is_empty() {
            continue;
        }
        let mut update = QueryBuilder::<MySql>::new("UPDATE offline SET has_read = 1 WHERE id IN ");
        push_list(&mut update, won);
        update.build().execute(&mut *tx).await?;
    }
    Ok(claimed)
}

/// One statement per [`IN_VALUES`] rows, inside one transaction;
/// the ids are sorted, so two releases of overlapping rows lock them in the
/// same order.
pub(super) async fn release(pool: &MySqlPool, row_ids: &[u64]) -> StoreResult<()> {
    let mut ordered = row_ids.to_vec();
    ordered.sort_unstable();
    ordered.dedup();
    let ordered = &ordered;
    retry(|| async move {
        let mut tx = pool.begin().await?;
        for chunk in ordered.chunks(IN_VALUES) {
            let mut update =
                QueryBuilder::<MySql>::new("UPDATE offline SET has_read = 0 WHERE id IN ");
            push_list(&mut update, chunk.iter().copied().map(sql_int));
            update.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    })
    .await
}
