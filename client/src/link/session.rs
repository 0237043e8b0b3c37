//! A link that outlives its connections.
//!
//! [`Session`] keeps one [`Link`] up: when the connection drops (or the
//! server closes it for a reason a new connection can fix) it reconnects
//! with backoff, through the same address (a load balancer may hand it
//! another connector), and logs in again. Sends still waiting for SENT are
//! sent again, in their order, with the same `client_msg_id`: the server
//! stores and delivers each once and answers a resend with the stored
//! message. Messages the new connection's catch-up brings again are handed
//! to the application only if they are newer than what it already got in
//! that conversation, so it sees each once, in seq order.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use im_proto::v1::{ContentType, SendMessage};
use im_proto::ErrorCode;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::{new_client_msg_id, Event, Link, LinkOptions, SentReceipt, Target};
use crate::error::ClientError;

/// Tuning of a [`Session`].
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Options of each underlying link.
    pub link: LinkOptions,
    /// Wait before the first reconnect; doubled after each failure.
    pub initial_backoff: Duration,
    /// Longest wait between reconnects.
    pub max_backoff: Duration,
    /// Events waiting for the application before the session waits.
    pub event_buffer: usize,
    /// What this device has handed to its application so far. A device
    /// keeps it across sessions (as an app keeps it on disk), so that a new
    /// session does not hand over again what an earlier one did; give each
    /// device its own.
    pub seen: SeenSeqs,
}

/// Per conversation, the highest seq handed to the application. Cheap to
/// clone; clones share the record.
#[derive(Debug, Clone, Default)]
pub struct SeenSeqs(Arc<Mutex<HashMap<String, u64>>>);

impl SeenSeqs {
    /// The highest seq handed over in `conversation` (0 for none).
    pub fn get(&self, conversation: &str) -> u64 {
        let seen = self.0.lock().expect("seen lock");
        seen.get(conversation).copied().unwrap_or(0)
    }

    /// Records `seq` in `conversation` if it is newer; false if it is not
    /// (so it was handed over already).
    fn advance(&self, conversation: &str, seq: u64) -> bool {
        let mut seen = self.0.lock().expect("seen lock");
        match seen.get_mut(conversation) {
            Some(last) if seq <= *last => false,
            Some(last) => {
                *last = seq;
                true
            }
            None => {
                seen.insert(conversation.to_owned(), seq);
                true
            }
        }
    }
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            link: LinkOptions::default(),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            event_buffer: 1024,
            seen: SeenSeqs::default(),
        }
    }
}

/// What a session tells the application.
#[derive(Debug, Clone)]
pub enum SessionEvent {
    /// An event of the current link. Messages are deduplicated across
    /// reconnects; `Event::Closed` comes only once, when the session ends.
    Link(Event),
    /// The connection dropped; the session is reconnecting.
    Disconnected {
        /// Why it dropped.
        message: String,
    },
    /// Logged in again on a new connection; its catch-up follows.
    Reconnected,
}

type SendReply = oneshot::Sender<Result<SentReceipt, ClientError>>;

/// Wait before making a send again that the server answered with "resend
/// later" (`SHUTTING_DOWN`, `INTERNAL`) while the link stayed up.
const RETRY_DELAY: Duration = Duration::from_millis(200);

/// Longest wait for a closed link's last events.
const DRAIN_AT_MOST: Duration = Duration::from_secs(5);

enum Command {
    Send(SendMessage, SendReply),
    MarkRead(String, u64, oneshot::Sender<Result<(), ClientError>>),
}

/// A reconnecting, resending link. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Session {
    commands: mpsc::Sender<Command>,
    shutdown: CancellationToken,
    /// Why the session ended, once it has.
    finished: watch::Receiver<Option<String>>,
    user_id: u64,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Send(m, _) => write!(f, "Send({})", m.client_msg_id),
            Command::MarkRead(c, s, _) => write!(f, "MarkRead({c}, {s})"),
        }
    }
}

/// Closes that a new connection cannot fix.
fn is_final(code: Option<ErrorCode>) -> bool {
    matches!(
        code,
        Some(
            ErrorCode::Unauthenticated
                | ErrorCode::TokenRevoked
                | ErrorCode::Conflict
                | ErrorCode::ProtocolViolation
        )
    )
}

/// Answers that mean "try again" rather than "no".
fn is_retryable(error: &ClientError) -> bool {
    match error {
        ClientError::Closed(_) | ClientError::Timeout(_) => true,
        ClientError::Api { code, .. } => code == "SHUTTING_DOWN" || code == "INTERNAL",
        _ => false,
    }
}

