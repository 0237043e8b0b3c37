//! The store's error type.

use im_proto::ErrorCode;

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique name is already used.
    #[error("name is taken")]
    NameTaken,
    /// The row does not exist.
    #[error("not found")]
    NotFound,
    /// The change conflicts with the current state (already a member, request
    /// no longer pending, ...).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The caller may not touch this row.
    #[error("forbidden")]
    Forbidden,
    /// The database failed; its text is logged, never shown to clients.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The database failed on the SQLite hot path (`rusqlite`); logged,
    /// never shown to clients.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Migrations failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Another process has the SQLite file open: another server on the
    /// same data directory.
    #[error("{} is in use by another process (is another server running on this data directory?)", .0.display())]
    InUse(std::path::PathBuf),
}

impl StoreError {
    /// The client-facing code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::NameTaken => ErrorCode::NameTaken,
            StoreError::NotFound => ErrorCode::NotFound,
            StoreError::Conflict(_) => ErrorCode::Conflict,
            StoreError::Forbidden => ErrorCode::Forbidden,
            StoreError::Database(_)
            | StoreError::Sqlite(_)
            | StoreError::Migrate(_)
            | StoreError::InUse(_) => ErrorCode::Internal,
        }
    }
}
