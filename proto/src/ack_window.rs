//! The sender side of a link: frames sent but not yet acknowledged.
//!
//! Plain data with methods that do no I/O. The link task feeds it sends, acks
//! and the clock, and writes the frames it returns. Acks are cumulative: an
//! ack of `id` acknowledges every frame up to `id`, so a lost ack is repaired
//! by any later one.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::{Frame, LinkFrame};

/// Tuning of an [`AckWindow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckConfig {
    /// Most frames in flight; a full window stops the sender taking new work.
    pub capacity: usize,
    /// Wait before the first retransmission.
    pub timeout: Duration,
    /// Upper bound of the doubling backoff between retransmissions.
    pub max_backoff: Duration,
    /// Retransmissions of one frame before the link is given up.
    pub max_retries: u32,
}

impl Default for AckConfig {
    fn default() -> Self {
        AckConfig {
            capacity: 256,
            timeout: Duration::from_secs(2),
            max_backoff: Duration::from_secs(16),
            max_retries: 5,
        }
    }
}

/// A frame was retransmitted `max_retries` times without an ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("frame {id} unacknowledged after {attempts} retransmissions")]
pub struct RetryLimitExceeded {
    /// The frame that gave up.
    pub id: u64,
    /// How many times it was retransmitted.
    pub attempts: u32,
}

/// The window is full; wait for acks before sending more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ack window is full")]
pub struct WindowFull;

#[derive(Debug)]
struct InFlight<M, F> {
    frame: F,
    meta: M,
    retransmits: u32,
    deadline: Instant,
    /// Its deadline may be earlier than that of a frame sent before it:
    /// it was retransmitted, or sent with an earlier `now` than one before.
    out_of_order: bool,
}

/// Sent-but-unacked frames of one link, each with caller data `M` (what the
/// frame carried, so an ack can be turned into a delivery). Client links
/// number `Frame`s; internal links number `internal::Envelope`s.
#[derive(Debug)]
pub struct AckWindow<M, F = Frame> {
    config: AckConfig,
    next_id: u64,
    in_flight: VecDeque<InFlight<M, F>>,
    /// The latest deadline a frame was sent with.
    last_deadline: Option<Instant>,
    /// Frames in flight marked `out_of_order`. With none, deadlines rise
    /// in id order and the earliest is the oldest frame's: an internal
    /// link holds up to 4,096 frames, and scanning them on every turn of
    /// its loop was 4% of a transfer's async threads at saturation.
    out_of_order: usize,
}

impl<M, F: LinkFrame> AckWindow<M, F> {
    /// An empty window; the first frame gets id 1.
    pub fn new(config: AckConfig) -> Self {
        AckWindow {
            config,
            next_id: 1,
            in_flight: VecDeque::new(),
            last_deadline: None,
            out_of_order: 0,
        }
    }

    /// Frames in flight.
    pub fn len(&self) -> usize {
        self.in_flight.len()
    }

    /// True when nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// True when no more frames may be sent until some are acked.
    pub fn is_full(&self) -> bool {
        self.in_flight.len() >= self.config.capacity
    }

    /// Frames that may still be sent before the window is full.
    pub fn room(&self) -> usize {
        self.config.capacity.saturating_sub(self.in_flight.len())
    }

    /// The highest id handed out so far (0 before the first send).
    pub fn last_sent_id(&self) -> u64 {
        self.next_id - 1
    }

    /// Numbers `body` with the next id and keeps the frame until it is
    /// acked. Returns the kept frame, to be written from where it lies: a
    /// copy would clone every string of the body (a message's text and
    /// ids), once per frame on every link.
    pub fn send(&mut self, body: F::Body, meta: M, now: Instant) -> Result<&F, WindowFull> {
        if self.is_full() {
            return Err(WindowFull);
        }
        let frame = F::numbered(self.next_id, body);
        self.next_id += 1;
        let deadline = now + self.config.timeout;
        let out_of_order = self.last_deadline.is_some_and(|last| deadline < last);
        if out_of_order {
            self.out_of_order += 1;
        } else {
            self.last_deadline = Some(deadline);
        }
        self.in_flight.push_back(InFlight {
            frame,
            meta,
            retransmits: 0,
            deadline,
            out_of_order,
        });
        let kept = self.in_flight.back().expect("pushed just now");
        Ok(&kept.frame)
    }

