//! Finds each recipient device in user status and hands it the push.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use im_offline_worker::{CommitListener, Committed};
use im_proto::Body;
use im_store::{ReceiptRecord, UserId};
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
        for c in batch.iter().filter(|c| !c.appended.duplicate) {
            let message = Arc::new(c.appended.message.clone());
            let origin: Arc<str> = c.origin_device.as_str().into();
            // Recipients and the sender's other devices, in one look-up.
            let mut users = Vec::with_capacity(c.recipients.len() + 1);
            users.push(c.from_user);
            users.extend(c.recipients.iter().copied().filter(|u| *u != c.from_user));
            self.fan_out(&users, |_| Push::Message {
                message: message.clone(),
                origin_device: origin.clone(),
            })
            .await;
        }
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
