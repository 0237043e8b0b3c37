//! A lean client link for load: TCP from a chosen source address, the link
//! framing, frame ids, cumulative acks and retransmission (the proto crate's
//! `AckWindow` and `ReorderBuffer`, as the client library runs them), but
//! without the client library's task and channels per link, so one
//! generator task can drive a link and thousands fit in a process.
//!
//! Writes are encoded straight into the socket's write buffer and go out at
//! the next `flush`, so a task that handles a burst of frames acks them
//! once and writes once.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures::{FutureExt, SinkExt, StreamExt};
use im_proto::v1::{Login, LoginOk, Ping, Pong};
use im_proto::{
    Accepted, AckConfig, AckWindow, Body, CodecError, ErrorCode, Frame, FrameCodec, ReorderBuffer,
};
use nix::sys::socket::{setsockopt, sockopt::IpBindAddressNoPort};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_util::codec::{Encoder, Framed};

/// How long a login may take (connect to `SyncDone`).
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Frames the receiver holds past a gap (the protocol's 256).
const REORDER_CAPACITY: usize = 256;
/// Heartbeat interval until `LoginOk` tells the server's.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);

/// Why a link failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Connecting or the socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A frame could not be read or written.
    #[error("codec: {0}")]
    Codec(#[from] CodecError),
    /// The server closed the link, with its fatal error if it sent one.
    #[error("closed by the server: {code:?} {message}")]
    Closed {
        /// The fatal error's code.
        code: Option<ErrorCode>,
        /// The fatal error's message.
        message: String,
    },
    /// Something did not happen in time.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The server sent something the protocol does not allow here.
    #[error("protocol: {0}")]
    Protocol(String),
    /// A frame was retransmitted up to the retry limit without an ack.
    #[error("retry limit: {0}")]
    RetryLimit(#[from] im_proto::RetryLimitExceeded),
}

/// Where a link connects, and from which local address.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    /// The connector's link address.
    pub addr: SocketAddr,
    /// The local address to connect from (one of 127.0.0.x), if any.
    pub source: Option<IpAddr>,
}

/// What a login brought: the server's `LoginOk`, its `SyncDone` counts and
/// every other sequenced frame before `SyncDone` (the catch-up), in order.
#[derive(Debug)]
pub struct LoggedIn {
    /// The server's answer to the login.
    pub login_ok: LoginOk,
    /// `SyncDone.offline_count`.
    pub offline_count: u32,
    /// `SyncDone.synced_count`.
    pub synced_count: u32,
    /// The catch-up frames (messages and receipts), in the order processed.
    pub catch_up: Vec<Frame>,
}

/// One logged-in link.
#[derive(Debug)]
pub struct BenchLink {
    framed: Framed<TcpStream, FrameCodec>,
    encoder: FrameCodec,
    window: AckWindow<(), Frame>,
    reorder: ReorderBuffer<Frame>,
    acked: u64,
    next_ping: u64,
    /// The heartbeat interval `LoginOk` asked for.
    heartbeat: Duration,
    /// When something was last written: a heartbeat is due a heartbeat
    /// interval later.
    last_write: Instant,
}

impl BenchLink {
    /// Opens a TCP connection from `endpoint.source` to `endpoint.addr`,
    /// with socket buffers of `buffer` bytes to start with (small for idle
    /// links, larger for busy ones).
    pub async fn open(endpoint: Endpoint, buffer: usize) -> Result<BenchLink, LinkError> {
        let socket = TcpSocket::new_v4()?;
        if let Some(ip) = endpoint.source {
            // The port is chosen at connect, by the whole 4-tuple. Chosen
            // at bind, it must be free of every socket on the address,
            // TIME_WAIT ones included: after a round of 19,000 links, the
            // next round's binds spent seconds in the kernel's search for
            // a free port (perf: `inet_csk_get_port`, 94% of a load
            // process), and about one run in six read a few thousand
            // logins/s instead of about 20,000.
            setsockopt(&socket, IpBindAddressNoPort, &true).map_err(std::io::Error::from)?;
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let stream = socket.connect(endpoint.addr).await?;
        stream.set_nodelay(true)?;
        Ok(BenchLink {
            framed: Framed::with_capacity(stream, FrameCodec::default(), buffer),
            encoder: FrameCodec::default(),
            window: AckWindow::new(AckConfig::default()),
            reorder: ReorderBuffer::new(REORDER_CAPACITY),
            acked: 0,
            next_ping: 1,
            heartbeat: DEFAULT_HEARTBEAT,
            last_write: Instant::now(),
        })
    }

    /// Opens a link, logs in with `token` as `device`, and reads until
    /// `SyncDone`, acking as it goes.
    pub async fn connect(
        endpoint: Endpoint,
        buffer: usize,
        token: &str,
        device: &str,
    ) -> Result<(BenchLink, LoggedIn), LinkError> {
        let login = async {
            let mut link = BenchLink::open(endpoint, buffer).await?;
            let logged_in = link.login(token, device).await?;
            Ok((link, logged_in))
        };
        tokio::time::timeout(LOGIN_TIMEOUT, login)
            .await
            .map_err(|_| LinkError::Timeout("login"))?
    }

    /// Sends `Login` (frame 1) and reads `LoginOk`, the catch-up and
    /// `SyncDone`.
    pub async fn login(&mut self, token: &str, device: &str) -> Result<LoggedIn, LinkError> {
        self.send(Body::Login(Login {
            token: token.to_owned(),
            device_id: device.to_owned(),
        }))?;
        self.flush().await?;
        let mut frames = Vec::new();
        let mut login_ok = None;
        let mut catch_up = Vec::new();
        loop {
            frames.clear();
            self.recv(&mut frames).await?;
            for frame in frames.drain(..) {
                match frame.body {
                    Some(Body::LoginOk(ok)) => {
                        let every = Duration::from_millis(ok.heartbeat_interval_ms.into());
                        self.heartbeat = every.max(Duration::from_millis(100));
                        login_ok = Some(ok);
                    }
                    Some(Body::SyncDone(done)) => {
                        self.flush().await?;
                        let login_ok = login_ok
                            .ok_or_else(|| LinkError::Protocol("SyncDone before LoginOk".into()))?;
                        return Ok(LoggedIn {
                            login_ok,
                            offline_count: done.offline_count,
                            synced_count: done.synced_count,
                            catch_up,
                        });
                    }
                    _ => catch_up.push(frame),
                }
            }
            self.flush().await?;
        }
    }

    /// Waits for at least one frame, then takes every frame already read:
    /// acks release the send window, pings are answered (at the next
    /// flush), and the sequenced frames that are in order are appended to
    /// `out`. If nothing was written for a heartbeat interval meanwhile, it
    /// queues a ping (for the next flush) and returns with no frames, so
    /// the server does not close a link that only listens. Cancel-safe:
    /// its one await is the wait for the first frame.
    pub async fn recv(&mut self, out: &mut Vec<Frame>) -> Result<(), LinkError> {
        let heartbeat_at = self.heartbeat_at();
        let first = tokio::select! {
            first = self.framed.next() => first,
            _ = tokio::time::sleep_until(heartbeat_at) => return self.ping(),
        };
        self.take(first, out)?;
        while let Some(next) = self.framed.next().now_or_never() {
            self.take(next, out)?;
        }
        Ok(())
    }

    fn take(
        &mut self,
        next: Option<Result<Frame, CodecError>>,
        out: &mut Vec<Frame>,
    ) -> Result<(), LinkError> {
        let frame = match next {
            None => {
                return Err(LinkError::Closed {
                    code: None,
                    message: "connection closed".into(),
                })
            }
            Some(frame) => frame?,
        };
        if frame.id == 0 {
            return match frame.body {
                Some(Body::Ack(ack)) => {
                    self.window.on_ack(ack.id);
                    Ok(())
                }
                Some(Body::Ping(ping)) => {
                    self.write(&Frame::new(0, Body::Pong(Pong { nonce: ping.nonce })))
                }
                Some(Body::Error(e)) => Err(LinkError::Closed {
                    code: ErrorCode::try_from(e.code).ok(),
                    message: e.message,
                }),
                _ => Ok(()),
            };
        }
        match self.reorder.accept(frame.id, frame) {
            Accepted::Ready(frames) => out.extend(frames),
            // A resend of what we have: our ack was lost, ack again.
            Accepted::Duplicate => self.acked = 0,
            Accepted::Buffered | Accepted::Overflow => {}
        }
        Ok(())
    }

    /// Numbers `body` with the next id and writes it at the next flush.
    /// Fails if the send window is full; check [`BenchLink::can_send`].
    pub fn send(&mut self, body: Body) -> Result<(), LinkError> {
        let frame = self
            .window
            .send(body, (), Instant::now().into_std())
            .map_err(|_| LinkError::Protocol("send window full".into()))?;
        self.encoder.encode(frame, self.framed.write_buffer_mut())?;
        Ok(())
    }

    /// True while the send window has room.
    pub fn can_send(&self) -> bool {
        !self.window.is_full()
    }

    /// Sequenced frames sent and not yet acked.
    pub fn unacked(&self) -> usize {
        self.window.len()
    }

    /// Queues a heartbeat.
    pub fn ping(&mut self) -> Result<(), LinkError> {
        let nonce = self.next_ping;
        self.next_ping += 1;
        self.write(&Frame::new(0, Body::Ping(Ping { nonce })))
    }

    /// When a heartbeat is due: a heartbeat interval after the last write.
    fn heartbeat_at(&self) -> Instant {
        self.last_write + self.heartbeat
    }

    /// When the earliest retransmission is due, if anything is unacked.
    pub fn retransmit_at(&self) -> Option<Instant> {
        self.window.next_deadline().map(Instant::from_std)
    }

    /// Queues the frames whose ack timeout passed again, and a heartbeat if
    /// one is due: a caller whose timers keep firing before [`recv`]'s own
    /// heartbeat must not leave the link silent until the server closes it.
    ///
    /// [`recv`]: BenchLink::recv
    pub fn retransmit(&mut self) -> Result<(), LinkError> {
        let now = Instant::now();
        for frame in self.window.poll_timeouts(now.into_std())? {
            self.write(&frame)?;
        }
        if self.framed.write_buffer().is_empty() && now >= self.heartbeat_at() {
            self.ping()?;
        }
        Ok(())
    }

    /// Writes the cumulative ack if anything new was processed, then
    /// everything queued, in one write.
    pub async fn flush(&mut self) -> Result<(), LinkError> {
        let last = self.reorder.last_id();
        if last > 0 && last != self.acked {
            self.write(&Frame::ack(last))?;
            self.acked = last;
        }
        if !self.framed.write_buffer().is_empty() {
            SinkExt::<&Frame>::flush(&mut self.framed).await?;
            self.last_write = Instant::now();
        }
        Ok(())
    }

    /// Closes the socket after writing what is queued.
    pub async fn close(mut self) {
        let _ = self.flush().await;
        let _ = SinkExt::<&Frame>::close(&mut self.framed).await;
    }

    fn write(&mut self, frame: &Frame) -> Result<(), LinkError> {
        self.encoder.encode(frame, self.framed.write_buffer_mut())?;
        Ok(())
    }
}

/// True for a request error that asks for a resend later (the same
/// `client_msg_id`): `INTERNAL` and `SHUTTING_DOWN`.
pub fn retryable(e: &im_proto::v1::Error) -> bool {
    matches!(
        ErrorCode::try_from(e.code),
        Ok(ErrorCode::Internal | ErrorCode::ShuttingDown)
    )
}

/// How long to wait before resending after a retryable error.
pub const RESEND_AFTER: Duration = Duration::from_millis(200);

/// The local addresses links are spread over: 127.0.0.2 and up.
pub fn source_addr(i: usize, count: usize) -> Option<IpAddr> {
    (count > 0).then(|| IpAddr::from([127, 0, 0, 2 + (i % count.min(250)) as u8]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A sender whose timers fire before `recv`'s heartbeat (a due resend,
    /// a retransmission) still pings once the heartbeat interval passes.
    #[tokio::test]
    async fn a_retransmit_wakeup_sends_the_due_heartbeat() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = Endpoint {
            addr: listener.local_addr().unwrap(),
            source: None,
        };
        let (link, accepted) = tokio::join!(BenchLink::open(endpoint, 4096), listener.accept());
        let mut link = link.unwrap();
        let mut server = Framed::new(accepted.unwrap().0, FrameCodec::default());
        // Set by hand rather than waited for, so a slow machine cannot make
        // the heartbeat due early.
        link.heartbeat = Duration::from_secs(3600);

        // Not yet due: nothing is written.
        link.retransmit().unwrap();
        link.flush().await.unwrap();
        let early = tokio::time::timeout(Duration::from_millis(20), server.next()).await;
        assert!(early.is_err(), "wrote {early:?} before a heartbeat was due");

        link.heartbeat = Duration::ZERO;
        link.retransmit().unwrap();
        link.flush().await.unwrap();
        let frame = tokio::time::timeout(Duration::from_secs(5), server.next())
            .await
            .expect("a heartbeat")
            .expect("a frame")
            .unwrap();
        assert!(matches!(frame.body, Some(Body::Ping(_))), "{frame:?}");
    }
}
