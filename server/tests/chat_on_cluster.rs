//! Chat end to end on a cluster: two transfers, two connectors (links
//! alternate between them), a REST API and an offline worker, on MariaDB,
//! Redis and Kafka.

mod common;

fn backend() -> common::Backend {
    common::Backend::Cluster
}

#[path = "behaviour/chat.rs"]
mod chat;
