use im_store::{hash_token, FileRecord, SqliteStore, Store, StoreError};

use crate::open;

#[tokio::test]
async fn users_are_found_by_name_and_id() {
    let db = open().await;
    let alice = db.create_user("alice", "phc-hash").await.unwrap();
    assert_eq!(alice.name, "alice");
    assert!(alice.id > 0);

    let (found, hash) = db.user_by_name("alice").await.unwrap().unwrap();
    assert_eq!(found, alice);
    assert_eq!(hash, "phc-hash");
    assert_eq!(db.user(alice.id).await.unwrap(), Some(alice));
    assert_eq!(db.user_by_name("bob").await.unwrap(), None);
    assert_eq!(db.user(9999).await.unwrap(), None);
    assert_eq!(db.user(u64::MAX).await.unwrap(), None);
}

#[tokio::test]
async fn a_taken_name_is_refused() {
    let db = open().await;
    let alice = db.new_user("alice").await;
    let error = db.create_user("alice", "other").await.unwrap_err();
    assert!(matches!(error, StoreError::NameTaken), "{error:?}");
    let bob = db.new_user("bob").await;
    assert_ne!(alice, bob);
}

#[tokio::test]
async fn tokens_live_until_revoked() {
    let db = open().await;
    let alice = db.new_user("alice").await;
    let token = hash_token("secret");
    db.create_token(alice, &token).await.unwrap();

    assert_eq!(db.token_user(&token).await.unwrap(), Some(alice));
    assert_eq!(db.token_user(&hash_token("other")).await.unwrap(), None);
    assert!(db.revoke_token(&token).await.unwrap());
    assert_eq!(db.token_user(&token).await.unwrap(), None);
    assert!(!db.revoke_token(&token).await.unwrap());
    assert!(!db.revoke_token(&hash_token("never")).await.unwrap());
}

#[tokio::test]
async fn a_token_for_an_unknown_user_is_not_found() {
    let db = open().await;
    let error = db.create_token(42, &hash_token("t")).await.unwrap_err();
    assert!(matches!(error, StoreError::NotFound), "{error:?}");
}

#[tokio::test]
async fn files_are_recorded_once() {
    let db = open().await;
    let alice = db.new_user("alice").await;
    let file = FileRecord {
        id: "0b7f".to_owned(),
        owner: alice,
        name: "cat.png".to_owned(),
        mime: "image/png".to_owned(),
        size: 12_345,
        created_at_ms: 1_700_000_000_000,
    };
    db.create_file(&file).await.unwrap();
    assert_eq!(db.file("0b7f").await.unwrap(), Some(file.clone()));
    assert_eq!(db.file("nope").await.unwrap(), None);

    let error = db.create_file(&file).await.unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    let orphan = FileRecord {
        id: "other".to_owned(),
        owner: 999,
        ..file
    };
    let error = db.create_file(&orphan).await.unwrap_err();
    assert!(matches!(error, StoreError::NotFound), "{error:?}");
}

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
