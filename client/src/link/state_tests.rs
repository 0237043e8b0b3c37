//! `LinkState` driven by hand: frames in, frames and events out, no sockets.

use std::time::{Duration, Instant};

use im_proto::v1::{self, ChatMessage, LoginOk, Receipt, ReceiptKind, SendMessage, SyncDone};
use im_proto::{AckConfig, Body, ErrorCode, Frame};
use tokio::sync::oneshot;

use super::*;
use crate::link::{Event, LinkOptions};

fn options() -> LinkOptions {
    LinkOptions {
        ack: AckConfig {
            capacity: 4,
            timeout: Duration::from_millis(100),
            max_backoff: Duration::from_millis(400),
            max_retries: 2,
        },
        ..LinkOptions::default()
    }
}

fn login_ok() -> Frame {
    Frame::new(
        1,
        Body::LoginOk(LoginOk {
            user_id: 7,
            device_id: "d".into(),
            heartbeat_interval_ms: 15_000,
            max_frame_bytes: 1024,
            ..Default::default()
        }),
    )
}

fn message(id: u64, msg_id: u64, seq: u64) -> Frame {
    Frame::new(
        id,
        Body::Message(ChatMessage {
            msg_id,
            conversation_id: "u7-9".into(),
            seq,
            from_user: 9,
            text: format!("m{msg_id}"),
            ..Default::default()
        }),
    )
}

fn sync_done(id: u64) -> Frame {
    Frame::new(id, Body::SyncDone(SyncDone::default()))
}

fn error(id: u64, code: ErrorCode, ref_id: u64, client_msg_id: &str) -> Frame {
    Frame::new(
        id,
        Body::Error(v1::Error {
            code: code as i32,
            message: "no".into(),
            ref_id,
            client_msg_id: client_msg_id.into(),
            fatal: false,
        }),
    )
}

/// A state past LoginOk, with its outgoing frames (Login, Ack 1) taken.
fn logged_in() -> LinkState {
    let mut state = LinkState::new(&options());
    state.login("tok", "d", Instant::now());
    state.on_frame(Frame::ack(1));
    state.on_frame(login_ok());
    assert!(state.login_ok().is_some());
    state.take_out();
    state
}

fn acks(frames: &[Frame]) -> Vec<u64> {
    frames
        .iter()
        .filter_map(|f| match f.body {
            Some(Body::Ack(v1::Ack { id, .. })) => Some(id),
            _ => None,
        })
        .collect()
}

fn message_ids(state: &mut LinkState) -> Vec<u64> {
    std::iter::from_fn(|| state.pop_event())
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.msg_id),
            _ => None,
        })
        .collect()
}

#[test]
fn login_is_frame_one_and_login_ok_is_acked() {
    let mut state = LinkState::new(&options());
    state.login("tok", "phone", Instant::now());
    let out = state.take_out();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].id, 1);
    assert!(
        matches!(&out[0].body, Some(Body::Login(l)) if l.token == "tok" && l.device_id == "phone")
    );
    state.on_frame(login_ok());
    assert_eq!(acks(&state.take_out()), vec![1]);
    assert_eq!(state.login_ok().map(|ok| ok.user_id), Some(7));
    assert_eq!(state.pending_events(), 0, "LoginOk is not an event");
}

#[test]
fn a_fatal_error_at_login_is_a_rejection() {
    let mut state = LinkState::new(&options());
    state.login("bad", "d", Instant::now());
    state.on_frame(Frame::fatal(ErrorCode::Unauthenticated, "bad token"));
    let reason = state.closed().unwrap();
    assert_eq!(reason.code, Some(ErrorCode::Unauthenticated));
    assert!(reason.by_server);
}

#[test]
fn anything_but_login_ok_first_is_a_protocol_violation() {
    let mut state = LinkState::new(&options());
    state.login("tok", "d", Instant::now());
    state.on_frame(message(1, 100, 1));
    let reason = state.closed().unwrap();
    assert_eq!(reason.code, Some(ErrorCode::ProtocolViolation));
    assert!(reason.notify);
    assert!(
        acks(&state.take_out()).is_empty(),
        "nothing handled, nothing acked"
    );
}

