//! The one error type of the client library, for REST calls and the link alike.

use im_proto::ErrorCode;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error: an HTTP error body
    /// `{"code","message"}`, or an `Error` frame answering a link request.
    #[error("{code}: {message}")]
    Api {
        /// HTTP status (for link errors, the status the code maps to).
        status: u16,
        /// The stable code from the closed set, e.g. `NAME_TAKEN`.
        code: String,
        /// Human-readable detail.
        message: String,
    },
    /// The server refused the link at login with a fatal error.
    #[error("login rejected: {code}: {message}")]
    Rejected {
        /// The stable code, e.g. `UNAUTHENTICATED`.
        code: String,
        /// Human-readable detail.
        message: String,
    },
    /// The link closed before the request was answered.
    #[error("link closed: {0}")]
    Closed(String),
    /// Nothing came back in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The server sent something this client does not understand.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A bad argument given to the client (URL, frame too large, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The HTTP transport failed.
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    /// A socket or file operation failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl ClientError {
    /// An `Api` error for a code of the closed set.
    pub fn api(code: ErrorCode, message: impl Into<String>) -> Self {
        ClientError::Api {
            status: code.http_status(),
            code: code.name().to_string(),
            message: message.into(),
        }
    }

    /// The stable code a user or script can match on: the server's code for
    /// `Api` and `Rejected`, a client-side name otherwise.
    pub fn code(&self) -> &str {
        match self {
            ClientError::Api { code, .. } | ClientError::Rejected { code, .. } => code,
            ClientError::Closed(_) => "LINK_CLOSED",
            ClientError::Timeout(_) => "TIMEOUT",
            ClientError::Protocol(_) => "PROTOCOL",
            ClientError::InvalidInput(_) => "INVALID_INPUT",
            ClientError::Http(_) => "HTTP",
            ClientError::Io(_) => "IO",
        }
    }

    /// The server's code as the closed enum, when it names one.
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { code, .. } | ClientError::Rejected { code, .. } => {
                ErrorCode::from_str_name(code)
            }
            _ => None,
        }
    }

    /// A human-readable message without the code.
    pub fn message(&self) -> String {
        match self {
            ClientError::Api { message, .. } | ClientError::Rejected { message, .. } => {
                message.clone()
            }
            other => other.to_string(),
        }
    }
}

/// A code name the REST API would use for an HTTP status, for error bodies
/// that are not the usual JSON.
pub(crate) fn code_for_status(status: u16) -> ErrorCode {
    match status {
        400 => ErrorCode::BadRequest,
        401 => ErrorCode::Unauthenticated,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        409 => ErrorCode::Conflict,
        413 => ErrorCode::PayloadTooLarge,
        _ => ErrorCode::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_keep_the_server_code() {
        let e = ClientError::api(ErrorCode::NotFriends, "bob is not your friend");
        assert_eq!(e.code(), "NOT_FRIENDS");
        assert_eq!(e.error_code(), Some(ErrorCode::NotFriends));
        assert!(matches!(e, ClientError::Api { status: 403, .. }));
        assert_eq!(e.message(), "bob is not your friend");
    }

    #[test]
    fn unknown_statuses_map_to_internal() {
        assert_eq!(code_for_status(404), ErrorCode::NotFound);
        assert_eq!(code_for_status(502), ErrorCode::Internal);
    }
}
