//! Faults inside a cluster (in-process nodes, nginx in front): a transfer
//! going away mid-conversation.

mod common;

use common::client::*;
use common::*;
use im_client::{ReceiptKind, Target};
use im_server::Role;

fn backend() -> Backend {
    Backend::Cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_transfer_stops_its_callers_carry_on_through_the_other() {
    let (mut h, alice, bob) = alice_and_bob().await;
    let (a, mut a_events) = online(&h, &alice, "phone").await;
    let (b, mut b_events) = online(&h, &bob, "phone").await;
    a.send_text(Target::User(bob.id), "before").await.unwrap();
    assert_eq!(messages(&mut b_events, 1).await[0].text, "before");

    h.stop_node(Role::Transfer).await;

    for text in ["after 1", "after 2", "after 3"] {
        let sent = a.send_text(Target::User(bob.id), text).await.unwrap();
        receipt(&mut a_events, ReceiptKind::Delivered, sent.msg_id).await;
    }
    let got: Vec<(u64, String)> = messages(&mut b_events, 3)
        .await
        .into_iter()
        .map(|m| (m.seq, m.text))
        .collect();
    assert_eq!(
        got,
        vec![
            (2, "after 1".into()),
            (3, "after 2".into()),
            (4, "after 3".into())
        ]
    );
    let reply = b
        .send_text(Target::User(alice.id), "still here")
        .await
        .unwrap();
    assert_eq!(reply.seq, 5);
    assert_eq!(messages(&mut a_events, 1).await[0].text, "still here");
    a.close().await;
    b.close().await;
}
