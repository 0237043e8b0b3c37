//! What a run does: which scenarios, how big. Two sizes: `quick` (the
//! default, a few minutes in all) and `full` (the scales of issue 5's
//! targets).

use std::path::PathBuf;
use std::time::Duration;

use crate::scenario::chat::ChatPlan;
use crate::scenario::connections::ConnectionsPlan;
use crate::scenario::group::GroupPlan;
use crate::scenario::offline::OfflinePlan;
use crate::scenario::Scenario;

/// Links one generator process holds before the rest go to load processes.
pub const LINKS_PER_PROCESS: usize = 15_000;

/// The scenarios and sizes of a run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `quick` or `full`.
    pub size: String,
    /// The scenarios to run, in order.
    pub scenarios: Vec<Scenario>,
    /// REST calls in flight at once while making users.
    pub rest_concurrency: usize,
    /// `connections`.
    pub connections: ConnectionsPlan,
    /// `chat`.
    pub chat: ChatPlan,
    /// `group`.
    pub group: GroupPlan,
    /// `offline`.
    pub offline: OfflinePlan,
}

impl Plan {
    /// The default size: every scenario in a few minutes per mode.
    pub fn quick(load_exe: Option<PathBuf>) -> Plan {
        Plan {
            size: "quick".into(),
            scenarios: Scenario::ALL.to_vec(),
            rest_concurrency: 8,
            connections: ConnectionsPlan {
                links: 5_000,
                idle: Duration::from_secs(5),
                concurrency: 256,
                per_process: LINKS_PER_PROCESS,
                sources: 8,
                load_exe,
            },
            chat: ChatPlan {
                pairs: 100,
                in_flight: 32,
                warmup: Duration::from_secs(1),
                measure: Duration::from_secs(5),
                reps: 3,
                drain: Duration::from_secs(30),
                rate: None,
            },
            group: GroupPlan {
                sizes: vec![100, 1_000],
                burst: 10,
                timeout: Duration::from_secs(60),
            },
            offline: OfflinePlan {
                messages: 2_000,
                senders: 20,
                in_flight: 32,
            },
        }
    }

    /// The targets' scales: 200,000 links, 1,000 pairs, groups up to
    /// 10,000, 10,000 offline messages.
    pub fn full(load_exe: Option<PathBuf>) -> Plan {
        let quick = Plan::quick(load_exe);
        Plan {
            size: "full".into(),
            connections: ConnectionsPlan {
                links: 200_000,
                idle: Duration::from_secs(10),
                sources: 16,
                ..quick.connections
            },
            chat: ChatPlan {
                pairs: 1_000,
                measure: Duration::from_secs(10),
                warmup: Duration::from_secs(2),
                ..quick.chat
            },
            group: GroupPlan {
                sizes: vec![100, 1_000, 10_000],
                timeout: Duration::from_secs(120),
                ..quick.group
            },
            offline: OfflinePlan {
                messages: 10_000,
                ..quick.offline
            },
            ..quick
        }
    }

    /// A tiny run for tests: seconds, not minutes.
    pub fn tiny() -> Plan {
        let quick = Plan::quick(None);
        Plan {
            size: "tiny".into(),
            connections: ConnectionsPlan {
                links: 200,
                idle: Duration::from_secs(1),
                sources: 4,
                ..quick.connections
            },
            chat: ChatPlan {
                pairs: 4,
                warmup: Duration::from_millis(200),
                measure: Duration::from_secs(1),
                reps: 1,
                drain: Duration::from_secs(10),
                ..quick.chat
            },
            group: GroupPlan {
                sizes: vec![10],
                burst: 3,
                timeout: Duration::from_secs(20),
            },
            offline: OfflinePlan {
                messages: 100,
                senders: 3,
                in_flight: 16,
            },
            ..quick
        }
    }

    /// Connector processes a cluster needs for `connections.links` links,
    /// each holding what this process's open-files limit allows (at least
    /// the two a cluster always has).
    pub fn cluster_connectors(&self) -> usize {
        let per_connector = crate::target::links_for_fd_limit(crate::target::own_fd_limit());
        if !self.scenarios.contains(&Scenario::Connections) {
            return 2;
        }
        self.connections.links.div_ceil(per_connector).max(2)
    }

    /// Users the pool needs for the chosen scenarios, against a server
    /// that holds at most `link_capacity` links.
    pub fn pool_size(&self, link_capacity: usize) -> usize {
        let mut n = 0;
        for s in &self.scenarios {
            n = n.max(match s {
                Scenario::Connections => crate::scenario::connections::users_needed(
                    self.connections.links.min(link_capacity),
                ),
                Scenario::Chat => 2 * self.chat.pairs,
                Scenario::Group => self.group.sizes.iter().copied().max().unwrap_or(0),
                Scenario::Offline => 0,
            });
        }
        n
    }
}
