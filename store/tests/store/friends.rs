use im_store::{direct_conversation, ConversationKind, RequestStatus, StoreError, Target};

use crate::Fixture;

backend_tests!(
    an_accepted_request_makes_friends_both_ways_with_a_conversation,
    a_pending_request_blocks_another_either_way,
    friends_cannot_ask_again_and_a_resolved_request_stays_resolved,
    a_rejected_request_changes_only_its_status,
    bad_requests_are_refused,
    pending_requests_are_newest_first,
    friends_are_listed_by_name_with_their_own_remarks,
    removing_a_friend_keeps_the_conversation_history,
);

async fn an_accepted_request_makes_friends_both_ways_with_a_conversation(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;

    let request = db
        .create_friend_request(alice, bob, "hi bob")
        .await
        .unwrap();
    assert_eq!(request.status, RequestStatus::Pending);
    assert_eq!((request.from_user, request.to_user), (alice, bob));
    assert_eq!(
        (request.from_name.as_str(), request.to_name.as_str()),
        ("alice", "bob")
    );
    assert_eq!(request.note, "hi bob");
    assert_eq!(
        db.friend_request(request.id).await.unwrap(),
        Some(request.clone())
    );
    assert_eq!(
        db.pending_friend_requests(alice).await.unwrap(),
        std::slice::from_ref(&request)
    );
    assert_eq!(
        db.pending_friend_requests(bob).await.unwrap(),
        std::slice::from_ref(&request)
    );

    let accepted = db.resolve_friend_request(request.id, true).await.unwrap();
    assert_eq!(accepted.status, RequestStatus::Accepted);
    assert_eq!(db.friend_request(request.id).await.unwrap(), Some(accepted));
    assert!(db.pending_friend_requests(bob).await.unwrap().is_empty());
    assert!(db.are_friends(alice, bob).await.unwrap());
    assert!(db.are_friends(bob, alice).await.unwrap());

    let of_alice = db.friends(alice).await.unwrap();
    assert_eq!(of_alice.len(), 1);
    assert_eq!(
        (of_alice[0].user_id, of_alice[0].name.as_str()),
        (bob, "bob")
    );
    assert_eq!(of_alice[0].remark, None);
    assert_eq!(db.friends(bob).await.unwrap()[0].user_id, alice);

    for (user, peer) in [(alice, bob), (bob, alice)] {
        let conversations = db.conversations(user).await.unwrap();
        assert_eq!(conversations.len(), 1);
        let direct = &conversations[0];
        assert_eq!(direct.id, direct_conversation(alice, bob));
        assert_eq!(direct.kind, ConversationKind::Direct);
        assert_eq!((direct.peer_user, direct.group_id), (peer, 0));
        assert_eq!((direct.last_seq, direct.unread), (0, 0));
        assert_eq!(direct.last_message, None);
    }
}

async fn a_pending_request_blocks_another_either_way(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    db.create_friend_request(alice, bob, "").await.unwrap();

    for (from, to) in [(alice, bob), (bob, alice)] {
        let error = db.create_friend_request(from, to, "").await.unwrap_err();
        assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    }
}

async fn friends_cannot_ask_again_and_a_resolved_request_stays_resolved(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    let request = db.create_friend_request(alice, bob, "").await.unwrap();
    db.resolve_friend_request(request.id, true).await.unwrap();

    let error = db.create_friend_request(bob, alice, "").await.unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    for accept in [true, false] {
        let error = db
            .resolve_friend_request(request.id, accept)
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    }
}

async fn a_rejected_request_changes_only_its_status(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    let request = db.create_friend_request(alice, bob, "").await.unwrap();

    let rejected = db.resolve_friend_request(request.id, false).await.unwrap();
    assert_eq!(rejected.status, RequestStatus::Rejected);
    assert!(!db.are_friends(alice, bob).await.unwrap());
    assert!(db.friends(bob).await.unwrap().is_empty());
    assert!(db.conversations(alice).await.unwrap().is_empty());
    // Nothing is pending any more, so either may ask again.
    db.create_friend_request(bob, alice, "sorry").await.unwrap();
}

async fn bad_requests_are_refused(db: &Fixture) {
    let alice = db.new_user("alice").await;

    let error = db
        .create_friend_request(alice, alice, "")
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    let error = db.create_friend_request(alice, 999, "").await.unwrap_err();
    assert!(matches!(error, StoreError::NotFound), "{error:?}");
    let error = db.resolve_friend_request(12345, true).await.unwrap_err();
    assert!(matches!(error, StoreError::NotFound), "{error:?}");
    assert_eq!(db.friend_request(12345).await.unwrap(), None);
}

async fn pending_requests_are_newest_first(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    let carol = db.new_user("carol").await;
    let first = db.create_friend_request(bob, alice, "").await.unwrap();
    let second = db.create_friend_request(alice, carol, "").await.unwrap();

    let ids: Vec<u64> = db
        .pending_friend_requests(alice)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, [second.id, first.id]);
    assert_eq!(db.pending_friend_requests(carol).await.unwrap(), [second]);
}

async fn friends_are_listed_by_name_with_their_own_remarks(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let zoe = db.new_user("zoe").await;
    let bob = db.new_user("bob").await;
    let carol = db.new_user("carol").await;
    db.befriend(alice, zoe).await;
    db.befriend(bob, alice).await;

    let names: Vec<String> = db
        .friends(alice)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, ["bob", "zoe"]);

    assert!(db.set_remark(alice, bob, Some("Bobby")).await.unwrap());
    let friends = db.friends(alice).await.unwrap();
    assert_eq!(friends[0].remark.as_deref(), Some("Bobby"));
    // A remark is its owner's alone.
    assert_eq!(db.friends(bob).await.unwrap()[0].remark, None);

    assert!(db.set_remark(alice, bob, None).await.unwrap());
    assert_eq!(db.friends(alice).await.unwrap()[0].remark, None);
    assert!(!db.set_remark(alice, carol, Some("stranger")).await.unwrap());
}

async fn removing_a_friend_keeps_the_conversation_history(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    db.befriend(alice, bob).await;
    db.send(alice, Target::User(bob), "m1", &[bob]).await;

    assert!(db.remove_friend(bob, alice).await.unwrap());
    assert!(!db.are_friends(alice, bob).await.unwrap());
    assert!(db.friends(alice).await.unwrap().is_empty());
    assert!(!db.remove_friend(alice, bob).await.unwrap());

    let conversation = direct_conversation(alice, bob);
    assert_eq!(
        db.history(bob, &conversation, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );

    // Friends again: the same conversation, the old history still visible.
    db.befriend(bob, alice).await;
    db.send(bob, Target::User(alice), "m2", &[alice]).await;
    let history = db.history(alice, &conversation, None, 10).await.unwrap();
    let seqs: Vec<u64> = history.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [2, 1]);
}
