//! A fake server end of a link, speaking the framing by hand, and the
//! frames the tests send with it.

// Each test binary uses part of it.
#![allow(dead_code)]

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use im_client::im_proto::v1::{ChatMessage, LoginOk, Receipt, SendMessage};
use im_client::im_proto::Body;
use im_client::{AckConfig, Event, Frame, FrameCodec, Link, LinkOptions, RawConn, ReceiptKind};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::codec::Framed;

pub const WAIT: Duration = Duration::from_secs(5);

/// The server end of one link.
pub struct FakeServer {
    pub conn: RawConn,
}

impl FakeServer {
    /// The next frame from the client, heartbeats skipped.
    pub async fn recv(&mut self) -> Frame {
        loop {
            let frame = timeout(WAIT, self.conn.next())
                .await
                .expect("client said nothing")
                .expect("client closed the link")
                .expect("client sent a bad frame");
            if !matches!(frame.body, Some(Body::Ping(_))) {
                return frame;
            }
        }
    }

    pub async fn send(&mut self, frame: Frame) {
        self.conn.send(frame).await.expect("write to client");
    }

    pub async fn expect_ack(&mut self, id: u64) {
        assert_eq!(self.recv().await, Frame::ack(id));
    }

    /// Nothing but heartbeats for a while.
    pub async fn expect_silence(&mut self) {
        let quiet = timeout(Duration::from_millis(200), self.recv()).await;
        assert!(quiet.is_err(), "expected silence, got {quiet:?}");
    }

    /// The client closed its side, after at most these frames.
    pub async fn expect_eof(&mut self) -> Vec<Frame> {
        let mut last = Vec::new();
        loop {
            match timeout(WAIT, self.conn.next()).await.expect("no eof") {
                None | Some(Err(_)) => return last,
                Some(Ok(frame)) => last.push(frame),
            }
        }
    }
}

pub fn options() -> LinkOptions {
    LinkOptions {
        ack: AckConfig {
            capacity: 8,
            timeout: Duration::from_millis(150),
            max_backoff: Duration::from_millis(600),
            max_retries: 3,
        },
        ..LinkOptions::default()
    }
}

pub fn login_ok(heartbeat_interval_ms: u32) -> Frame {
    Frame::new(
        1,
        Body::LoginOk(LoginOk {
            user_id: 7,
            device_id: "dev".into(),
            heartbeat_interval_ms,
            max_frame_bytes: 64 * 1024,
            ..Default::default()
        }),
    )
}

/// A logged-in link and the fake server holding its other end.
pub async fn start_with(
    options: LinkOptions,
    heartbeat_ms: u32,
) -> (FakeServer, Link, mpsc::Receiver<Event>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = tokio::spawn(Link::connect(addr, "tok", "dev", options));
    let (sock, _) = listener.accept().await.unwrap();
    let mut server = FakeServer {
        conn: Framed::new(sock, FrameCodec::default()),
    };
    let login = server.recv().await;
    assert_eq!(login.id, 1);
    assert!(matches!(login.body, Some(Body::Login(l)) if l.token == "tok" && l.device_id == "dev"));
    server.send(Frame::ack(1)).await;
    server.send(login_ok(heartbeat_ms)).await;
    let (link, events) = client.await.unwrap().expect("login");
    server.expect_ack(1).await;
    assert_eq!(link.user_id(), 7);
    (server, link, events)
}

pub async fn start() -> (FakeServer, Link, mpsc::Receiver<Event>) {
    start_with(options(), 60_000).await
}

pub fn message(id: u64, msg_id: u64, seq: u64) -> Frame {
    Frame::new(
        id,
        Body::Message(ChatMessage {
            msg_id,
            conversation_id: "u7-9".into(),
            seq,
            from_user: 9,
            to_user: 7,
            text: format!("m{msg_id}"),
            ..Default::default()
        }),
    )
}

pub async fn next_event(events: &mut mpsc::Receiver<Event>) -> Event {
    timeout(WAIT, events.recv())
        .await
        .expect("no event")
        .expect("events ended")
}

pub fn sent_message(frame: &Frame) -> SendMessage {
    match &frame.body {
        Some(Body::Send(send)) => send.clone(),
        other => panic!("expected SendMessage, got {other:?}"),
    }
}

pub fn sent_receipt(id: u64, send: &SendMessage) -> Frame {
    Frame::new(
        id,
        Body::Receipt(Receipt {
            kind: ReceiptKind::Sent as i32,
            msg_id: 41,
            conversation_id: "u7-9".into(),
            seq: 1,
            client_msg_id: send.client_msg_id.clone(),
            ..Default::default()
        }),
    )
}

/// A tiny HTTP/1.1 server answering `"METHOD /path"` with canned JSON (404
/// otherwise), one request per connection. Returns its base URL.
pub async fn http_server(routes: Vec<(&'static str, u16, String)>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let routes = routes.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let line: Vec<&str> = head.split(' ').take(2).collect();
                let key = line.join(" ");
                let (status, body) = routes
                    .iter()
                    .find(|(route, _, _)| *route == key)
                    .map(|(_, status, body)| (*status, body.clone()))
                    .unwrap_or((404, r#"{"code":"NOT_FOUND","message":"no route"}"#.into()));
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(response.as_bytes()).await;
            });
        }
    });
    url
}

/// Accepts one link on `listener` and logs it in as user 7.
pub async fn accept_login(listener: &TcpListener) -> FakeServer {
    let (sock, _) = listener.accept().await.unwrap();
    let mut server = FakeServer {
        conn: Framed::new(sock, FrameCodec::default()),
    };
    let login = server.recv().await;
    assert!(matches!(login.body, Some(Body::Login(_))), "{login:?}");
    server.send(Frame::ack(1)).await;
    server.send(login_ok(60_000)).await;
    server.expect_ack(1).await;
    server
}