    /// Handles a cumulative ack: every frame with id <= `id` is done. Returns
    /// their data in id order. Acks for ids never sent are ignored.
    pub fn on_ack(&mut self, id: u64) -> Vec<M> {
        let mut done = Vec::new();
        if id >= self.next_id {
            return done;
        }
        while self.in_flight.front().is_some_and(|f| f.frame.id() <= id) {
            if let Some(f) = self.in_flight.pop_front() {
                self.out_of_order -= usize::from(f.out_of_order);
                done.push(f.meta);
            }
        }
        // Everything is acked: give the slots back, so that the many links
        // that sit idle hold no frame-sized memory (a reallocation when
        // traffic resumes costs far less than a frame's write).
        if self.in_flight.is_empty() && self.in_flight.capacity() > 0 {
            self.in_flight = VecDeque::new();
        }
        done
    }

    /// When the earliest retransmission is due, if anything is in flight.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.out_of_order == 0 {
            return self.in_flight.front().map(|f| f.deadline);
        }
        self.in_flight.iter().map(|f| f.deadline).min()
    }

    /// Frames whose timeout passed, to be written again, each with its
    /// backoff doubled. Fails once a frame has used up its retries: the link
    /// must then be closed.
    pub fn poll_timeouts(&mut self, now: Instant) -> Result<Vec<F>, RetryLimitExceeded> {
        let mut due = Vec::new();
        for f in self.in_flight.iter_mut().filter(|f| f.deadline <= now) {
            if f.retransmits >= self.config.max_retries {
                return Err(RetryLimitExceeded {
                    id: f.frame.id(),
                    attempts: f.retransmits,
                });
            }
            f.retransmits += 1;
            f.deadline = now + backoff(&self.config, f.retransmits);
            if !f.out_of_order {
                f.out_of_order = true;
                self.out_of_order += 1;
            }
            due.push(f.frame.clone());
        }
        Ok(due)
    }

    /// Empties the window when the link closes, returning what was never acked.
    pub fn drain(&mut self) -> Vec<M> {
        self.out_of_order = 0;
        self.in_flight.drain(..).map(|f| f.meta).collect()
    }
}

