//! Length-prefixed protobuf frames: a 4-byte big-endian length, then one
//! encoded `Frame`. Split and merged packets are handled by the buffering of
//! `tokio_util::codec::Framed`; this codec only looks at complete frames.

use std::marker::PhantomData;

use bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::{Frame, LinkFrame};

/// Default upper bound on one frame's payload (64 KiB).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 * 1024;

const HEADER_BYTES: usize = 4;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The length prefix announces more than the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Announced payload length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// The payload is not a valid protobuf `Frame`.
    #[error("malformed frame: {0}")]
    Malformed(#[from] prost::DecodeError),
    /// A WebSocket link sent something other than one binary frame.
    #[error("not a binary frame: {0}")]
    NotBinary(&'static str),
    /// The underlying transport failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes and decodes `Frame`s with a size limit.
///
/// The header is parsed here rather than by `LengthDelimitedCodec`: that codec
/// consumes the header and keeps it as hidden state, so an oversized frame
/// would surface only as an opaque I/O error. Reading the 4 bytes ourselves is
/// as short and reports `TooLarge` before any of the payload is buffered.
///
/// Client links carry `Frame`s (the default); internal links between the
/// cluster's processes carry `internal::Envelope`s with the same framing.
#[derive(Debug)]
pub struct FrameCodec<F = Frame> {
    max: usize,
    frame: PhantomData<fn() -> F>,
}

impl FrameCodec {
    /// A client-link codec that rejects frames larger than `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> Self {
        FrameCodec::limited(max_frame_bytes)
    }
}

impl<F> FrameCodec<F> {
    /// A codec for frames of type `F` that rejects those larger than
    /// `max_frame_bytes`.
    pub fn limited(max_frame_bytes: usize) -> Self {
        FrameCodec {
            max: max_frame_bytes,
            frame: PhantomData,
        }
    }

    /// The configured maximum payload size.
    pub fn max_frame_bytes(&self) -> usize {
        self.max
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new(DEFAULT_MAX_FRAME_BYTES)
    }
}

impl<F: LinkFrame> Decoder for FrameCodec<F> {
    type Item = F;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<F>, CodecError> {
        if src.len() < HEADER_BYTES {
            return Ok(None);
        }
        let len = (&src[..HEADER_BYTES]).get_u32() as usize;
        if len > self.max {
            return Err(CodecError::TooLarge { len, max: self.max });
        }
        if src.len() < HEADER_BYTES + len {
            src.reserve(HEADER_BYTES + len - src.len());
            return Ok(None);
        }
        src.advance(HEADER_BYTES);
        let payload = src.split_to(len).freeze();
        Ok(Some(F::decode(payload)?))
    }
}

impl<F: LinkFrame> Encoder<F> for FrameCodec<F> {
    type Error = CodecError;

    fn encode(&mut self, frame: F, dst: &mut BytesMut) -> Result<(), CodecError> {
        self.encode(&frame, dst)
    }
}

impl<F: LinkFrame> Encoder<&F> for FrameCodec<F> {
    type Error = CodecError;

    fn encode(&mut self, frame: &F, dst: &mut BytesMut) -> Result<(), CodecError> {
        let len = frame.encoded_len();
        if len > self.max {
            return Err(CodecError::TooLarge { len, max: self.max });
        }
        dst.reserve(HEADER_BYTES + len);
        dst.put_u32(len as u32);
        frame
            .encode(dst)
            .expect("buffer was reserved for the encoded length");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{Ping, SendMessage};
    use crate::Body;

    fn encode_all(frames: &[Frame]) -> BytesMut {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::new();
        for frame in frames {
            codec.encode(frame, &mut buf).unwrap();
        }
        buf
    }

    fn sample(id: u64) -> Frame {
        Frame::new(
            id,
            Body::Send(SendMessage {
                client_msg_id: format!("c-{id}"),
                to_user: 7,
                text: "hello".into(),
                ..Default::default()
            }),
        )
    }

    #[test]
    fn round_trips_many_frames_in_one_buffer() {
        let frames: Vec<Frame> = (1..=5).map(sample).collect();
        let mut buf = encode_all(&frames);
        let mut codec = FrameCodec::default();
        let mut decoded = Vec::new();
        while let Some(frame) = codec.decode(&mut buf).unwrap() {
            decoded.push(frame);
        }
        assert_eq!(decoded, frames);
        assert!(buf.is_empty());
    }

    #[test]
    fn decodes_a_frame_fed_byte_by_byte() {
        let frame = sample(1);
        let bytes = encode_all(std::slice::from_ref(&frame));
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::new();
        let mut out = None;
        for (i, byte) in bytes.iter().enumerate() {
            buf.put_u8(*byte);
            let got = codec.decode(&mut buf).unwrap();
            if i + 1 < bytes.len() {
                assert!(got.is_none(), "frame complete too early at byte {i}");
            } else {
                out = got;
            }
        }
        assert_eq!(out, Some(frame));
    }

    #[test]
    fn rejects_an_oversized_frame_from_its_header_alone() {
        let mut codec = FrameCodec::new(16);
        let mut buf = BytesMut::new();
        buf.put_u32(17);
        match codec.decode(&mut buf) {
            Err(CodecError::TooLarge { len: 17, max: 16 }) => {}
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn refuses_to_encode_an_oversized_frame() {
        let mut codec = FrameCodec::new(8);
        let mut buf = BytesMut::new();
        assert!(matches!(
            codec.encode(&sample(1), &mut buf),
            Err(CodecError::TooLarge { .. })
        ));
        assert!(buf.is_empty());
    }

    #[test]
    fn garbage_payload_is_malformed() {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::new();
        buf.put_u32(4);
        buf.put_slice(&[0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(CodecError::Malformed(_))
        ));
    }

    #[test]
    fn unknown_field_decodes_to_a_frame_without_body() {
        // Field 99, varint 1: a message type this server does not know.
        let mut codec = FrameCodec::default();
        let payload = [0x08, 0x05, 0x98, 0x06, 0x01];
        let mut buf = BytesMut::new();
        buf.put_u32(payload.len() as u32);
        buf.put_slice(&payload);
        let frame = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(frame.id, 5);
        assert!(frame.body.is_none());
        let ping = Frame::new(0, Body::Ping(Ping { nonce: 1 }));
        assert!(!ping.is_sequenced());
    }
}
