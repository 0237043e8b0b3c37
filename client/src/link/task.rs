//! The link's one background task: it owns the socket, feeds `LinkState` with
//! frames, commands and the clock, and writes what the state queues.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use im_proto::{CodecError, ErrorCode, Frame, FrameCodec};
use tokio::sync::{mpsc, watch};
use tokio::time::{interval_at, sleep_until, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::state::{CloseReason, LinkState};
use super::{Command, Event, Link, LinkOptions, RawConn};
use crate::error::ClientError;

/// Commands waiting for the task; `send` callers wait beyond this.
const COMMAND_BUFFER: usize = 64;
/// Heartbeat when the server's `LoginOk` names none.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
/// Heartbeats without a single frame from the server before the link is
/// considered dead (the server answers every Ping, so silence means trouble).
const SILENT_HEARTBEATS: u32 = 3;

/// The clock the state machines run on; tokio's, so paused time works.
fn now() -> std::time::Instant {
    Instant::now().into_std()
}

async fn sleep_until_opt(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(at) => sleep_until(Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// Logs in on `conn`, then spawns the link task.
pub(super) async fn start(
    mut conn: RawConn,
    token: &str,
    device_id: &str,
    options: LinkOptions,
) -> Result<(Link, mpsc::Receiver<Event>), ClientError> {
    let mut state = LinkState::new(&options);
    state.login(token, device_id, now());
    match tokio::time::timeout(options.login_timeout, handshake(&mut conn, &mut state)).await {
        Ok(result) => result?,
        Err(_) => return Err(ClientError::Timeout("no LoginOk from the server".into())),
    }
    let login = state
        .login_ok()
        .cloned()
        .ok_or_else(|| ClientError::Protocol("login ended without LoginOk".into()))?;
    // Frames we write are checked against the server's limit by the state;
    // frames we read may be as large as either side allows.
    let read_limit = options.max_frame_bytes.max(login.max_frame_bytes as usize);
    *conn.codec_mut() = FrameCodec::new(read_limit);
    let heartbeat = match login.heartbeat_interval_ms {
        0 => DEFAULT_HEARTBEAT,
        ms => Duration::from_millis(ms.into()),
    };

    let (commands_tx, commands) = mpsc::channel(COMMAND_BUFFER);
    let (events, events_rx) = mpsc::channel(options.event_buffer.max(1));
    let shutdown = CancellationToken::new();
    let (finished_tx, finished) = watch::channel(false);
    let span = tracing::info_span!("link", user = login.user_id, device = %login.device_id);
    let task = LinkTask {
        conn,
        state,
        commands,
        events,
        shutdown: shutdown.clone(),
        finished: finished_tx,
        options,
        heartbeat,
    };
    tokio::spawn(task.run().instrument(span));
    let link = Link {
        commands: commands_tx,
        shutdown,
        finished,
        login: Arc::new(login),
    };
    Ok((link, events_rx))
}

/// Sends `Login` (retransmitting it as needed) until `LoginOk` or a close.
async fn handshake(conn: &mut RawConn, state: &mut LinkState) -> Result<(), ClientError> {
    loop {
        if let Err(e) = write_out(conn, state).await {
            return Err(ClientError::Closed(format!("write failed: {e}")));
        }
        if state.login_ok().is_some() {
            return Ok(());
        }
        if let Some(reason) = state.closed().cloned() {
            say_goodbye(conn, &reason).await;
            return Err(login_error(reason));
        }
        let retransmit_at = state.next_deadline();
        tokio::select! {
            frame = conn.next() => match frame {
                Some(Ok(frame)) => state.on_frame(frame),
                Some(Err(e)) => state.on_codec_error(e),
                None => state.on_eof(),
            },
            _ = sleep_until_opt(retransmit_at) => state.on_timeout(now()),
        }
    }
}

fn login_error(reason: CloseReason) -> ClientError {
    match (reason.by_server, reason.code) {
        (true, code) => ClientError::Rejected {
            code: code.unwrap_or(ErrorCode::Unspecified).name().to_string(),
            message: reason.message,
        },
        (false, Some(_)) => ClientError::Protocol(reason.message),
        (false, None) => ClientError::Closed(reason.message),
    }
}

/// Writes every queued frame, then flushes once.
async fn write_out(conn: &mut RawConn, state: &mut LinkState) -> Result<(), CodecError> {
    let frames = state.take_out();
    if frames.is_empty() {
        return Ok(());
    }
    for frame in frames {
        conn.feed(frame).await?;
    }
    SinkExt::<Frame>::flush(conn).await
}

/// Tells the server why the client ends the link, when it is the client's
/// doing (a bad frame, the retry limit). Best effort.
async fn say_goodbye(conn: &mut RawConn, reason: &CloseReason) {
    if let (true, Some(code)) = (reason.notify, reason.code) {
        let _ = conn.send(Frame::fatal(code, reason.message.clone())).await;
    }
}

fn on_command(state: &mut LinkState, command: Command) {
    match command {
        Command::Send { message, reply } => state.send(message, reply, now()),
        Command::MarkRead {
            conversation_id,
            seq,
            reply,
        } => state.mark_read(conversation_id, seq, reply, now()),
    }
}

/// Starts a graceful close, with a deadline for the server's acks.
fn begin_close(state: &mut LinkState, closing: &mut Option<std::time::Instant>, wait: Duration) {
    if closing.is_none() {
        *closing = Some(now() + wait);
        state.begin_close();
    }
}

struct LinkTask {
    conn: RawConn,
    state: LinkState,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    shutdown: CancellationToken,
    finished: watch::Sender<bool>,
    options: LinkOptions,
    heartbeat: Duration,
}

impl LinkTask {
    async fn run(mut self) {
        let mut heartbeat = interval_at(Instant::now() + self.heartbeat, self.heartbeat);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        // Set once a graceful close began: the deadline for the server's acks.
        let mut closing: Option<std::time::Instant> = None;
        let close_timeout = self.options.close_timeout;
        loop {
            if let Err(e) = write_out(&mut self.conn, &mut self.state).await {
                self.state.close(None, format!("write failed: {e}"), false);
            }
            if self.state.closed().is_some() {
                break;
            }
            if closing.is_some() && self.state.window_empty() {
                break;
            }
            let retransmit_at = self.state.next_deadline();
            let backlog = self.state.pending_events();
            // Stop reading the socket while the application is behind, and
            // stop taking commands while the window is full.
            let can_read = backlog < self.options.event_buffer;
            let can_command = closing.is_none() && !self.state.window_full();
            tokio::select! {
                permit = self.events.reserve(), if backlog > 0 => match permit {
                    Ok(permit) => {
                        if let Some(event) = self.state.pop_event() {
                            permit.send(event);
                        }
                    }
                    Err(_) => {
                        // Nobody will read them; the rest of the link's
                        // frames stay unacked, with the server.
                        tracing::debug!("events receiver dropped, closing");
                        while self.state.pop_event().is_some() {}
                        begin_close(&mut self.state, &mut closing, close_timeout);
                    }
                },
                frame = self.conn.next(), if can_read => {
                    last_heard = Instant::now();
                    match frame {
                        Some(Ok(frame)) => self.state.on_frame(frame),
                        Some(Err(e)) => self.state.on_codec_error(e),
                        None => self.state.on_eof(),
                    }
                }
                command = self.commands.recv(), if can_command => match command {
                    Some(command) => on_command(&mut self.state, command),
                    None => begin_close(&mut self.state, &mut closing, close_timeout),
                },
                _ = self.shutdown.cancelled(), if closing.is_none() => {
                    begin_close(&mut self.state, &mut closing, close_timeout);
                }
                _ = sleep_until_opt(retransmit_at) => self.state.on_timeout(now()),
                _ = sleep_until_opt(closing) => {
                    tracing::debug!("close timed out waiting for acks");
                    break;
                }
                _ = heartbeat.tick() => {
                    // Silence only counts while the socket is being read.
                    if !can_read {
                        last_heard = Instant::now();
                    }
                    if last_heard.elapsed() > self.heartbeat * SILENT_HEARTBEATS {
                        self.state.close(
                            Some(ErrorCode::IdleTimeout),
                            "nothing heard from the server",
                            true,
                        );
                    } else {
                        self.state.ping();
                    }
                }
            }
        }
        self.finish().await;
    }

    /// Fails what still waits, shuts the socket, then hands the application
    /// its remaining events and `Closed` last.
    async fn finish(mut self) {
        let reason = self.state.shutdown();
        tracing::debug!(code = ?reason.code, reason = %reason.message, "link closed");
        say_goodbye(&mut self.conn, &reason).await;
        let _ = SinkExt::<Frame>::close(&mut self.conn).await;
        drop(self.conn);
        let _ = self.finished.send(true);
        while let Some(event) = self.state.pop_event() {
            if self.events.send(event).await.is_err() {
                return;
            }
        }
        let closed = Event::Closed {
            code: reason.code,
            message: reason.message,
        };
        let _ = self.events.send(closed).await;
    }
}
