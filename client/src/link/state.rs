//! What the link's frames mean, without any I/O.
//!
//! `LinkState` owns the two protocol state machines (`AckWindow` for what this
//! client sent, `ReorderBuffer` for what it receives), the waiting `send` and
//! `mark_read` calls, and the queue of events for the application. The task in
//! `task.rs` feeds it frames, commands and the clock, and writes the frames it
//! queues in `out`.

use std::collections::VecDeque;
use std::time::Instant;

use im_proto::v1::{self, Ack, Login, LoginOk, MarkRead, Ping, Pong, ReceiptKind};
use im_proto::{Accepted, AckWindow, Body, CodecError, ErrorCode, Frame, ReorderBuffer};

use super::event::Event;
use super::pending::{PendingCalls, ReadReply, SendReply};
use super::seen::SeenMessages;
use super::LinkOptions;
use crate::error::ClientError;

/// How far ahead of `lastId` a frame may arrive and still be buffered.
const REORDER_CAPACITY: usize = 256;
/// Message ids (and seqs per conversation) remembered for deduplication.
const SEEN_CAPACITY: usize = 4096;
/// Frame header plus the `id` field: what a frame adds to its body's size.
const FRAME_OVERHEAD: usize = 16;

/// What a frame in the ACK window was.
#[derive(Debug)]
enum Outgoing {
    Login,
    Send,
    MarkRead { frame_id: u64 },
}

/// Why the link ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CloseReason {
    /// The fatal error code, if there was one.
    pub code: Option<ErrorCode>,
    /// Human-readable reason.
    pub message: String,
    /// True when the server sent the fatal error.
    pub by_server: bool,
    /// True when the server should be told with a fatal `Error` frame.
    pub notify: bool,
}

/// The client side of one link, as plain data.
#[derive(Debug)]
pub(crate) struct LinkState {
    window: AckWindow<Outgoing>,
    reorder: ReorderBuffer<Option<Body>>,
    seen: SeenMessages,
    login_ok: Option<LoginOk>,
    max_out_bytes: usize,
    pending: PendingCalls,
    /// `MarkRead` frames acked before every answer the server had given
    /// by then was processed: (the last id it had given, the frame). Each
    /// is done once frames up to that id are, unless one of them was its
    /// error.
    reads_acked: Vec<(u64, u64)>,
    out: Vec<Frame>,
    events: VecDeque<Event>,
    close: Option<CloseReason>,
    draining: bool,
    next_nonce: u64,
}

impl LinkState {
    /// A fresh link: nothing sent, nothing received.
    pub(crate) fn new(options: &LinkOptions) -> Self {
        LinkState {
            window: AckWindow::new(options.ack),
            reorder: ReorderBuffer::new(REORDER_CAPACITY),
            seen: SeenMessages::new(SEEN_CAPACITY),
            login_ok: None,
            max_out_bytes: options.max_frame_bytes,
            pending: PendingCalls::default(),
            reads_acked: Vec::new(),
            out: Vec::new(),
            events: VecDeque::new(),
            close: None,
            draining: false,
            next_nonce: 1,
        }
    }

    /// Queues `Login` as frame 1.
    pub(crate) fn login(&mut self, token: &str, device_id: &str, now: Instant) {
        let login = Body::Login(Login {
            token: token.to_string(),
            device_id: device_id.to_string(),
        });
        match self.window.send(login, Outgoing::Login, now) {
            Ok(frame) => self.out.push(frame.clone()),
            Err(_) => self.close(None, "ack window has no room for Login", false),
        }
    }

    /// The server's `LoginOk`, once it arrived.
    pub(crate) fn login_ok(&self) -> Option<&LoginOk> {
        self.login_ok.as_ref()
    }

    /// Why the link ended, once it did.
    pub(crate) fn closed(&self) -> Option<&CloseReason> {
        self.close.as_ref()
    }

    /// Frames to write, in order.
    pub(crate) fn take_out(&mut self) -> Vec<Frame> {
        std::mem::take(&mut self.out)
    }

    /// Events not yet handed to the application.
    pub(crate) fn pending_events(&self) -> usize {
        self.events.len()
    }

    /// The next event for the application.
    pub(crate) fn pop_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// True when no more sequenced frames may be sent until acks come.
    pub(crate) fn window_full(&self) -> bool {
        self.window.is_full()
    }

    /// True when every frame this client sent was acked.
    pub(crate) fn window_empty(&self) -> bool {
        self.window.is_empty()
    }

