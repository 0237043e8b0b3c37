//! What only the MySQL backend has: a server that nodes share and connect to.

use futures::future::join_all;
use im_store::{
    MySqlOptions, MySqlStore, OfflineItem, OfflineKey, OfflineRow, ReceiptKind, Store, StoreError,
    StoredMessage, Target, UserId,
};

use crate::test_database::TestDatabase;
use crate::{ack, text, Fixture};

#[tokio::test]
async fn nodes_connecting_together_migrate_once_and_share_the_data() {
    let database = TestDatabase::create().await;
    let url = database.url();
    let (first, second) = tokio::join!(MySqlStore::connect(&url), MySqlStore::connect(&url));
    let (first, second) = (first.unwrap(), second.unwrap());

    let alice = first.create_user("alice", "hash").await.unwrap();
    assert_eq!(second.user(alice.id).await.unwrap(), Some(alice.clone()));
    let error = second.create_user("alice", "other").await.unwrap_err();
    assert!(matches!(error, StoreError::NameTaken), "{error:?}");
    first.close().await;
    second.close().await;

    let again = MySqlStore::connect(&url).await.unwrap();
    assert_eq!(again.user(alice.id).await.unwrap(), Some(alice));
    again.close().await;
    database.drop_now().await;
}

#[tokio::test]
async fn a_store_keeps_at_most_the_connections_it_is_given() {
    let database = TestDatabase::create().await;
    let options = MySqlOptions { connections: 3 };
    let store = MySqlStore::connect_with(&database.url(), options)
        .await
        .unwrap();

    // Forty callers at once: they share the three connections and all get
    // their answer.
    let names: Vec<String> = (0..40).map(|i| format!("u{i}")).collect();
    let created = join_all(names.iter().map(|name| store.create_user(name, "hash"))).await;
    let ids: Vec<UserId> = created.into_iter().map(|r| r.unwrap().id).collect();
    let found = join_all(ids.iter().map(|&id| store.user(id))).await;
    assert!(found.iter().all(|r| matches!(r, Ok(Some(_)))), "{found:?}");
    let open = database.connections().await;
    assert!(
        (2..=3).contains(&open),
        "{open} connections for a pool of 3"
    );

    store.close().await;
    database.drop_now().await;
}

#[tokio::test]
async fn names_and_ids_compare_exactly() {
    let database = TestDatabase::create().await;
    let store = MySqlStore::connect(&database.url()).await.unwrap();

    // The schema's binary collation: no case folding, no accent folding.
    let lower = store.create_user("alice", "hash").await.unwrap();
    let upper = store.create_user("Alice", "hash").await.unwrap();
    let accented = store.create_user("alicé", "hash").await.unwrap();
    assert_ne!(lower.id, upper.id);
    assert_ne!(lower.id, accented.id);
    let (found, _) = store.user_by_name("Alice").await.unwrap().unwrap();
    assert_eq!(found, upper);
    store.close().await;
    database.drop_now().await;
}

#[tokio::test]
async fn a_value_too_long_for_its_column_is_refused_not_cut() {
    let database = TestDatabase::create().await;
    let store = MySqlStore::connect(&database.url()).await.unwrap();
    let alice = store.create_user("alice", "hash").await.unwrap().id;

    // Unlike SQLite's TEXT, the key columns are sized (64 characters), and
    // the session's strict mode makes a longer value an error: cut, two long
    // device ids could become one device.
    let error = store
        .register_device(alice, &"d".repeat(65))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Database(_)), "{error:?}");
    assert!(store.register_device(alice, &"d".repeat(64)).await.unwrap());
    store.close().await;
    database.drop_now().await;
}

/// The pool keeps trying for its acquire timeout (30 s); paused time lets
/// that pass at once.
#[tokio::test(start_paused = true)]
async fn a_server_that_does_not_answer_is_an_error() {
    let error = MySqlStore::connect("mysql://root@127.0.0.1:1/im")
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Database(_)), "{error:?}");
}

