//! One internal link between two of the cluster's processes: the same
//! framing, numbering, cumulative acks and retransmission as a client link
//! (`AckWindow` and `ReorderBuffer` from `im-proto`), plus heartbeats. The
//! task only moves bodies: what they mean is up to the caller and the
//! transfer.

use std::time::Duration;

use futures::{FutureExt, SinkExt, StreamExt};
use im_proto::internal::envelope::Body;
use im_proto::internal::Envelope;
use im_proto::v1::{Ack, Ping, Pong};
use im_proto::{Accepted, AckConfig, AckWindow, FrameCodec, LinkFrame, ReorderBuffer};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

/// An internal link's socket.
pub type PeerConn = Framed<TcpStream, FrameCodec<Envelope>>;

/// Frames internal links accept: a committed batch of a full worker batch
/// is the largest thing they carry.
pub const MAX_INTERNAL_FRAME: usize = 16 * 1024 * 1024;

/// Frames `stream` for an internal link.
pub fn peer_conn(stream: TcpStream) -> PeerConn {
    let _ = stream.set_nodelay(true);
    Framed::new(stream, FrameCodec::limited(MAX_INTERNAL_FRAME))
}

/// Tuning shared by both ends of internal links.
#[derive(Debug, Clone, Copy)]
pub struct PeerConfig {
    /// Window, retransmission timeout and retry limit.
    pub ack: AckConfig,
    /// How often an idle side pings.
    pub heartbeat: Duration,
    /// Silence after which the link is given up.
    pub idle_timeout: Duration,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            ack: AckConfig {
                capacity: 4096,
                timeout: Duration::from_secs(2),
                max_backoff: Duration::from_secs(8),
                max_retries: 4,
            },
            heartbeat: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a link ended.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The socket failed or sent something that is not an envelope.
    #[error("link i/o: {0}")]
    Codec(#[from] im_proto::CodecError),
    /// The peer closed the connection.
    #[error("peer closed the link")]
    Closed,
    /// A frame went unacknowledged past the retry limit.
    #[error(transparent)]
    RetryLimit(#[from] im_proto::RetryLimitExceeded),
    /// Nothing arrived for the idle timeout.
    #[error("peer silent for {0:?}")]
    Idle(Duration),
    /// A write did not complete within the idle timeout: the peer stopped
    /// reading.
    #[error("peer not reading for {0:?}")]
    Stalled(Duration),
    /// Frames arrived too far ahead of a gap.
    #[error("reorder buffer overflow")]
    Overflow,
}

/// Events an internal link takes in one turn before it writes: at most a
/// window's worth, and tokio's cooperative budget ends a turn sooner.
const MAX_EVENTS_PER_WRITE: usize = 4096;

/// What woke a link's loop.
enum Wake {
    Shutdown,
    /// A body to send, or `None`: the owner closed the link.
    Outgoing(Option<Body>),
    /// A frame from the peer, or the end of the connection.
    Frame(Option<Result<Envelope, im_proto::CodecError>>),
    Retransmit,
    Heartbeat,
}

/// One link's state between events.
struct Peer {
    conn: PeerConn,
    config: PeerConfig,
    window: AckWindow<(), Envelope>,
    reorder: ReorderBuffer<Body>,
    heartbeat: tokio::time::Interval,
    last_heard: Instant,
    nonce: u64,
    /// Sequenced frames were taken since the last ack: one cumulative ack
    /// goes out with the turn's write.
    ack_owed: bool,
}

/// Runs the link until it breaks, `shutdown` fires or `outgoing` closes (a
/// clean end: returns Ok). Bodies from `outgoing` are numbered and sent
/// through the window; the peer's sequenced bodies go to `incoming` in id
/// order, each once.
///
/// Each turn takes every event that is ready (bodies to send, frames read
/// at once, up to a window's worth) and then writes once, with one
/// cumulative ack for what it took. Written one frame at a time, with an
/// ack for every frame, each submit, reply and push was a socket write
/// of its own.
pub async fn run_peer(
    conn: PeerConn,
    config: PeerConfig,
    mut outgoing: mpsc::Receiver<Body>,
    incoming: mpsc::Sender<Body>,
    shutdown: CancellationToken,
) -> Result<(), PeerError> {
    let mut heartbeat = tokio::time::interval(config.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut peer = Peer {
        conn,
        config,
        window: AckWindow::new(config.ack),
        reorder: ReorderBuffer::new(config.ack.capacity),
        heartbeat,
        last_heard: Instant::now(),
        nonce: 0,
        ack_owed: false,
    };
    loop {
        let mut wake = peer.wait(&mut outgoing, &shutdown).await;
        for taken in 1.. {
            if !peer.on_wake(wake, &incoming).await? {
                // What this turn fed still goes out, best effort.
                let _ = peer.write_out().await;
                return Ok(());
            }
            // Polled only if what it returns is acted on: an event it
            // returns has been taken (a body out of `outgoing`).
            if taken == MAX_EVENTS_PER_WRITE {
                break;
            }
            match peer.wait(&mut outgoing, &shutdown).now_or_never() {
                Some(next) => wake = next,
                None => break,
            }
        }
        peer.write_out().await?;
    }
}

impl Peer {
    /// Waits for the next event. Cancel-safe: each branch takes nothing
    /// unless it returns it.
    async fn wait(
        &mut self,
        outgoing: &mut mpsc::Receiver<Body>,
        shutdown: &CancellationToken,
    ) -> Wake {
        let retransmit_at = self.window.next_deadline().map(Instant::from_std);
        let room = !self.window.is_full();
        tokio::select! {
            _ = shutdown.cancelled() => Wake::Shutdown,
            body = outgoing.recv(), if room => Wake::Outgoing(body),
            frame = self.conn.next() => Wake::Frame(frame),
            _ = sleep_until(retransmit_at) => Wake::Retransmit,
            _ = self.heartbeat.tick() => Wake::Heartbeat,
        }
    }

    /// Acts on one event, feeding what it sends. False: the link ends
    /// cleanly.
    async fn on_wake(
        &mut self,
        wake: Wake,
        incoming: &mpsc::Sender<Body>,
    ) -> Result<bool, PeerError> {
        match wake {
            Wake::Shutdown | Wake::Outgoing(None) => return Ok(false),
            Wake::Outgoing(Some(body)) => {
                let frame = self
                    .window
                    .send(body, (), std::time::Instant::now())
                    .expect("window has room: checked by the select guard");
                feed(&mut self.conn, frame, self.config.idle_timeout).await?;
            }
            Wake::Frame(frame) => {
                let frame = frame.ok_or(PeerError::Closed)??;
                self.last_heard = Instant::now();
                self.on_frame(frame, incoming).await?;
            }
            Wake::Retransmit => {
                for frame in &self.window.poll_timeouts(std::time::Instant::now())? {
                    feed(&mut self.conn, frame, self.config.idle_timeout).await?;
                }
            }
            Wake::Heartbeat => {
                if self.last_heard.elapsed() > self.config.idle_timeout {
                    return Err(PeerError::Idle(self.config.idle_timeout));
                }
                self.nonce += 1;
                let ping = unsequenced(Body::Ping(Ping { nonce: self.nonce }));
                feed(&mut self.conn, &ping, self.config.idle_timeout).await?;
            }
        }
        Ok(true)
    }

    /// Handles one received frame.
    async fn on_frame(
        &mut self,
        frame: Envelope,
        incoming: &mpsc::Sender<Body>,
    ) -> Result<(), PeerError> {
        let Some(body) = frame.body else {
            return Ok(());
        };
        if frame.id == 0 {
            match body {
                Body::Ack(Ack { id, .. }) => {
                    self.window.on_ack(id);
                }
                Body::Ping(Ping { nonce }) => {
                    let pong = unsequenced(Body::Pong(Pong { nonce }));
                    feed(&mut self.conn, &pong, self.config.idle_timeout).await?;
                }
                _ => {}
            }
            return Ok(());
        }
        match self.reorder.accept(frame.id, body) {
            Accepted::Ready(bodies) => {
                for body in bodies {
                    let body = match incoming.try_send(body) {
                        Ok(()) => continue,
                        Err(mpsc::error::TrySendError::Closed(_)) => return Err(PeerError::Closed),
                        Err(mpsc::error::TrySendError::Full(body)) => body,
                    };
                    // Waiting here pushes back on the peer through its
                    // window. What this turn fed goes out first: whoever
                    // empties `incoming` may be waiting for it.
                    self.flush().await?;
                    if incoming.send(body).await.is_err() {
                        return Err(PeerError::Closed);
                    }
                }
            }
            // Our ack was lost: it goes again.
            Accepted::Duplicate => {}
            Accepted::Buffered => return Ok(()),
            Accepted::Overflow => return Err(PeerError::Overflow),
        }
        self.ack_owed = true;
        Ok(())
    }

    /// Feeds the ack owed, if any, and writes everything fed.
    async fn write_out(&mut self) -> Result<(), PeerError> {
        let limit = self.config.idle_timeout;
        if std::mem::take(&mut self.ack_owed) {
            // Calls here are answered by a `Reply` each, never by an ack.
            let ack = unsequenced(Body::Ack(Ack {
                id: self.reorder.last_id(),
                sent_through: 0,
            }));
            feed(&mut self.conn, &ack, limit).await?;
        }
        self.flush().await
    }

    /// Writes everything fed so far.
    async fn flush(&mut self) -> Result<(), PeerError> {
        let limit = self.config.idle_timeout;
        match tokio::time::timeout(limit, SinkExt::<&Envelope>::flush(&mut self.conn)).await {
            Ok(flushed) => Ok(flushed?),
            Err(_) => Err(PeerError::Stalled(limit)),
        }
    }
}

/// Queues one frame for the turn's write, giving up after `limit`: a peer
/// that stops reading (stopped, or behind something that holds the
/// connection open) would otherwise hold this loop, and with it the
/// heartbeat that notices it. Feeding writes to the socket only once the
/// buffer passes the codec's backpressure boundary.
async fn feed(conn: &mut PeerConn, frame: &Envelope, limit: Duration) -> Result<(), PeerError> {
    match tokio::time::timeout(limit, conn.feed(frame)).await {
        Ok(fed) => Ok(fed?),
        Err(_) => Err(PeerError::Stalled(limit)),
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn unsequenced(body: Body) -> Envelope {
    Envelope::numbered(0, body)
}
