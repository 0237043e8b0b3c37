//! Chat end to end through the client library against the real server:
//! receipts, offline delivery, multi-device, groups, files, events.

use crate::common::client::*;
use crate::common::*;
use im_client::{ContentType, Event, FileRef, ReceiptKind, SendMessage, Target};

#[tokio::test]
async fn one_to_one_chat_goes_sent_then_delivered_then_read() {
    let (h, alice, bob) = alice_and_bob().await;
    let (a, mut a_events) = online(&h, &alice, "phone").await;
    let (b, mut b_events) = online(&h, &bob, "phone").await;

    let sent = a.send_text(Target::User(bob.id), "hi bob").await.unwrap();
    assert_eq!(sent.kind, ReceiptKind::Sent as i32);
    assert_eq!(sent.seq, 1);
    let got = messages(&mut b_events, 1).await.remove(0);
    assert_eq!(
        (got.text.as_str(), got.msg_id, got.from_user),
        ("hi bob", sent.msg_id, alice.id)
    );
    assert!(!got.offline);

    let delivered = receipt(&mut a_events, ReceiptKind::Delivered, sent.msg_id).await;
    assert_eq!(delivered.by_user, bob.id);
    b.mark_read(&got.conversation_id, got.seq).await.unwrap();
    let read = receipt(&mut a_events, ReceiptKind::Read, sent.msg_id).await;
    assert_eq!(read.by_user, bob.id);

    // And back: bob replies, alice gets it.
    b.send_text(Target::User(alice.id), "hi alice")
        .await
        .unwrap();
    assert_eq!(messages(&mut a_events, 1).await[0].text, "hi alice");
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn offline_messages_arrive_in_order_before_live_ones() {
    let (h, alice, bob) = alice_and_bob().await;
    let (a, mut a_events) = online(&h, &alice, "phone").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            a.send_text(Target::User(bob.id), format!("m{i}"))
                .await
                .unwrap()
                .msg_id,
        );
    }

    let (_b, mut b_events) = connect(&h, &bob, "phone").await;
    let ((offline, synced), before) = catch_up(&mut b_events).await;
    assert_eq!((offline, synced), (5, 5));
    let texts: Vec<&str> = before.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["m0", "m1", "m2", "m3", "m4"]);
    assert!(before.iter().all(|m| m.offline));
    assert_eq!(
        before.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );

    a.send_text(Target::User(bob.id), "live").await.unwrap();
    let live = messages(&mut b_events, 1).await.remove(0);
    assert_eq!(
        (live.text.as_str(), live.offline, live.seq),
        ("live", false, 6)
    );
    // Alice learns each offline message was delivered once bob had it.
    let mut delivered = std::collections::BTreeSet::new();
    while delivered.len() < ids.len() {
        until(&mut a_events, |e| match e {
            Event::Receipt(r) if r.kind == ReceiptKind::Delivered as i32 => {
                Some(delivered.insert(r.msg_id))
            }
            _ => None,
        })
        .await;
    }
    assert_eq!(delivered, ids.into_iter().collect());
}

#[tokio::test]
async fn receipts_wait_for_an_offline_sender() {
    let (h, alice, bob) = alice_and_bob().await;
    let (a, _a_events) = online(&h, &alice, "phone").await;
    let sent = a
        .send_text(Target::User(bob.id), "read me later")
        .await
        .unwrap();
    a.close().await;

    let (b, mut b_events) = connect(&h, &bob, "phone").await;
    let (_, before) = catch_up(&mut b_events).await;
    assert_eq!(before.len(), 1);
    b.mark_read(&before[0].conversation_id, before[0].seq)
        .await
        .unwrap();
    b.close().await;

    let (_a, mut a_events) = connect(&h, &alice, "phone").await;
    receipt(&mut a_events, ReceiptKind::Delivered, sent.msg_id).await;
    receipt(&mut a_events, ReceiptKind::Read, sent.msg_id).await;
}

