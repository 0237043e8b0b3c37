//! End-to-end tests of the REST API: the real router over a real SQLite store,
//! driven with `tower::ServiceExt::oneshot`.

mod accounts;
mod common;
mod files;
mod friends;
mod groups;
mod history;
mod routing;
