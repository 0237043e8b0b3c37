//! One client link: the socket, its ACK window and reorder buffer, and the
//! loop that feeds a `Session`. Login comes first (with a timeout), then the
//! catch-up, then live traffic.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use im_proto::v1::{Error as WireError, LoginOk, Pong};
use im_proto::{Accepted, AckWindow, Body, CodecError, ErrorCode, Frame, ReorderBuffer};
use im_store::{hash_token, now_ms, Appended, UserId};
use im_transfer::{Push, TransferError};
use tokio::time::{sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::mailbox::{release_if_empty, Event, Mailbox};
use crate::registry::Registration;
use crate::report::{Reporter, Reports};
use crate::session::{self, Delivery, Session};
use crate::transport::Conn;
use crate::Connector;

type SendResult = (u64, String, Result<Appended, TransferError>);

/// Events a link takes in one turn before it writes: at most a window's
/// worth, and tokio's cooperative budget ends a turn sooner.
const MAX_EVENTS_PER_WRITE: usize = 256;

/// What woke a link's loop.
enum Wake {
    /// The server is shutting down.
    Shutdown,
    /// A send became durable, or failed.
    Answered(SendResult),
    /// The acks in flight to the store were written.
    ReportWritten,
    /// The mailbox had something.
    Mail(Event),
    /// The client sent a frame, or the connection ended.
    Frame(Option<Result<Frame, CodecError>>),
    /// The held ack is due, or a retransmission, or else the idle timeout.
    Timer { ack: bool, retransmit: bool },
}

/// Why a link ends, and what the client is told.
struct Close {
    code: Option<ErrorCode>,
    message: String,
}

impl Close {
    fn quiet() -> Self {
        Close {
            code: None,
            message: String::new(),
        }
    }

    fn with(code: ErrorCode, message: impl Into<String>) -> Self {
        Close {
            code: Some(code),
            message: message.into(),
        }
    }

    fn codec(error: CodecError) -> Self {
        match error {
            CodecError::TooLarge { .. } => Close::with(ErrorCode::FrameTooLarge, error.to_string()),
            CodecError::Malformed(_) | CodecError::NotBinary(_) => {
                Close::with(ErrorCode::MalformedFrame, error.to_string())
            }
            CodecError::Io(_) => Close::quiet(),
        }
    }
}

/// Serves one accepted link until it closes.
pub(crate) async fn serve(
    mut conn: Conn,
    peer: SocketAddr,
    ctx: Arc<Connector>,
    shutdown: CancellationToken,
) {
    // Numbered on arrival, before the login that may be held up.
    let link_id = ctx.registry.next_link_id();
    let (user, device, token_hash) = match login(&mut conn, &ctx).await {
        Ok(who) => who,
        Err(close) => {
            send_fatal(&mut conn, close).await;
            return;
        }
    };
    let span = tracing::info_span!("link", %peer, user, device = %device,
        connector = %ctx.registry.connector_id());
    async move {
        tracing::info!("logged in");
        // A newer link of this device arrived while this login was held up.
        let Some(registration) = ctx.registry.register(user, &device, link_id) else {
            let code = ErrorCode::Conflict;
            send_fatal(&mut conn, Close::with(code, kill_message(code))).await;
            return;
        };
        let mut link = Link::new(conn, ctx.clone(), Session::new(user, device, token_hash));
        let close = link.run(&registration, shutdown).await;
        Box::pin(link.finish(close, registration)).await;
    }
    .instrument(span)
    .await
}

/// Reads the first frame, which must be `Login` with id 1 and a live token.
async fn login(conn: &mut Conn, ctx: &Connector) -> Result<(UserId, String, String), Close> {
    let first = match timeout(ctx.config.login_timeout, conn.next()).await {
        Err(_) => return Err(Close::with(ErrorCode::LoginTimeout, "no Login in time")),
        Ok(None) => return Err(Close::quiet()),
        Ok(Some(Err(e))) => return Err(Close::codec(e)),
        Ok(Some(Ok(frame))) => frame,
    };
    let Some(Body::Login(login)) = first.body.filter(|_| first.id == 1) else {
        return Err(Close::with(
            ErrorCode::ProtocolViolation,
            "the first frame must be Login with id 1",
        ));
    };
    if login.device_id.is_empty() || login.device_id.len() > 64 {
        return Err(Close::with(
            ErrorCode::BadRequest,
            "device_id must be 1 to 64 bytes",
        ));
    }
    let token_hash = hash_token(&login.token);
    // The device is registered with the token check (one statement in
    // MySQL): a new device's cursors start before its catch-up reads them.
    match ctx.store.login_device(&token_hash, &login.device_id).await {
        Ok(Some((user, _))) => Ok((user, login.device_id, token_hash)),
        Ok(None) => Err(Close::with(
            ErrorCode::Unauthenticated,
            "invalid or revoked token",
        )),
        Err(error) => {
            tracing::error!(%error, "token and device check failed");
            Err(Close::with(ErrorCode::Internal, "internal error"))
        }
    }
}

/// Writes a fatal error frame, best effort, then the link is dropped.
async fn send_fatal(conn: &mut Conn, close: Close) {
    if let Some(code) = close.code {
        let frame = Frame::fatal(code, close.message);
        let _ = timeout(Duration::from_secs(1), conn.send(&frame)).await;
    }
}

struct Link {
    conn: Conn,
    ctx: Arc<Connector>,
    session: Session,
    window: AckWindow<Delivery>,
    reorder: ReorderBuffer<Frame>,
    /// Answers to the client's own frames (SENT, request errors); they go out
    /// before catch-up and pushes.
    responses: VecDeque<Body>,
    pending: FuturesOrdered<BoxFuture<'static, SendResult>>,
    /// Acks on their way to the store.
    reports: Reports,
    last_seen: Instant,
    /// An ack is owed for frames processed: it goes out with the next
    /// frames written, or alone at this time (`ack_hold` after the first
    /// frame it covers). A `Send` is answered by its SENT receipt once the
    /// message is durable, a few milliseconds later: acked at once, the
    /// ack and the receipt were two writes to the socket and two reads for
    /// the client. The default hold (20 ms) is far below the clients'
    /// retransmission timeout (2 s), like TCP's own delayed ack (40 ms).
    ack_due: Option<Instant>,
}

impl Link {
    fn new(conn: Conn, ctx: Arc<Connector>, session: Session) -> Self {
        let window = AckWindow::new(ctx.config.ack);
        let reorder = ReorderBuffer::new(ctx.config.reorder_capacity);
        Link {
            conn,
            ctx,
            session,
            window,
            reorder,
            responses: VecDeque::new(),
            pending: FuturesOrdered::new(),
            reports: Reports::default(),
            last_seen: Instant::now(),
            ack_due: None,
        }
    }

    async fn run(&mut self, registration: &Registration, shutdown: CancellationToken) -> Close {
        let mailbox = &registration.mailbox;
        // The Login frame is id 1 of the client's sequence.
        let _ = self.reorder.accept(1, Frame::default());
        if let Err(close) = Box::pin(self.start()).await {
            return close;
        }
        loop {
            if let Err(close) = self.write_out().await {
                return close;
            }
            let mut wake = self.wait(mailbox, &shutdown).await;
            // What else is ready now is taken before the next write: a
            // group's burst in the mailbox, the SENT answers of one commit,
            // the frames of one read. One event per write made each of
            // them a socket write of its own.
            for taken in 1.. {
                // A timer wakes for something only the write does (the
                // held ack): it ends the turn.
                let timer = matches!(wake, Wake::Timer { .. });
                if let Err(close) = self.on_wake(wake, mailbox).await {
                    return close;
                }
                // Polled only if what it returns is acted on: an event it
                // returns has been taken (a push out of the mailbox). One
                // that is not ready is dropped having taken nothing.
                if timer || taken == MAX_EVENTS_PER_WRITE {
                    break;
                }
                match self.wait(mailbox, &shutdown).now_or_never() {
                    Some(next) => wake = next,
                    None => break,
                }
            }
        }
    }

    /// Waits for the next event. Cancel-safe (the loop polls it once more
    /// after each event, and drops it if nothing is ready): each branch
    /// takes nothing unless it returns it.
    async fn wait(&mut self, mailbox: &Mailbox, shutdown: &CancellationToken) -> Wake {
        let retransmit_at = self.window.next_deadline().map(Instant::from_std);
        let idle_at = self.last_seen + self.ctx.config.idle_timeout;
        // One timer for both: a retransmission due first, or else the
        // idle timeout.
        let retransmit_due = retransmit_at.filter(|at| *at <= idle_at);
        let wake_at = retransmit_due.unwrap_or(idle_at);
        let ack_due = self.ack_due.filter(|at| *at < wake_at);
        // Pushes are taken while what they queue fits the window's free
        // room, so frames wait in the window, not in the session's queue.
        let live = self.session.queue.len() < self.window_room();
        // Pushes were dropped (the queue was full): once everything
        // queued and sent is through (and the acks have claimed their
        // receipts), what is still unclaimed in the store is what was
        // dropped.
        let caught_up = self.session.queue.is_empty()
            && self.window.is_empty()
            && !self.reports.is_backed_up()
            && self.reports.is_idle()
            && mailbox.is_empty();
        // Kills come with pushes, before the client's frames: a client
        // that never stops sending cannot hold off its own kill.
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => Wake::Shutdown,
            Some(done) = self.pending.next(), if !self.pending.is_empty() => Wake::Answered(done),
            _ = self.reports.written(), if self.reports.is_writing() => Wake::ReportWritten,
            event = mailbox.next(live, caught_up) => Wake::Mail(event),
            frame = self.conn.next() => Wake::Frame(frame),
            _ = sleep_until(ack_due.unwrap_or(wake_at)) => Wake::Timer {
                ack: ack_due.is_some(),
                retransmit: retransmit_due.is_some(),
            },
        }
    }

    /// Acts on one event.
    ///
    /// The handlers that await are boxed. A task keeps room for the
    /// largest state its future can be in, and an idle link waits for
    /// hours: unboxed, the rare large states (a frame being processed, a
    /// resync) made every link's task 3 KiB. Boxed, they cost one
    /// short-lived allocation per event instead.
    async fn on_wake(&mut self, wake: Wake, mailbox: &Mailbox) -> Result<(), Close> {
        match wake {
            Wake::Shutdown => {
                Box::pin(self.drain_sends()).await;
                Err(Close::with(
                    ErrorCode::ShuttingDown,
                    "server is shutting down",
                ))
            }
            Wake::Answered(done) => {
                self.answer_send(done);
                Ok(())
            }
            Wake::ReportWritten => {
                self.reports.next(Reporter::of(&self.ctx, &self.session));
                Ok(())
            }
            Wake::Mail(Event::Killed(code)) => Err(Close::with(code, kill_message(code))),
            Wake::Mail(Event::Push(push)) => {
                // A resync reads what is still unclaimed: first claim what
                // the device acked.
                if matches!(push, Push::Resync) {
                    Box::pin(self.flush_reports()).await;
                }
                let store = self.ctx.store.as_ref();
                match Box::pin(self.session.on_push(store, push)).await {
                    Ok(None) => Ok(()),
                    Ok(Some(code)) => Err(Close::with(code, kill_message(code))),
                    Err(error) => {
                        tracing::error!(%error, "push failed");
                        Err(Close::with(ErrorCode::Internal, "internal error"))
                    }
                }
            }
            Wake::Mail(Event::Lagged) => {
                let store = self.ctx.store.as_ref();
                match Box::pin(self.session.on_push(store, Push::Resync)).await {
                    Ok(_) => {
                        // More may be waiting than one re-read takes: read
                        // again once this is through.
                        if !self.session.queue.is_empty() {
                            mailbox.lag();
                        }
                        Ok(())
                    }
                    Err(error) => {
                        tracing::error!(%error, "resync failed");
                        Err(Close::with(ErrorCode::Internal, "internal error"))
                    }
                }
            }
            Wake::Frame(None) => Err(Close::quiet()),
            Wake::Frame(Some(Err(e))) => Err(Close::codec(e)),
            Wake::Frame(Some(Ok(frame))) => Box::pin(self.on_frame(frame)).await,
            // The next write sends the held ack.
            Wake::Timer { ack: true, .. } => Ok(()),
            Wake::Timer {
                retransmit: true, ..
            } => Box::pin(self.retransmit()).await,
            Wake::Timer { .. } => Err(Close::with(
                ErrorCode::IdleTimeout,
                "nothing received for too long",
            )),
        }
    }

    /// Acks the Login, records the device online, and queues LoginOk and the
    /// catch-up.
    async fn start(&mut self) -> Result<(), Close> {
        let ctx = self.ctx.clone();
        let (user, device) = (self.session.user, self.session.device.clone());
        self.conn.feed(&Frame::ack(1)).await.map_err(Close::codec)?;
        let internal = |error: &dyn std::fmt::Display| {
            tracing::error!(%error, "login failed");
            Close::with(ErrorCode::Internal, "internal error")
        };
        let first = ctx
            .status
            .online(user, &device, ctx.registry.connector_id())
            .await
            .map_err(|e| internal(&e))?;
        if first {
            ctx.transfer.presence(user, true).await;
        }
        let ok = LoginOk {
            user_id: user,
            device_id: device,
            server_time_ms: now_ms(),
            heartbeat_interval_ms: ctx.config.heartbeat_interval.as_millis() as u32,
            max_frame_bytes: ctx.config.max_frame_bytes as u32,
        };
        self.responses.push_back(Body::LoginOk(ok));
        let (offline, synced) = self
            .session
            .catch_up(ctx.store.as_ref(), ctx.config.max_catch_up)
            .await
            .map_err(|e| internal(&e))?;
        tracing::info!(offline, synced, "catch-up queued");
        Ok(())
    }

    /// No room for another frame: the ACK window is full, or so many acks
    /// wait to be written that nothing new goes out until they are.
    fn window_is_full(&self) -> bool {
        self.window.is_full() || self.reports.is_backed_up()
    }

    /// Frames the window takes before it is full (none while acks are
    /// backed up).
    fn window_room(&self) -> usize {
        if self.reports.is_backed_up() {
            0
        } else {
            self.window.room()
        }
    }

    /// Moves queued frames into the ACK window while it has room, and the
    /// ack owed, if any frame went or it is due, then flushes once: one
    /// write per wakeup, not per frame. The ack comes after the answers
    /// (request errors), so a client can tell "acked without error" from
    /// the ack alone.
    async fn write_out(&mut self) -> Result<(), Close> {
        let now = Instant::now().into_std();
        let mut wrote = false;
        while !self.window_is_full() {
            let (body, delivery) = match self.responses.pop_front() {
                Some(body) => (body, Delivery::Nothing),
                None => match self.session.queue.pop_front() {
                    Some(item) => item,
                    None => break,
                },
            };
            let frame = self
                .window
                .send(body, delivery, now)
                .expect("window has room");
            self.conn.feed(frame).await.map_err(Close::codec)?;
            wrote = true;
        }
        if self
            .ack_due
            .is_some_and(|due| wrote || due.into_std() <= now)
        {
            self.ack().await?;
        }
        // Emptied queues give their memory back: frames are a few hundred
        // bytes each, and most links are idle most of the time.
        release_if_empty(&mut self.responses);
        release_if_empty(&mut self.session.queue);
        self.flush().await
    }

    async fn flush(&mut self) -> Result<(), Close> {
        // A client that stops reading must not pin this task forever.
        match timeout(self.ctx.config.idle_timeout, self.conn.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Close::codec(e)),
            Err(_) => Err(Close::with(
                ErrorCode::SlowConsumer,
                "client is not reading",
            )),
        }
    }

    async fn on_frame(&mut self, frame: Frame) -> Result<(), Close> {
        self.last_seen = Instant::now();
        match frame.body {
            Some(Body::Ack(ack)) if frame.id == 0 => {
                let done = self.window.on_ack(ack.id);
                let acked = self.session.acked(done);
                self.reports
                    .add(acked, Reporter::of(&self.ctx, &self.session));
                return Ok(());
            }
            Some(Body::Ping(ping)) if frame.id == 0 => {
                let pong = Frame::new(0, Body::Pong(Pong { nonce: ping.nonce }));
                return self.conn.feed(&pong).await.map_err(Close::codec);
            }
            Some(Body::Pong(_)) if frame.id == 0 => return Ok(()),
            _ if frame.id == 0 => {
                return Err(Close::with(
                    ErrorCode::ProtocolViolation,
                    "only Ack, Ping and Pong may be unsequenced",
                ));
            }
            _ => {}
        }
        // Too many sends waiting to become durable: leave this one unacked;
        // the client will send it again.
        let busy = self.pending.len() + self.responses.len() >= self.ctx.config.max_pending_sends;
        if busy && matches!(frame.body, Some(Body::Send(_))) {
            return Ok(());
        }
        match self.reorder.accept(frame.id, frame) {
            Accepted::Duplicate => self.ack().await,
            Accepted::Buffered | Accepted::Overflow => Ok(()),
            Accepted::Ready(frames) => {
                for frame in frames {
                    self.process(frame).await;
                }
                let hold = self.ctx.config.ack_hold;
                self.ack_due.get_or_insert(Instant::now() + hold);
                Ok(())
            }
        }
    }

    async fn ack(&mut self) -> Result<(), Close> {
        self.ack_due = None;
        // The answers queued behind a full window take the next ids (they
        // go before pushes), so this covers every answer given so far.
        let answered = self.window.last_sent_id() + self.responses.len() as u64;
        let ack = Frame::ack_through(self.reorder.last_id(), answered);
        self.conn.feed(&ack).await.map_err(Close::codec)
    }

    /// Acts on one in-order sequenced frame from the client.
    async fn process(&mut self, frame: Frame) {
        let (user, id) = (self.session.user, frame.id);
        match frame.body {
            Some(Body::Send(send)) => {
                let client_msg_id = send.client_msg_id.clone();
                let device = self.session.device.clone();
                match self.ctx.transfer.submit(user, &device, send).await {
                    Ok(pending) => self
                        .pending
                        .push_back(pending.map(move |r| (id, client_msg_id, r)).boxed()),
                    Err(e) => self.answer_error(id, client_msg_id, e.code, e.message),
                }
            }
            Some(Body::MarkRead(read)) => {
                // DELIVERED before READ: what the device acked is written
                // first.
                self.flush_reports().await;
                if let Err(e) = self
                    .ctx
                    .transfer
                    .read(user, &read.conversation_id, read.seq)
                    .await
                {
                    self.answer_error(id, String::new(), e.code, e.message);
                }
            }
            None => self.answer_error(
                id,
                String::new(),
                ErrorCode::UnknownMessageType,
                "unknown message type",
            ),
            Some(_) => self.answer_error(
                id,
                String::new(),
                ErrorCode::ProtocolViolation,
                "this frame is not accepted from a client here",
            ),
        }
    }

    fn answer_send(&mut self, (id, client_msg_id, result): SendResult) {
        match result {
            Ok(appended) => self
                .responses
                .push_back(session::sent_receipt(&appended.message, client_msg_id)),
            Err(e) => self.answer_error(id, client_msg_id, e.code, e.message),
        }
    }

    fn answer_error(
        &mut self,
        ref_id: u64,
        client_msg_id: String,
        code: ErrorCode,
        message: impl Into<String>,
    ) {
        self.responses.push_back(Body::Error(WireError {
            code: code as i32,
            message: message.into(),
            ref_id,
            client_msg_id,
            fatal: false,
        }));
    }

    /// Writes everything the device acked so far.
    async fn flush_reports(&mut self) {
        let to = Reporter::of(&self.ctx, &self.session);
        self.reports.flush(to).await;
    }

    async fn retransmit(&mut self) -> Result<(), Close> {
        match self.window.poll_timeouts(Instant::now().into_std()) {
            Ok(frames) => {
                for frame in &frames {
                    self.conn.feed(frame).await.map_err(Close::codec)?;
                }
                Ok(())
            }
            Err(e) => Err(Close::with(ErrorCode::RetryLimit, e.to_string())),
        }
    }

    /// At shutdown: lets sends already accepted become durable and answers
    /// them, within the drain timeout.
    async fn drain_sends(&mut self) {
        let deadline = Instant::now() + self.ctx.config.drain_timeout;
        while let Ok(Some(done)) = tokio::time::timeout_at(deadline, self.pending.next()).await {
            self.answer_send(done);
        }
        if self.ack_due.is_some() {
            self.ack_due = Some(Instant::now());
        }
        let _ = self.write_out().await;
    }

    /// Closes the link: tells the client why, then takes the device out of
    /// user status and hands back what it never acked.
    async fn finish(mut self, close: Close, registration: Registration) {
        let link_id = registration.link_id;
        tracing::info!(code = ?close.code, reason = %close.message, "link closed");
        send_fatal(&mut self.conn, close).await;
        let ctx = self.ctx.clone();
        let (user, device) = (self.session.user, self.session.device.clone());
        if ctx.registry.deregister(user, link_id) {
            match ctx
                .status
                .offline(user, &device, ctx.registry.connector_id())
                .await
            {
                Ok(true) => ctx.transfer.presence(user, false).await,
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "status offline failed"),
            }
        }
        // Unacked messages need nothing: the device's cursor did not move, so
        // its next catch-up brings them. Unacked receipts were never claimed,
        // so they are still in the queue.
        self.window.drain();
        while let Some(push) = registration.mailbox.pop() {
            self.session.note_queued_own(&push);
        }
        let own = self.session.acked(Vec::new());
        let to = Reporter::of(&self.ctx, &self.session);
        self.reports.add(own, to);
        self.reports.flush(to).await;
    }
}

fn kill_message(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::SlowConsumer => "device cannot keep up; reconnect to catch up",
        ErrorCode::Conflict => "this device logged in on another link",
        ErrorCode::TokenRevoked => "token was revoked",
        ErrorCode::ShuttingDown => "server is shutting down",
        _ => "link closed by server",
    }
}
