//! The HTTP/JSON API: accounts, sessions, friends, groups, history,
//! conversations and files. [`app`] builds the router from the one route
//! table [`routes`], so the set of (method, path) the server answers is
//! enumerable and checked against `docs/openapi.json` by the tests.
//!
//! Handlers decide policy (who may kick whom, who may answer a request); the
//! [`Store`] only keeps data. Live pushes go through the [`Notifier`] after
//! the store has committed the change.

mod accounts;
mod auth;
mod error;
mod extract;
mod files;
mod friends;
mod groups;
mod history;
mod openapi;
mod password;

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use im_store::{Store, UserId};
use im_transfer::Notifier;
use im_user_status::UserStatus;

pub use auth::AuthUser;
pub use error::ApiError;
pub use openapi::OPENAPI_JSON;

/// Cap on a JSON request body; every JSON request of this API is small.
pub const MAX_JSON_BYTES: usize = 64 * 1024;

/// Default cap on one uploaded file: 20 MiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: usize = 20 * 1024 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// Durable data.
    pub store: Arc<dyn Store>,
    /// Where users are online, for the friend list.
    pub status: Arc<dyn UserStatus>,
    /// Live pushes (friend and group events, forced logout).
    pub notifier: Arc<dyn Notifier>,
    /// Where uploaded files are kept, one file per id.
    pub files_dir: PathBuf,
    /// Largest accepted upload; a bigger body gets 413 PAYLOAD_TOO_LARGE.
    pub max_upload_bytes: usize,
}

impl AppState {
    /// Pushes `event` to each of `users`.
    pub(crate) async fn notify_all(
        &self,
        users: impl IntoIterator<Item = UserId>,
        event: im_proto::Body,
    ) {
        let users: Vec<UserId> = users.into_iter().collect();
        self.notifier.notify(&users, event).await;
    }
}

/// One entry of the route table: method, path (axum `{param}` syntax, the same
/// as OpenAPI's) and the handler for that method.
pub type Route = (Method, &'static str, MethodRouter<AppState>);

/// Builds one route entry from a method and a handler.
fn route<H, T>(method: Method, path: &'static str, handler: H) -> Route
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone())
        .unwrap_or_else(|_| panic!("route {method} {path}: method has no filter"));
    (method, path, on(filter, handler))
}

/// Every route the server has.
pub fn routes() -> Vec<Route> {
    use Method as M;
    vec![
        route(M::GET, "/healthz", openapi::healthz),
        route(M::GET, "/openapi.json", openapi::document),
        // accounts and sessions
        route(M::POST, "/v1/accounts", accounts::register),
        route(M::POST, "/v1/sessions", accounts::login),
        route(M::DELETE, "/v1/sessions/current", accounts::logout),
        route(M::GET, "/v1/me", accounts::me),
        route(M::GET, "/v1/users/{name}", accounts::user_by_name),
        // friends
        route(M::POST, "/v1/friend-requests", friends::create_request),
        route(M::GET, "/v1/friend-requests", friends::pending_requests),
        route(M::POST, "/v1/friend-requests/{id}/accept", friends::accept),
        route(M::POST, "/v1/friend-requests/{id}/reject", friends::reject),
        route(M::GET, "/v1/friends", friends::list),
        route(M::DELETE, "/v1/friends/{user_id}", friends::remove),
        route(M::PUT, "/v1/friends/{user_id}/remark", friends::set_remark),
        // groups
        route(M::POST, "/v1/groups", groups::create),
        route(M::GET, "/v1/groups", groups::mine),
        route(M::GET, "/v1/groups/{id}", groups::info),
        route(M::DELETE, "/v1/groups/{id}", groups::dissolve),
        route(M::POST, "/v1/groups/{id}/join", groups::join),
        route(M::POST, "/v1/groups/{id}/leave", groups::leave),
        route(
            M::PUT,
            "/v1/groups/{id}/members/{user_id}/role",
            groups::set_role,
        ),
        route(M::DELETE, "/v1/groups/{id}/members/{user_id}", groups::kick),
        // history
        route(M::GET, "/v1/conversations", history::conversations),
        route(M::GET, "/v1/conversations/{id}/messages", history::messages),
        // files
        route(M::POST, "/v1/files", files::upload),
        route(M::GET, "/v1/files/{id}", files::download),
    ]
}

/// The whole API as one router.
pub fn app(state: AppState) -> Router {
    // Entries with the same path merge into one method router.
    let router = routes()
        .into_iter()
        .fold(Router::new(), |router, (_, path, handler)| {
            router.route(path, handler)
        });
    // The 405 fallback is set on the method routers present, so it goes after
    // the fold.
    // The body limit applies to the JSON extractor; uploads stream the raw body
    // and check `max_upload_bytes` themselves.
    router
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(MAX_JSON_BYTES))
        .with_state(state)
}

/// Any path not in the table.
async fn no_route() -> ApiError {
    ApiError::NoRoute
}

/// A known path with a method it does not have.
async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
