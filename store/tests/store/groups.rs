use im_store::{group_conversation, ConversationKind, Role, StoreError, Target};

use crate::Fixture;

backend_tests!(
    a_new_group_has_its_creator_and_a_conversation,
    members_are_added_once_with_roles_creator_first,
    a_removed_member_loses_the_group_and_its_conversation,
    a_dissolved_group_is_gone_for_everyone,
    a_late_joiner_sees_only_what_came_after_joining,
    answers_asked_before_a_change_are_not_kept_after_it,
);

async fn a_new_group_has_its_creator_and_a_conversation(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let group = db.create_group(alice, "climbers").await.unwrap();
    assert_eq!((group.name.as_str(), group.creator), ("climbers", alice));

    assert_eq!(db.group(group.id).await.unwrap(), Some(group.clone()));
    assert_eq!(
        db.groups_of(alice).await.unwrap(),
        std::slice::from_ref(&group)
    );
    assert_eq!(db.group_member_ids(group.id).await.unwrap(), [alice]);
    assert_eq!(
        db.member_role(group.id, alice).await.unwrap(),
        Some(Role::Creator)
    );
    let members = db.group_members(group.id).await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(
        (members[0].name.as_str(), members[0].role),
        ("alice", Role::Creator)
    );

    let conversations = db.conversations(alice).await.unwrap();
    assert_eq!(conversations.len(), 1);
    assert_eq!(conversations[0].id, group_conversation(group.id));
    assert_eq!(conversations[0].kind, ConversationKind::Group);
    assert_eq!(
        (conversations[0].group_id, conversations[0].peer_user),
        (group.id, 0)
    );

    assert_eq!(db.group(group.id + 1).await.unwrap(), None);
    let error = db.create_group(999, "ghosts").await.unwrap_err();
    assert!(matches!(error, StoreError::NotFound), "{error:?}");
}

async fn members_are_added_once_with_roles_creator_first(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    let carol = db.new_user("carol").await;
    let group = db.create_group(bob, "g").await.unwrap();
    db.add_member(group.id, alice, Role::Member).await.unwrap();
    db.add_member(group.id, carol, Role::Admin).await.unwrap();

    let error = db
        .add_member(group.id, alice, Role::Admin)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    let error = db
        .add_member(group.id + 1, alice, Role::Member)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::NotFound), "{error:?}");
    let error = db
        .add_member(group.id, 999, Role::Member)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::NotFound), "{error:?}");

    let members = db.group_members(group.id).await.unwrap();
    let roles: Vec<_> = members.iter().map(|m| (m.user_id, m.role)).collect();
    assert_eq!(
        roles,
        [
            (bob, Role::Creator),
            (alice, Role::Member),
            (carol, Role::Admin)
        ]
    );
    assert_eq!(
        db.group_member_ids(group.id).await.unwrap(),
        [alice, bob, carol]
    );

    assert!(db.set_role(group.id, alice, Role::Admin).await.unwrap());
    assert_eq!(
        db.member_role(group.id, alice).await.unwrap(),
        Some(Role::Admin)
    );
    let outsider = db.new_user("dave").await;
    assert!(!db.set_role(group.id, outsider, Role::Admin).await.unwrap());
    assert_eq!(db.member_role(group.id, outsider).await.unwrap(), None);
    assert_eq!(db.groups_of(carol).await.unwrap(), [group]);
}

