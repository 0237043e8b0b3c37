//! The checker: reads a run's ledger and counts, per device, what the
//! guarantees forbid. It does no I/O and decides by what the server promises
//! (docs/PROTOCOL.md, docs/DESIGN.md and the store's receipt rules):
//!
//! - A message is known by its identity, (from_user, text), the text being
//!   unique in a run: a message stored twice (a resend not recognised) is
//!   two msg_ids, and may be two client ids too, with one identity, and a
//!   device handed both has a duplicate. A device keeps its
//!   `SeenSeqs` across sessions (as an app keeps them on disk), so what a
//!   catch-up brings again at a seq it has is never handed over: anything
//!   handed over twice is a duplicate.
//! - A message is owed to every device of every recipient and to the
//!   sender's other devices. The sending device is not sent its own message
//!   live, but a catch-up may bring it (its cursor had not passed it yet):
//!   that is an echo, neither owed nor a duplicate the first time.
//! - Per device and conversation seqs strictly increase, across all its
//!   sessions; on each link the catch-up (messages flagged `offline`, before
//!   `SyncDone`) comes before anything live.
//! - DELIVERED by user U exists once a device of U acked the message (a
//!   client acks what it hands over); READ by U once U marked the
//!   conversation read up to or past its seq (covering messages U may never
//!   have got). Each is stored once per message and recipient and goes to
//!   the sender's *user*: every device of the sender online when it is made
//!   gets it live, and otherwise it waits in the user's offline queue, which
//!   the first device to log in pulls. So a sender device that was away may
//!   never see it; what is owed is that at least one device of the sender
//!   gets it.

use std::collections::{HashMap, HashSet};

use im_client::{Receipt, ReceiptKind};

use super::ledger::{Ledger, Sent};

/// A message's identity: (from_user, text).
type Identity<'a> = (u64, &'a str);

/// A receipt as a device holds it: (msg_id, kind, by_user).
type ReceiptKey = (u64, i32, u64);

/// Missing receipts listed per device (all are counted).
const MISSING_LISTED: usize = 10;

/// What went wrong on one device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceReport {
    /// `user/device`.
    pub device: String,
    /// Messages owed to it that it never got.
    pub loss: usize,
    /// Messages it got again (by identity).
    pub duplicates: usize,
    /// Messages it got behind a later seq of their conversation, or flagged
    /// offline after something live on their link (or live before
    /// `SyncDone`).
    pub order: usize,
    /// Messages it got that were not addressed to it.
    pub strays: usize,
    /// DELIVERED and READ receipts owed for what it sent that reached no
    /// device of its user.
    pub receipts_missing: usize,
    /// The first of those (msg_id, kind, by user), to look up in the
    /// store of a kept run.
    pub missing_receipts: Vec<ReceiptKey>,
    /// Receipts it got that do not match what happened.
    pub receipts_wrong: usize,
}

impl DeviceReport {
    fn faults(&self) -> usize {
        self.loss
            + self.duplicates
            + self.order
            + self.strays
            + self.receipts_missing
            + self.receipts_wrong
    }
}

/// What a run saw: its size, then what went wrong (all zero when clean).
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Users.
    pub users: usize,
    /// Devices (over all users).
    pub devices: usize,
    /// Groups.
    pub groups: usize,
    /// Messages that got their SENT.
    pub sent: usize,
    /// Times a device closed its session and came back with a new one.
    pub absences: usize,
    /// Deliveries owed (one per message and device owed it).
    pub expected: usize,
    /// Messages handed to devices they were addressed to, each once.
    pub delivered: usize,
    /// Of those, how many came in a catch-up (flagged offline).
    pub offline: usize,
    /// Own messages a sending device got back in a catch-up.
    pub echoes: usize,
    /// Read marks the server acked.
    pub reads: usize,
    /// DELIVERED and READ receipts handed to senders' devices.
    pub receipts: usize,
    /// Owed receipts that reached some but not all devices of the sender
    /// (a device away when a receipt is made may never get it: a figure,
    /// not a fault).
    pub receipts_partial: usize,
    /// Owed deliveries that never came.
    pub loss: usize,
    /// Messages a device got more than once.
    pub duplicates: usize,
    /// Messages out of per-conversation order, or live before catch-up.
    pub order: usize,
    /// Messages given to a device they were not addressed to.
    pub strays: usize,
    /// Two messages given the same (conversation, seq).
    pub seq_clashes: usize,
    /// Owed DELIVERED or READ receipts that reached no device of the sender.
    pub receipts_missing: usize,
    /// Receipts naming a message, recipient, delivery or read that is not so.
    pub receipts_wrong: usize,
    /// The devices with anything wrong.
    pub faulty: Vec<DeviceReport>,
}

impl Report {
    /// True when nothing was lost, doubled, misordered, misrouted, or
    /// receipted wrong or not at all.
    pub fn clean(&self) -> bool {
        self.loss == 0
            && self.duplicates == 0
            && self.order == 0
            && self.strays == 0
            && self.seq_clashes == 0
            && self.receipts_missing == 0
            && self.receipts_wrong == 0
    }

