//! The frame codec: encoding and decoding a typical chat frame, one at a
//! time and as a burst of frames in one buffer (what a busy socket read
//! holds).

use bytes::BytesMut;
use criterion::{criterion_main, BatchSize, Criterion, Throughput};
use im_proto::v1::{ChatMessage, ContentType};
use im_proto::{Body, Frame, FrameCodec};
use tokio_util::codec::{Decoder, Encoder};

/// A chat message as a recipient gets it, with a 100-byte text.
fn chat_frame(id: u64) -> Frame {
    Frame::new(
        id,
        Body::Message(ChatMessage {
            msg_id: 1_000_000 + id,
            conversation_id: "u12345-67890".into(),
            seq: id,
            from_user: 12_345,
            to_user: 67_890,
            client_msg_id: "0f8fad5b-d9cb-469f-a165-70867728950e".into(),
            content_type: ContentType::Text as i32,
            text: "x".repeat(100),
            sent_at_ms: 1_700_000_000_000,
            ..Default::default()
        }),
    )
}

fn encode(c: &mut Criterion) {
    let frame = chat_frame(7);
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::with_capacity(4096);
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode chat frame", |b| {
        b.iter(|| {
            buf.clear();
            codec.encode(&frame, &mut buf).unwrap();
        })
    });
    group.bench_function("encode ack", |b| {
        let ack = Frame::ack(123_456);
        b.iter(|| {
            buf.clear();
            codec.encode(&ack, &mut buf).unwrap();
        })
    });
    group.finish();
}

fn decode(c: &mut Criterion) {
    let mut codec = FrameCodec::default();
    let mut one = BytesMut::new();
    codec.encode(&chat_frame(7), &mut one).unwrap();
    let mut burst = BytesMut::new();
    for id in 1..=64 {
        codec.encode(&chat_frame(id), &mut burst).unwrap();
    }
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode chat frame", |b| {
        b.iter_batched_ref(
            || one.clone(),
            |buf| codec.decode(buf).unwrap().unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.throughput(Throughput::Elements(64));
    group.bench_function("decode burst of 64 chat frames", |b| {
        b.iter_batched_ref(
            || burst.clone(),
            |buf| {
                let mut n = 0;
                while let Some(frame) = codec.decode(buf).unwrap() {
                    n += frame.id;
                }
                n
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// The group function `criterion_group!` makes has no doc comment.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::encode, super::decode);
}
criterion_main!(group::benches);
