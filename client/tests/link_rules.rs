//! The client's side of the link rules, driven against a fake server written
//! here with a `TcpListener` on 127.0.0.1:0 speaking the framing by hand.

use std::time::Duration;

use futures::StreamExt;
use im_client::im_proto::v1::{self, SyncDone};
use im_client::im_proto::Body;
use im_client::{ClientError, ErrorCode, Event, Frame, FrameCodec, Link, Target};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::time::timeout;
use tokio_util::codec::Framed;

mod fake_server;

use fake_server::*;

#[tokio::test]
async fn out_of_order_frames_are_delivered_in_order_with_one_ack() {
    let (mut server, _link, mut events) = start().await;
    server.send(message(3, 102, 2)).await;
    server
        .send(Frame::new(
            4,
            Body::SyncDone(SyncDone {
                offline_count: 2,
                synced_count: 0,
            }),
        ))
        .await;
    server.expect_silence().await;
    server.send(message(2, 101, 1)).await;
    server.expect_ack(4).await;
    for want in [101, 102] {
        match next_event(&mut events).await {
            Event::Message(m) => assert_eq!(m.msg_id, want),
            other => panic!("expected message {want}, got {other:?}"),
        }
    }
    assert!(matches!(
        next_event(&mut events).await,
        Event::SyncDone {
            offline_count: 2,
            synced_count: 0
        }
    ));
}

#[tokio::test]
async fn duplicates_are_acked_again_and_delivered_once() {
    let (mut server, _link, mut events) = start().await;
    server.send(message(2, 100, 1)).await;
    server.expect_ack(2).await;
    // The same frame again (a retransmission): acked again, not processed.
    server.send(message(2, 100, 1)).await;
    server.expect_ack(2).await;
    // The same message in a new frame (e.g. catch-up racing a live push).
    server.send(message(3, 100, 1)).await;
    server.expect_ack(3).await;
    server.send(message(4, 101, 2)).await;
    server.expect_ack(4).await;
    let ids: Vec<u64> = [next_event(&mut events).await, next_event(&mut events).await]
        .into_iter()
        .map(|e| match e {
            Event::Message(m) => m.msg_id,
            other => panic!("expected a message, got {other:?}"),
        })
        .collect();
    assert_eq!(ids, vec![100, 101]);
}

