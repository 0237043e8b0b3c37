//! Accounts and sessions: register, login, logout, who am I, look a user up.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use im_store::{hash_token, StoreError, User};
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::password;
use crate::AppState;

/// One message for an unknown name and a wrong password alike, so a caller
/// cannot probe which names exist.
const BAD_LOGIN: &str = "wrong name or password";

/// Body of register and login.
#[derive(Debug, Deserialize)]
pub struct Credentials {
    name: String,
    password: String,
}

/// Answer to a login.
#[derive(Debug, Serialize)]
pub struct Session {
    token: String,
    user: User,
}

/// `POST /v1/accounts`: creates an account.
pub async fn register(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    validate_name(&body.name)?;
    validate_password(&body.password)?;
    let hash = password::hash(body.password).await?;
    match state.store.create_user(&body.name, &hash).await {
        Ok(user) => Ok((StatusCode::CREATED, Json(user))),
        Err(StoreError::NameTaken) => Err(ApiError::NameTaken),
        Err(e) => Err(e.into()),
    }
}

/// `POST /v1/sessions`: checks the password and hands out a new token.
pub async fn login(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<Json<Session>, ApiError> {
    let found = state.store.user_by_name(&body.name).await?;
    // An unknown name still pays for one verification, so timing does not
    // tell which names exist.
    let stored_hash = match &found {
        Some((_, hash)) => hash.clone(),
        None => dummy_hash().await?,
    };
    let ok = password::verify(body.password, stored_hash).await?;
    let user = match found {
        Some((user, _)) if ok => user,
        _ => return Err(ApiError::Unauthenticated(BAD_LOGIN)),
    };
    let token = new_token();
    state
        .store
        .create_token(user.id, &hash_token(&token))
        .await?;
    tracing::info!(user = user.id, "login");
    Ok(Json(Session { token, user }))
}

/// `DELETE /v1/sessions/current`: revokes the caller's token and closes the
/// links that logged in with it.
pub async fn logout(
    State(state): State<AppState>,
    caller: AuthUser,
) -> Result<StatusCode, ApiError> {
    state.store.revoke_token(&caller.token_hash).await?;
    state.notifier.revoke(caller.id, &caller.token_hash).await;
    tracing::info!(user = caller.id, "logout");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/me`: the caller's account.
pub async fn me(State(state): State<AppState>, caller: AuthUser) -> Result<Json<User>, ApiError> {
    load_user(&state, caller.id).await.map(Json)
}

/// `GET /v1/users/{name}`: an account by name.
pub async fn user_by_name(
    State(state): State<AppState>,
    _caller: AuthUser,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<User>, ApiError> {
    match state.store.user_by_name(&name).await? {
        Some((user, _)) => Ok(Json(user)),
        None => Err(ApiError::NotFound("no such user")),
    }
}

/// The account of an authenticated caller (gone only if deleted underneath).
pub(crate) async fn load_user(state: &AppState, id: im_store::UserId) -> Result<User, ApiError> {
    state
        .store
        .user(id)
        .await?
        .ok_or(ApiError::Unauthenticated("account no longer exists"))
}

/// 1–32 characters of `[A-Za-z0-9_.-]`.
fn validate_name(name: &str) -> Result<(), ApiError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if name.is_empty() || name.len() > 32 || !name.chars().all(allowed) {
        return Err(ApiError::BadRequest(
            "name must be 1-32 characters of A-Z, a-z, 0-9, '_', '.', '-'".into(),
        ));
    }
    Ok(())
}

/// 6–128 characters.
fn validate_password(password: &str) -> Result<(), ApiError> {
    let len = password.chars().count();
    if !(6..=128).contains(&len) {
        return Err(ApiError::BadRequest(
            "password must be 6-128 characters".into(),
        ));
    }
    Ok(())
}

/// A new login token: 32 random bytes, hex.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A hash of a random password, made once, to verify unknown names against.
async fn dummy_hash() -> Result<String, ApiError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(hash) = DUMMY.get() {
        return Ok(hash.clone());
    }
    let hash = password::hash(new_token()).await?;
    Ok(DUMMY.get_or_init(|| hash).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("alice").is_ok());
        assert!(validate_name("a.b-c_9").is_ok());
        assert!(validate_name(&"x".repeat(32)).is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name(&"x".repeat(33)).is_err());
        assert!(validate_name("has space").is_err());
        assert!(validate_name("ünï").is_err());
        assert!(validate_name("a/b").is_err());
    }

    #[test]
    fn passwords() {
        assert!(validate_password("secret").is_ok());
        assert!(validate_password(&"p".repeat(128)).is_ok());
        assert!(validate_password("short").is_err());
        assert!(validate_password(&"p".repeat(129)).is_err());
    }

    #[test]
    fn tokens_are_64_hex_chars_and_differ() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn hash_then_verify() {
        let hash = password::hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(password::verify("correct horse".into(), hash.clone())
            .await
            .unwrap());
        assert!(!password::verify("wrong horse".into(), hash).await.unwrap());
        assert!(!password::verify("x".into(), "not a hash".into())
            .await
            .unwrap());
    }
}
