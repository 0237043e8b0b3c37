//! Bad input on the client link and the REST API, on a cluster: two
//! transfers, two connectors, a REST API and an offline worker, on MariaDB,
//! Redis and Kafka.

mod common;

fn backend() -> common::Backend {
    common::Backend::Cluster
}

#[path = "behaviour/bad_input.rs"]
mod bad_input;
