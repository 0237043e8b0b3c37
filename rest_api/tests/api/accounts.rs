//! Accounts, sessions and authentication.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use im_store::hash_token;
use serde_json::json;

use crate::common::{assert_error, json_body, TestApp};

#[tokio::test]
async fn register_returns_the_user() {
    let app = TestApp::new().await;
    let (status, user) = app
        .call(
            Method::POST,
            "/v1/accounts",
            None,
            Some(json!({"name": "alice", "password": "secret1"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(user["name"], "alice");
    assert!(user["id"].as_u64().is_some());
    assert!(user["created_at_ms"].as_u64().unwrap() > 0);
    assert!(user.get("password").is_none() && user.get("password_hash").is_none());
}

#[tokio::test]
async fn a_taken_name_is_409() {
    let app = TestApp::new().await;
    app.account("alice").await;
    let result = app
        .call(
            Method::POST,
            "/v1/accounts",
            None,
            Some(json!({"name": "alice", "password": "another1"})),
        )
        .await;
    assert_error(&result, StatusCode::CONFLICT, "NAME_TAKEN");
}

#[tokio::test]
async fn bad_names_and_passwords_are_400() {
    let app = TestApp::new().await;
    let long_name = "n".repeat(33);
    let long_password = "p".repeat(129);
    let cases = [
        ("", "secret1"),
        (long_name.as_str(), "secret1"),
        ("has space", "secret1"),
        ("semi;colon", "secret1"),
        ("bob", "short"),
        ("bob", long_password.as_str()),
    ];
    for (name, password) in cases {
        let result = app
            .call(
                Method::POST,
                "/v1/accounts",
                None,
                Some(json!({"name": name, "password": password})),
            )
            .await;
        assert_error(&result, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    }
}

#[tokio::test]
async fn malformed_bodies_are_400_json() {
    let app = TestApp::new().await;
    let send = |content_type: Option<&'static str>, body: &'static str| {
        let mut builder = Request::builder().method(Method::POST).uri("/v1/accounts");
        if let Some(value) = content_type {
            builder = builder.header(header::CONTENT_TYPE, value);
        }
        builder.body(Body::from(body)).unwrap()
    };
    let cases = [
        (Some("application/json"), "{\"name\": \"alice\", "),
        (Some("application/json"), "{\"name\": \"alice\"}"),
        (
            Some("application/json"),
            "{\"name\": 5, \"password\": \"secret1\"}",
        ),
        (
            Some("text/plain"),
            "{\"name\": \"alice\", \"password\": \"secret1\"}",
        ),
        (None, "{\"name\": \"alice\", \"password\": \"secret1\"}"),
    ];
    for (content_type, body) in cases {
        let response = app.send(send(content_type, body)).await;
        let status = response.status();
        let result = (status, json_body(response).await);
        assert_error(&result, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    }
    // The missing field is named.
    let response = app
        .send(send(Some("application/json"), "{\"name\": \"alice\"}"))
        .await;
    let body = json_body(response).await;
    assert!(
        body["message"].as_str().unwrap().contains("password"),
        "{body}"
    );
}

#[tokio::test]
async fn login_checks_the_password() {
    let app = TestApp::new().await;
    let alice = app.account("alice").await;
    assert_eq!(alice.token.len(), 64);

    let (status, session) = app
        .call(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({"name": "alice", "password": "password1"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(session["user"]["id"], alice.id);
    assert_ne!(
        session["token"],
        alice.token.as_str(),
        "each login gets a new token"
    );

    let wrong = app
        .call(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({"name": "alice", "password": "password2"})),
        )
        .await;
    assert_error(&wrong, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    let unknown = app
        .call(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({"name": "nobody", "password": "password1"})),
        )
        .await;
    assert_error(&unknown, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    assert_eq!(wrong.1["message"], unknown.1["message"]);
}

#[tokio::test]
async fn me_and_user_lookup() {
    let app = TestApp::new().await;
    let alice = app.account("alice").await;
    let bob = app.account("bob").await;

    let (status, me) = app.get("/v1/me", &alice).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["id"], alice.id);
    assert_eq!(me["name"], "alice");

    let (status, found) = app.get("/v1/users/bob", &alice).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found["id"], bob.id);

    let missing = app.get("/v1/users/carol", &alice).await;
    assert_error(&missing, StatusCode::NOT_FOUND, "NOT_FOUND");
}

#[tokio::test]
async fn logout_revokes_the_token_and_its_links() {
    let app = TestApp::new().await;
    let alice = app.account("alice").await;
    let (status, _) = app
        .call(
            Method::DELETE,
            "/v1/sessions/current",
            Some(&alice.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        *app.notifier.revoked.lock().unwrap(),
        vec![(alice.id, hash_token(&alice.token))]
    );
    let after = app.get("/v1/me", &alice).await;
    assert_error(&after, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
}

#[tokio::test]
async fn calls_without_a_valid_token_are_401() {
    let app = TestApp::new().await;
    app.account("alice").await;
    let routes = [
        (Method::GET, "/v1/me"),
        (Method::GET, "/v1/users/alice"),
        (Method::DELETE, "/v1/sessions/current"),
        (Method::GET, "/v1/friends"),
        (Method::GET, "/v1/friend-requests"),
        (Method::GET, "/v1/groups"),
        (Method::GET, "/v1/conversations"),
        (Method::GET, "/v1/conversations/u1-2/messages"),
        (
            Method::GET,
            "/v1/files/00000000-0000-4000-8000-000000000000",
        ),
    ];
    for (method, path) in routes {
        let none = app.call(method.clone(), path, None, None).await;
        assert_error(&none, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
        let bad = app.call(method, path, Some("not-a-token"), None).await;
        assert_error(&bad, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    }
    let basic = Request::builder()
        .uri("/v1/me")
        .header(header::AUTHORIZATION, "Basic YWxpY2U6cGFzc3dvcmQx")
        .body(Body::empty())
        .unwrap();
    let response = app.send(basic).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_oversized_json_body_is_413() {
    let app = TestApp::new().await;
    let huge = json!({"name": "alice", "password": "p".repeat(im_rest_api::MAX_JSON_BYTES)});
    let result = app
        .call(Method::POST, "/v1/accounts", None, Some(huge))
        .await;
    assert_error(&result, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
}