    /// When the next retransmission is due.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.window.next_deadline()
    }

    /// Ends the link (the first reason wins).
    pub(crate) fn close(
        &mut self,
        code: Option<ErrorCode>,
        message: impl Into<String>,
        notify: bool,
    ) {
        if self.close.is_none() {
            self.close = Some(CloseReason {
                code,
                message: message.into(),
                by_server: false,
                notify,
            });
        }
    }

    /// A graceful close began: from now on only acks (and heartbeats) are
    /// handled. New sequenced frames are left unacked, so the server keeps
    /// them for the next login instead of handing them to an application
    /// that is going away.
    pub(crate) fn begin_close(&mut self) {
        self.draining = true;
    }

    /// The server closed the TCP connection.
    pub(crate) fn on_eof(&mut self) {
        self.close(None, "the server closed the link", false);
    }

    /// The server sent bytes that are not a frame, or the socket failed.
    pub(crate) fn on_codec_error(&mut self, error: CodecError) {
        let code = match error {
            CodecError::TooLarge { .. } => Some(ErrorCode::FrameTooLarge),
            CodecError::Malformed(_) | CodecError::NotBinary(_) => Some(ErrorCode::MalformedFrame),
            CodecError::Io(_) => None,
        };
        let message = format!("bad input from the server: {error}");
        self.close(code, message, code.is_some());
    }

    /// Handles one frame read from the socket.
    pub(crate) fn on_frame(&mut self, frame: Frame) {
        if self.close.is_some() {
            return;
        }
        if !frame.is_sequenced() {
            self.on_unsequenced(frame.body);
            return;
        }
        if self.draining {
            return;
        }
        match self.reorder.accept(frame.id, frame.body) {
            Accepted::Duplicate => self.out.push(Frame::ack(self.reorder.last_id())),
            Accepted::Buffered | Accepted::Overflow => {}
            Accepted::Ready(bodies) => {
                let first = self.reorder.last_id() + 1 - bodies.len() as u64;
                let mut processed = 0;
                for body in bodies {
                    self.process(body);
                    if self.close.is_some() {
                        break;
                    }
                    processed += 1;
                }
                // Ack exactly what was handled: what a close cut off is resent
                // by the server (at the next login) rather than lost.
                if processed > 0 {
                    self.out.push(Frame::ack(first + processed - 1));
                }
                self.release_reads();
            }
        }
    }

    fn on_unsequenced(&mut self, body: Option<Body>) {
        match body {
            Some(Body::Ack(Ack { id, sent_through })) => self.on_ack(id, sent_through),
            Some(Body::Ping(Ping { nonce })) => {
                self.out.push(Frame::new(0, Body::Pong(Pong { nonce })));
            }
            Some(Body::Error(e)) => self.close_by_server(e),
            Some(Body::Pong(_)) => {}
            _ => tracing::debug!("unsequenced frame ignored"),
        }
    }

    /// Handles one sequenced frame, in order.
    fn process(&mut self, body: Option<Body>) {
        let Some(body) = body else {
            tracing::debug!("frame of an unknown type ignored");
            return;
        };
        if self.login_ok.is_none() {
            match body {
                Body::LoginOk(ok) => {
                    if ok.max_frame_bytes > 0 {
                        self.max_out_bytes = ok.max_frame_bytes as usize;
                    }
                    self.login_ok = Some(ok);
                }
                Body::Error(e) => self.close_by_server(e),
                _ => self.close(
                    Some(ErrorCode::ProtocolViolation),
                    "the server sent a frame before LoginOk",
                    true,
                ),
            }
            return;
        }
        let event = match body {
            Body::Message(m) => {
                if !self.seen.insert(&m.conversation_id, m.seq, m.msg_id) {
                    tracing::debug!(msg_id = m.msg_id, "duplicate message dropped");
                    return;
                }
                Event::Message(m)
            }
            Body::Receipt(r) => {
                if r.kind() == ReceiptKind::Sent {
                    self.pending.on_sent(&r);
                }
                Event::Receipt(r)
            }
            Body::SyncDone(s) => Event::SyncDone {
                offline_count: s.offline_count,
                synced_count: s.synced_count,
            },
            Body::FriendRequest(f) => Event::FriendRequest(f),
            Body::FriendEvent(f) => Event::Friend(f),
            Body::Presence(p) => Event::Presence(p),
            Body::GroupEvent(g) => Event::Group(g),
            Body::Error(e) if e.fatal => return self.close_by_server(e),
            Body::Error(e) => match self.pending.on_error(e) {
                Some(e) => Event::Error(e),
                None => return,
            },
            b @ (Body::Ack(_) | Body::Ping(_) | Body::Pong(_)) => {
                return self.on_unsequenced(Some(b));
            }
            Body::LoginOk(_) | Body::Login(_) | Body::Send(_) | Body::MarkRead(_) => {
                tracing::warn!("unexpected frame type from the server ignored");
                return;
            }
        };
        self.events.push_back(event);
    }

    fn close_by_server(&mut self, e: v1::Error) {
        if self.close.is_none() {
            self.close = Some(CloseReason {
                code: ErrorCode::try_from(e.code).ok(),
                message: e.message,
                by_server: true,
                notify: false,
            });
        }
    }

    /// The server processed our frames up to `id`. An acked `MarkRead`
    /// is done without error unless an error answering it is among the
    /// frames the server had sent by then (`sent_through`): with frames
    /// lost or reordered, the ack can come before that error.
    fn on_ack(&mut self, id: u64, sent_through: u64) {
        for done in self.window.on_ack(id) {
            if let Outgoing::MarkRead { frame_id } = done {
                self.reads_acked.push((sent_through, frame_id));
            }
        }
        self.release_reads();
    }

    /// Marks reads done whose answers have all been processed.
    fn release_reads(&mut self) {
        let processed = self.reorder.last_id();
        let pending = &mut self.pending;
        self.reads_acked.retain(|&(through, frame_id)| {
            let done = through <= processed;
            if done {
                pending.on_mark_read_acked(frame_id);
            }
            !done
        });
    }

    /// Sends a chat message; `reply` gets the SENT receipt or the error.
    pub(crate) fn send(&mut self, message: v1::SendMessage, reply: SendReply, now: Instant) {
        let client_msg_id = message.client_msg_id.clone();
        let body = Body::Send(message);
        if let Err(e) = self.check_size(&body) {
            let _ = reply.send(Err(e));
            return;
        }
        let frame = match self.window.send(body, Outgoing::Send, now) {
            Ok(frame) => frame.clone(),
            Err(full) => {
                let _ = reply.send(Err(ClientError::Protocol(full.to_string())));
                return;
            }
        };
        self.pending.add_send(client_msg_id, frame.id, reply);
        self.out.push(frame);
    }

    /// Marks a conversation read up to `seq`; `reply` gets the ack or the error.
    pub(crate) fn mark_read(
        &mut self,
        conversation_id: String,
        seq: u64,
        reply: ReadReply,
        now: Instant,
    ) {
        let body = Body::MarkRead(MarkRead {
            conversation_id,
            seq,
        });
        if let Err(e) = self.check_size(&body) {
            let _ = reply.send(Err(e));
            return;
        }
        let frame_id = self.window.last_sent_id() + 1;
        match self.window.send(body, Outgoing::MarkRead { frame_id }, now) {
            Ok(frame) => {
                self.pending.add_mark_read(frame_id, reply);
                self.out.push(frame.clone());
            }
            Err(full) => {
                let _ = reply.send(Err(ClientError::Protocol(full.to_string())));
            }
        }
    }

    fn check_size(&self, body: &Body) -> Result<(), ClientError> {
        let len = body.encoded_len() + FRAME_OVERHEAD;
        if len > self.max_out_bytes {
            return Err(ClientError::InvalidInput(format!(
                "a frame of {len} bytes exceeds the link's maximum of {}",
                self.max_out_bytes
            )));
        }
        Ok(())
    }

    /// Retransmits what timed out; closes the link past the retry limit.
    pub(crate) fn on_timeout(&mut self, now: Instant) {
        match self.window.poll_timeouts(now) {
            Ok(frames) => {
                if !frames.is_empty() {
                    tracing::debug!(count = frames.len(), "retransmitting");
                }
                self.out.extend(frames);
            }
            Err(e) => self.close(Some(ErrorCode::RetryLimit), e.to_string(), true),
        }
    }

    /// Queues a heartbeat.
    pub(crate) fn ping(&mut self) {
        let nonce = self.next_nonce;
        self.next_nonce += 1;
        self.out.push(Frame::new(0, Body::Ping(Ping { nonce })));
    }

    /// Ends the link for good: every waiting call fails, and the reason is
    /// returned (a graceful close by the client when nothing else ended it).
    pub(crate) fn shutdown(&mut self) -> CloseReason {
        let reason = self.close.clone().unwrap_or_else(|| CloseReason {
            code: None,
            message: "closed by the client".to_string(),
            by_server: false,
            notify: false,
        });
        self.pending.fail_all(&reason.message);
        self.window.drain();
        reason
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