    /// True when everything owed has arrived (more may still come).
    pub(crate) fn owes_nothing(&self) -> bool {
        self.loss == 0 && self.receipts_missing == 0
    }
}

/// Where to find things in a ledger.
struct Index<'a> {
    ledger: &'a Ledger,
    by_identity: HashMap<Identity<'a>, &'a Sent>,
    /// By the msg_id of their SENT.
    by_msg_id: HashMap<u64, &'a Sent>,
    /// User index by server user id.
    user_of: HashMap<u64, usize>,
    /// Each user's devices.
    devices_of: Vec<Vec<usize>>,
}

impl<'a> Index<'a> {
    fn new(ledger: &'a Ledger) -> Self {
        let mut index = Index {
            ledger,
            by_identity: HashMap::new(),
            by_msg_id: HashMap::new(),
            user_of: ledger
                .users
                .iter()
                .enumerate()
                .map(|(i, u)| (u.id, i))
                .collect(),
            devices_of: vec![Vec::new(); ledger.users.len()],
        };
        for (d, log) in ledger.devices.iter().enumerate() {
            index.devices_of[log.user].push(d);
        }
        for sent in &ledger.sent {
            index.by_identity.insert(index.identity(sent), sent);
            index.by_msg_id.insert(sent.receipt.msg_id, sent);
        }
        index
    }

    /// The sending user.
    fn sender(&self, sent: &Sent) -> usize {
        self.ledger.devices[sent.device].user
    }

    fn identity(&self, sent: &'a Sent) -> Identity<'a> {
        let from = self.ledger.users[self.sender(sent)].id;
        (from, sent.text.as_str())
    }

    /// True when the server user `by_user` is one of `sent`'s recipients.
    fn is_recipient(&self, sent: &Sent, by_user: u64) -> bool {
        self.user_of
            .get(&by_user)
            .is_some_and(|u| sent.recipients.contains(u))
    }
}

/// Checks a ledger.
pub(crate) fn check(ledger: &Ledger) -> Report {
    let index = Index::new(ledger);
    let mut report = Report {
        users: ledger.users.len(),
        devices: ledger.devices.len(),
        sent: ledger.sent.len(),
        absences: ledger.absences,
        reads: ledger.reads.iter().filter(|r| r.confirmed).count(),
        ..Report::default()
    };
    let mut devices: Vec<DeviceReport> = ledger
        .devices
        .iter()
        .map(|log| DeviceReport {
            device: format!("{}/{}", ledger.users[log.user].name, log.name),
            ..DeviceReport::default()
        })
        .collect();
    let received: Vec<HashSet<Identity>> = (0..ledger.devices.len())
        .map(|d| scan_messages(&index, d, &mut devices[d], &mut report))
        .collect();
    count_loss(&index, &received, &mut devices, &mut report);
    let handed = scan_receipts(&index, &received, &mut devices, &mut report);
    count_missing_receipts(&index, &received, &handed, &mut devices, &mut report);
    let slots: HashSet<(&str, u64)> = ledger
        .sent
        .iter()
        .map(|s| (s.receipt.conversation_id.as_str(), s.receipt.seq))
        .collect();
    report.seq_clashes = ledger.sent.len() - slots.len();
    for device in &devices {
        report.loss += device.loss;
        report.duplicates += device.duplicates;
        report.order += device.order;
        report.strays += device.strays;
        report.receipts_missing += device.receipts_missing;
        report.receipts_wrong += device.receipts_wrong;
    }
    report.faulty = devices.into_iter().filter(|d| d.faults() > 0).collect();
    report
}

/// Goes through what device `d` was handed, in order; returns the
/// identities it got.
fn scan_messages<'a>(
    index: &Index<'a>,
    d: usize,
    faults: &mut DeviceReport,
    report: &mut Report,
) -> HashSet<Identity<'a>> {
    let log = &index.ledger.devices[d];
    let me = index.ledger.users[log.user].id;
    let mut have = HashSet::new();
    let mut last: HashMap<&str, u64> = HashMap::new();
    // The link on which something live came last.
    let mut live_on = None;
    for got in &log.got {
        let m = &got.message;
        if !have.insert((m.from_user, m.text.as_str())) {
            faults.duplicates += 1;
            continue;
        }
        let sent = index.by_identity.get(&(m.from_user, m.text.as_str()));
        let sent = sent.filter(|s| s.conversation == m.conversation_id);
        match sent {
            Some(s) if s.device == d => report.echoes += 1,
            Some(s) if m.from_user == me || s.recipients.contains(&log.user) => {
                report.delivered += 1;
                report.offline += usize::from(m.offline);
            }
            _ => faults.strays += 1,
        }
        let last = last.entry(m.conversation_id.as_str()).or_insert(0);
        let behind = m.seq <= *last;
        *last = (*last).max(m.seq);
        let live_first = if m.offline {
            got.after_sync || live_on == Some(got.link)
        } else {
            live_on = Some(got.link);
            !got.after_sync
        };
        if behind || live_first {
            faults.order += 1;
        }
    }
    have
}

