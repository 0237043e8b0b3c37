//! The single node's hot writes alone, without links or frames: what one
//! one-to-one message costs the SQLite store from its append to the
//! sender's claim of its DELIVERED receipt, the three writes the chat
//! benchmark makes per message.
//!
//! `cargo run --release -p im-store --example hot_writes -- [PAIRS] [MESSAGES]`
//!
//! PAIRS tasks (1,000 by default) each send MESSAGES (20) messages one
//! after the other, each going through: append (durable, as before SENT),
//! the recipient's device acking it (cursor, offline claim, DELIVERED
//! receipt) and the sender claiming that receipt. The writer merges what
//! the tasks queue at once into one transaction, as in the server. Prints
//! messages/s and the latency of the three writes per message.

use std::time::{Duration, Instant};

use im_store::{DeliveredMessage, NewMessage, OfflineKey, ReceiptKind, SqliteStore, Store, Target};

fn arg(n: usize, default: usize) -> usize {
    match std::env::args().nth(n) {
        Some(s) => s.parse().unwrap_or_else(|_| {
            eprintln!("argument {n} must be a count, not {s:?}");
            std::process::exit(2)
        }),
        None => default,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    sorted[i].as_secs_f64() * 1e3
}

/// CPU seconds (user + system) of this process's threads, summed by
/// thread name, from `/proc/self/task/*/stat`.
fn threads_cpu() -> Vec<(String, f64)> {
    let tick = 100.0; // USER_HZ on Linux
    let mut by_name: Vec<(String, f64)> = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return by_name;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // "pid (name) state ..." with utime and stime the 14th and 15th fields.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_owned();
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let ticks: f64 =
            fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
        match by_name.iter_mut().find(|(n, _)| *n == name) {
            Some((_, t)) => *t += ticks / tick,
            None => by_name.push((name, ticks / tick)),
        }
    }
    by_name
}

#[tokio::main]
async fn main() {
    let pairs = arg(1, 1_000).max(1);
    let messages = arg(2, 20).max(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("im.db"))
        .await
        .expect("open store");
    let mut users = Vec::with_capacity(2 * pairs);
    for i in 0..2 * pairs {
        users.push(store.create_user(&format!("u{i}"), "x").await.unwrap().id);
    }
    // One warm-up message per pair makes every conversation and cursor row,
    // as a chat already under way has them.
    let run = |round: usize, count: usize| {
        let tasks: Vec<_> = (0..pairs)
            .map(|p| {
                let store = store.clone();
                let (a, b) = (users[2 * p], users[2 * p + 1]);
                tokio::spawn(async move {
                    let mut took = Vec::with_capacity(count);
                    for i in 0..count {
                        let start = Instant::now();
                        let message = NewMessage {
                            from_user: a,
                            client_msg_id: format!("{round}-{i}"),
                            target: Target::User(b),
                            content_type: 1,
                            text: "x".repeat(100),
                            file: None,
                            recipients: vec![b],
                        };
                        let stored = store.append_messages(&[message]).await.unwrap();
                        let stored = &stored[0].message;
                        let acked = DeliveredMessage::from(stored);
                        let receipts = store.mark_delivered(b, "d", &[acked]).await.unwrap();
                        assert_eq!(receipts.len(), 1, "one DELIVERED receipt per message");
                        let key = OfflineKey::Receipt {
                            msg_id: stored.msg_id,
                            kind: ReceiptKind::Delivered,
                            by_user: b,
                        };
                        let claimed = store.claim_offline_keys(a, &[key]).await.unwrap();
                        assert_eq!(claimed.len(), 1, "the receipt's offline row is claimed");
                        took.push(start.elapsed());
                    }
                    took
                })
            })
            .collect();
        async move {
            let mut took = Vec::new();
            for task in tasks {
                took.extend(task.await.unwrap());
            }
            took
        }
    };
    run(0, 1).await;
    let cpu_before = threads_cpu();
    let start = Instant::now();
    let mut took = run(1, messages).await;
    let secs = start.elapsed().as_secs_f64();
    let cpu_after = threads_cpu();
    took.sort();
    let total = took.len();
    println!(
        "pairs {pairs}, messages {total}: {:.0} msg/s, {:.1} us per message; \
         append+ack+claim p50 {:.2} ms, p99 {:.2} ms",
        total as f64 / secs,
        secs * 1e6 / total as f64,
        percentile(&took, 0.50),
        percentile(&took, 0.99),
    );
    for (name, after) in &cpu_after {
        let before = cpu_before
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0.0, |(_, t)| *t);
        println!(
            "  {name:<16} CPU {:.1} us per message ({:.0}% of the run)",
            (after - before) * 1e6 / total as f64,
            (after - before) * 100.0 / secs
        );
    }
    store.close().await;
}
