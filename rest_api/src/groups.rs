//! Groups: create, list, info, join, leave, roles, kick, dissolve. The rules
//! of who may do what live here; the store only records the outcome.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use im_proto::v1::{GroupEvent, GroupEventKind};
use im_proto::Body;
use im_store::{Group, GroupId, GroupMember, Role, StoreError, UserId};
use serde::{Deserialize, Serialize};

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::AppState;

/// Longest group name, in characters.
const MAX_GROUP_NAME_CHARS: usize = 64;

/// Body of `POST /v1/groups`.
#[derive(Debug, Deserialize)]
pub struct NewGroup {
    name: String,
}

/// A group with its members, creator first.
#[derive(Debug, Serialize)]
pub struct GroupInfo {
    #[serde(flatten)]
    group: Group,
    members: Vec<GroupMember>,
}

/// The roles the creator may hand out.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AssignableRole {
    /// May kick plain members.
    Admin,
    /// Plain member.
    Member,
}

/// Body of `PUT /v1/groups/{id}/members/{user_id}/role`.
#[derive(Debug, Deserialize)]
pub struct RoleBody {
    role: AssignableRole,
}

/// `POST /v1/groups`: creates a group with the caller as creator.
pub async fn create(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiJson(body): ApiJson<NewGroup>,
) -> Result<(StatusCode, Json<Group>), ApiError> {
    let len = body.name.chars().count();
    if body.name.trim().is_empty() || len > MAX_GROUP_NAME_CHARS {
        return Err(ApiError::BadRequest(format!(
            "group name must be 1-{MAX_GROUP_NAME_CHARS} characters and not blank"
        )));
    }
    let group = state.store.create_group(caller.id, &body.name).await?;
    Ok((StatusCode::CREATED, Json(group)))
}

/// `GET /v1/groups`: the caller's groups.
pub async fn mine(
    State(state): State<AppState>,
    caller: AuthUser,
) -> Result<Json<Vec<Group>>, ApiError> {
    Ok(Json(state.store.groups_of(caller.id).await?))
}

/// `GET /v1/groups/{id}`: a group and its members, for members only.
pub async fn info(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(id): ApiPath<GroupId>,
) -> Result<Json<GroupInfo>, ApiError> {
    let group = live_group(&state, id).await?;
    caller_role(&state, id, caller.id).await?;
    let members = state.store.group_members(id).await?;
    Ok(Json(GroupInfo { group, members }))
}

/// `POST /v1/groups/{id}/join`: the caller joins as a plain member.
pub async fn join(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(id): ApiPath<GroupId>,
) -> Result<StatusCode, ApiError> {
    live_group(&state, id).await?;
    match state.store.add_member(id, caller.id, Role::Member).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::Conflict("you are already a member of this group"))
        }
        Err(e) => return Err(e.into()),
    }
    let others = others_in(&state, id, caller.id).await?;
    state
        .notify_all(others, group_event(GroupEventKind::Joined, id, caller.id))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/groups/{id}/leave`: the caller leaves; the creator must dissolve
/// instead.
pub async fn leave(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(id): ApiPath<GroupId>,
) -> Result<StatusCode, ApiError> {
    live_group(&state, id).await?;
    if caller_role(&state, id, caller.id).await? == Role::Creator {
        return Err(ApiError::Forbidden(
            "the creator cannot leave; dissolve the group instead",
        ));
    }
    if !state.store.remove_member(id, caller.id).await? {
        return Err(ApiError::NotGroupMember);
    }
    let remaining = state.store.group_member_ids(id).await?;
    state
        .notify_all(remaining, group_event(GroupEventKind::Left, id, caller.id))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v1/groups/{id}/members/{user_id}/role`: the creator makes a member
