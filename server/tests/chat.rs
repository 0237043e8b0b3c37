//! Chat end to end, on the single-node backends (SQLite, in-process user status).

mod common;

fn backend() -> common::Backend {
    common::Backend::Local
}

#[path = "behaviour/chat.rs"]
mod chat;