#[test]
fn duplicates_are_acked_again_and_not_delivered() {
    let mut state = logged_in();
    state.on_frame(message(2, 100, 1));
    state.on_frame(message(2, 100, 1));
    state.on_frame(message(1, 100, 1));
    assert_eq!(acks(&state.take_out()), vec![2, 2, 2]);
    assert_eq!(message_ids(&mut state), vec![100]);
}

#[test]
fn the_same_message_in_a_new_frame_is_dropped_but_acked() {
    let mut state = logged_in();
    state.on_frame(message(2, 100, 1));
    state.on_frame(message(3, 100, 1));
    state.on_frame(sync_done(4));
    assert_eq!(acks(&state.take_out()), vec![2, 3, 4]);
    assert_eq!(
        state.pop_event().map(|e| matches!(e, Event::Message(_))),
        Some(true)
    );
    assert!(matches!(state.pop_event(), Some(Event::SyncDone { .. })));
}

#[test]
fn a_gap_is_held_then_released_in_order_with_one_ack() {
    let mut state = logged_in();
    state.on_frame(message(4, 103, 3));
    state.on_frame(message(3, 102, 2));
    assert!(acks(&state.take_out()).is_empty(), "no ack across a gap");
    assert_eq!(state.pending_events(), 0);
    state.on_frame(message(2, 101, 1));
    assert_eq!(acks(&state.take_out()), vec![4]);
    assert_eq!(message_ids(&mut state), vec![101, 102, 103]);
}

#[test]
fn frames_too_far_ahead_are_dropped_unacked() {
    let mut state = logged_in();
    state.on_frame(message(1 + 257, 100, 1));
    assert!(state.take_out().is_empty());
    assert_eq!(state.pending_events(), 0);
    assert!(state.closed().is_none());
}

#[test]
fn a_close_mid_batch_acks_only_what_was_handled() {
    let mut state = logged_in();
    state.on_frame(message(4, 104, 3));
    let mut fatal = error(3, ErrorCode::ShuttingDown, 0, "");
    if let Some(Body::Error(e)) = &mut fatal.body {
        e.fatal = true;
    }
    state.on_frame(fatal);
    state.on_frame(message(2, 102, 1));
    assert_eq!(acks(&state.take_out()), vec![2]);
    assert_eq!(state.closed().unwrap().code, Some(ErrorCode::ShuttingDown));
}

#[test]
fn the_sent_receipt_answers_the_send() {
    let mut state = logged_in();
    let (reply, mut answer) = oneshot::channel();
    let msg = SendMessage {
        client_msg_id: "c1".into(),
        to_user: 9,
        text: "hi".into(),
        ..Default::default()
    };
    state.send(msg, reply, Instant::now());
    let out = state.take_out();
    assert_eq!(out[0].id, 2);
    state.on_frame(Frame::ack(2));
    assert!(answer.try_recv().is_err(), "an ack is not SENT");
    let receipt = Receipt {
        kind: ReceiptKind::Sent as i32,
        msg_id: 41,
        client_msg_id: "c1".into(),
        ..Default::default()
    };
    state.on_frame(Frame::new(2, Body::Receipt(receipt.clone())));
    assert_eq!(answer.try_recv().unwrap().unwrap(), receipt);
    assert!(matches!(state.pop_event(), Some(Event::Receipt(r)) if r.msg_id == 41));
}

#[test]
fn request_errors_answer_their_send_by_id_or_frame() {
    let mut state = logged_in();
    let (reply_a, mut a) = oneshot::channel();
    let (reply_b, mut b) = oneshot::channel();
    let msg = |id: &str| SendMessage {
        client_msg_id: id.into(),
        to_user: 9,
        ..Default::default()
    };
    state.send(msg("a"), reply_a, Instant::now());
    state.send(msg("b"), reply_b, Instant::now());
    state.on_frame(error(2, ErrorCode::NotFriends, 2, "a"));
    state.on_frame(error(3, ErrorCode::BadRequest, 3, ""));
    state.on_frame(error(4, ErrorCode::Internal, 99, ""));
    assert_eq!(a.try_recv().unwrap().unwrap_err().code(), "NOT_FRIENDS");
    assert_eq!(b.try_recv().unwrap().unwrap_err().code(), "BAD_REQUEST");
    match state.pop_event() {
        Some(Event::Error(e)) => assert_eq!(e.ref_id, 99),
        other => panic!("expected the unclaimed error as an event, got {other:?}"),
    }
}