#[tokio::test]
async fn an_unacked_send_is_retransmitted_with_the_same_id_and_resolves_on_sent() {
    let (mut server, link, _events) = start().await;
    let sending = tokio::spawn(async move { link.send_text(Target::User(9), "hi").await });
    let first = server.recv().await;
    let send = sent_message(&first);
    assert_eq!(first.id, 2);
    assert_eq!((send.to_user, send.text.as_str()), (9, "hi"));
    assert!(uuid_like(&send.client_msg_id), "{}", send.client_msg_id);
    // No ack: the client sends the very same frame again after the timeout.
    assert_eq!(server.recv().await, first);
    server.send(Frame::ack(2)).await;
    server.send(sent_receipt(2, &send)).await;
    let receipt = sending.await.unwrap().expect("SENT");
    assert_eq!((receipt.msg_id, receipt.seq), (41, 1));
    assert_eq!(receipt.client_msg_id, send.client_msg_id);
    server.expect_ack(2).await;
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

#[tokio::test]
async fn a_request_error_fails_the_send_and_the_link_stays_up() {
    let (mut server, link, _events) = start().await;
    let sender = link.clone();
    let sending = tokio::spawn(async move { sender.send_text(Target::User(9), "hi").await });
    let frame = server.recv().await;
    let send = sent_message(&frame);
    server.send(Frame::ack(frame.id)).await;
    let error = v1::Error {
        code: ErrorCode::NotFriends as i32,
        message: "not your friend".into(),
        ref_id: frame.id,
        client_msg_id: send.client_msg_id.clone(),
        fatal: false,
    };
    server.send(Frame::new(2, Body::Error(error))).await;
    match sending.await.unwrap() {
        Err(ClientError::Api { code, status, .. }) => {
            assert_eq!((code.as_str(), status), ("NOT_FRIENDS", 403))
        }
        other => panic!("expected NOT_FRIENDS, got {other:?}"),
    }
    server.expect_ack(2).await;
    assert!(!link.is_closed());
}

#[tokio::test]
async fn a_full_window_stops_new_sends_until_acks_come() {
    let mut opts = options();
    opts.ack.capacity = 2;
    opts.ack.timeout = Duration::from_secs(30);
    let (mut server, link, _events) = start_with(opts, 60_000).await;
    for n in 0..3 {
        let link = link.clone();
        tokio::spawn(async move { link.send_text(Target::Group(5), format!("m{n}")).await });
    }
    let a = server.recv().await;
    let b = server.recv().await;
    assert_eq!((a.id, b.id), (2, 3));
    server.expect_silence().await;
    server.send(Frame::ack(3)).await;
    assert_eq!(server.recv().await.id, 4);
}

#[tokio::test]
async fn a_rejected_login_is_an_error_with_the_code() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = tokio::spawn(Link::connect(addr, "bad", "dev", options()));
    let (sock, _) = listener.accept().await.unwrap();
    let mut server = FakeServer {
        conn: Framed::new(sock, FrameCodec::default()),
    };
    server.recv().await;
    server
        .send(Frame::fatal(ErrorCode::Unauthenticated, "unknown token"))
        .await;
    match client.await.unwrap() {
        Err(ClientError::Rejected { code, message }) => {
            assert_eq!(
                (code.as_str(), message.as_str()),
                ("UNAUTHENTICATED", "unknown token")
            );
        }
        other => panic!("expected a rejection, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn a_bad_frame_from_the_server_ends_the_link_with_a_clear_event() {
    let (mut server, link, mut events) = start().await;
    server
        .conn
        .get_mut()
        .write_all(&[0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    match next_event(&mut events).await {
        Event::Closed { code, message } => {
            assert_eq!(code, Some(ErrorCode::MalformedFrame));
            assert!(message.contains("malformed"), "{message}");
        }
        other => panic!("expected Closed, got {other:?}"),
    }
    let last = server.expect_eof().await;
    assert!(matches!(
        last.last().and_then(|f| f.body.clone()),
        Some(Body::Error(e)) if e.fatal && e.code == ErrorCode::MalformedFrame as i32
    ));
    assert!(link.send_text(Target::User(9), "x").await.is_err());
}

#[tokio::test]
async fn the_client_pings_at_the_servers_heartbeat_interval() {
    let (mut server, _link, _events) = start_with(options(), 50).await;
    let ping = timeout(WAIT, server.conn.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(ping.body, Some(Body::Ping(_))), "{ping:?}");
    assert_eq!(ping.id, 0, "pings are unsequenced");
}

#[tokio::test]
async fn the_retry_limit_closes_the_link_and_fails_what_waits() {
    let mut opts = options();
    opts.ack.timeout = Duration::from_millis(50);
    opts.ack.max_retries = 1;
    let (mut server, link, mut events) = start_with(opts, 60_000).await;
    let sending = tokio::spawn(async move { link.send_text(Target::User(9), "lost").await });
    let first = server.recv().await;
    assert_eq!(server.recv().await, first);
    match next_event(&mut events).await {
        Event::Closed { code, .. } => assert_eq!(code, Some(ErrorCode::RetryLimit)),
        other => panic!("expected Closed, got {other:?}"),
    }
    assert!(matches!(
        sending.await.unwrap(),
        Err(ClientError::Closed(_))
    ));
    let last = server.expect_eof().await;
    assert!(matches!(
        last.last().and_then(|f| f.body.clone()),
        Some(Body::Error(e)) if e.code == ErrorCode::RetryLimit as i32
    ));
}

#[tokio::test]
async fn close_waits_for_acks_then_shuts_the_socket() {
    let mut opts = options();
    opts.ack.timeout = Duration::from_secs(30);
    let (mut server, link, mut events) = start_with(opts, 60_000).await;
    let marker = link.clone();
    let marking = tokio::spawn(async move { marker.mark_read("u7-9", 3).await });
    let frame = server.recv().await;
    assert!(matches!(&frame.body, Some(Body::MarkRead(m)) if m.seq == 3));
    let closer = link.clone();
    let closing = tokio::spawn(async move { closer.close().await });
    server.expect_silence().await;
    assert!(!closing.is_finished(), "close waits for the ack");
    server.send(Frame::ack(frame.id)).await;
    timeout(WAIT, closing).await.unwrap().unwrap();
    assert!(marking.await.unwrap().is_ok());
    assert!(server.expect_eof().await.is_empty());
    assert!(matches!(
        next_event(&mut events).await,
        Event::Closed { code: None, .. }
    ));
    assert!(link.is_closed());
}

#[tokio::test]
async fn dropping_every_handle_closes_the_link() {
    let (mut server, link, _events) = start().await;
    drop(link);
    assert!(server.expect_eof().await.is_empty());
}

#[tokio::test]
async fn the_server_going_away_is_the_last_event() {
    let (mut server, _link, mut events) = start().await;
    server.send(message(2, 100, 1)).await;
    server.expect_ack(2).await;
    drop(server);
    assert!(matches!(next_event(&mut events).await, Event::Message(_)));
    assert!(matches!(
        next_event(&mut events).await,
        Event::Closed { code: None, .. }
    ));
    assert!(timeout(WAIT, events.recv()).await.unwrap().is_none());
}

#[tokio::test]
async fn while_closing_new_frames_are_left_with_the_server() {
    let mut opts = options();
    opts.ack.timeout = Duration::from_secs(30);
    let (mut server, link, mut events) = start_with(opts, 60_000).await;
    let marker = link.clone();
    tokio::spawn(async move { marker.mark_read("u7-9", 1).await });
    let frame = server.recv().await;
    let closer = link.clone();
    let closing = tokio::spawn(async move { closer.close().await });
    server.expect_silence().await;
    // Sent during the close: neither acked nor delivered.
    server.send(message(2, 100, 1)).await;
    server.send(Frame::ack(frame.id)).await;
    timeout(WAIT, closing).await.unwrap().unwrap();
    assert!(
        server.expect_eof().await.is_empty(),
        "message 2 was not acked"
    );
    assert!(matches!(
        next_event(&mut events).await,
        Event::Closed { .. }
    ));
}

#[tokio::test]
async fn a_slow_application_stops_the_client_reading_and_acking() {
    let mut opts = options();
    opts.event_buffer = 2;
    let (mut server, _link, mut events) = start_with(opts, 60_000).await;
    for id in 2..=11 {
        server.send(message(id, 100 + id, id)).await;
    }
    let mut last_ack = 1;
    while let Ok(frame) = timeout(Duration::from_millis(300), server.recv()).await {
        last_ack = match frame.body {
            Some(Body::Ack(v1::Ack { id, .. })) => id,
            other => panic!("expected an ack, got {other:?}"),
        };
    }
    assert!(last_ack < 11, "acked {last_ack} with nobody reading events");
    for id in 2..=11 {
        match next_event(&mut events).await {
            Event::Message(m) => assert_eq!(m.msg_id, 100 + id),
            other => panic!("expected message {id}, got {other:?}"),
        }
    }
    loop {
        let frame = server.recv().await;
        if frame == Frame::ack(11) {
            break;
        }
    }
}

#[tokio::test]
async fn a_silent_server_is_given_up_after_three_heartbeats() {
    let (mut server, _link, mut events) = start_with(options(), 50).await;
    match next_event(&mut events).await {
        Event::Closed { code, .. } => assert_eq!(code, Some(ErrorCode::IdleTimeout)),
        other => panic!("expected Closed, got {other:?}"),
    }
    let last = server.expect_eof().await;
    assert!(matches!(
        last.last().and_then(|f| f.body.clone()),
        Some(Body::Error(e)) if e.code == ErrorCode::IdleTimeout as i32
    ));
}

#[tokio::test]
async fn dropping_the_events_receiver_closes_the_link() {
    let (mut server, link, events) = start().await;
    drop(events);
    server.send(message(2, 100, 1)).await;
    server.expect_ack(2).await;
    server.expect_eof().await;
    assert!(timeout(WAIT, async {
        while !link.is_closed() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .is_ok());
}
