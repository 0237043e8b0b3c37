//! How the closed error-code set maps onto HTTP, so the link and the REST API
//! report the same codes.

use crate::ErrorCode;

impl ErrorCode {
    /// The HTTP status a REST response with this code carries.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest
            | ErrorCode::MalformedFrame
            | ErrorCode::UnknownMessageType
            | ErrorCode::ProtocolViolation => 400,
            ErrorCode::Unauthenticated | ErrorCode::TokenRevoked | ErrorCode::LoginTimeout => 401,
            ErrorCode::Forbidden | ErrorCode::NotFriends | ErrorCode::NotGroupMember => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::NameTaken | ErrorCode::Conflict => 409,
            ErrorCode::PayloadTooLarge | ErrorCode::FrameTooLarge => 413,
            ErrorCode::IdleTimeout => 408,
            ErrorCode::SlowConsumer | ErrorCode::RetryLimit | ErrorCode::ReorderOverflow => 429,
            ErrorCode::ShuttingDown => 503,
            ErrorCode::Unspecified | ErrorCode::Internal => 500,
        }
    }

    /// The stable name clients match on, e.g. `NAME_TAKEN`.
    pub fn name(self) -> &'static str {
        self.as_str_name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_name_and_an_error_status() {
        for value in 0..=64 {
            if let Ok(code) = ErrorCode::try_from(value) {
                assert!(code.http_status() >= 400, "{code:?}");
                assert!(!code.name().is_empty());
            }
        }
        assert_eq!(ErrorCode::NameTaken.name(), "NAME_TAKEN");
        assert_eq!(ErrorCode::NotFriends.http_status(), 403);
    }
}
