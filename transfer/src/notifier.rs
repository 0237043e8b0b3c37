//! Live-only pushes that other components (the REST API) ask for.

use async_trait::async_trait;
use im_proto::Body;
use im_store::UserId;

/// Pushes events that are not stored: friend requests, friendship and group
/// changes, presence, and forced logout.
#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// Pushes `event` to every online device of each of `users` (dropped
    /// for those with none), with one user-status look-up for all of them.
    async fn notify(&self, users: &[UserId], event: Body);
    /// Closes every link of `user` that logged in with the token whose hash
    /// is `token_hash` (see `im_store::hash_token`).
    async fn revoke(&self, user: UserId, token_hash: &str);
}
