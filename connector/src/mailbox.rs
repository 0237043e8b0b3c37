//! One session's inbox: the pushes routed to it, the flag that some were
//! dropped, and its kill switch, in one small allocation.
//!
//! Written here rather than taken from tokio because of what an idle link
//! costs: a `tokio::sync::mpsc` channel allocates a 32-slot block and two
//! cache-padded halves before its first message (1,568 bytes), and the
//! `CancellationToken` and `Notify` that went with it another 184. Measured
//! with massif on 2,000 idle links, that was 1.7 of the 10.1 KiB of heap
//! each link held; this is one `Arc` of about 120 bytes, and its queue
//! holds memory only while pushes wait.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Mutex;

use im_proto::ErrorCode;
use im_transfer::Push;
use tokio::sync::Notify;

/// What a session waiting on its mailbox is woken for.
#[derive(Debug)]
pub(crate) enum Event {
    /// The session must close, telling the client this.
    Killed(ErrorCode),
    /// A push to act on.
    Push(Push),
    /// Pushes were dropped because the queue was full: re-read the store.
    Lagged,
}

/// Why a push was not queued.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The queue holds `capacity` pushes already.
    Full(Push),
    /// The session was killed; nothing will read the queue again.
    Killed,
}

/// A bounded queue of pushes with a kill switch, for one reader.
#[derive(Debug)]
pub(crate) struct Mailbox {
    queue: Mutex<VecDeque<Push>>,
    capacity: usize,
    lagged: AtomicBool,
    /// 0 while alive, else the `ErrorCode` it was killed with.
    code: AtomicI32,
    /// Woken on every push, lag and kill.
    wake: Notify,
}

impl Mailbox {
    /// An empty mailbox that queues at most `capacity` pushes.
    pub(crate) fn new(capacity: usize) -> Self {
        Mailbox {
            queue: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            lagged: AtomicBool::new(false),
            code: AtomicI32::new(0),
            wake: Notify::new(),
        }
    }

    /// Queues `push` unless the queue is full or the session was killed.
    pub(crate) fn offer(&self, push: Push) -> Result<(), Refused> {
        {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            if self.is_killed() {
                return Err(Refused::Killed);
            }
            if queue.len() >= self.capacity {
                return Err(Refused::Full(push));
            }
            queue.push_back(push);
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Notes that a push was dropped.
    pub(crate) fn lag(&self) {
        self.lagged.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Asks the session to close with `code`; the first reason wins.
    pub(crate) fn kill(&self, code: ErrorCode) {
        let _ = self
            .code
            .compare_exchange(0, code as i32, Ordering::SeqCst, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// True once the session was asked to close.
    pub(crate) fn is_killed(&self) -> bool {
        self.code.load(Ordering::SeqCst) != 0
    }

    fn killed_with(&self) -> Option<ErrorCode> {
        match self.code.load(Ordering::SeqCst) {
            0 => None,
            code => Some(ErrorCode::try_from(code).unwrap_or(ErrorCode::Internal)),
        }
    }

    /// Takes the oldest push. An emptied queue gives its memory back: an
    /// idle link keeps none.
    pub(crate) fn pop(&self) -> Option<Push> {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let push = queue.pop_front();
        release_if_empty(&mut queue);
        push
    }

    /// True when no push waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Waits for the next thing the session must act on: a kill always;
    /// a push only if `pushes`; the lag flag only if `lag` (it stays set
    /// until then). Cancel-safe: nothing is taken unless it is returned.
    pub(crate) async fn next(&self, pushes: bool, lag: bool) -> Event {
        loop {
            let woken = self.wake.notified();
            tokio::pin!(woken);
            // Registered before looking, so a push made after the look
            // still wakes this wait.
            woken.as_mut().enable();
            if let Some(code) = self.killed_with() {
                return Event::Killed(code);
            }
            if pushes {
                if let Some(push) = self.pop() {
                    return Event::Push(push);
                }
            }
            if lag && self.lagged.swap(false, Ordering::SeqCst) {
                return Event::Lagged;
            }
            woken.await;
        }
    }
}

/// Frees an emptied queue's buffer: frames and pushes wait in queues
/// only now and then, and most links are idle most of the time.
pub(crate) fn release_if_empty<T>(queue: &mut VecDeque<T>) {
    if queue.is_empty() && queue.capacity() > 0 {
        *queue = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn revoke() -> Push {
        Push::Revoke {
            token_hash: "x".into(),
        }
    }

    #[test]
    fn a_full_queue_refuses_and_an_emptied_one_keeps_no_memory() {
        let mailbox = Mailbox::new(2);
        assert!(mailbox.offer(Push::Resync).is_ok());
        assert!(mailbox.offer(Push::Resync).is_ok());
        assert!(matches!(
            mailbox.offer(revoke()),
            Err(Refused::Full(Push::Revoke { .. }))
        ));
        assert!(matches!(mailbox.pop(), Some(Push::Resync)));
        assert!(!mailbox.is_empty());
        assert!(matches!(mailbox.pop(), Some(Push::Resync)));
        assert!(mailbox.is_empty());
        assert_eq!(mailbox.queue.lock().unwrap().capacity(), 0);
    }

    #[test]
    fn a_killed_mailbox_takes_nothing_more_and_keeps_the_first_reason() {
        let mailbox = Mailbox::new(4);
        mailbox.kill(ErrorCode::Conflict);
        mailbox.kill(ErrorCode::SlowConsumer);
        assert!(matches!(mailbox.offer(Push::Resync), Err(Refused::Killed)));
        assert_eq!(mailbox.killed_with(), Some(ErrorCode::Conflict));
    }

    #[tokio::test]
    async fn a_kill_comes_first_and_pushes_wait_until_wanted() {
        let mailbox = Mailbox::new(4);
        mailbox.offer(Push::Resync).unwrap();
        mailbox.lag();
        // Neither pushes nor lag are wanted: nothing to return yet.
        let idle = tokio::time::timeout(Duration::from_millis(50), mailbox.next(false, false));
        assert!(idle.await.is_err());
        assert!(matches!(mailbox.next(false, true).await, Event::Lagged));
        assert!(matches!(
            mailbox.next(true, true).await,
            Event::Push(Push::Resync)
        ));
        mailbox.offer(Push::Resync).unwrap();
        mailbox.kill(ErrorCode::TokenRevoked);
        assert!(matches!(
            mailbox.next(true, true).await,
            Event::Killed(ErrorCode::TokenRevoked)
        ));
    }

    #[tokio::test]
    async fn a_push_made_while_waiting_wakes_the_reader() {
        let mailbox = Arc::new(Mailbox::new(4));
        let reader = tokio::spawn({
            let mailbox = mailbox.clone();
            async move { mailbox.next(true, false).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        mailbox.offer(revoke()).unwrap();
        let event = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .expect("woken")
            .unwrap();
        assert!(matches!(event, Event::Push(Push::Revoke { .. })));
    }
}
