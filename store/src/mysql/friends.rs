//! Friend requests and friendships. A friendship is two rows, one per
//! direction, each carrying its owner's remark.

use std::collections::HashSet;

use sqlx::{FromRow, MySql, MySqlConnection, MySqlExecutor, MySqlPool, QueryBuilder};

use super::batch::{Batcher, Serve};
use super::retry::retry;
use super::rows::{
    api_int, missing_reference, push_any_of, sql_int, status_from_sql, status_to_sql, Text,
    IN_POINTS,
};
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
    from_name: Text,
    to_user: i64,
    to_name: Text,
    note: Text,
    status: Text,
    created_at_ms: i64,
}

impl RequestRow {
    fn into_request(self) -> StoreResult<FriendRequest> {
        Ok(FriendRequest {
            id: api_int(self.id),
            from_user: api_int(self.from_user),
            from_name: self.from_name.0,
            to_user: api_int(self.to_user),
            to_name: self.to_name.0,
            note: self.note.0,
            status: status_from_sql(&self.status.0)?,
            created_at_ms: api_int(self.created_at_ms),
        })
    }
}

async fn load_request<'e>(
    executor: impl MySqlExecutor<'e>,
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
    pool: &MySqlPool,
    from: UserId,
    to: UserId,
    note: &str,
) -> StoreResult<FriendRequest> {
    if from == to {
        return Err(StoreError::Conflict("cannot befriend oneself"));
    }
    let (from, to) = (sql_int(from), sql_int(to));
    let created_at_ms = sql_int(now_ms());
    retry(|| async move {
        let mut tx = pool.begin().await?;
        // Both users' rows, locked lower id first, serialize the requests
        // between the two: the checks below hold until this commits.
        let users: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM users WHERE id IN (?, ?) ORDER BY id FOR UPDATE")
                .bind(from)
                .bind(to)
                .fetch_all(&mut *tx)
                .await?;
        if users.len() < 2 {
            return Err(StoreError::NotFound);
        }
        let pending: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM friend_requests WHERE status = 'pending' \
             AND ((from_user = ? AND to_user = ?) OR (from_user = ? AND to_user = ?)))",
        )
        .bind(from)
        .bind(to)
        .bind(to)
        .bind(from)
        .fetch_one(&mut *tx)
        .await?;
        if pending {
            return Err(StoreError::Conflict("a request is already pending"));
        }
        if friend_rows(&mut *tx, from, to).await? > 0 {
            return Err(StoreError::Conflict("already friends"));
        }
        let id = sqlx::query(
            "INSERT INTO friend_requests (from_user, to_user, note, status, created_at_ms) \
             VALUES (?, ?, ?, 'pending', ?)",
        )
        .bind(from)
        .bind(to)
        .bind(note)
        .bind(created_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(missing_reference)?
        .last_insert_id();
        let request = load_request(&mut *tx, sql_int(id))
            .await?
            .ok_or(StoreError::NotFound)?;
        tx.commit().await?;
        Ok(request)
    })
    .await
}

pub(super) async fn request(pool: &MySqlPool, id: u64) -> StoreResult<Option<FriendRequest>> {
    load_request(pool, sql_int(id)).await
}

pub(super) async fn pending_requests(
    pool: &MySqlPool,
    user: UserId,
) -> StoreResult<Vec<FriendRequest>> {
    let user = sql_int(user);
    let rows: Vec<RequestRow> = sqlx::query_as(&format!(
        "{SELECT_REQUEST} WHERE r.status = 'pending' AND (r.from_user = ? OR r.to_user = ?) \
         ORDER BY r.id DESC"
    ))
    .bind(user)
    .bind(user)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(RequestRow::into_request).collect()
}

/// `NotFound` if there is no such request, `Conflict` if it is not pending.
pub(super) async fn resolve_request(
    pool: &MySqlPool,
    id: u64,
    accept: bool,
) -> StoreResult<FriendRequest> {
    let id = sql_int(id);
    retry(|| async move {
        let mut tx = pool.begin().await?;
        // The request's row lock makes a second resolve wait, then see the
        // status this one wrote.
        let locked: Option<i64> =
            sqlx::query_scalar("SELECT id FROM friend_requests WHERE id = ? FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        if locked.is_none() {
            return Err(StoreError::NotFound);
        }
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
    })
    .await
}

