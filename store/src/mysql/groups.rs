//! Groups, their members, and each member's place in the group conversation.
//!
//! Member changes take the group's row lock before the member rows: shared by
//! `add_member`, exclusive by `dissolve_group`, so no one joins a group that
//! is being dissolved, and every path locks group, members, memberships in
//! that order.

use sqlx::{MySqlConnection, MySqlPool};

use super::retry::retry;
use super::rows::{api_int, is_unique_violation, missing_reference, role_from_sql, sql_int, Text};
use crate::types::{group_conversation, now_ms, Group, GroupId, GroupMember, Role, UserId};
use crate::{StoreError, StoreResult};

type GroupRow = (i64, Text, i64, i64);

fn group_from_row((id, name, creator, created_at_ms): GroupRow) -> Group {
    Group {
        id: api_int(id),
        name: name.0,
        creator: api_int(creator),
        created_at_ms: api_int(created_at_ms),
    }
}

/// `NotFound` if the creator does not exist.
pub(super) async fn create_group(
    pool: &MySqlPool,
    creator: UserId,
    name: &str,
) -> StoreResult<Group> {
    let created_at_ms = now_ms();
    let group = retry(|| async move {
        let mut tx = pool.begin().await?;
        let group =
            sqlx::query("INSERT INTO `groups` (name, creator, created_at_ms) VALUES (?, ?, ?)")
                .bind(name)
                .bind(sql_int(creator))
                .bind(sql_int(created_at_ms))
                .execute(&mut *tx)
                .await
                .map_err(missing_reference)?
                .last_insert_id();
        sqlx::query("INSERT INTO conversations (id, kind, updated_at_ms) VALUES (?, 'group', ?)")
            .bind(group_conversation(group))
            .bind(sql_int(created_at_ms))
            .execute(&mut *tx)
            .await?;
        insert_member(&mut tx, group, creator, Role::Creator).await?;
        tx.commit().await?;
        Ok(group)
    })
    .await?;
    Ok(Group {
        id: group,
        name: name.to_owned(),
        creator,
        created_at_ms,
    })
}

/// The member row and the conversation membership, which starts at the
/// conversation's current last seq: a member reads nothing from before they
/// joined. The update on a duplicate replaces the membership (as SQLite's
/// `INSERT OR REPLACE`), because someone who left and comes back starts
/// afresh. `Conflict` if a concurrent call made them a member first.
async fn insert_member(
    conn: &mut MySqlConnection,
    group: GroupId,
    user: UserId,
    role: Role,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO group_members (group_id, user_id, role, joined_at_ms) VALUES (?, ?, ?, ?)",
    )
    .bind(sql_int(group))
    .bind(sql_int(user))
    .bind(role.as_i64())
    .bind(sql_int(now_ms()))
    .execute(&mut *conn)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::Conflict("already a member")
        } else {
            missing_reference(e)
        }
    })?;
    sqlx::query(
        "INSERT INTO conversation_members (conversation_id, user_id, start_seq, read_seq) \
         SELECT id, ?, last_seq, last_seq FROM conversations WHERE id = ? \
         ON DUPLICATE KEY UPDATE start_seq = VALUES(start_seq), read_seq = VALUES(read_seq)",
    )
    .bind(sql_int(user))
    .bind(group_conversation(group))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn group(pool: &MySqlPool, id: GroupId) -> StoreResult<Option<Group>> {
    let row: Option<GroupRow> = sqlx::query_as(
        "SELECT id, name, creator, created_at_ms FROM `groups` WHERE id = ? AND dissolved = 0",
    )
    .bind(sql_int(id))
    .fetch_optional(pool)
    .await?;
    Ok(row.map(group_from_row))
}

pub(super) async fn members(pool: &MySqlPool, id: GroupId) -> StoreResult<Vec<GroupMember>> {
    let rows: Vec<(i64, Text, i64, i64)> = sqlx::query_as(
        "SELECT m.user_id, u.name, m.role, m.joined_at_ms \
         FROM group_members m JOIN users u ON u.id = m.user_id \
         WHERE m.group_id = ? \
         ORDER BY m.role = 3 DESC, m.joined_at_ms, m.user_id",
    )
    .bind(sql_int(id))
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(user_id, name, role, joined_at_ms)| {
            Ok(GroupMember {
                user_id: api_int(user_id),
                name: name.0,
                role: role_from_sql(role)?,
                joined_at_ms: api_int(joined_at_ms),
            })
        })
        .collect()
}

