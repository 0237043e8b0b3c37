//! Devices and their per-conversation cursors: how far each device has
//! acknowledged each of its user's conversations.

use rusqlite::{params, Connection};

use super::rows::{api_int, sql_int};
use crate::types::{DeviceCursor, UserId};
use crate::StoreResult;

/// Whether `device` of `user` is registered. A device logs in far more
/// often than it is new: a look-up on the readers spares each login of a
/// known device the writer's queue.
pub(super) fn known(conn: &Connection, user: UserId, device: &str) -> StoreResult<bool> {
    let known = conn
        .prepare_cached("SELECT 1 FROM devices WHERE user_id = ? AND device_id = ?")?
        .exists(params![sql_int(user), device])?;
    Ok(known)
}

/// Never below the member's start_seq: a cursor kept from an earlier
/// membership must not reach back before the user (re)joined.
pub(super) fn cursors(
    conn: &Connection,
    user: UserId,
    device: &str,
) -> StoreResult<Vec<DeviceCursor>> {
    let cursors = conn
        .prepare_cached(
            "SELECT m.conversation_id, MAX(COALESCE(d.seq, 0), m.start_seq), c.last_seq \
             FROM conversation_members m \
             JOIN conversations c ON c.id = m.conversation_id \
             LEFT JOIN device_cursors d ON d.user_id = m.user_id AND d.device_id = ? \
               AND d.conversation_id = m.conversation_id \
             WHERE m.user_id = ? ORDER BY m.conversation_id",
        )?
        .query_map(params![device, sql_int(user)], |row| {
            Ok(DeviceCursor {
                conversation_id: row.get(0)?,
                cursor: api_int(row.get(1)?),
                last_seq: api_int(row.get(2)?),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(cursors)
}