/// The friendship both ways and the two users' direct conversation. Friends
/// who part and meet again find their old conversation, history included.
/// The no-op `ON DUPLICATE KEY UPDATE`s keep rows that exist, as SQLite's
/// `INSERT OR IGNORE` does, without also ignoring other errors.
async fn befriend(conn: &mut MySqlConnection, a: UserId, b: UserId) -> StoreResult<()> {
    let now = sql_int(now_ms());
    for (user, friend) in [(a, b), (b, a)] {
        sqlx::query(
            "INSERT INTO friends (user_id, friend_id, since_ms) VALUES (?, ?, ?) \
             ON DUPLICATE KEY UPDATE since_ms = since_ms",
        )
        .bind(sql_int(user))
        .bind(sql_int(friend))
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    // Locks the conversation row (new or old) until commit, so no message
    // takes a seq between the start_seq read below and the commit.
    let conversation = direct_conversation(a, b);
    sqlx::query(
        "INSERT INTO conversations (id, kind, updated_at_ms) VALUES (?, 'direct', ?) \
         ON DUPLICATE KEY UPDATE id = id",
    )
    .bind(&conversation)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    for user in [a, b] {
        sqlx::query(
            "INSERT INTO conversation_members (conversation_id, user_id, start_seq, read_seq) \
             SELECT id, ?, last_seq, last_seq FROM conversations WHERE id = ? \
             ON DUPLICATE KEY UPDATE start_seq = start_seq",
        )
        .bind(sql_int(user))
        .bind(&conversation)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// How many of the two friendship rows between `a` and `b` exist.
async fn friend_rows<'e>(executor: impl MySqlExecutor<'e>, a: i64, b: i64) -> StoreResult<i64> {
    let rows = sqlx::query_scalar(
        "SELECT COUNT(*) FROM friends \
         WHERE (user_id = ? AND friend_id = ?) OR (user_id = ? AND friend_id = ?)",
    )
    .bind(a)
    .bind(b)
    .bind(b)
    .bind(a)
    .fetch_one(executor)
    .await?;
    Ok(rows)
}

pub(super) async fn friends(pool: &MySqlPool, user: UserId) -> StoreResult<Vec<Friend>> {
    let rows: Vec<(i64, Text, Option<Text>, i64)> = sqlx::query_as(
        "SELECT f.friend_id, u.name, f.remark, f.since_ms \
         FROM friends f JOIN users u ON u.id = f.friend_id \
         WHERE f.user_id = ? ORDER BY u.name",
    )
    .bind(sql_int(user))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(user_id, name, remark, since_ms)| Friend {
            user_id: api_int(user_id),
            name: name.0,
            remark: remark.map(String::from),
            since_ms: api_int(since_ms),
        })
        .collect())
}

/// Friendship checks, read together. Every message to a user checks that
/// its sender and recipient are friends, so under load this was most of the
/// statements the database ran; now the checks that arrive while one read
/// runs share the next, one statement for up to [`MAX_CHECKS`] of them. The
/// answer is still read after the call was made: a friendship removed
/// before a check starts is never reported.
pub(super) type FriendChecks = Batcher<(UserId, UserId), bool>;

/// Checks read at once: one fills while the other runs.
const CHECKERS: usize = 2;

/// Most checks one statement answers (two key pairs each).
const MAX_CHECKS: usize = IN_POINTS / 2;

/// Starts the readers of the friendship checks on the current runtime.
pub(super) fn start_checks(pool: &MySqlPool) -> FriendChecks {
    Batcher::start(CHECKERS, MAX_CHECKS, Checker { pool: pool.clone() })
}

struct Checker {
    pool: MySqlPool,
}

impl Serve<(UserId, UserId), bool> for Checker {
    fn weight(&self, _: &(UserId, UserId)) -> usize {
        1
    }

    async fn serve(&self, checks: &[(UserId, UserId)]) -> StoreResult<Vec<bool>> {
        let pairs: Vec<(i64, i64)> = checks
            .iter()
            .map(|&(a, b)| (sql_int(a), sql_int(b)))
            .collect();
        let rows = friend_pairs(&self.pool, &pairs).await?;
        Ok(pairs
            .into_iter()
            .map(|(a, b)| a != b && rows.contains(&(a, b)) && rows.contains(&(b, a)))
            .collect())
    }
}

/// Which of the rows `(a, b)` and `(b, a)` of `pairs` exist.
async fn friend_pairs(pool: &MySqlPool, pairs: &[(i64, i64)]) -> StoreResult<HashSet<(i64, i64)>> {
    // The primary key named: see `push_any_of`.
    let mut query = QueryBuilder::<MySql>::new(
        "SELECT user_id, friend_id FROM friends FORCE INDEX (PRIMARY) WHERE ",
    );
    let both_ways = pairs.iter().flat_map(|&(a, b)| [(a, b), (b, a)]);
    push_any_of(&mut query, ("user_id", "friend_id"), both_ways);
    let rows: Vec<(i64, i64)> = query.build_query_as().fetch_all(pool).await?;
    Ok(rows.into_iter().collect())
}

/// Leaves the direct conversation and its memberships: history stays readable.
pub(super) async fn remove_friend(
    pool: &MySqlPool,
    user: UserId,
    friend: UserId,
) -> StoreResult<bool> {
    let (user, friend) = (sql_int(user), sql_int(friend));
    let done = retry(|| async move {
        Ok(sqlx::query(
            "DELETE FROM friends \
             WHERE (user_id = ? AND friend_id = ?) OR (user_id = ? AND friend_id = ?)",
        )
        .bind(user)
        .bind(friend)
        .bind(friend)
        .bind(user)
        .execute(pool)
        .await?)
    })
    .await?;
    Ok(done.rows_affected() > 0)
}

/// The connection reports matched rows (`CLIENT_FOUND_ROWS`), so setting
/// the remark a friend already has still counts as done.
pub(super) async fn set_remark(
    pool: &MySqlPool,
    user: UserId,
    friend: UserId,
    remark: Option<&str>,
) -> StoreResult<bool> {
    let done = retry(|| async move {
        Ok(
            sqlx::query("UPDATE friends SET remark = ? WHERE user_id = ? AND friend_id = ?")
                .bind(remark)
                .bind(sql_int(user))
                .bind(sql_int(friend))
                .execute(pool)
                .await?,
        )
    })
    .await?;
    Ok(done.rows_affected() == 1)
}
