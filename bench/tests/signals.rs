//! `im-bench` stopped by SIGTERM or SIGINT stops the server it started. The
//! "server" here is a script that records its pid and sleeps, so the bench
//! is caught waiting for it to listen.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Polls `done` every 50 ms for up to `limit`.
fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

/// Running: a killed process whose new parent has not reaped it yet is a
/// zombie (state `Z`), not alive.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // pid (comm) state ...: the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

/// Starts the bench against the script; returns it and the script's pid.
fn bench_waiting_for_its_server(dir: &Path) -> (Child, u32) {
    let pid_file = dir.join("server.pid");
    let script = dir.join("im-server");
    std::fs::write(
        &script,
        "#!/bin/sh\necho $$ > \"$STUB_PID_FILE.tmp\"\nmv \"$STUB_PID_FILE.tmp\" \"$STUB_PID_FILE\"\nexec sleep 60\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bench = Command::new(env!("CARGO_BIN_EXE_im-bench"))
        .args(["--mode", "single", "--quiet", "--out"])
        .arg(dir.join("report"))
        .arg("--server-bin")
        .arg(&script)
        .arg("group")
        .env("STUB_PID_FILE", &pid_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pid = None;
    wait_for(Duration::from_secs(20), || {
        pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        pid.is_some()
    });
    (bench, pid.expect("the bench started its server"))
}

#[test]
fn a_signal_stops_the_bench_and_the_server_it_started() {
    for name in ["TERM", "INT"] {
        let dir = tempfile::tempdir().unwrap();
        let (mut bench, server) = bench_waiting_for_its_server(dir.path());
        assert!(alive(server));

        signal(bench.id(), name);
        let exited = wait_for(Duration::from_secs(10), || {
            bench.try_wait().unwrap().is_some()
        });
        if !exited {
            let _ = bench.kill();
        }
        let output = bench.wait_with_output().unwrap();
        let stopped = wait_for(Duration::from_secs(10), || !alive(server));
        if !stopped {
            signal(server, "KILL");
        }
        assert!(exited, "SIG{name}: the bench did not exit");
        assert!(!output.status.success(), "SIG{name}: exit status");
        assert!(stopped, "SIG{name}: the server outlived the bench");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&format!("(SIG{name})")), "{stderr}");
    }
}
