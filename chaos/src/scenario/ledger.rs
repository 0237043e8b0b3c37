//! What a chaos run recorded: every send with its SENT receipt, every
//! message and receipt each device's application was handed (link by link),
//! and every read mark. The traffic driver writes it while the run goes on;
//! the checker only reads it.

use im_client::{ChatMessage, Receipt};

/// One send that got its SENT receipt.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    /// The sending device (an index into `Ledger::devices`).
    pub(crate) device: usize,
    /// The client-made id it was sent with (a resend keeps it).
    pub(crate) client_msg_id: String,
    /// Its text, unique in a run: with `from_user`, the message's identity,
    /// which nothing the server does can change.
    pub(crate) text: String,
    /// The conversation its target is in.
    pub(crate) conversation: String,
    /// The users it was addressed to (indexes into `Ledger::users`), never
    /// the sender.
    pub(crate) recipients: Vec<usize>,
    /// The SENT receipt `send` returned.
    pub(crate) receipt: Receipt,
}

/// A chat message handed to a device's application.
#[derive(Debug, Clone)]
pub(crate) struct Got {
    /// Which of the device's links it came on (each session's first link
    /// and each reconnect count one).
    pub(crate) link: u32,
    /// True when that link's `SyncDone` came first (the catch-up was over).
    pub(crate) after_sync: bool,
    /// The message as handed over.
    pub(crate) message: ChatMessage,
}

/// Everything one device was handed, over all its sessions.
#[derive(Debug, Clone)]
pub(crate) struct DeviceLog {
    /// Its user (an index into `Ledger::users`).
    pub(crate) user: usize,
    /// Its device id, the same across its sessions ("phone", "laptop").
    pub(crate) name: String,
    /// Messages, in the order they were handed over.
    pub(crate) got: Vec<Got>,
    /// Receipts (SENT, DELIVERED, READ), in the order they were handed over.
    pub(crate) receipts: Vec<Receipt>,
    /// Links opened so far.
    links: u32,
    /// True once the current link's `SyncDone` came.
    synced: bool,
}

impl DeviceLog {
    /// The highest seq the device got in `conversation` (0 for none).
    pub(crate) fn highest_seq(&self, conversation: &str) -> u64 {
        self.got
            .iter()
            .filter(|g| g.message.conversation_id == conversation)
            .map(|g| g.message.seq)
            .max()
            .unwrap_or(0)
    }
}

/// A user marked a conversation read up to a seq.
#[derive(Debug, Clone)]
pub(crate) struct ReadMark {
    /// Who (an index into `Ledger::users`).
    pub(crate) user: usize,
    /// Where.
    pub(crate) conversation: String,
    /// Up to and including this seq.
    pub(crate) seq: u64,
    /// True when the server acked it; a mark whose link dropped first may
    /// or may not have been applied.
    pub(crate) confirmed: bool,
}

/// A user of the run.
#[derive(Debug, Clone)]
pub(crate) struct User {
    /// The server's user id.
    pub(crate) id: u64,
    /// The account name.
    pub(crate) name: String,
}

/// The records of one run.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ledger {
    /// The users, in the order they were registered.
    pub(crate) users: Vec<User>,
    /// Every device of every user.
    pub(crate) devices: Vec<DeviceLog>,
    /// Every send, once its SENT came.
    pub(crate) sent: Vec<Sent>,
    /// Every read mark made.
    pub(crate) reads: Vec<ReadMark>,
    /// Times a device closed its session and came back with a new one.
    pub(crate) absences: usize,
}

impl Ledger {
    /// Adds a device of `user`; returns its index.
    pub(crate) fn add_device(&mut self, user: usize, name: &str) -> usize {
        self.devices.push(DeviceLog {
            user,
            name: name.to_owned(),
            got: Vec::new(),
            receipts: Vec::new(),
            links: 0,
            synced: false,
        });
        self.devices.len() - 1
    }

    /// A new link of `device` is up; its catch-up comes next.
    pub(crate) fn link_up(&mut self, device: usize) {
        let log = &mut self.devices[device];
        log.links += 1;
        log.synced = false;
    }

    /// The current link of `device` finished its catch-up.
    pub(crate) fn sync_done(&mut self, device: usize) {
        self.devices[device].synced = true;
    }

    /// `device` was handed `message`.
    pub(crate) fn message(&mut self, device: usize, message: ChatMessage) {
        let log = &mut self.devices[device];
        log.got.push(Got {
            link: log.links,
            after_sync: log.synced,
            message,
        });
    }

    /// `device` was handed `receipt`.
    pub(crate) fn receipt(&mut self, device: usize, receipt: Receipt) {
        self.devices[device].receipts.push(receipt);
    }

    /// Records a read mark about to be made; returns its index.
    pub(crate) fn read(&mut self, user: usize, conversation: &str, seq: u64) -> usize {
        self.reads.push(ReadMark {
            user,
            conversation: conversation.to_owned(),
            seq,
            confirmed: false,
        });
        self.reads.len() - 1
    }
}
