//! Every scenario at a tiny size against the single-node server (in this
//! process, so its "server" memory and CPU are this process's): the
//! report must say everything was delivered, in order, and its JSON must
//! read back.

use std::net::SocketAddr;

use im_bench::plan::Plan;
use im_bench::progress::Progress;
use im_bench::report::{Machine, Report};
use im_bench::run_mode;
use im_bench::target::{Mode, ServerProcess, Target};
use im_server::Config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_at_a_tiny_size_delivers_everything() {
    let dir = tempfile::tempdir().unwrap();
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let server = im_server::start(Config::new(dir.path().join("data"), any, any))
        .await
        .unwrap();
    let target = Target::external(
        Mode::Single,
        server.http_url(),
        vec![server.link_addr],
        vec![ServerProcess {
            name: "server".into(),
            pid: std::process::id(),
            holds_links: true,
        }],
        5_000,
    );
    let plan = Plan::tiny();
    let mode = run_mode(&target, &plan, &Progress::silent()).await;
    server.shutdown().await;

    let report = Report {
        size: plan.size.clone(),
        machine: Machine {
            cores: 2,
            open_files_limit: 1024,
        },
        modes: vec![mode],
        ..Report::default()
    };
    assert!(report.problems().is_empty(), "{:#?}", report.problems());
    let out = dir.path().join("report");
    let (md_path, json_path) = report.write(&out).unwrap();
    let md = std::fs::read_to_string(md_path).unwrap();
    for table in [
        "## connections",
        "## chat",
        "## group",
        "## offline",
        "## targets",
    ] {
        assert!(md.contains(table), "{table} missing from\n{md}");
    }
    let back: Report = serde_json::from_slice(&std::fs::read(json_path).unwrap()).unwrap();
    let m = &back.modes[0];

    let c = m.connections.as_ref().expect("connections ran");
    assert_eq!(c.first_login.opened, 200);
    assert_eq!(c.relogin.opened, 200);
    assert!(c.first_login.per_sec > 0.0 && c.rss_per_link_kib.is_finite());
    assert_eq!(c.dropped, 0);

    let chat = m.chat.as_ref().expect("chat ran");
    for load in [&chat.saturation.median, &chat.half_rate.median] {
        assert!(load.complete, "{load:?}");
        assert!(load.delivered_per_sec > 0.0, "{load:?}");
        assert!(load.to_arrival.count > 0 && load.to_arrival.p50_ms > 0.0);
        assert!(load.to_sent.p50_ms <= load.to_delivered.p50_ms);
    }
    let half = chat.half_rate.median.offered_per_sec.unwrap();
    assert!((half - chat.saturation.median.delivered_per_sec / 2.0).abs() < 1.0);

    let groups = m.group.as_ref().expect("group ran");
    assert_eq!(groups.len(), 1);
    let g = &groups[0];
    assert!(g.one.complete && g.burst.complete, "{g:?}");
    assert_eq!(g.one.deliveries, 9);
    assert_eq!(g.burst.deliveries, 9 * 3);
    assert!(
        g.burst.receipts_ms.is_some(),
        "every DELIVERED came back: {g:?}"
    );

    let o = m.offline.as_ref().expect("offline ran");
    assert_eq!((o.queued, o.received), (100, 100));
    assert_eq!(o.offline_count, 100);
    assert!(o.in_order && o.all_offline);
}