#[tokio::test]
async fn every_device_gets_every_message_exactly_once() {
    let (h, alice, bob) = alice_and_bob().await;
    let (a1, mut a1_events) = online(&h, &alice, "a-phone").await;
    let (_a2, mut a2_events) = online(&h, &alice, "a-laptop").await;
    let mut bobs = Vec::new();
    for device in ["b-phone", "b-laptop", "b-tablet"] {
        let (link, mut events) = connect(&h, &bob, device).await;
        catch_up(&mut events).await;
        bobs.push((link, events));
    }

    for i in 0..3 {
        a1.send_text(Target::User(bob.id), format!("m{i}"))
            .await
            .unwrap();
    }
    // The sentinel comes last: if any copy were duplicated it would show up
    // before it.
    a1.send_text(Target::User(bob.id), "sentinel")
        .await
        .unwrap();
    for (_, events) in bobs.iter_mut() {
        let got: Vec<String> = messages(events, 4)
            .await
            .into_iter()
            .map(|m| m.text)
            .collect();
        assert_eq!(got, ["m0", "m1", "m2", "sentinel"]);
    }
    // Alice's other device sees her own messages too.
    let got: Vec<String> = messages(&mut a2_events, 4)
        .await
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(got, ["m0", "m1", "m2", "sentinel"]);
    // The sending device is not sent its own messages: the first message it
    // gets is bob's reply.
    bobs[0]
        .0
        .send_text(Target::User(alice.id), "reply")
        .await
        .unwrap();
    assert_eq!(messages(&mut a1_events, 1).await[0].text, "reply");
}

#[tokio::test]
async fn a_device_that_was_away_catches_up_by_its_cursor() {
    let (h, alice, bob) = alice_and_bob().await;
    let (b1, mut b1_events) = online(&h, &bob, "phone").await;
    let (b2, _b2_events) = online(&h, &bob, "laptop").await;
    b2.close().await;

    let (a, mut a_events) = online(&h, &alice, "phone").await;
    for i in 0..3 {
        a.send_text(Target::User(bob.id), format!("while away {i}"))
            .await
            .unwrap();
    }
    // The phone gets them live; its acks take the offline rows, in the same
    // transaction that makes the DELIVERED receipts alice waits for here.
    assert_eq!(messages(&mut b1_events, 3).await.len(), 3);
    let mut delivered = std::collections::BTreeSet::new();
    while delivered.len() < 3 {
        until(&mut a_events, |e| match e {
            Event::Receipt(r) if r.kind == ReceiptKind::Delivered as i32 => {
                Some(delivered.insert(r.msg_id))
            }
            _ => None,
        })
        .await;
    }
    b1.close().await;

    let (_b2, mut b2_events) = connect(&h, &bob, "laptop").await;
    let ((offline, synced), before) = catch_up(&mut b2_events).await;
    assert_eq!(offline, 0, "the phone already took the offline rows");
    assert_eq!(synced, 3);
    let texts: Vec<&str> = before.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["while away 0", "while away 1", "while away 2"]);
}

#[tokio::test]
async fn two_devices_logging_in_at_once_each_get_each_message_once() {
    let (h, alice, bob) = alice_and_bob().await;
    // Both devices exist before the messages are sent.
    for device in ["phone", "laptop"] {
        let (link, mut events) = connect(&h, &bob, device).await;
        catch_up(&mut events).await;
        link.close().await;
    }
    let (a, _a_events) = online(&h, &alice, "phone").await;
    for i in 0..20 {
        a.send_text(Target::User(bob.id), format!("m{i:02}"))
            .await
            .unwrap();
    }

    let ((p, mut p_events), (l, mut l_events)) =
        tokio::join!(connect(&h, &bob, "phone"), connect(&h, &bob, "laptop"));
    let ((p_offline, p_synced), p_msgs) = catch_up(&mut p_events).await;
    let ((l_offline, l_synced), l_msgs) = catch_up(&mut l_events).await;
    // The compare-and-set handed each offline row to exactly one pull.
    assert_eq!(p_offline + l_offline, 20);
    assert_eq!((p_synced, l_synced), (20, 20));
    let expected: Vec<String> = (0..20).map(|i| format!("m{i:02}")).collect();
    for msgs in [&p_msgs, &l_msgs] {
        let texts: Vec<String> = msgs.iter().map(|m| m.text.clone()).collect();
        assert_eq!(texts, expected);
    }
    p.close().await;
    l.close().await;
    // Nothing is left in the offline queue for a third login.
    let (_t, mut t_events) = connect(&h, &bob, "tablet").await;
    let ((offline, synced), _) = catch_up(&mut t_events).await;
    assert_eq!((offline, synced), (0, 0));
}

