//! Bad input on the client link, on the single-node backends (SQLite, in-process user status).

mod common;

fn backend() -> common::Backend {
    common::Backend::Local
}

#[path = "behaviour/bad_input.rs"]
mod bad_input;
