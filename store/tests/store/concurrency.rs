//! Many callers at once. SQLite serializes writers through one connection;
//! MySQL runs them side by side under row locks, where the compare-and-set
//! and the seq allocator must still hand out each row and each seq once.

use std::collections::HashSet;

use im_store::{direct_conversation, group_conversation, NewMessage, Role, Target};

use crate::{ack, text, Fixture};

backend_tests!(
    concurrent_pullers_claim_each_row_once,
    concurrent_appends_take_consecutive_seqs,
    devices_acking_in_opposite_orders_make_one_receipt_each,
    resends_racing_their_original_are_duplicates,
);

/// Pullers racing over the same rows.
const PULLERS: usize = 8;
/// Rows they race over.
const ROWS: usize = 50;
/// Senders appending at once.
const SENDERS: usize = 4;
/// Batches each sender appends.
const BATCHES: usize = 6;
/// Copies of one message sent at once.
const RESENDS: usize = 8;
/// Devices acking the same messages at once.
const DEVICES: usize = 4;

async fn concurrent_pullers_claim_each_row_once(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    db.befriend(alice, bob).await;
    let batch: Vec<NewMessage> = (0..ROWS)
        .map(|i| text(alice, Target::User(bob), &format!("m{i}"), &[bob]))
        .collect();
    db.append_messages(&batch).await.unwrap();
    let rows: Vec<u64> = db
        .offline_unread(bob, 100)
        .await
        .unwrap()
        .iter()
        .map(|row| row.id)
        .collect();
    assert_eq!(rows.len(), ROWS);

    // Half walk the rows forwards and half backwards, so every row is
    // contended both by pullers in step and by pullers meeting head-on.
    let pullers: Vec<_> = (0..PULLERS)
        .map(|puller| {
            let store = db.shared();
            let mut order = rows.clone();
            if puller % 2 == 1 {
                order.reverse();
            }
            tokio::spawn(async move {
                let mut won = Vec::new();
                for row in order {
                    if store.claim_offline(row).await.unwrap() {
                        won.push(row);
                    }
                }
                won
            })
        })
        .collect();
    let mut won = Vec::new();
    for puller in pullers {
        won.extend(puller.await.unwrap());
    }

    won.sort_unstable();
    assert_eq!(won, rows, "each row claimed exactly once");
    assert!(db.offline_unread(bob, 100).await.unwrap().is_empty());
}

async fn concurrent_appends_take_consecutive_seqs(db: &Fixture) {
    let mut users = Vec::new();
    for name in ["alice", "bob", "carol", "dave"] {
        users.push(db.new_user(name).await);
    }
    let group = db.create_group(users[0], "g").await.unwrap();
    for &member in &users[1..] {
        db.add_member(group.id, member, Role::Member).await.unwrap();
    }
    db.befriend(users[0], users[1]).await;

    // Every batch writes to the group and to the direct conversation of
    // alice and bob, half of the senders in one order and half in the other,
    // and ends with a resend of its own first message.
    let senders: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let store = db.shared();
            let users = users.clone();
            tokio::spawn(async move {
                let from = users[sender];
                let others: Vec<u64> = users.iter().copied().filter(|&u| u != from).collect();
                let direct = match sender {
                    0 => Some(Target::User(users[1])),
                    1 => Some(Target::User(users[0])),
                    _ => None,
                };
                let mut appended = Vec::new();
                for b in 0..BATCHES {
                    let id = |n: usize| format!("s{sender}-b{b}-{n}");
                    let mut batch = vec![
                        text(from, Target::Group(group.id), &id(0), &others),
                        text(from, Target::Group(group.id), &id(1), &others),
                    ];
                    if let Some(target) = direct {
                        batch.push(text(from, target, &id(2), &others[..1]));
                    }
                    if sender % 2 == 1 {
                        batch.reverse();
                    }
                    batch.push(batch[0].clone());
                    let result = store.append_messages(&batch).await.unwrap();
                    let (resend, new) = result.split_last().unwrap();
                    assert!(resend.duplicate);
                    assert_eq!(resend.message, new[0].message);
                    assert!(new.iter().all(|a| !a.duplicate));
                    appended.extend(new.iter().map(|a| a.message.clone()));
                }
                appended
            })
        })
        .collect();
    let mut appended = Vec::new();
    for sender in senders {
        appended.extend(sender.await.unwrap());
    }

    let ids: HashSet<u64> = appended.iter().map(|m| m.msg_id).collect();
    assert_eq!(ids.len(), appended.len(), "msg_ids are unique");
    let grouped = group_conversation(group.id);
    let direct = direct_conversation(users[0], users[1]);
    for (conversation, count) in [(grouped, SENDERS * BATCHES * 2), (direct, 2 * BATCHES)] {
        let mut seqs: Vec<u64> = appended
            .iter()
            .filter(|m| m.conversation_id == conversation)
            .map(|m| m.seq)
            .collect();
        seqs.sort_unstable();
        let expected: Vec<u64> = (1..=count as u64).collect();
        assert_eq!(seqs, expected, "{conversation}: no gaps, no repeats");

        // Stored as returned, and a later seq always has a later msg_id.
        let stored = db.messages_after(&conversation, 0, 1000).await.unwrap();
        assert_eq!(stored.len(), count);
        assert!(stored.windows(2).all(|w| w[0].msg_id < w[1].msg_id));
        for message in &stored {
            assert!(appended.contains(message), "{message:?}");
        }
    }
    let summaries = db.conversations(users[2]).await.unwrap();
    assert_eq!(summaries[0].last_seq, (SENDERS * BATCHES * 2) as u64);
}

