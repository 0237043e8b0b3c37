//! Users, login tokens and uploaded files. Each write is one statement, so
//! only a lock failure on a busy unique index can make it run again.

use sqlx::MySqlPool;

use super::retry::retry;
use super::rows::{api_int, is_unique_violation, missing_reference, sql_int, Text};
use crate::types::{now_ms, FileRecord, User, UserId};
use crate::{StoreError, StoreResult};

pub(super) async fn create_user(
    pool: &MySqlPool,
    name: &str,
    password_hash: &str,
) -> StoreResult<User> {
    let created_at_ms = now_ms();
    let done = retry(|| async move {
        sqlx::query("INSERT INTO users (name, password_hash, created_at_ms) VALUES (?, ?, ?)")
            .bind(name)
            .bind(password_hash)
            .bind(sql_int(created_at_ms))
            .execute(pool)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::NameTaken
                } else {
                    e.into()
                }
            })
    })
    .await?;
    Ok(User {
        id: done.last_insert_id(),
        name: name.to_owned(),
        created_at_ms,
    })
}

pub(super) async fn user_by_name(
    pool: &MySqlPool,
    name: &str,
) -> StoreResult<Option<(User, String)>> {
    let row: Option<(i64, Text, i64, Text)> =
        sqlx::query_as("SELECT id, name, created_at_ms, password_hash FROM users WHERE name = ?")
            .bind(name)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|(id, name, created_at_ms, password_hash)| {
        let user = User {
            id: api_int(id),
            name: name.0,
            created_at_ms: api_int(created_at_ms),
        };
        (user, password_hash.0)
    }))
}

pub(super) async fn user(pool: &MySqlPool, id: UserId) -> StoreResult<Option<User>> {
    let row: Option<(i64, Text, i64)> =
        sqlx::query_as("SELECT id, name, created_at_ms FROM users WHERE id = ?")
            .bind(sql_int(id))
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|(id, name, created_at_ms)| User {
        id: api_int(id),
        name: name.0,
        created_at_ms: api_int(created_at_ms),
    }))
}

/// `NotFound` if the user does not exist.
pub(super) async fn create_token(
    pool: &MySqlPool,
    user: UserId,
    token_hash: &str,
) -> StoreResult<()> {
    let created_at_ms = sql_int(now_ms());
    retry(|| async move {
        sqlx::query("INSERT INTO tokens (token_hash, user_id, created_at_ms) VALUES (?, ?, ?)")
            .bind(token_hash)
            .bind(sql_int(user))
            .bind(created_at_ms)
            .execute(pool)
            .await
            .map_err(missing_reference)
    })
    .await?;
    Ok(())
}

pub(super) async fn token_user(pool: &MySqlPool, token_hash: &str) -> StoreResult<Option<UserId>> {
    let user: Option<i64> =
        sqlx::query_scalar("SELECT user_id FROM tokens WHERE token_hash = ? AND revoked = 0")
            .bind(token_hash)
            .fetch_optional(pool)
            .await?;
    Ok(user.map(api_int))
}

pub(super) async fn revoke_token(pool: &MySqlPool, token_hash: &str) -> StoreResult<bool> {
    let done = retry(|| async move {
        Ok(
            sqlx::query("UPDATE tokens SET revoked = 1 WHERE token_hash = ? AND revoked = 0")
                .bind(token_hash)
                .execute(pool)
                .await?,
        )
    })
    .await?;
    Ok(done.rows_affected() == 1)
}

/// `NotFound` if the owner does not exist, `Conflict` if the id is in use.
pub(super) async fn create_file(pool: &MySqlPool, file: &FileRecord) -> StoreResult<()> {
    retry(|| async move {
        sqlx::query(
            "INSERT INTO files (id, owner, name, mime, size, created_at_ms) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&file.id)
        .bind(sql_int(file.owner))
        .bind(&file.name)
        .bind(&file.mime)
        .bind(sql_int(file.size))
        .bind(sql_int(file.created_at_ms))
        .execute(pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict("file id in use")
            } else {
                missing_reference(e)
            }
        })
    })
    .await?;
    Ok(())
}

pub(super) async fn file(pool: &MySqlPool, id: &str) -> StoreResult<Option<FileRecord>> {
    let row: Option<(Text, i64, Text, Text, i64, i64)> =
        sqlx::query_as("SELECT id, owner, name, mime, size, created_at_ms FROM files WHERE id = ?")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(
        row.map(|(id, owner, name, mime, size, created_at_ms)| FileRecord {
            id: id.0,
            owner: api_int(owner),
            name: name.0,
            mime: mime.0,
            size: api_int(size),
            created_at_ms: api_int(created_at_ms),
        }),
    )
}