/// an admin or back.
pub async fn set_role(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath((id, target)): ApiPath<(GroupId, UserId)>,
    ApiJson(body): ApiJson<RoleBody>,
) -> Result<StatusCode, ApiError> {
    live_group(&state, id).await?;
    if caller_role(&state, id, caller.id).await? != Role::Creator {
        return Err(ApiError::Forbidden("only the creator may change roles"));
    }
    let current = target_role(&state, id, target).await?;
    if current == Role::Creator {
        return Err(ApiError::Forbidden("the creator's role cannot change"));
    }
    let role = match body.role {
        AssignableRole::Admin => Role::Admin,
        AssignableRole::Member => Role::Member,
    };
    if !state.store.set_role(id, target, role).await? {
        return Err(ApiError::NotFound("no such member"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/groups/{id}/members/{user_id}`: removes a member. The creator
/// may kick anyone else; an admin only plain members.
pub async fn kick(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath((id, target)): ApiPath<(GroupId, UserId)>,
) -> Result<StatusCode, ApiError> {
    live_group(&state, id).await?;
    let role = caller_role(&state, id, caller.id).await?;
    let target_role = target_role(&state, id, target).await?;
    if target == caller.id {
        return Err(ApiError::Forbidden(
            "you cannot kick yourself; leave instead",
        ));
    }
    if !may_kick(role, target_role) {
        return Err(ApiError::Forbidden(
            "the creator may kick anyone, an admin only plain members",
        ));
    }
    if !state.store.remove_member(id, target).await? {
        return Err(ApiError::NotFound("no such member"));
    }
    let mut told = state.store.group_member_ids(id).await?;
    told.push(target);
    state
        .notify_all(told, group_event(GroupEventKind::Kicked, id, target))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/groups/{id}`: the creator dissolves the group.
pub async fn dissolve(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(id): ApiPath<GroupId>,
) -> Result<StatusCode, ApiError> {
    live_group(&state, id).await?;
    if caller_role(&state, id, caller.id).await? != Role::Creator {
        return Err(ApiError::Forbidden(
            "only the creator may dissolve the group",
        ));
    }
    let former = state.store.dissolve_group(id).await?;
    state
        .notify_all(
            former,
            group_event(GroupEventKind::Dissolved, id, caller.id),
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// True if a member with role `kicker` may remove one with role `target`.
fn may_kick(kicker: Role, target: Role) -> bool {
    match kicker {
        Role::Creator => target != Role::Creator,
        Role::Admin => target == Role::Member,
        Role::Member => false,
    }
}

/// The group, or 404 if it does not exist or was dissolved.
async fn live_group(state: &AppState, id: GroupId) -> Result<Group, ApiError> {
    state
        .store
        .group(id)
        .await?
        .ok_or(ApiError::NotFound("no such group"))
}

/// The caller's role, or 403 NOT_GROUP_MEMBER.
async fn caller_role(state: &AppState, group: GroupId, user: UserId) -> Result<Role, ApiError> {
    state
        .store
        .member_role(group, user)
        .await?
        .ok_or(ApiError::NotGroupMember)
}

/// The role of the member acted on, or 404.
async fn target_role(state: &AppState, group: GroupId, user: UserId) -> Result<Role, ApiError> {
    state
        .store
        .member_role(group, user)
        .await?
        .ok_or(ApiError::NotFound("no such member"))
}

/// Members of `group` other than `user`.
async fn others_in(
    state: &AppState,
    group: GroupId,
    user: UserId,
) -> Result<Vec<UserId>, ApiError> {
    let mut ids = state.store.group_member_ids(group).await?;
    ids.retain(|&id| id != user);
    Ok(ids)
}

/// The live event for a membership change.
fn group_event(kind: GroupEventKind, group_id: GroupId, user_id: UserId) -> Body {
    Body::GroupEvent(GroupEvent {
        kind: kind as i32,
        group_id,
        user_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kick_rules() {
        use Role::*;
        assert!(may_kick(Creator, Admin));
        assert!(may_kick(Creator, Member));
        assert!(!may_kick(Creator, Creator));
        assert!(may_kick(Admin, Member));
        assert!(!may_kick(Admin, Admin));
        assert!(!may_kick(Admin, Creator));
        assert!(!may_kick(Member, Member));
    }
}
