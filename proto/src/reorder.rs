//! The receiver side of a link: `lastId` and a bounded buffer for frames that
//! arrive ahead of a gap. Plain data, no I/O.

use std::collections::BTreeMap;

/// What became of a received frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Accepted<T> {
    /// `id <= lastId` or already buffered: ack again, do not process.
    Duplicate,
    /// Ahead of a gap: held until the gap fills. Not acked yet.
    Buffered,
    /// Too far ahead for the buffer: dropped unacked; the sender will resend.
    Overflow,
    /// These items, in id order, are now contiguous: process them, then ack
    /// `last_id()`.
    Ready(Vec<T>),
}

/// Orders one link's incoming sequenced frames.
#[derive(Debug)]
pub struct ReorderBuffer<T> {
    last_id: u64,
    capacity: u64,
    pending: BTreeMap<u64, T>,
}

impl<T> ReorderBuffer<T> {
    /// An empty buffer that holds frames at most `capacity` ids past `lastId`.
    pub fn new(capacity: usize) -> Self {
        ReorderBuffer {
            last_id: 0,
            capacity: capacity.max(1) as u64,
            pending: BTreeMap::new(),
        }
    }

    /// The highest id processed in order.
    pub fn last_id(&self) -> u64 {
        self.last_id
    }

    /// Frames waiting for a gap to fill.
    pub fn buffered(&self) -> usize {
        self.pending.len()
    }

    /// Takes frame `id` carrying `item`.
    pub fn accept(&mut self, id: u64, item: T) -> Accepted<T> {
        if id <= self.last_id || self.pending.contains_key(&id) {
            return Accepted::Duplicate;
        }
        if id - self.last_id > self.capacity {
            return Accepted::Overflow;
        }
        if id != self.last_id + 1 {
            self.pending.insert(id, item);
            return Accepted::Buffered;
        }
        let mut ready = vec![item];
        self.last_id = id;
        while let Some(next) = self.pending.remove(&(self.last_id + 1)) {
            ready.push(next);
            self.last_id += 1;
        }
        Accepted::Ready(ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_frames_are_ready_at_once() {
        let mut r = ReorderBuffer::new(4);
        assert_eq!(r.accept(1, 'a'), Accepted::Ready(vec!['a']));
        assert_eq!(r.accept(2, 'b'), Accepted::Ready(vec!['b']));
        assert_eq!(r.last_id(), 2);
    }

    #[test]
    fn duplicates_are_reported_not_delivered() {
        let mut r = ReorderBuffer::new(4);
        r.accept(1, 'a');
        assert_eq!(r.accept(1, 'a'), Accepted::Duplicate);
        assert_eq!(r.accept(3, 'c'), Accepted::Buffered);
        assert_eq!(r.accept(3, 'c'), Accepted::Duplicate);
    }

    #[test]
    fn a_gap_holds_frames_until_it_fills() {
        let mut r = ReorderBuffer::new(8);
        assert_eq!(r.accept(3, 'c'), Accepted::Buffered);
        assert_eq!(r.accept(2, 'b'), Accepted::Buffered);
        assert_eq!(r.accept(5, 'e'), Accepted::Buffered);
        assert_eq!(r.last_id(), 0);
        assert_eq!(r.accept(1, 'a'), Accepted::Ready(vec!['a', 'b', 'c']));
        assert_eq!(r.last_id(), 3);
        assert_eq!(r.buffered(), 1);
        assert_eq!(r.accept(4, 'd'), Accepted::Ready(vec!['d', 'e']));
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn frames_too_far_ahead_are_dropped_so_memory_stays_bounded() {
        let mut r = ReorderBuffer::new(3);
        assert_eq!(r.accept(4, 'd'), Accepted::Overflow);
        assert_eq!(r.accept(u64::MAX, 'z'), Accepted::Overflow);
        assert_eq!(r.accept(3, 'c'), Accepted::Buffered);
        assert_eq!(r.buffered(), 1);
    }
}
