//! Finds each recipient device in user status and hands it the push.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use im_offline_worker::{CommitListener, Committed};
use im_proto::Body;
use im_store::{ReceiptRecord, StoredMessage, UserId};
use im_user_status::UserStatus;

use crate::{Connectors, Notifier, Push};

/// The longest single wait between retries of a failed status look-up
/// (50 ms doubling: about 1.5 s in all).
const LOOKUP_RETRY_UP_TO: Duration = Duration::from_millis(800);

/// Routes pushes to the connectors holding each recipient's devices. Offline
/// recipients need nothing here: their offline rows were written with the
/// message, and they catch up at login.
pub struct Router {
    status: Arc<dyn UserStatus>,
    connectors: Arc<dyn Connectors>,
}

impl Router {
    /// A router over a status backend and the connectors.
    pub fn new(status: Arc<dyn UserStatus>, connectors: Arc<dyn Connectors>) -> Self {
        Router { status, connectors }
    }

    /// Where devices are.
    pub fn status(&self) -> &Arc<dyn UserStatus> {
        &self.status
    }

    /// Pushes `push(i)` to every online device of `users[i]`, with one status
    /// round trip for all of them.
    async fn fan_out(&self, users: &[UserId], push: impl Fn(usize) -> Push) {
        let mut wait = Duration::from_millis(50);
        let located = loop {
            match self.status.lookup_many(users).await {
                Ok(located) => break located,
                // A short outage (a reconnect) is waited out.
                Err(error) if wait <= LOOKUP_RETRY_UP_TO => {
                    tracing::debug!(%error, "status lookup failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(error) => {
                    // Stored items reach devices at their next sync: a
                    // connector resyncs the devices a restarted Redis lost.
                    tracing::warn!(%error, "status lookup failed; recipients catch up later");
                    return;
                }
            }
        };
        for (i, (user, devices)) in users.iter().zip(located).enumerate() {
            for loc in devices {
                self.connectors
                    .push(&loc.connector, *user, &loc.device, push(i));
            }
        }
    }

    /// Sends receipts to every online device of their message's sender.
    pub async fn route_receipts(&self, receipts: Vec<ReceiptRecord>) {
        if receipts.is_empty() {
            return;
        }
        let senders: Vec<UserId> = receipts.iter().map(|r| r.to_user).collect();
        let receipts: Vec<Arc<ReceiptRecord>> = receipts.into_iter().map(Arc::new).collect();
        self.fan_out(&senders, |i| Push::Receipt(receipts[i].clone()))
            .await;
    }
}

#[async_trait]
impl CommitListener for Router {
    async fn committed(&self, batch: &[Committed]) {
        // The recipients and the sender's other devices of many messages in
        // one look-up: one per message took a batch of a few hundred as
        // many status round trips, one after another, in the worker's
        // loop. Bounded, so a batch of big-group messages does not hold
        // every member of every message at once. Pushes still go out
        // message by message, in batch order.
        let mut messages = Vec::new();
        let mut users = Vec::new();
        let mut message_of = Vec::new();
        for c in batch.iter().filter(|c| !c.appended.duplicate) {
            let index = messages.len();
            let origin: Arc<str> = c.origin_device.as_str().into();
            messages.push((Arc::new(c.appended.message.clone()), origin));
            users.push(c.from_user);
            message_of.push(index);
            for &user in c.recipients.iter().filter(|u| **u != c.from_user) {
                users.push(user);
                message_of.push(index);
            }
            if users.len() >= USERS_PER_LOOKUP {
                self.push_messages(&messages, &users, &message_of).await;
                (messages, users, message_of) = (Vec::new(), Vec::new(), Vec::new());
            }
        }
        self.push_messages(&messages, &users, &message_of).await;
    }
}

/// Users past which a committed batch is looked up and pushed before the
/// rest of it is gathered.
const USERS_PER_LOOKUP: usize = 16_384;

impl Router {
    /// Pushes `messages[message_of[i]]` to `users[i]`, in one look-up.
    async fn push_messages(
        &self,
        messages: &[(Arc<StoredMessage>, Arc<str>)],
        users: &[UserId],
        message_of: &[usize],
    ) {
        if users.is_empty() {
            return;
        }
        self.fan_out(users, |i| {
            let (message, origin) = &messages[message_of[i]];
            Push::Message {
                message: message.clone(),
                origin_device: origin.clone(),
            }
        })
        .await;
    }
}

#[async_trait]
impl Notifier for Router {
    async fn notify(&self, users: &[UserId], event: Body) {
        let event = Arc::new(event);
        self.fan_out(users, |_| Push::Event(event.clone())).await;
    }

    async fn revoke(&self, user: UserId, token_hash: &str) {
        let token_hash: Arc<str> = token_hash.into();
        self.fan_out(&[user], |_| Push::Revoke {
            token_hash: token_hash.clone(),
        })
        .await;
    }
}
