use im_store::{OfflineItem, OfflineKey, ReceiptKind, Target};

use crate::{ack, Fixture};

backend_tests!(
    unread_rows_come_in_row_order_across_conversations,
    a_receipt_row_carries_the_receipt_to_the_sender,
    a_row_is_claimed_once,
    concurrent_claims_have_one_winner,
    claims_by_key_report_what_they_took,
    released_rows_are_unread_again,
);

async fn unread_rows_come_in_row_order_across_conversations(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    let carol = db.new_user("carol").await;
    db.befriend(alice, bob).await;
    db.befriend(carol, bob).await;

    let m1 = db
        .send(alice, Target::User(bob), "m1", &[bob])
        .await
        .message;
    let m2 = db
        .send(carol, Target::User(bob), "m2", &[bob])
        .await
        .message;
    let m3 = db
        .send(alice, Target::User(bob), "m3", &[bob])
        .await
        .message;

    let rows = db.offline_unread(bob, 10).await.unwrap();
    let ids: Vec<u64> = rows.iter().map(|r| r.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let items: Vec<OfflineItem> = rows.into_iter().map(|r| r.item).collect();
    assert_eq!(
        items,
        [
            OfflineItem::Message(m1.clone()),
            OfflineItem::Message(m2),
            OfflineItem::Message(m3)
        ]
    );

    let first = db.offline_unread(bob, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].item, OfflineItem::Message(m1));
}

async fn a_receipt_row_carries_the_receipt_to_the_sender(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    db.befriend(alice, bob).await;
    let sent = db
        .send(alice, Target::User(bob), "m1", &[bob])
        .await
        .message;
    let receipts = db
        .mark_delivered(bob, "phone", &[ack(&sent)])
        .await
        .unwrap();

    let rows = db.offline_unread(alice, 10).await.unwrap();
    assert_eq!(rows.len(), 1);
    let OfflineItem::Receipt(receipt) = &rows[0].item else {
        panic!("expected a receipt row, got {:?}", rows[0].item);
    };
    assert_eq!(receipt, &receipts[0]);
    assert_eq!(receipt.kind, ReceiptKind::Delivered);
    assert_eq!((receipt.to_user, receipt.by_user), (alice, bob));
    assert_eq!((receipt.msg_id, receipt.seq), (sent.msg_id, sent.seq));
    assert_eq!(receipt.conversation_id, sent.conversation_id);
    assert_eq!(receipt.client_msg_id, "m1");
    assert!(receipt.at_ms > 0);
    assert_eq!(
        rows[0].key(),
        OfflineKey::Receipt {
            msg_id: sent.msg_id,
            kind: ReceiptKind::Delivered,
            by_user: bob
        }
    );
}

async fn a_row_is_claimed_once(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    db.befriend(alice, bob).await;
    db.send(alice, Target::User(bob), "m1", &[bob]).await;
    let row = db.offline_unread(bob, 10).await.unwrap().remove(0);

    assert!(db.claim_offline(row.id).await.unwrap());
    assert!(!db.claim_offline(row.id).await.unwrap());
    assert!(db.offline_unread(bob, 10).await.unwrap().is_empty());
    assert!(!db.claim_offline(row.id + 100).await.unwrap());
}

async fn concurrent_claims_have_one_winner(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    db.befriend(alice, bob).await;
    for i in 0..20 {
        db.send(alice, Target::User(bob), &format!("m{i}"), &[bob])
            .await;
    }

    for row in db.offline_unread(bob, 100).await.unwrap() {
        let (first, second) = tokio::join!(db.claim_offline(row.id), db.claim_offline(row.id));
        let wins = [first.unwrap(), second.unwrap()];
        assert_eq!(wins.iter().filter(|&&won| won).count(), 1, "row {}", row.id);
    }
}

async fn claims_by_key_report_what_they_took(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    db.befriend(alice, bob).await;
    let m1 = db
        .send(alice, Target::User(bob), "m1", &[bob])
        .await
        .message;
    let m2 = db
        .send(alice, Target::User(bob), "m2", &[bob])
        .await
        .message;
    let reply = db
        .send(bob, Target::User(alice), "r1", &[alice])
        .await
        .message;
    db.mark_read(bob, &m1.conversation_id, m2.seq)
        .await
        .unwrap();

    db.claim_offline_keys(bob, &[OfflineKey::Message(m1.msg_id)])
        .await
        .unwrap();
    let keys = [
        OfflineKey::Message(m1.msg_id),
        OfflineKey::Message(m2.msg_id),
        // Alice's row, not Bob's: Bob cannot claim it.
        OfflineKey::Message(reply.msg_id),
        OfflineKey::Message(9999),
    ];
    let claimed = db.claim_offline_keys(bob, &keys).await.unwrap();
    assert_eq!(claimed, [OfflineKey::Message(m2.msg_id)]);
    assert!(db.offline_unread(bob, 10).await.unwrap().is_empty());

    let read_receipt = OfflineKey::Receipt {
        msg_id: m1.msg_id,
        kind: ReceiptKind::Read,
        by_user: bob,
    };
    let claimed = db.claim_offline_keys(alice, &[read_receipt]).await.unwrap();
    assert_eq!(claimed, [read_receipt]);
    assert!(db
        .claim_offline_keys(alice, &[read_receipt])
        .await
        .unwrap()
        .is_empty());
    let left: Vec<OfflineKey> = db
        .offline_unread(alice, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.key())
        .collect();
    assert_eq!(
        left,
        [
            OfflineKey::Message(reply.msg_id),
            OfflineKey::Receipt {
                msg_id: m2.msg_id,
                kind: ReceiptKind::Read,
                by_user: bob
            }
        ]
    );
}

async fn released_rows_are_unread_again(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    db.befriend(alice, bob).await;
    db.send(alice, Target::User(bob), "m1", &[bob]).await;
    db.send(alice, Target::User(bob), "m2", &[bob]).await;
    let rows = db.offline_unread(bob, 10).await.unwrap();
    let ids: Vec<u64> = rows.iter().map(|r| r.id).collect();
    for &id in &ids {
        assert!(db.claim_offline(id).await.unwrap());
    }

    db.release_offline(&ids).await.unwrap();
    assert_eq!(db.offline_unread(bob, 10).await.unwrap(), rows);
    assert!(db.claim_offline(ids[0]).await.unwrap());
    db.release_offline(&[]).await.unwrap();
}