/// Users whose acks arrive together.
const ACKERS: usize = 40;

/// `alice`, and `count` friends who each have one message from her.
async fn alice_and_friends(
    store: &MySqlStore,
    count: usize,
) -> (UserId, Vec<(UserId, StoredMessage)>) {
    let alice = store.create_user("alice", "hash").await.unwrap().id;
    let mut friends = Vec::new();
    for i in 0..count {
        let friend = store
            .create_user(&format!("f{i}"), "hash")
            .await
            .unwrap()
            .id;
        let request = store
            .create_friend_request(alice, friend, "hi")
            .await
            .unwrap();
        store
            .resolve_friend_request(request.id, true)
            .await
            .unwrap();
        let batch = [text(
            alice,
            Target::User(friend),
            &format!("m{i}"),
            &[friend],
        )];
        let sent = store.append_messages(&batch).await.unwrap().remove(0);
        friends.push((friend, sent.message));
    }
    (alice, friends)
}

#[tokio::test]
async fn acks_arriving_together_share_one_transaction() {
    let database = TestDatabase::create().await;
    let store = MySqlStore::connect(&database.url()).await.unwrap();
    let (alice, friends) = alice_and_friends(&store, ACKERS).await;

    let acks: Vec<_> = friends.iter().map(|(_, message)| [ack(message)]).collect();
    let before = store.ack_transactions();
    let calls = friends
        .iter()
        .zip(&acks)
        .map(|((friend, _), acked)| store.mark_delivered(*friend, "phone", acked));
    let answers = join_all(calls).await;
    let transactions = store.ack_transactions() - before;
    assert!(
        transactions < ACKERS as u64 / 2,
        "{ACKERS} acks took {transactions} transactions"
    );

    // Each ack got its own receipt, and claimed its own offline row.
    for ((friend, message), answer) in friends.iter().zip(answers) {
        let receipts = answer.unwrap();
        assert_eq!(receipts.len(), 1, "friend {friend}");
        assert_eq!(receipts[0].msg_id, message.msg_id);
        assert_eq!(receipts[0].by_user, *friend);
        assert_eq!(receipts[0].to_user, alice);
        assert!(store.offline_unread(*friend, 10).await.unwrap().is_empty());
        let cursors = store.device_cursors(*friend, "phone").await.unwrap();
        assert_eq!(cursors[0].cursor, message.seq);
    }
    // Alice's DELIVERED receipts wait for her, in the order the acks came;
    // her acks of them, together too, claim each one once.
    let rows = store.offline_unread(alice, 100).await.unwrap();
    let by: Vec<UserId> = rows
        .iter()
        .map(|row| match &row.item {
            OfflineItem::Receipt(r) if r.kind == ReceiptKind::Delivered => r.by_user,
            other => panic!("a DELIVERED receipt was due, not {other:?}"),
        })
        .collect();
    let keys: Vec<OfflineKey> = rows.iter().map(OfflineRow::key).collect();
    let expected: Vec<UserId> = friends.iter().map(|(f, _)| *f).collect();
    assert_eq!(by, expected);
    let (first, second) = keys.split_at(ACKERS / 2);
    let claims = join_all([
        store.claim_offline_keys(alice, first),
        store.claim_offline_keys(alice, &keys),
        store.claim_offline_keys(alice, second),
    ])
    .await;
    let claims: Vec<Vec<OfflineKey>> = claims.into_iter().map(Result::unwrap).collect();
    assert_eq!(claims[0], first, "the first claim takes its keys");
    assert_eq!(claims[1], second, "the second takes what the first left");
    assert!(claims[2].is_empty(), "the third finds them taken");
    assert!(store.offline_unread(alice, 100).await.unwrap().is_empty());
    store.close().await;
    database.drop_now().await;
}

