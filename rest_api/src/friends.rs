//! Friend requests and the friend list.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use im_proto::v1::{FriendEvent, FriendEventKind, FriendRequestEvent};
use im_proto::Body;
use im_store::{FriendRequest, RequestStatus, StoreError, UserId};
use serde::{Deserialize, Serialize};

use crate::accounts::load_user;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::AppState;

/// Longest note on a friend request, in characters.
const MAX_NOTE_CHARS: usize = 256;
/// Longest remark name, in characters.
const MAX_REMARK_CHARS: usize = 64;

/// Body of `POST /v1/friend-requests`: the recipient by name or by id.
#[derive(Debug, Deserialize)]
pub struct NewFriendRequest {
    to: Option<String>,
    to_user: Option<UserId>,
    #[serde(default)]
    note: String,
}

/// One entry of `GET /v1/friends`.
#[derive(Debug, Serialize)]
pub struct FriendView {
    user_id: UserId,
    name: String,
    remark: Option<String>,
    since_ms: u64,
    online: bool,
}

/// Body of `PUT /v1/friends/{user_id}/remark`.
#[derive(Debug, Deserialize)]
pub struct RemarkBody {
    remark: Option<String>,
}

/// `POST /v1/friend-requests`: asks someone to be a friend.
pub async fn create_request(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiJson(body): ApiJson<NewFriendRequest>,
) -> Result<(StatusCode, Json<FriendRequest>), ApiError> {
    if body.note.chars().count() > MAX_NOTE_CHARS {
        return Err(ApiError::BadRequest(format!(
            "note must be at most {MAX_NOTE_CHARS} characters"
        )));
    }
    let to = match (body.to, body.to_user) {
        (Some(name), None) => state.store.user_by_name(&name).await?.map(|(u, _)| u),
        (None, Some(id)) => state.store.user(id).await?,
        _ => {
            return Err(ApiError::BadRequest(
                "give exactly one of \"to\" (a name) or \"to_user\" (an id)".into(),
            ))
        }
    }
    .ok_or(ApiError::NotFound("no such user"))?;
    if to.id == caller.id {
        return Err(ApiError::BadRequest(
            "you cannot send a friend request to yourself".into(),
        ));
    }
    if state.store.are_friends(caller.id, to.id).await? {
        return Err(ApiError::Conflict("you are already friends"));
    }
    let request = match state
        .store
        .create_friend_request(caller.id, to.id, &body.note)
        .await
    {
        Ok(request) => request,
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::Conflict(
                "a friend request between you is already pending",
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let event = FriendRequestEvent {
        request_id: request.id,
        from_user: request.from_user,
        from_name: request.from_name.clone(),
        note: request.note.clone(),
    };
    state
        .notifier
        .notify(&[to.id], Body::FriendRequest(event))
        .await;
    Ok((StatusCode::CREATED, Json(request)))
}

/// `GET /v1/friend-requests`: pending requests to or from the caller.
pub async fn pending_requests(
    State(state): State<AppState>,
    caller: AuthUser,
) -> Result<Json<Vec<FriendRequest>>, ApiError> {
    Ok(Json(state.store.pending_friend_requests(caller.id).await?))
}

/// `POST /v1/friend-requests/{id}/accept`.
pub async fn accept(
    state: State<AppState>,
    caller: AuthUser,
    id: ApiPath<u64>,
) -> Result<Json<FriendRequest>, ApiError> {
    answer(state, caller, id, true).await
}

/// `POST /v1/friend-requests/{id}/reject`.
pub async fn reject(
    state: State<AppState>,
    caller: AuthUser,
    id: ApiPath<u64>,
) -> Result<Json<FriendRequest>, ApiError> {
    answer(state, caller, id, false).await
}

/// Accepts or rejects a pending request addressed to the caller and tells
/// the requester.
async fn answer(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(id): ApiPath<u64>,
    accept: bool,
) -> Result<Json<FriendRequest>, ApiError> {
    let request = state
        .store
        .friend_request(id)
        .await?
        .ok_or(ApiError::NotFound("no such friend request"))?;
    if request.to_user != caller.id {
        return Err(ApiError::Forbidden(
            "only the recipient may answer a friend request",
        ));
    }
    let not_pending = ApiError::Conflict("the friend request is no longer pending");
    if request.status != RequestStatus::Pending {
        return Err(not_pending);
    }
    let resolved = match state.store.resolve_friend_request(id, accept).await {
        Ok(resolved) => resolved,
        Err(StoreError::Conflict(_)) => return Err(not_pending),
        Err(e) => return Err(e.into()),
    };
    let kind = if accept {
        FriendEventKind::Accepted
    } else {
        FriendEventKind::Rejected
    };
    let event = FriendEvent {
        kind: kind as i32,
        user_id: caller.id,
        name: resolved.to_name.clone(),
    };
    state
        .notifier
        .notify(&[resolved.from_user], Body::FriendEvent(event))
        .await;
    Ok(Json(resolved))
}

/// `GET /v1/friends`: the caller's friends with their online state.
pub async fn list(
    State(state): State<AppState>,
    caller: AuthUser,
) -> Result<Json<Vec<FriendView>>, ApiError> {
    let friends = state.store.friends(caller.id).await?;
    let ids: Vec<UserId> = friends.iter().map(|f| f.user_id).collect();
    // The list is still useful without presence, so a status outage shows
    // everyone offline instead of failing the call.
    let devices = match state.status.lookup_many(&ids).await {
        Ok(devices) => devices,
        Err(e) => {
            tracing::warn!(error = %e, "friend presence lookup failed");
            Vec::new()
        }
    };
    let views = friends
        .into_iter()
        .enumerate()
        .map(|(i, f)| FriendView {
            online: devices.get(i).is_some_and(|d| !d.is_empty()),
            user_id: f.user_id,
            name: f.name,
            remark: f.remark,
            since_ms: f.since_ms,
        })
        .collect();
    Ok(Json(views))
}

/// `DELETE /v1/friends/{user_id}`: ends a friendship and tells the other side.
pub async fn remove(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(friend): ApiPath<UserId>,
) -> Result<StatusCode, ApiError> {
    if !state.store.remove_friend(caller.id, friend).await? {
        return Err(ApiError::NotFound("no such friend"));
    }
    let me = load_user(&state, caller.id).await?;
    let event = FriendEvent {
        kind: FriendEventKind::Removed as i32,
        user_id: me.id,
        name: me.name,
    };
    state
        .notifier
        .notify(&[friend], Body::FriendEvent(event))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v1/friends/{user_id}/remark`: sets or clears (null or "") the
/// caller's private name for a friend.
pub async fn set_remark(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(friend): ApiPath<UserId>,
    ApiJson(body): ApiJson<RemarkBody>,
) -> Result<StatusCode, ApiError> {
    let remark = body.remark.filter(|r| !r.is_empty());
    if remark
        .as_ref()
        .is_some_and(|r| r.chars().count() > MAX_REMARK_CHARS)
    {
        return Err(ApiError::BadRequest(format!(
            "remark must be at most {MAX_REMARK_CHARS} characters"
        )));
    }
    if !state
        .store
        .set_remark(caller.id, friend, remark.as_deref())
        .await?
    {
        return Err(ApiError::NotFound("no such friend"));
    }
    Ok(StatusCode::NO_CONTENT)
}
