//! The traffic driver of a chaos run. Users, all friends with each other and
//! in groups of different members, are each logged in on several devices,
//! every device on its own reconnecting `Session` through a link address
//! (the chaos proxy). Every device sends 1:1 and group messages and now and
//! then marks a conversation read, while the proxy cuts every link, devices
//! close their session, stay away and come back with a new one, and an
//! optional fault driver runs beside (killing and restarting servers).
//! Everything sent and handed over is written to a ledger; once every device
//! is back and everything owed has arrived (or a deadline passed), the
//! checker says what went wrong.

mod check;
mod ledger;
mod roster;

pub use check::{DeviceReport, Report};

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use im_client::{
    new_client_msg_id, AckConfig, ClientError, ContentType, Event, LinkOptions, SeenSeqs,
    SendMessage, Session, SessionEvent, SessionOptions,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{timeout, Instant};

use crate::ChaosProxy;
use check::check;
use ledger::{Ledger, Sent};
use roster::{Roster, Route};

/// Device ids, in the order a user's devices get them.
const DEVICE_NAMES: [&str; 4] = ["phone", "laptop", "tablet", "desktop"];
/// Seeds the absences apart from every other choice of a run.
const ABSENCE_STREAM: u64 = 0xab5e;
/// How often settling looks at the ledger.
const SETTLE_POLL: Duration = Duration::from_millis(200);
/// How long settling still waits once everything owed arrived, so that
/// whatever would come twice has come.
const SETTLE_GRACE: Duration = Duration::from_millis(500);
/// Attempts to open a session (the proxy may cut the login, a server may
/// be restarting) before the run gives up, and the wait between them.
const CONNECT_ATTEMPTS: u32 = 100;
const CONNECT_RETRY: Duration = Duration::from_millis(100);
/// A send the server has not answered by then fails the run (a `Session`
/// would keep waiting).
const SENT_WITHIN: Duration = Duration::from_secs(60);

/// The size and timing of a run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Seeds every choice of the run (the proxy has its own seed).
    pub seed: u64,
    /// Users (two or more); all are friends with each other.
    pub users: usize,
    /// Devices each user is logged in on ("phone", "laptop", ...).
    pub devices_per_user: usize,
    /// Groups, each of a random subset of at least three users.
    pub groups: usize,
    /// Messages each device sends.
    pub sends_per_device: usize,
    /// Chance a send goes to one of the sender's groups rather than a friend.
    pub group_share: f64,
    /// Chance a device, after a send, marks one of its conversations read up
    /// to the last seq it has there.
    pub read_share: f64,
    /// Times, in all, that a device closes its session, stays away and
    /// comes back with a new one (at random devices and moments).
    pub absences: usize,
    /// Longest an absent device stays away (at least half of it).
    pub away: Duration,
    /// Wait between two sends of a device (so that the traffic lasts as
    /// long as a fault driver's schedule).
    pub pace: Duration,
    /// Link cuts during the run, this far apart.
    pub cuts: u32,
    /// Time between cuts.
    pub cut_every: Duration,
    /// Longest wait after the traffic for everything owed to arrive.
    pub settle: Duration,
    /// Names are prefixed with this (runs may share a server).
    pub name_prefix: String,
}

/// Link options for a lossy network: retransmit soon and often.
pub fn lossy_link_options() -> SessionOptions {
    SessionOptions {
        link: LinkOptions {
            ack: AckConfig {
                capacity: 256,
                timeout: Duration::from_millis(100),
                max_backoff: Duration::from_millis(800),
                max_retries: 40,
            },
            ..LinkOptions::default()
        },
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(300),
        ..SessionOptions::default()
    }
}

