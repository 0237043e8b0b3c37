//! Progress on stderr: bars for the long steps when stderr is a terminal,
//! and one line per step either way, so a log shows where a run is.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where a run reports its progress.
#[derive(Debug, Clone)]
pub struct Progress {
    bars: bool,
    quiet: bool,
    prefix: String,
    since: Instant,
}

impl Progress {
    /// Bars if stderr is a terminal; step lines unless `quiet`.
    pub fn stderr(quiet: bool) -> Progress {
        Progress {
            bars: !quiet && std::io::stderr().is_terminal(),
            quiet,
            prefix: String::new(),
            since: Instant::now(),
        }
    }

    /// Nothing at all (tests).
    pub fn silent() -> Progress {
        Progress {
            bars: false,
            quiet: true,
            prefix: String::new(),
            since: Instant::now(),
        }
    }

    /// The same, with every line prefixed by `[prefix]`.
    pub fn with_prefix(&self, prefix: &str) -> Progress {
        Progress {
            prefix: format!("[{prefix}] "),
            ..self.clone()
        }
    }

    /// Says what the run is doing now (with the seconds since the run
    /// started).
    pub fn step(&self, message: impl AsRef<str>) {
        if !self.quiet {
            let at = self.since.elapsed().as_secs_f64();
            eprintln!("{at:6.1}s {}{}", self.prefix, message.as_ref());
        }
    }

    /// A bar counting up to `len` (hidden when stderr is not a terminal).
    pub fn bar(&self, len: u64, message: &str) -> ProgressBar {
        if !self.bars {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{prefix}{msg:<22} [{bar:30}] {pos}/{len} ({per_sec}, {elapsed})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(self.prefix.clone());
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    /// A spinner with a message, for a wait of unknown length.
    pub fn spinner(&self, message: &str) -> ProgressBar {
        if !self.bars {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new_spinner();
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.set_message(format!("{}{message}", self.prefix));
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }
}