async fn devices_acking_in_opposite_orders_make_one_receipt_each(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    db.befriend(alice, bob).await;
    let sent: Vec<_> = db
        .send_many(alice, bob, ROWS)
        .await
        .iter()
        .map(ack)
        .collect();

    // Opposite orders lock the shared rows (Bob's offline rows, the
    // receipts) in opposite orders: on MySQL, a deadlock the store retries.
    let devices: Vec<_> = (0..DEVICES)
        .map(|device| {
            let store = db.shared();
            let mut acks = sent.clone();
            if device % 2 == 1 {
                acks.reverse();
            }
            tokio::spawn(async move {
                store
                    .mark_delivered(bob, &format!("device-{device}"), &acks)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut receipted = Vec::new();
    for device in devices {
        receipted.extend(device.await.unwrap().into_iter().map(|r| r.msg_id));
    }

    receipted.sort_unstable();
    let mut expected: Vec<u64> = sent.iter().map(|m| m.msg_id).collect();
    expected.sort_unstable();
    assert_eq!(receipted, expected, "one DELIVERED receipt per message");
    assert!(db.offline_unread(bob, 100).await.unwrap().is_empty());
    assert_eq!(db.offline_unread(alice, 100).await.unwrap().len(), ROWS);
    for device in 0..DEVICES {
        let cursors = db
            .device_cursors(bob, &format!("device-{device}"))
            .await
            .unwrap();
        assert_eq!(cursors[0].cursor, ROWS as u64, "device {device}");
    }
}

async fn resends_racing_their_original_are_duplicates(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    let carol = db.new_user("carol").await;
    db.befriend(alice, bob).await;
    db.befriend(alice, carol).await;

    // The same client id, half of the copies to another conversation: only
    // the (from_user, client_msg_id) key, not a conversation lock, can tell.
    let copies: Vec<_> = (0..RESENDS)
        .map(|copy| {
            let store = db.shared();
            let to = if copy % 2 == 0 { bob } else { carol };
            tokio::spawn(async move {
                let batch = [text(alice, Target::User(to), "same", &[to])];
                store.append_messages(&batch).await.unwrap().remove(0)
            })
        })
        .collect();
    let mut results = Vec::new();
    for copy in copies {
        results.push(copy.await.unwrap());
    }

    let originals: Vec<_> = results.iter().filter(|a| !a.duplicate).collect();
    assert_eq!(originals.len(), 1, "one copy is stored");
    let original = &originals[0].message;
    assert!(results.iter().all(|a| &a.message == original));
    assert_eq!(original.seq, 1);
    let unread = db.offline_unread(bob, 10).await.unwrap().len()
        + db.offline_unread(carol, 10).await.unwrap().len();
    assert_eq!(unread, 1, "one offline row");
}
