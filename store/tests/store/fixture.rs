//! A fresh store of either backend behind `dyn Store`, and the few steps
//! most tests start with.

use std::ops::Deref;
use std::sync::Arc;

use im_store::{
    Appended, MySqlStore, NewMessage, SqliteStore, Store, StoredMessage, Target, UserId,
};
use tempfile::TempDir;

use crate::test_database::TestDatabase;
use crate::text;

/// A store on fresh storage; the storage goes when this is closed or dropped.
pub struct Fixture {
    store: Arc<dyn Store>,
    // Dropped after `store`, so no connection of ours outlives the storage.
    backend: Backend,
}

/// The concrete store and the storage it lives in.
enum Backend {
    Sqlite(SqliteStore, TempDir),
    MySql(MySqlStore, TestDatabase),
}

impl Deref for Fixture {
    type Target = dyn Store;

    fn deref(&self) -> &dyn Store {
        &*self.store
    }
}

impl Fixture {
    /// A SQLite store on a new file in a temporary directory.
    pub async fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("im.db")).await.unwrap();
        Fixture {
            store: Arc::new(store.clone()),
            backend: Backend::Sqlite(store, dir),
        }
    }

    /// A MySQL store on a new database of the test server.
    pub async fn mysql() -> Fixture {
        let database = TestDatabase::create().await;
        let store = MySqlStore::connect(&database.url()).await.unwrap();
        Fixture {
            store: Arc::new(store.clone()),
            backend: Backend::MySql(store, database),
        }
    }

    /// Another handle on the store, for tasks of its own.
    pub fn shared(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
    }

    /// Closes the store and removes its storage.
    pub async fn close(self) {
        let Fixture { store, backend } = self;
        drop(store);
        match backend {
            Backend::Sqlite(store, _dir) => store.close().await,
            Backend::MySql(store, database) => {
                store.close().await;
                database.drop_now().await;
            }
        }
    }

    /// A new user called `name`.
    pub async fn new_user(&self, name: &str) -> UserId {
        self.create_user(name, "hash").await.unwrap().id
    }

    /// Makes `a` and `b` friends through a request `b` accepts.
    pub async fn befriend(&self, a: UserId, b: UserId) {
        let request = self.create_friend_request(a, b, "hi").await.unwrap();
        self.resolve_friend_request(request.id, true).await.unwrap();
    }

    /// Appends `count` text messages from `from` to `to` in one batch and
    /// returns the stored messages, in order.
    pub async fn send_many(&self, from: UserId, to: UserId, count: usize) -> Vec<StoredMessage> {
        let batch: Vec<NewMessage> = (0..count)
            .map(|i| text(from, Target::User(to), &format!("m{i}"), &[to]))
            .collect();
        self.append_messages(&batch)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.message)
            .collect()
    }

    /// Appends one text message and returns what the store made of it.
    pub async fn send(
        &self,
        from: UserId,
        target: Target,
        client_msg_id: &str,
        recipients: &[UserId],
    ) -> Appended {
        let batch = [text(from, target, client_msg_id, recipients)];
        self.append_messages(&batch).await.unwrap().remove(0)
    }
}