#[tokio::test]
async fn group_chat_across_five_members_keeps_one_order_everywhere() {
    let h = Harness::start().await;
    let mut users = Vec::new();
    for name in ["ann", "ben", "cat", "dan", "eve"] {
        users.push(h.user(name).await);
    }
    let others: Vec<&TestUser> = users[1..].iter().collect();
    let group = h.group(&users[0], &others).await;
    let mut links = Vec::new();
    for u in &users {
        let (link, mut events) = connect(&h, u, "phone").await;
        catch_up(&mut events).await;
        links.push((link, events));
    }
    // Everyone writes at once.
    let sends = links
        .iter()
        .enumerate()
        .map(|(i, (link, _))| link.send_text(Target::Group(group), format!("from {i}")));
    let sent = futures::future::join_all(sends).await;
    let mut seqs: Vec<u64> = sent.iter().map(|r| r.as_ref().unwrap().seq).collect();
    seqs.sort();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);

    // Each member sees the four others' messages in seq order, and gets a
    // DELIVERED for its own message from each of the four others. Both kinds
    // are read in one pass: they interleave on the link.
    for (i, (_, events)) in links.iter_mut().enumerate() {
        let own = sent[i].as_ref().unwrap().msg_id;
        let (mut got, mut by) = (Vec::new(), Vec::new());
        while got.len() < 4 || by.len() < 4 {
            until(events, |e| match e {
                Event::Message(m) => {
                    got.push(m.clone());
                    Some(())
                }
                Event::Receipt(r) if r.kind == ReceiptKind::Delivered as i32 && r.msg_id == own => {
                    by.push(r.by_user);
                    Some(())
                }
                _ => None,
            })
            .await;
        }
        assert!(got.iter().all(|m| m.from_user != users[i].id));
        assert!(
            got.windows(2).all(|w| w[0].seq < w[1].seq),
            "out of order: {got:?}"
        );
        by.sort();
        let mut expected: Vec<u64> = users
            .iter()
            .map(|u| u.id)
            .filter(|id| *id != users[i].id)
            .collect();
        expected.sort();
        assert_eq!(by, expected);
    }
    // History agrees with what was pushed.
    let page = rest(&h, &users[0])
        .messages(&format!("g{group}"), None, None)
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 5);
}

/// A group message has no offline rows: members catch up by their cursors.
/// A device that was away gets what it missed, a user's first device gets
/// everything since the user joined, and a new device starts where the
/// user's furthest device is.
#[tokio::test]
async fn group_members_that_were_away_catch_up_by_their_cursors() {
    let h = Harness::start().await;
    let ann = h.user("ann").await;
    let ben = h.user("ben").await;
    let cat = h.user("cat").await;
    let group = h.group(&ann, &[&ben, &cat]).await;
    let (phone, _) = online(&h, &ben, "phone").await;
    phone.close().await;

    let (a, mut a_events) = online(&h, &ann, "phone").await;
    let mut sent = Vec::new();
    for i in 0..3 {
        let receipt = a
            .send_text(Target::Group(group), format!("while away {i}"))
            .await
            .unwrap();
        sent.push(receipt.msg_id);
    }
    let expected = ["while away 0", "while away 1", "while away 2"];
    let texts = |got: &[im_client::ChatMessage]| -> Vec<String> {
        got.iter().map(|m| m.text.clone()).collect()
    };

    // Ben's phone was away: what it missed comes after its cursor.
    let (_phone, mut phone_events) = connect(&h, &ben, "phone").await;
    let (counts, got) = catch_up(&mut phone_events).await;
    assert_eq!(counts, (0, 3), "(offline, synced)");
    assert_eq!(texts(&got), expected);
    // Cat never logged in: her first device gets all since she joined.
    let (_cat_phone, mut cat_events) = connect(&h, &cat, "phone").await;
    let (counts, got) = catch_up(&mut cat_events).await;
    assert_eq!(counts, (0, 3), "(offline, synced)");
    assert_eq!(texts(&got), expected);

    // Ben's DELIVERED receipts are stored with his phone's cursor: once Ann
    // has them, a new device of Ben's starts after what the phone has.
    let mut delivered = std::collections::BTreeSet::new();
    while delivered.len() < sent.len() {
        until(&mut a_events, |e| match e {
            Event::Receipt(r) if r.kind == ReceiptKind::Delivered as i32 && r.by_user == ben.id => {
                Some(delivered.insert(r.msg_id))
            }
            _ => None,
        })
        .await;
    }
    assert_eq!(delivered, sent.iter().copied().collect());
    let (_tablet, mut tablet_events) = connect(&h, &ben, "tablet").await;
    assert_eq!(catch_up(&mut tablet_events).await.0, (0, 0));
}

