//! Chat end to end, on the single-node backends (SQLite, in-process user status).

mod common;

fn backend() -> common::Backend {
    common::Backend::Local
}

#[path = "behaviour/chat.rs"]
mod chat;

/// The server's acks of a client's frames, timed on the single node, where
/// a message is durable long before the hold ends.
mod acks {
    use crate::common::*;
    use futures::SinkExt;
    use im_proto::v1::MarkRead;
    use im_proto::{Body, Frame};

    fn is_ack(frame: &Frame, id: u64) -> bool {
        matches!(frame.body, Some(Body::Ack(ref a)) if a.id == id)
    }

    /// A server holding acks `hold_ms`, and alice's raw link after she sent
    /// her friend bob a message as frame 2.
    async fn alice_sends_bob_a_message(hold_ms: u64) -> (Harness, Raw) {
        let h = Harness::start_with(|c| c.ack_hold_ms = hold_ms).await;
        let alice = h.user("alice").await;
        let bob = h.user("bob").await;
        h.befriend(&alice, &bob).await;
        let (mut raw, _) = h.raw_login(&alice, "phone").await;
        raw.send(text_to(2, bob.id, "hi")).await.unwrap();
        (h, raw)
    }

    /// A Send's ack waits for its SENT receipt and follows it; a frame
    /// nothing answers is acked alone once the hold ends.
    #[tokio::test]
    async fn a_sends_ack_rides_behind_its_sent_receipt() {
        let (_h, mut raw) = alice_sends_bob_a_message(1_000).await;
        let first = next(&mut raw).await;
        let Some(Body::Receipt(sent)) = &first.body else {
            panic!("the SENT receipt first, got {first:?}");
        };
        assert_eq!(sent.kind, im_proto::v1::ReceiptKind::Sent as i32);
        let second = next(&mut raw).await;
        assert!(is_ack(&second, 2), "then the ack: {second:?}");
        raw.send(Frame::ack(first.id)).await.unwrap();

        let read = Body::MarkRead(MarkRead {
            conversation_id: sent.conversation_id.clone(),
            seq: sent.seq,
        });
        let asked = std::time::Instant::now();
        raw.send(Frame::new(3, read)).await.unwrap();
        let ack = next(&mut raw).await;
        assert!(is_ack(&ack, 3), "{ack:?}");
        assert!(asked.elapsed() >= std::time::Duration::from_millis(900));
    }

    /// With no hold a Send is acked before it is durable, as before.
    #[tokio::test]
    async fn with_no_hold_the_ack_comes_first() {
        let (_h, mut raw) = alice_sends_bob_a_message(0).await;
        let first = next(&mut raw).await;
        assert!(is_ack(&first, 2), "{first:?}");
    }
}
