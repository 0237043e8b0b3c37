//! The scenarios of issue 5, and what they share.

pub mod chat;
pub mod connections;
pub mod group;
pub mod hold;
pub mod offline;
pub mod pair;

use anyhow::Context as _;
use futures::{stream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::link::{BenchLink, Endpoint};
use crate::progress::Progress;

/// Logins in flight at once when a scenario connects its users.
const CONNECT_CONCURRENCY: usize = 128;

/// The scenarios, in the order they run.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Many authenticated links held idle with heartbeats.
    Connections,
    /// Pairs exchanging 1:1 messages with full receipts.
    Chat,
    /// One message to a big group.
    Group,
    /// A user with many queued offline messages logs in.
    Offline,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 4] = [
        Scenario::Connections,
        Scenario::Chat,
        Scenario::Group,
        Scenario::Offline,
    ];

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Connections => "connections",
            Scenario::Chat => "chat",
            Scenario::Group => "group",
            Scenario::Offline => "offline",
        }
    }
}

/// Logs every `(endpoint, token)` in as `device`, at most
/// [`CONNECT_CONCURRENCY`] at once; the links come back in the same order.
pub async fn connect_all(
    logins: &[(Endpoint, String)],
    buffer: usize,
    device: &str,
    progress: &Progress,
) -> anyhow::Result<Vec<BenchLink>> {
    let bar = progress.bar(logins.len() as u64, "logging in");
    let links = stream::iter(logins)
        .map(|(endpoint, token)| {
            let bar = bar.clone();
            async move {
                let (link, _) = BenchLink::connect(*endpoint, buffer, token, device)
                    .await
                    .with_context(|| format!("logging in at {}", endpoint.addr))?;
                bar.inc(1);
                anyhow::Ok(link)
            }
        })
        .buffered(CONNECT_CONCURRENCY)
        .try_collect()
        .await;
    bar.finish_and_clear();
    links
}
