//! Bad input on the client link, on the cluster engines (MariaDB store, Redis user status).

mod common;

fn backend() -> common::Backend {
    common::Backend::MysqlRedis
}

#[path = "behaviour/bad_input.rs"]
mod bad_input;
