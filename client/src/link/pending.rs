//! The calls waiting for the server: `send`s until their SENT receipt or
//! error, `mark_read`s until their ack or error. Plain data, no I/O.

use std::collections::HashMap;

use im_proto::v1::{self, Receipt};
use im_proto::ErrorCode;
use tokio::sync::oneshot;

use crate::error::ClientError;

/// Where the answer to a `send` goes.
pub(crate) type SendReply = oneshot::Sender<Result<Receipt, ClientError>>;
/// Where the answer to a `mark_read` goes.
pub(crate) type ReadReply = oneshot::Sender<Result<(), ClientError>>;

/// The callers of one `client_msg_id` and the frames that carried it.
#[derive(Debug, Default)]
struct WaitingSend {
    frame_ids: Vec<u64>,
    replies: Vec<SendReply>,
}

/// Every call of one link that still waits for an answer.
#[derive(Debug, Default)]
pub(crate) struct PendingCalls {
    sends: HashMap<String, WaitingSend>,
    send_frames: HashMap<u64, String>,
    mark_reads: HashMap<u64, ReadReply>,
}

impl PendingCalls {
    /// A `SendMessage` went out as frame `frame_id`.
    pub(crate) fn add_send(&mut self, client_msg_id: String, frame_id: u64, reply: SendReply) {
        let waiting = self.sends.entry(client_msg_id.clone()).or_default();
        waiting.frame_ids.push(frame_id);
        waiting.replies.push(reply);
        self.send_frames.insert(frame_id, client_msg_id);
    }

    /// A `MarkRead` went out as frame `frame_id`.
    pub(crate) fn add_mark_read(&mut self, frame_id: u64, reply: ReadReply) {
        self.mark_reads.insert(frame_id, reply);
    }

    /// A SENT receipt answers every send of its `client_msg_id`.
    pub(crate) fn on_sent(&mut self, receipt: &Receipt) {
        if let Some(waiting) = self.remove_send(&receipt.client_msg_id) {
            for reply in waiting.replies {
                let _ = reply.send(Ok(receipt.clone()));
            }
        }
    }

    /// The server acked the `MarkRead` of frame `frame_id`: it is done.
    pub(crate) fn on_mark_read_acked(&mut self, frame_id: u64) {
        if let Some(reply) = self.mark_reads.remove(&frame_id) {
            let _ = reply.send(Ok(()));
        }
    }

    /// Hands a request error to the call it answers (by `client_msg_id`,
    /// else by `ref_id`); gives it back when it answers none.
    pub(crate) fn on_error(&mut self, e: v1::Error) -> Option<v1::Error> {
        let by_client_id = (!e.client_msg_id.is_empty())
            .then(|| e.client_msg_id.clone())
            .filter(|id| self.sends.contains_key(id));
        if let Some(id) = by_client_id.or_else(|| self.send_frames.get(&e.ref_id).cloned()) {
            if let Some(waiting) = self.remove_send(&id) {
                for reply in waiting.replies {
                    let _ = reply.send(Err(api_error(&e)));
                }
                return None;
            }
        }
        if let Some(reply) = self.mark_reads.remove(&e.ref_id) {
            let _ = reply.send(Err(api_error(&e)));
            return None;
        }
        Some(e)
    }

    /// The link ended: every waiting call fails with `message`.
    pub(crate) fn fail_all(&mut self, message: &str) {
        let closed = || ClientError::Closed(message.to_string());
        for (_, waiting) in self.sends.drain() {
            for reply in waiting.replies {
                let _ = reply.send(Err(closed()));
            }
        }
        for (_, reply) in self.mark_reads.drain() {
            let _ = reply.send(Err(closed()));
        }
        self.send_frames.clear();
    }

    fn remove_send(&mut self, client_msg_id: &str) -> Option<WaitingSend> {
        let waiting = self.sends.remove(client_msg_id)?;
        for id in &waiting.frame_ids {
            self.send_frames.remove(id);
        }
        Some(waiting)
    }
}

/// The client error for a request `Error` frame.
fn api_error(e: &v1::Error) -> ClientError {
    let code = ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Unspecified);
    ClientError::api(code, e.message.clone())
}