/// Every device of every recipient, and the sender's other devices, must
/// have every message.
fn count_loss(
    index: &Index,
    received: &[HashSet<Identity>],
    devices: &mut [DeviceReport],
    report: &mut Report,
) {
    for sent in &index.ledger.sent {
        let identity = index.identity(sent);
        let users = sent.recipients.iter().copied().chain([index.sender(sent)]);
        let owed = users.flat_map(|u| &index.devices_of[u]);
        for &d in owed.filter(|d| **d != sent.device) {
            report.expected += 1;
            if !received[d].contains(&identity) {
                devices[d].loss += 1;
            }
        }
    }
}

/// Checks every receipt a device was handed (and the SENT each send
/// returned); returns, per device, the DELIVERED and READ receipts it got.
fn scan_receipts(
    index: &Index,
    received: &[HashSet<Identity>],
    devices: &mut [DeviceReport],
    report: &mut Report,
) -> Vec<HashSet<ReceiptKey>> {
    let ledger = index.ledger;
    for sent in &ledger.sent {
        let r = &sent.receipt;
        let answers = r.kind() == ReceiptKind::Sent
            && r.client_msg_id == sent.client_msg_id
            && r.conversation_id == sent.conversation;
        if !answers {
            devices[sent.device].receipts_wrong += 1;
        }
    }
    let mut handed = vec![HashSet::new(); ledger.devices.len()];
    for (d, log) in ledger.devices.iter().enumerate() {
        for r in &log.receipts {
            if !receipt_fits(index, received, d, r) {
                devices[d].receipts_wrong += 1;
            }
            if matches!(r.kind(), ReceiptKind::Delivered | ReceiptKind::Read) {
                report.receipts += 1;
                handed[d].insert((r.msg_id, r.kind, r.by_user));
            }
        }
    }
    handed
}

/// True when receipt `r`, handed to device `d`, tells what happened.
fn receipt_fits(index: &Index, received: &[HashSet<Identity>], d: usize, r: &Receipt) -> bool {
    let Some(sent) = index.by_msg_id.get(&r.msg_id) else {
        return false;
    };
    let names_it = r.conversation_id == sent.receipt.conversation_id
        && r.seq == sent.receipt.seq
        && r.client_msg_id == sent.client_msg_id;
    let to_sender = index.sender(sent) == index.ledger.devices[d].user;
    let from_recipient = index.is_recipient(sent, r.by_user);
    match ReceiptKind::try_from(r.kind) {
        Ok(ReceiptKind::Sent) => names_it && sent.device == d,
        Ok(ReceiptKind::Delivered) => {
            let identity = index.identity(sent);
            let by = index.user_of.get(&r.by_user).copied();
            let got_it = by.is_some_and(|by| {
                index.devices_of[by]
                    .iter()
                    .any(|dev| received[*dev].contains(&identity))
            });
            names_it && to_sender && from_recipient && got_it
        }
        Ok(ReceiptKind::Read) => {
            let by = index.user_of.get(&r.by_user).copied();
            // Any mark counts here: one whose ack was lost may have been applied.
            let marked = index.ledger.reads.iter().any(|mark| {
                Some(mark.user) == by && mark.conversation == sent.conversation && mark.seq >= r.seq
            });
            names_it && to_sender && from_recipient && marked
        }
        _ => false,
    }
}

/// Every recipient some device of which got a message owes its sender a
/// DELIVERED; every recipient whose acked read mark covers it, a READ. Owed
/// means at least one device of the sender got it; those that reached only
/// some of the sender's devices are counted apart, as a figure.
fn count_missing_receipts(
    index: &Index,
    received: &[HashSet<Identity>],
    handed: &[HashSet<ReceiptKey>],
    devices: &mut [DeviceReport],
    report: &mut Report,
) {
    let mut read_up_to: HashMap<(usize, &str), u64> = HashMap::new();
    for mark in index.ledger.reads.iter().filter(|m| m.confirmed) {
        let seq = read_up_to
            .entry((mark.user, mark.conversation.as_str()))
            .or_insert(0);
        *seq = (*seq).max(mark.seq);
    }
    for sent in &index.ledger.sent {
        let identity = index.identity(sent);
        let sender_devices = &index.devices_of[index.sender(sent)];
        let mut owe = |kind: ReceiptKind, by: u64| {
            let key = (sent.receipt.msg_id, kind as i32, by);
            let reached = sender_devices.iter().filter(|d| handed[**d].contains(&key));
            match reached.count() {
                0 => {
                    let device = &mut devices[sent.device];
                    device.receipts_missing += 1;
                    if device.missing_receipts.len() < MISSING_LISTED {
                        device.missing_receipts.push(key);
                    }
                }
                n if n < sender_devices.len() => report.receipts_partial += 1,
                _ => {}
            }
        };
        for &r in &sent.recipients {
            let by = index.ledger.users[r].id;
            let got_it = index.devices_of[r]
                .iter()
                .any(|d| received[*d].contains(&identity));
            if got_it {
                owe(ReceiptKind::Delivered, by);
            }
            let read = read_up_to
                .get(&(r, sent.conversation.as_str()))
                .is_some_and(|seq| *seq >= sent.receipt.seq);
            if read {
                owe(ReceiptKind::Read, by);
            }
        }
    }
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