impl Session {
    /// Connects and logs in (this first attempt's error is returned as is,
    /// so a bad token fails at once), then keeps the link up until `close`.
    pub async fn connect(
        addr: impl Into<String>,
        token: impl Into<String>,
        device_id: impl Into<String>,
        options: SessionOptions,
    ) -> Result<(Session, mpsc::Receiver<SessionEvent>), ClientError> {
        let (addr, token, device) = (addr.into(), token.into(), device_id.into());
        let (link, link_events) =
            Link::connect(addr.as_str(), &token, &device, options.link.clone()).await?;
        let user_id = link.user_id();
        let (commands_tx, commands) = mpsc::channel(64);
        let (events_tx, events) = mpsc::channel(options.event_buffer.max(1));
        let shutdown = CancellationToken::new();
        let (finished_tx, finished) = watch::channel(None);
        let task = SessionTask {
            addr,
            token,
            device,
            options,
            commands,
            events: events_tx,
            shutdown: shutdown.clone(),
            waiting: VecDeque::new(),
        };
        tokio::spawn(async move {
            let why = task.run(link, link_events).await;
            let _ = finished_tx.send(Some(why));
        });
        let session = Session {
            commands: commands_tx,
            shutdown,
            finished,
            user_id,
        };
        Ok((session, events))
    }

    /// This session's user id.
    pub fn user_id(&self) -> u64 {
        self.user_id
    }

    /// Sends a message and waits for its SENT receipt, across reconnects.
    /// Fails only with the server's refusal (e.g. `NOT_FRIENDS`) or when the
    /// session ends first. An empty `client_msg_id` gets a fresh UUID.
    pub async fn send(&self, mut message: SendMessage) -> Result<SentReceipt, ClientError> {
        if message.client_msg_id.is_empty() {
            message.client_msg_id = new_client_msg_id();
        }
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Send(message, reply))
            .await
            .map_err(|_| self.ended())?;
        answer.await.map_err(|_| self.ended())?
    }

    /// Sends a text message (see [`Session::send`]).
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

    /// Marks a conversation read up to `seq` on the current link.
    pub async fn mark_read(
        &self,
        conversation_id: impl Into<String>,
        seq: u64,
    ) -> Result<(), ClientError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::MarkRead(conversation_id.into(), seq, reply))
            .await
            .map_err(|_| self.ended())?;
        answer.await.map_err(|_| self.ended())?
    }

    /// Closes the current link gracefully and ends the session.
    pub async fn close(&self) {
        self.shutdown.cancel();
        let mut finished = self.finished.clone();
        let _ = finished.wait_for(|why| why.is_some()).await;
    }
}

type Answer = oneshot::Receiver<Result<SentReceipt, ClientError>>;

/// The answer to one queued send, with its client id.
async fn answered(
    id: String,
    answer: Answer,
) -> (
    String,
    Result<Result<SentReceipt, ClientError>, oneshot::error::RecvError>,
) {
    (id, answer.await)
}

impl Session {
    /// The error of a call made after the session ended, with the reason.
    fn ended(&self) -> ClientError {
        let why = self.finished.borrow().clone();
        ClientError::Closed(why.unwrap_or_else(|| "the session has ended".into()))
    }
}

struct SessionTask {
    addr: String,
    token: String,
    device: String,
    options: SessionOptions,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<SessionEvent>,
    shutdown: CancellationToken,
    /// Sends without SENT yet, in the order they were made.
    waiting: VecDeque<(SendMessage, Option<SendReply>)>,
}

/// How one connection ended.
enum Ended {
    /// Reconnect.
    Dropped(String),
    /// The session is over; this is the last event.
    Final(Event),
}

impl SessionTask {
    /// Returns why the session ended.
    async fn run(mut self, mut link: Link, mut link_events: mpsc::Receiver<Event>) -> String {
        loop {
            let ended = self.serve(&link, &mut link_events).await;
            link.close().await;
            self.drain(&mut link_events).await;
            let message = match ended {
                Ended::Final(event) => return self.finish(event).await,
                Ended::Dropped(message) => message,
            };
            let _ = self
                .events
                .send(SessionEvent::Disconnected { message })
                .await;
            match self.reconnect().await {
                Ok((new_link, new_events)) => {
                    (link, link_events) = (new_link, new_events);
                    let _ = self.events.send(SessionEvent::Reconnected).await;
                }
                Err(event) => return self.finish(event).await,
            }
        }
    }

    /// Hands the application what the closed link still holds: the link
    /// acked those messages when it took them, so the server will not send
    /// them again.
    async fn drain(&mut self, link_events: &mut mpsc::Receiver<Event>) {
        let drained = async {
            while let Some(event) = link_events.recv().await {
                if matches!(event, Event::Closed { .. }) {
                    break;
                }
                self.hand_over(event).await;
            }
        };
        if tokio::time::timeout(DRAIN_AT_MOST, drained).await.is_err() {
            tracing::warn!("a closed link's events did not end");
        }
    }