#[tokio::test]
async fn friendship_checks_arriving_together_share_one_read() {
    let database = TestDatabase::create().await;
    let store = MySqlStore::connect(&database.url()).await.unwrap();
    let (alice, friends) = alice_and_friends(&store, ACKERS / 2).await;
    let mut strangers = Vec::new();
    for i in 0..ACKERS / 2 {
        strangers.push(store.create_user(&format!("s{i}"), "h").await.unwrap().id);
    }
    let friends: Vec<UserId> = friends.into_iter().map(|(f, _)| f).collect();
    let gone = friends[0];
    assert!(store.remove_friend(alice, gone).await.unwrap());

    // Both ways round, mixed, with a user and herself.
    let mut asked: Vec<(UserId, UserId, bool)> = vec![(alice, alice, false)];
    for (&friend, &stranger) in friends.iter().zip(&strangers) {
        let yes = friend != gone;
        asked.extend([
            (alice, friend, yes),
            (stranger, alice, false),
            (friend, alice, yes),
            (friend, stranger, false),
        ]);
    }
    let before = store.friend_check_reads();
    let answers = join_all(asked.iter().map(|&(a, b, _)| store.are_friends(a, b))).await;
    let reads = store.friend_check_reads() - before;
    assert!(
        reads < asked.len() as u64 / 4,
        "{} checks took {reads} reads",
        asked.len()
    );
    for (&(a, b, yes), answer) in asked.iter().zip(answers) {
        assert_eq!(answer.unwrap(), yes, "are {a} and {b} friends?");
    }

    // A friendship removed before the checks start is not reported by
    // any of them.
    let other = friends[1];
    assert!(store.remove_friend(other, alice).await.unwrap());
    let again = join_all([
        store.are_friends(alice, other),
        store.are_friends(other, alice),
        store.are_friends(alice, friends[2]),
    ])
    .await;
    let again: Vec<bool> = again.into_iter().map(Result::unwrap).collect();
    assert_eq!(again, [false, false, true]);
    store.close().await;
    database.drop_now().await;
}

#[tokio::test]
async fn an_ack_that_fails_fails_alone() {
    let database = TestDatabase::create().await;
    let store = MySqlStore::connect(&database.url()).await.unwrap();
    let (alice, friends) = alice_and_friends(&store, 2).await;
    let (good, bad) = (&friends[0], &friends[1]);
    let good_ack = [ack(&good.1)];
    let bad_ack = [ack(&bad.1)];

    // A device id longer than its column fails the transaction both acks
    // share; each is then written alone.
    let before = store.ack_transactions();
    let long_device = "d".repeat(65);
    let (good_answer, bad_answer) = tokio::join!(
        store.mark_delivered(good.0, "phone", &good_ack),
        store.mark_delivered(bad.0, &long_device, &bad_ack),
    );
    assert_eq!(store.ack_transactions() - before, 3, "together, then alone");
    assert_eq!(good_answer.unwrap()[0].by_user, good.0);
    assert!(
        matches!(bad_answer, Err(StoreError::Database(_))),
        "{bad_answer:?}"
    );
    assert!(store.offline_unread(good.0, 10).await.unwrap().is_empty());
    assert_eq!(store.offline_unread(bad.0, 10).await.unwrap().len(), 1);
    assert_eq!(store.offline_unread(alice, 10).await.unwrap().len(), 1);
    store.close().await;
    database.drop_now().await;
}

/// MySQL reads the acked messages back (one statement per batch of acks)
/// and skips an id it does not hold. SQLite's one writer takes the ack's
/// fields as given: the connector built them from the stored message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_message_acknowledges_nothing() {
    let db = Fixture::mysql().await;
    let alice = db.new_user("alice").await;
    let bob = db.new_user("bob").await;
    db.befriend(alice, bob).await;
    let mut sent = db
        .send(alice, Target::User(bob), "m1", &[bob])
        .await
        .message;
    sent.msg_id += 1000;

    assert!(db
        .mark_delivered(bob, "phone", &[ack(&sent)])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(db.device_cursors(bob, "phone").await.unwrap()[0].cursor, 0);
    assert_eq!(db.offline_unread(bob, 10).await.unwrap().len(), 1);
    db.close().await;
}
