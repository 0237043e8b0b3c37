//! The real `im-server` binary: first start creates the data directory and
//! schema, SIGINT stops it cleanly, and the data is there after a restart.

mod common;

fn backend() -> common::Backend {
    common::Backend::Local
}

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

struct Server {
    child: Child,
    http: String,
}

impl Server {
    /// Starts the binary on port 0 and reads the addresses it prints.
    fn start(data_dir: &std::path::Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_im-server"))
            .args(["--data-dir", data_dir.to_str().unwrap()])
            .args([
                "--http-addr",
                "127.0.0.1:0",
                "--link-addr",
                "127.0.0.1:0",
                "--ws-addr",
                "127.0.0.1:0",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        // "im-server: REST on http://127.0.0.1:PORT, links on 127.0.0.1:PORT ..."
        let http = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .trim_end_matches(',')
            .to_owned();
        Server { child, http }
    }

    /// Sends SIGINT (Ctrl-C) by pid and waits for the exit status.
    fn interrupt(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-INT", &pid]).status().unwrap();
        assert!(status.success());
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_binary_starts_fresh_stops_on_ctrl_c_and_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nested").join("data");
    let server = Server::start(&data);
    assert!(
        data.join("im.db").exists(),
        "database created on first start"
    );
    let http = reqwest::Client::new();
    let body = json!({"name": "alice", "password": "alicepass"});
    let res = http
        .post(format!("{}/v1/accounts", server.http))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let status = tokio::task::spawn_blocking(move || server.interrupt())
        .await
        .unwrap();
    assert!(status.success(), "clean exit on SIGINT: {status:?}");

    let server = Server::start(&data);
    let res = http
        .post(format!("{}/v1/sessions", server.http))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "account survived the restart");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["user"]["name"], "alice");
    // The OpenAPI document is served by the binary too.
    let res = http
        .get(format!("{}/openapi.json", server.http))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let status = tokio::task::spawn_blocking(move || server.interrupt())
        .await
        .unwrap();
    assert!(status.success());
}

/// The SQLite file is locked for the server's whole process: a second
/// server on the same data directory stops with a clear error, and the first
/// goes on serving.
#[tokio::test]
async fn a_second_server_on_the_same_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = Server::start(dir.path());
    let mut second = Command::new(env!("CARGO_BIN_EXE_im-server"))
        .args(["--data-dir", dir.path().to_str().unwrap()])
        .args(["--http-addr", "127.0.0.1:0", "--link-addr", "127.0.0.1:0"])
        .args(["--ws-addr", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It waits out SQLite's busy timeout (5 s) first; one that started
    // anyway is stopped here.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let exited = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            second.kill().unwrap();
            break None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let second = second.wait_with_output().unwrap();
    assert!(exited.is_some(), "the second server did not stop");
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("in use by another process"),
        "second server: {err}"
    );
    let res = reqwest::get(format!("{}/openapi.json", first.http))
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the first server still serves");
}

#[test]
fn bad_flags_get_a_clear_error_and_no_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_im-server"))
        .args(["--http-addr", "not-an-address"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--http-addr"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_im-server"))
        .args(["--max-frame-bytes", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-frame-bytes"));

    // Cluster roles: each names the engine flag it lacks.
    for (args, expected) in [
        (
            &["--role", "connector"][..],
            "--role connector needs --database-url",
        ),
        (
            &[
                "--role",
                "transfer",
                "--database-url",
                "mysql://db/im",
                "--redis-url",
                "redis://r",
            ][..],
            "--role transfer needs --kafka-brokers",
        ),
        (
            &[
                "--role",
                "offline-worker",
                "--database-url",
                "mysql://db/im",
                "--kafka-brokers",
                "k:9092",
            ][..],
            "--role offline-worker needs --transfers",
        ),
        (
            &["--role", "rest-api", "--transfers", "t1"][..],
            "is not host:port",
        ),
        (&["--role", "router"][..], "invalid value 'router'"),
        (&["--writer-nice", "40"][..], "--writer-nice"),
        (&["--ack-hold-ms", "5000"][..], "--ack-hold-ms"),
        (
            &["--database-connections", "0"][..],
            "--database-connections",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_im-server"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}
