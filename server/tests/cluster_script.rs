//! The cluster as `scripts/cluster.sh` runs it: real im-server processes
//! (two transfers, two connectors, a REST API, an offline worker) on MariaDB,
//! Redis and the Kafka-API broker, with nginx balancing the client port.
//! Each test brings up a cluster of its own (own ports, database, Redis
//! prefix, topic and consumer group) and takes it down by pid at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use im_client::{Event, Link, LinkOptions, ReceiptKind, RestClient, Target};
use im_user_status::{RedisUserStatus, UserStatus};
use tokio::sync::mpsc::Receiver;

const WAIT: Duration = Duration::from_secs(20);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A port nothing listens on now, and not handed out before in this
/// process (the tests' clusters come up side by side). Another program may
/// still take it: `cluster.sh up` then fails, and `ScriptCluster::up` tries
/// new ports.
fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if GIVEN.lock().unwrap().insert(port) {
            return port;
        }
    }
}

fn mysql_url() -> String {
    std::env::var("IM_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

fn redis_url() -> String {
    std::env::var("IM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A cluster brought up by the script; `Drop` takes it down.
struct ScriptCluster {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    db: String,
    prefix: String,
    link: SocketAddr,
    http: String,
}

impl ScriptCluster {
    /// Brings a cluster up. Ports are picked free but may be taken again
    /// before the processes bind them (tests run in parallel): then that
    /// cluster is taken down and another is tried on new ports.
    fn up(lease_secs: u64) -> ScriptCluster {
        for attempt in 1..=3 {
            let cluster = ScriptCluster::define(lease_secs);
            match cluster.try_script(&["up"]) {
                Ok(()) => return cluster,
                Err(e) if attempt < 3 => eprintln!("cluster.sh up failed; trying new ports:\n{e}"),
                Err(e) => panic!("{e}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn define(lease_secs: u64) -> ScriptCluster {
        let dir = tempfile::tempdir().unwrap();
        let run = uuid::Uuid::new_v4().simple().to_string();
        let db = format!("im_test_{run}");
        let prefix = format!("imtest-{run}");
        let (link, ws, http) = (free_port(), free_port(), free_port());
        let ports = |n: usize| {
            (0..n)
                .map(|_| free_port().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let env = vec![
            ("IM_CLUSTER_DIR", dir.path().display().to_string()),
            ("IM_SERVER_BIN", env!("CARGO_BIN_EXE_im-server").to_owned()),
            ("IM_CLUSTER_LINK_PORT", link.to_string()),
            ("IM_CLUSTER_WS_PORT", ws.to_string()),
            ("IM_CLUSTER_HTTP_PORT", http.to_string()),
            ("IM_CLUSTER_TRANSFER_PORTS", ports(2)),
            ("IM_CLUSTER_CONNECTOR_PORTS", ports(2)),
            ("IM_CLUSTER_CONNECTOR_WS_PORTS", ports(2)),
            ("IM_CLUSTER_DB", db.clone()),
            ("IM_CLUSTER_REDIS_PREFIX", prefix.clone()),
            ("IM_CLUSTER_TOPIC", format!("im.test.{run}")),
            ("IM_CLUSTER_GROUP", format!("im-test-{run}")),
            ("IM_CLUSTER_LEASE_SECS", lease_secs.to_string()),
            ("IM_MYSQL_URL", mysql_url()),
            ("IM_REDIS_URL", redis_url()),
        ];
        let env: Vec<(String, String)> = env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        ScriptCluster {
            dir,
            env,
            db,
            prefix,
            link: SocketAddr::from(([127, 0, 0, 1], link)),
            http: format!("http://127.0.0.1:{http}"),
        }
    }

    fn script(&self, args: &[&str]) {
        self.try_script(args).unwrap_or_else(|e| panic!("{e}"));
    }

    fn try_script(&self, args: &[&str]) -> Result<(), String> {
        let out = Command::new(repo().join("scripts/cluster.sh"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap();
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "cluster.sh {args:?} failed:\n{}\n{}\nlogs: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        ))
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        if let Ok(dir) = std::fs::read_dir(self.dir.path().join("logs")) {
            for entry in dir.flatten() {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(60).collect();
                all += &format!("\n== {}\n", entry.path().display());
                for line in tail.into_iter().rev() {
                    all += line;
                    all.push('\n');
                }
            }
        }
        all
    }

    async fn status(&self) -> RedisUserStatus {
        RedisUserStatus::connect(&redis_url(), &self.prefix, Duration::from_secs(30))
            .await
            .unwrap()
    }

    async fn user(&self, name: &str) -> (RestClient, u64) {
        let rest = RestClient::new(&self.http).unwrap();
        let password = format!("{name}-password");
        rest.register(name, &password).await.unwrap();
        let session = rest.login(name, &password).await.unwrap();
        (rest.with_token(&session.token), session.user.id)
    }

    async fn connect(&self, rest: &RestClient, device: &str) -> (Link, Receiver<Event>) {
        self.connect_to(self.link, rest, device).await
    }

    /// The link port of connector `name` (`c1`, `c2`), past nginx.
    fn connector_link(&self, name: &str) -> SocketAddr {
        let ports = &self
            .env
            .iter()
            .find(|(k, _)| k == "IM_CLUSTER_CONNECTOR_PORTS")
            .unwrap()
            .1;
        let i: usize = name.trim_start_matches('c').parse().unwrap();
        let port = ports.split(' ').nth(i - 1).unwrap().parse().unwrap();
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    async fn connect_to(
        &self,
        addr: SocketAddr,
        rest: &RestClient,
        device: &str,
    ) -> (Link, Receiver<Event>) {
        let token = rest.token().unwrap();
        let (link, mut events) = Link::connect(addr, token, device, LinkOptions::default())
            .await
            .unwrap();
        until(&mut events, |e| matches!(e, Event::SyncDone { .. })).await;
        (link, events)
    }

    async fn sql_count(&self, query: &str) -> i64 {
        let url = format!("{}/{}", mysql_url().trim_end_matches('/'), self.db);
        let mut conn = <sqlx::MySqlConnection as sqlx::Connection>::connect(&url)
            .await
            .unwrap();
        sqlx::query_scalar(query)
            .fetch_one(&mut conn)
            .await
            .unwrap()
    }
}

impl Drop for ScriptCluster {
    fn drop(&mut self) {
        // A failed test's cluster is gone with its temporary directory, so
        // its processes' logs are printed here or never seen.
        if std::thread::panicking() {
            eprintln!("logs of the failed test's cluster:{}", self.logs());
        }
        let _ = Command::new(repo().join("scripts/cluster.sh"))
            .arg("down")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output();
        let _ = Command::new("mariadb")
            .args(["-h", "127.0.0.1", "-u", "root", "-e"])
            .arg(format!("DROP DATABASE IF EXISTS `{}`", self.db))
            .output();
    }
}

/// The first event matching `pred`, failing the test after `WAIT`.
async fn until(events: &mut Receiver<Event>, pred: impl Fn(&Event) -> bool) -> Event {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e)) if pred(&e) => return e,
            Ok(Some(Event::Closed { code, message })) => panic!("link closed: {code:?} {message}"),
            Ok(Some(_)) => {}
            Ok(None) => panic!("link gone"),
            Err(_) => panic!("timed out waiting for an event"),
        }
    }
}

async fn befriend(a: &RestClient, b: &RestClient, b_name: &str) {
    let request = a.send_friend_request(b_name, "hi").await.unwrap();
    b.accept_friend_request(request.id).await.unwrap();
}

async fn connector_of(status: &RedisUserStatus, user: u64) -> String {
    let devices = status.lookup(user).await.unwrap();
    assert_eq!(devices.len(), 1, "one device online: {devices:?}");
    devices[0].connector.clone()
}

#[test]
fn up_fails_when_another_program_holds_a_connectors_port() {
    let cluster = ScriptCluster::define(9);
    let c1 = cluster.connector_link("c1");
    // Another program answers on c1's port, so c1 cannot bind it.
    let _taken = TcpListener::bind(c1).unwrap();
    let error = cluster
        .try_script(&["up"])
        .expect_err("up reported a cluster whose connector could not listen");
    assert!(error.contains("c1 exited"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_different_connectors_chat_with_receipts_through_nginx() {
    let cluster = ScriptCluster::up(9);
    let (alice, alice_id) = cluster.user("alice").await;
    let (bob, bob_id) = cluster.user("bob").await;
    befriend(&alice, &bob, "bob").await;
    let (a_link, mut a_events) = cluster.connect(&alice, "laptop").await;
    let (b_link, mut b_events) = cluster.connect(&bob, "phone").await;
    let status = cluster.status().await;
    let (a_conn, b_conn) = (
        connector_of(&status, alice_id).await,
        connector_of(&status, bob_id).await,
    );
    assert_ne!(
        a_conn,
        b_conn,
        "nginx put the two links on different connectors; logs:{}",
        cluster.logs()
    );

    let sent = a_link
        .send_text(Target::User(bob_id), "hello across connectors")
        .await
        .unwrap();
    assert_eq!(sent.seq, 1);
    let Event::Message(m) = until(&mut b_events, |e| matches!(e, Event::Message(_))).await else {
        unreachable!()
    };
    assert_eq!(
        (m.text.as_str(), m.seq, m.offline),
        ("hello across connectors", 1, false)
    );
    let delivered = until(
        &mut a_events,
        |e| matches!(e, Event::Receipt(r) if r.kind == ReceiptKind::Delivered as i32),
    )
    .await;
    let Event::Receipt(delivered) = delivered else {
        unreachable!()
    };
    assert_eq!((delivered.msg_id, delivered.by_user), (sent.msg_id, bob_id));
    b_link.mark_read(&m.conversation_id, m.seq).await.unwrap();
    let read = until(
        &mut a_events,
        |e| matches!(e, Event::Receipt(r) if r.kind == ReceiptKind::Read as i32),
    )
    .await;
    let Event::Receipt(read) = read else {
        unreachable!()
    };
    assert_eq!(read.msg_id, sent.msg_id);

    // Bob answers from the other connector.
    let reply = b_link
        .send_text(Target::User(alice_id), "hi alice")
        .await
        .unwrap();
    assert_eq!(reply.seq, 2);
    let Event::Message(m) = until(&mut a_events, |e| matches!(e, Event::Message(_))).await else {
        unreachable!()
    };
    assert_eq!((m.text.as_str(), m.seq), ("hi alice", 2));
    a_link.close().await;
    b_link.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_offline_worker_mid_stream_loses_and_doubles_nothing() {
    const N: usize = 120;
    let cluster = ScriptCluster::up(9);
    let (alice, _) = cluster.user("alice").await;
    let (bob, bob_id) = cluster.user("bob").await;
    befriend(&alice, &bob, "bob").await;
    let (a_link, _a_events) = cluster.connect(&alice, "laptop").await;

    // Bob is offline: everything goes through Kafka into MySQL's offline rows.
    let mut sends: FuturesUnordered<_> = (0..N)
        .map(|i| {
            let link = a_link.clone();
            let text = format!("m{i:03}");
            async move {
                (
                    text.clone(),
                    link.send_text(Target::User(bob_id), text).await,
                )
            }
        })
        .collect();
    // The order the sends reach the link is up to the futures; the server's
    // order is the seq each SENT carries.
    let mut by_seq = BTreeMap::new();
    let mut killed = false;
    while let Some(sent) = tokio::time::timeout(Duration::from_secs(60), sends.next())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "SENT stopped coming; {} so far{}",
                by_seq.len(),
                cluster.logs()
            )
        })
    {
        let (text, sent) = sent;
        assert!(
            by_seq.insert(sent.unwrap().seq, text).is_none(),
            "two messages, one seq"
        );
        if by_seq.len() == 20 && !killed {
            cluster.script(&["kill", "worker"]);
            killed = true;
            tokio::time::sleep(Duration::from_secs(1)).await;
            cluster.script(&["start", "worker"]);
        }
    }
    assert!(killed);
    assert_eq!(
        by_seq.keys().copied().collect::<Vec<_>>(),
        (1..=N as u64).collect::<Vec<_>>(),
        "one seq per message, no gaps"
    );
    assert_eq!(
        cluster.sql_count("SELECT COUNT(*) FROM messages").await,
        N as i64,
        "each stored once"
    );

    let (b_link, mut b_events) = {
        let token = bob.token().unwrap();
        Link::connect(cluster.link, token, "phone", LinkOptions::default())
            .await
            .unwrap()
    };
    let mut texts = Vec::new();
    loop {
        match until(&mut b_events, |e| {
            matches!(e, Event::Message(_) | Event::SyncDone { .. })
        })
        .await
        {
            Event::Message(m) => {
                assert!(m.offline);
                texts.push((m.seq, m.text));
            }
            Event::SyncDone { offline_count, .. } => {
                assert_eq!(offline_count as usize, N);
                break;
            }
            _ => unreachable!(),
        }
    }
    let expected: Vec<(u64, String)> = by_seq.into_iter().collect();
    assert_eq!(texts, expected, "bob gets every message once, in seq order");
    b_link.close().await;
    a_link.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_connectors_users_expire_and_catch_up_through_the_other() {
    let lease = 3;
    let cluster = ScriptCluster::up(lease);
    let (alice, alice_id) = cluster.user("alice").await;
    let (bob, bob_id) = cluster.user("bob").await;
    befriend(&alice, &bob, "bob").await;
    // alice through nginx, bob straight to the other connector: which
    // connector nginx picks is its business (the test above checks it).
    let (a_link, mut a_events) = cluster.connect(&alice, "laptop").await;
    let status = cluster.status().await;
    let a_conn = connector_of(&status, alice_id).await;
    let other = if a_conn == "c1" { "c2" } else { "c1" };
    let (_b_link, _b_events) = cluster
        .connect_to(cluster.connector_link(other), &bob, "phone")
        .await;
    let b_conn = connector_of(&status, bob_id).await;
    assert_eq!(b_conn, other);

    cluster.script(&["kill", &b_conn]);
    // Nobody renews bob's lease now: his entry expires.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(lease * 3 + 5);
    while !status.lookup(bob_id).await.unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bob's status entry did not expire"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sent = a_link
        .send_text(Target::User(bob_id), "while you were gone")
        .await
        .unwrap();
    assert_eq!(
        cluster
            .sql_count("SELECT COUNT(*) FROM offline WHERE has_read = 0")
            .await,
        1,
        "the message waits in bob's offline queue"
    );

    // Through nginx again: the dead connector is skipped.
    let token = bob.token().unwrap();
    let (b_link, mut b_events) =
        Link::connect(cluster.link, token, "phone", LinkOptions::default())
            .await
            .unwrap();
    let Event::Message(m) = until(&mut b_events, |e| matches!(e, Event::Message(_))).await else {
        unreachable!()
    };
    assert_eq!((m.msg_id, m.offline), (sent.msg_id, true));
    assert_ne!(connector_of(&status, bob_id).await, b_conn);
    until(
        &mut a_events,
        |e| matches!(e, Event::Receipt(r) if r.kind == ReceiptKind::Delivered as i32),
    )
    .await;
    b_link.close().await;
    a_link.close().await;
}
