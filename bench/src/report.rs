//! The report of a run: every number as JSON, and the same as markdown
//! tables (one per scenario, a row per mode), followed by issue 5's targets
//! and whether this run met them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::scenario::chat::{ChatResult, ChatRun};
use crate::scenario::connections::ConnectionsResult;
use crate::scenario::group::GroupResult;
use crate::scenario::offline::OfflineResult;
use crate::stats::Percentiles;
use crate::target::{Mode, ServerProcess};

/// The machine the run was on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    /// Logical CPUs.
    pub cores: usize,
    /// Open files a process may hold.
    pub open_files_limit: u64,
}

/// Everything a run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// `quick`, `full` or `tiny`.
    pub size: String,
    /// When the run started, ms since the Unix epoch.
    pub started_at_ms: u64,
    /// How long the whole run took, seconds.
    pub total_secs: f64,
    /// The machine.
    pub machine: Machine,
    /// One entry per mode run.
    pub modes: Vec<ModeReport>,
}

/// What one mode measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModeReport {
    /// Single node or cluster.
    pub mode: Mode,
    /// Seconds to start the server.
    pub setup_secs: f64,
    /// Seconds to make the users (registrations, friends).
    pub accounts_secs: f64,
    /// The server's processes.
    pub processes: Vec<ServerProcess>,
    /// `connections`, if run.
    pub connections: Option<ConnectionsResult>,
    /// `chat`, if run.
    pub chat: Option<ChatResult>,
    /// `group`, one entry per group size, if run.
    pub group: Option<Vec<GroupResult>>,
    /// `offline`, if run.
    pub offline: Option<OfflineResult>,
    /// Scenarios that failed, with why.
    pub errors: Vec<String>,
}

impl ModeReport {
    /// Nothing measured yet.
    pub fn new(mode: Mode) -> ModeReport {
        ModeReport {
            mode,
            setup_secs: 0.0,
            accounts_secs: 0.0,
            processes: Vec::new(),
            connections: None,
            chat: None,
            group: None,
            offline: None,
            errors: Vec::new(),
        }
    }

    /// What went wrong: scenario errors and failed checks (a message not
    /// delivered, out of order, a link that failed).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = self.errors.clone();
        if let Some(c) = &self.connections {
            for (what, round) in [
                ("first logins", &c.first_login),
                ("logins again", &c.relogin),
            ] {
                if round.failed > 0 || round.opened as usize != c.attempted {
                    problems.push(format!(
                        "connections: {what}: {} of {} opened, {} failed ({})",
                        round.opened,
                        c.attempted,
                        round.failed,
                        round.first_error.as_deref().unwrap_or("-")
                    ));
                }
            }
            if c.dropped > 0 {
                problems.push(format!(
                    "connections: {} links dropped while held",
                    c.dropped
                ));
            }
        }
        if let Some(chat) = &self.chat {
            for (load, runs) in [
                ("saturation", &chat.saturation),
                ("half rate", &chat.half_rate),
            ] {
                for run in runs.runs.iter().filter(|r| !r.complete) {
                    problems.push(format!(
                        "chat {load}: sent {}, SENT {}, arrived {}, DELIVERED {}, out of order {} ({})",
                        run.sent,
                        run.sent_receipts,
                        run.arrived,
                        run.delivered_receipts,
                        run.out_of_order,
                        run.error.as_deref().unwrap_or("-")
                    ));
                }
            }
        }
        for g in self.group.iter().flatten() {
            for (what, round) in [("one message", &g.one), ("burst", &g.burst)] {
                if !round.complete {
                    problems.push(format!(
                        "group {}: {what}: {} of {} deliveries",
                        g.members, round.deliveries, round.expected
                    ));
                }
            }
            if let Some(e) = &g.error {
                problems.push(format!("group {}: {e}", g.members));
            }
        }
        if let Some(o) = &self.offline {
            if !(o.in_order && o.all_offline && o.received == o.queued) {
                problems.push(format!(
                    "offline: {} of {} received, in order {}, all offline {}",
                    o.received, o.queued, o.in_order, o.all_offline
                ));
            }
        }
        problems
    }
}

