//! The long-lived link to the connector: login, then chat messages, receipts
//! and events both ways, under the ack, ordering and retransmission rules of
//! docs/PROTOCOL.md.
//!
//! [`Link::connect`] logs in and starts one background task that owns the
//! socket; the [`Link`] handle sends it commands and the returned receiver
//! yields [`Event`]s. Keep reading the events: while more than
//! `event_buffer` of them wait, the task stops reading the socket (so the
//! server, not this process, holds the backlog), and with it stop the answers
//! that `send` and `mark_read` wait for. Dropping the receiver closes the link.

mod event;
mod pending;
mod seen;
mod session;
mod state;
mod task;

pub use event::Event;
pub use session::{SeenSeqs, Session, SessionEvent, SessionOptions};

use std::sync::Arc;
use std::time::Duration;

use im_proto::v1::{ContentType, FileRef, LoginOk, Receipt, SendMessage};
use im_proto::{AckConfig, FrameCodec, DEFAULT_MAX_FRAME_BYTES};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use crate::error::ClientError;
use pending::{ReadReply, SendReply};

/// The SENT receipt that answers a `send`.
pub type SentReceipt = Receipt;

/// A socket speaking the link's framing, without any of its rules: for tests
/// that send hand-made frames.
pub type RawConn = Framed<TcpStream, FrameCodec>;

/// Opens a TCP connection framed with [`FrameCodec`] (default size limit).
pub async fn connect_raw(addr: impl ToSocketAddrs) -> std::io::Result<RawConn> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(Framed::new(stream, FrameCodec::default()))
}

/// A fresh `client_msg_id` (a UUID v4). Set it yourself before `send` when
/// the message may have to be resent after a reconnect.
pub fn new_client_msg_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Tuning of a link.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    /// ACK window size, retransmission timeout, backoff and retry limit.
    pub ack: AckConfig,
    /// Largest frame this client reads (and writes, unless the server's
    /// `LoginOk` says otherwise).
    pub max_frame_bytes: usize,
    /// Capacity of the event channel; also how many undelivered events the
    /// task holds before it stops reading the socket.
    pub event_buffer: usize,
    /// How long to wait for `LoginOk`.
    pub login_timeout: Duration,
    /// How long `close` waits for the server to ack what was sent.
    pub close_timeout: Duration,
}

impl Default for LinkOptions {
    fn default() -> Self {
        LinkOptions {
            ack: AckConfig::default(),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            event_buffer: 1024,
            login_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
        }
    }
}

/// Who a message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// A friend, by user id.
    User(u64),
    /// A group this user is in, by group id.
    Group(u64),
}

impl Target {
    /// The conversation id a message from `me` to this target lands in.
    pub fn conversation_id(self, me: u64) -> String {
        match self {
            Target::User(peer) => format!("u{}-{}", me.min(peer), me.max(peer)),
            Target::Group(group) => format!("g{group}"),
        }
    }

    /// An empty `SendMessage` addressed to this target.
    pub fn message(self) -> SendMessage {
        let (to_user, to_group) = match self {
            Target::User(id) => (id, 0),
            Target::Group(id) => (0, id),
        };
        SendMessage {
            to_user,
            to_group,
            ..Default::default()
        }
    }
}

/// What the handle asks of the link task.
#[derive(Debug)]
enum Command {
    Send {
        message: SendMessage,
        reply: SendReply,
    },
    MarkRead {
        conversation_id: String,
        seq: u64,
        reply: ReadReply,
    },
}

/// Handle to a logged-in link. Cheap to clone; the link closes when `close`
/// is called on any clone or when every clone is dropped.
#[derive(Debug, Clone)]
pub struct Link {
    commands: mpsc::Sender<Command>,
    shutdown: CancellationToken,
    finished: watch::Receiver<bool>,
    login: Arc<LoginOk>,
}

impl Link {
    /// Connects, logs in with `token` as `device_id`, and starts the link
    /// task. Fails with `ClientError::Rejected` when the server refuses the
    /// login (e.g. `UNAUTHENTICATED`).
    pub async fn connect(
        addr: impl ToSocketAddrs,
        token: &str,
        device_id: &str,
        options: LinkOptions,
    ) -> Result<(Link, mpsc::Receiver<Event>), ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let conn = Framed::new(stream, FrameCodec::new(options.max_frame_bytes));
        task::start(conn, token, device_id, options).await
    }

    /// The server's answer to the login.
    pub fn login_ok(&self) -> &LoginOk {
        &self.login
    }

    /// This link's user id.
    pub fn user_id(&self) -> u64 {
        self.login.user_id
    }

    /// True once the link task has ended.
    pub fn is_closed(&self) -> bool {
        self.commands.is_closed()
    }

    /// Sends a chat message and waits for its SENT receipt (the message is
    /// durable) or the server's error (`ClientError::Api`, e.g. `NOT_FRIENDS`).
    /// An empty `client_msg_id` is filled with a fresh UUID.
    pub async fn send(&self, mut message: SendMessage) -> Result<SentReceipt, ClientError> {
        if message.client_msg_id.is_empty() {
            message.client_msg_id = new_client_msg_id();
        }
        let (reply, answer) = oneshot::channel();
        self.command(Command::Send { message, reply }).await?;
        answer.await.map_err(|_| link_gone())?
    }

    /// Queues a send (in call order) and returns where its SENT receipt or
    /// error will come, without waiting for it.
    pub(crate) async fn queue_send(
        &self,
        message: SendMessage,
    ) -> Result<oneshot::Receiver<Result<SentReceipt, ClientError>>, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::Send { message, reply }).await?;
        Ok(answer)
    }

    /// Sends a text message.
    pub async fn send_text(
        &self,
        target: Target,
        text: impl Into<String>,
    ) -> Result<SentReceipt, ClientError> {
        let message = SendMessage {
            content_type: ContentType::Text as i32,
            text: text.into(),
            ..target.message()
        };
        self.send(message).await
    }

    /// Sends an uploaded file as an `IMAGE` or `FILE` message with a caption.
    pub async fn send_file(
        &self,
        target: Target,
        content_type: ContentType,
        file: FileRef,
        caption: impl Into<String>,
    ) -> Result<SentReceipt, ClientError> {
        let message = SendMessage {
            content_type: content_type as i32,
            text: caption.into(),
            file: Some(file),
            ..target.message()
        };
        self.send(message).await
    }

    /// Marks `conversation_id` read up to and including `seq`; resolves when
    /// the server acked it, or fails with its error (e.g. `FORBIDDEN`).
    pub async fn mark_read(
        &self,
        conversation_id: impl Into<String>,
        seq: u64,
    ) -> Result<(), ClientError> {
        let (reply, answer) = oneshot::channel();
        let conversation_id = conversation_id.into();
        self.command(Command::MarkRead {
            conversation_id,
            seq,
            reply,
        })
        .await?;
        answer.await.map_err(|_| link_gone())?
    }

    /// Closes the link gracefully: waits (up to `close_timeout`) until the
    /// server acked everything sent, then shuts the socket. Frames the server
    /// sent that were not handled yet stay with the server for the next login.
    pub async fn close(&self) {
        self.shutdown.cancel();
        let mut finished = self.finished.clone();
        let _ = finished.wait_for(|done| *done).await;
    }

    async fn command(&self, command: Command) -> Result<(), ClientError> {
        self.commands.send(command).await.map_err(|_| link_gone())
    }
}

fn link_gone() -> ClientError {
    ClientError::Closed("the link is closed".to_string())
}
