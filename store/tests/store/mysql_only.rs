//! What only the MySQL backend has: a server that nodes share and connect to.

use im_store::{MySqlStore, Store, StoreError};

use crate::test_database::TestDatabase;

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
