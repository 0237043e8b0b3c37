//! The seeded fault-injecting proxy, for client links (`Frame`) and for the
//! cluster's internal links (`Envelope`).

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use im_proto::internal::{envelope, Envelope};
use im_proto::{Body, Frame, FrameCodec, LinkFrame};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Encoder, FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

/// Longest a frame is held back to be reordered.
const HOLD_AT_MOST: Duration = Duration::from_millis(20);

/// Largest frame the proxy passes on.
const MAX_FRAME_BYTES: usize = 16 << 20;

/// A frame the proxy can name, so rates can be set per kind.
pub trait ChaosFrame: LinkFrame + Send + Unpin + 'static {
    /// What the frame carries, as its protobuf field name ("ack", "send").
    fn kind(&self) -> &'static str;
}

impl ChaosFrame for Frame {
    fn kind(&self) -> &'static str {
        match &self.body {
            Some(Body::Ack(_)) => "ack",
            Some(Body::Ping(_)) => "ping",
            Some(Body::Pong(_)) => "pong",
            Some(Body::Error(_)) => "error",
            Some(Body::Login(_)) => "login",
            Some(Body::LoginOk(_)) => "login_ok",
            Some(Body::Send(_)) => "send",
            Some(Body::Message(_)) => "message",
            Some(Body::Receipt(_)) => "receipt",
            Some(Body::MarkRead(_)) => "mark_read",
            Some(Body::SyncDone(_)) => "sync_done",
            Some(Body::FriendRequest(_)) => "friend_request",
            Some(Body::FriendEvent(_)) => "friend_event",
            Some(Body::Presence(_)) => "presence",
            Some(Body::GroupEvent(_)) => "group_event",
            None => "empty",
        }
    }
}

impl ChaosFrame for Envelope {
    fn kind(&self) -> &'static str {
        use envelope::Body as B;
        match &self.body {
            Some(B::Ack(_)) => "ack",
            Some(B::Ping(_)) => "ping",
            Some(B::Pong(_)) => "pong",
            Some(B::Hello(_)) => "hello",
            Some(B::Call(_)) => "call",
            Some(B::Reply(_)) => "reply",
            Some(B::Push(_)) => "push",
            None => "empty",
        }
    }
}

/// Fault rates for one direction of a link (each 0.0 to 1.0).
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Chance an ack frame is dropped.
    pub drop_ack: f64,
    /// Chance any other frame is dropped.
    pub drop_frame: f64,
    /// Drop rates for named kinds of frame ([`ChaosFrame::kind`]), in
    /// place of `drop_ack` / `drop_frame`.
    pub drop_kinds: &'static [(&'static str, f64)],
    /// Chance a frame is sent twice.
    pub duplicate: f64,
    /// Chance a frame is held back and sent after the next one (reorder).
    pub reorder: f64,
    /// Chance a frame is delayed by up to `max_delay` first.
    pub delay: f64,
    /// Upper bound of a delay.
    pub max_delay: Duration,
    /// Chance the connection is cut in the middle of a frame: half of the
    /// frame's bytes go out, then both sides are closed.
    pub cut_mid_frame: f64,
}

impl Faults {
    /// The test suite's rates: 30% of acks and 3% of other frames dropped,
    /// 5% of frames duplicated, 5% reordered, 5% delayed by up to 20 ms,
    /// and one frame in 2,000 cut in the middle (with its connection).
    pub fn headline() -> Faults {
        Faults {
            drop_ack: 0.3,
            drop_frame: 0.03,
            duplicate: 0.05,
            reorder: 0.05,
            delay: 0.05,
            max_delay: Duration::from_millis(20),
            cut_mid_frame: 0.0005,
            ..Faults::default()
        }
    }

    /// Rates for the internal links: 30% of acks dropped, 5% of frames
    /// duplicated, reordered and delayed as in the headline, but one other
    /// frame in 500 dropped and no mid-frame cuts. They carry every
    /// device's traffic in one ordered stream, so each dropped frame holds
    /// all of it up for a retransmission timeout, and cuts at the client
    /// rate would break them every few seconds. Whole-link cuts come from
    /// `cut_all` and from killing processes instead.
    pub fn internal() -> Faults {
        Faults {
            drop_frame: 0.002,
            cut_mid_frame: 0.0,
            ..Faults::headline()
        }
    }

