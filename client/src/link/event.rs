//! What the link hands to the application.

use im_proto::v1::{
    ChatMessage, Error, FriendEvent, FriendRequestEvent, GroupEvent, PresenceEvent, Receipt,
};
use im_proto::ErrorCode;

/// One thing that happened on the link, in the order the server sent it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A chat message (each `msg_id` at most once per link).
    Message(ChatMessage),
    /// A receipt for a message this user sent (SENT, DELIVERED or READ).
    Receipt(Receipt),
    /// Catch-up after login is over; live frames follow.
    SyncDone {
        /// Messages pulled from the offline queue.
        offline_count: u32,
        /// Messages caught up through this device's cursor.
        synced_count: u32,
    },
    /// Someone asked to be this user's friend.
    FriendRequest(FriendRequestEvent),
    /// A friendship changed.
    Friend(FriendEvent),
    /// A friend came online or went offline.
    Presence(PresenceEvent),
    /// Group membership changed.
    Group(GroupEvent),
    /// A request error that answers no pending `send` or `mark_read`.
    Error(Error),
    /// The link is closed; always the last event.
    Closed {
        /// The code of the fatal error that ended the link, if any.
        code: Option<ErrorCode>,
        /// Why it closed.
        message: String,
    },
}
