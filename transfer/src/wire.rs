//! Store types in their wire form, for client links and internal links.

use std::sync::Arc;

use im_proto::internal::{
    push_to, CommittedMessage, MessageRef, PushTo, PushedMessage, ReceiptKey,
};
use im_proto::v1::{self, ChatMessage, ContentType, Receipt, ReceiptKind as WireKind};
use im_proto::{Body, ErrorCode, Frame};
use im_store::{
    Appended, DeliveredMessage, FileRef, OfflineKey, ReceiptKind, ReceiptRecord, StoredMessage,
    UserId,
};

use crate::{Push, TransferError};

/// The wire form of a stored message.
pub fn chat_message(m: &StoredMessage, offline: bool) -> ChatMessage {
    ChatMessage {
        msg_id: m.msg_id,
        conversation_id: m.conversation_id.clone(),
        seq: m.seq,
        from_user: m.from_user,
        to_user: m.to_user,
        to_group: m.to_group,
        client_msg_id: m.client_msg_id.clone(),
        content_type: ContentType::try_from(m.content_type).unwrap_or(ContentType::Text) as i32,
        text: m.text.clone(),
        file: m.file.as_ref().map(|f| v1::FileRef {
            file_id: f.file_id.clone(),
            name: f.name.clone(),
            mime: f.mime.clone(),
            size: f.size,
        }),
        sent_at_ms: m.sent_at_ms,
        offline,
    }
}

/// A stored message back from its wire form.
pub fn stored_message(m: ChatMessage) -> StoredMessage {
    StoredMessage {
        msg_id: m.msg_id,
        conversation_id: m.conversation_id,
        seq: m.seq,
        from_user: m.from_user,
        to_user: m.to_user,
        to_group: m.to_group,
        client_msg_id: m.client_msg_id,
        content_type: m.content_type,
        text: m.text,
        file: m.file.map(|f| FileRef {
            file_id: f.file_id,
            name: f.name,
            mime: f.mime,
            size: f.size,
        }),
        sent_at_ms: m.sent_at_ms,
    }
}

fn wire_kind(kind: ReceiptKind) -> WireKind {
    match kind {
        ReceiptKind::Delivered => WireKind::Delivered,
        ReceiptKind::Read => WireKind::Read,
    }
}

fn store_kind(kind: i32) -> Option<ReceiptKind> {
    ReceiptKind::from_i64(i64::from(kind))
}

/// The wire form of a DELIVERED or READ receipt.
pub fn receipt(r: &ReceiptRecord) -> Receipt {
    Receipt {
        kind: wire_kind(r.kind) as i32,
        msg_id: r.msg_id,
        conversation_id: r.conversation_id.clone(),
        seq: r.seq,
        client_msg_id: r.client_msg_id.clone(),
        by_user: r.by_user,
        at_ms: r.at_ms,
    }
}

fn receipt_record(r: Receipt, to_user: UserId) -> Option<ReceiptRecord> {
    Some(ReceiptRecord {
        kind: store_kind(r.kind)?,
        msg_id: r.msg_id,
        conversation_id: r.conversation_id,
        seq: r.seq,
        client_msg_id: r.client_msg_id,
        to_user,
        by_user: r.by_user,
        at_ms: r.at_ms,
    })
}

/// A push for one device in its internal-link form (`None` for a resync,
/// which a connector makes itself).
pub(crate) fn push_to(user: UserId, device: &str, push: &Push) -> Option<PushTo> {
    let push = match push {
        Push::Message {
            message,
            origin_device,
        } => push_to::Push::Message(PushedMessage {
            message: Some(chat_message(message, false)),
            origin_device: origin_device.to_string(),
            duplicate: false,
        }),
        Push::Receipt(r) => push_to::Push::Receipt(receipt(r)),
        Push::Event(body) => push_to::Push::Event(Frame::new(0, (**body).clone())),
        Push::Revoke { token_hash } => push_to::Push::RevokeTokenHash(token_hash.to_string()),
        Push::Resync => return None,
    };
    Some(PushTo {
        user,
        device: device.to_owned(),
        push: Some(push),
    })
}

/// What a connector does with a push from a transfer.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// Hand it to the device's session.
    Push(UserId, String, Push),
    /// A resent message the store already had: only its sender's pending
    /// send is answered.
    Duplicate(UserId, String, Appended),
}

