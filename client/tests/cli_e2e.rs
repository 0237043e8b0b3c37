//! The README walk-through, scripted: two people use the real `im` binary
//! against a real server: register, log in, become friends, chat while one is
//! offline, and see sent -> delivered -> read.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tokio::process::Command;

struct Person {
    state: PathBuf,
}

struct World {
    http: String,
    link: String,
    _dir: tempfile::TempDir,
}

impl World {
    fn person(&self, name: &str) -> Person {
        Person {
            state: self._dir.path().join(format!("{name}.json")),
        }
    }

    /// Runs `im` as `who`; returns the JSON values it printed,
    /// failing the test on a non-zero exit.
    async fn im(&self, who: &Person, args: &[&str]) -> Vec<Value> {
        let out = Command::new(env!("CARGO_BIN_EXE_im"))
            .args(["--http", &self.http, "--link", &self.link])
            .arg("--state")
            .arg(&who.state)
            .args(args)
            .env_remove("IM_PASSWORD")
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "im {args:?} failed: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // One pretty document, or JSON Lines: both are a stream of values.
        serde_json::Deserializer::from_str(&stdout)
            .into_iter::<Value>()
            .map(|v| v.unwrap_or_else(|e| panic!("not JSON: {stdout}: {e}")))
            .collect()
    }
}

fn of_type<'a>(values: &'a [Value], kind: &str) -> Vec<&'a Value> {
    values.iter().filter(|v| v["type"] == kind).collect()
}

fn receipts(values: &[Value], kind: &str) -> Vec<u64> {
    of_type(values, "receipt")
        .into_iter()
        .filter(|r| r["kind"] == kind)
        .map(|r| r["msg_id"].as_u64().unwrap())
        .collect()
}

async fn start(dir: &Path) -> im_server::RunningServer {
    let config = im_server::Config::new(
        dir.join("data"),
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    );
    im_server::start(config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_chat_with_the_cli_and_see_every_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let world = World {
        http: server.http_url(),
        link: server.link_addr.to_string(),
        _dir: dir,
    };
    let alice = world.person("alice");
    let bob = world.person("bob");

    let me = world
        .im(&alice, &["register", "alice", "--password", "alicepass"])
        .await;
    assert_eq!(me[0]["name"], "alice");
    world
        .im(&bob, &["register", "bob", "--password", "bobpass1"])
        .await;
    world
        .im(&alice, &["login", "alice", "--password", "alicepass"])
        .await;
    world
        .im(&bob, &["login", "bob", "--password", "bobpass1"])
        .await;

    world
        .im(&bob, &["friend", "add", "alice", "--note", "hi, it's bob"])
        .await;
    let requests = world.im(&alice, &["friend", "requests"]).await;
    let request = &requests[0].as_array().unwrap()[0];
    assert_eq!(request["note"], "hi, it's bob");
    let id = request["id"].to_string();
    world.im(&alice, &["friend", "accept", &id]).await;
    let friends = world.im(&alice, &["friend", "list"]).await;
    assert_eq!(friends[0][0]["name"], "bob");

    // Bob is offline: alice's messages are durable (SENT) and wait for him.
    let first = world
        .im(&alice, &["send", "--to", "bob", "hello bob"])
        .await;
    assert_eq!(first[0]["kind"], "sent");
    let second = world
        .im(&alice, &["send", "--to", "bob", "are you there?"])
        .await;
    let ids = [
        first[0]["msg_id"].as_u64().unwrap(),
        second[0]["msg_id"].as_u64().unwrap(),
    ];

    // Bob logs in later: both arrive, offline, in order, and he reads them.
    let seen = world.im(&bob, &["listen", "--until-sync", "--read"]).await;
    let messages = of_type(&seen, "message");
    let texts: Vec<&str> = messages
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["hello bob", "are you there?"]);
    assert!(messages.iter().all(|m| m["offline"] == true));

    // Alice comes back and sees delivered, then read, for both.
    let seen = world.im(&alice, &["listen", "--until-sync"]).await;
    let mut delivered = receipts(&seen, "delivered");
    let mut read = receipts(&seen, "read");
    delivered.sort();
    read.sort();
    assert_eq!(delivered, ids);
    assert_eq!(read, ids);

    // History and unread counts agree.
    let convs = world.im(&bob, &["conversations"]).await;
    assert_eq!(convs[0][0]["unread"], 0);
    let conv = convs[0][0]["id"].as_str().unwrap().to_owned();
    let history = world.im(&alice, &["history", &conv]).await;
    assert_eq!(history[0]["messages"].as_array().unwrap().len(), 2);

    world.im(&alice, &["logout"]).await;
    server.shutdown().await;
}
