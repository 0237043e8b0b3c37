use im_store::{hash_token, FileRecord, StoreError};

use crate::Fixture;

backend_tests!(
    users_are_found_by_name_and_id,
    a_taken_name_is_refused,
    tokens_live_until_revoked,
    a_token_for_an_unknown_user_is_not_found,
    files_are_recorded_once,
);

async fn users_are_found_by_name_and_id(db: &Fixture) {
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

async fn a_taken_name_is_refused(db: &Fixture) {
    let alice = db.new_user("alice").await;
    let error = db.create_user("alice", "other").await.unwrap_err();
    assert!(matches!(error, StoreError::NameTaken), "{error:?}");
    let bob = db.new_user("bob").await;
    assert_ne!(alice, bob);
}

async fn tokens_live_until_revoked(db: &Fixture) {
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

async fn a_token_for_an_unknown_user_is_not_found(db: &Fixture) {
    let error = db.create_token(42, &hash_token("t")).await.unwrap_err();
    assert!(matches!(error, StoreError::NotFound), "{error:?}");
}

async fn files_are_recorded_once(db: &Fixture) {
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
