//! The one error type of the REST API. Every failure becomes a JSON body
//! `{"code": "NAME_TAKEN", "message": "..."}` with the HTTP status of its
//! code; database and I/O details are logged, never sent to the client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use im_proto::ErrorCode;
use im_store::StoreError;
use serde::Serialize;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or a field is out of range.
    #[error("{0}")]
    BadRequest(String),
    /// No token, or an unknown or revoked one; or a wrong name or password.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The caller is not a member of the group.
    #[error("you are not a member of this group")]
    NotGroupMember,
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(&'static str),
    /// No route has this path.
    #[error("no such route")]
    NoRoute,
    /// The path exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The account name is in use.
    #[error("name is taken")]
    NameTaken,
    /// The change conflicts with the current state.
    #[error("{0}")]
    Conflict(&'static str),
    /// The body is bigger than allowed.
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Something on the server failed (I/O, hashing); the detail is logged.
    #[error("internal: {0}")]
    Internal(String),
}

/// The JSON body of every error response.
#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    code: &'static str,
    message: &'a str,
}

impl ApiError {
    /// The client-facing code.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::BadRequest(_) | ApiError::MethodNotAllowed => ErrorCode::BadRequest,
            ApiError::Unauthenticated(_) => ErrorCode::Unauthenticated,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::NotGroupMember => ErrorCode::NotGroupMember,
            ApiError::NotFound(_) | ApiError::NoRoute => ErrorCode::NotFound,
            ApiError::NameTaken => ErrorCode::NameTaken,
            ApiError::Conflict(_) => ErrorCode::Conflict,
            ApiError::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            ApiError::Store(e) => e.code(),
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The HTTP status: the code's, except 405 for a wrong method.
    pub fn status(&self) -> StatusCode {
        if let ApiError::MethodNotAllowed = self {
            return StatusCode::METHOD_NOT_ALLOWED;
        }
        StatusCode::from_u16(self.code().http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// What the client is told. Server-side failures get a fixed text.
    fn client_message(&self) -> String {
        match self {
            ApiError::Store(
                StoreError::Database(_)
                | StoreError::Sqlite(_)
                | StoreError::Migrate(_)
                | StoreError::InUse(_),
            )
            | ApiError::Internal(_) => "internal error".to_owned(),
            ApiError::Store(StoreError::NotFound) => "not found".to_owned(),
            ApiError::Store(StoreError::Forbidden) => "forbidden".to_owned(),
            other => other.to_string(),
        }
    }

    /// An internal error from anything displayable; the text is only logged.
    pub(crate) fn internal(detail: impl std::fmt::Display) -> Self {
        ApiError::Internal(detail.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let message = self.client_message();
        let body = ErrorBody {
            code: self.code().name(),
            message: &message,
        };
        (status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_side_detail_never_reaches_the_client() {
        let err = ApiError::internal("disk I/O error at /var/lib/im/files");
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(err.client_message(), "internal error");
        assert_eq!(err.code().name(), "INTERNAL");
    }

    #[test]
    fn codes_and_statuses() {
        assert_eq!(ApiError::NameTaken.status(), StatusCode::CONFLICT);
        assert_eq!(ApiError::NotGroupMember.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            ApiError::MethodNotAllowed.status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(ApiError::MethodNotAllowed.code().name(), "BAD_REQUEST");
        assert_eq!(
            ApiError::PayloadTooLarge(1).status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(ApiError::NoRoute.code().name(), "NOT_FOUND");
        assert_eq!(
            ApiError::Store(StoreError::Conflict("x")).status(),
            StatusCode::CONFLICT
        );
    }
}
