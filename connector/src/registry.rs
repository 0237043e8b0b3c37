//! The sessions of this connector, by user and device, as the transfer
//! reaches them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use im_proto::ErrorCode;
use im_store::UserId;
use im_transfer::{Connectors, Push};

use crate::mailbox::{Mailbox, Refused};

#[derive(Debug)]
struct Entry {
    link_id: u64,
    device: Box<str>,
    mailbox: Arc<Mailbox>,
}

/// The live sessions of one connector.
#[derive(Debug)]
pub struct Registry {
    connector_id: String,
    push_queue: usize,
    next_link: AtomicU64,
    users: DashMap<UserId, Vec<Entry>>,
}

/// A session's registration: its pushes, lag flag and kill switch.
pub(crate) struct Registration {
    pub(crate) link_id: u64,
    pub(crate) mailbox: Arc<Mailbox>,
}

impl Registry {
    /// An empty registry for connector `connector_id`, queueing at most
    /// `push_queue` pushes per session.
    pub fn new(connector_id: impl Into<String>, push_queue: usize) -> Self {
        Registry {
            connector_id: connector_id.into(),
            push_queue: push_queue.max(1),
            next_link: AtomicU64::new(1),
            users: DashMap::new(),
        }
    }

    /// This connector's id.
    pub fn connector_id(&self) -> &str {
        &self.connector_id
    }

    /// Sessions currently registered.
    pub fn len(&self) -> usize {
        self.users.iter().map(|e| e.value().len()).sum()
    }

