//! Internal links between processes: ordered, exactly-once delivery over the
//! shared state machines, and callers failing over between transfers.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use im_proto::internal::envelope::Body;
use im_proto::internal::{call, Envelope, Hello, Presence, Reply};
use im_proto::v1::Ping;
use im_proto::ErrorCode;
use im_transfer::cluster::{peer_conn, run_peer, PeerConfig, TransferClient};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn quick() -> PeerConfig {
    let mut config = PeerConfig::default();
    config.ack.timeout = Duration::from_millis(100);
    config.heartbeat = Duration::from_millis(200);
    config.idle_timeout = Duration::from_secs(2);
    config
}

fn ping(n: u64) -> Body {
    Body::Ping(Ping { nonce: n })
}

#[tokio::test]
async fn a_link_delivers_every_body_once_in_order_both_ways() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let (a_out, a_out_rx) = mpsc::channel(16);
    let (a_in_tx, mut a_in) = mpsc::channel(16);
    let (b_out, b_out_rx) = mpsc::channel(16);
    let (b_in_tx, mut b_in) = mpsc::channel(16);
    let a = tokio::spawn(run_peer(
        peer_conn(TcpStream::connect(addr).await.unwrap()),
        quick(),
        a_out_rx,
        a_in_tx,
        stop.clone(),
    ));
    let (b_sock, _) = listener.accept().await.unwrap();
    let b = tokio::spawn(run_peer(
        peer_conn(b_sock),
        quick(),
        b_out_rx,
        b_in_tx,
        stop.clone(),
    ));
    // More than the channels hold: the window and channels push back.
    let n = 2_000u64;
    let send_a = tokio::spawn(async move {
        for i in 1..=n {
            a_out.send(ping(i)).await.unwrap();
        }
        a_out
    });
    let send_b = tokio::spawn(async move {
        for i in 1..=n {
            b_out.send(ping(i)).await.unwrap();
        }
        b_out
    });
    for i in 1..=n {
        assert!(matches!(b_in.recv().await, Some(Body::Ping(Ping { nonce })) if nonce == i));
        assert!(matches!(a_in.recv().await, Some(Body::Ping(Ping { nonce })) if nonce == i));
    }
    let _keep = (send_a.await.unwrap(), send_b.await.unwrap());
    stop.cancel();
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_frame_the_peer_never_acks_is_sent_again_then_the_link_gives_up() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (out, out_rx) = mpsc::channel(4);
    let (in_tx, _in) = mpsc::channel(4);
    let link = tokio::spawn(run_peer(
        peer_conn(TcpStream::connect(addr).await.unwrap()),
        quick(),
        out_rx,
        in_tx,
        CancellationToken::new(),
    ));
    // The far side reads frames but never acks them.
    let (sock, _) = listener.accept().await.unwrap();
    let mut far = peer_conn(sock);
    out.send(ping(7)).await.unwrap();
    let mut copies = 0;
    while let Some(Ok(frame)) = far.next().await {
        if frame.id == 1 {
            copies += 1;
        }
        // Keep the link from idling out: the far side is alive, just deaf.
        let _ = far
            .send(Envelope {
                id: 0,
                body: Some(ping(0)),
            })
            .await;
    }
    assert!(copies >= 2, "retransmitted: {copies} copies");
    let ended = link.await.unwrap();
    assert!(
        matches!(ended, Err(im_transfer::cluster::PeerError::RetryLimit(_))),
        "{ended:?}"
    );
}

/// Runs the accepting side of an internal link on `sock`: what to send on
/// it, and what arrives.
fn serve_link(sock: TcpStream) -> (mpsc::Sender<Body>, mpsc::Receiver<Body>) {
    let (out, out_rx) = mpsc::channel(64);
    let (in_tx, incoming) = mpsc::channel(64);
    tokio::spawn(run_peer(
        peer_conn(sock),
        quick(),
        out_rx,
        in_tx,
        CancellationToken::new(),
    ));
    (out, incoming)
}

/// A stand-in transfer that answers every call, optionally with an error,
/// and reports the Hello it got.
async fn fake_transfer(fail: Option<ErrorCode>) -> (String, mpsc::Receiver<Hello>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (hellos, hello_rx) = mpsc::channel(8);
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let hellos = hellos.clone();
            tokio::spawn(async move {
                let (out, mut incoming) = serve_link(sock);
                while let Some(body) = incoming.recv().await {
                    match body {
                        Body::Hello(h) => {
                            let _ = hellos.send(h).await;
                        }
                        Body::Call(c) => {
                            let error = fail.map(|code| im_proto::v1::Error {
                                code: code as i32,
                                message: "refused".into(),
                                ..Default::default()
                            });
                            let _ = out
                                .send(Body::Reply(Reply {
                                    call_id: c.call_id,
                                    error,
                                }))
                                .await;
                        }
                        _ => {}
                    }
                }
            });
        }
    });
    (addr, hello_rx)
}

