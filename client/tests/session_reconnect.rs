//! `Session` against the real server behind a proxy that cuts every
//! connection again and again: every send gets exactly one SENT, the server
//! stores each message once, and the recipient's application sees each
//! once, in seq order, across its own reconnects.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use im_client::{
    Event, Link, LinkOptions, RestClient, Session, SessionEvent, SessionOptions, Target,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long the proxy holds what a client sends.
const UPSTREAM_DELAY: Duration = Duration::from_millis(25);
use tokio::sync::mpsc::Receiver;
use tokio_util::sync::CancellationToken;

/// Forwards connections to `upstream`, holding what clients send for a
/// while (so acks are still on their way when a cut comes and the server
/// sends those frames again on the next connection); `cut()` closes every
/// connection open now.
struct CuttingProxy {
    addr: SocketAddr,
    current: Arc<Mutex<CancellationToken>>,
}

impl CuttingProxy {
    async fn start(upstream: SocketAddr) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let current = Arc::new(Mutex::new(CancellationToken::new()));
        let cuts = current.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let cut = cuts.lock().unwrap().clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut client_read, mut client_write) = client.split();
                    let (mut server_read, mut server_write) = server.split();
                    let upstream = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = client_read.read(&mut buf).await?;
                            if n == 0 {
                                return Ok::<_, std::io::Error>(());
                            }
                            tokio::time::sleep(UPSTREAM_DELAY).await;
                            server_write.write_all(&buf[..n]).await?;
                        }
                    };
                    let downstream = tokio::io::copy(&mut server_read, &mut client_write);
                    tokio::select! {
                        _ = cut.cancelled() => {}
                        _ = upstream => {}
                        _ = downstream => {}
                    }
                });
            }
        });
        CuttingProxy { addr, current }
    }

    fn cut(&self) {
        let mut current = self.current.lock().unwrap();
        current.cancel();
        *current = CancellationToken::new();
    }
}

async fn user(http: &str, name: &str) -> (RestClient, u64) {
    let rest = RestClient::new(http).unwrap();
    rest.register(name, "password-1").await.unwrap();
    let session = rest.login(name, "password-1").await.unwrap();
    (rest.with_token(&session.token), session.user.id)
}

fn quick() -> SessionOptions {
    SessionOptions {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        ..SessionOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_and_messages_survive_repeated_cuts_exactly_once_in_order() {
    const N: usize = 60;
    let dir = tempfile::tempdir().unwrap();
    let config = im_server::Config::new(
        dir.path().to_path_buf(),
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    );
    let server = im_server::start(config).await.unwrap();
    let http = server.http_url();
    let proxy = CuttingProxy::start(server.link_addr).await;
    let (alice, _) = user(&http, "alice").await;
    let (bob, bob_id) = user(&http, "bob").await;
    let request = alice.send_friend_request("bob", "hi").await.unwrap();
    bob.accept_friend_request(request.id).await.unwrap();

    let addr = proxy.addr.to_string();
    let (a, mut a_events) = Session::connect(&addr, alice.token().unwrap(), "phone", quick())
        .await
        .unwrap();
    let (b, mut b_events) = Session::connect(&addr, bob.token().unwrap(), "phone", quick())
        .await
        .unwrap();
    tokio::spawn(async move { while a_events.recv().await.is_some() {} });

    let sender = tokio::spawn(async move {
        let mut receipts = Vec::new();
        for i in 0..N {
            let sent = a
                .send_text(Target::User(bob_id), format!("m{i:02}"))
                .await
                .unwrap();
            receipts.push(sent);
        }
        a.close().await;
        receipts
    });
    let mut cuts = 0;
    let mut got = Vec::new();
    let mut reconnects = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut next_cut = tokio::time::Instant::now() + Duration::from_millis(40);
    while got.len() < N {
        tokio::select! {
            _ = tokio::time::sleep_until(next_cut), if cuts < 12 => {
                proxy.cut();
                cuts += 1;
                next_cut += Duration::from_millis(250);
            }
            event = b_events.recv() => match event {
                Some(SessionEvent::Link(Event::Message(m))) => got.push((m.seq, m.text)),
                Some(SessionEvent::Reconnected) => reconnects += 1,
                Some(SessionEvent::Link(Event::Closed { message, .. })) => panic!("session ended: {message}"),
                Some(_) => {}
                None => panic!("session gone"),
            },
            _ = tokio::time::sleep_until(deadline) => panic!("only {} of {N} arrived", got.len()),
        }
    }
    let receipts = sender.await.unwrap();
    assert!(
        cuts >= 3 && reconnects >= 1,
        "cuts {cuts}, reconnects {reconnects}"
    );
    // One SENT per send, seqs 1..N in the order the sends were made.
    let seqs: Vec<u64> = receipts.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=N as u64).collect::<Vec<_>>());
    let expected: Vec<(u64, String)> = (0..N).map(|i| (i as u64 + 1, format!("m{i:02}"))).collect();
    assert_eq!(got, expected, "bob sees each message once, in order");
    // Stored once each.
    let conversation = &receipts[0].conversation_id;
    let history = bob.messages(conversation, None, Some(100)).await.unwrap();
    assert_eq!(history.messages.len(), N);
    b.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_plain_link_cut_once_loses_its_waiting_send() {
    // What the session adds: a bare link fails the send when cut.
    let dir = tempfile::tempdir().unwrap();
    let config = im_server::Config::new(
        dir.path().to_path_buf(),
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    );
    let server = im_server::start(config).await.unwrap();
    let proxy = CuttingProxy::start(server.link_addr).await;
    let (alice, _) = user(&server.http_url(), "alice").await;
    let (link, _events): (Link, Receiver<Event>) = Link::connect(
        proxy.addr,
        alice.token().unwrap(),
        "phone",
        LinkOptions::default(),
    )
    .await
    .unwrap();
    proxy.cut();
    let sent = link.send_text(Target::User(99), "lost").await;
    assert!(sent.is_err());
    server.shutdown().await;
}
