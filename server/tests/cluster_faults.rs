//! Faults inside a cluster (in-process nodes, nginx in front): a transfer
//! going away mid-conversation. Clients use `Session`, which resends what
//! the cluster answers with "resend later" while it fails over.

mod common;

use std::time::Duration;

use common::*;
use im_client::{Event, ReceiptKind, Session, SessionEvent, SessionOptions, Target};
use im_server::Role;
use tokio::sync::mpsc::Receiver;

fn backend() -> Backend {
    Backend::Cluster
}

async fn session(h: &Harness, user: &TestUser) -> (Session, Receiver<SessionEvent>) {
    let addr = h.link_addr().to_string();
    let (session, mut events) =
        Session::connect(addr, &user.token, "phone", SessionOptions::default())
            .await
            .unwrap();
    wait_for(&mut events, |e| matches!(e, Event::SyncDone { .. })).await;
    (session, events)
}

/// The first link event `pick` accepts.
async fn wait_for(events: &mut Receiver<SessionEvent>, pick: impl Fn(&Event) -> bool) -> Event {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(SessionEvent::Link(e))) if pick(&e) => return e,
            Ok(Some(_)) => {}
            other => panic!("event did not come: {other:?}"),
        }
    }
}

async fn next_text(events: &mut Receiver<SessionEvent>) -> (u64, String) {
    match wait_for(events, |e| matches!(e, Event::Message(_))).await {
        Event::Message(m) => (m.seq, m.text),
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_transfer_stops_its_callers_carry_on_through_the_other() {
    let mut h = Harness::start().await;
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    h.befriend(&alice, &bob).await;
    let (a, mut a_events) = session(&h, &alice).await;
    let (b, mut b_events) = session(&h, &bob).await;
    a.send_text(Target::User(bob.id), "before").await.unwrap();
    assert_eq!(next_text(&mut b_events).await, (1, "before".into()));

    h.stop_node(Role::Transfer).await;

    for (i, text) in ["after 1", "after 2", "after 3"].into_iter().enumerate() {
        let sent = a.send_text(Target::User(bob.id), text).await.unwrap();
        assert_eq!(sent.seq, i as u64 + 2);
        let id = sent.msg_id;
        wait_for(&mut a_events, |e| {
            matches!(e, Event::Receipt(r) if r.kind == ReceiptKind::Delivered as i32 && r.msg_id == id)
        })
        .await;
    }
    for (seq, text) in [(2, "after 1"), (3, "after 2"), (4, "after 3")] {
        assert_eq!(next_text(&mut b_events).await, (seq, text.into()));
    }
    let reply = b
        .send_text(Target::User(alice.id), "still here")
        .await
        .unwrap();
    assert_eq!(reply.seq, 5);
    assert_eq!(next_text(&mut a_events).await, (5, "still here".into()));
    a.close().await;
    b.close().await;
}