fn presence() -> call::Op {
    call::Op::Presence(Presence {
        user: 1,
        online: true,
    })
}

#[tokio::test]
async fn calls_fail_over_to_a_live_transfer_and_carry_errors_back() {
    // A port nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let (live, mut hellos) = fake_transfer(None).await;
    let hello = Hello {
        role: "connector".into(),
        connector_id: "c9".into(),
    };
    let stop = CancellationToken::new();
    let client = TransferClient::start(vec![dead, live], hello, quick(), None, stop.clone());
    assert!(
        !client.wait_linked(Duration::from_millis(500)).await,
        "one transfer is down"
    );
    assert_eq!(client.linked(), 1);
    let got = hellos.recv().await.unwrap();
    assert_eq!(
        (got.role.as_str(), got.connector_id.as_str()),
        ("connector", "c9")
    );
    // Route 0 prefers the dead transfer; the call goes to the live one.
    for route in 0..4 {
        client.call(route, presence()).await.unwrap();
    }

    let (refusing, _) = fake_transfer(Some(ErrorCode::NotFriends)).await;
    let hello = Hello::default();
    let other = TransferClient::start(vec![refusing], hello, quick(), None, stop.clone());
    assert!(other.wait_linked(Duration::from_secs(5)).await);
    let error = other.call(0, presence()).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::NotFriends);
    stop.cancel();
}

#[tokio::test]
async fn with_no_transfer_reachable_a_call_fails_at_once_with_a_retryable_code() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let stop = CancellationToken::new();
    let client = TransferClient::start(vec![dead], Hello::default(), quick(), None, stop.clone());
    let error = tokio::time::timeout(Duration::from_secs(1), client.call(5, presence()))
        .await
        .expect("fails at once")
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::ShuttingDown);
    stop.cancel();
}

/// A stand-in transfer that answers nothing until `n` calls have arrived,
/// then answers them all, and reports the users they named, in arrival
/// order.
async fn holding_transfer(n: usize) -> (String, mpsc::Receiver<Vec<u64>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (seen_tx, seen) = mpsc::channel(1);
    tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        let (out, mut incoming) = serve_link(sock);
        let mut held = Vec::new();
        while let Some(body) = incoming.recv().await {
            if let Body::Call(c) = body {
                held.push(c);
                if held.len() == n {
                    break;
                }
            }
        }
        let users = held
            .iter()
            .map(|c| match &c.op {
                Some(call::Op::Presence(p)) => p.user,
                other => panic!("unexpected call {other:?}"),
            })
            .collect();
        let _ = seen_tx.send(users).await;
        for c in held {
            let reply = Reply {
                call_id: c.call_id,
                error: None,
            };
            let _ = out.send(Body::Reply(reply)).await;
        }
        // Keep the link up until the test ends.
        while incoming.recv().await.is_some() {}
    });
    (addr, seen)
}

/// What lets a connector link take a device's next send without waiting
/// for the transfer's answer to the last: calls queued one after another
/// reach the transfer in that order, and each answer is awaited apart.
#[tokio::test]
async fn queued_calls_arrive_in_order_before_any_is_answered() {
    const CALLS: u64 = 10;
    let (addr, mut seen) = holding_transfer(CALLS as usize).await;
    let stop = CancellationToken::new();
    let client = TransferClient::start(vec![addr], Hello::default(), quick(), None, stop.clone());
    assert!(client.wait_linked(Duration::from_secs(5)).await);
    let mut answers = Vec::new();
    for user in 1..=CALLS {
        let op = call::Op::Presence(Presence { user, online: true });
        let queued = tokio::time::timeout(Duration::from_secs(5), client.queue_call(0, op));
        answers.push(queued.await.expect("queued without an answer").unwrap());
    }
    let order = tokio::time::timeout(Duration::from_secs(5), seen.recv())
        .await
        .expect("every call reached the transfer")
        .unwrap();
    assert_eq!(order, (1..=CALLS).collect::<Vec<_>>());
    for answer in answers {
        tokio::time::timeout(Duration::from_secs(5), answer)
            .await
            .expect("answered")
            .unwrap();
    }
    stop.cancel();
}
