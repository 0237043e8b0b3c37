//! What the kernel says about a process: resident memory and CPU time from
//! `/proc/<pid>/status` and `/proc/<pid>/stat`, its open-files limit, and
//! the children of a process. Linux only, like the rest of the harness.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

/// Memory and CPU time of one process at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcSample {
    /// Resident set size (`VmRSS`), KiB.
    pub rss_kib: u64,
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
}

/// Reads `pid`'s resident memory and CPU time; `None` once it is gone.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stat = read_stat(pid)?;
    // Fields after the command name: state is field 3 (index 0 here),
    // utime field 14, stime field 15.
    let ticks = |i: usize| stat.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Some(ProcSample {
        rss_kib,
        cpu_ticks: ticks(11) + ticks(12),
    })
}

/// The fields of `/proc/<pid>/stat` after the command name, which may hold
/// spaces and parentheses itself.
fn read_stat(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Clock ticks per second of `/proc` CPU times (`getconf CLK_TCK`, else 100).
pub fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|t| *t > 0)
            .unwrap_or(100)
    })
}

/// The soft limit on open files of `pid` ("Max open files").
pub fn open_files_limit(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Logical CPUs of this machine.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A direct child of some process, with its command line.
#[derive(Debug, Clone)]
pub struct ChildProcess {
    /// Its pid.
    pub pid: u32,
    /// Its command line, one entry per argument.
    pub cmdline: Vec<String>,
}

impl ChildProcess {
    /// The value after flag `name` on its command line (`--role connector`).
    pub fn flag(&self, name: &str) -> Option<&str> {
        let at = self.cmdline.iter().position(|a| a == name)?;
        self.cmdline.get(at + 1).map(String::as_str)
    }

    /// The file name of its program (Redis rewrites its command line to
    /// one string, `redis-server 127.0.0.1:port`: its first word).
    pub fn program(&self) -> &str {
        self.cmdline
            .first()
            .and_then(|p| p.split_whitespace().next())
            .and_then(|p| Path::new(p).file_name())
            .and_then(|n| n.to_str())
            .unwrap_or("")
    }
}

/// Every process whose parent is `parent`. A child caught in the middle
/// of its exec has an empty command line for that moment.
pub fn children(parent: u32) -> Vec<ChildProcess> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Some(stat) = read_stat(pid) else { continue };
        if stat.get(1).and_then(|p| p.parse::<u32>().ok()) != Some(parent) {
            continue;
        }
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        found.push(ChildProcess { pid, cmdline });
    }
    found.sort_by_key(|c| c.pid);
    found
}

/// CPU use of a set of processes over a stretch of time.
#[derive(Debug, Clone)]
pub struct CpuMeter {
    pids: Vec<u32>,
    ticks: u64,
    since: Instant,
}

impl CpuMeter {
    /// Starts measuring `pids` now.
    pub fn start(pids: &[u32]) -> CpuMeter {
        CpuMeter {
            pids: pids.to_vec(),
            ticks: total_ticks(pids),
            since: Instant::now(),
        }
    }

    /// CPU used since the start, in percent of one core (200 = two cores
    /// busy), as `top` shows it.
    pub fn percent(&self) -> f64 {
        let used = total_ticks(&self.pids).saturating_sub(self.ticks) as f64;
        let elapsed = self.since.elapsed().as_secs_f64().max(1e-3);
        100.0 * used / clock_ticks() as f64 / elapsed
    }
}

fn total_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| sample(*p))
        .map(|s| s.cpu_ticks)
        .sum()
}

/// Resident memory of a set of processes, summed, KiB.
pub fn total_rss_kib(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| sample(*p))
        .map(|s| s.rss_kib)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_cpu_and_a_file_limit() {
        let me = std::process::id();
        let s = sample(me).expect("own /proc entry");
        assert!(s.rss_kib > 0);
        assert!(open_files_limit(me).is_some_and(|l| l > 0));
        assert!(clock_ticks() > 0);
    }

    #[test]
    fn a_spawned_child_is_found() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        // `spawn` returns once the child has begun its exec, which can be
        // before the kernel has set up its arguments: until then its
        // command line reads as empty. Wait (bounded) for it.
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let found = loop {
            let found = children(std::process::id())
                .into_iter()
                .find(|c| c.pid == child.id());
            if found.as_ref().is_some_and(|c| !c.cmdline.is_empty()) || Instant::now() > deadline {
                break found;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        let _ = child.kill();
        let _ = child.wait();
        let found = found.expect("child listed");
        assert_eq!(found.program(), "sleep");
        assert_eq!(found.cmdline, vec!["sleep", "5"]);
    }

    #[test]
    fn flags_are_read_from_the_command_line() {
        let c = ChildProcess {
            pid: 1,
            cmdline: ["/x/im-server", "--role", "connector", "--connector-id"]
                .map(String::from)
                .to_vec(),
        };
        assert_eq!(c.program(), "im-server");
        assert_eq!(c.flag("--role"), Some("connector"));
        assert_eq!(c.flag("--connector-id"), None);
        assert_eq!(c.flag("--nope"), None);
        let redis = ChildProcess {
            pid: 2,
            cmdline: vec!["/usr/bin/redis-server 127.0.0.1:6379".into()],
        };
        assert_eq!(redis.program(), "redis-server");
    }
}
