//! Fault injection for IM links.
//!
//! [`ChaosProxy`] sits between clients and connectors, or between connectors
//! and transfers. It reads the length-prefixed frames in both directions
//! and, by a seeded schedule (the same seed gives the same decisions for the
//! same frames), drops, duplicates, holds back (delays and so reorders)
//! frames, with rates per frame kind and direction, and cuts connections,
//! between frames or in the middle of one. What it did is counted in
//! [`ChaosStats`]. [`chat_run`] drives chat traffic through it and checks
//! what arrived.

pub mod cluster;
mod proxy;
mod scenario;

pub use proxy::{ChaosFrame, ChaosProxy, ChaosStats, Faults};
pub use scenario::{chat_run, lossy_link_options, DeviceReport, Report, RunConfig};

/// The seed of a chaos run: `IM_CHAOS_SEED` if set (to rerun a failing
/// run), else a fresh random one. Printed, so any run can be repeated.
pub fn run_seed() -> u64 {
    let seed = std::env::var("IM_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("chaos seed {seed} (rerun with IM_CHAOS_SEED={seed})");
    seed
}
