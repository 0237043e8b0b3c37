//! What every send checks and what rarely changes: who is friends with whom,
//! and who is in which group with what role. Without it each message costs
//! a read on the reader pool (two thread wakeups in sqlx) before it is even
//! queued; with it, a lock and a hash lookup. Live tokens too, which every
//! login checks, and which change only when one is revoked.
//!
//! The cache is exact, not eventually right. Every write that can change
//! an answer goes through this process's store and calls
//! [`Acl::changed`] after it commits, which clears everything and bumps the
//! epoch. A reader notes the epoch before its query and keeps the answer
//! only if the epoch is the same after it, under the same lock: an answer
//! read before a commit is never kept after that commit.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crate::types::{GroupId, Role, UserId};

/// Entries of each kind kept before the cache starts over.
const MAX_ENTRIES: usize = 1 << 20;

#[derive(Debug, Default)]
pub(super) struct Acl {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    epoch: u64,
    /// Pairs known to be friends. A "no" is not kept: it is rare in
    /// traffic (a refused send) and would need its own invalidation.
    friends: HashSet<(UserId, UserId)>,
    /// Members' roles; a non-member is not kept.
    roles: HashMap<(GroupId, UserId), Role>,
    /// Member lists.
    members: HashMap<GroupId, Vec<UserId>>,
    /// Live tokens (by hash) and their users; an unknown or revoked token
    /// is not kept.
    tokens: HashMap<String, UserId>,
}

impl Acl {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The epoch to pass to the `keep_` calls after a query.
    pub(super) fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Something that can change an answer has committed.
    pub(super) fn changed(&self) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.friends.clear();
        inner.roles.clear();
        inner.members.clear();
        inner.tokens.clear();
    }

    pub(super) fn token_user(&self, token_hash: &str) -> Option<UserId> {
        self.lock().tokens.get(token_hash).copied()
    }

    pub(super) fn keep_token(&self, epoch: u64, token_hash: &str, user: UserId) {
        let mut inner = self.lock();
        if inner.epoch == epoch {
            if inner.tokens.len() >= MAX_ENTRIES {
                inner.tokens.clear();
            }
            inner.tokens.insert(token_hash.to_owned(), user);
        }
    }

    pub(super) fn friends(&self, a: UserId, b: UserId) -> bool {
        self.lock().friends.contains(&(a, b))
    }

    pub(super) fn keep_friends(&self, epoch: u64, a: UserId, b: UserId) {
        let mut inner = self.lock();
        if inner.epoch == epoch {
            if inner.friends.len() >= MAX_ENTRIES {
                inner.friends.clear();
            }
            inner.friends.insert((a, b));
        }
    }

    pub(super) fn role(&self, group: GroupId, user: UserId) -> Option<Role> {
        self.lock().roles.get(&(group, user)).copied()
    }

    pub(super) fn keep_role(&self, epoch: u64, group: GroupId, user: UserId, role: Role) {
        let mut inner = self.lock();
        if inner.epoch == epoch {
            if inner.roles.len() >= MAX_ENTRIES {
                inner.roles.clear();
            }
            inner.roles.insert((group, user), role);
        }
    }

    pub(super) fn members(&self, group: GroupId) -> Option<Vec<UserId>> {
        self.lock().members.get(&group).cloned()
    }

    pub(super) fn keep_members(&self, epoch: u64, group: GroupId, members: &[UserId]) {
        let mut inner = self.lock();
        if inner.epoch == epoch {
            let kept: usize = inner.members.values().map(Vec::len).sum();
            if kept + members.len() > MAX_ENTRIES {
                inner.members.clear();
            }
            inner.members.insert(group, members.to_vec());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_read_across_a_change_is_not_kept() {
        let acl = Acl::default();
        let epoch = acl.epoch();
        acl.changed();
        acl.keep_friends(epoch, 1, 2);
        acl.keep_role(epoch, 9, 1, Role::Member);
        acl.keep_members(epoch, 9, &[1, 2]);
        acl.keep_token(epoch, "t", 1);
        assert!(!acl.friends(1, 2));
        assert_eq!(acl.role(9, 1), None);
        assert_eq!(acl.members(9), None);
        assert_eq!(acl.token_user("t"), None);
    }

    #[test]
    fn a_change_forgets_what_was_kept() {
        let acl = Acl::default();
        let epoch = acl.epoch();
        acl.keep_friends(epoch, 1, 2);
        acl.keep_role(epoch, 9, 1, Role::Creator);
        acl.keep_members(epoch, 9, &[1, 2]);
        acl.keep_token(epoch, "t", 1);
        assert!(acl.friends(1, 2));
        assert!(!acl.friends(2, 1), "kept as asked, not both ways");
        assert_eq!(acl.role(9, 1), Some(Role::Creator));
        assert_eq!(acl.members(9), Some(vec![1, 2]));
        assert_eq!(acl.token_user("t"), Some(1));
        acl.changed();
        assert!(!acl.friends(1, 2));
        assert_eq!(acl.role(9, 1), None);
        assert_eq!(acl.members(9), None);
        assert_eq!(acl.token_user("t"), None);
    }
}
