//! Groups: create, info, join, leave, roles, kick and dissolve, with the
//! role rules and the live events each change pushes.

use axum::http::{Method, StatusCode};
use im_proto::v1::{GroupEvent, GroupEventKind};
use im_proto::Body as Event;
use im_store::UserId;
use serde_json::{json, Value};

use crate::common::{assert_error, Account, TestApp};

/// Creates a group owned by `creator`; returns its id.
async fn create(app: &TestApp, creator: &Account, name: &str) -> u64 {
    let (status, group) = app
        .call(
            Method::POST,
            "/v1/groups",
            Some(&creator.token),
            Some(json!({"name": name})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    group["id"].as_u64().unwrap()
}

/// `who` calls `method path` without a body.
async fn act(app: &TestApp, who: &Account, method: Method, path: &str) -> (StatusCode, Value) {
    app.call(method, path, Some(&who.token), None).await
}

/// `who` sets `target`'s role.
async fn set_role(
    app: &TestApp,
    who: &Account,
    group: u64,
    target: u64,
    role: &str,
) -> (StatusCode, Value) {
    let path = format!("/v1/groups/{group}/members/{target}/role");
    app.call(
        Method::PUT,
        &path,
        Some(&who.token),
        Some(json!({"role": role})),
    )
    .await
}

/// A group event as pushed.
fn event(kind: GroupEventKind, group_id: u64, user_id: UserId) -> Event {
    Event::GroupEvent(GroupEvent {
        kind: kind as i32,
        group_id,
        user_id,
    })
}

/// The recorded pushes, sorted by recipient.
fn sorted(mut events: Vec<(UserId, Event)>) -> Vec<(UserId, Event)> {
    events.sort_by_key(|(user, _)| *user);
    events
}

#[tokio::test]
async fn create_list_and_info() {
    let app = TestApp::new().await;
    let alice = app.account("alice").await;
    let bob = app.account("bob").await;

    for name in ["", "   ", &"g".repeat(65)] {
        let result = app
            .call(
                Method::POST,
                "/v1/groups",
                Some(&alice.token),
                Some(json!({"name": name})),
            )
            .await;
        assert_error(&result, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    }
    let (status, group) = app
        .call(
            Method::POST,
            "/v1/groups",
            Some(&alice.token),
            Some(json!({"name": "rustaceans"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(group["name"], "rustaceans");
    assert_eq!(group["creator"], alice.id);
    let id = group["id"].as_u64().unwrap();

    let (_, mine) = app.get("/v1/groups", &alice).await;
    assert_eq!(mine, json!([group]));
    let (_, theirs) = app.get("/v1/groups", &bob).await;
    assert_eq!(theirs, json!([]));

    let (status, info) = app.get(&format!("/v1/groups/{id}"), &alice).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(info["id"], id);
    assert_eq!(info["name"], "rustaceans");
    assert_eq!(info["creator"], alice.id);
    assert_eq!(info["members"][0]["user_id"], alice.id);
    assert_eq!(info["members"][0]["name"], "alice");
    assert_eq!(info["members"][0]["role"], "creator");

    let outsider = app.get(&format!("/v1/groups/{id}"), &bob).await;
    assert_error(&outsider, StatusCode::FORBIDDEN, "NOT_GROUP_MEMBER");
    let missing = app.get("/v1/groups/999999", &alice).await;
    assert_error(&missing, StatusCode::NOT_FOUND, "NOT_FOUND");
}

#[tokio::test]
async fn join_and_leave() {
    let app = TestApp::new().await;
    let alice = app.account("alice").await;
    let bob = app.account("bob").await;
    let carol = app.account("carol").await;
    let id = create(&app, &alice, "g").await;

    let (status, _) = act(&app, &bob, Method::POST, &format!("/v1/groups/{id}/join")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.take_events(),
        vec![(alice.id, event(GroupEventKind::Joined, id, bob.id))]
    );
    let again = act(&app, &bob, Method::POST, &format!("/v1/groups/{id}/join")).await;
    assert_error(&again, StatusCode::CONFLICT, "CONFLICT");
    let missing = act(&app, &bob, Method::POST, "/v1/groups/999999/join").await;
    assert_error(&missing, StatusCode::NOT_FOUND, "NOT_FOUND");

    act(&app, &carol, Method::POST, &format!("/v1/groups/{id}/join")).await;
    assert_eq!(
        sorted(app.take_events()),
        vec![
            (alice.id, event(GroupEventKind::Joined, id, carol.id)),
            (bob.id, event(GroupEventKind::Joined, id, carol.id)),
        ]
    );
    let (_, info) = app.get(&format!("/v1/groups/{id}"), &carol).await;
    assert_eq!(info["members"].as_array().unwrap().len(), 3);
    let (_, groups) = app.get("/v1/groups", &bob).await;
    assert_eq!(groups[0]["id"], id);

    let leave = format!("/v1/groups/{id}/leave");
    let creator = act(&app, &alice, Method::POST, &leave).await;
    assert_error(&creator, StatusCode::FORBIDDEN, "FORBIDDEN");
    let (status, _) = act(&app, &bob, Method::POST, &leave).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        sorted(app.take_events()),
        vec![
            (alice.id, event(GroupEventKind::Left, id, bob.id)),
            (carol.id, event(GroupEventKind::Left, id, bob.id)),
        ]
    );
    let not_member = act(&app, &bob, Method::POST, &leave).await;
    assert_error(&not_member, StatusCode::FORBIDDEN, "NOT_GROUP_MEMBER");
    let info = app.get(&format!("/v1/groups/{id}"), &bob).await;
    assert_error(&info, StatusCode::FORBIDDEN, "NOT_GROUP_MEMBER");
}

#[tokio::test]
async fn only_the_creator_changes_roles() {
    let app = TestApp::new().await;
    let alice = app.account("alice").await;
    let bob = app.account("bob").await;
    let carol = app.account("carol").await;
    let dave = app.account("dave").await;
    let id = create(&app, &alice, "g").await;
    for who in [&bob, &carol] {
        act(&app, who, Method::POST, &format!("/v1/groups/{id}/join")).await;
    }

    let (status, _) = set_role(&app, &alice, id, bob.id, "admin").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, info) = app.get(&format!("/v1/groups/{id}"), &alice).await;
    let bob_row = info["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user_id"] == bob.id)
        .unwrap()
        .clone();
    assert_eq!(bob_row["role"], "admin");

    let by_admin = set_role(&app, &bob, id, carol.id, "admin").await;
    assert_error(&by_admin, StatusCode::FORBIDDEN, "FORBIDDEN");
    let by_outsider = set_role(&app, &dave, id, carol.id, "admin").await;
    assert_error(&by_outsider, StatusCode::FORBIDDEN, "NOT_GROUP_MEMBER");
    let to_creator = set_role(&app, &alice, id, carol.id, "creator").await;
    assert_error(&to_creator, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    let own_role = set_role(&app, &alice, id, alice.id, "member").await;
    assert_error(&own_role, StatusCode::FORBIDDEN, "FORBIDDEN");
    let not_member = set_role(&app, &alice, id, dave.id, "admin").await;
    assert_error(&not_member, StatusCode::NOT_FOUND, "NOT_FOUND");

    let (status, _) = set_role(&app, &alice, id, bob.id, "member").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn kick_follows_the_role_rules() {
    let app = TestApp::new().await;
    let alice = app.account("alice").await; // creator
    let bob = app.account("bob").await; // admin
    let carol = app.account("carol").await; // member
    let dave = app.account("dave").await; // member
    let erin = app.account("erin").await; // admin
    let id = create(&app, &alice, "g").await;
    for who in [&bob, &carol, &dave, &erin] {
        act(&app, who, Method::POST, &format!("/v1/groups/{id}/join")).await;
    }
    set_role(&app, &alice, id, bob.id, "admin").await;
    set_role(&app, &alice, id, erin.id, "admin").await;
    app.take_events();
    let kick = |target: u64| format!("/v1/groups/{id}/members/{target}");

    let member_kicks = act(&app, &carol, Method::DELETE, &kick(dave.id)).await;
    assert_error(&member_kicks, StatusCode::FORBIDDEN, "FORBIDDEN");
    let admin_kicks_admin = act(&app, &bob, Method::DELETE, &kick(erin.id)).await;
    assert_error(&admin_kicks_admin, StatusCode::FORBIDDEN, "FORBIDDEN");
    let admin_kicks_creator = act(&app, &bob, Method::DELETE, &kick(alice.id)).await;
    assert_error(&admin_kicks_creator, StatusCode::FORBIDDEN, "FORBIDDEN");
    let creator_kicks_self = act(&app, &alice, Method::DELETE, &kick(alice.id)).await;
    assert_error(&creator_kicks_self, StatusCode::FORBIDDEN, "FORBIDDEN");
    assert!(app.take_events().is_empty());

    // An admin kicks a plain member: the kicked and everyone left are told.
    let (status, _) = act(&app, &bob, Method::DELETE, &kick(carol.id)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let told: Vec<UserId> = sorted(app.take_events())
        .into_iter()
        .map(|(u, e)| {
            assert_eq!(e, event(GroupEventKind::Kicked, id, carol.id));
            u
        })
        .collect();
    let mut expected = vec![alice.id, bob.id, carol.id, dave.id, erin.id];
    expected.sort();
    assert_eq!(told, expected);
    let gone = app.get(&format!("/v1/groups/{id}"), &carol).await;
    assert_error(&gone, StatusCode::FORBIDDEN, "NOT_GROUP_MEMBER");
    let again = act(&app, &bob, Method::DELETE, &kick(carol.id)).await;
    assert_error(&again, StatusCode::NOT_FOUND, "NOT_FOUND");

    // The creator kicks an admin.
    let (status, _) = act(&app, &alice, Method::DELETE, &kick(erin.id)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, info) = app.get(&format!("/v1/groups/{id}"), &alice).await;
    let members: Vec<u64> = info["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_u64().unwrap())
        .collect();
    assert_eq!(members.len(), 3);
    assert!(!members.contains(&erin.id) && !members.contains(&carol.id));
}

#[tokio::test]
async fn dissolve_is_for_the_creator() {
    let app = TestApp::new().await;
    let alice = app.account("alice").await;
    let bob = app.account("bob").await;
    let id = create(&app, &alice, "g").await;
    act(&app, &bob, Method::POST, &format!("/v1/groups/{id}/join")).await;
    set_role(&app, &alice, id, bob.id, "admin").await;
    app.take_events();

    let path = format!("/v1/groups/{id}");
    let by_admin = act(&app, &bob, Method::DELETE, &path).await;
    assert_error(&by_admin, StatusCode::FORBIDDEN, "FORBIDDEN");
    let (status, _) = act(&app, &alice, Method::DELETE, &path).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        sorted(app.take_events()),
        vec![
            (alice.id, event(GroupEventKind::Dissolved, id, alice.id)),
            (bob.id, event(GroupEventKind::Dissolved, id, alice.id)),
        ]
    );
    let gone = app.get(&path, &alice).await;
    assert_error(&gone, StatusCode::NOT_FOUND, "NOT_FOUND");
    let (_, mine) = app.get("/v1/groups", &alice).await;
    assert_eq!(mine, json!([]));
    let join = act(&app, &bob, Method::POST, &format!("/v1/groups/{id}/join")).await;
    assert_error(&join, StatusCode::NOT_FOUND, "NOT_FOUND");
}