pub(super) async fn member_ids(pool: &MySqlPool, id: GroupId) -> StoreResult<Vec<UserId>> {
    let ids: Vec<i64> =
        sqlx::query_scalar("SELECT user_id FROM group_members WHERE group_id = ? ORDER BY user_id")
            .bind(sql_int(id))
            .fetch_all(pool)
            .await?;
    Ok(ids.into_iter().map(api_int).collect())
}

pub(super) async fn member_role(
    pool: &MySqlPool,
    group: GroupId,
    user: UserId,
) -> StoreResult<Option<Role>> {
    let role: Option<i64> =
        sqlx::query_scalar("SELECT role FROM group_members WHERE group_id = ? AND user_id = ?")
            .bind(sql_int(group))
            .bind(sql_int(user))
            .fetch_optional(pool)
            .await?;
    role.map(role_from_sql).transpose()
}

/// `NotFound` if the group (or user) does not exist or the group is
/// dissolved, `Conflict` if the user is a member already.
pub(super) async fn add_member(
    pool: &MySqlPool,
    group: GroupId,
    user: UserId,
    role: Role,
) -> StoreResult<()> {
    retry(|| async move {
        let mut tx = pool.begin().await?;
        // Shared, so members join side by side; a dissolve waits for them.
        let live: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM `groups` WHERE id = ? AND dissolved = 0 LOCK IN SHARE MODE",
        )
        .bind(sql_int(group))
        .fetch_optional(&mut *tx)
        .await?;
        if live.is_none() {
            return Err(StoreError::NotFound);
        }
        let member: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM group_members WHERE group_id = ? AND user_id = ?)",
        )
        .bind(sql_int(group))
        .bind(sql_int(user))
        .fetch_one(&mut *tx)
        .await?;
        if member {
            return Err(StoreError::Conflict("already a member"));
        }
        insert_member(&mut tx, group, user, role).await?;
        tx.commit().await?;
        Ok(())
    })
    .await
}

pub(super) async fn remove_member(
    pool: &MySqlPool,
    group: GroupId,
    user: UserId,
) -> StoreResult<bool> {
    retry(|| async move {
        let mut tx = pool.begin().await?;
        let removed = sqlx::query("DELETE FROM group_members WHERE group_id = ? AND user_id = ?")
            .bind(sql_int(group))
            .bind(sql_int(user))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM conversation_members WHERE conversation_id = ? AND user_id = ?")
            .bind(group_conversation(group))
            .bind(sql_int(user))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(removed == 1)
    })
    .await
}

pub(super) async fn set_role(
    pool: &MySqlPool,
    group: GroupId,
    user: UserId,
    role: Role,
) -> StoreResult<bool> {
    let done = retry(|| async move {
        Ok(
            sqlx::query("UPDATE group_members SET role = ? WHERE group_id = ? AND user_id = ?")
                .bind(role.as_i64())
                .bind(sql_int(group))
                .bind(sql_int(user))
                .execute(pool)
                .await?,
        )
    })
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The group row and its conversation stay (messages refer to them); the
/// members and their conversation memberships go. `NotFound` if the group
/// does not exist or is dissolved already.
pub(super) async fn dissolve(pool: &MySqlPool, group: GroupId) -> StoreResult<Vec<UserId>> {
    let members: Vec<i64> = retry(|| async move {
        let mut tx = pool.begin().await?;
        let done = sqlx::query("UPDATE `groups` SET dissolved = 1 WHERE id = ? AND dissolved = 0")
            .bind(sql_int(group))
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        // Locked, so a member leaving meanwhile is reported by one call only.
        let members: Vec<i64> =
            sqlx::query_scalar("SELECT user_id FROM group_members WHERE group_id = ? FOR UPDATE")
                .bind(sql_int(group))
                .fetch_all(&mut *tx)
                .await?;
        sqlx::query("DELETE FROM group_members WHERE group_id = ?")
            .bind(sql_int(group))
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM conversation_members WHERE conversation_id = ?")
            .bind(group_conversation(group))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(members)
    })
    .await?;
    let mut members: Vec<UserId> = members.into_iter().map(api_int).collect();
    members.sort_unstable();
    Ok(members)
}

pub(super) async fn groups_of(pool: &MySqlPool, user: UserId) -> StoreResult<Vec<Group>> {
    let rows: Vec<GroupRow> = sqlx::query_as(
        "SELECT g.id, g.name, g.creator, g.created_at_ms \
         FROM group_members m JOIN `groups` g ON g.id = m.group_id \
         WHERE m.user_id = ? AND g.dissolved = 0 ORDER BY g.id",
    )
    .bind(sql_int(user))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(group_from_row).collect())
}
