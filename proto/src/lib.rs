//! Wire types for every link (generated from `protos/im.proto` by prost), the
//! frame codec, the closed error-code set shared by the link and HTTP, and the
//! link's two pure state machines (ACK window and reorder buffer), which the
//! server and the client library both run.

pub mod ack_window;
pub mod codec;
pub mod error_code;
pub mod reorder;

/// Generated protobuf types of package `im.v1`.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/im.v1.rs"));
}

/// Generated protobuf types of package `im.internal.v1`: the links between
/// the cluster's processes and the Kafka record of a message.
pub mod internal {
    /// The generated module (nested as prost's cross-package paths expect).
    #[allow(missing_docs, clippy::all)]
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/im.internal.v1.rs"));
    }
    pub use v1::*;
}

/// A frame type a link numbers, acknowledges and retransmits.
pub trait LinkFrame: prost::Message + Default + Clone {
    /// What a frame carries besides its id.
    type Body;
    /// A frame with sequence id `id`.
    fn numbered(id: u64, body: Self::Body) -> Self;
    /// The frame's sequence id (0 for unsequenced frames).
    fn id(&self) -> u64;
}

impl LinkFrame for Frame {
    type Body = Body;

    fn numbered(id: u64, body: Body) -> Self {
        Frame::new(id, body)
    }

    fn id(&self) -> u64 {
        self.id
    }
}

impl LinkFrame for internal::Envelope {
    type Body = internal::envelope::Body;

    fn numbered(id: u64, body: Self::Body) -> Self {
        internal::Envelope {
            id,
            body: Some(body),
        }
    }

    fn id(&self) -> u64 {
        self.id
    }
}

pub use ack_window::{AckConfig, AckWindow, RetryLimitExceeded, WindowFull};
pub use codec::{CodecError, FrameCodec, DEFAULT_MAX_FRAME_BYTES};
pub use reorder::{Accepted, ReorderBuffer};
pub use v1::frame::Body;
pub use v1::{ErrorCode, Frame};

impl Frame {
    /// A frame with the given sequence id and body.
    pub fn new(id: u64, body: Body) -> Self {
        Frame {
            id,
            body: Some(body),
        }
    }

    /// An unsequenced cumulative acknowledgement of every frame up to `id`.
    pub fn ack(id: u64) -> Self {
        Frame::ack_through(id, 0)
    }

    /// An ack that also says the last sequenced id the sender has given a
    /// frame (see `Ack.sent_through`).
    pub fn ack_through(id: u64, sent_through: u64) -> Self {
        Frame::new(0, Body::Ack(v1::Ack { id, sent_through }))
    }

    /// An unsequenced fatal error: the last frame before the link is closed.
    pub fn fatal(code: ErrorCode, message: impl Into<String>) -> Self {
        Frame::new(
            0,
            Body::Error(v1::Error {
                code: code as i32,
                message: message.into(),
                fatal: true,
                ..Default::default()
            }),
        )
    }

    /// True for frames that take part in the ACK window (id > 0).
    pub fn is_sequenced(&self) -> bool {
        self.id > 0
    }
}
