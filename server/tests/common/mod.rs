//! Test harness: a real server in-process on port 0 with its own data
//! directory, plus raw-protocol helpers for tests that hand-craft frames.
#![allow(dead_code, missing_docs)]

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use im_proto::v1::{Login, SendMessage};
use im_proto::{Body, ErrorCode, Frame, FrameCodec};
use im_server::{start_node, Config, Role, RunningNode, RunningServer};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

pub type Raw = Framed<TcpStream, FrameCodec>;

/// Longest any single expected event may take before a test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// Which engines the server under test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The single-node default: SQLite file and in-process user status.
    Local,
    /// The cluster engines: a fresh MariaDB database and Redis (with a key
    /// prefix of its own), from `IM_TEST_MYSQL_URL` / `IM_TEST_REDIS_URL`.
    MysqlRedis,
    /// The cluster's processes (two transfers, two connectors, a REST API
    /// and an offline worker; here as tasks of the test process) on MariaDB,
    /// Redis and the Kafka-API broker at `IM_TEST_KAFKA_BROKERS` (started by
    /// `scripts/kafka.sh`), with a topic and consumer group of their own.
    /// Each new link goes to the next connector, as the load balancer does.
    Cluster,
}

/// The components of a cluster under test, with nginx (the repo's stream
/// config) balancing client links over the connectors.
pub struct Cluster {
    pub nodes: Vec<RunningNode>,
    pub http: std::net::SocketAddr,
    balancer: Balancer,
}