#[test]
fn mark_read_resolves_on_ack_or_on_its_error() {
    let mut state = logged_in();
    let (ok_reply, mut ok) = oneshot::channel();
    let (bad_reply, mut bad) = oneshot::channel();
    state.mark_read("u7-9".into(), 3, ok_reply, Instant::now());
    state.mark_read("g1".into(), 1, bad_reply, Instant::now());
    state.on_frame(Frame::ack(2));
    assert!(ok.try_recv().unwrap().is_ok());
    // The server answers a bad MarkRead with an error before acking it.
    state.on_frame(error(2, ErrorCode::Forbidden, 3, ""));
    state.on_frame(Frame::ack(3));
    assert_eq!(bad.try_recv().unwrap().unwrap_err().code(), "FORBIDDEN");
    assert_eq!(state.pending_events(), 0);
}

#[test]
fn an_ack_that_overtakes_the_error_it_follows_does_not_mark_the_read_done() {
    let mut state = logged_in();
    let (reply, mut answer) = oneshot::channel();
    state.mark_read("g1".into(), 1, reply, Instant::now());
    // The server answered frame 2 with its error (its frame 2), then acked
    // it; the error was lost on the way and the ack came first.
    state.on_frame(Frame::ack_through(2, 2));
    assert!(answer.try_recv().is_err(), "not done before frame 2");
    state.on_frame(error(2, ErrorCode::Internal, 2, ""));
    assert_eq!(answer.try_recv().unwrap().unwrap_err().code(), "INTERNAL");

    // Acked with nothing answering it: done once frame 3 is in.
    let (reply, mut answer) = oneshot::channel();
    state.mark_read("g1".into(), 1, reply, Instant::now());
    state.on_frame(Frame::ack_through(3, 3));
    assert!(answer.try_recv().is_err(), "not done before frame 3");
    state.on_frame(Frame::new(3, Body::SyncDone(SyncDone::default())));
    assert!(answer.try_recv().unwrap().is_ok());
}

#[test]
fn unacked_frames_are_resent_then_the_link_gives_up() {
    let mut state = logged_in();
    let t0 = Instant::now();
    let (reply, mut answer) = oneshot::channel();
    state.send(SendMessage::default(), reply, t0);
    let first = state.take_out().remove(0);
    state.on_timeout(t0 + Duration::from_millis(50));
    assert!(state.take_out().is_empty());
    // At the timeout the same frame (same id, same body) goes out again.
    state.on_timeout(t0 + Duration::from_millis(100));
    let again = state.take_out();
    assert!(again.contains(&first));
    state.on_timeout(t0 + Duration::from_millis(300));
    state.on_timeout(t0 + Duration::from_millis(700));
    let reason = state.closed().unwrap().clone();
    assert_eq!(reason.code, Some(ErrorCode::RetryLimit));
    assert!(reason.notify);
    state.shutdown();
    assert_eq!(
        answer.try_recv().unwrap().unwrap_err().code(),
        "LINK_CLOSED"
    );
}

#[test]
fn a_frame_over_the_servers_limit_is_refused_locally() {
    let mut state = logged_in();
    let (reply, mut answer) = oneshot::channel();
    let msg = SendMessage {
        text: "x".repeat(2000),
        ..Default::default()
    };
    state.send(msg, reply, Instant::now());
    assert!(state.take_out().is_empty());
    assert_eq!(
        answer.try_recv().unwrap().unwrap_err().code(),
        "INVALID_INPUT"
    );
    assert!(state.window_empty(), "no id was used");
}

#[test]
fn a_server_ping_is_answered() {
    let mut state = logged_in();
    state.on_frame(Frame::new(0, Body::Ping(v1::Ping { nonce: 5 })));
    assert_eq!(
        state.take_out(),
        vec![Frame::new(0, Body::Pong(v1::Pong { nonce: 5 }))]
    );
}
