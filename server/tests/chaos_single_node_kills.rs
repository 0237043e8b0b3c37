//! Chaos runs on the single-node server as a real process: the server is
//! SIGKILLed and started again on the same data while users chat through
//! the seeded chaos proxy, and the checker finds nothing lost, doubled or
//! out of order. The same run against a server with its resend dedupe
//! switched off (`--unsafe-no-dedupe`) must fail the checker: that shows
//! the checker catches what the dedupe prevents. `IM_CHAOS_SEED` reruns a
//! seed.

use std::time::Duration;

use im_chaos::cluster::{kill_each, ClusterOptions, LocalCluster, ProcessKind, Tools};
use im_chaos::{chat_run, run_seed, ChaosProxy, Faults, Report, RunConfig};

fn options(seed: u64, extra_args: &[&str]) -> ClusterOptions {
    ClusterOptions {
        extra_args: extra_args.iter().map(|s| (*s).to_owned()).collect(),
        ..ClusterOptions::chaos(seed)
    }
}

fn run_config(seed: u64) -> RunConfig {
    RunConfig {
        seed,
        users: 10,
        devices_per_user: 2,
        groups: 3,
        sends_per_device: 50,
        group_share: 0.4,
        read_share: 0.2,
        absences: 10,
        away: Duration::from_millis(600),
        // The traffic outlasts the kill, two seconds in.
        pace: Duration::from_millis(60),
        cuts: 4,
        cut_every: Duration::from_millis(800),
        settle: Duration::from_secs(20),
        name_prefix: "user".into(),
    }
}

/// Runs the chat against a single-node server started with `extra_args`,
/// killing it `kills` times (2 s apart) during the traffic.
async fn run(seed: u64, extra_args: &[&str], kills: usize) -> (Report, LocalCluster) {
    let tools = Tools::with_server(env!("CARGO_BIN_EXE_im-server"));
    let mut server = LocalCluster::single_node(&tools, &options(seed, extra_args))
        .await
        .unwrap_or_else(|e| panic!("server did not start: {e}"));
    let proxy: ChaosProxy = ChaosProxy::balance(
        server.link_addrs(),
        seed,
        Faults::headline(),
        Faults::headline(),
    )
    .await
    .unwrap();
    let http = server.http_url();
    let kinds = vec![ProcessKind::SingleNode; kills];
    let faults = async {
        kill_each(
            &mut server,
            &kinds,
            seed,
            Duration::from_secs(2),
            Duration::from_millis(300),
        )
        .await
        .unwrap_or_else(|e| panic!("fault driver failed: {e}"));
    };
    let report = chat_run(&http, &proxy, &run_config(seed), faults)
        .await
        .unwrap();
    let [frames, acks, dropped, duplicated, reordered, cuts, mid] = proxy.stats().snapshot();
    println!(
        "seed {seed} {extra_args:?}: {report:?}; proxy saw {frames} frames: {acks} acks dropped, \
         {dropped} frames dropped, {duplicated} duplicated, {reordered} reordered, {cuts} cuts, {mid} cut mid-frame; \
         kills {:?}",
        server.kills()
    );
    assert!(acks > 0 && cuts == 4, "the proxy did its job");
    (report, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_while_the_server_is_killed_loses_doubles_and_reorders_nothing() {
    let seed = run_seed();
    let (report, server) = run(seed, &[], 1).await;
    assert_eq!(server.kills().get(&ProcessKind::SingleNode), Some(&1));
    assert_eq!(report.sent, 10 * 2 * 50, "every send got its SENT");
    assert!(report.clean(), "seed {seed}: {report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_run_without_resend_dedupe_fails_the_checker() {
    let seed = run_seed();
    let (report, _server) = run(seed, &["--unsafe-no-dedupe"], 0).await;
    assert!(
        report.duplicates > 0 && !report.clean(),
        "seed {seed}: the checker missed the duplicates: {report:?}"
    );
}
