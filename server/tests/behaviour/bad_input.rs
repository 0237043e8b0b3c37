//! Bad input on the client link: each gets its clear error, and the server
//! keeps serving everyone else.

use crate::common::*;
use bytes::{BufMut, BytesMut};
use futures::SinkExt;
use im_proto::v1::{ContentType, SendMessage};
use im_proto::{Body, ErrorCode, Frame, FrameCodec};
use tokio::io::AsyncWriteExt;
use tokio_util::codec::Encoder;

/// A bystander whose link must survive every other test's abuse.
async fn bystander(h: &Harness) -> Raw {
    let u = h.user("bystander").await;
    h.raw_login(&u, "phone").await.0
}

#[tokio::test]
async fn a_frame_over_the_limit_is_refused_and_the_link_closed() {
    let h = Harness::start().await;
    let mut other = bystander(&h).await;
    let alice = h.user("alice").await;
    let (mut raw, _) = h.raw_login(&alice, "phone").await;
    let stream = raw.get_mut();
    stream
        .write_all(&(1_000_000u32).to_be_bytes())
        .await
        .unwrap();
    assert_eq!(fatal(&mut raw).await, ErrorCode::FrameTooLarge);
    assert_alive(&mut other).await;
}

#[tokio::test]
async fn garbage_bytes_get_a_malformed_frame_error() {
    let h = Harness::start().await;
    let mut other = bystander(&h).await;
    // Before login...
    let mut raw = h.raw().await;
    raw.get_mut()
        .write_all(&[0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    assert_eq!(fatal(&mut raw).await, ErrorCode::MalformedFrame);
    // ...and after.
    let alice = h.user("alice").await;
    let (mut raw, _) = h.raw_login(&alice, "phone").await;
    raw.get_mut()
        .write_all(&[0, 0, 0, 3, 0x0a, 0xff, 0xff])
        .await
        .unwrap();
    assert_eq!(fatal(&mut raw).await, ErrorCode::MalformedFrame);
    assert_alive(&mut other).await;
}

#[tokio::test]
async fn an_unknown_message_type_is_acked_and_answered_with_an_error() {
    let h = Harness::start().await;
    let alice = h.user("alice").await;
    let (mut raw, _) = h.raw_login(&alice, "phone").await;
    // Frame id 2 with only field 99 set: a body this server does not know.
    let payload = [0x08, 0x02, 0x98, 0x06, 0x01];
    let mut buf = BytesMut::new();
    buf.put_u32(payload.len() as u32);
    buf.put_slice(&payload);
    raw.get_mut().write_all(&buf).await.unwrap();
    // The error comes first (so a client can match it before the ack), then
    // the ack: the frame is not resent.
    let frame = next(&mut raw).await;
    let Some(Body::Error(e)) = frame.body else {
        panic!("expected an error, got {frame:?}")
    };
    assert_eq!(e.code, ErrorCode::UnknownMessageType as i32);
    assert_eq!(e.ref_id, 2);
    assert!(!e.fatal);
    let frame = next(&mut raw).await;
    let acked = matches!(frame.body, Some(Body::Ack(a)) if a.id == 2);
    assert!(acked, "the unknown frame is acked so it is not resent");
    assert_alive(&mut raw).await;
}

#[tokio::test]
async fn a_bad_token_is_refused() {
    let h = Harness::start().await;
    let mut raw = h.raw().await;
    raw.send(login_frame("not-a-token", "phone")).await.unwrap();
    assert_eq!(fatal(&mut raw).await, ErrorCode::Unauthenticated);
}

#[tokio::test]
async fn a_first_frame_that_is_not_login_is_a_protocol_violation() {
    let h = Harness::start().await;
    let mut raw = h.raw().await;
    raw.send(text_to(1, 2, "hi")).await.unwrap();
    assert_eq!(fatal(&mut raw).await, ErrorCode::ProtocolViolation);
}

#[tokio::test]
async fn logout_revokes_the_token_and_closes_its_link() {
    let h = Harness::start().await;
    let alice = h.user("alice").await;
    let (mut raw, _) = h.raw_login(&alice, "phone").await;
    let (status, _) = h
        .call(
            &alice,
            reqwest::Method::DELETE,
            "/v1/sessions/current",
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(fatal(&mut raw).await, ErrorCode::TokenRevoked);
    let mut again = h.raw().await;
    again
        .send(login_frame(&alice.token, "phone"))
        .await
        .unwrap();
    assert_eq!(fatal(&mut again).await, ErrorCode::Unauthenticated);
    let (status, _) = h.call(&alice, reqwest::Method::GET, "/v1/me", None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn messages_to_a_stranger_or_a_foreign_group_are_refused() {
    let h = Harness::start().await;
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    let carol = h.user("carol").await;
    let group = h.group(&carol, &[]).await;
    let (mut raw, _) = h.raw_login(&alice, "phone").await;

    let to_stranger = text_to(2, bob.id, "hello?");
    let Some(Body::Send(sent)) = to_stranger.body.clone() else {
        unreachable!()
    };
    raw.send(to_stranger).await.unwrap();
    let err = expect_error(&mut raw).await;
    assert_eq!(err.code, ErrorCode::NotFriends as i32);
    assert_eq!(err.client_msg_id, sent.client_msg_id);

    let to_group = Frame::new(
        3,
        Body::Send(SendMessage {
            client_msg_id: "g-1".into(),
            to_group: group,
            content_type: ContentType::Text as i32,
            text: "let me in".into(),
            ..Default::default()
        }),
    );
    raw.send(to_group).await.unwrap();
    let err = expect_error(&mut raw).await;
    assert_eq!(err.code, ErrorCode::NotGroupMember as i32);
    assert_eq!(err.ref_id, 3);

    // Nothing was stored for bob.
    let (_, convs) = h
        .call(&bob, reqwest::Method::GET, "/v1/conversations", None)
        .await;
    assert_eq!(convs.as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn invalid_sends_get_bad_request() {
    let h = Harness::start().await;
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    h.befriend(&alice, &bob).await;
    let (mut raw, _) = h.raw_login(&alice, "phone").await;
    let cases = [
        SendMessage {
            client_msg_id: String::new(),
            to_user: bob.id,
            content_type: 1,
            text: "x".into(),
            ..Default::default()
        },
        SendMessage {
            client_msg_id: "a".into(),
            to_user: bob.id,
            to_group: 5,
            content_type: 1,
            text: "x".into(),
            ..Default::default()
        },
        SendMessage {
            client_msg_id: "b".into(),
            to_user: bob.id,
            content_type: 1,
            ..Default::default()
        },
        SendMessage {
            client_msg_id: "c".into(),
            to_user: bob.id,
            content_type: ContentType::Image as i32,
            ..Default::default()
        },
        SendMessage {
            client_msg_id: "d".into(),
            to_user: bob.id,
            content_type: 42,
            text: "x".into(),
            ..Default::default()
        },
    ];
    for (i, send) in cases.into_iter().enumerate() {
        raw.send(Frame::new(i as u64 + 2, Body::Send(send)))
            .await
            .unwrap();
        let err = expect_error(&mut raw).await;
        assert_eq!(err.code, ErrorCode::BadRequest as i32, "case {i}: {err:?}");
    }
    assert_alive(&mut raw).await;
}

async fn expect_error(raw: &mut Raw) -> im_proto::v1::Error {
    loop {
        let frame = next_body(raw).await;
        match frame.body {
            Some(Body::Error(e)) => return e,
            Some(Body::Receipt(r)) => panic!("expected an error, got receipt {r:?}"),
            _ => {}
        }
    }
}

/// Collects SENT receipts (acking everything) until `n` have come.
async fn sent_receipts(raw: &mut Raw, n: usize) -> Vec<im_proto::v1::Receipt> {
    let mut out = Vec::new();
    while out.len() < n {
        let frame = next_body(raw).await;
        match frame.body {
            Some(Body::Receipt(r)) if r.kind == 1 => out.push(r),
            Some(Body::Error(e)) => panic!("unexpected error {e:?}"),
            _ => {}
        }
    }
    out
}

#[tokio::test]
async fn out_of_order_and_duplicate_frame_ids_are_ordered_and_deduplicated() {
    let h = Harness::start().await;
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    h.befriend(&alice, &bob).await;
    let (mut bob_link, _) = h.raw_login(&bob, "phone").await;
    let (mut raw, _) = h.raw_login(&alice, "phone").await;

    let first = text_to(2, bob.id, "first");
    let second = text_to(3, bob.id, "second");
    // 3 arrives before 2: held, not acked, not processed.
    raw.send(second.clone()).await.unwrap();
    raw.send(first.clone()).await.unwrap();
    // Then both again: duplicates, acked again, not processed.
    raw.send(first).await.unwrap();
    raw.send(second).await.unwrap();

    let receipts = sent_receipts(&mut raw, 2).await;
    let texts_seqs: Vec<u64> = receipts.iter().map(|r| r.seq).collect();
    assert_eq!(texts_seqs, vec![1, 2], "first is stored before second");

    let mut got = Vec::new();
    while got.len() < 2 {
        if let Some(Body::Message(m)) = next_body(&mut bob_link).await.body {
            got.push(m.text);
        }
    }
    assert_eq!(got, vec!["first", "second"]);
    // No third copy: the next thing bob sees is his own ping's pong.
    assert_alive(&mut bob_link).await;
    let (_, history) = h
        .call(
            &bob,
            reqwest::Method::GET,
            &format!("/v1/conversations/{}/messages", receipts[0].conversation_id),
            None,
        )
        .await;
    assert_eq!(history["messages"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_frame_split_byte_by_byte_and_frames_merged_in_one_write_are_read() {
    let h = Harness::start().await;
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    h.befriend(&alice, &bob).await;
    let mut raw = h.raw().await;
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::new();
    codec
        .encode(login_frame(&alice.token, "phone"), &mut buf)
        .unwrap();
    for byte in buf.iter() {
        raw.get_mut().write_all(&[*byte]).await.unwrap();
        raw.get_mut().flush().await.unwrap();
    }
    loop {
        if let Some(Body::SyncDone(_)) = next_body(&mut raw).await.body {
            break;
        }
    }
    let mut merged = BytesMut::new();
    for id in 2..=4 {
        codec
            .encode(text_to(id, bob.id, &format!("m{id}")), &mut merged)
            .unwrap();
    }
    raw.get_mut().write_all(&merged).await.unwrap();
    let receipts = sent_receipts(&mut raw, 3).await;
    assert_eq!(
        receipts.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
}

#[tokio::test]
async fn more_frames_in_one_write_than_a_turn_takes_are_each_answered() {
    let h = Harness::start().await;
    let alice = h.user("alice").await;
    let (mut raw, _) = h.raw_login(&alice, "phone").await;
    // More than a link takes in one turn (a window's worth, 256) and read
    // at once: every one of them is acted on, none is taken and dropped at
    // the end of a turn.
    const PINGS: u64 = 600;
    let mut codec = FrameCodec::default();
    let mut merged = BytesMut::new();
    for nonce in 1..=PINGS {
        let ping = Frame::new(0, Body::Ping(im_proto::v1::Ping { nonce }));
        codec.encode(ping, &mut merged).unwrap();
    }
    raw.get_mut().write_all(&merged).await.unwrap();
    let mut nonces = Vec::new();
    while nonces.len() < PINGS as usize {
        if let Some(Body::Pong(pong)) = next(&mut raw).await.body {
            nonces.push(pong.nonce);
        }
    }
    assert_eq!(nonces, (1..=PINGS).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_silent_new_link_times_out_and_an_idle_link_is_closed() {
    let h = Harness::start_with(|c| {
        c.login_timeout_secs = 1;
        c.idle_timeout_secs = 1;
    })
    .await;
    let mut raw = h.raw().await;
    assert_eq!(fatal(&mut raw).await, ErrorCode::LoginTimeout);
    let alice = h.user("alice").await;
    let (mut raw, _) = h.raw_login(&alice, "phone").await;
    assert_eq!(fatal(&mut raw).await, ErrorCode::IdleTimeout);
}

#[tokio::test]
async fn a_device_that_never_acks_is_cut_off_and_gets_the_message_at_next_login() {
    let h = Harness::start_with(|c| {
        c.ack_timeout_ms = 50;
        c.max_retries = 2;
    })
    .await;
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    h.befriend(&alice, &bob).await;
    let (mut bob_link, _) = h.raw_login(&bob, "phone").await;
    let (mut alice_link, _) = h.raw_login(&alice, "phone").await;
    // Bob acks what comes before the message (alice's presence), so its
    // retries cannot end his link while the message is on its way.
    let presence = next(&mut bob_link).await;
    assert!(
        matches!(presence.body, Some(Body::Presence(_))),
        "{presence:?}"
    );
    bob_link.send(Frame::ack(presence.id)).await.unwrap();
    alice_link
        .send(text_to(2, bob.id, "are you there"))
        .await
        .unwrap();
    sent_receipts(&mut alice_link, 1).await;

    // Bob never acks the message: it comes three times (one send, two
    // retransmissions), then the link is given up.
    let mut copies = 0;
    loop {
        let frame = next(&mut bob_link).await;
        match frame.body {
            Some(Body::Message(m)) => {
                assert_eq!(m.text, "are you there");
                copies += 1;
            }
            Some(Body::Error(e)) if e.fatal => {
                assert_eq!(e.code, ErrorCode::RetryLimit as i32);
                break;
            }
            _ => {}
        }
    }
    assert_eq!(copies, 3);
    let (_, catch_up) = h.raw_login(&bob, "phone").await;
    let texts: Vec<String> = catch_up
        .into_iter()
        .filter_map(|f| match f.body {
            Some(Body::Message(m)) => Some(m.text),
            _ => None,
        })
        .collect();
    assert_eq!(texts, vec!["are you there"]);
}
