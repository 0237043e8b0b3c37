//! Typed async client of the IM server: [`RestClient`] for the HTTP/JSON API
//! (accounts, friends, groups, history, files) and [`Link`] for the long-lived
//! link (chat messages, receipts and events), following docs/PROTOCOL.md.
//!
//! ```no_run
//! # async fn demo() -> Result<(), im_client::ClientError> {
//! use im_client::{Link, LinkOptions, RestClient, Target};
//! let rest = RestClient::new("http://127.0.0.1:8080")?;
//! let session = rest.login("alice", "secret").await?;
//! let (link, mut events) =
//!     Link::connect("127.0.0.1:9000", &session.token, "laptop", LinkOptions::default()).await?;
//! tokio::spawn(async move {
//!     while let Some(event) = events.recv().await {
//!         println!("{event:?}");
//!     }
//! });
//! let sent = link.send_text(Target::User(2), "hello").await?;
//! println!("stored as message {} (seq {})", sent.msg_id, sent.seq);
//! link.close().await;
//! # Ok(()) }
//! ```

pub mod error;
pub mod link;
pub mod rest;

pub use error::ClientError;
pub use im_proto;
pub use im_proto::v1::{
    ChatMessage, ContentType, FileRef, FriendEvent, FriendEventKind, FriendRequestEvent,
    GroupEvent, GroupEventKind, LoginOk, PresenceEvent, Receipt, ReceiptKind, SendMessage,
};
pub use im_proto::{AckConfig, ErrorCode, Frame, FrameCodec};
pub use link::{
    connect_raw, new_client_msg_id, Event, Link, LinkOptions, RawConn, SeenSeqs, SentReceipt,
    Session, SessionEvent, SessionOptions, Target,
};
pub use rest::RestClient;
