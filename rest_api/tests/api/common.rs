//! The test harness: the real router over a real SQLite store in a temp dir,
//! the in-process user status, and a notifier that records what it was asked
//! to push.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, Method, Request, Response, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use im_proto::Body as Event;
use im_rest_api::{app, AppState};
use im_store::{SqliteStore, UserId};
use im_transfer::Notifier;
use im_user_status::MemoryUserStatus;
use serde_json::Value;
use tempfile::TempDir;
use tower::ServiceExt;

/// Upload cap in tests: small, so the 413 case is cheap.
pub const MAX_UPLOAD: usize = 4096;

/// Records pushes instead of delivering them.
#[derive(Debug, Default)]
pub struct RecordingNotifier {
    /// (recipient, event) in call order.
    pub events: Mutex<Vec<(UserId, Event)>>,
    /// (user, token hash) of every revoke.
    pub revoked: Mutex<Vec<(UserId, String)>>,
}

#[async_trait]
impl Notifier for RecordingNotifier {
    async fn notify(&self, users: &[UserId], event: Event) {
        let mut events = self.events.lock().unwrap();
        events.extend(users.iter().map(|user| (*user, event.clone())));
    }

    async fn revoke(&self, user: UserId, token_hash: &str) {
        self.revoked
            .lock()
            .unwrap()
            .push((user, token_hash.to_owned()));
    }
}

/// A registered, logged-in user.
#[derive(Debug, Clone)]
pub struct Account {
    /// User id.
    pub id: UserId,
    /// Login name.
    pub name: String,
    /// Bearer token.
    pub token: String,
}

/// The app under test and the parts tests look into.
pub struct TestApp {
    /// The router.
    pub router: Router,
    /// The store behind it.
    pub store: Arc<SqliteStore>,
    /// The presence map behind it.
    pub status: Arc<MemoryUserStatus>,
    /// The recording notifier behind it.
    pub notifier: Arc<RecordingNotifier>,
    /// Holds the database and the files.
    pub dir: TempDir,
}

impl TestApp {
    /// A fresh app with an empty database.
    pub async fn new() -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("im.db")).await.unwrap());
        let status = Arc::new(MemoryUserStatus::new());
        let notifier = Arc::new(RecordingNotifier::default());
        let router = app(AppState {
            store: store.clone(),
            status: status.clone(),
            notifier: notifier.clone(),
            files_dir: dir.path().join("files"),
            max_upload_bytes: MAX_UPLOAD,
        });
        TestApp {
            router,
            store,
            status,
            notifier,
            dir,
        }
    }

    /// Sends a request as-is.
    pub async fn send(&self, request: Request<Body>) -> Response<Body> {
        self.router.clone().oneshot(request).await.unwrap()
    }

    /// A JSON call; returns the status and the body parsed as JSON (Null when
    /// empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = match body {
            Some(json) => builder
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(json.to_string())),
            None => builder.body(Body::empty()),
        };
        let response = self.send(request.unwrap()).await;
        let status = response.status();
        (status, json_body(response).await)
    }

    /// An authenticated GET.
    pub async fn get(&self, path: &str, who: &Account) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(&who.token), None).await
    }

    /// Registers `name` (password "password1") and logs in.
    pub async fn account(&self, name: &str) -> Account {
        let creds = serde_json::json!({"name": name, "password": "password1"});
        let (status, user) = self
            .call(Method::POST, "/v1/accounts", None, Some(creds.clone()))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{user}");
        let (status, session) = self
            .call(Method::POST, "/v1/sessions", None, Some(creds))
            .await;
        assert_eq!(status, StatusCode::OK, "{session}");
        Account {
            id: user["id"].as_u64().unwrap(),
            name: name.to_owned(),
            token: session["token"].as_str().unwrap().to_owned(),
        }
    }

    /// Makes `a` and `b` friends through the API.
    pub async fn befriend(&self, a: &Account, b: &Account) {
        let (status, request) = self
            .call(
                Method::POST,
                "/v1/friend-requests",
                Some(&a.token),
                Some(serde_json::json!({"to": b.name})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{request}");
        let path = format!("/v1/friend-requests/{}/accept", request["id"]);
        let (status, body) = self.call(Method::POST, &path, Some(&b.token), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// Takes the recorded pushes, leaving none.
    pub fn take_events(&self) -> Vec<(UserId, Event)> {
        std::mem::take(&mut *self.notifier.events.lock().unwrap())
    }
}

/// The body of a response as JSON (Null when empty).
pub async fn json_body(response: Response<Body>) -> Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    if bytes.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)))
}

/// Asserts an error response: its status and its `code`.
#[track_caller]
pub fn assert_error(result: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(result.0, status, "{}", result.1);
    assert_eq!(result.1["code"], code, "{}", result.1);
    assert!(result.1["message"].as_str().is_some_and(|m| !m.is_empty()));
}