/// A push queue of 2 and a group of 6: each message answers its sender
/// with 5 DELIVERED receipts at once, so most do not fit. The sender's
/// link is not cut off: the dropped receipts are re-read from the store
/// once it has caught up, and every one arrives.
#[tokio::test]
async fn receipts_that_overflow_the_push_queue_still_arrive() {
    let h = Harness::start_with(|c| c.push_queue = 2).await;
    let mut users = Vec::new();
    for name in ["ann", "ben", "cat", "dan", "eve", "fay"] {
        users.push(h.user(name).await);
    }
    let others: Vec<&TestUser> = users[1..].iter().collect();
    let group = h.group(&users[0], &others).await;
    let mut links = Vec::new();
    for u in &users {
        links.push(online(&h, u, "phone").await);
    }
    const SENT: usize = 8;
    let mut own = Vec::new();
    for i in 0..SENT {
        let sent = links[0]
            .0
            .send_text(Target::Group(group), format!("m{i}"))
            .await;
        own.push(sent.unwrap().msg_id);
    }
    for (_, events) in links[1..].iter_mut() {
        assert_eq!(messages(events, SENT).await.len(), SENT);
    }
    let mut delivered = std::collections::HashSet::new();
    while delivered.len() < SENT * others.len() {
        until(&mut links[0].1, |e| match e {
            Event::Receipt(r) if r.kind == ReceiptKind::Delivered as i32 => {
                delivered.insert((r.msg_id, r.by_user));
                Some(())
            }
            Event::Closed { .. } => panic!("the sender was cut off: {e:?}"),
            _ => None,
        })
        .await;
    }
    assert!(delivered.iter().all(|(msg, _)| own.contains(msg)));
}

#[tokio::test]
async fn a_resend_with_the_same_client_id_is_stored_and_delivered_once() {
    let (h, alice, bob) = alice_and_bob().await;
    let (a, _a_events) = online(&h, &alice, "phone").await;
    let (_b, mut b_events) = online(&h, &bob, "phone").await;
    let message = SendMessage {
        client_msg_id: "fixed-id-1".into(),
        content_type: ContentType::Text as i32,
        text: "once".into(),
        ..Target::User(bob.id).message()
    };
    let first = a.send(message.clone()).await.unwrap();
    let again = a.send(message).await.unwrap();
    assert_eq!((first.msg_id, first.seq), (again.msg_id, again.seq));
    a.send_text(Target::User(bob.id), "sentinel").await.unwrap();
    let got: Vec<String> = messages(&mut b_events, 2)
        .await
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(got, ["once", "sentinel"]);
}

#[tokio::test]
async fn image_and_file_messages_carry_the_uploaded_file() {
    let (h, alice, bob) = alice_and_bob().await;
    let (a, _a_events) = online(&h, &alice, "phone").await;
    let (_b, mut b_events) = online(&h, &bob, "phone").await;
    let bytes: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let meta = rest(&h, &alice)
        .upload_file("cat.png", "image/png", bytes.clone())
        .await
        .unwrap();
    let file = FileRef {
        file_id: meta.id.clone(),
        ..Default::default()
    };
    a.send_file(Target::User(bob.id), ContentType::Image, file, "my cat")
        .await
        .unwrap();
    let got = messages(&mut b_events, 1).await.remove(0);
    assert_eq!(got.content_type, ContentType::Image as i32);
    assert_eq!(got.text, "my cat");
    let f = got.file.unwrap();
    assert_eq!(
        (f.name.as_str(), f.mime.as_str(), f.size),
        ("cat.png", "image/png", 5000)
    );
    let downloaded = rest(&h, &bob).download_file(&f.file_id).await.unwrap();
    assert_eq!(downloaded.as_ref(), bytes.as_slice());

    let doc = rest(&h, &alice)
        .upload_file("notes.txt", "text/plain", "hello")
        .await
        .unwrap();
    let file = FileRef {
        file_id: doc.id,
        ..Default::default()
    };
    a.send_file(Target::User(bob.id), ContentType::File, file, "")
        .await
        .unwrap();
    let got = messages(&mut b_events, 1).await.remove(0);
    assert_eq!(got.content_type, ContentType::File as i32);
    assert_eq!(got.file.unwrap().name, "notes.txt");
}

