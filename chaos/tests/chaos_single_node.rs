//! A chaos run on the single-node server: twelve users on two devices each,
//! all friends and in three groups of different members, reach it through
//! the seeded chaos proxy (30% of acks and 3% of other frames dropped, 5%
//! duplicated, 5% reordered, 5% delayed, every link cut four times) while
//! they chat 1:1 and in groups, mark conversations read, and devices close
//! their sessions and come back. The checker finds, on every device, no
//! loss, no duplicate, no order violation and no missing or wrong receipt.
//! `IM_CHAOS_SEED` reruns a seed.

use std::time::Duration;

use im_chaos::{chat_run, run_seed, ChaosProxy, Faults, RunConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_through_the_chaos_proxy_loses_doubles_and_reorders_nothing() {
    let seed = run_seed();
    let dir = tempfile::tempdir().unwrap();
    let mut config = im_server::Config::new(
        dir.path().to_path_buf(),
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    );
    // Retransmit soon and often: many acks never arrive.
    config.ack_timeout_ms = 100;
    config.max_retries = 40;
    let server = im_server::start(config).await.unwrap();
    let proxy = ChaosProxy::start(
        server.link_addr,
        seed,
        Faults::headline(),
        Faults::headline(),
    )
    .await
    .unwrap();
    let run = RunConfig {
        seed,
        users: 12,
        devices_per_user: 2,
        groups: 3,
        sends_per_device: 60,
        group_share: 0.4,
        read_share: 0.2,
        absences: 24,
        away: Duration::from_millis(600),
        pace: Duration::ZERO,
        cuts: 4,
        cut_every: Duration::from_millis(1000),
        settle: Duration::from_secs(20),
        name_prefix: "user".into(),
    };
    let started = std::time::Instant::now();
    let report = chat_run(&server.http_url(), &proxy, &run, std::future::ready(()))
        .await
        .unwrap();
    let [frames, acks, dropped, duplicated, reordered, cuts, mid] = proxy.stats().snapshot();
    println!(
        "seed {seed}: {report:?}; proxy saw {frames} frames: {acks} acks dropped, \
         {dropped} frames dropped, {duplicated} duplicated, {reordered} reordered, {cuts} cuts, {mid} cut mid-frame; \
         {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(report.sent, 12 * 2 * 60, "every send got its SENT");
    assert_eq!(report.absences, 24, "every absent device came back");
    assert!(acks > 0 && cuts == 4, "the proxy did its job");
    assert!(
        report.offline > 0 && report.reads > 0,
        "catch-ups and reads happened"
    );
    assert!(report.clean(), "seed {seed}: {report:?}");
    server.shutdown().await;
}
