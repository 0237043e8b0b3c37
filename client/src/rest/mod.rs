//! Typed client of the REST API: one async method per route.

mod types;

pub use types::*;

use bytes::Bytes;
use reqwest::{Method, RequestBuilder, Response, Url};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::error::{code_for_status, ClientError};
use types::ApiErrorBody;

/// HTTP/JSON client for accounts, friends, groups, history and files.
///
/// Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct RestClient {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

impl RestClient {
    /// A client for the server at `base_url` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        let base = Url::parse(base_url)
            .map_err(|e| ClientError::InvalidInput(format!("bad url {base_url:?}: {e}")))?;
        if base.cannot_be_a_base() {
            return Err(ClientError::InvalidInput(format!(
                "bad url {base_url:?}: not an http base url"
            )));
        }
        Ok(RestClient {
            http: reqwest::Client::new(),
            base,
            token: None,
        })
    }

    /// The same client, sending `Authorization: Bearer <token>`.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The bearer token in use, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    // ---- accounts -------------------------------------------------------

    /// `POST /v1/accounts`: creates an account.
    pub async fn register(&self, name: &str, password: &str) -> Result<User, ClientError> {
        let body = json!({ "name": name, "password": password });
        self.json(self.request(Method::POST, &["accounts"]).json(&body))
            .await
    }

    /// `POST /v1/sessions`: logs in. Use `with_token(session.token)` afterwards.
    pub async fn login(&self, name: &str, password: &str) -> Result<Session, ClientError> {
        let body = json!({ "name": name, "password": password });
        self.json(self.request(Method::POST, &["sessions"]).json(&body))
            .await
    }

    /// `DELETE /v1/sessions/current`: revokes the token.
    pub async fn logout(&self) -> Result<(), ClientError> {
        self.empty(self.request(Method::DELETE, &["sessions", "current"]))
            .await
    }

    /// `GET /v1/me`: the logged-in user.
    pub async fn me(&self) -> Result<User, ClientError> {
        self.json(self.request(Method::GET, &["me"])).await
    }

    /// `GET /v1/users/{name}`: looks a user up by name.
    pub async fn user(&self, name: &str) -> Result<User, ClientError> {
        self.json(self.request(Method::GET, &["users", name])).await
    }

    // ---- friends --------------------------------------------------------

    /// `POST /v1/friend-requests`: asks `to` (a name) to be friends.
    pub async fn send_friend_request(
        &self,
        to: &str,
        note: &str,
    ) -> Result<FriendRequest, ClientError> {
        let body = json!({ "to": to, "note": note });
        self.json(self.request(Method::POST, &["friend-requests"]).json(&body))
            .await
    }

    /// `GET /v1/friend-requests`: pending requests to or from me.
    pub async fn friend_requests(&self) -> Result<Vec<FriendRequest>, ClientError> {
        self.json(self.request(Method::GET, &["friend-requests"]))
            .await
    }

    /// `POST /v1/friend-requests/{id}/accept`.
    pub async fn accept_friend_request(&self, id: u64) -> Result<FriendRequest, ClientError> {
        let id = id.to_string();
        self.json(self.request(Method::POST, &["friend-requests", &id, "accept"]))
            .await
    }

    /// `POST /v1/friend-requests/{id}/reject`.
    pub async fn reject_friend_request(&self, id: u64) -> Result<FriendRequest, ClientError> {
        let id = id.to_string();
        self.json(self.request(Method::POST, &["friend-requests", &id, "reject"]))
            .await
    }

    /// `GET /v1/friends`: my friends with their online state.
    pub async fn friends(&self) -> Result<Vec<Friend>, ClientError> {
        self.json(self.request(Method::GET, &["friends"])).await
    }

    /// `DELETE /v1/friends/{user_id}`.
    pub async fn remove_friend(&self, user_id: u64) -> Result<(), ClientError> {
        let id = user_id.to_string();
        self.empty(self.request(Method::DELETE, &["friends", &id]))
            .await
    }

    /// `PUT /v1/friends/{user_id}/remark`: sets (or with `None` clears) a remark.
    pub async fn set_remark(&self, user_id: u64, remark: Option<&str>) -> Result<(), ClientError> {
        let id = user_id.to_string();
        let body = json!({ "remark": remark });
        self.empty(
            self.request(Method::PUT, &["friends", &id, "remark"])
                .json(&body),
        )
        .await
    }

    // ---- groups ---------------------------------------------------------

    /// `POST /v1/groups`: creates a group with me as creator.
    pub async fn create_group(&self, name: &str) -> Result<Group, ClientError> {
        let body = json!({ "name": name });
        self.json(self.request(Method::POST, &["groups"]).json(&body))
            .await
    }

    /// `GET /v1/groups`: the groups I am in.
    pub async fn groups(&self) -> Result<Vec<Group>, ClientError> {
        self.json(self.request(Method::GET, &["groups"])).await
    }

    /// `GET /v1/groups/{id}`: a group with its members.
    pub async fn group(&self, id: u64) -> Result<GroupInfo, ClientError> {
        let id = id.to_string();
        self.json(self.request(Method::GET, &["groups", &id])).await
    }

    /// `POST /v1/groups/{id}/join`.
    pub async fn join_group(&self, id: u64) -> Result<(), ClientError> {
        let id = id.to_string();
        self.empty(self.request(Method::POST, &["groups", &id, "join"]))
            .await
    }

    /// `POST /v1/groups/{id}/leave`.
    pub async fn leave_group(&self, id: u64) -> Result<(), ClientError> {
        let id = id.to_string();
        self.empty(self.request(Method::POST, &["groups", &id, "leave"]))
            .await
    }

    /// `PUT /v1/groups/{id}/members/{user_id}/role`: makes a member admin or member.
    pub async fn set_role(
        &self,
        id: u64,
        user_id: u64,
        role: GroupRole,
    ) -> Result<(), ClientError> {
        let (id, user) = (id.to_string(), user_id.to_string());
        let body = json!({ "role": role });
        self.empty(
            self.request(Method::PUT, &["groups", &id, "members", &user, "role"])
                .json(&body),
        )
        .await
    }

    /// `DELETE /v1/groups/{id}/members/{user_id}`: kicks a member.
    pub async fn kick(&self, id: u64, user_id: u64) -> Result<(), ClientError> {
        let (id, user) = (id.to_string(), user_id.to_string());
        self.empty(self.request(Method::DELETE, &["groups", &id, "members", &user]))
            .await
    }

    /// `DELETE /v1/groups/{id}`: dissolves a group (creator only).
    pub async fn dissolve_group(&self, id: u64) -> Result<(), ClientError> {
        let id = id.to_string();
        self.empty(self.request(Method::DELETE, &["groups", &id]))
            .await
    }

    // ---- conversations and history --------------------------------------

    /// `GET /v1/conversations`: recent conversations with unread counts.
    pub async fn conversations(&self) -> Result<Vec<Conversation>, ClientError> {
        self.json(self.request(Method::GET, &["conversations"]))
            .await
    }

    /// `GET /v1/conversations/{id}/messages`: one page of history, older than
    /// `before_seq` when given.
    pub async fn messages(
        &self,
        conversation_id: &str,
        before_seq: Option<u64>,
        limit: Option<u32>,
    ) -> Result<MessagePage, ClientError> {
        let mut req = self.request(Method::GET, &["conversations", conversation_id, "messages"]);
        if let Some(before) = before_seq {
            req = req.query(&[("before_seq", before)]);
        }
        if let Some(limit) = limit {
            req = req.query(&[("limit", limit)]);
        }
        self.json(req).await
    }

    // ---- files ----------------------------------------------------------

    /// `POST /v1/files?name=`: uploads `bytes` as a file of type `mime`.
    pub async fn upload_file(
        &self,
        name: &str,
        mime: &str,
        bytes: impl Into<Bytes>,
    ) -> Result<FileMeta, ClientError> {
        let req = self
            .request(Method::POST, &["files"])
            .query(&[("name", name)])
            .header(reqwest::header::CONTENT_TYPE, mime)
            .body(bytes.into());
        self.json(req).await
    }

    /// `GET /v1/files/{id}`: the file's bytes.
    pub async fn download_file(&self, id: &str) -> Result<Bytes, ClientError> {
        let resp = self.send(self.request(Method::GET, &["files", id])).await?;
        Ok(resp.bytes().await?)
    }

    // ---- plumbing -------------------------------------------------------

    /// A request to `/v1/<segments...>`, each segment percent-encoded.
    fn request(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push("v1").extend(segments);
        }
        let req = self.http.request(method, url);
        match &self.token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    /// Sends a request and turns an error status into `ClientError::Api`.
    async fn send(&self, req: RequestBuilder) -> Result<Response, ClientError> {
        let resp = req.send().await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.bytes().await.unwrap_or_default();
        Err(match serde_json::from_slice::<ApiErrorBody>(&body) {
            Ok(err) => ClientError::Api {
                status: status.as_u16(),
                code: err.code,
                message: err.message,
            },
            // Not our JSON (a proxy, a crash): keep the code set closed.
            Err(_) => ClientError::Api {
                status: status.as_u16(),
                code: code_for_status(status.as_u16()).name().to_string(),
                message: String::from_utf8_lossy(&body).chars().take(200).collect(),
            },
        })
    }

    async fn json<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T, ClientError> {
        let resp = self.send(req).await?;
        let url = resp.url().path().to_string();
        let body = resp.bytes().await?;
        serde_json::from_slice(&body)
            .map_err(|e| ClientError::Protocol(format!("unexpected answer from {url}: {e}")))
    }

    async fn empty(&self, req: RequestBuilder) -> Result<(), ClientError> {
        self.send(req).await.map(drop)
    }
}

#[cfg(test)]
mod tests;
