//! Recent conversations and per-conversation history pages.

use axum::extract::State;
use axum::Json;
use im_proto::v1::ContentType;
use im_store::{ConversationKind, ConversationSummary, FileRef, GroupId, StoredMessage, UserId};
use serde::{Deserialize, Serialize};

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::AppState;

/// Page size when the caller gives none.
const DEFAULT_PAGE: u32 = 50;
/// Largest page size.
const MAX_PAGE: u32 = 200;

/// A message as JSON: the store's record with a readable content type.
#[derive(Debug, Serialize)]
pub struct MessageView {
    msg_id: u64,
    conversation_id: String,
    seq: u64,
    from_user: UserId,
    to_user: UserId,
    to_group: GroupId,
    client_msg_id: String,
    content_type: &'static str,
    text: String,
    file: Option<FileRef>,
    sent_at_ms: u64,
}

impl From<StoredMessage> for MessageView {
    fn from(m: StoredMessage) -> Self {
        MessageView {
            content_type: content_type_name(m.content_type),
            msg_id: m.msg_id,
            conversation_id: m.conversation_id,
            seq: m.seq,
            from_user: m.from_user,
            to_user: m.to_user,
            to_group: m.to_group,
            client_msg_id: m.client_msg_id,
            text: m.text,
            file: m.file,
            sent_at_ms: m.sent_at_ms,
        }
    }
}

/// One line of `GET /v1/conversations`.
#[derive(Debug, Serialize)]
pub struct ConversationView {
    id: String,
    kind: ConversationKind,
    peer_user: UserId,
    group_id: GroupId,
    last_seq: u64,
    read_seq: u64,
    unread: u64,
    last_message: Option<MessageView>,
}

impl From<ConversationSummary> for ConversationView {
    fn from(c: ConversationSummary) -> Self {
        ConversationView {
            id: c.id,
            kind: c.kind,
            peer_user: c.peer_user,
            group_id: c.group_id,
            last_seq: c.last_seq,
            read_seq: c.read_seq,
            unread: c.unread,
            last_message: c.last_message.map(MessageView::from),
        }
    }
}

/// Query of a history page.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    before_seq: Option<u64>,
    limit: Option<u32>,
}

/// A history page, newest first.
#[derive(Debug, Serialize)]
pub struct HistoryPage {
    messages: Vec<MessageView>,
    /// Pass as `before_seq` for the next (older) page; null when this is the last.
    next_before_seq: Option<u64>,
}

/// `GET /v1/conversations`: the caller's conversations, most recent first.
pub async fn conversations(
    State(state): State<AppState>,
    caller: AuthUser,
) -> Result<Json<Vec<ConversationView>>, ApiError> {
    let list = state.store.conversations(caller.id).await?;
    Ok(Json(list.into_iter().map(ConversationView::from).collect()))
}

/// `GET /v1/conversations/{id}/messages`: one page of history, members only.
pub async fn messages(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(conversation): ApiPath<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<HistoryPage>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest(format!("limit must be 1-{MAX_PAGE}")));
    }
    let page = state
        .store
        .history(caller.id, &conversation, query.before_seq, limit)
        .await
        .map_err(|e| match e {
            im_store::StoreError::Forbidden => {
                ApiError::Forbidden("you are not a member of this conversation")
            }
            other => other.into(),
        })?;
    Ok(Json(into_page(page, limit)))
}

/// Renders a page; a short page is the last one.
fn into_page(messages: Vec<StoredMessage>, limit: u32) -> HistoryPage {
    let full = messages.len() >= limit as usize;
    let next_before_seq = if full {
        messages.iter().map(|m| m.seq).min()
    } else {
        None
    };
    HistoryPage {
        messages: messages.into_iter().map(MessageView::from).collect(),
        next_before_seq,
    }
}

/// `text`, `image` or `file`; anything else (never stored) reads as text.
fn content_type_name(value: i32) -> &'static str {
    match ContentType::try_from(value) {
        Ok(ContentType::Image) => "image",
        Ok(ContentType::File) => "file",
        _ => "text",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: u64) -> StoredMessage {
        StoredMessage {
            msg_id: seq,
            conversation_id: "u1-2".into(),
            seq,
            from_user: 1,
            to_user: 2,
            to_group: 0,
            client_msg_id: format!("c{seq}"),
            content_type: ContentType::Text as i32,
            text: "hi".into(),
            file: None,
            sent_at_ms: 0,
        }
    }

    #[test]
    fn full_page_points_at_its_lowest_seq() {
        let page = into_page(vec![message(9), message(8), message(7)], 3);
        assert_eq!(page.next_before_seq, Some(7));
        assert_eq!(page.messages.len(), 3);
    }

    #[test]
    fn short_page_is_the_last() {
        assert_eq!(into_page(vec![message(2)], 3).next_before_seq, None);
        assert_eq!(into_page(vec![], 3).next_before_seq, None);
    }

    #[test]
    fn content_type_names() {
        assert_eq!(content_type_name(ContentType::Text as i32), "text");
        assert_eq!(content_type_name(ContentType::Image as i32), "image");
        assert_eq!(content_type_name(ContentType::File as i32), "file");
        assert_eq!(content_type_name(0), "text");
    }
}
