//! Checking a `SendMessage` before it goes into the message log.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use im_offline_worker::{LogError, Pending, Submission};
use im_proto::v1::{ContentType, SendMessage};
use im_proto::ErrorCode;
use im_store::{Appended, FileRef, NewMessage, Store, Target, UserId};

use crate::TransferError;

const MAX_CLIENT_MSG_ID: usize = 64;
const MAX_TEXT_BYTES: usize = 16 * 1024;

/// Resolves to the stored message once it is durable.
pub struct PendingSend {
    /// In a cluster, the transfer's answer to the submit (its checks and
    /// the Kafka ack), which a refusal ends the send with.
    accepted: Option<BoxFuture<'static, Result<(), TransferError>>>,
    stored: Pending,
}

impl PendingSend {
    pub(crate) fn new(stored: Pending) -> Self {
        PendingSend {
            accepted: None,
            stored,
        }
    }

    /// A send that is durable once `accepted` is through and `stored` has
    /// the stored message.
    pub(crate) fn after(
        accepted: BoxFuture<'static, Result<(), TransferError>>,
        stored: Pending,
    ) -> Self {
        PendingSend {
            accepted: Some(accepted),
            stored,
        }
    }
}

impl Future for PendingSend {
    type Output = Result<Appended, TransferError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(accepted) = &mut self.accepted {
            match accepted.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Ready(Ok(())) => self.accepted = None,
            }
        }
        Pin::new(&mut self.stored).poll(cx).map(|r| match r {
            Ok(Ok(appended)) => Ok(appended),
            Ok(Err(LogError::Closed)) | Err(_) => Err(TransferError::new(
                ErrorCode::ShuttingDown,
                "server is shutting down; resend later",
            )),
            Ok(Err(LogError::Store(_))) => Err(TransferError::new(
                ErrorCode::Internal,
                "message could not be stored; resend later",
            )),
            Ok(Err(LogError::Unconfirmed)) => Err(TransferError::new(
                ErrorCode::Internal,
                "message not confirmed in time; resend later",
            )),
        })
    }
}

fn bad(message: &str) -> TransferError {
    TransferError::new(ErrorCode::BadRequest, message)
}

/// Validates `send` and checks that `user` may write to its target; returns
/// the submission with its recipients.
pub(crate) async fn check(
    store: &dyn Store,
    user: UserId,
    device: &str,
    send: SendMessage,
) -> Result<Submission, TransferError> {
    if send.client_msg_id.is_empty() || send.client_msg_id.len() > MAX_CLIENT_MSG_ID {
        return Err(bad("client_msg_id must be 1 to 64 bytes"));
    }
    if send.text.len() > MAX_TEXT_BYTES {
        return Err(bad("text is longer than 16 KiB"));
    }
    let content_type =
        ContentType::try_from(send.content_type).map_err(|_| bad("unknown content_type"))?;
    let file = match content_type {
        ContentType::Text if send.text.is_empty() => return Err(bad("text message without text")),
        ContentType::Text => None,
        ContentType::Image | ContentType::File => {
            let file_id = send
                .file
                .as_ref()
                .map(|f| f.file_id.as_str())
                .unwrap_or_default();
            let record = store
                .file(file_id)
                .await?
                .ok_or_else(|| bad("file message must name an uploaded file_id"))?;
            Some(FileRef {
                file_id: record.id,
                name: record.name,
                mime: record.mime,
                size: record.size,
            })
        }
        ContentType::Unspecified => return Err(bad("content_type is required")),
    };
    let (target, recipients) = match (send.to_user, send.to_group) {
        (0, 0) | (1.., 1..) => return Err(bad("set exactly one of to_user and to_group")),
        (to, 0) => {
            if to == user || !store.are_friends(user, to).await? {
                return Err(TransferError::new(
                    ErrorCode::NotFriends,
                    "you can only message your friends",
                ));
            }
            (Target::User(to), vec![to])
        }
        (0, group) => {
            if store.member_role(group, user).await?.is_none() {
                return Err(TransferError::new(
                    ErrorCode::NotGroupMember,
                    "you are not a member of this group",
                ));
            }
            let members = store.group_member_ids(group).await?;
            let recipients = members.into_iter().filter(|m| *m != user).collect();
            (Target::Group(group), recipients)
        }
    };
    Ok(Submission {
        message: NewMessage {
            from_user: user,
            client_msg_id: send.client_msg_id,
            target,
            content_type: content_type as i32,
            text: send.text,
            file,
            recipients,
        },
        origin_device: device.to_owned(),
    })
}
