//! Users, login tokens and uploaded files.

use sqlx::SqlitePool;

use super::rows::{api_int, is_unique_violation, missing_reference, sql_int};
use crate::types::{now_ms, FileRecord, User, UserId};
use crate::{StoreError, StoreResult};

pub(super) async fn create_user(
    writer: &SqlitePool,
    name: &str,
    password_hash: &str,
) -> StoreResult<User> {
    let created_at_ms = now_ms();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO users (name, password_hash, created_at_ms) VALUES (?, ?, ?) RETURNING id",
    )
    .bind(name)
    .bind(password_hash)
    .bind(sql_int(created_at_ms))
    .fetch_one(writer)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::NameTaken
        } else {
            e.into()
        }
    })?;
    Ok(User {
        id: api_int(id),
        name: name.to_owned(),
        created_at_ms,
    })
}

pub(super) async fn user_by_name(
    reader: &SqlitePool,
    name: &str,
) -> StoreResult<Option<(User, String)>> {
    let row: Option<(i64, String, i64, String)> =
        sqlx::query_as("SELECT id, name, created_at_ms, password_hash FROM users WHERE name = ?")
            .bind(name)
            .fetch_optional(reader)
            .await?;
    Ok(row.map(|(id, name, created_at_ms, password_hash)| {
        let user = User {
            id: api_int(id),
            name,
            created_at_ms: api_int(created_at_ms),
        };
        (user, password_hash)
    }))
}

pub(super) async fn user(reader: &SqlitePool, id: UserId) -> StoreResult<Option<User>> {
    let row: Option<(i64, String, i64)> =
        sqlx::query_as("SELECT id, name, created_at_ms FROM users WHERE id = ?")
            .bind(sql_int(id))
            .fetch_optional(reader)
            .await?;
    Ok(row.map(|(id, name, created_at_ms)| User {
        id: api_int(id),
        name,
        created_at_ms: api_int(created_at_ms),
    }))
}

/// `NotFound` if the user does not exist.
pub(super) async fn create_token(
    writer: &SqlitePool,
    user: UserId,
    token_hash: &str,
) -> StoreResult<()> {
    sqlx::query("INSERT INTO tokens (token_hash, user_id, created_at_ms) VALUES (?, ?, ?)")
        .bind(token_hash)
        .bind(sql_int(user))
        .bind(sql_int(now_ms()))
        .execute(writer)
        .await
        .map_err(missing_reference)?;
    Ok(())
}

pub(super) async fn token_user(
    reader: &SqlitePool,
    token_hash: &str,
) -> StoreResult<Option<UserId>> {
    let user: Option<i64> =
        sqlx::query_scalar("SELECT user_id FROM tokens WHERE token_hash = ? AND revoked = 0")
            .bind(token_hash)
            .fetch_optional(reader)
            .await?;
    Ok(user.map(api_int))
}

pub(super) async fn revoke_token(writer: &SqlitePool, token_hash: &str) -> StoreResult<bool> {
    let done = sqlx::query("UPDATE tokens SET revoked = 1 WHERE token_hash = ? AND revoked = 0")
        .bind(token_hash)
        .execute(writer)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// `NotFound` if the owner does not exist, `Conflict` if the id is in use.
pub(super) async fn create_file(writer: &SqlitePool, file: &FileRecord) -> StoreResult<()> {
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
    .execute(writer)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::Conflict("file id in use")
        } else {
            missing_reference(e)
        }
    })?;
    Ok(())
}

pub(super) async fn file(reader: &SqlitePool, id: &str) -> StoreResult<Option<FileRecord>> {
    let row: Option<(String, i64, String, String, i64, i64)> =
        sqlx::query_as("SELECT id, owner, name, mime, size, created_at_ms FROM files WHERE id = ?")
            .bind(id)
            .fetch_optional(reader)
            .await?;
    Ok(
        row.map(|(id, owner, name, mime, size, created_at_ms)| FileRecord {
            id,
            owner: api_int(owner),
            name,
            mime,
            size: api_int(size),
            created_at_ms: api_int(created_at_ms),
        }),
    )
}
