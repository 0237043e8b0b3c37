//! The two ways a client link arrives, seen by the link as one thing: a
//! stream of decoded frames and a sink of frames to write.
//!
//! - TCP: 4-byte length prefix + one encoded `Frame` (`FrameCodec`).
//! - WebSocket: each binary message is exactly one encoded `Frame` (the
//!   message boundary replaces the prefix), for browsers.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::sink::{self, Feed, Flush};
use futures::stream::BoxStream;
use futures::{future, Sink, SinkExt, StreamExt};
use im_proto::{CodecError, Frame, FrameCodec};
use prost::Message as _;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::codec::{FramedRead, FramedWrite};

/// Bytes a TCP link's read and write buffers start with.
const LINK_BUFFER: usize = 256;

/// Takes frames by reference: a pushed frame is written from the ACK
/// window, which keeps it for retransmission, without a copy.
type FrameSink = Pin<Box<dyn for<'a> Sink<&'a Frame, Error = CodecError> + Send>>;

/// One client link's frames, whatever carries them.
pub(crate) struct Conn {
    reader: BoxStream<'static, Result<Frame, CodecError>>,
    writer: FrameSink,
}

impl Conn {
    /// A plain TCP link with length-prefixed frames. The socket is split into
    /// owned halves, so reading and writing share no lock.
    pub(crate) fn tcp(stream: TcpStream, max_frame_bytes: usize) -> Conn {
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        // Small buffers that grow with the frames: tokio-util starts each at
        // 8 KiB, which for an idle link is most of what it costs.
        let reader = FramedRead::with_capacity(read, FrameCodec::new(max_frame_bytes), LINK_BUFFER);
        let mut writer = FramedWrite::new(write, FrameCodec::new(max_frame_bytes));
        *writer.write_buffer_mut() = bytes::BytesMut::with_capacity(LINK_BUFFER);
        Conn {
            reader: reader.boxed(),
            writer: Box::pin(writer),
        }
    }

    /// A WebSocket link (after the HTTP upgrade handshake, which the caller
    /// bounds in time).
    pub(crate) async fn websocket(
        stream: TcpStream,
        max_frame_bytes: usize,
    ) -> Result<Conn, tungstenite::Error> {
        let _ = stream.set_nodelay(true);
        // Messages past the limit are refused by tungstenite before they are
        // buffered in full; the link reports them as FRAME_TOO_LARGE.
        let config = WebSocketConfig::default()
            .max_message_size(Some(max_frame_bytes))
            .max_frame_size(Some(max_frame_bytes));
        let ws = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await?;
        let (sink, stream) = ws.split();
        let reader = stream
            .filter_map(move |message| future::ready(decode(message, max_frame_bytes)))
            .boxed();
        Ok(Conn {
            reader,
            writer: Box::pin(Messages(sink)),
        })
    }

    /// The next frame; `None` once the client closed the link.
    pub(crate) async fn next(&mut self) -> Option<Result<Frame, CodecError>> {
        self.reader.next().await
    }

    // The sink's futures are returned as they are, not wrapped in an async
    // fn that would hold the frame a second time: the caller's future (a
    // link's task, kept for the link's life) is sized by them.

    /// Queues a frame without flushing.
    pub(crate) fn feed<'f>(&mut self, frame: &'f Frame) -> Feed<'_, FrameSink, &'f Frame> {
        self.writer.feed(frame)
    }

    /// Writes out everything queued.
    pub(crate) fn flush<'f>(&mut self) -> Flush<'_, FrameSink, &'f Frame> {
        self.writer.flush()
    }

    /// Queues and flushes one frame.
    pub(crate) fn send<'f>(&mut self, frame: &'f Frame) -> sink::Send<'_, FrameSink, &'f Frame> {
        self.writer.send(frame)
    }
}

/// A WebSocket sink taking frames by reference, each encoded into one
/// binary message. (`SinkExt::with` takes its items by value, or by a
/// reference of one lifetime only, not of any.)
struct Messages<S>(S);

impl<'a, S> Sink<&'a Frame> for Messages<S>
where
    S: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    type Error = CodecError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), CodecError>> {
        Pin::new(&mut self.0)
            .poll_ready(cx)
            .map_err(transport_error)
    }

    fn start_send(mut self: Pin<&mut Self>, frame: &'a Frame) -> Result<(), CodecError> {
        let message = Message::Binary(frame.encode_to_vec().into());
        Pin::new(&mut self.0)
            .start_send(message)
            .map_err(transport_error)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), CodecError>> {
        Pin::new(&mut self.0)
            .poll_flush(cx)
            .map_err(transport_error)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), CodecError>> {
        Pin::new(&mut self.0)
            .poll_close(cx)
            .map_err(transport_error)
    }
}

/// One WebSocket message as a frame: binary messages carry frames, control
/// messages are handled by tungstenite and skipped here, text is an error.
fn decode(
    message: Result<Message, tungstenite::Error>,
    max_frame_bytes: usize,
) -> Option<Result<Frame, CodecError>> {
    match message {
        Ok(Message::Binary(bytes)) => Some(Frame::decode(bytes).map_err(CodecError::from)),
        Ok(Message::Text(_)) => Some(Err(CodecError::NotBinary("text message"))),
        Ok(Message::Close(_)) => None,
        Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => None,
        Err(tungstenite::Error::Capacity(_)) => Some(Err(CodecError::TooLarge {
            len: max_frame_bytes + 1,
            max: max_frame_bytes,
        })),
        Err(error) => Some(Err(transport_error(error))),
    }
}

fn transport_error(error: tungstenite::Error) -> CodecError {
    match error {
        tungstenite::Error::Io(io) => CodecError::Io(io),
        other => CodecError::Io(std::io::Error::other(other)),
    }
}
