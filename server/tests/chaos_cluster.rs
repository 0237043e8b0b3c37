//! A chaos run on the cluster (two transfers, two connectors behind nginx, a
//! REST API and an offline worker on MariaDB, Redis and Kafka): eight users
//! on two devices each chat 1:1 and in three groups, mark conversations read,
//! and devices close their sessions and come back, while the seeded chaos
//! proxy in front of nginx drops 30% of acks and some frames, duplicates,
//! delays and reorders frames and cuts every link four times, so clients
//! land on either connector after each cut. The checker finds, on every
//! device, no loss, no duplicate, no order violation and no missing or wrong
//! receipt. `IM_CHAOS_SEED` reruns a seed.

mod common;

use std::time::Duration;

use common::*;
use im_chaos::{chat_run, run_seed, ChaosProxy, Faults, RunConfig};

fn backend() -> Backend {
    Backend::Cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_through_the_chaos_proxy_on_the_cluster_loses_doubles_and_reorders_nothing() {
    let seed = run_seed();
    let h = Harness::start_with(|c| {
        c.ack_timeout_ms = 100;
        c.max_retries = 40;
    })
    .await;
    let proxy = ChaosProxy::start(h.link_addr(), seed, Faults::headline(), Faults::headline())
        .await
        .unwrap();
    let run = RunConfig {
        seed,
        users: 8,
        devices_per_user: 2,
        groups: 3,
        sends_per_device: 40,
        group_share: 0.4,
        read_share: 0.2,
        absences: 12,
        away: Duration::from_millis(800),
        pace: Duration::ZERO,
        cuts: 4,
        cut_every: Duration::from_millis(1000),
        settle: Duration::from_secs(30),
        name_prefix: "user".into(),
    };
    let report = chat_run(&h.url(""), &proxy, &run, std::future::ready(()))
        .await
        .unwrap();
    let [frames, acks, dropped, duplicated, reordered, cuts, mid] = proxy.stats().snapshot();
    println!(
        "seed {seed}: {report:?}; proxy saw {frames} frames: {acks} acks dropped, \
         {dropped} frames dropped, {duplicated} duplicated, {reordered} reordered, {cuts} cuts, {mid} cut mid-frame"
    );
    assert_eq!(report.sent, 8 * 2 * 40, "every send got its SENT");
    assert_eq!(report.absences, 12, "every absent device came back");
    assert!(acks > 0 && cuts == 4, "the proxy did its job");
    assert!(report.clean(), "seed {seed}: {report:?}");
}
