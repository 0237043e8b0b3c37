//! The REST client against a one-shot HTTP responder on 127.0.0.1:0.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Answers one request with `status` and `body`; returns the request head.
async fn respond_once(status: &str, body: &str) -> (String, tokio::task::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let task = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = sock.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        sock.write_all(response.as_bytes()).await.unwrap();
        String::from_utf8_lossy(&head).into_owned()
    });
    (url, task)
}

#[tokio::test]
async fn an_error_body_becomes_an_api_error() {
    let (url, server) = respond_once(
        "409 Conflict",
        r#"{"code":"NAME_TAKEN","message":"alice exists"}"#,
    )
    .await;
    let err = RestClient::new(&url)
        .unwrap()
        .register("alice", "pw")
        .await
        .unwrap_err();
    match err {
        ClientError::Api {
            status,
            code,
            message,
        } => {
            assert_eq!((status, code.as_str()), (409, "NAME_TAKEN"));
            assert_eq!(message, "alice exists");
        }
        other => panic!("expected Api, got {other:?}"),
    }
    assert!(server.await.unwrap().starts_with("POST /v1/accounts "));
}

#[tokio::test]
async fn the_token_is_sent_and_names_are_escaped() {
    let (url, server) = respond_once("200 OK", r#"{"id":3,"name":"bo b","created_at_ms":1}"#).await;
    let user = RestClient::new(&url)
        .unwrap()
        .with_token("t0k")
        .user("bo b")
        .await
        .unwrap();
    assert_eq!(user.id, 3);
    let head = server.await.unwrap().to_ascii_lowercase();
    assert!(head.starts_with("get /v1/users/bo%20b "), "{head}");
    assert!(head.contains("authorization: bearer t0k"), "{head}");
}

#[tokio::test]
async fn a_non_json_error_keeps_the_closed_code_set() {
    let (url, _server) = respond_once("404 Not Found", "nope").await;
    let err = RestClient::new(&url).unwrap().me().await.unwrap_err();
    assert_eq!(err.code(), "NOT_FOUND");
}

#[test]
fn a_bad_base_url_is_refused() {
    assert!(RestClient::new("not a url").is_err());
    assert!(RestClient::new("mailto:x@y").is_err());
}
