//! Friend requests and friendships. A friendship is two rows, one per
//! direction, each carrying its owner's remark.

use rusqlite::Connection;
use sqlx::{FromRow, SqliteConnection, SqliteExecutor, SqlitePool};

use super::begin_write;
use super::rows::{api_int, missing_reference, sql_int, status_from_sql, status_to_sql};
use crate::types::{direct_conversation, now_ms, Friend, FriendRequest, RequestStatus, UserId};
use crate::{StoreError, StoreResult};

/// A request with both users' names.
const SELECT_REQUEST: &str = "SELECT r.id, r.from_user, f.name AS from_name, r.to_user, \
     t.name AS to_name, r.note, r.status, r.created_at_ms \
     FROM friend_requests r \
     JOIN users f ON f.id = r.from_user \
     JOIN users t ON t.id = r.to_user";

#[derive(FromRow)]
struct RequestRow {
    id: i64,
    from_user: i64,
    from_name: String,
    to_user: i64,
    to_name: String,
    note: String,
    status: String,
    created_at_ms: i64,
}

impl RequestRow {
    fn into_request(self) -> StoreResult<FriendRequest> {
        Ok(FriendRequest {
            id: api_int(self.id),
            from_user: api_int(self.from_user),
            from_name: self.from_name,
            to_user: api_int(self.to_user),
            to_name: self.to_name,
            note: self.note,
            status: status_from_sql(&self.status)?,
            created_at_ms: api_int(self.created_at_ms),
        })
    }
}

async fn load_request<'e>(
    executor: impl SqliteExecutor<'e>,
    id: i64,
) -> StoreResult<Option<FriendRequest>> {
    let row: Option<RequestRow> = sqlx::query_as(&format!("{SELECT_REQUEST} WHERE r.id = ?"))
        .bind(id)
        .fetch_optional(executor)
        .await?;
    row.map(RequestRow::into_request).transpose()
}

/// `Conflict` if a request is pending between the two (either direction), if
/// they are friends already, or if `from` is `to`; `NotFound` if either user
/// does not exist.
pub(super) async fn create_request(
    writer: &SqlitePool,
    from: UserId,
    to: UserId,
    note: &str,
) -> StoreResult<FriendRequest> {
    if from == to {
        return Err(StoreError::Conflict("cannot befriend oneself"));
    }
    let (from, to) = (sql_int(from), sql_int(to));
    let mut tx = begin_write(writer).await?;
    let pending: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM friend_requests WHERE status = 'pending' \
         AND ((from_user = ?1 AND to_user = ?2) OR (from_user = ?2 AND to_user = ?1)))",
    )
    .bind(from)
    .bind(to)
    .fetch_one(&mut *tx)
    .await?;
    if pending {
        return Err(StoreError::Conflict("a request is already pending"));
    }
    if friend_rows(&mut *tx, from, to).await? > 0 {
        return Err(StoreError::Conflict("already friends"));
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO friend_requests (from_user, to_user, note, status, created_at_ms) \
         VALUES (?, ?, ?, 'pending', ?) RETURNING id",
    )
    .bind(from)
    .bind(to)
    .bind(note)
    .bind(sql_int(now_ms()))
    .fetch_one(&mut *tx)
    .await
    .map_err(missing_reference)?;
    let request = load_request(&mut *tx, id)
        .await?
        .ok_or(StoreError::NotFound)?;
    tx.commit().await?;
    Ok(request)
}

pub(super) async fn request(reader: &SqlitePool, id: u64) -> StoreResult<Option<FriendRequest>> {
    load_request(reader, sql_int(id)).await
}

pub(super) async fn pending_requests(
    reader: &SqlitePool,
    user: UserId,
) -> StoreResult<Vec<FriendRequest>> {
    let rows: Vec<RequestRow> = sqlx::query_as(&format!(
        "{SELECT_REQUEST} WHERE r.status = 'pending' AND (r.from_user = ?1 OR r.to_user = ?1) \
         ORDER BY r.id DESC"
    ))
    .bind(sql_int(user))
    .fetch_all(reader)
    .await?;
    rows.into_iter().map(RequestRow::into_request).collect()
}

