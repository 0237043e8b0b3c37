//! Devices and their per-conversation cursors: how far each device has
//! acknowledged each of its user's conversations.

use sqlx::SqlitePool;

use super::begin_write;
use super::rows::{api_int, sql_int};
use crate::types::{now_ms, DeviceCursor, UserId};
use crate::StoreResult;

/// A new device starts every conversation at its current last seq: what came
/// before and no device has yet still reaches it through the offline rows.
pub(super) async fn register(
    reader: &SqlitePool,
    writer: &SqlitePool,
    user: UserId,
    device: &str,
) -> StoreResult<bool> {
    let user = sql_int(user);
    // A device logs in far more often than it is new: a look-up on the
    // readers spares each login of a known device the single writer.
    let known: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM devices WHERE user_id = ? AND device_id = ?")
            .bind(user)
            .bind(device)
            .fetch_optional(reader)
            .await?;
    if known.is_some() {
        return Ok(false);
    }
    let mut tx = begin_write(writer).await?;
    let inserted = sqlx::query(
        "INSERT OR IGNORE INTO devices (user_id, device_id, created_at_ms) VALUES (?, ?, ?)",
    )
    .bind(user)
    .bind(device)
    .bind(sql_int(now_ms()))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(false);
    }
    sqlx::query(
        "INSERT OR IGNORE INTO device_cursors (user_id, device_id, conversation_id, seq) \
         SELECT m.user_id, ?, m.conversation_id, c.last_seq \
         FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id \
         WHERE m.user_id = ?",
    )
    .bind(device)
    .bind(user)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Never below the member's start_seq: a cursor kept from an earlier
/// membership must not reach back before the user (re)joined.
pub(super) async fn cursors(
    reader: &SqlitePool,
    user: UserId,
    device: &str,
) -> StoreResult<Vec<DeviceCursor>> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT m.conversation_id, MAX(COALESCE(d.seq, 0), m.start_seq), c.last_seq \
         FROM conversation_members m \
         JOIN conversations c ON c.id = m.conversation_id \
         LEFT JOIN device_cursors d ON d.user_id = m.user_id AND d.device_id = ? \
           AND d.conversation_id = m.conversation_id \
         WHERE m.user_id = ? ORDER BY m.conversation_id",
    )
    .bind(device)
    .bind(sql_int(user))
    .fetch_all(reader)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(conversation_id, cursor, last_seq)| DeviceCursor {
            conversation_id,
            cursor: api_int(cursor),
            last_seq: api_int(last_seq),
        })
        .collect())
}
