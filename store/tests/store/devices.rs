use im_store::{direct_conversation, group_conversation, hash_token, DeviceCursor, Role, Target};

use crate::{ack, Fixture};

backend_tests!(
    a_new_device_starts_at_the_last_seq,
    a_new_device_starts_a_group_where_the_users_furthest_device_is,
    a_conversation_joined_later_starts_at_the_start_seq,
    cursors_cover_every_conversation_of_the_user,
    a_login_checks_the_token_and_registers_the_device_once,
);

async fn a_login_checks_the_token_and_registers_the_device_once(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    db.befriend(alice, bob).await;
    db.send(alice, Target::User(bob), "m1", &[bob]).await;
    let token = hash_token("bob's");
    db.create_token(bob, &token).await.unwrap();

    assert_eq!(
        db.login_device(&hash_token("nobody's"), "phone")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        db.login_device(&token, "phone").await.unwrap(),
        Some((bob, true))
    );
    // Registered as `register_device` does: it starts at the last seq.
    assert_eq!(db.device_cursors(bob, "phone").await.unwrap()[0].cursor, 1);
    assert!(!db.register_device(bob, "phone").await.unwrap());
    assert_eq!(
        db.login_device(&token, "phone").await.unwrap(),
        Some((bob, false))
    );
    assert_eq!(
        db.login_device(&token, "tablet").await.unwrap(),
        Some((bob, true))
    );
    db.revoke_token(&token).await.unwrap();
    assert_eq!(db.login_device(&token, "phone").await.unwrap(), None);
    assert_eq!(db.login_device(&token, "laptop").await.unwrap(), None);
    assert!(
        db.register_device(bob, "laptop").await.unwrap(),
        "a refused login registers nothing"
    );
}

async fn a_new_device_starts_at_the_last_seq(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    db.befriend(alice, bob).await;
    for id in ["m1", "m2"] {
        db.send(alice, Target::User(bob), id, &[bob]).await;
    }
    let conversation = direct_conversation(alice, bob);

    assert!(db.register_device(bob, "phone").await.unwrap());
    assert!(!db.register_device(bob, "phone").await.unwrap());
    let cursors = db.device_cursors(bob, "phone").await.unwrap();
    assert_eq!(
        cursors,
        [DeviceCursor {
            conversation_id: conversation.clone(),
            cursor: 2,
            last_seq: 2
        }]
    );

    // Registering again does not move a cursor that has fallen behind.
    db.send(alice, Target::User(bob), "m3", &[bob]).await;
    assert!(!db.register_device(bob, "phone").await.unwrap());
    assert_eq!(db.device_cursors(bob, "phone").await.unwrap()[0].cursor, 2);
    // The same device id of another user is another device.
    assert!(db.register_device(alice, "phone").await.unwrap());
    assert_eq!(
        db.device_cursors(alice, "phone").await.unwrap()[0].cursor,
        3
    );
}

async fn a_new_device_starts_a_group_where_the_users_furthest_device_is(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    let group = db.create_group(alice, "g").await.unwrap();
    db.send(alice, Target::Group(group.id), "before", &[]).await;
    db.add_member(group.id, bob, Role::Member).await.unwrap();
    let mut sent = Vec::new();
    for id in ["m2", "m3", "m4"] {
        sent.push(db.send(alice, Target::Group(group.id), id, &[bob]).await);
    }
    let cursor = |device: &'static str| async move {
        let cursors = db.device_cursors(bob, device).await.unwrap();
        assert_eq!(cursors.len(), 1);
        assert_eq!(cursors[0].last_seq, 4);
        cursors[0].cursor
    };

    // No device of Bob's has a group message, and none has an offline row:
    // his first device starts where he joined.
    assert!(db.offline_unread(bob, 10).await.unwrap().is_empty());
    assert!(db.register_device(bob, "phone").await.unwrap());
    assert_eq!(cursor("phone").await, 1);

    // The next starts where his furthest device is, not at the last seq.
    db.mark_delivered(bob, "phone", &[ack(&sent[0].message)])
        .await
        .unwrap();
    assert!(db.register_device(bob, "tablet").await.unwrap());
    assert_eq!(cursor("tablet").await, 2);
    db.mark_delivered(bob, "tablet", &[ack(&sent[1].message)])
        .await
        .unwrap();
    assert!(db.register_device(bob, "laptop").await.unwrap());
    assert_eq!(cursor("laptop").await, 3);
    assert_eq!(cursor("phone").await, 2);
}

async fn a_conversation_joined_later_starts_at_the_start_seq(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    let group = db.create_group(alice, "g").await.unwrap();
    for id in ["m1", "m2"] {
        db.send(alice, Target::Group(group.id), id, &[]).await;
    }
    assert!(db.register_device(bob, "phone").await.unwrap());
    assert!(db.device_cursors(bob, "phone").await.unwrap().is_empty());

    db.add_member(group.id, bob, Role::Member).await.unwrap();
    let sent = db
        .send(alice, Target::Group(group.id), "m3", &[bob])
        .await
        .message;
    let expected = DeviceCursor {
        conversation_id: group_conversation(group.id),
        cursor: 2,
        last_seq: 3,
    };
    assert_eq!(
        db.device_cursors(bob, "phone").await.unwrap(),
        std::slice::from_ref(&expected)
    );
    // A device never registered reads the same way.
    assert_eq!(db.device_cursors(bob, "tablet").await.unwrap(), [expected]);

    db.mark_delivered(bob, "phone", &[ack(&sent)])
        .await
        .unwrap();
    assert_eq!(db.device_cursors(bob, "phone").await.unwrap()[0].cursor, 3);
    assert_eq!(db.device_cursors(bob, "tablet").await.unwrap()[0].cursor, 2);
}

async fn cursors_cover_every_conversation_of_the_user(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    let carol = db.new_user("carol").await;
    db.befriend(alice, bob).await;
    db.befriend(alice, carol).await;
    let group = db.create_group(alice, "g").await.unwrap();
    db.send(bob, Target::User(alice), "b1", &[alice]).await;
    db.send(alice, Target::Group(group.id), "g1", &[]).await;
    db.send(alice, Target::Group(group.id), "g2", &[]).await;

    assert!(db.register_device(alice, "phone").await.unwrap());
    let mut cursors = db.device_cursors(alice, "phone").await.unwrap();
    cursors.sort_by(|a, b| a.conversation_id.cmp(&b.conversation_id));
    let view: Vec<(String, u64, u64)> = cursors
        .into_iter()
        .map(|c| (c.conversation_id, c.cursor, c.last_seq))
        .collect();
    let mut expected = vec![
        (direct_conversation(alice, bob), 1, 1),
        (direct_conversation(alice, carol), 0, 0),
        // No device of hers has the group's messages (her devices send
        // them): they are hers to catch up.
        (group_conversation(group.id), 0, 2),
    ];
    expected.sort();
    assert_eq!(view, expected);
}
