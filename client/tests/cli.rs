//! The `im` binary against a fake REST server and a fake link.

use std::path::PathBuf;

use im_client::im_proto::Body;
use im_client::Frame;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::time::timeout;

mod fake_server;

use fake_server::*;

/// A state file logged in as alice (user 7) with a fixed device id.
fn state_file() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("im-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state.json");
    let state = r#"{"name":"alice","user_id":7,"token":"tok","device_id":"cli-test0001"}"#;
    std::fs::write(&path, state).unwrap();
    path
}

fn im(http: &str, link: &str, state: &PathBuf) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_im"));
    cmd.arg("--http")
        .arg(http)
        .arg("--link")
        .arg(link)
        .arg("--state")
        .arg(state)
        .env_remove("IM_PASSWORD")
        .kill_on_drop(true);
    cmd
}

#[tokio::test]
async fn send_resolves_the_friend_and_prints_the_sent_receipt() {
    let friends = r#"[{"user_id":9,"name":"bob","remark":null,"since_ms":1,"online":true}]"#;
    let http = http_server(vec![("GET /v1/friends", 200, friends.into())]).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let link = listener.local_addr().unwrap().to_string();
    let state = state_file();
    let child = im(&http, &link, &state)
        .args(["send", "--to", "bob", "hello bob"])
        .output();
    let server = async {
        let mut server = accept_login(&listener).await;
        let frame = server.recv().await;
        let send = sent_message(&frame);
        assert_eq!((send.to_user, send.text.as_str()), (9, "hello bob"));
        assert_eq!(frame.id, 2);
        server.send(Frame::ack(2)).await;
        server.send(sent_receipt(2, &send)).await;
        server.expect_ack(2).await;
        server.expect_eof().await;
    };
    let (output, ()) = timeout(WAIT, async { tokio::join!(child, server) })
        .await
        .unwrap();
    let output = output.unwrap();
    assert!(output.status.success(), "{output:?}");
    let receipt: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(receipt["type"], "receipt");
    assert_eq!(receipt["kind"], "sent");
    assert_eq!(receipt["msg_id"], 41);
}

#[tokio::test]
async fn listen_prints_json_lines_and_stops_after_count() {
    let http = http_server(vec![]).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let link = listener.local_addr().unwrap().to_string();
    let state = state_file();
    let child = im(&http, &link, &state)
        .args(["listen", "--count", "1", "--read"])
        .output();
    let server = async {
        let mut server = accept_login(&listener).await;
        server.send(message(2, 100, 1)).await;
        server.expect_ack(2).await;
        let frame = server.recv().await;
        assert!(
            matches!(&frame.body, Some(Body::MarkRead(m)) if m.conversation_id == "u7-9" && m.seq == 1)
        );
        server.send(Frame::ack(frame.id)).await;
        server.expect_eof().await;
    };
    let (output, ()) = timeout(WAIT, async { tokio::join!(child, server) })
        .await
        .unwrap();
    let output = output.unwrap();
    assert!(output.status.success(), "{output:?}");
    let lines: Vec<Value> = output
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines[0]["type"], "message");
    assert_eq!(lines[0]["msg_id"], 100);
    assert_eq!(lines.last().unwrap()["type"], "closed");
}

#[tokio::test]
async fn errors_are_json_on_stderr_with_exit_code_1() {
    let http = http_server(vec![(
        "POST /v1/accounts",
        409,
        r#"{"code":"NAME_TAKEN","message":"taken"}"#.into(),
    )])
    .await;
    let state = state_file();
    let output = im(&http, "127.0.0.1:1", &state)
        .args(["register", "alice", "--password", "pw"])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let error: Value = serde_json::from_slice(&output.stderr).unwrap();
    assert_eq!(error["error"]["code"], "NAME_TAKEN");

    std::fs::write(&state, "{}").unwrap();
    let output = im(&http, "127.0.0.1:1", &state)
        .arg("whoami")
        .output()
        .await
        .unwrap();
    let error: Value = serde_json::from_slice(&output.stderr).unwrap();
    assert_eq!(error["error"]["code"], "NOT_LOGGED_IN");
}

#[tokio::test]
async fn login_saves_the_token_and_keeps_the_device_id() {
    let session = r#"{"token":"t2","user":{"id":7,"name":"alice","created_at_ms":1}}"#;
    let http = http_server(vec![("POST /v1/sessions", 200, session.into())]).await;
    let state = state_file();
    let output = im(&http, "127.0.0.1:1", &state)
        .args(["login", "alice"])
        .env("IM_PASSWORD", "pw")
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let saved: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(saved["token"], "t2");
    assert_eq!(saved["device_id"], "cli-test0001");
}

#[tokio::test]
async fn chat_sends_shows_receipts_and_marks_the_current_conversation_read() {
    use std::process::Stdio;
    use tokio::io::AsyncWriteExt;

    let me = r#"{"id":7,"name":"alice","created_at_ms":1}"#;
    let friends = r#"[{"user_id":9,"name":"bob","remark":null,"since_ms":1,"online":true}]"#;
    let http = http_server(vec![
        ("GET /v1/me", 200, me.into()),
        ("GET /v1/friends", 200, friends.into()),
        ("GET /v1/groups", 200, "[]".into()),
    ])
    .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let link = listener.local_addr().unwrap().to_string();
    let state = state_file();
    let mut child = im(&http, &link, &state)
        .arg("chat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut server = timeout(WAIT, accept_login(&listener)).await.unwrap();
    stdin.write_all(b"/to bob\nhello\n").await.unwrap();
    let frame = server.recv().await;
    let send = sent_message(&frame);
    assert_eq!((send.to_user, send.text.as_str()), (9, "hello"));
    server.send(Frame::ack(frame.id)).await;
    server.send(sent_receipt(2, &send)).await;
    server.expect_ack(2).await;
    let mut from_bob = message(3, 101, 2);
    if let Some(Body::Message(m)) = &mut from_bob.body {
        m.text = "hi there".into();
    }
    server.send(from_bob).await;
    server.expect_ack(3).await;
    let read = server.recv().await;
    assert!(
        matches!(&read.body, Some(Body::MarkRead(m)) if m.conversation_id == "u7-9" && m.seq == 2)
    );
    server.send(Frame::ack(read.id)).await;
    stdin.write_all(b"/quit\n").await.unwrap();
    server.expect_eof().await;
    let output = timeout(WAIT, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("now chatting with bob"), "{stdout}");
    assert!(stdout.contains("✓ sent \"hello\""), "{stdout}");
    assert!(stdout.contains("[@bob] bob: hi there"), "{stdout}");
    assert!(output.status.success());
}
