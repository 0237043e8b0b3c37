//! The reorder buffer: frames in order (the common case), a window's worth
//! arriving in reverse (the worst gap), and duplicates.

use criterion::{criterion_main, BatchSize, Criterion, Throughput};
use im_proto::ReorderBuffer;

fn in_order(c: &mut Criterion) {
    let mut group = c.benchmark_group("reorder buffer");
    group.throughput(Throughput::Elements(1));
    group.bench_function("accept in order", |b| {
        let mut r = ReorderBuffer::new(256);
        let mut id = 0u64;
        b.iter(|| {
            id += 1;
            r.accept(id, id)
        })
    });
    group.bench_function("accept a duplicate", |b| {
        let mut r = ReorderBuffer::new(256);
        for id in 1..=100 {
            r.accept(id, id);
        }
        b.iter(|| r.accept(50, 50))
    });
    group.finish();
}

fn gaps(c: &mut Criterion) {
    let mut group = c.benchmark_group("reorder buffer");
    for n in [8u64, 256] {
        group.throughput(Throughput::Elements(n));
        group.bench_function(format!("{n} frames in reverse"), |b| {
            b.iter_batched_ref(
                || ReorderBuffer::new(256),
                |r| {
                    for id in (2..=n).rev() {
                        r.accept(id, id);
                    }
                    r.accept(1, 1)
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// The group function `criterion_group!` makes has no doc comment.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::in_order, super::gaps);
}
criterion_main!(group::benches);