/// A push from its internal-link form; `None` if it is malformed.
pub(crate) fn inbound(p: PushTo) -> Option<Inbound> {
    let (user, device) = (p.user, p.device);
    let push = match p.push? {
        push_to::Push::Message(m) => {
            let message = stored_message(m.message?);
            if m.duplicate {
                let appended = Appended {
                    message,
                    duplicate: true,
                };
                return Some(Inbound::Duplicate(user, device, appended));
            }
            Push::Message {
                message: Arc::new(message),
                origin_device: m.origin_device.into(),
            }
        }
        push_to::Push::Receipt(r) => Push::Receipt(Arc::new(receipt_record(r, user)?)),
        push_to::Push::Event(frame) => Push::Event(Arc::new(frame.body?)),
        push_to::Push::RevokeTokenHash(hash) => Push::Revoke {
            token_hash: hash.into(),
        },
    };
    Some(Inbound::Push(user, device, push))
}

/// A resent message's confirmation for its sending device.
pub(crate) fn duplicate_push(user: UserId, device: &str, message: &StoredMessage) -> PushTo {
    PushTo {
        user,
        device: device.to_owned(),
        push: Some(push_to::Push::Message(PushedMessage {
            message: Some(chat_message(message, false)),
            origin_device: device.to_owned(),
            duplicate: true,
        })),
    }
}

pub(crate) fn message_refs(messages: &[DeliveredMessage]) -> Vec<MessageRef> {
    messages
        .iter()
        .map(|m| MessageRef {
            msg_id: m.msg_id,
            conversation_id: m.conversation_id.clone(),
            seq: m.seq,
            from_user: m.from_user,
            client_msg_id: m.client_msg_id.clone(),
        })
        .collect()
}

pub(crate) fn delivered_messages(refs: Vec<MessageRef>) -> Vec<DeliveredMessage> {
    refs.into_iter()
        .map(|m| DeliveredMessage {
            msg_id: m.msg_id,
            conversation_id: m.conversation_id,
            seq: m.seq,
            from_user: m.from_user,
            client_msg_id: m.client_msg_id,
        })
        .collect()
}

pub(crate) fn receipt_keys(keys: &[OfflineKey]) -> Vec<ReceiptKey> {
    keys.iter()
        .filter_map(|k| match *k {
            OfflineKey::Receipt {
                msg_id,
                kind,
                by_user,
            } => Some(ReceiptKey {
                msg_id,
                kind: wire_kind(kind) as i32,
                by_user,
            }),
            OfflineKey::Message(_) => None,
        })
        .collect()
}

pub(crate) fn offline_keys(keys: Vec<ReceiptKey>) -> Result<Vec<OfflineKey>, TransferError> {
    keys.into_iter()
        .map(|k| {
            let kind = store_kind(k.kind)
                .ok_or_else(|| TransferError::new(ErrorCode::BadRequest, "unknown receipt kind"))?;
            Ok(OfflineKey::Receipt {
                msg_id: k.msg_id,
                kind,
                by_user: k.by_user,
            })
        })
        .collect()
}

pub(crate) fn committed_message(c: &im_offline_worker::Committed) -> CommittedMessage {
    CommittedMessage {
        message: Some(chat_message(&c.appended.message, false)),
        origin_device: c.origin_device.clone(),
        recipients: c.recipients.clone(),
        duplicate: c.appended.duplicate,
    }
}

pub(crate) fn committed(c: CommittedMessage) -> Option<im_offline_worker::Committed> {
    let message = stored_message(c.message?);
    Some(im_offline_worker::Committed {
        from_user: message.from_user,
        origin_device: c.origin_device,
        recipients: c.recipients,
        appended: Appended {
            message,
            duplicate: c.duplicate,
        },
    })
}

/// A transfer error as the error a reply carries.
pub(crate) fn wire_error(e: &TransferError) -> v1::Error {
    v1::Error {
        code: e.code as i32,
        message: e.message.clone(),
        ..Default::default()
    }
}

/// The error a reply carried.
pub(crate) fn transfer_error(e: v1::Error) -> TransferError {
    let code = ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Internal);
    TransferError::new(code, e.message)
}

/// A body that carries an event, if it is one a connector may push.
pub(crate) fn event_body(frame: Option<Frame>) -> Option<Body> {
    frame?.body
}