    fn drop_rate(&self, kind: &str) -> f64 {
        match self.drop_kinds.iter().find(|(k, _)| *k == kind) {
            Some((_, rate)) => *rate,
            None if kind == "ack" => self.drop_ack,
            None => self.drop_frame,
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
    /// `cut_all` calls.
    pub cuts: AtomicU64,
    /// Connections cut in the middle of a frame.
    pub mid_frame_cuts: AtomicU64,
}

impl ChaosStats {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// (frames, acks dropped, frames dropped, duplicated, reordered, cuts,
    /// mid-frame cuts).
    pub fn snapshot(&self) -> [u64; 7] {
        [
            &self.frames,
            &self.acks_dropped,
            &self.frames_dropped,
            &self.duplicated,
            &self.reordered,
            &self.cuts,
            &self.mid_frame_cuts,
        ]
        .map(|c| c.load(Ordering::Relaxed))
    }
}

/// A seeded fault-injecting proxy in front of one or more upstreams, for
/// links carrying frames of type `F`.
pub struct ChaosProxy<F = Frame> {
    addr: SocketAddr,
    stats: Arc<ChaosStats>,
    current: Arc<Mutex<CancellationToken>>,
    stop: CancellationToken,
    frames: PhantomData<fn() -> F>,
}

impl<F: ChaosFrame> ChaosProxy<F> {
    /// Listens on a free loopback port and forwards to `upstream`, applying
    /// `to_server` faults to what clients send and `to_client` to what the
    /// server sends. Connection `n` uses the seed `seed + n`.
    pub async fn start(
        upstream: SocketAddr,
        seed: u64,
        to_server: Faults,
        to_client: Faults,
    ) -> std::io::Result<ChaosProxy<F>> {
        Self::balance(vec![upstream], seed, to_server, to_client).await
    }

    /// Like [`ChaosProxy::start`], but also a load balancer: connection `n`
    /// goes to `upstreams[n % len]`, or the next one that accepts.
    pub async fn balance(
        upstreams: Vec<SocketAddr>,
        seed: u64,
        to_server: Faults,
        to_client: Faults,
    ) -> std::io::Result<ChaosProxy<F>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(ChaosStats::default());
        let current = Arc::new(Mutex::new(CancellationToken::new()));
        let stop = CancellationToken::new();
        let (s, c, st) = (stats.clone(), current.clone(), stop.clone());
        let upstreams: Arc<[SocketAddr]> = upstreams.into();
        tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                let accepted = tokio::select! {
                    _ = st.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((client, _)) = accepted else { continue };
                let cut = c.lock().expect("cut lock").clone();
                let relay = Relay {
                    seed: seed.wrapping_add(n),
                    to_server,
                    to_client,
                    stats: s.clone(),
                    cut,
                };
                tokio::spawn(relay.run::<F>(client, upstreams.clone(), n as usize));
                n += 1;
            }
        });
        Ok(ChaosProxy {
            addr,
            stats,
            current,
            stop,
            frames: PhantomData,
        })
    }
}

impl<F> ChaosProxy<F> {
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

impl<F> Drop for ChaosProxy<F> {
    fn drop(&mut self) {
        self.stop.cancel();
        self.current.lock().expect("cut lock").cancel();
    }
}

/// One proxied connection.
struct Relay {
    seed: u64,
    to_server: Faults,
    to_client: Faults,
    stats: Arc<ChaosStats>,
    cut: CancellationToken,
}

impl Relay {
    async fn run<F: ChaosFrame>(self, client: TcpStream, upstreams: Arc<[SocketAddr]>, n: usize) {
        let mut server = None;
        for k in 0..upstreams.len() {
            if let Ok(s) = TcpStream::connect(upstreams[(n + k) % upstreams.len()]).await {
                server = Some(s);
                break;
            }
        }
        // No upstream: the client sees its connection close.
        let Some(server) = server else { return };
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        let up = pump::<F>(
            client_read,
            server_write,
            StdRng::seed_from_u64(self.seed),
            self.to_server,
            &self.stats,
        );
        let down = pump::<F>(
            server_read,
            client_write,
            StdRng::seed_from_u64(self.seed ^ 0x00c0_ffee),
            self.to_client,
            &self.stats,
        );
        tokio::select! {
            _ = self.cut.cancelled() => {}
            _ = up => {}
            _ = down => {}
        }
    }
}

/// Moves frames one way, applying `faults`. Ends when either side closes or
/// the connection is cut in the middle of a frame.
async fn pump<F: ChaosFrame>(
    from: OwnedReadHalf,
    to: OwnedWriteHalf,
    mut rng: StdRng,
    faults: Faults,
    stats: &ChaosStats,
) {
    let mut from = FramedRead::new(from, FrameCodec::<F>::limited(MAX_FRAME_BYTES));
    let mut to = FramedWrite::new(to, FrameCodec::<F>::limited(MAX_FRAME_BYTES));
    let mut held: Option<F> = None;
    loop {
        // A held frame goes out after the next one, or alone if none comes
        // soon: it is reordered, not lost.
        let next = if held.is_some() {
            match tokio::time::timeout(HOLD_AT_MOST, from.next()).await {
                Ok(next) => next,
                Err(_) => {
                    if let Some(earlier) = held.take() {
                        if !put(&mut to, earlier).await {
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
        let kind = frame.kind();
        if rng.gen_bool(faults.drop_rate(kind)) {
            ChaosStats::add(if kind == "ack" {
                &stats.acks_dropped
            } else {
                &stats.frames_dropped
            });
            continue;
        }
        if rng.gen_bool(faults.cut_mid_frame) {
            ChaosStats::add(&stats.mid_frame_cuts);
            let mut bytes = BytesMut::new();
            if FrameCodec::<F>::limited(MAX_FRAME_BYTES)
                .encode(&frame, &mut bytes)
                .is_ok()
            {
                let _ = SinkExt::<F>::flush(&mut to).await;
                let _ = to.get_mut().write_all(&bytes[..bytes.len() / 2]).await;
            }
            return;
        }
        if rng.gen_bool(faults.delay) && !faults.max_delay.is_zero() {
            let wait = rng.gen_range(Duration::ZERO..=faults.max_delay);
            tokio::time::sleep(wait).await;
        }
        if held.is_none() && rng.gen_bool(faults.reorder) {
            ChaosStats::add(&stats.reordered);
            held = Some(frame);
            continue;
        }
        let copies = if rng.gen_bool(faults.duplicate) {
            ChaosStats::add(&stats.duplicated);
            2
        } else {
            1
        };
        for _ in 0..copies {
            if !put(&mut to, frame.clone()).await {
                return;
            }
        }
        if let Some(earlier) = held.take() {
            if !put(&mut to, earlier).await {
                return;
            }
        }
    }
}

/// Sends one frame; false if the connection is gone.
async fn put<F: ChaosFrame>(to: &mut FramedWrite<OwnedWriteHalf, FrameCodec<F>>, frame: F) -> bool {
    SinkExt::<F>::send(to, frame).await.is_ok()
}