#[tokio::test]
async fn friend_requests_and_presence_are_pushed_to_online_users() {
    let h = Harness::start().await;
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    let (_b, mut b_events) = online(&h, &bob, "phone").await;
    let (_a, mut a_events) = online(&h, &alice, "phone").await;

    let request = rest(&h, &alice)
        .send_friend_request("bob", "it's alice")
        .await
        .unwrap();
    let pushed = until(&mut b_events, |e| match e {
        Event::FriendRequest(r) => Some(r.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        (pushed.request_id, pushed.from_user),
        (request.id, alice.id)
    );
    assert_eq!(pushed.note, "it's alice");
    rest(&h, &bob)
        .accept_friend_request(request.id)
        .await
        .unwrap();
    let accepted = until(&mut a_events, |e| match e {
        Event::Friend(f) => Some(f.clone()),
        _ => None,
    })
    .await;
    assert_eq!(accepted.user_id, bob.id);

    // Now friends: bob's second device does not change presence, a new
    // user coming online does.
    let friends = rest(&h, &alice).friends().await.unwrap();
    assert!(friends.iter().any(|f| f.user_id == bob.id && f.online));
    _b.close().await;
    let gone = until(&mut a_events, |e| match e {
        Event::Presence(p) => Some(*p),
        _ => None,
    })
    .await;
    assert_eq!((gone.user_id, gone.online), (bob.id, false));
    let (_b, _) = connect(&h, &bob, "phone").await;
    let back = until(&mut a_events, |e| match e {
        Event::Presence(p) => Some(*p),
        _ => None,
    })
    .await;
    assert_eq!((back.user_id, back.online), (bob.id, true));
}

#[tokio::test]
async fn history_pages_and_unread_counts_follow_reads() {
    let (h, alice, bob) = alice_and_bob().await;
    let (a, _a_events) = online(&h, &alice, "phone").await;
    for i in 0..7 {
        a.send_text(Target::User(bob.id), format!("m{i}"))
            .await
            .unwrap();
    }
    let conv = Target::User(bob.id).conversation_id(alice.id);
    let convs = rest(&h, &bob).conversations().await.unwrap();
    assert_eq!(convs.len(), 1);
    assert_eq!((convs[0].id.as_str(), convs[0].unread), (conv.as_str(), 7));

    let page = rest(&h, &bob).messages(&conv, None, Some(3)).await.unwrap();
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [7, 6, 5]
    );
    let next = page.next_before_seq.unwrap();
    let page = rest(&h, &bob)
        .messages(&conv, Some(next), Some(10))
        .await
        .unwrap();
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [4, 3, 2, 1]
    );
    assert_eq!(page.next_before_seq, None);

    let (b, _b_events) = online(&h, &bob, "phone").await;
    b.mark_read(&conv, 5).await.unwrap();
    let convs = rest(&h, &bob).conversations().await.unwrap();
    assert_eq!(convs[0].unread, 2);
    // A stranger cannot read it.
    let carol = h.user("carol").await;
    assert!(rest(&h, &carol).messages(&conv, None, None).await.is_err());
    let err = b.mark_read("u999-1000", 1).await.unwrap_err();
    assert!(
        format!("{err:?}").contains("FORBIDDEN") || format!("{err:?}").contains("Forbidden"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_clean_shutdown_keeps_every_acknowledged_message() {
    let mut h = Harness::start().await;
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    h.befriend(&alice, &bob).await;
    let (a, _a_events) = online(&h, &alice, "phone").await;
    // Many sends in flight when the shutdown starts.
    let sends: Vec<_> = (0..50)
        .map(|i| {
            let a = a.clone();
            let to = bob.id;
            tokio::spawn(async move { a.send_text(Target::User(to), format!("m{i}")).await })
        })
        .collect();
    tokio::task::yield_now().await;
    h.stop().await;
    let mut acknowledged = Vec::new();
    for s in sends {
        if let Ok(Ok(receipt)) = s.await {
            acknowledged.push(receipt.msg_id);
        }
    }
    // Restart on the same data: every SENT message is there, exactly once.
    h.restart().await;
    let (_b, mut b_events) = connect(&h, &bob, "phone").await;
    let (_, before) = catch_up(&mut b_events).await;
    let got: Vec<u64> = before.iter().map(|m| m.msg_id).collect();
    for id in &acknowledged {
        assert_eq!(
            got.iter().filter(|g| *g == id).count(),
            1,
            "message {id} lost or doubled"
        );
    }
    assert!(before.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
    h.stop().await;
}
