//! The SQLite store against the `Store` contract. Each test opens a fresh
//! database file in its own temporary directory.

mod accounts;
mod devices;
mod friends;
mod groups;
mod messages;
mod offline;
mod receipts;

use std::ops::Deref;

use im_store::{
    Appended, DeliveredMessage, NewMessage, SqliteStore, Store, StoredMessage, Target, UserId,
};
use tempfile::TempDir;

/// A store on a fresh file; the directory goes when this is dropped.
pub struct Fixture {
    store: SqliteStore,
    _dir: TempDir,
}

impl Deref for Fixture {
    type Target = SqliteStore;

    fn deref(&self) -> &SqliteStore {
        &self.store
    }
}

/// A store on a fresh file.
pub async fn open() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("im.db")).await.unwrap();
    Fixture { store, _dir: dir }
}

impl Fixture {
    /// A new user called `name`.
    pub async fn new_user(&self, name: &str) -> UserId {
        self.create_user(name, "hash").await.unwrap().id
    }

    /// Makes `a` and `b` friends through a request `b` accepts.
    pub async fn befriend(&self, a: UserId, b: UserId) {
        let request = self.create_friend_request(a, b, "hi").await.unwrap();
        self.resolve_friend_request(request.id, true).await.unwrap();
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

/// A text message from `from` to `target` for `recipients`.
pub fn text(
    from: UserId,
    target: Target,
    client_msg_id: &str,
    recipients: &[UserId],
) -> NewMessage {
    NewMessage {
        from_user: from,
        client_msg_id: client_msg_id.to_owned(),
        target,
        content_type: 1,
        text: format!("text of {client_msg_id}"),
        file: None,
        recipients: recipients.to_vec(),
    }
}

/// The ack of a device for `message`.
pub fn ack(message: &StoredMessage) -> DeliveredMessage {
    DeliveredMessage {
        msg_id: message.msg_id,
        conversation_id: message.conversation_id.clone(),
        seq: message.seq,
    }
}
