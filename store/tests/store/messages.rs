use im_store::{direct_conversation, group_conversation, FileRef, Role, StoreError, Target};

use crate::{text, Fixture};

backend_tests!(
    each_conversation_counts_its_own_seqs,
    group_messages_and_files_are_stored_whole,
    a_resend_returns_the_stored_message_and_writes_nothing,
    a_resend_within_one_batch_is_a_duplicate_too,
    a_resend_to_another_conversation_is_the_stored_message,
    only_recipients_of_direct_messages_get_offline_rows,
    messages_after_reads_a_window_of_seqs,
    history_pages_backwards_for_members_only,
    conversations_list_the_busiest_first_with_unread_counts,
);

async fn each_conversation_counts_its_own_seqs(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    let carol = db.new_user("carol").await;
    db.befriend(alice, bob).await;
    db.befriend(alice, carol).await;

    let batch = [
        text(alice, Target::User(bob), "a1", &[bob]),
        text(bob, Target::User(alice), "b1", &[alice]),
        text(alice, Target::User(carol), "a2", &[carol]),
        text(alice, Target::User(bob), "a3", &[bob]),
    ];
    let appended = db.append_messages(&batch).await.unwrap();
    let seqs: Vec<(String, u64)> = appended
        .iter()
        .map(|a| (a.message.conversation_id.clone(), a.message.seq))
        .collect();
    let with_bob = direct_conversation(alice, bob);
    let with_carol = direct_conversation(carol, alice);
    assert_eq!(
        seqs,
        [
            (with_bob.clone(), 1),
            (with_bob.clone(), 2),
            (with_carol.clone(), 1),
            (with_bob.clone(), 3)
        ]
    );
    assert!(appended.iter().all(|a| !a.duplicate));
    let ids: Vec<u64> = appended.iter().map(|a| a.message.msg_id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    let first = &appended[0].message;
    assert_eq!(
        (first.from_user, first.to_user, first.to_group),
        (alice, bob, 0)
    );
    assert_eq!(first.client_msg_id, "a1");
    assert_eq!(first.text, "text of a1");
    assert!(first.sent_at_ms > 0);

    let next = db.send(bob, Target::User(alice), "b2", &[alice]).await;
    assert_eq!(next.message.seq, 4);
    assert!(next.message.msg_id > ids[3]);
}

async fn group_messages_and_files_are_stored_whole(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    let group = db.create_group(alice, "g").await.unwrap();
    db.add_member(group.id, bob, Role::Member).await.unwrap();

    let mut message = text(alice, Target::Group(group.id), "pic", &[bob]);
    message.content_type = 2;
    message.text = "look".to_owned();
    message.file = Some(FileRef {
        file_id: "f-1".to_owned(),
        name: "cat.png".to_owned(),
        mime: "image/png".to_owned(),
        size: 2048,
    });
    let stored = db
        .append_messages(&[message.clone()])
        .await
        .unwrap()
        .remove(0)
        .message;
    assert_eq!(stored.conversation_id, group_conversation(group.id));
    assert_eq!((stored.to_user, stored.to_group), (0, group.id));
    assert_eq!(stored.content_type, 2);
    assert_eq!(stored.file, message.file);

    let read_back = db
        .messages_after(&stored.conversation_id, 0, 10)
        .await
        .unwrap();
    assert_eq!(read_back, [stored]);
}

async fn a_resend_returns_the_stored_message_and_writes_nothing(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    db.befriend(alice, bob).await;

    let original = db.send(alice, Target::User(bob), "same", &[bob]).await;
    let resent = db.send(alice, Target::User(bob), "same", &[bob]).await;
    assert!(resent.duplicate);
    assert_eq!(resent.message, original.message);

    // The same client id from someone else is another message.
    let other = db.send(bob, Target::User(alice), "same", &[alice]).await;
    assert!(!other.duplicate);
    assert_eq!(other.message.seq, 2);

    assert_eq!(db.offline_unread(bob, 10).await.unwrap().len(), 1);
    let summary = &db.conversations(alice).await.unwrap()[0];
    assert_eq!(summary.last_seq, 2);
}

async fn a_resend_within_one_batch_is_a_duplicate_too(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    db.befriend(alice, bob).await;

    let batch = [
        text(alice, Target::User(bob), "x", &[bob]),
        text(alice, Target::User(bob), "x", &[bob]),
        text(alice, Target::User(bob), "y", &[bob]),
    ];
    let appended = db.append_messages(&batch).await.unwrap();
    let flags: Vec<(u64, bool)> = appended
        .iter()
        .map(|a| (a.message.seq, a.duplicate))
        .collect();
    assert_eq!(flags, [(1, false), (1, true), (2, false)]);
    assert_eq!(appended[0].message, appended[1].message);
    assert_eq!(db.offline_unread(bob, 10).await.unwrap().len(), 2);
}

async fn a_resend_to_another_conversation_is_the_stored_message(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    let carol = db.new_user("carol").await;
    db.befriend(alice, bob).await;
    db.befriend(alice, carol).await;

    let original = db.send(alice, Target::User(bob), "same", &[bob]).await;
    // The client id is the sender's: sent again to carol, it is still the
    // message bob has, and carol's conversation gets nothing.
    let resent = db.send(alice, Target::User(carol), "same", &[carol]).await;
    assert!(resent.duplicate);
    assert_eq!(resent.message, original.message);
    assert!(db.offline_unread(carol, 10).await.unwrap().is_empty());
    let with_carol = direct_conversation(alice, carol);
    assert!(db
        .messages_after(&with_carol, 0, 10)
        .await
        .unwrap()
        .is_empty());

    // Her conversation's seqs were not touched either.
    let next = db.send(alice, Target::User(carol), "next", &[carol]).await;
    assert_eq!((next.message.seq, next.duplicate), (1, false));
}

async fn only_recipients_of_direct_messages_get_offline_rows(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    let carol = db.new_user("carol").await;
    let group = db.create_group(alice, "g").await.unwrap();
    for member in [bob, carol] {
        db.add_member(group.id, member, Role::Member).await.unwrap();
    }

    // The sender listed among the recipients, and a recipient listed twice.
    let sent = db
        .send(alice, Target::User(bob), "m", &[alice, bob, bob])
        .await;
    let rows = db.offline_unread(bob, 10).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].key(),
        im_store::OfflineKey::Message(sent.message.msg_id)
    );
    for user in [alice, carol] {
        assert!(
            db.offline_unread(user, 10).await.unwrap().is_empty(),
            "user {user}"
        );
    }

    // A group's members catch up by their cursors: its message is one row,
    // however many members.
    db.send(alice, Target::Group(group.id), "g", &[alice, bob, carol])
        .await;
    assert_eq!(db.offline_unread(bob, 10).await.unwrap().len(), 1);
    assert!(db.offline_unread(carol, 10).await.unwrap().is_empty());
}

