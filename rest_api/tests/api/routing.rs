//! The router's edges (unknown paths, wrong methods, health) and that the
//! route table and `docs/openapi.json` describe the same API.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use im_rest_api::{routes, OPENAPI_JSON};
use serde_json::{json, Value};

use crate::common::{assert_error, json_body, TestApp};

/// Methods an OpenAPI path item may hold.
const OPENAPI_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// (METHOD, path) of every operation in the OpenAPI document.
fn documented() -> BTreeSet<(String, String)> {
    let doc: Value = serde_json::from_str(OPENAPI_JSON).expect("openapi.json parses");
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (key, _) in item.as_object().expect("path item") {
            if OPENAPI_METHODS.contains(&key.as_str()) {
                ops.insert((key.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

/// (METHOD, path) of every route the server has.
fn served() -> BTreeSet<(String, String)> {
    routes()
        .into_iter()
        .map(|(method, path, _)| (method.to_string(), path.to_owned()))
        .collect()
}

#[test]
fn every_route_is_documented() {
    let missing: Vec<_> = served().difference(&documented()).cloned().collect();
    assert!(
        missing.is_empty(),
        "routes missing from openapi.json: {missing:?}"
    );
}

#[test]
fn every_documented_operation_is_served() {
    let extra: Vec<_> = documented().difference(&served()).cloned().collect();
    assert!(
        extra.is_empty(),
        "openapi.json operations with no route: {extra:?}"
    );
}

#[test]
fn the_route_table_has_no_duplicates() {
    assert_eq!(served().len(), routes().len());
}

#[test]
fn the_error_schema_lists_every_code() {
    let doc: Value = serde_json::from_str(OPENAPI_JSON).unwrap();
    let listed: BTreeSet<&str> = doc["components"]["schemas"]["Error"]["properties"]["code"]
        ["enum"]
        .as_array()
        .expect("Error.code enum")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let all: BTreeSet<&str> = (0..=64)
        .filter_map(|v| im_proto::ErrorCode::try_from(v).ok())
        .map(|code| code.name())
        .collect();
    assert_eq!(listed, all);
}

#[tokio::test]
async fn openapi_json_is_served() {
    let app = TestApp::new().await;
    let response = app
        .send(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, OPENAPI_JSON.as_bytes());
    let doc: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
}

#[tokio::test]
async fn healthz() {
    let app = TestApp::new().await;
    let result = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(result, (StatusCode::OK, json!({"status": "ok"})));
}

#[tokio::test]
async fn unknown_routes_are_404_json() {
    let app = TestApp::new().await;
    for path in ["/", "/v1/nothing", "/v1/groups/1/nothing", "/v2/me"] {
        let result = app.call(Method::GET, path, None, None).await;
        assert_error(&result, StatusCode::NOT_FOUND, "NOT_FOUND");
        assert_eq!(result.1["message"], "no such route");
    }
}

#[tokio::test]
async fn wrong_methods_are_405_json() {
    let app = TestApp::new().await;
    for (method, path) in [
        (Method::GET, "/v1/accounts"),
        (Method::PUT, "/v1/me"),
        (Method::PATCH, "/v1/groups/1"),
        (Method::POST, "/healthz"),
    ] {
        let response = app
            .send(
                Request::builder()
                    .method(method)
                    .uri(path)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert!(response.headers().contains_key(header::ALLOW), "{path}");
        let result = (response.status(), json_body(response).await);
        assert_error(&result, StatusCode::METHOD_NOT_ALLOWED, "BAD_REQUEST");
    }
}
