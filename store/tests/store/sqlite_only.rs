//! What only the SQLite backend has: a file on disk, in WAL mode.

use im_store::{SqliteStore, Store, UserId};

#[tokio::test]
async fn open_makes_the_directory_and_reopens_the_same_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("deeper").join("im.db");

    let store = SqliteStore::open(&path).await.unwrap();
    let alice = store.create_user("alice", "hash").await.unwrap();
    store.close().await;

    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.user(alice.id).await.unwrap(), Some(alice));
    store.close().await;
}

#[tokio::test]
async fn the_file_is_written_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("im.db");
    let store = SqliteStore::open(&path).await.unwrap();
    store.create_user("alice", "hash").await.unwrap();
    assert!(dir.path().join("im.db-wal").exists());
    store.close().await;
}

/// A store in a fresh directory (kept while the first value lives) with
/// two users, alice and bob.
async fn alice_and_bob() -> (tempfile::TempDir, SqliteStore, UserId, UserId) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("im.db")).await.unwrap();
    let alice = store.create_user("alice", "hash").await.unwrap().id;
    let bob = store.create_user("bob", "hash").await.unwrap().id;
    (dir, store, alice, bob)
}

/// Appends and acks that arrive together share one transaction. One that
/// fails (here a sender that does not exist, which the foreign key refuses)
/// must fail alone: the others in its transaction are written and answered.
#[tokio::test]
async fn a_failing_write_fails_only_its_own_caller() {
    let (_dir, store, alice, bob) = alice_and_bob().await;
    let target = im_store::Target::User(bob);
    // Spawned on this test's one thread, they all queue before the writer
    // task runs, so they reach it together.
    let mut calls = Vec::new();
    for i in 0..20 {
        let (store, from) = (store.clone(), if i == 7 { 999_999 } else { alice });
        let message = crate::text(from, target, &format!("m{i}"), &[bob]);
        calls.push(tokio::spawn(async move {
            store.append_messages(&[message]).await
        }));
    }
    let mut seqs = Vec::new();
    for (i, call) in calls.into_iter().enumerate() {
        let result = call.await.unwrap();
        if i == 7 {
            assert!(result.is_err(), "a message from no user was stored");
        } else {
            seqs.push(
                result.expect("a good write failed with a bad one")[0]
                    .message
                    .seq,
            );
        }
    }
    assert_eq!(seqs, (1..=19).collect::<Vec<u64>>());
    store.close().await;
}

/// A read mark by a non-member shares the writer's queue with appends: it
/// is refused, and the append beside it is stored.
#[tokio::test]
async fn a_refused_read_mark_leaves_its_batch_alone() {
    let (_dir, store, alice, bob) = alice_and_bob().await;
    let target = im_store::Target::User(bob);
    let (first, reader) = (store.clone(), store.clone());
    let message = crate::text(alice, target, "m0", &[bob]);
    let append = tokio::spawn(async move { first.append_messages(&[message]).await });
    let read = tokio::spawn(async move { reader.mark_read(bob, "g42", 1).await });
    assert!(matches!(
        read.await.unwrap(),
        Err(im_store::StoreError::Forbidden)
    ));
    assert_eq!(append.await.unwrap().unwrap()[0].message.seq, 1);
    store.close().await;
}

/// Once closed, the store refuses the hot writes too (they run on a thread
/// and connection of their own, not on the pools `close` shuts), rather
/// than writing behind the caller's back.
#[tokio::test]
async fn a_closed_store_refuses_hot_writes() {
    let (_dir, store, alice, bob) = alice_and_bob().await;
    let target = im_store::Target::User(bob);
    let before = crate::text(alice, target, "before", &[bob]);
    assert_eq!(store.append_messages(&[before]).await.unwrap().len(), 1);
    store.close().await;
    let after = crate::text(alice, target, "after", &[bob]);
    assert!(
        store.append_messages(&[after]).await.is_err(),
        "a message was stored after close"
    );
    assert!(store.register_device(alice, "phone").await.is_err());
}
