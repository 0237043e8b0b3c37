//! Devices and their per-conversation cursors: how far each device has
//! acknowledged each of its user's conversations.

use sqlx::MySqlPool;

use super::retry::retry;
use super::rows::{api_int, is_unique_violation, sql_int, Text};
use crate::types::{now_ms, DeviceCursor, UserId};
use crate::StoreResult;

/// A new device starts each direct conversation at its current last seq:
/// what came before and no device has yet still reaches it through the
/// offline rows. Group messages have no offline rows, so a group starts
/// where the user's furthest device is, or, with none there, at the
/// member's start (no cursor row: see [`cursors`]).
/// A device already known is a duplicate key (a plain insert, so that an
/// unknown user still fails its foreign key); its cursors are kept, as are
/// any an ack made before the device registered.
pub(super) async fn register(pool: &MySqlPool, user: UserId, device: &str) -> StoreResult<bool> {
    // Most logins are of a known device: a plain look-up, no transaction.
    let known: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE user_id = ? AND device_id = ?")
            .bind(sql_int(user))
            .bind(device)
            .fetch_one(pool)
            .await?;
    if known > 0 {
        return Ok(false);
    }
    add(pool, user, device).await
}

/// A link's login: the user of a live token and whether `device` was new
/// to it, registered as [`register`] does. The token and the device are
/// one statement: a known device's login reads nothing else before its
/// catch-up, and MariaDB's time per statement is what bounds the
/// cluster's logins (see DESIGN, "Where the cluster's time goes").
pub(super) async fn login(
    pool: &MySqlPool,
    token_hash: &str,
    device: &str,
) -> StoreResult<Option<(UserId, bool)>> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT t.user_id, EXISTS (SELECT 1 FROM devices d \
           WHERE d.user_id = t.user_id AND d.device_id = ?) \
         FROM tokens t WHERE t.token_hash = ? AND t.revoked = 0",
    )
    .bind(device)
    .bind(token_hash)
    .fetch_optional(pool)
    .await?;
    let Some((user, known)) = row else {
        return Ok(None);
    };
    let user = api_int(user);
    let new = known == 0 && add(pool, user, device).await?;
    Ok(Some((user, new)))
}

/// Inserts the device and its starting cursors; false if another login
/// inserted it first.
async fn add(pool: &MySqlPool, user: UserId, device: &str) -> StoreResult<bool> {
    let user = sql_int(user);
    let created_at_ms = sql_int(now_ms());
    retry(|| async move {
        let mut tx = pool.begin().await?;
        let inserted =
            sqlx::query("INSERT INTO devices (user_id, device_id, created_at_ms) VALUES (?, ?, ?)")
                .bind(user)
                .bind(device)
                .bind(created_at_ms)
                .execute(&mut *tx)
                .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        sqlx::query(
            "INSERT INTO device_cursors (user_id, device_id, conversation_id, seq) \
             SELECT * FROM ( \
               SELECT m.user_id, ?, m.conversation_id, c.last_seq \
               FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id \
               WHERE m.user_id = ? AND c.kind = 'direct' \
               UNION ALL \
               SELECT d.user_id, ?, d.conversation_id, MAX(d.seq) \
               FROM device_cursors d JOIN conversations c ON c.id = d.conversation_id \
               WHERE d.user_id = ? AND c.kind = 'group' \
               GROUP BY d.user_id, d.conversation_id \
             ) AS start \
             ON DUPLICATE KEY UPDATE seq = device_cursors.seq",
        )
        .bind(device)
        .bind(user)
        .bind(device)
        .bind(user)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    })
    .await
}

/// Never below the member's start_seq: a cursor kept from an earlier
/// membership must not reach back before the user (re)joined.
pub(super) async fn cursors(
    pool: &MySqlPool,
    user: UserId,
    device: &str,
) -> StoreResult<Vec<DeviceCursor>> {
    let rows: Vec<(Text, i64, i64)> = sqlx::query_as(
        "SELECT m.conversation_id, GREATEST(COALESCE(d.seq, 0), m.start_seq), c.last_seq \
         FROM conversation_members m \
         JOIN conversations c ON c.id = m.conversation_id \
         LEFT JOIN device_cursors d ON d.user_id = m.user_id AND d.device_id = ? \
           AND d.conversation_id = m.conversation_id \
         WHERE m.user_id = ? ORDER BY m.conversation_id",
    )
    .bind(device)
    .bind(sql_int(user))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(conversation_id, cursor, last_seq)| DeviceCursor {
            conversation_id: conversation_id.0,
            cursor: api_int(cursor),
            last_seq: api_int(last_seq),
        })
        .collect())
}
