//! The link's two state machines, sender (`AckWindow`) and receiver
//! (`ReorderBuffer`), run against each other over a simulated network that,
//! by a random but reproducible schedule, drops, duplicates, delays and
//! reorders frames and acks in both directions. Whatever the schedule: every
//! payload is processed exactly once and in order, and neither side holds
//! more than its capacity.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use im_proto::v1::Ping;
use im_proto::{Accepted, AckConfig, AckWindow, Body, Frame, ReorderBuffer};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How the network treats each frame.
#[derive(Debug, Clone, Copy)]
struct Faults {
    drop: f64,
    duplicate: f64,
    max_delay: u64,
}

/// Frames in flight, by the tick they arrive at (ties in random order).
struct Network {
    rng: StdRng,
    faults: Faults,
    in_flight: BTreeMap<(u64, u64), Frame>,
    next: u64,
}

impl Network {
    fn new(seed: u64, faults: Faults) -> Network {
        Network {
            rng: StdRng::seed_from_u64(seed),
            faults,
            in_flight: BTreeMap::new(),
            next: 0,
        }
    }

    fn send(&mut self, now: u64, frame: Frame) {
        if self.rng.gen_bool(self.faults.drop) {
            return;
        }
        let copies = if self.rng.gen_bool(self.faults.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = now + 1 + self.rng.gen_range(0..=self.faults.max_delay);
            // A random tie-breaker reorders frames due at the same tick.
            let key = (at, u64::from(self.rng.gen::<u32>()) << 32 | self.next);
            self.next += 1;
            self.in_flight.insert(key, frame.clone());
        }
    }

    fn due(&mut self, now: u64) -> Vec<Frame> {
        let later = self.in_flight.split_off(&(now + 1, 0));
        std::mem::replace(&mut self.in_flight, later)
            .into_values()
            .collect()
    }
}

struct Outcome {
    processed: Vec<u64>,
    max_window: usize,
    max_buffered: usize,
    finished: bool,
}

fn run(seed: u64, n: u64, capacity: usize, faults: Faults) -> Outcome {
    let config = AckConfig {
        capacity,
        timeout: Duration::from_millis(8),
        max_backoff: Duration::from_millis(64),
        max_retries: u32::MAX,
    };
    let start = Instant::now();
    let tick = |t: u64| start + Duration::from_millis(t);
    let mut window: AckWindow<u64> = AckWindow::new(config);
    let mut reorder: ReorderBuffer<u64> = ReorderBuffer::new(capacity);
    let mut to_receiver = Network::new(seed, faults);
    let mut to_sender = Network::new(seed ^ 0x5eed, faults);
    let mut next_payload = 0;
    let mut acked = 0;
    let mut out = Outcome {
        processed: Vec::new(),
        max_window: 0,
        max_buffered: 0,
        finished: false,
    };
    for now in 0..200_000u64 {
        while next_payload < n && !window.is_full() {
            let body = Body::Ping(Ping {
                nonce: next_payload,
            });
            let frame = window.send(body, next_payload, tick(now)).unwrap();
            to_receiver.send(now, frame.clone());
            next_payload += 1;
        }
        for frame in window.poll_timeouts(tick(now)).unwrap() {
            to_receiver.send(now, frame);
        }
        for frame in to_receiver.due(now) {
            let Some(Body::Ping(Ping { nonce })) = frame.body else {
                unreachable!("only pings go to the receiver")
            };
            match reorder.accept(frame.id, nonce) {
                Accepted::Ready(items) => {
                    out.processed.extend(items);
                    to_sender.send(now, Frame::ack(reorder.last_id()));
                }
                Accepted::Duplicate => to_sender.send(now, Frame::ack(reorder.last_id())),
                Accepted::Buffered | Accepted::Overflow => {}
            }
            out.max_buffered = out.max_buffered.max(reorder.buffered());
        }
        for frame in to_sender.due(now) {
            let Some(Body::Ack(ack)) = frame.body else {
                unreachable!("only acks go to the sender")
            };
            acked += window.on_ack(ack.id).len() as u64;
        }
        out.max_window = out.max_window.max(window.len());
        if acked == n {
            out.finished = true;
            break;
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_payload_once_in_order_with_bounded_memory(
        seed in any::<u64>(),
        n in 1u64..300,
        capacity in 1usize..64,
        drop in 0.0f64..0.5,
        duplicate in 0.0f64..0.3,
        max_delay in 0u64..20,
    ) {
        let faults = Faults { drop, duplicate, max_delay };
        let out = run(seed, n, capacity, faults);
        prop_assert!(out.finished, "not every payload was acked (seed {})", seed);
        prop_assert_eq!(out.processed, (0..n).collect::<Vec<_>>());
        prop_assert!(out.max_window <= capacity);
        prop_assert!(out.max_buffered <= capacity);
    }
}

#[test]
fn a_heavy_schedule_with_half_the_frames_and_acks_lost_still_delivers_everything() {
    let faults = Faults {
        drop: 0.5,
        duplicate: 0.2,
        max_delay: 30,
    };
    let out = run(42, 2_000, 32, faults);
    assert!(out.finished);
    assert_eq!(out.processed, (0..2_000).collect::<Vec<_>>());
}

#[test]
fn without_retransmission_a_lost_frame_is_never_recovered() {
    // The property rests on retransmission: with no retries the window
    // gives up on the first lost frame (so the checks above can fail).
    let config = AckConfig {
        capacity: 8,
        timeout: Duration::from_millis(8),
        max_backoff: Duration::from_millis(64),
        max_retries: 0,
    };
    let mut window: AckWindow<u64> = AckWindow::new(config);
    let start = Instant::now();
    window
        .send(Body::Ping(Ping { nonce: 0 }), 0, start)
        .unwrap();
    assert!(window
        .poll_timeouts(start + Duration::from_millis(9))
        .is_err());
}
