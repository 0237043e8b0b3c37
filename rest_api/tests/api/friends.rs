//! Friend requests, the friend list, removal and remarks.

use axum::http::{Method, StatusCode};
use im_proto::v1::{FriendEvent, FriendEventKind, FriendRequestEvent};
use im_proto::Body as Event;
use im_user_status::UserStatus;
use serde_json::json;

use crate::common::{assert_error, Account, TestApp};

/// Sends a friend request from `from` with `body`.
async fn request(
    app: &TestApp,
    from: &Account,
    body: serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    app.call(
        Method::POST,
        "/v1/friend-requests",
        Some(&from.token),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn request_accept_and_list_with_online_state() {
    let app = TestApp::new().await;
    let alice = app.account("alice").await;
    let bob = app.account("bob").await;

    let (status, req) = request(&app, &alice, json!({"to": "bob", "note": "hi bob"})).await;
    assert_eq!(status, StatusCode::CREATED, "{req}");
    assert_eq!(req["from_user"], alice.id);
    assert_eq!(req["to_user"], bob.id);
    assert_eq!(req["status"], "pending");
    assert_eq!(req["note"], "hi bob");
    let id = req["id"].as_u64().unwrap();
    assert_eq!(
        app.take_events(),
        vec![(
            bob.id,
            Event::FriendRequest(FriendRequestEvent {
                request_id: id,
                from_user: alice.id,
                from_name: "alice".into(),
                note: "hi bob".into(),
            })
        )]
    );

    // Both sides see it pending.
    for who in [&alice, &bob] {
        let (status, list) = app.get("/v1/friend-requests", who).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
        assert_eq!(list[0]["id"], id);
    }

    // Only the recipient answers.
    let accept = format!("/v1/friend-requests/{id}/accept");
    let by_sender = app
        .call(Method::POST, &accept, Some(&alice.token), None)
        .await;
    assert_error(&by_sender, StatusCode::FORBIDDEN, "FORBIDDEN");

    let (status, accepted) = app
        .call(Method::POST, &accept, Some(&bob.token), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{accepted}");
    assert_eq!(accepted["status"], "accepted");
    assert_eq!(
        app.take_events(),
        vec![(
            alice.id,
            Event::FriendEvent(FriendEvent {
                kind: FriendEventKind::Accepted as i32,
                user_id: bob.id,
                name: "bob".into(),
            })
        )]
    );
    let again = app
        .call(Method::POST, &accept, Some(&bob.token), None)
        .await;
    assert_error(&again, StatusCode::CONFLICT, "CONFLICT");
    let (_, pending) = app.get("/v1/friend-requests", &bob).await;
    assert_eq!(pending, json!([]));

    // Bob is online on one device; alice is not.
    app.status.online(bob.id, "phone", "c1").await.unwrap();
    let (status, friends) = app.get("/v1/friends", &alice).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(friends.as_array().unwrap().len(), 1);
    assert_eq!(friends[0]["user_id"], bob.id);
    assert_eq!(friends[0]["name"], "bob");
    assert_eq!(friends[0]["remark"], json!(null));
    assert!(friends[0]["since_ms"].as_u64().unwrap() > 0);
    assert_eq!(friends[0]["online"], true);
    let (_, friends) = app.get("/v1/friends", &bob).await;
    assert_eq!(friends[0]["user_id"], alice.id);
    assert_eq!(friends[0]["online"], false);
}

#[tokio::test]
async fn reject_tells_the_requester() {
    let app = TestApp::new().await;
    let alice = app.account("alice").await;
    let bob = app.account("bob").await;
    let (_, req) = request(&app, &alice, json!({"to_user": bob.id})).await;
    assert_eq!(req["note"], "");
    app.take_events();

    let reject = format!("/v1/friend-requests/{}/reject", req["id"]);
    let (status, rejected) = app
        .call(Method::POST, &reject, Some(&bob.token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rejected["status"], "rejected");
    assert_eq!(
        app.take_events(),
        vec![(
            alice.id,
            Event::FriendEvent(FriendEvent {
                kind: FriendEventKind::Rejected as i32,
                user_id: bob.id,
                name: "bob".into(),
            })
        )]
    );
    let (_, friends) = app.get("/v1/friends", &alice).await;
    assert_eq!(friends, json!([]));
    // Once answered, a new request may be made.
    let (status, _) = request(&app, &alice, json!({"to": "bob"})).await;
    assert_eq!(status, StatusCode::CREATED);

    let unknown = app
        .call(
            Method::POST,
            "/v1/friend-requests/999999/accept",
            Some(&bob.token),
            None,
        )
        .await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "NOT_FOUND");
    let bad_id = app
        .call(
            Method::POST,
            "/v1/friend-requests/abc/accept",
            Some(&bob.token),
            None,
        )
        .await;
    assert_error(&bad_id, StatusCode::BAD_REQUEST, "BAD_REQUEST");
}

#[tokio::test]
async fn request_errors() {
    let app = TestApp::new().await;
    let alice = app.account("alice").await;
    let bob = app.account("bob").await;
    let carol = app.account("carol").await;

    let unknown = request(&app, &alice, json!({"to": "nobody"})).await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "NOT_FOUND");
    let unknown_id = request(&app, &alice, json!({"to_user": 987654})).await;
    assert_error(&unknown_id, StatusCode::NOT_FOUND, "NOT_FOUND");
    let to_self = request(&app, &alice, json!({"to": "alice"})).await;
    assert_error(&to_self, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    let neither = request(&app, &alice, json!({"note": "hi"})).await;
    assert_error(&neither, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    let both = request(&app, &alice, json!({"to": "bob", "to_user": bob.id})).await;
    assert_error(&both, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    let long_note = request(&app, &alice, json!({"to": "bob", "note": "n".repeat(257)})).await;
    assert_error(&long_note, StatusCode::BAD_REQUEST, "BAD_REQUEST");

    let (status, _) = request(&app, &alice, json!({"to": "bob", "note": "n".repeat(256)})).await;
    assert_eq!(status, StatusCode::CREATED);
    let twice = request(&app, &alice, json!({"to": "bob"})).await;
    assert_error(&twice, StatusCode::CONFLICT, "CONFLICT");
    let reverse = request(&app, &bob, json!({"to": "alice"})).await;
    assert_error(&reverse, StatusCode::CONFLICT, "CONFLICT");

    app.befriend(&alice, &carol).await;
    let friends_already = request(&app, &carol, json!({"to": "alice"})).await;
    assert_error(&friends_already, StatusCode::CONFLICT, "CONFLICT");
}

#[tokio::test]
async fn remove_a_friend() {
    let app = TestApp::new().await;
    let alice = app.account("alice").await;
    let bob = app.account("bob").await;
    app.befriend(&alice, &bob).await;
    app.take_events();

    let path = format!("/v1/friends/{}", bob.id);
    let (status, _) = app
        .call(Method::DELETE, &path, Some(&alice.token), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.take_events(),
        vec![(
            bob.id,
            Event::FriendEvent(FriendEvent {
                kind: FriendEventKind::Removed as i32,
                user_id: alice.id,
                name: "alice".into(),
            })
        )]
    );
    for who in [&alice, &bob] {
        let (_, friends) = app.get("/v1/friends", who).await;
        assert_eq!(friends, json!([]));
    }
    let again = app
        .call(Method::DELETE, &path, Some(&alice.token), None)
        .await;
    assert_error(&again, StatusCode::NOT_FOUND, "NOT_FOUND");
    assert!(app.take_events().is_empty());
}

#[tokio::test]
async fn set_and_clear_a_remark() {
    let app = TestApp::new().await;
    let alice = app.account("alice").await;
    let bob = app.account("bob").await;
    let carol = app.account("carol").await;
    app.befriend(&alice, &bob).await;

    let path = format!("/v1/friends/{}/remark", bob.id);
    let put = |remark: serde_json::Value| {
        app.call(
            Method::PUT,
            &path,
            Some(&alice.token),
            Some(json!({"remark": remark})),
        )
    };
    let (status, _) = put(json!("Bobby")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, friends) = app.get("/v1/friends", &alice).await;
    assert_eq!(friends[0]["remark"], "Bobby");
    // The remark is private to alice.
    let (_, friends) = app.get("/v1/friends", &bob).await;
    assert_eq!(friends[0]["remark"], json!(null));

    let too_long = put(json!("r".repeat(65))).await;
    assert_error(&too_long, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    let (status, _) = put(json!(null)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, friends) = app.get("/v1/friends", &alice).await;
    assert_eq!(friends[0]["remark"], json!(null));

    let stranger = format!("/v1/friends/{}/remark", carol.id);
    let not_friend = app
        .call(
            Method::PUT,
            &stranger,
            Some(&alice.token),
            Some(json!({"remark": "x"})),
        )
        .await;
    assert_error(&not_friend, StatusCode::NOT_FOUND, "NOT_FOUND");
}
