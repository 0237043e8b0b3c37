//! File upload and download.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;

use crate::common::{assert_error, json_body, Account, TestApp, MAX_UPLOAD};

/// An upload request of `body` named `name`.
fn upload(who: &Account, name: &str, mime: Option<&str>, body: Body) -> Request<Body> {
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(format!("/v1/files?name={name}"))
        .header(header::AUTHORIZATION, format!("Bearer {}", who.token));
    if let Some(mime) = mime {
        builder = builder.header(header::CONTENT_TYPE, mime);
    }
    builder.body(body).unwrap()
}

/// A download request.
fn download(who: &Account, id: &str) -> Request<Body> {
    Request::builder()
        .uri(format!("/v1/files/{id}"))
        .header(header::AUTHORIZATION, format!("Bearer {}", who.token))
        .body(Body::empty())
        .unwrap()
}

/// Files left in the upload directory (none must be half-written).
fn stored_files(app: &TestApp) -> Vec<String> {
    match std::fs::read_dir(app.dir.path().join("files")) {
        Ok(dir) => dir
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test]
async fn upload_then_download() {
    let app = TestApp::new().await;
    let alice = app.account("alice").await;
    let bob = app.account("bob").await;
    let bytes: Vec<u8> = (0..=255u8).cycle().take(3000).collect();

    let response = app
        .send(upload(
            &alice,
            "cat%20pic.png",
            Some("image/png"),
            Body::from(bytes.clone()),
        ))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let record = json_body(response).await;
    assert_eq!(record["owner"], alice.id);
    assert_eq!(record["name"], "cat pic.png");
    assert_eq!(record["mime"], "image/png");
    assert_eq!(record["size"], 3000);
    assert!(record["created_at_ms"].as_u64().unwrap() > 0);
    let id = record["id"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok());
    assert_eq!(stored_files(&app), vec![id.clone()]);

    // Anyone signed in may fetch it by id.
    let response = app.send(download(&bob, &id)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers[header::CONTENT_TYPE], "image/png");
    assert_eq!(headers[header::CONTENT_LENGTH], "3000");
    assert_eq!(
        headers[header::CONTENT_DISPOSITION],
        "attachment; filename=\"cat pic.png\"; filename*=UTF-8''cat%20pic.png"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, Bytes::from(bytes));
}

#[tokio::test]
async fn the_mime_type_defaults_to_octet_stream() {
    let app = TestApp::new().await;
    let alice = app.account("alice").await;
    let response = app
        .send(upload(&alice, "blob", None, Body::from("hello")))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let record = json_body(response).await;
    assert_eq!(record["mime"], "application/octet-stream");
    let response = app
        .send(download(&alice, record["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/octet-stream"
    );
}

#[tokio::test]
async fn too_large_is_413_and_leaves_nothing() {
    let app = TestApp::new().await;
    let alice = app.account("alice").await;
    let big = vec![7u8; MAX_UPLOAD + 1];

    // Declared too large up front.
    let mut request = upload(&alice, "big.bin", None, Body::from(big.clone()));
    request
        .headers_mut()
        .insert(header::CONTENT_LENGTH, big.len().into());
    let response = app.send(request).await;
    let result = (response.status(), json_body(response).await);
    assert_error(&result, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");

    // Streamed without a length: stopped while reading.
    let chunks: Vec<Result<Bytes, std::io::Error>> = big
        .chunks(1000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let stream = Body::from_stream(futures::stream::iter(chunks));
    let response = app.send(upload(&alice, "big.bin", None, stream)).await;
    let result = (response.status(), json_body(response).await);
    assert_error(&result, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
    assert!(stored_files(&app).is_empty(), "{:?}", stored_files(&app));

    // Exactly the limit is fine.
    let response = app
        .send(upload(
            &alice,
            "max.bin",
            None,
            Body::from(vec![1u8; MAX_UPLOAD]),
        ))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn bad_uploads_and_unknown_files() {
    let app = TestApp::new().await;
    let alice = app.account("alice").await;

    let no_name = Request::builder()
        .method(Method::POST)
        .uri("/v1/files")
        .header(header::AUTHORIZATION, format!("Bearer {}", alice.token))
        .body(Body::from("x"))
        .unwrap();
    let response = app.send(no_name).await;
    let result = (response.status(), json_body(response).await);
    assert_error(&result, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    let response = app
        .send(upload(&alice, "a%2Fb", None, Body::from("x")))
        .await;
    let result = (response.status(), json_body(response).await);
    assert_error(&result, StatusCode::BAD_REQUEST, "BAD_REQUEST");

    for id in [
        "00000000-0000-4000-8000-000000000000",
        "not-a-uuid",
        "..%2Fim.db",
    ] {
        let response = app.send(download(&alice, id)).await;
        let result = (response.status(), json_body(response).await);
        assert_error(&result, StatusCode::NOT_FOUND, "NOT_FOUND");
    }

    let anonymous = Request::builder()
        .method(Method::POST)
        .uri("/v1/files?name=x")
        .body(Body::from("x"))
        .unwrap();
    assert_eq!(app.send(anonymous).await.status(), StatusCode::UNAUTHORIZED);
    assert!(stored_files(&app).is_empty());
}
