//! `im friend ...` and `im group ...`, and turning names into user ids.

use clap::Subcommand;
use im_client::rest::GroupRole;
use im_client::RestClient;
use serde_json::json;

use super::output::{print_json, CliError, CliResult};
use super::Ctx;

/// Friend commands.
#[derive(Debug, Subcommand)]
pub enum FriendCommand {
    /// Ask NAME to be friends.
    Add {
        /// User name.
        name: String,
        /// A note shown with the request.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Pending requests to or from me.
    Requests,
    /// Accept a request.
    Accept {
        /// Request id.
        request_id: u64,
    },
    /// Reject a request.
    Reject {
        /// Request id.
        request_id: u64,
    },
    /// My friends with their online state.
    List,
    /// Remove a friend.
    Remove {
        /// Friend name or user id.
        friend: String,
    },
    /// Set a private display name for a friend ("" clears it).
    Remark {
        /// Friend name or user id.
        friend: String,
        /// The remark.
        remark: String,
    },
}

/// Group commands.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create a group (I become its creator).
    Create {
        /// Group name.
        name: String,
    },
    /// Join a group.
    Join {
        /// Group id.
        id: u64,
    },
    /// Leave a group.
    Leave {
        /// Group id.
        id: u64,
    },
    /// The groups I am in.
    List,
    /// A group with its members and roles.
    Info {
        /// Group id.
        id: u64,
    },
    /// Remove a member (admins and the creator).
    Kick {
        /// Group id.
        id: u64,
        /// Member name or user id.
        user: String,
    },
    /// Make a member admin or member again (the creator).
    Role {
        /// Group id.
        id: u64,
        /// Member name or user id.
        user: String,
        /// `admin` or `member`.
        #[arg(value_parser = ["admin", "member"])]
        role: String,
    },
    /// Dissolve a group (the creator).
    Dissolve {
        /// Group id.
        id: u64,
    },
}

/// Runs a friend command.
pub async fn friend(ctx: &Ctx, command: FriendCommand) -> CliResult {
    let rest = ctx.authed()?;
    match command {
        FriendCommand::Add { name, note } => {
            print_json(&rest.send_friend_request(&name, &note).await?)
        }
        FriendCommand::Requests => print_json(&rest.friend_requests().await?),
        FriendCommand::Accept { request_id } => {
            print_json(&rest.accept_friend_request(request_id).await?)
        }
        FriendCommand::Reject { request_id } => {
            print_json(&rest.reject_friend_request(request_id).await?)
        }
        FriendCommand::List => print_json(&rest.friends().await?),
        FriendCommand::Remove { friend } => {
            let user_id = resolve_user(&rest, &friend).await?;
            rest.remove_friend(user_id).await?;
            print_json(&json!({ "ok": true, "user_id": user_id }));
        }
        FriendCommand::Remark { friend, remark } => {
            let user_id = resolve_user(&rest, &friend).await?;
            let remark = (!remark.is_empty()).then_some(remark);
            rest.set_remark(user_id, remark.as_deref()).await?;
            print_json(&json!({ "ok": true, "user_id": user_id, "remark": remark }));
        }
    }
    Ok(())
}

/// Runs a group command.
pub async fn group(ctx: &Ctx, command: GroupCommand) -> CliResult {
    let rest = ctx.authed()?;
    let done = |group_id: u64| json!({ "ok": true, "group_id": group_id });
    match command {
        GroupCommand::Create { name } => print_json(&rest.create_group(&name).await?),
        GroupCommand::Join { id } => {
            rest.join_group(id).await?;
            print_json(&done(id));
        }
        GroupCommand::Leave { id } => {
            rest.leave_group(id).await?;
            print_json(&done(id));
        }
        GroupCommand::List => print_json(&rest.groups().await?),
        GroupCommand::Info { id } => print_json(&rest.group(id).await?),
        GroupCommand::Kick { id, user } => {
            let user_id = resolve_member(&rest, id, &user).await?;
            rest.kick(id, user_id).await?;
            print_json(&json!({ "ok": true, "group_id": id, "user_id": user_id }));
        }
        GroupCommand::Role { id, user, role } => {
            let user_id = resolve_member(&rest, id, &user).await?;
            let role = if role == "admin" {
                GroupRole::Admin
            } else {
                GroupRole::Member
            };
            rest.set_role(id, user_id, role).await?;
            print_json(&json!({ "ok": true, "group_id": id, "user_id": user_id, "role": role }));
        }
        GroupCommand::Dissolve { id } => {
            rest.dissolve_group(id).await?;
            print_json(&done(id));
        }
    }
    Ok(())
}

/// A user id from a friend's name or remark, any user's name, or a number.
pub async fn resolve_user(rest: &RestClient, name_or_id: &str) -> CliResult<u64> {
    let friends = rest.friends().await?;
    let by_name = friends.iter().find(|f| f.name == name_or_id);
    let by_remark = || {
        friends
            .iter()
            .find(|f| f.remark.as_deref() == Some(name_or_id))
    };
    if let Some(friend) = by_name.or_else(by_remark) {
        return Ok(friend.user_id);
    }
    match rest.user(name_or_id).await {
        Ok(user) => Ok(user.id),
        Err(e) if e.code() == "NOT_FOUND" => name_or_id
            .parse()
            .map_err(|_| CliError::new("NOT_FOUND", format!("no user named {name_or_id:?}"))),
        Err(e) => Err(e.into()),
    }
}

/// A member's user id from their name in the group, or any user.
async fn resolve_member(rest: &RestClient, group_id: u64, name_or_id: &str) -> CliResult<u64> {
    let info = rest.group(group_id).await?;
    if let Some(member) = info.members.iter().find(|m| m.name == name_or_id) {
        return Ok(member.user_id);
    }
    if let Ok(id) = name_or_id.parse::<u64>() {
        return Ok(id);
    }
    Ok(rest.user(name_or_id).await?.id)
}
