//! The ACK window: numbering and keeping frames until acked, cumulative
//! acks, and the deadline scans a link task makes on every wakeup.

use std::time::{Duration, Instant};

use criterion::{criterion_main, BatchSize, Criterion, Throughput};
use im_proto::v1::Receipt;
use im_proto::{AckConfig, AckWindow, Body};

fn body(n: u64) -> Body {
    Body::Receipt(Receipt {
        kind: 1,
        msg_id: n,
        conversation_id: "u12345-67890".into(),
        seq: n,
        client_msg_id: "0f8fad5b-d9cb-469f-a165-70867728950e".into(),
        ..Default::default()
    })
}

/// A window holding `n` frames.
fn full(n: usize, now: Instant) -> AckWindow<u64> {
    let mut w = AckWindow::new(AckConfig::default());
    for i in 0..n as u64 {
        w.send(body(i), i, now).unwrap();
    }
    w
}

fn send_and_ack(c: &mut Criterion) {
    let now = Instant::now();
    let mut group = c.benchmark_group("ack window");
    group.throughput(Throughput::Elements(256));
    group.bench_function("fill 256 then one cumulative ack", |b| {
        let mut w: AckWindow<u64> = AckWindow::new(AckConfig::default());
        b.iter(|| {
            for i in 0..256 {
                w.send(body(i), i, now).unwrap();
            }
            w.on_ack(w.last_sent_id()).len()
        })
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("send and ack one at a time, 32 in flight", |b| {
        let mut w = full(32, now);
        b.iter(|| {
            w.send(body(1), 1, now).unwrap();
            w.on_ack(w.last_sent_id() - 32).len()
        })
    });
    group.finish();
}

fn deadlines(c: &mut Criterion) {
    let now = Instant::now();
    let mut group = c.benchmark_group("ack window");
    for n in [1usize, 32, 256] {
        let w = full(n, now);
        group.bench_function(format!("next_deadline, {n} in flight"), |b| {
            b.iter(|| w.next_deadline())
        });
        group.bench_function(format!("poll_timeouts (none due), {n} in flight"), |b| {
            b.iter_batched_ref(
                || full(n, now),
                |w| w.poll_timeouts(now).unwrap().len(),
                BatchSize::SmallInput,
            )
        });
    }
    group.bench_function("poll_timeouts, all 256 due", |b| {
        b.iter_batched_ref(
            || full(256, now),
            |w| w.poll_timeouts(now + Duration::from_secs(3)).unwrap().len(),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// The group function `criterion_group!` makes has no doc comment.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::send_and_ack, super::deadlines);
}
criterion_main!(group::benches);
