//! The offline/history path.
//!
//! [`MessageLog`] is where a message becomes durable: the single-node default
//! is [`BatchingLog`], an in-process bounded queue drained by one writer task
//! that commits whole batches to the store (group commit) and then hands them,
//! in commit order, to a [`CommitListener`] (the transfer's router). The
//! cluster mode puts Kafka ([`KafkaLog`]) in front of a MySQL-writing
//! consumer group ([`run_worker`]) that reports to the same listener.
//!
//! [`pull`] is the offline pull: it hands each unread offline row of a user to
//! exactly one caller through the store's `has_read` compare-and-set.

mod kafka;
mod log;
mod pull;

pub use kafka::{ensure_topic, run_worker, KafkaConfig, KafkaLog, KafkaSetupError, WorkerConfig};
pub use log::{BatchingLog, CommitListener, Committed, LogError, MessageLog, Pending, Submission};
pub use pull::pull;
