//! The load generator and benchmark suite of the IM server (issue 5).
//!
//! Each scenario drives the server under test — the single-node
//! `im-server` or a local cluster, always in processes of their own, so
//! their memory and CPU can be read from `/proc` — through lean client
//! links ([`link::BenchLink`]: the protocol's framing, ids, acks and
//! retransmission, one task per link), and measures it:
//!
//! - `connections`: N authenticated links held with heartbeats: login
//!   rate, RSS per idle link, CPU while idle;
//! - `chat`: pairs of users with full receipts: messages/s and latency
//!   percentiles, at saturation and at half that rate;
//! - `group`: one message (and a burst) to a group of G online members;
//! - `offline`: a user with K queued messages logs in.
//!
//! [`run_mode`] runs the chosen scenarios against one server and gives a
//! [`report::ModeReport`]; [`report::Report`] renders markdown and JSON.

pub mod accounts;
pub mod link;
pub mod plan;
pub mod procfs;
pub mod progress;
pub mod report;
mod report_tables;
pub mod scenario;
pub mod stats;
pub mod target;

use std::time::Instant;

use accounts::Accounts;
use plan::Plan;
use progress::Progress;
use report::ModeReport;
use scenario::Scenario;
use target::Target;

/// Runs the plan's scenarios against `target`, one after the other; a
/// scenario that fails is recorded in the report and the next one runs.
pub async fn run_mode(target: &Target, plan: &Plan, progress: &Progress) -> ModeReport {
    let mut report = ModeReport::new(target.mode);
    report.processes = target.processes.clone();
    let mut accounts = match Accounts::new(&target.http_url, plan.rest_concurrency) {
        Ok(accounts) => accounts,
        Err(e) => {
            report.errors.push(format!("accounts: {e:#}"));
            return report;
        }
    };
    // Every user first, so the scenarios time only themselves.
    let started = Instant::now();
    let pool = plan.pool_size(target.link_capacity());
    progress.step(format!("registering {pool} users"));
    if let Err(e) = accounts.ensure(pool, progress).await {
        report.errors.push(format!("registering users: {e:#}"));
        return report;
    }
    if plan.scenarios.contains(&Scenario::Chat) {
        if let Err(e) = accounts.befriend_pairs(plan.chat.pairs, progress).await {
            report.errors.push(format!("making friends: {e:#}"));
        }
    }
    report.accounts_secs = started.elapsed().as_secs_f64();
    progress.step(format!(
        "{pool} users ready in {:.1} s",
        report.accounts_secs
    ));
    for scenario in &plan.scenarios {
        let outcome = match scenario {
            Scenario::Connections => {
                scenario::connections::run(target, &mut accounts, &plan.connections, progress)
                    .await
                    .map(|r| report.connections = Some(r))
            }
            Scenario::Chat => scenario::chat::run(target, &mut accounts, &plan.chat, progress)
                .await
                .map(|r| report.chat = Some(r)),
            Scenario::Group => scenario::group::run(target, &mut accounts, &plan.group, progress)
                .await
                .map(|r| report.group = Some(r)),
            Scenario::Offline => {
                scenario::offline::run(target, &mut accounts, &plan.offline, progress)
                    .await
                    .map(|r| report.offline = Some(r))
            }
        };
        if let Err(e) = outcome {
            progress.step(format!("{} failed: {e:#}", scenario.name()));
            report.errors.push(format!("{}: {e:#}", scenario.name()));
        }
    }
    report
}