async fn a_removed_member_loses_the_group_and_its_conversation(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    let group = db.create_group(alice, "g").await.unwrap();
    db.add_member(group.id, bob, Role::Member).await.unwrap();
    let conversation = group_conversation(group.id);
    db.send(alice, Target::Group(group.id), "m1", &[bob]).await;
    assert_eq!(
        db.history(bob, &conversation, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );

    assert!(db.remove_member(group.id, bob).await.unwrap());
    assert!(!db.remove_member(group.id, bob).await.unwrap());
    assert_eq!(db.group_member_ids(group.id).await.unwrap(), [alice]);
    assert!(db.groups_of(bob).await.unwrap().is_empty());
    assert!(db.conversations(bob).await.unwrap().is_empty());
    let error = db.history(bob, &conversation, None, 10).await.unwrap_err();
    assert!(matches!(error, StoreError::Forbidden), "{error:?}");
}

async fn a_dissolved_group_is_gone_for_everyone(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    let group = db.create_group(alice, "g").await.unwrap();
    db.add_member(group.id, bob, Role::Member).await.unwrap();

    assert_eq!(db.dissolve_group(group.id).await.unwrap(), [alice, bob]);
    assert_eq!(db.group(group.id).await.unwrap(), None);
    assert!(db.groups_of(alice).await.unwrap().is_empty());
    assert!(db.group_members(group.id).await.unwrap().is_empty());
    assert_eq!(db.member_role(group.id, alice).await.unwrap(), None);
    assert!(db.conversations(bob).await.unwrap().is_empty());

    let error = db
        .add_member(group.id, bob, Role::Member)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::NotFound), "{error:?}");
    let error = db.dissolve_group(group.id).await.unwrap_err();
    assert!(matches!(error, StoreError::NotFound), "{error:?}");
}

async fn a_late_joiner_sees_only_what_came_after_joining(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    let group = db.create_group(alice, "g").await.unwrap();
    let target = Target::Group(group.id);
    let conversation = group_conversation(group.id);
    for id in ["m1", "m2", "m3"] {
        db.send(alice, target, id, &[]).await;
    }

    db.add_member(group.id, bob, Role::Member).await.unwrap();
    assert!(db
        .history(bob, &conversation, None, 10)
        .await
        .unwrap()
        .is_empty());
    let summary = &db.conversations(bob).await.unwrap()[0];
    assert_eq!(
        (summary.last_seq, summary.read_seq, summary.unread),
        (3, 3, 0)
    );
    assert_eq!(summary.last_message, None);
    let cursors = db.device_cursors(bob, "phone").await.unwrap();
    assert_eq!((cursors[0].cursor, cursors[0].last_seq), (3, 3));

    db.send(alice, target, "m4", &[bob]).await;
    let history = db.history(bob, &conversation, None, 10).await.unwrap();
    assert_eq!(history.iter().map(|m| m.seq).collect::<Vec<_>>(), [4]);
    let summary = &db.conversations(bob).await.unwrap()[0];
    assert_eq!((summary.last_seq, summary.unread), (4, 1));
    assert_eq!(summary.last_message.as_ref().map(|m| m.seq), Some(4));

    // Leaving and coming back starts afresh from the new last seq.
    db.remove_member(group.id, bob).await.unwrap();
    db.send(alice, target, "m5", &[]).await;
    db.add_member(group.id, bob, Role::Member).await.unwrap();
    assert!(db
        .history(bob, &conversation, None, 10)
        .await
        .unwrap()
        .is_empty());
    let cursors = db.device_cursors(bob, "phone").await.unwrap();
    assert_eq!((cursors[0].cursor, cursors[0].last_seq), (5, 5));
}

/// The checks every send makes (friends, role, member list), asked once
/// before each change and again after it: the second answer is the new
/// one. (The SQLite store keeps these answers in memory.)
async fn answers_asked_before_a_change_are_not_kept_after_it(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    db.befriend(alice, bob).await;
    let group = db.create_group(alice, "climbers").await.unwrap().id;
    db.add_member(group, bob, Role::Member).await.unwrap();
    assert!(db.are_friends(alice, bob).await.unwrap());
    assert_eq!(
        db.member_role(group, bob).await.unwrap(),
        Some(Role::Member)
    );
    assert_eq!(db.group_member_ids(group).await.unwrap().len(), 2);

    assert!(db.set_role(group, bob, Role::Admin).await.unwrap());
    assert_eq!(db.member_role(group, bob).await.unwrap(), Some(Role::Admin));
    assert!(db.remove_member(group, bob).await.unwrap());
    assert_eq!(db.member_role(group, bob).await.unwrap(), None);
    assert_eq!(db.group_member_ids(group).await.unwrap(), vec![alice]);
    assert!(db.remove_friend(alice, bob).await.unwrap());
    assert!(!db.are_friends(alice, bob).await.unwrap());

    db.dissolve_group(group).await.unwrap();
    assert_eq!(db.member_role(group, alice).await.unwrap(), None);
    assert!(db.group_member_ids(group).await.unwrap().is_empty());
}
