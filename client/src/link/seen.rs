//! Which chat messages this link has already handed to the application.
//!
//! The server sends each message to a device once, but a message can still
//! arrive twice (a resend after reconnect, a catch-up racing a live push), so
//! the client drops a `msg_id` it already has. Memory stays bounded: the last
//! `capacity` message ids, plus per conversation a window of the last
//! `capacity` sequence numbers above a floor (anything at or below the floor
//! counts as seen).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

/// Per-conversation window of seen sequence numbers.
#[derive(Debug, Default)]
struct SeqWindow {
    floor: u64,
    seen: BTreeSet<u64>,
}

/// Bounded memory of delivered messages.
#[derive(Debug)]
pub(crate) struct SeenMessages {
    capacity: usize,
    ids: HashSet<u64>,
    order: VecDeque<u64>,
    conversations: HashMap<String, SeqWindow>,
}

impl SeenMessages {
    /// Remembers up to `capacity` ids, and `capacity` seqs per conversation.
    pub(crate) fn new(capacity: usize) -> Self {
        SeenMessages {
            capacity: capacity.max(1),
            ids: HashSet::new(),
            order: VecDeque::new(),
            conversations: HashMap::new(),
        }
    }

    /// Records a message; false when it was seen before (drop it).
    /// Zero ids or seqs are not tracked: a message without them is let through.
    pub(crate) fn insert(&mut self, conversation_id: &str, seq: u64, msg_id: u64) -> bool {
        if msg_id != 0 && self.ids.contains(&msg_id) {
            return false;
        }
        if seq != 0 && !conversation_id.is_empty() {
            let window = self
                .conversations
                .entry(conversation_id.to_string())
                .or_default();
            if seq <= window.floor || !window.seen.insert(seq) {
                return false;
            }
            if window.seen.len() > self.capacity {
                if let Some(lowest) = window.seen.pop_first() {
                    window.floor = lowest;
                }
            }
        }
        if msg_id != 0 {
            self.ids.insert(msg_id);
            self.order.push_back(msg_id);
            if self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.ids.remove(&old);
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_id_is_delivered_once() {
        let mut seen = SeenMessages::new(8);
        assert!(seen.insert("u1-2", 1, 100));
        assert!(!seen.insert("u1-2", 1, 100));
        // The same id under another seq is still the same message.
        assert!(!seen.insert("u1-2", 9, 100));
    }

    #[test]
    fn the_same_seq_of_a_conversation_is_the_same_message() {
        let mut seen = SeenMessages::new(8);
        assert!(seen.insert("g3", 5, 100));
        assert!(!seen.insert("g3", 5, 0));
        assert!(seen.insert("g4", 5, 101), "other conversations are apart");
    }

    #[test]
    fn late_messages_inside_the_window_are_let_through() {
        let mut seen = SeenMessages::new(8);
        assert!(seen.insert("g3", 10, 110));
        assert!(seen.insert("g3", 8, 108));
        assert!(seen.insert("g3", 9, 109));
    }

    #[test]
    fn memory_stays_bounded() {
        let mut seen = SeenMessages::new(4);
        for seq in 1..=100 {
            assert!(seen.insert("g1", seq, 1000 + seq));
        }
        assert_eq!(seen.ids.len(), 4);
        assert_eq!(seen.conversations["g1"].seen.len(), 4);
        // Old duplicates are still caught by the seq floor.
        assert!(!seen.insert("g1", 3, 1003));
    }
}
