//! Cluster mode: the transfer as its own process, reached over internal
//! links (`peer`) by connectors, offline workers and REST API instances
//! (`client`), serving them and pushing to connectors (`server`).

mod client;
mod peer;
mod server;

pub use client::{FromTransfer, RemoteCommits, RemoteNotifier, RemoteTransfer, TransferClient};
pub use peer::{peer_conn, run_peer, PeerConfig, PeerConn, PeerError, MAX_INTERNAL_FRAME};
pub use server::{serve, ConnectorLinks, TransferService};