/// nginx in front of the connectors, from deploy/nginx-stream.conf.template;
/// killed by its child handle.
struct Balancer {
    child: tokio::process::Child,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Balancer {
    async fn start(links: &[std::net::SocketAddr], ws: &[std::net::SocketAddr]) -> Balancer {
        let dir = tempfile::tempdir().unwrap();
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap();
        let template =
            std::fs::read_to_string(repo.join("deploy/nginx-stream.conf.template")).unwrap();
        let servers = |addrs: &[std::net::SocketAddr]| {
            addrs
                .iter()
                .map(|a| format!("        server {a} max_fails=1 fail_timeout=10s;"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        // A port picked free may be taken again before nginx binds it
        // (tests run in parallel): then nginx exits and we pick again.
        for _ in 0..5 {
            let (port, ws_port) = (free_port(), free_port());
            let conf = template
                .replace("@LINK_SERVERS@", &servers(links))
                .replace("@WS_SERVERS@", &servers(ws))
                .replace("@MODULES@", "/usr/lib/nginx/modules")
                .replace("@RUN@", &dir.path().display().to_string())
                .replace("@LOGS@", &dir.path().display().to_string())
                .replace("@LINK_PORT@", &port.to_string())
                .replace("@WS_PORT@", &ws_port.to_string());
            let conf_path = dir.path().join("nginx.conf");
            std::fs::write(&conf_path, conf).unwrap();
            let mut child = tokio::process::Command::new("nginx")
                .arg("-c")
                .arg(&conf_path)
                .arg("-p")
                .arg(dir.path())
                // One process, so killing it leaves no orphaned worker.
                .args(["-g", "master_process off;"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("nginx is required (scripts/ensure-nginx.sh)");
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if TcpStream::connect(addr).await.is_ok() {
                    return Balancer {
                        child,
                        addr,
                        _dir: dir,
                    };
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "nginx did not start"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let log = std::fs::read_to_string(dir.path().join("nginx.log")).unwrap_or_default();
        panic!("nginx would not start:\n{log}");
    }
}

impl Cluster {
    pub async fn start(base: &Config) -> Cluster {
        let node = |role: Role| {
            let mut c = base.clone();
            c.role = role;
            c
        };
        let mut nodes = Vec::new();
        for _ in 0..2 {
            nodes.push(start_node(node(Role::Transfer)).await.unwrap());
        }
        let transfers: Vec<String> = nodes
            .iter()
            .filter_map(|n| n.transfer_addr)
            .map(|a| a.to_string())
            .collect();
        for id in ["c1", "c2"] {
            let mut c = node(Role::Connector);
            c.connector_id = id.into();
            c.transfers = transfers.clone();
            nodes.push(start_node(c).await.unwrap());
        }
        for role in [Role::RestApi, Role::OfflineWorker] {
            let mut c = node(role);
            c.transfers = transfers.clone();
            nodes.push(start_node(c).await.unwrap());
        }
        let links: Vec<_> = nodes.iter().filter_map(|n| n.link_addr).collect();
        let ws: Vec<_> = nodes.iter().filter_map(|n| n.ws_addr).collect();
        let http = nodes.iter().find_map(|n| n.http_addr).unwrap();
        let balancer = Balancer::start(&links, &ws).await;
        Cluster {
            nodes,
            http,
            balancer,
        }
    }

    /// The load balancer's client port: nginx hands each new link to the
    /// next connector.
    pub fn link_addr(&self) -> std::net::SocketAddr {
        self.balancer.addr
    }

    /// nginx first, then connectors, the transfers last.
    pub async fn shutdown(mut self) {
        let _ = self.balancer.child.kill().await;
        let mut nodes = self.nodes;
        nodes.reverse();
        for node in nodes {
            node.shutdown().await;
        }
    }
}

pub enum Running {
    Single(RunningServer),
    Cluster(Cluster),
}

impl Running {
    async fn start(config: &Config) -> Running {
        if crate::backend() == Backend::Cluster {
            Running::Cluster(Cluster::start(config).await)
        } else {
            Running::Single(im_server::start(config.clone()).await.unwrap())
        }
    }

    async fn shutdown(self) {
        match self {
            Running::Single(server) => server.shutdown().await,
            Running::Cluster(cluster) => cluster.shutdown().await,
        }
    }
}

pub struct Harness {
    pub server: Option<Running>,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    config: Config,
    database: Option<TestDatabase>,
}

/// A MariaDB database made for one test and dropped after it.
struct TestDatabase {
    server_url: String,
    name: String,
}

impl TestDatabase {
    async fn create() -> TestDatabase {
        let server_url = std::env::var("IM_TEST_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
        let name = format!("im_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = <sqlx::MySqlConnection as sqlx::Connection>::connect(&server_url)
            .await
            .unwrap_or_else(|e| {
                panic!("MariaDB at {server_url} is required (scripts/ensure-mariadb.sh): {e}")
            });
        sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE `{name}`").as_str())
            .await
            .unwrap();
        TestDatabase { server_url, name }
    }

    fn url(&self) -> String {
        format!("{}/{}", self.server_url.trim_end_matches('/'), self.name)
    }

    /// Drops the database from a thread of its own, so it also works from
    /// `Drop` inside the test's runtime.
    fn drop_now(&self) {
        let (url, name) = (self.server_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let drop = async {
                    let mut conn = <sqlx::MySqlConnection as sqlx::Connection>::connect(&url).await?;
                    // The server may still hold a transaction open (a test can
                    // end mid-flight); its locks would hold up the DROP.
                    let ids: Vec<i64> = sqlx::query_scalar(
                        "SELECT CAST(id AS SIGNED) FROM information_schema.processlist WHERE db = ?",
                    )
                    .bind(&name)
                    .fetch_all(&mut conn)
                    .await
                    .unwrap_or_default();
                    for id in ids {
                        let _ = sqlx::Executor::execute(&mut conn, format!("KILL {id}").as_str()).await;
                    }
                    sqlx::Executor::execute(&mut conn, format!("DROP DATABASE IF EXISTS `{name}`").as_str())
                        .await
                        .map(|_| ())
                };
                let _ = tokio::time::timeout(Duration::from_secs(10), drop).await;
            });
        })
        .join();
    }
}

#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: u64,
    pub name: String,
    pub token: String,
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut Config)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(
            dir.path().to_path_buf(),
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        );
        let mut database = None;
        if crate::backend() != Backend::Local {
            let db = TestDatabase::create().await;
            config.database_url = Some(db.url());
            config.redis_url = Some(
                std::env::var("IM_TEST_REDIS_URL")
                    .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            );
            config.redis_prefix = format!("imtest-{}", uuid::Uuid::new_v4().simple());
            database = Some(db);
        }
        if crate::backend() == Backend::Cluster {
            let run = uuid::Uuid::new_v4().simple().to_string();
            config.kafka_brokers = Some(
                std::env::var("IM_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:19092".into()),
            );
            config.kafka_topic = format!("im.test.{run}");
            config.kafka_group = format!("im-test-{run}");
            config.kafka_partitions = 4;
            config.ws_addr = "127.0.0.1:0".parse().unwrap();
            config.transfer_addr = "127.0.0.1:0".parse().unwrap();
        }
        tune(&mut config);
        let server = Running::start(&config).await;
        Harness {
            server: Some(server),
            dir,
            http: reqwest::Client::new(),
            config,
            database,
        }
    }

    /// Starts the server again on the same data (after `stop`).
    pub async fn restart(&mut self) {
        assert!(self.server.is_none(), "stop the server first");
        self.server = Some(Running::start(&self.config).await);
    }

    /// The single server (not for `Backend::Cluster`).
    pub fn server(&self) -> &RunningServer {
        match self.server.as_ref().unwrap() {
            Running::Single(server) => server,
            Running::Cluster(_) => panic!("a cluster has no single server"),
        }
    }

    /// Where the next client link connects.
    pub fn link_addr(&self) -> std::net::SocketAddr {
        match self.server.as_ref().unwrap() {
            Running::Single(server) => server.link_addr,
            Running::Cluster(cluster) => cluster.link_addr(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        let base = match self.server.as_ref().unwrap() {
            Running::Single(server) => server.http_url(),
            Running::Cluster(cluster) => format!("http://{}", cluster.http),
        };
        format!("{base}{path}")
    }

    /// Stops the first node of a cluster that runs `role`.
    pub async fn stop_node(&mut self, role: Role) {
        let Some(Running::Cluster(cluster)) = self.server.as_mut() else {
            panic!("stop_node needs Backend::Cluster");
        };
        let i = cluster.nodes.iter().position(|n| n.role == role).unwrap();
        cluster.nodes.remove(i).shutdown().await;
    }

    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }

    /// Registers and logs in `name` over REST.
    pub async fn user(&self, name: &str) -> TestUser {
        let password = format!("{name}-password");
        let body = json!({"name": name, "password": password});
        let res = self
            .http
            .post(self.url("/v1/accounts"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            201,
            "register {name}: {}",
            res.text().await.unwrap()
        );
        let res = self
            .http
            .post(self.url("/v1/sessions"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let v: Value = res.json().await.unwrap();
        TestUser {
            id: v["user"]["id"].as_u64().unwrap(),
            name: name.to_owned(),
            token: v["token"].as_str().unwrap().to_owned(),
        }
    }

    /// An authenticated REST call; returns (status, JSON body or Null).
    pub async fn call(
        &self,
        user: &TestUser,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&user.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Makes `a` and `b` friends through the REST API.
    pub async fn befriend(&self, a: &TestUser, b: &TestUser) {
        let (status, req) = self
            .call(
                a,
                reqwest::Method::POST,
                "/v1/friend-requests",
                Some(json!({"to": b.name, "note": "hi"})),
            )
            .await;
        assert_eq!(status, 201, "{req}");
        let id = req["id"].as_u64().unwrap();
        let (status, _) = self
            .call(
                b,
                reqwest::Method::POST,
                &format!("/v1/friend-requests/{id}/accept"),
                None,
            )
            .await;
        assert_eq!(status, 200);
    }

    /// Creates a group owned by `owner` that every one of `members` joins.
    pub async fn group(&self, owner: &TestUser, members: &[&TestUser]) -> u64 {
        let (status, g) = self
            .call(
                owner,
                reqwest::Method::POST,
                "/v1/groups",
                Some(json!({"name": "team"})),
            )
            .await;
        assert_eq!(status, 201);
        let id = g["id"].as_u64().unwrap();
        for m in members {
            let (status, _) = self
                .call(
                    m,
                    reqwest::Method::POST,
                    &format!("/v1/groups/{id}/join"),
                    None,
                )
                .await;
            assert_eq!(status, 204);
        }
        id
    }

    /// A raw framed TCP connection to the link port.
    pub async fn raw(&self) -> Raw {
        let stream = TcpStream::connect(self.link_addr()).await.unwrap();
        Framed::new(stream, FrameCodec::default())
    }

    /// A raw link logged in as `user` on `device`, with the catch-up read up
    /// to `SyncDone` (and acked). Returns the link and the frames before it.
    pub async fn raw_login(&self, user: &TestUser, device: &str) -> (Raw, Vec<Frame>) {
        let mut raw = self.raw().await;
        raw.send(login_frame(&user.token, device)).await.unwrap();
        let mut catch_up = Vec::new();
        loop {
            let frame = next(&mut raw).await;
            match &frame.body {
                Some(Body::Ack(_)) => {}
                Some(Body::SyncDone(_)) => {
                    raw.send(Frame::ack(frame.id)).await.unwrap();
                    return (raw, catch_up);
                }
                Some(Body::Error(e)) => panic!("login failed: {e:?}"),
                _ => catch_up.push(frame),
            }
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // Tests may end without stop(); the listeners must not outlive them.
        if let Some(server) = self.server.take() {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(server.shutdown());
            }
        }
        if let Some(db) = &self.database {
            db.drop_now();
        }
    }
}

pub fn login_frame(token: &str, device: &str) -> Frame {
    Frame::new(
        1,
        Body::Login(Login {
            token: token.to_owned(),
            device_id: device.to_owned(),
        }),
    )
}

pub fn text_to(id: u64, to_user: u64, text: &str) -> Frame {
    Frame::new(
        id,
        Body::Send(SendMessage {
            client_msg_id: uuid::Uuid::new_v4().to_string(),
            to_user,
            content_type: im_proto::v1::ContentType::Text as i32,
            text: text.to_owned(),
            ..Default::default()
        }),
    )
}

/// The next frame, failing the test if none comes in time or the link breaks.
pub async fn next(raw: &mut Raw) -> Frame {
    match tokio::time::timeout(WAIT, raw.next()).await {
        Ok(Some(Ok(frame))) => frame,
        other => panic!("expected a frame, got {other:?}"),
    }
}

/// The next frame that is not an Ack, acking it if it is sequenced.
pub async fn next_body(raw: &mut Raw) -> Frame {
    loop {
        let frame = next(raw).await;
        if matches!(frame.body, Some(Body::Ack(_))) {
            continue;
        }
        if frame.is_sequenced() {
            raw.send(Frame::ack(frame.id)).await.unwrap();
        }
        return frame;
    }
}

/// Reads until the fatal error that ends the link; returns its code, and
/// checks the link is then closed.
pub async fn fatal(raw: &mut Raw) -> ErrorCode {
    loop {
        let frame = next(raw).await;
        if let Some(Body::Error(e)) = frame.body {
            if e.fatal {
                assert_eq!(frame.id, 0, "fatal errors are unsequenced");
                let end = tokio::time::timeout(WAIT, raw.next())
                    .await
                    .expect("link not closed");
                assert!(
                    matches!(end, None | Some(Err(_))),
                    "frame after fatal error: {end:?}"
                );
                return ErrorCode::try_from(e.code).unwrap();
            }
        }
    }
}

/// Asserts the link is still served: a Ping gets its Pong.
pub async fn assert_alive(raw: &mut Raw) {
    raw.send(Frame::new(0, Body::Ping(im_proto::v1::Ping { nonce: 77 })))
        .await
        .unwrap();
    loop {
        let frame = next(raw).await;
        if let Some(Body::Pong(p)) = frame.body {
            assert_eq!(p.nonce, 77);
            return;
        }
        if frame.is_sequenced() {
            raw.send(Frame::ack(frame.id)).await.unwrap();
        }
    }
}

/// Client-library helpers.
pub mod client {
    use super::*;
    use im_client::{Event, Link, LinkOptions, RestClient};
    use tokio::sync::mpsc::Receiver;

    pub type Events = Receiver<Event>;

    pub fn rest(h: &Harness, user: &TestUser) -> RestClient {
        RestClient::new(h.url("").as_str())
            .unwrap()
            .with_token(&user.token)
    }

    pub async fn connect(h: &Harness, user: &TestUser, device: &str) -> (Link, Events) {
        Link::connect(h.link_addr(), &user.token, device, LinkOptions::default())
            .await
            .unwrap()
    }

    /// A fresh server with two users, alice and bob, who are friends.
    pub async fn alice_and_bob() -> (Harness, TestUser, TestUser) {
        let h = Harness::start().await;
        let alice = h.user("alice").await;
        let bob = h.user("bob").await;
        h.befriend(&alice, &bob).await;
        (h, alice, bob)
    }

    /// Connects `device` of `user` and waits until its catch-up is done.
    pub async fn online(h: &Harness, user: &TestUser, device: &str) -> (Link, Events) {
        let (link, mut events) = connect(h, user, device).await;
        catch_up(&mut events).await;
        (link, events)
    }

    /// Waits for the first event `pick` accepts, skipping others.
    pub async fn until<T>(events: &mut Events, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(event)) => {
                    if let Some(found) = pick(&event) {
                        return found;
                    }
                }
                other => panic!("event did not come: {other:?}"),
            }
        }
    }

    /// The next `n` chat messages, skipping other events.
    pub async fn messages(events: &mut Events, n: usize) -> Vec<im_client::ChatMessage> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            out.push(
                until(events, |e| match e {
                    Event::Message(m) => Some(m.clone()),
                    _ => None,
                })
                .await,
            );
        }
        out
    }

    /// Waits for SyncDone; returns (offline_count, synced_count) and the
    /// messages that came before it.
    pub async fn catch_up(events: &mut Events) -> ((u32, u32), Vec<im_client::ChatMessage>) {
        let mut before = Vec::new();
        let counts = until(events, |e| match e {
            Event::Message(m) => {
                before.push(m.clone());
                None
            }
            Event::SyncDone {
                offline_count,
                synced_count,
            } => Some((*offline_count, *synced_count)),
            _ => None,
        })
        .await;
        (counts, before)
    }

    /// Waits for a receipt of `kind` about `msg_id`.
    pub async fn receipt(
        events: &mut Events,
        kind: im_client::ReceiptKind,
        msg_id: u64,
    ) -> im_client::Receipt {
        until(events, |e| match e {
            Event::Receipt(r) if r.kind == kind as i32 && r.msg_id == msg_id => Some(r.clone()),
            _ => None,
        })
        .await
    }
}
