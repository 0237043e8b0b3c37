//! Every backend against the `Store` contract. Each test body takes a
//! [`Fixture`] and runs once per backend, on a fresh store: SQLite in a
//! temporary directory, MySQL in a database of its own on the server
//! `IM_TEST_MYSQL_URL` names (default `mysql://root@127.0.0.1:3306`; see
//! `scripts/ensure-mariadb.sh`). The MySQL tests fail, never skip, when that
//! server does not answer.

/// Instantiates test bodies for every backend: for each `name`, an
/// `async fn name(db: &Fixture)` beside the call becomes `sqlite::name` and
/// `mysql::name`, each a test that opens a fresh store, runs the body and
/// tears the store down.
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = $crate::Fixture::sqlite().await;
                    super::$name(&db).await;
                    db.close().await;
                }
            )*
        }

        mod mysql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = $crate::Fixture::mysql().await;
                    super::$name(&db).await;
                    db.close().await;
                }
            )*
        }
    };
}

mod accounts;
mod concurrency;
mod devices;
mod fixture;
mod friends;
mod groups;
mod messages;
mod mysql_only;
mod offline;
mod receipts;
mod sqlite_only;
mod test_database;

use im_store::{DeliveredMessage, NewMessage, StoredMessage, Target, UserId};

pub use fixture::Fixture;

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
    DeliveredMessage::from(message)
}