impl ModeReport {
    /// What the server did that a client had to work around, without
    /// anything lost: links it closed, sends it asked to repeat.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for g in self.group.iter().flatten() {
            if g.sender_closed > 0 {
                warnings.push(format!(
                    "group {}: the server closed the sender's link {} time(s) ({}); it logged \
                     in again and resent {} message(s)",
                    g.members,
                    g.sender_closed,
                    g.sender_close_reason.as_deref().unwrap_or("-"),
                    g.resent
                ));
            }
        }
        if let Some(chat) = &self.chat {
            let resent: u64 = [&chat.saturation, &chat.half_rate]
                .iter()
                .flat_map(|l| l.runs.iter())
                .map(|r| r.resent)
                .sum();
            if resent > 0 {
                warnings.push(format!(
                    "chat: {resent} send(s) repeated after \"resend later\""
                ));
            }
        }
        warnings
    }
}

impl Report {
    /// What the server made clients work around, per mode.
    pub fn warnings(&self) -> Vec<String> {
        self.modes
            .iter()
            .flat_map(|m| {
                m.warnings()
                    .into_iter()
                    .map(move |w| format!("[{}] {w}", m.mode.name()))
            })
            .collect()
    }

    /// Everything that went wrong, per mode.
    pub fn problems(&self) -> Vec<String> {
        self.modes
            .iter()
            .flat_map(|m| {
                m.problems()
                    .into_iter()
                    .map(move |p| format!("[{}] {p}", m.mode.name()))
            })
            .collect()
    }

    /// Writes `report.md` and `report.json` into `dir` (created if
    /// missing); returns their paths.
    pub fn write(&self, dir: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir)?;
        let md = dir.join("report.md");
        let json = dir.join("report.json");
        std::fs::write(&md, self.markdown())?;
        std::fs::write(
            &json,
            serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?,
        )?;
        Ok((md, json))
    }

    /// The markdown tables.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# im-bench ({} size)\n\n{} cores, {} open files per process; took {:.0} s. \
             CPU is in % of one core (200% = two cores busy).\n",
            self.size, self.machine.cores, self.machine.open_files_limit, self.total_secs
        );
        crate::report_tables::connections(&mut s, &self.modes);
        crate::report_tables::chat(&mut s, &self.modes);
        crate::report_tables::group(&mut s, &self.modes);
        crate::report_tables::offline(&mut s, &self.modes);
        crate::report_tables::targets(&mut s, &self.modes, &self.size);
        bullets(&mut s, "Warnings", &self.warnings());
        bullets(&mut s, "Problems", &self.problems());
        s
    }
}

/// A `## title` section listing `items`, or nothing when there are none.
fn bullets(s: &mut String, title: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(s, "## {title}\n");
    for item in items {
        let _ = writeln!(s, "- {item}");
    }
    s.push('\n');
}

/// `p50 / p99 / p99.9` in ms.
pub(crate) fn triple(p: &Percentiles) -> String {
    if p.count == 0 {
        return "-".into();
    }
    format!("{} / {} / {}", ms(p.p50_ms), ms(p.p99_ms), ms(p.p999_ms))
}

/// Milliseconds with sensible precision.
pub(crate) fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// A count with thousands separators.
pub(crate) fn count(v: f64) -> String {
    let n = v.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let head = digits.len() % 3;
    let mut out = String::from(if n < 0 { "-" } else { "" });
    out.push_str(&digits[..head]);
    for group in digits.as_bytes()[head..].chunks(3) {
        if out.len() > usize::from(n < 0) {
            out.push(',');
        }
        out.push_str(std::str::from_utf8(group).unwrap_or_default());
    }
    out
}

/// The chat run a row shows.
pub(crate) fn chat_row(mode: &str, load: &str, r: &ChatRun) -> String {
    format!(
        "| {mode} | {load} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {} |",
        r.offered_per_sec.map_or("-".into(), count),
        count(r.delivered_per_sec),
        triple(&r.to_sent),
        triple(&r.to_arrival),
        triple(&r.to_delivered),
        r.server_cpu_percent,
        r.generator_cpu_percent,
        if r.complete { "yes" } else { "NO" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_have_separators() {
        assert_eq!(count(0.0), "0");
        assert_eq!(count(999.4), "999");
        assert_eq!(count(1234.0), "1,234");
        assert_eq!(count(1234567.0), "1,234,567");
        assert_eq!(count(-123456.0), "-123,456");
        assert_eq!(count(-12.0), "-12");
    }

    #[test]
    fn an_empty_report_renders_and_round_trips() {
        let report = Report {
            size: "tiny".into(),
            modes: vec![ModeReport::new(Mode::Single)],
            ..Report::default()
        };
        assert!(report.markdown().contains("# im-bench (tiny size)"));
        let json = serde_json::to_string(&report).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back.modes.len(), 1);
        assert!(report.problems().is_empty());
    }
}
