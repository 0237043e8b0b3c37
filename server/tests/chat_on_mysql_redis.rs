//! Chat end to end, on the cluster engines (MariaDB store, Redis user status).

mod common;

fn backend() -> common::Backend {
    common::Backend::MysqlRedis
}

#[path = "behaviour/chat.rs"]
mod chat;