/// Runs the chat traffic through `proxy` against the server whose REST API
/// is at `http`, with `during` running beside it (a fault driver; the
/// traffic is over once both are), lets everything settle with every device
/// online, and checks the records.
pub async fn chat_run(
    http: &str,
    proxy: &ChaosProxy,
    config: &RunConfig,
    during: impl Future<Output = ()>,
) -> Result<Report, ClientError> {
    if config.users < 2 || config.devices_per_user == 0 {
        return Err(ClientError::InvalidInput(
            "a run needs two users or more, with a device each".into(),
        ));
    }
    let roster = Roster::enrol(http, config).await?;
    let ledger = Arc::new(Mutex::new(Ledger {
        users: roster.users.clone(),
        ..Ledger::default()
    }));
    let config = Arc::new(config.clone());
    let mut devices = Vec::new();
    for (user, token) in roster.tokens.iter().enumerate() {
        let (friends, groups) = roster.routes(user);
        for name in device_names(config.devices_per_user) {
            devices.push(Device {
                index: lock(&ledger).add_device(user, &name),
                user,
                name,
                token: token.clone(),
                link: proxy.addr().to_string(),
                seen: SeenSeqs::default(),
                friends: friends.clone(),
                groups: groups.clone(),
                ledger: ledger.clone(),
                config: config.clone(),
            });
        }
    }
    // Every device logs in before anything is sent: a device's cursors start
    // at its first login, and what came before is not owed to it.
    let mut online = Vec::new();
    for device in &devices {
        online.push(device.connect().await?);
    }
    let mut traffic = JoinSet::new();
    let absences = plan_absences(&config, devices.len());
    for ((device, online), absences) in devices.into_iter().zip(online).zip(absences) {
        traffic.spawn(device.run(online, absences));
    }
    let cutter = async {
        for _ in 0..config.cuts {
            tokio::time::sleep(config.cut_every).await;
            proxy.cut_all();
        }
    };
    let (online, (), ()) = tokio::join!(finish(traffic), cutter, during);
    let online = online?;
    settle(&ledger, config.settle).await;
    for device in online {
        device.close().await;
    }
    let mut report = check(&lock(&ledger));
    report.groups = roster.groups.len();
    Ok(report)
}

/// Waits for every device's traffic; the first failure ends the run (and,
/// by dropping the set, the other devices' tasks).
async fn finish(
    mut traffic: JoinSet<Result<Online, ClientError>>,
) -> Result<Vec<Online>, ClientError> {
    let mut online = Vec::new();
    while let Some(done) = traffic.join_next().await {
        match done {
            Ok(device) => online.push(device?),
            Err(e) => return Err(ClientError::Protocol(format!("a device failed: {e}"))),
        }
    }
    Ok(online)
}

/// Waits until nothing owed is missing or `within` passed, then a moment
/// more for anything that would arrive twice.
async fn settle(ledger: &Mutex<Ledger>, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline && !check(&lock(ledger)).owes_nothing() {
        tokio::time::sleep(SETTLE_POLL).await;
    }
    tokio::time::sleep(SETTLE_GRACE).await;
}

fn lock(ledger: &Mutex<Ledger>) -> MutexGuard<'_, Ledger> {
    ledger.lock().expect("ledger lock")
}

fn device_names(n: usize) -> Vec<String> {
    (0..n)
        .map(|k| match DEVICE_NAMES.get(k) {
            Some(name) => (*name).to_owned(),
            None => format!("device{k}"),
        })
        .collect()
}

/// Per device, before which of its sends it goes away and for how long.
fn plan_absences(config: &RunConfig, devices: usize) -> Vec<Vec<(usize, Duration)>> {
    let mut rng = StdRng::seed_from_u64(config.seed ^ ABSENCE_STREAM);
    let mut plans = vec![Vec::new(); devices];
    for _ in 0..config.absences {
        let at = rng.gen_range(1..config.sends_per_device.max(2));
        let away = rng.gen_range(config.away / 2..=config.away);
        plans[rng.gen_range(0..devices)].push((at, away));
    }
    plans
}

/// One device of a user, driven by its own task.
struct Device {
    index: usize,
    user: usize,
    name: String,
    token: String,
    link: String,
    /// What its application was handed, kept across its sessions (as an app
    /// keeps it on disk).
    seen: SeenSeqs,
    friends: Vec<Route>,
    groups: Vec<Route>,
    ledger: Arc<Mutex<Ledger>>,
    config: Arc<RunConfig>,
}

/// A device's open session and the task recording what it hands over.
struct Online {
    session: Session,
    recorder: JoinHandle<()>,
}

impl Online {
    /// Closes the session and waits until everything it handed over is
    /// recorded.
    async fn close(self) {
        self.session.close().await;
        let _ = self.recorder.await;
    }
}

