use im_store::{
    direct_conversation, group_conversation, OfflineItem, OfflineKey, ReceiptKind, Role,
    StoreError, Target,
};

use crate::{ack, Fixture};

backend_tests!(
    the_first_device_to_ack_makes_the_delivered_receipt,
    each_recipient_in_a_group_delivers_once,
    cursors_only_move_forward,
    own_messages_only_move_the_cursor,
    reading_makes_one_read_receipt_per_message_from_others,
    the_read_cursor_never_goes_back_nor_past_the_last_message,
    only_members_mark_read_and_never_before_joining,
    a_burst_larger_than_one_statement_is_claimed_and_receipted_once_in_order,
);

async fn the_first_device_to_ack_makes_the_delivered_receipt(db: &Fixture) {
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
    assert_eq!(receipts.len(), 1);
    let receipt = &receipts[0];
    assert_eq!(receipt.kind, ReceiptKind::Delivered);
    assert_eq!(
        (receipt.to_user, receipt.by_user, receipt.msg_id),
        (alice, bob, sent.msg_id)
    );

    // The ack claimed Bob's offline row for the message.
    assert!(db.offline_unread(bob, 10).await.unwrap().is_empty());
    // A second device, or the same one again, makes no second receipt.
    assert!(db
        .mark_delivered(bob, "laptop", &[ack(&sent)])
        .await
        .unwrap()
        .is_empty());
    assert!(db
        .mark_delivered(bob, "phone", &[ack(&sent)])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(db.offline_unread(alice, 10).await.unwrap().len(), 1);

    // Both devices' cursors moved.
    for device in ["phone", "laptop"] {
        let cursors = db.device_cursors(bob, device).await.unwrap();
        assert_eq!((cursors[0].cursor, cursors[0].last_seq), (1, 1), "{device}");
    }
}

async fn each_recipient_in_a_group_delivers_once(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    let carol = db.new_user("carol").await;
    let group = db.create_group(alice, "g").await.unwrap();
    for member in [bob, carol] {
        db.add_member(group.id, member, Role::Member).await.unwrap();
    }
    let sent = db
        .send(alice, Target::Group(group.id), "m1", &[bob, carol])
        .await
        .message;

    let (once, twice) = ([ack(&sent)], [ack(&sent), ack(&sent)]);
    let (by_bob, by_carol) = tokio::join!(
        db.mark_delivered(bob, "phone", &once),
        db.mark_delivered(carol, "phone", &twice),
    );
    assert_eq!(by_bob.unwrap().len(), 1);
    assert_eq!(by_carol.unwrap().len(), 1);
    let by: Vec<u64> = db
        .offline_unread(alice, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|row| match row.item {
            OfflineItem::Receipt(receipt) => receipt.by_user,
            other => panic!("expected a receipt, got {other:?}"),
        })
        .collect();
    assert_eq!(by.len(), 2);
    assert!(by.contains(&bob) && by.contains(&carol), "{by:?}");
}

async fn cursors_only_move_forward(db: &Fixture) {
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

    db.mark_delivered(bob, "phone", &[ack(&m2)]).await.unwrap();
    let receipts = db.mark_delivered(bob, "phone", &[ack(&m1)]).await.unwrap();
    // m1 still gets its receipt, but the cursor stays at m2.
    assert_eq!(receipts.len(), 1);
    assert_eq!(db.device_cursors(bob, "phone").await.unwrap()[0].cursor, 2);
}

async fn own_messages_only_move_the_cursor(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    db.befriend(alice, bob).await;
    // Alice's laptop receives what her phone sent.
    let sent = db
        .send(alice, Target::User(bob), "m1", &[bob])
        .await
        .message;

    let receipts = db
        .mark_delivered(alice, "laptop", &[ack(&sent)])
        .await
        .unwrap();
    assert!(receipts.is_empty());
    assert_eq!(
        db.device_cursors(alice, "laptop").await.unwrap()[0].cursor,
        1
    );
    assert!(db.offline_unread(alice, 10).await.unwrap().is_empty());
    assert_eq!(db.offline_unread(bob, 10).await.unwrap().len(), 1);
}

async fn reading_makes_one_read_receipt_per_message_from_others(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    db.befriend(alice, bob).await;
    let conversation = direct_conversation(alice, bob);
    let m1 = db
        .send(alice, Target::User(bob), "m1", &[bob])
        .await
        .message;
    db.send(bob, Target::User(alice), "own", &[alice]).await;
    let m3 = db
        .send(alice, Target::User(bob), "m3", &[bob])
        .await
        .message;

    let receipts = db.mark_read(bob, &conversation, 1).await.unwrap();
    assert_eq!(receipts.len(), 1);
    assert_eq!(
        (receipts[0].kind, receipts[0].msg_id),
        (ReceiptKind::Read, m1.msg_id)
    );
    assert_eq!((receipts[0].to_user, receipts[0].by_user), (alice, bob));

    // Bob's own message at seq 2 gets no receipt; m1 is not read twice.
    let receipts = db.mark_read(bob, &conversation, 3).await.unwrap();
    let ids: Vec<u64> = receipts.iter().map(|r| r.msg_id).collect();
    assert_eq!(ids, [m3.msg_id]);
    assert!(db
        .mark_read(bob, &conversation, 3)
        .await
        .unwrap()
        .is_empty());

    // Each READ receipt waits for Alice in her offline rows.
    let keys: Vec<OfflineKey> = db
        .offline_unread(alice, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.key())
        .filter(|k| matches!(k, OfflineKey::Receipt { .. }))
        .collect();
    let read = |msg_id| OfflineKey::Receipt {
        msg_id,
        kind: ReceiptKind::Read,
        by_user: bob,
    };
    assert_eq!(keys, [read(m1.msg_id), read(m3.msg_id)]);
}

async fn the_read_cursor_never_goes_back_nor_past_the_last_message(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    db.befriend(alice, bob).await;
    let conversation = direct_conversation(alice, bob);
    for id in ["m1", "m2", "m3"] {
        db.send(alice, Target::User(bob), id, &[bob]).await;
    }
    let read_seq = || {
        let db = &db;
        async move { db.conversations(bob).await.unwrap()[0].read_seq }
    };

    assert_eq!(db.mark_read(bob, &conversation, 2).await.unwrap().len(), 2);
    assert_eq!(read_seq().await, 2);
    assert!(db
        .mark_read(bob, &conversation, 1)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(read_seq().await, 2);

    // Reading "up to 100" reads what exists; a later message is still unread
    // and still gets its receipt.
    assert_eq!(
        db.mark_read(bob, &conversation, 100).await.unwrap().len(),
        1
    );
    assert_eq!(read_seq().await, 3);
    db.send(alice, Target::User(bob), "m4", &[bob]).await;
    assert_eq!(db.conversations(bob).await.unwrap()[0].unread, 1);
    assert_eq!(db.mark_read(bob, &conversation, 4).await.unwrap().len(), 1);
}

async fn only_members_mark_read_and_never_before_joining(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    let eve = db.new_user("eve").await;
    let group = db.create_group(alice, "g").await.unwrap();
    let conversation = group_conversation(group.id);
    db.send(alice, Target::Group(group.id), "before", &[]).await;
    db.add_member(group.id, bob, Role::Member).await.unwrap();
    let after = db
        .send(alice, Target::Group(group.id), "after", &[bob])
        .await
        .message;

    let receipts = db.mark_read(bob, &conversation, 2).await.unwrap();
    assert_eq!(
        receipts.iter().map(|r| r.msg_id).collect::<Vec<_>>(),
        [after.msg_id]
    );
    let error = db.mark_read(eve, &conversation, 2).await.unwrap_err();
    assert!(matches!(error, StoreError::Forbidden), "{error:?}");
}

/// A connector reports a burst of acks at once, and a backend may split a
/// large one over several statements: every message still gets exactly one
/// receipt, in the acks' order, and every offline row is claimed once.
async fn a_burst_larger_than_one_statement_is_claimed_and_receipted_once_in_order(db: &Fixture) {
    const BURST: usize = 2_500;
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    db.befriend(alice, bob).await;
    let sent = db.send_many(alice, bob, BURST).await;

    // Half the rows are claimed by a pull first; the acks claim the rest.
    let pulled: Vec<OfflineKey> = sent
        .iter()
        .step_by(2)
        .map(|m| OfflineKey::Message(m.msg_id))
        .collect();
    let claimed = db.claim_offline_keys(bob, &pulled).await.unwrap();
    assert_eq!(claimed, pulled);
    assert!(db
        .claim_offline_keys(bob, &pulled)
        .await
        .unwrap()
        .is_empty());

    // Acked newest first: the receipts follow the acks' order.
    let acks: Vec<_> = sent.iter().rev().map(ack).collect();
    let receipts = db.mark_delivered(bob, "phone", &acks).await.unwrap();
    let receipted: Vec<_> = receipts.iter().map(|r| r.msg_id).collect();
    let expected: Vec<_> = sent.iter().rev().map(|m| m.msg_id).collect();
    assert_eq!(receipted, expected);
    assert!(db.offline_unread(bob, 10).await.unwrap().is_empty());
    assert!(db
        .mark_delivered(bob, "laptop", &acks)
        .await
        .unwrap()
        .is_empty());

    // Alice has one receipt row per message, queued in the acks' order.
    let rows = db.offline_unread(alice, BURST as u32 + 1).await.unwrap();
    let queued: Vec<_> = rows
        .iter()
        .map(|r| match &r.item {
            OfflineItem::Receipt(receipt) => receipt.msg_id,
            other => panic!("not a receipt: {other:?}"),
        })
        .collect();
    assert_eq!(queued, expected);
    let cursors = db.device_cursors(bob, "phone").await.unwrap();
    assert_eq!(cursors[0].cursor, BURST as u64);
}