/// `NotFound` if there is no such request, `Conflict` if it is not pending.
pub(super) async fn resolve_request(
    writer: &SqlitePool,
    id: u64,
    accept: bool,
) -> StoreResult<FriendRequest> {
    let id = sql_int(id);
    let mut tx = begin_write(writer).await?;
    let mut request = load_request(&mut *tx, id)
        .await?
        .ok_or(StoreError::NotFound)?;
    if request.status != RequestStatus::Pending {
        return Err(StoreError::Conflict("request is not pending"));
    }
    request.status = if accept {
        RequestStatus::Accepted
    } else {
        RequestStatus::Rejected
    };
    sqlx::query("UPDATE friend_requests SET status = ? WHERE id = ?")
        .bind(status_to_sql(request.status))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if accept {
        befriend(&mut tx, request.from_user, request.to_user).await?;
    }
    tx.commit().await?;
    Ok(request)
}

/// The friendship both ways and the two users' direct conversation. Friends
/// who part and meet again find their old conversation, history included.
async fn befriend(conn: &mut SqliteConnection, a: UserId, b: UserId) -> StoreResult<()> {
    let now = sql_int(now_ms());
    for (user, friend) in [(a, b), (b, a)] {
        sqlx::query(
            "INSERT OR IGNORE INTO friends (user_id, friend_id, since_ms) VALUES (?, ?, ?)",
        )
        .bind(sql_int(user))
        .bind(sql_int(friend))
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    let conversation = direct_conversation(a, b);
    sqlx::query(
        "INSERT OR IGNORE INTO conversations (id, kind, updated_at_ms) VALUES (?, 'direct', ?)",
    )
    .bind(&conversation)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    for user in [a, b] {
        sqlx::query(
            "INSERT OR IGNORE INTO conversation_members \
             (conversation_id, user_id, start_seq, read_seq) \
             SELECT id, ?, last_seq, last_seq FROM conversations WHERE id = ?",
        )
        .bind(sql_int(user))
        .bind(&conversation)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// How many of the two friendship rows between `a` and `b` exist.
async fn friend_rows<'e>(executor: impl SqliteExecutor<'e>, a: i64, b: i64) -> StoreResult<i64> {
    let rows = sqlx::query_scalar(
        "SELECT COUNT(*) FROM friends \
         WHERE (user_id = ?1 AND friend_id = ?2) OR (user_id = ?2 AND friend_id = ?1)",
    )
    .bind(a)
    .bind(b)
    .fetch_one(executor)
    .await?;
    Ok(rows)
}

pub(super) fn friends(conn: &Connection, user: UserId) -> StoreResult<Vec<Friend>> {
    let friends = conn
        .prepare_cached(
            "SELECT f.friend_id, u.name, f.remark, f.since_ms \
             FROM friends f JOIN users u ON u.id = f.friend_id \
             WHERE f.user_id = ? ORDER BY u.name",
        )?
        .query_map([sql_int(user)], |row| {
            Ok(Friend {
                user_id: api_int(row.get(0)?),
                name: row.get(1)?,
                remark: row.get(2)?,
                since_ms: api_int(row.get(3)?),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(friends)
}

pub(super) async fn are_friends(reader: &SqlitePool, a: UserId, b: UserId) -> StoreResult<bool> {
    Ok(friend_rows(reader, sql_int(a), sql_int(b)).await? == 2)
}

/// Leaves the direct conversation and its memberships: history stays readable.
pub(super) async fn remove_friend(
    writer: &SqlitePool,
    user: UserId,
    friend: UserId,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "DELETE FROM friends \
         WHERE (user_id = ?1 AND friend_id = ?2) OR (user_id = ?2 AND friend_id = ?1)",
    )
    .bind(sql_int(user))
    .bind(sql_int(friend))
    .execute(writer)
    .await?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn set_remark(
    writer: &SqlitePool,
    user: UserId,
    friend: UserId,
    remark: Option<&str>,
) -> StoreResult<bool> {
    let done = sqlx::query("UPDATE friends SET remark = ? WHERE user_id = ? AND friend_id = ?")
        .bind(remark)
        .bind(sql_int(user))
        .bind(sql_int(friend))
        .execute(writer)
        .await?;
    Ok(done.rows_affected() == 1)
}