    /// True when no session is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The id of a link just accepted: ids grow in the order links arrive.
    pub(crate) fn next_link_id(&self) -> u64 {
        self.next_link.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers the session of link `link_id` (from [`next_link_id`] when
    /// it was accepted) for `device` of `user`. Of two sessions of one
    /// device, the link that arrived last wins and the other is closed with
    /// `CONFLICT`: the device has reconnected. Arrival, not login, decides:
    /// a login held up (its token check waiting for the database) may
    /// finish after the device gave up on it and logged in again, and must
    /// not then close the link the device is using. `None` for such a
    /// stale login: nothing is registered.
    ///
    /// [`next_link_id`]: Registry::next_link_id
    pub(crate) fn register(
        &self,
        user: UserId,
        device: &str,
        link_id: u64,
    ) -> Option<Registration> {
        let mut entries = self.users.entry(user).or_default();
        if let Some(old) = entries.iter().position(|e| &*e.device == device) {
            if entries[old].link_id > link_id {
                return None;
            }
            let old = entries.swap_remove(old);
            old.mailbox.kill(ErrorCode::Conflict);
        }
        let mailbox = Arc::new(Mailbox::new(self.push_queue));
        entries.push(Entry {
            link_id,
            device: device.into(),
            mailbox: mailbox.clone(),
        });
        Some(Registration { link_id, mailbox })
    }

    /// Removes a session if it is still the registered one. Returns true if
    /// it was (and so the device really went away from this connector).
    pub(crate) fn deregister(&self, user: UserId, link_id: u64) -> bool {
        let mut removed = false;
        if let Some(mut entries) = self.users.get_mut(&user) {
            let before = entries.len();
            entries.retain(|e| e.link_id != link_id);
            removed = entries.len() < before;
        }
        self.users.remove_if(&user, |_, v| v.is_empty());
        removed
    }

    /// Every (user, device) with a session here.
    pub fn devices(&self) -> Vec<(UserId, String)> {
        self.users
            .iter()
            .flat_map(|e| {
                let user = *e.key();
                e.value()
                    .iter()
                    .map(move |d| (user, d.device.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Has one device's session re-read from the store what is newer than
    /// what it has (pushes meant for it may have gone astray).
    pub fn resync(&self, user: UserId, device: &str) {
        if let Some(entries) = self.users.get(&user) {
            for entry in entries.iter().filter(|e| &*e.device == device) {
                offer(entry, user, Push::Resync);
            }
        }
    }

    /// Closes every session with `code` (used at shutdown).
    pub fn kill_all(&self, code: ErrorCode) {
        for entry in self.users.iter() {
            for e in entry.value() {
                e.mailbox.kill(code);
            }
        }
    }
}

impl Connectors for Registry {
    fn push(&self, connector: &str, user: UserId, device: &str, push: Push) {
        if connector != self.connector_id {
            tracing::warn!(connector, "push for another connector dropped");
            return;
        }
        let Some(entries) = self.users.get(&user) else {
            return;
        };
        let Some(entry) = entries.iter().find(|e| &*e.device == device) else {
            return;
        };
        offer(entry, user, push);
    }

    fn resync_all(&self) {
        for entries in self.users.iter() {
            for entry in entries.value() {
                offer(entry, *entries.key(), Push::Resync);
            }
        }
    }
}

/// Queues `push` for one session without waiting.
fn offer(entry: &Entry, user: UserId, push: Push) {
    match entry.mailbox.offer(push) {
        Ok(()) | Err(Refused::Killed) => {}
        // A revoked token must not stay logged in, so a device too far
        // behind to be told is cut off.
        Err(Refused::Full(Push::Revoke { .. })) => {
            tracing::warn!(user, device = %entry.device, "slow consumer, closing link");
            entry.mailbox.kill(ErrorCode::SlowConsumer);
        }
        // The queue is full, typically of receipts (a message to a big
        // group answers its sender with one DELIVERED per member). Memory
        // stays bounded and the router does not wait: the push is dropped
        // and the session re-reads the store once it has caught up.
        // Messages and receipts are stored; events are live-only anyway.
        Err(Refused::Full(_)) => entry.mailbox.lag(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::Event;

    #[test]
    fn a_reconnecting_device_replaces_its_old_session() {
        let registry = Registry::new("c1", 4);
        let register = |device| {
            registry
                .register(1, device, registry.next_link_id())
                .unwrap()
        };
        let old = register("phone");
        let _laptop = register("laptop");
        let new = register("phone");
        assert!(old.mailbox.is_killed(), "old link is told to close");
        let mut devices = registry.devices();
        devices.sort();
        assert_eq!(
            devices,
            vec![(1, "laptop".to_owned()), (1, "phone".to_owned())]
        );
        assert!(
            !registry.deregister(1, old.link_id),
            "old link is no longer registered"
        );
        assert!(registry.deregister(1, new.link_id));
        assert_eq!(registry.len(), 1);
    }

    #[test]
    fn a_login_that_finishes_after_a_newer_one_of_its_device_loses() {
        let registry = Registry::new("c1", 4);
        let (held_up, newer) = (registry.next_link_id(), registry.next_link_id());
        let current = registry.register(1, "phone", newer).unwrap();
        assert!(
            registry.register(1, "phone", held_up).is_none(),
            "the stale login is refused"
        );
        assert!(!current.mailbox.is_killed(), "the link in use stays");
        assert!(!registry.deregister(1, held_up));
        assert!(registry.deregister(1, current.link_id));
    }

    #[tokio::test]
    async fn a_full_push_queue_drops_the_push_and_flags_the_session() {
        let registry = Registry::new("c1", 1);
        let session = registry
            .register(1, "phone", registry.next_link_id())
            .unwrap();
        registry.push("c1", 1, "phone", Push::Resync);
        registry.push("c1", 1, "phone", Push::Resync);
        assert!(!session.mailbox.is_killed());
        assert!(matches!(session.mailbox.pop(), Some(Push::Resync)));
        assert!(session.mailbox.pop().is_none(), "the second was dropped");
        // The flag stays until the session asks for it.
        assert!(matches!(
            session.mailbox.next(true, true).await,
            Event::Lagged
        ));
    }

    #[tokio::test]
    async fn a_revoke_that_does_not_fit_cuts_the_device_off() {
        let registry = Registry::new("c1", 1);
        let session = registry
            .register(1, "phone", registry.next_link_id())
            .unwrap();
        let push = || Push::Revoke {
            token_hash: "x".into(),
        };
        registry.push("c1", 1, "phone", push());
        assert!(!session.mailbox.is_killed());
        registry.push("c1", 1, "phone", push());
        assert!(matches!(
            session.mailbox.next(false, false).await,
            Event::Killed(ErrorCode::SlowConsumer)
        ));
        // Pushes for another connector or an unknown device go nowhere.
        registry.push("c2", 1, "phone", push());
        registry.push("c1", 2, "phone", push());
    }
}
