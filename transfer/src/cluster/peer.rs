//! One internal link between two of the cluster's processes: the same
//! framing, numbering, cumulative acks and retransmission as a client link
//! (`AckWindow` and `ReorderBuffer` from `im-proto`), plus heartbeats. The
//! task only moves bodies: what they mean is up to the caller and the
//! transfer.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
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

/// Runs the link until it breaks, `shutdown` fires or `outgoing` closes (a
/// clean end: returns Ok). Bodies from `outgoing` are numbered and sent
/// through the window; the peer's sequenced bodies go to `incoming` in id
/// order, each once.
pub async fn run_peer(
    mut conn: PeerConn,
    config: PeerConfig,
    mut outgoing: mpsc::Receiver<Body>,
    incoming: mpsc::Sender<Body>,
    shutdown: CancellationToken,
) -> Result<(), PeerError> {
    let mut window: AckWindow<(), Envelope> = AckWindow::new(config.ack);
    let mut reorder: ReorderBuffer<Body> = ReorderBuffer::new(config.ack.capacity);
    let mut heartbeat = tokio::time::interval(config.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let mut nonce = 0u64;
    loop {
        let retransmit_at = window.next_deadline().map(Instant::from_std);
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            body = outgoing.recv(), if !window.is_full() => {
                let Some(body) = body else { return Ok(()) };
                let frame = window
                    .send(body, (), std::time::Instant::now())
                    .expect("window has room: checked by the select guard");
                send(&mut conn, frame, config.idle_timeout).await?;
            }
            frame = conn.next() => {
                let frame = frame.ok_or(PeerError::Closed)??;
                last_heard = Instant::now();
                if let Some(ack) = on_frame(frame, &mut window, &mut reorder, &incoming).await? {
                    send(&mut conn, &ack, config.idle_timeout).await?;
                }
            }
            _ = sleep_until(retransmit_at) => {
                for frame in &window.poll_timeouts(std::time::Instant::now())? {
                    send(&mut conn, frame, config.idle_timeout).await?;
                }
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > config.idle_timeout {
                    return Err(PeerError::Idle(config.idle_timeout));
                }
                nonce += 1;
                let ping = unsequenced(Body::Ping(Ping { nonce }));
                send(&mut conn, &ping, config.idle_timeout).await?;
            }
        }
    }
}

/// Writes one frame, giving up after `limit`: a peer that stops reading
/// (stopped, or behind something that holds the connection open) would
/// otherwise hold this loop, and with it the heartbeat that notices it.
async fn send(conn: &mut PeerConn, frame: &Envelope, limit: Duration) -> Result<(), PeerError> {
    match tokio::time::timeout(limit, conn.send(frame)).await {
        Ok(sent) => Ok(sent?),
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

/// Handles one received frame; returns the frame to answer with, if any.
async fn on_frame(
    frame: Envelope,
    window: &mut AckWindow<(), Envelope>,
    reorder: &mut ReorderBuffer<Body>,
    incoming: &mpsc::Sender<Body>,
) -> Result<Option<Envelope>, PeerError> {
    let Some(body) = frame.body else {
        return Ok(None);
    };
    if frame.id == 0 {
        return Ok(match body {
            Body::Ack(Ack { id }) => {
                window.on_ack(id);
                None
            }
            Body::Ping(Ping { nonce }) => Some(unsequenced(Body::Pong(Pong { nonce }))),
            _ => None,
        });
    }
    match reorder.accept(frame.id, body) {
        Accepted::Ready(bodies) => {
            for body in bodies {
                // Waiting here pushes back on the peer through its window.
                if incoming.send(body).await.is_err() {
                    return Err(PeerError::Closed);
                }
            }
        }
        Accepted::Duplicate => {}
        Accepted::Buffered => return Ok(None),
        Accepted::Overflow => return Err(PeerError::Overflow),
    }
    Ok(Some(unsequenced(Body::Ack(Ack {
        id: reorder.last_id(),
    }))))
}
