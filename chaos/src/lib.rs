//! Fault injection for client links.
//!
//! [`ChaosProxy`] sits between clients and a connector. It reads the length
//! prefixed frames in both directions and, by a seeded schedule (the same
//! seed gives the same decisions for the same frames), drops, duplicates,
//! holds back (delays and so reorders) frames, with separate rates for acks,
//! and cuts whole connections. What it did is counted in [`ChaosStats`].
//! [`chat_run`] drives chat traffic through it and checks what arrived.

mod scenario;

pub use scenario::{chat_run, lossy_link_options, Report, RunConfig};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use im_proto::{Body, Frame, FrameCodec};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

/// The seed of a chaos run: `IM_CHAOS_SEED` if set (to rerun a failing
/// run), else a fresh random one. Printed, so any run can be repeated.
pub fn run_seed() -> u64 {
    let seed = std::env::var("IM_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("chaos seed {seed} (rerun with IM_CHAOS_SEED={seed})");
    seed
}

/// Longest a frame is held back to be reordered.
const HOLD_AT_MOST: Duration = Duration::from_millis(20);

/// Fault rates for one direction of a link (each 0.0 to 1.0).
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Chance an ack frame is dropped.
    pub drop_ack: f64,
    /// Chance any other frame is dropped.
    pub drop_frame: f64,
    /// Chance a frame is sent twice.
    pub duplicate: f64,
    /// Chance a frame is held back and sent after the next one (reorder).
    pub reorder: f64,
    /// Chance a frame is delayed by up to `max_delay` first.
    pub delay: f64,
    /// Upper bound of a delay.
    pub max_delay: Duration,
}

impl Faults {
    /// The test suite's rates: 30% of acks and 3% of other frames dropped,
    /// 5% of frames duplicated, 5% reordered, 5% delayed by up to 20 ms.
    pub fn headline() -> Faults {
        Faults {
            drop_ack: 0.3,
            drop_frame: 0.03,
            duplicate: 0.05,
            reorder: 0.05,
            delay: 0.05,
            max_delay: Duration::from_millis(20),
        }
    }
}

/// What the proxy did, for a run's summary.
#[derive(Debug, Default)]
pub struct ChaosStats {
    /// Frames seen.
    pub frames: AtomicU64,
    /// Acks dropped.
    pub acks_dropped: AtomicU64,
    /// Other frames dropped.
    pub frames_dropped: AtomicU64,
    /// Frames sent twice.
    pub duplicated: AtomicU64,
    /// Frames held back behind a later one.
    pub reordered: AtomicU64,
    /// Connections cut.
    pub cuts: AtomicU64,
}

impl ChaosStats {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// (frames, acks dropped, frames dropped, duplicated, reordered, cuts).
    pub fn snapshot(&self) -> [u64; 6] {
        [
            &self.frames,
            &self.acks_dropped,
            &self.frames_dropped,
            &self.duplicated,
            &self.reordered,
            &self.cuts,
        ]
        .map(|c| c.load(Ordering::Relaxed))
    }
}

/// A seeded fault-injecting proxy in front of one upstream address.
pub struct ChaosProxy {
    addr: SocketAddr,
    stats: Arc<ChaosStats>,
    current: Arc<Mutex<CancellationToken>>,
    stop: CancellationToken,
}

impl ChaosProxy {
    /// Listens on a free loopback port and forwards to `upstream`, applying
    /// `to_server` faults to what clients send and `to_client` to what the
    /// server sends. Connection `n` uses the seed `seed + n`.
    pub async fn start(
        upstream: SocketAddr,
        seed: u64,
        to_server: Faults,
        to_client: Faults,
    ) -> std::io::Result<ChaosProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(ChaosStats::default());
        let current = Arc::new(Mutex::new(CancellationToken::new()));
        let stop = CancellationToken::new();
        let (s, c, st) = (stats.clone(), current.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                let accepted = tokio::select! {
                    _ = st.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((client, _)) = accepted else { continue };
                let cut = c.lock().expect("cut lock").clone();
                let connection_seed = seed.wrapping_add(n);
                n += 1;
                tokio::spawn(relay(
                    client,
                    upstream,
                    connection_seed,
                    to_server,
                    to_client,
                    s.clone(),
                    cut,
                ));
            }
        });
        Ok(ChaosProxy {
            addr,
            stats,
            current,
            stop,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What was done so far.
    pub fn stats(&self) -> &ChaosStats {
        &self.stats
    }

    /// Cuts every connection open now (clients see the link drop).
    pub fn cut_all(&self) {
        let mut current = self.current.lock().expect("cut lock");
        current.cancel();
        *current = CancellationToken::new();
        ChaosStats::add(&self.stats.cuts);
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.current.lock().expect("cut lock").cancel();
    }
}

async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    seed: u64,
    to_server: Faults,
    to_client: Faults,
    stats: Arc<ChaosStats>,
    cut: CancellationToken,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pump(
        FramedRead::new(client_read, FrameCodec::new(16 << 20)),
        FramedWrite::new(server_write, FrameCodec::new(16 << 20)),
        StdRng::seed_from_u64(seed),
        to_server,
        stats.clone(),
    );
    let down = pump(
        FramedRead::new(server_read, FrameCodec::new(16 << 20)),
        FramedWrite::new(client_write, FrameCodec::new(16 << 20)),
        StdRng::seed_from_u64(seed ^ 0x00c0_ffee),
        to_client,
        stats,
    );
    tokio::select! {
        _ = cut.cancelled() => {}
        _ = up => {}
        _ = down => {}
    }
}

/// Moves frames one way, applying `faults`. Ends when either side closes.
async fn pump<R, W>(mut from: R, mut to: W, mut rng: StdRng, faults: Faults, stats: Arc<ChaosStats>)
where
    R: futures::Stream<Item = Result<Frame, im_proto::CodecError>> + Unpin,
    W: futures::Sink<Frame, Error = im_proto::CodecError> + Unpin,
{
    let mut held: Option<Frame> = None;
    loop {
        // A held frame goes out after the next one, or alone if none comes
        // soon: it is reordered, not lost.
        let next = if held.is_some() {
            match tokio::time::timeout(HOLD_AT_MOST, from.next()).await {
                Ok(next) => next,
                Err(_) => {
                    if let Some(earlier) = held.take() {
                        if to.send(earlier).await.is_err() {
                            return;
                        }
                    }
                    continue;
                }
            }
        } else {
            from.next().await
        };
        let Some(Ok(frame)) = next else { return };
        ChaosStats::add(&stats.frames);
        let is_ack = matches!(frame.body, Some(Body::Ack(_)));
        let drop = if is_ack {
            faults.drop_ack
        } else {
            faults.drop_frame
        };
        if rng.gen_bool(drop) {
            ChaosStats::add(if is_ack {
                &stats.acks_dropped
            } else {
                &stats.frames_dropped
            });
            continue;
        }
        if rng.gen_bool(faults.delay) && !faults.max_delay.is_zero() {
            let wait = rng.gen_range(Duration::ZERO..=faults.max_delay);
            tokio::time::sleep(wait).await;
        }
        let copies = if rng.gen_bool(faults.duplicate) {
            ChaosStats::add(&stats.duplicated);
            2
        } else {
            1
        };
        if held.is_none() && rng.gen_bool(faults.reorder) {
            ChaosStats::add(&stats.reordered);
            held = Some(frame);
            continue;
        }
        for _ in 0..copies {
            if to.send(frame.clone()).await.is_err() {
                return;
            }
        }
        if let Some(earlier) = held.take() {
            if to.send(earlier).await.is_err() {
                return;
            }
        }
    }
}
