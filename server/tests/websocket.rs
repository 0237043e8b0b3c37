//! WebSocket links: the same frames as binary messages, talking with a TCP
//! client through the same server.

mod common;

fn backend() -> common::Backend {
    common::Backend::Local
}

use common::client::*;
use common::*;
use futures::{SinkExt, StreamExt};
use im_client::Target;
use im_proto::{Body, ErrorCode, Frame};
use prost::Message as _;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn ws(h: &Harness) -> Ws {
    let url = format!("ws://{}/", h.server().ws_addr);
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

async fn send(ws: &mut Ws, frame: Frame) {
    ws.send(Message::Binary(frame.encode_to_vec().into()))
        .await
        .unwrap();
}

/// The next frame (acking sequenced ones), skipping acks.
async fn next_frame(ws: &mut Ws) -> Frame {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("no frame in time");
        match message {
            Some(Ok(Message::Binary(bytes))) => {
                let frame = Frame::decode(bytes).unwrap();
                if matches!(frame.body, Some(Body::Ack(_))) {
                    continue;
                }
                if frame.is_sequenced() {
                    send(ws, Frame::ack(frame.id)).await;
                }
                return frame;
            }
            Some(Ok(_)) => continue,
            other => panic!("link ended: {other:?}"),
        }
    }
}

async fn fatal_code(ws: &mut Ws) -> ErrorCode {
    loop {
        if let Some(Body::Error(e)) = next_frame(ws).await.body {
            if e.fatal {
                return ErrorCode::try_from(e.code).unwrap();
            }
        }
    }
}

#[tokio::test]
async fn a_websocket_client_chats_with_a_tcp_client() {
    let (h, alice, bob) = alice_and_bob().await;
    let (b, mut b_events) = online(&h, &bob, "phone").await;

    let mut a = ws(&h).await;
    send(&mut a, login_frame(&alice.token, "browser")).await;
    assert!(matches!(
        next_frame(&mut a).await.body,
        Some(Body::LoginOk(_))
    ));
    assert!(matches!(
        next_frame(&mut a).await.body,
        Some(Body::SyncDone(_))
    ));

    send(&mut a, text_to(2, bob.id, "from the browser")).await;
    let sent = match next_frame(&mut a).await.body {
        Some(Body::Receipt(r)) => r,
        other => panic!("expected SENT, got {other:?}"),
    };
    assert_eq!(sent.kind, im_client::ReceiptKind::Sent as i32);
    let got = messages(&mut b_events, 1).await.remove(0);
    assert_eq!(
        (got.text.as_str(), got.msg_id),
        ("from the browser", sent.msg_id)
    );

    b.send_text(Target::User(alice.id), "hello browser")
        .await
        .unwrap();
    loop {
        if let Some(Body::Message(m)) = next_frame(&mut a).await.body {
            assert_eq!(m.text, "hello browser");
            break;
        }
    }
}

#[tokio::test]
async fn a_websocket_message_over_the_limit_or_in_text_is_refused() {
    let h = Harness::start_with(|c| c.max_frame_bytes = 1024).await;
    let alice = h.user("alice").await;

    let mut a = ws(&h).await;
    send(&mut a, login_frame(&alice.token, "browser")).await;
    next_frame(&mut a).await;
    a.send(Message::Binary(vec![0u8; 4096].into()))
        .await
        .unwrap();
    assert_eq!(fatal_code(&mut a).await, ErrorCode::FrameTooLarge);

    let mut b = ws(&h).await;
    b.send(Message::Text("hello?".into())).await.unwrap();
    assert_eq!(fatal_code(&mut b).await, ErrorCode::MalformedFrame);
}