impl Device {
    /// Opens a new session under this device's id, trying again while the
    /// proxy or a restarting server gets in the way.
    async fn connect(&self) -> Result<Online, ClientError> {
        let options = SessionOptions {
            seen: self.seen.clone(),
            ..lossy_link_options()
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            let connected = Session::connect(
                self.link.clone(),
                self.token.clone(),
                self.name.clone(),
                options.clone(),
            )
            .await;
            match connected {
                Ok((session, events)) => {
                    let recorder = tokio::spawn(record(self.ledger.clone(), self.index, events));
                    return Ok(Online { session, recorder });
                }
                Err(ClientError::Rejected { code, message })
                    if code != "SHUTTING_DOWN" && code != "INTERNAL" =>
                {
                    return Err(ClientError::Rejected { code, message });
                }
                Err(e) if attempts >= CONNECT_ATTEMPTS => return Err(e),
                Err(_) => tokio::time::sleep(CONNECT_RETRY).await,
            }
        }
    }

    /// Sends this device's messages, reads now and then, and goes away and
    /// comes back as planned; returns the session open at the end.
    async fn run(
        self,
        mut online: Online,
        absences: Vec<(usize, Duration)>,
    ) -> Result<Online, ClientError> {
        let config = self.config.clone();
        let mut rng = StdRng::seed_from_u64(config.seed.wrapping_add(1000 + self.index as u64));
        for k in 0..config.sends_per_device {
            for (_, away) in absences.iter().filter(|(at, _)| *at == k) {
                online.close().await;
                tokio::time::sleep(*away).await;
                online = self.connect().await?;
                lock(&self.ledger).absences += 1;
            }
            let route = match self.groups.choose(&mut rng) {
                Some(group) if rng.gen_bool(config.group_share) => group,
                _ => self.friends.choose(&mut rng).expect("a friend"),
            };
            let text = format!("{}/{} #{k}", self.user, self.name);
            self.send(&online.session, route, text).await?;
            if !config.pace.is_zero() {
                tokio::time::sleep(config.pace).await;
            }
            if rng.gen_bool(config.read_share) {
                let which = rng.gen_range(0..self.friends.len() + self.groups.len());
                let route = self.friends.iter().chain(&self.groups).nth(which);
                let conversation = &route.expect("in range").conversation;
                self.mark_read(&online.session, conversation).await?;
            }
        }
        Ok(online)
    }

    /// Sends one text with a client id of its own and records its SENT.
    async fn send(
        &self,
        session: &Session,
        route: &Route,
        text: String,
    ) -> Result<(), ClientError> {
        let client_msg_id = new_client_msg_id();
        let message = SendMessage {
            client_msg_id: client_msg_id.clone(),
            content_type: ContentType::Text as i32,
            text: text.clone(),
            ..route.target.message()
        };
        let Ok(receipt) = timeout(SENT_WITHIN, session.send(message)).await else {
            let what = format!("no SENT for {client_msg_id} within {SENT_WITHIN:?}");
            return Err(ClientError::Timeout(what));
        };
        lock(&self.ledger).sent.push(Sent {
            device: self.index,
            client_msg_id,
            text,
            conversation: route.conversation.clone(),
            recipients: route.recipients.clone(),
            receipt: receipt?,
        });
        Ok(())
    }

    /// Marks `conversation` read up to the last seq this device has there.
    async fn mark_read(&self, session: &Session, conversation: &str) -> Result<(), ClientError> {
        let (mark, seq) = {
            let mut ledger = lock(&self.ledger);
            let seq = ledger.devices[self.index].highest_seq(conversation);
            if seq == 0 {
                return Ok(());
            }
            (ledger.read(self.user, conversation, seq), seq)
        };
        match session.mark_read(conversation, seq).await {
            Ok(()) => {
                lock(&self.ledger).reads[mark].confirmed = true;
                Ok(())
            }
            // The link dropped (or a server stopped) before the ack: the
            // mark may or may not have been applied.
            Err(ClientError::Closed(_) | ClientError::Timeout(_)) => Ok(()),
            Err(ClientError::Api { code, .. }) if code == "SHUTTING_DOWN" || code == "INTERNAL" => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// Writes what one session hands its application into the ledger.
async fn record(
    ledger: Arc<Mutex<Ledger>>,
    device: usize,
    mut events: mpsc::Receiver<SessionEvent>,
) {
    lock(&ledger).link_up(device);
    while let Some(event) = events.recv().await {
        let mut ledger = lock(&ledger);
        match event {
            SessionEvent::Link(Event::Message(m)) => ledger.message(device, m),
            SessionEvent::Link(Event::Receipt(r)) => ledger.receipt(device, r),
            SessionEvent::Link(Event::SyncDone { .. }) => ledger.sync_done(device),
            SessionEvent::Reconnected => ledger.link_up(device),
            SessionEvent::Link(Event::Closed { .. }) => return,
            _ => {}
        }
    }
}