async fn messages_after_reads_a_window_of_seqs(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let group = db.create_group(alice, "g").await.unwrap();
    for i in 1..=5 {
        db.send(alice, Target::Group(group.id), &format!("m{i}"), &[])
            .await;
    }
    let conversation = group_conversation(group.id);
    let seqs = |messages: Vec<im_store::StoredMessage>| -> Vec<u64> {
        messages.iter().map(|m| m.seq).collect()
    };

    assert_eq!(
        seqs(db.messages_after(&conversation, 1, 2).await.unwrap()),
        [2, 3]
    );
    assert_eq!(
        seqs(db.messages_after(&conversation, 3, 100).await.unwrap()),
        [4, 5]
    );
    assert!(db
        .messages_after(&conversation, 5, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(db.messages_after("g999", 0, 10).await.unwrap().is_empty());
    assert!(db
        .messages_after(&conversation, u64::MAX, 10)
        .await
        .unwrap()
        .is_empty());
}

async fn history_pages_backwards_for_members_only(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    let eve = db.new_user("eve").await;
    db.befriend(alice, bob).await;
    for i in 1..=5 {
        db.send(alice, Target::User(bob), &format!("m{i}"), &[bob])
            .await;
    }
    let conversation = direct_conversation(alice, bob);
    let page = |before, limit| {
        let db = &db;
        let conversation = &conversation;
        async move {
            db.history(bob, conversation, before, limit)
                .await
                .unwrap()
                .iter()
                .map(|m| m.seq)
                .collect::<Vec<u64>>()
        }
    };

    assert_eq!(page(None, 2).await, [5, 4]);
    assert_eq!(page(Some(4), 2).await, [3, 2]);
    assert_eq!(page(Some(2), 2).await, [1]);
    assert_eq!(page(Some(1), 2).await, Vec::<u64>::new());
    assert_eq!(page(None, 10).await, [5, 4, 3, 2, 1]);

    let error = db.history(eve, &conversation, None, 10).await.unwrap_err();
    assert!(matches!(error, StoreError::Forbidden), "{error:?}");
    let error = db.history(alice, "g404", None, 10).await.unwrap_err();
    assert!(matches!(error, StoreError::Forbidden), "{error:?}");
}

async fn conversations_list_the_busiest_first_with_unread_counts(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    let carol = db.new_user("carol").await;
    db.befriend(alice, bob).await;
    let group = db.create_group(carol, "g").await.unwrap();
    db.add_member(group.id, alice, Role::Member).await.unwrap();

    db.send(bob, Target::User(alice), "b1", &[alice]).await;
    db.send(bob, Target::User(alice), "b2", &[alice]).await;
    db.send(carol, Target::Group(group.id), "c1", &[alice])
        .await;
    db.send(alice, Target::User(bob), "a1", &[bob]).await;

    let list = db.conversations(alice).await.unwrap();
    let ids: Vec<&str> = list.iter().map(|c| c.id.as_str()).collect();
    let direct = direct_conversation(alice, bob);
    let grouped = group_conversation(group.id);
    assert_eq!(ids, [direct.as_str(), grouped.as_str()]);

    let (with_bob, in_group) = (&list[0], &list[1]);
    assert_eq!((in_group.last_seq, in_group.unread), (1, 1));
    assert_eq!(in_group.last_message.as_ref().unwrap().client_msg_id, "c1");
    // Alice's own message does not count as unread.
    assert_eq!(
        (with_bob.last_seq, with_bob.read_seq, with_bob.unread),
        (3, 0, 2)
    );
    assert_eq!(with_bob.last_message.as_ref().unwrap().client_msg_id, "a1");
    assert_eq!(with_bob.peer_user, bob);

    db.mark_read(alice, &direct, 1).await.unwrap();
    let list = db.conversations(alice).await.unwrap();
    assert_eq!((list[0].read_seq, list[0].unread), (1, 1));

    // New activity in the group puts it first.
    db.send(carol, Target::Group(group.id), "c2", &[alice])
        .await;
    let list = db.conversations(alice).await.unwrap();
    assert_eq!((list[0].id.as_str(), list[0].unread), (grouped.as_str(), 2));

    let of_bob = db.conversations(bob).await.unwrap();
    assert_eq!(of_bob.len(), 1);
    assert_eq!((of_bob[0].peer_user, of_bob[0].unread), (alice, 1));
}
