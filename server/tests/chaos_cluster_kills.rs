//! The cluster chaos run with the fault driver: the cluster runs as real
//! processes (two transfers, two connectors, a REST API, an offline worker,
//! and its own Redis, MariaDB and Kafka-API broker). Clients reach the
//! connectors through the seeded chaos proxy, which also balances them
//! over both connectors; the connectors reach the transfers through chaos
//! proxies of their own. While users chat, one process of every kind is
//! SIGKILLed and started again, and the internal links are cut too. The
//! checker finds no loss, no duplicate and no order violation.
//! `IM_CHAOS_SEED` reruns a seed.

use std::time::Duration;

use im_chaos::cluster::{kill_each, ClusterOptions, LocalCluster, ProcessKind, Tools};
use im_chaos::{chat_run, run_seed, ChaosProxy, Faults, RunConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_while_every_process_kind_is_killed_loses_doubles_and_reorders_nothing() {
    let seed = run_seed();
    let tools = Tools::with_server(env!("CARGO_BIN_EXE_im-server"));
    let options = ClusterOptions::chaos(seed);
    let mut cluster = LocalCluster::start(&tools, &options)
        .await
        .unwrap_or_else(|e| panic!("cluster did not start: {e}"));
    let proxy: ChaosProxy = ChaosProxy::balance(
        cluster.link_addrs(),
        seed,
        Faults::headline(),
        Faults::headline(),
    )
    .await
    .unwrap();
    // The sends are paced to last through the fault driver's schedule
    // (seven kills, two seconds apart, each back in a second or two).
    let run = RunConfig {
        seed,
        users: 10,
        devices_per_user: 2,
        groups: 3,
        sends_per_device: 50,
        group_share: 0.4,
        read_share: 0.2,
        absences: 10,
        away: Duration::from_secs(1),
        pace: Duration::from_millis(400),
        cuts: 4,
        cut_every: Duration::from_secs(3),
        settle: Duration::from_secs(40),
        name_prefix: "user".into(),
    };
    let http = cluster.http_url();
    let logs = cluster.log_dir();
    let faults = async {
        let kills = kill_each(
            &mut cluster,
            &ProcessKind::CLUSTER,
            seed,
            Duration::from_secs(2),
            Duration::from_millis(300),
        )
        .await;
        for internal in cluster.internal_proxies() {
            internal.cut_all();
        }
        kills.unwrap_or_else(|e| panic!("fault driver failed: {e}; logs in {}", logs.display()));
    };
    let report = chat_run(&http, &proxy, &run, faults).await.unwrap();
    let [frames, acks, dropped, duplicated, reordered, cuts, mid] = proxy.stats().snapshot();
    println!(
        "seed {seed}: {report:?}; client proxy saw {frames} frames: {acks} acks dropped, \
         {dropped} frames dropped, {duplicated} duplicated, {reordered} reordered, {cuts} cuts, {mid} cut mid-frame; \
         kills {:?}",
        cluster.kills()
    );
    for kind in ProcessKind::CLUSTER {
        assert_eq!(cluster.kills().get(&kind), Some(&1), "one kill of {kind:?}");
    }
    let internal_acks: u64 = cluster
        .internal_proxies()
        .iter()
        .map(|p| p.stats().snapshot()[1])
        .sum();
    assert!(acks > 0 && internal_acks > 0, "the proxies did their job");
    assert_eq!(report.sent, 10 * 2 * 50, "every send got its SENT");
    assert!(report.clean(), "seed {seed}: {report:?}");
}