    /// Gives one link event to the application; a message only if it is
    /// newer than what the device has in its conversation.
    async fn hand_over(&mut self, event: Event) {
        if let Event::Message(m) = &event {
            if !self.options.seen.advance(&m.conversation_id, m.seq) {
                return;
            }
        }
        let _ = self.events.send(SessionEvent::Link(event)).await;
    }

    async fn finish(mut self, last: Event) -> String {
        // Sends still waiting are told why, which a caller cannot learn
        // otherwise if it does not read the events.
        let why = match &last {
            Event::Closed { code, message } => {
                format!("the session has ended ({code:?}: {message})")
            }
            _ => "the session has ended".to_owned(),
        };
        for (_, reply) in self.waiting.drain(..) {
            if let Some(reply) = reply {
                let _ = reply.send(Err(ClientError::Closed(why.clone())));
            }
        }
        let _ = self.events.send(SessionEvent::Link(last)).await;
        why
    }

    /// Runs one connection: resends what waits for SENT, then relays
    /// commands and events until the connection ends.
    async fn serve(&mut self, link: &Link, events: &mut mpsc::Receiver<Event>) -> Ended {
        let mut answers = FuturesUnordered::new();
        // Sends the server asked to be made again while this link stays up.
        let (retry_tx, mut retries) = mpsc::unbounded_channel();
        for (message, _) in &self.waiting {
            match link.queue_send(message.clone()).await {
                Ok(answer) => {
                    let id = message.client_msg_id.clone();
                    answers.push(answered(id, answer));
                }
                Err(e) => return Ended::Dropped(e.to_string()),
            }
        }
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => {
                    return Ended::Final(Event::Closed { code: None, message: "closed by the application".into() });
                }
                command = self.commands.recv() => match command {
                    None => return Ended::Final(Event::Closed { code: None, message: "every handle dropped".into() }),
                    Some(Command::Send(message, reply)) => {
                        let id = message.client_msg_id.clone();
                        self.waiting.push_back((message.clone(), Some(reply)));
                        match link.queue_send(message).await {
                            Ok(answer) => answers.push(answered(id, answer)),
                            Err(e) => return Ended::Dropped(e.to_string()),
                        }
                    }
                    Some(Command::MarkRead(conversation, seq, reply)) => {
                        let link = link.clone();
                        tokio::spawn(async move { let _ = reply.send(link.mark_read(conversation, seq).await); });
                    }
                },
                Some((id, answer)) = answers.next() => {
                    let result = answer.unwrap_or_else(|_| Err(ClientError::Closed("link ended".into())));
                    if let Err(error) = &result {
                        if matches!(error, ClientError::Api { .. }) && is_retryable(error) {
                            // "Resend later" on a live link: once more, shortly.
                            if let Some((message, _)) = self.waiting.iter().find(|(m, _)| m.client_msg_id == id) {
                                let (link, message, retry_tx) = (link.clone(), message.clone(), retry_tx.clone());
                                tokio::spawn(async move {
                                    tokio::time::sleep(RETRY_DELAY).await;
                                    if let Ok(answer) = link.queue_send(message).await {
                                        let _ = retry_tx.send(answered(id, answer));
                                    }
                                });
                            }
                            continue;
                        }
                        if is_retryable(error) {
                            // The link ended: resent on the next connection.
                            continue;
                        }
                    }
                    if let Some(i) = self.waiting.iter().position(|(m, _)| m.client_msg_id == id) {
                        if let Some((_, Some(reply))) = self.waiting.remove(i) {
                            let _ = reply.send(result);
                        }
                    }
                }
                Some(retry) = retries.recv() => answers.push(retry),
                event = events.recv() => match event {
                    None => return Ended::Dropped("link task ended".into()),
                    Some(Event::Closed { code, message }) if is_final(code) => {
                        return Ended::Final(Event::Closed { code, message });
                    }
                    Some(Event::Closed { message, .. }) => return Ended::Dropped(message),
                    Some(event) => self.hand_over(event).await,
                },
            }
        }
    }

    /// Connects again with doubling backoff until it works, the session is
    /// closed, or the server refuses the login for good.
    async fn reconnect(&mut self) -> Result<(Link, mpsc::Receiver<Event>), Event> {
        let mut backoff = self.options.initial_backoff;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => {
                    return Err(Event::Closed { code: None, message: "closed by the application".into() });
                }
                _ = tokio::time::sleep(backoff) => {}
            }
            let connected = Link::connect(
                self.addr.as_str(),
                &self.token,
                &self.device,
                self.options.link.clone(),
            )
            .await;
            match connected {
                Ok(link) => return Ok(link),
                Err(ClientError::Rejected { code, message })
                    if is_final(ErrorCode::from_str_name(&code)) =>
                {
                    return Err(Event::Closed {
                        code: ErrorCode::from_str_name(&code),
                        message,
                    });
                }
                Err(error) => tracing::debug!(%error, "reconnect failed"),
            }
            backoff = (backoff * 2).min(self.options.max_backoff);
        }
    }
}
