//! What only the SQLite backend has: a file on disk, in WAL mode.

use im_store::{SqliteStore, Store};

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
