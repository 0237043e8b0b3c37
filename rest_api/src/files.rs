//! File upload and download. The body streams to a temporary file with a
//! running size check, so an upload never holds more than one chunk in
//! memory and stops as soon as it passes the limit.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{
    CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::BodyExt;
use im_store::{now_ms, FileRecord};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::AppState;

/// MIME type when the upload names none.
const DEFAULT_MIME: &str = "application/octet-stream";
/// Longest file name, in characters.
const MAX_NAME_CHARS: usize = 255;

/// Query of `POST /v1/files`.
#[derive(Debug, Deserialize)]
pub struct UploadQuery {
    name: String,
}

/// `POST /v1/files?name=...`: stores the raw body as a file.
pub async fn upload(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiQuery(query): ApiQuery<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<FileRecord>), ApiError> {
    validate_name(&query.name)?;
    let mime = mime_of(&headers)?;
    let max = state.max_upload_bytes;
    // An honest Content-Length over the limit is refused before reading.
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(ApiError::PayloadTooLarge(max));
    }

    let id = uuid::Uuid::new_v4().to_string();
    tokio::fs::create_dir_all(&state.files_dir)
        .await
        .map_err(ApiError::internal)?;
    let part = PartFile::new(state.files_dir.join(format!("{id}.part")));
    let size = write_limited(body, &part.path, max).await?;
    // The rename makes the file appear whole or not at all.
    let path = state.files_dir.join(&id);
    tokio::fs::rename(&part.path, &path)
        .await
        .map_err(ApiError::internal)?;
    part.disarm();

    let record = FileRecord {
        id,
        owner: caller.id,
        name: query.name,
        mime,
        size,
        created_at_ms: now_ms(),
    };
    if let Err(e) = state.store.create_file(&record).await {
        let _ = tokio::fs::remove_file(&path).await;
        return Err(e.into());
    }
    tracing::info!(user = caller.id, file = %record.id, size, "file uploaded");
    Ok((StatusCode::CREATED, Json(record)))
}

/// `GET /v1/files/{id}`: the file's bytes, for any authenticated user (ids
/// are unguessable).
pub async fn download(
    State(state): State<AppState>,
    _caller: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound("no such file");
    // Only a UUID ever touches the file system.
    if uuid::Uuid::try_parse(&id).is_err() {
        return Err(not_found());
    }
    let record = state.store.file(&id).await?.ok_or_else(not_found)?;
    let file = match tokio::fs::File::open(state.files_dir.join(&record.id)).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(file = %record.id, "file record without bytes");
            return Err(not_found());
        }
        Err(e) => return Err(ApiError::internal(e)),
    };
    let mime = HeaderValue::from_str(&record.mime)
        .unwrap_or_else(|_| HeaderValue::from_static(DEFAULT_MIME));
    let disposition = HeaderValue::from_str(&content_disposition(&record.name))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    let headers = [
        (CONTENT_TYPE, mime),
        (CONTENT_LENGTH, HeaderValue::from(record.size)),
        (CONTENT_DISPOSITION, disposition),
        // Uploaded bytes are served as what they claim to be, never sniffed.
        (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
    ];
    Ok((headers, Body::from_stream(ReaderStream::new(file))).into_response())
}

/// Streams `body` into a new file at `path`; 413 once it passes `max` bytes.
async fn write_limited(mut body: Body, path: &Path, max: usize) -> Result<u64, ApiError> {
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(ApiError::internal)?;
    let mut size: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|_| ApiError::BadRequest("could not read the request body".into()))?;
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers carry no file bytes
        };
        size += chunk.len() as u64;
        if size > max as u64 {
            return Err(ApiError::PayloadTooLarge(max));
        }
        file.write_all(&chunk).await.map_err(ApiError::internal)?;
    }
    file.sync_all().await.map_err(ApiError::internal)?;
    Ok(size)
}

/// A temporary upload file, removed when dropped unless disarmed, so an
/// error or a client that hangs up leaves nothing behind.
struct PartFile {
    path: PathBuf,
    armed: bool,
}

impl PartFile {
    fn new(path: PathBuf) -> Self {
        PartFile { path, armed: true }
    }

    /// Keeps the file (it has been renamed into place).
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// 1–255 characters, no control characters and no path separators.
fn validate_name(name: &str) -> Result<(), ApiError> {
    let len = name.chars().count();
    let bad_char = |c: char| c.is_control() || c == '/' || c == '\\';
    if len == 0 || len > MAX_NAME_CHARS || name.chars().any(bad_char) {
        return Err(ApiError::BadRequest(format!(
            "name must be 1-{MAX_NAME_CHARS} characters without control characters or slashes"
        )));
    }
    Ok(())
}

/// The upload's Content-Type, or the default when absent.
fn mime_of(headers: &HeaderMap) -> Result<String, ApiError> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(DEFAULT_MIME.to_owned());
    };
    match value.to_str() {
        Ok(mime) if !mime.trim().is_empty() && mime.len() <= 255 => Ok(mime.trim().to_owned()),
        _ => Err(ApiError::BadRequest(
            "Content-Type must be a printable MIME type of at most 255 characters".into(),
        )),
    }
}

/// `attachment` with an ASCII fallback name and the exact UTF-8 name
/// (RFC 6266 / RFC 5987).
fn content_disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for byte in name.bytes() {
        let keep = byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte);
        if keep {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("photo.jpg").is_ok());
        assert!(validate_name("résumé final.pdf").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("../etc/passwd").is_err());
        assert!(validate_name("a\r\nb").is_err());
        assert!(validate_name(&"x".repeat(256)).is_err());
    }

    #[test]
    fn disposition_quotes_safely() {
        assert_eq!(
            content_disposition("a b.txt"),
            "attachment; filename=\"a b.txt\"; filename*=UTF-8''a%20b.txt"
        );
        assert_eq!(
            content_disposition("é\".png"),
            "attachment; filename=\"__.png\"; filename*=UTF-8''%C3%A9%22.png"
        );
    }
}