/// The wait after the `retransmits`-th retransmission: the timeout doubled
/// each time, capped.
fn backoff(config: &AckConfig, retransmits: u32) -> Duration {
    let factor = 1u32.checked_shl(retransmits.min(16)).unwrap_or(u32::MAX);
    config
        .timeout
        .saturating_mul(factor)
        .min(config.max_backoff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::Ping;
    use crate::Body;

    fn body(n: u64) -> Body {
        Body::Ping(Ping { nonce: n })
    }

    fn window(capacity: usize) -> AckWindow<u64> {
        AckWindow::new(AckConfig {
            capacity,
            timeout: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            max_retries: 3,
        })
    }

    #[test]
    fn the_next_deadline_is_the_earliest_whatever_the_order_of_sends_and_retransmissions() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut w = window(64);
        let t0 = Instant::now();
        let mut clock = Duration::ZERO;
        let mut checked_out_of_order = 0;
        for step in 0..20_000 {
            clock += Duration::from_millis(rng.gen_range(0..20));
            match rng.gen_range(0..10) {
                // A send, now and then with a `now` taken a little earlier.
                0..=5 if !w.is_full() => {
                    let skew = Duration::from_millis(rng.gen_range(0..3) * 15);
                    let now = t0 + clock.saturating_sub(skew);
                    w.send(body(step), step, now).unwrap();
                }
                6..=7 if !w.is_empty() => {
                    let acked = w.last_sent_id() - rng.gen_range(0..w.len() as u64);
                    w.on_ack(acked);
                }
                8 => {
                    // A frame out of retries closes the link: start over.
                    let gave_up = w.poll_timeouts(t0 + clock).is_err();
                    if gave_up {
                        w.drain();
                    }
                }
                _ => {}
            }
            let earliest = w.in_flight.iter().map(|f| f.deadline).min();
            assert_eq!(w.next_deadline(), earliest, "step {step}");
            if earliest != w.in_flight.front().map(|f| f.deadline) {
                checked_out_of_order += 1;
            }
        }
        // The walk did reach windows whose oldest frame is not the next due.
        assert!(checked_out_of_order > 100, "{checked_out_of_order}");
    }

    #[test]
    fn ids_start_at_one_and_increase() {
        let mut w = window(8);
        let now = Instant::now();
        let ids: Vec<u64> = (0..3)
            .map(|n| w.send(body(n), n, now).unwrap().id)
            .collect();
        assert_eq!(ids, vec![1, 2, 3]);
        assert_eq!(w.last_sent_id(), 3);
    }

    #[test]
    fn room_is_what_may_still_be_sent() {
        let mut w = window(3);
        let now = Instant::now();
        assert_eq!(w.room(), 3);
        w.send(body(0), 0, now).unwrap();
        w.send(body(1), 1, now).unwrap();
        assert_eq!(w.room(), 1);
        w.send(body(2), 2, now).unwrap();
        assert_eq!((w.room(), w.is_full()), (0, true));
        w.on_ack(2);
        assert_eq!(w.room(), 2);
    }

    #[test]
    fn cumulative_ack_releases_everything_up_to_it() {
        let mut w = window(8);
        let now = Instant::now();
        for n in 0..5 {
            w.send(body(n), n, now).unwrap();
        }
        assert_eq!(w.on_ack(3), vec![0, 1, 2]);
        assert_eq!(w.len(), 2);
        // A duplicate or stale ack changes nothing.
        assert!(w.on_ack(3).is_empty());
        assert!(w.on_ack(1).is_empty());
        assert_eq!(w.on_ack(5), vec![3, 4]);
        assert!(w.is_empty());
        assert_eq!(w.in_flight.capacity(), 0, "an idle window holds no memory");
        assert_eq!(w.send(body(5), 5, now).unwrap().id, 6);
    }

    #[test]
    fn an_ack_for_an_id_never_sent_is_ignored() {
        let mut w = window(8);
        let now = Instant::now();
        w.send(body(0), 0, now).unwrap();
        assert!(w.on_ack(99).is_empty());
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn a_full_window_refuses_more() {
        let mut w = window(2);
        let now = Instant::now();
        w.send(body(0), 0, now).unwrap();
        w.send(body(1), 1, now).unwrap();
        assert!(w.is_full());
        assert_eq!(w.send(body(2), 2, now), Err(WindowFull));
        w.on_ack(1);
        assert!(w.send(body(2), 2, now).is_ok());
    }

    #[test]
    fn nothing_is_retransmitted_before_the_timeout() {
        let mut w = window(8);
        let t0 = Instant::now();
        w.send(body(0), 0, t0).unwrap();
        assert_eq!(w.next_deadline(), Some(t0 + Duration::from_millis(100)));
        assert!(w
            .poll_timeouts(t0 + Duration::from_millis(99))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn retransmissions_back_off_by_doubling_up_to_the_cap() {
        let mut w = window(8);
        let t0 = Instant::now();
        let sent = w.send(body(7), 7, t0).unwrap().clone();
        let mut now = t0 + Duration::from_millis(100);
        let again = w.poll_timeouts(now).unwrap();
        assert_eq!(again, vec![sent], "same id and body are resent");
        // Next waits 200 ms (doubled), then 350 ms (capped from 400).
        for wait in [200, 350] {
            let deadline = w.next_deadline().unwrap();
            assert_eq!(deadline - now, Duration::from_millis(wait));
            now = deadline;
            assert_eq!(w.poll_timeouts(now).unwrap().len(), 1);
        }
    }

    #[test]
    fn the_retry_limit_gives_up_the_link() {
        let mut w = window(8);
        let mut now = Instant::now();
        w.send(body(0), 0, now).unwrap();
        for _ in 0..3 {
            now = w.next_deadline().unwrap();
            assert_eq!(w.poll_timeouts(now).unwrap().len(), 1);
        }
        now = w.next_deadline().unwrap();
        assert_eq!(
            w.poll_timeouts(now),
            Err(RetryLimitExceeded { id: 1, attempts: 3 })
        );
        assert_eq!(w.drain(), vec![0], "what was unacked is handed back");
    }

    #[test]
    fn an_ack_during_backoff_stops_retransmission() {
        let mut w = window(8);
        let t0 = Instant::now();
        w.send(body(0), 0, t0).unwrap();
        w.poll_timeouts(t0 + Duration::from_millis(100)).unwrap();
        w.on_ack(1);
        assert_eq!(w.next_deadline(), None);
        assert!(w
            .poll_timeouts(t0 + Duration::from_secs(60))
            .unwrap()
            .is_empty());
    }
}
