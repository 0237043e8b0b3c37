//! The bearer-token extractor every authenticated route takes.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use im_store::{hash_token, UserId};

use crate::error::ApiError;
use crate::AppState;

/// The caller, from `Authorization: Bearer <token>`.
#[derive(Debug, Clone)]
pub struct AuthUser {
    /// Who is calling.
    pub id: UserId,
    /// The SHA-256 (hex) of the token used, so logout can revoke exactly it.
    pub token_hash: String,
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer_token(parts).ok_or(ApiError::Unauthenticated(
            "missing or malformed Authorization: Bearer header",
        ))?;
        // The store only knows hashes: a leaked database holds no usable token.
        let token_hash = hash_token(token);
        match state.store.token_user(&token_hash).await? {
            Some(id) => Ok(AuthUser { id, token_hash }),
            None => Err(ApiError::Unauthenticated("invalid or revoked token")),
        }
    }
}

/// The token of a well-formed bearer header.
fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(header: Option<&str>) -> Parts {
        let mut builder = Request::builder();
        if let Some(value) = header {
            builder = builder.header(AUTHORIZATION, value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn reads_only_bearer_tokens() {
        assert_eq!(bearer_token(&parts(Some("Bearer abc"))), Some("abc"));
        assert_eq!(bearer_token(&parts(Some("bearer abc"))), Some("abc"));
        assert_eq!(bearer_token(&parts(Some("Basic abc"))), None);
        assert_eq!(bearer_token(&parts(Some("Bearer "))), None);
        assert_eq!(bearer_token(&parts(Some("Bearer"))), None);
        assert_eq!(bearer_token(&parts(None)), None);
    }
}
