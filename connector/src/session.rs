//! What a link means for one device: catch-up after login, pushes turned into
//! frames in per-conversation order, and acks turned into deliveries. Knows
//! nothing of sockets: the link task feeds it and writes what it queues.

use std::collections::{BTreeMap, VecDeque};

use im_proto::v1::{Receipt, ReceiptKind as WireKind, SyncDone};
use im_proto::{Body, ErrorCode};
use im_store::{
    DeliveredMessage, DeviceCursor, OfflineItem, OfflineKey, ReceiptRecord, Store, StoreResult,
    StoredMessage, UserId,
};
use im_transfer::wire::{self, chat_message};
use im_transfer::Push;

/// What a frame sent to the device carried, so its ack can be acted on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Delivery {
    /// A chat message: its ack moves the cursor and yields DELIVERED.
    Message(DeliveredMessage),
    /// A receipt (pushed live, or from the offline queue): its ack claims
    /// the offline row by key.
    LiveReceipt(OfflineKey),
    /// Anything else.
    Nothing,
}

/// What the acks of a batch of frames mean.
#[derive(Debug, Default)]
pub(crate) struct Acked {
    pub(crate) messages: Vec<DeliveredMessage>,
    pub(crate) receipts: Vec<OfflineKey>,
}

/// Most offline rows a resync looks through for receipts.
const RESYNC_ROWS: u32 = 2_000;

/// The state of one logged-in device.
pub(crate) struct Session {
    pub(crate) user: UserId,
    pub(crate) device: String,
    pub(crate) token_hash: String,
    /// Per conversation, how far the device was sent and has acked.
    marks: Marks,
    /// Frames waiting for room in the ACK window, in order.
    pub(crate) queue: VecDeque<(Body, Delivery)>,
    /// This device's own messages: nothing to push, but its cursor moves past
    /// them once everything before them is acked.
    own: Vec<DeliveredMessage>,
}

impl Session {
    pub(crate) fn new(user: UserId, device: String, token_hash: String) -> Self {
        Session {
            user,
            device,
            token_hash,
            marks: Marks::default(),
            queue: VecDeque::new(),
            own: Vec::new(),
        }
    }

    /// Queues the catch-up: the offline rows this pull claimed and every
    /// message after this device's cursors, deduplicated and in
    /// (conversation, seq) order; then the receipts waiting for the user, then
    /// `SyncDone`. Returns (offline, synced) counts.
    pub(crate) async fn catch_up(
        &mut self,
        store: &dyn Store,
        max: usize,
    ) -> StoreResult<(u32, u32)> {
        // Claim first: each offline row goes to exactly one pull.
        let rows = im_offline_worker::pull(store, self.user, max).await?;
        let cursors = store.device_cursors(self.user, &self.device).await?;
        let mut messages: BTreeMap<(String, u64), StoredMessage> = BTreeMap::new();
        self.marks.restart_at(&cursors);
        for c in &cursors {
            let mut after = c.cursor;
            while after < c.last_seq && messages.len() < max {
                let page = store.messages_after(&c.conversation_id, after, 500).await?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                for m in page {
                    messages.insert((m.conversation_id.clone(), m.seq), m);
                }
            }
        }
        let mut offline = 0;
        let mut receipts = Vec::new();
        for row in rows {
            match row.item {
                // Pushed whatever the cursor says: a new device's cursors of
                // direct conversations start at "now", and the offline rows
                // are what no device has yet.
                OfflineItem::Message(m) => {
                    offline += 1;
                    messages.insert((m.conversation_id.clone(), m.seq), m);
                }
                OfflineItem::Receipt(r) => receipts.push((r, row.id)),
            }
        }
        let synced = messages.len() as u32;
        for m in messages.into_values() {
            self.push_message(&m, true);
        }
        // The pull claimed the receipt rows; they are released again and
        // claimed when the device acks them, as live ones are, so a
        // connector that dies before the ack loses none of them.
        let rows: Vec<u64> = receipts.iter().map(|(_, row)| *row).collect();
        if !rows.is_empty() {
            store.release_offline(&rows).await?;
        }
        for (r, _) in receipts {
            self.queue_receipt(&r);
        }
        let done = SyncDone {
            offline_count: offline,
            synced_count: synced,
        };
        self.queue
            .push_back((Body::SyncDone(done), Delivery::Nothing));
        Ok((offline, synced))
    }

    /// Turns a push from the transfer into queued frames. A message ahead of
    /// this device's cursor first pulls the missing ones from the store, so
    /// the device sees every conversation in seq order. Returns a code if the
    /// session must close.
    pub(crate) async fn on_push(
        &mut self,
        store: &dyn Store,
        push: Push,
    ) -> StoreResult<Option<ErrorCode>> {
        match push {
            Push::Message {
                message,
                origin_device,
            } => {
                let conv = message.conversation_id.as_str();
                let cursor = match self.marks.sent(conv) {
                    Some(c) => c,
                    None => self.load_cursor(store, conv, message.seq).await?,
                };
                if message.seq <= cursor {
                    return Ok(None);
                }
                if message.seq > cursor + 1 {
                    let missing = (message.seq - cursor - 1).min(u32::MAX as u64) as u32;
                    for m in store.messages_after(conv, cursor, missing).await? {
                        if m.seq < message.seq {
                            self.queue_message(&m, false);
                        }
                    }
                }
                if message.from_user == self.user && *origin_device == *self.device {
                    self.note_own(&message);
                } else {
                    self.queue_message(&message, false);
                }
            }
            Push::Receipt(r) => self.queue_receipt(&r),
            Push::Event(event) => self.queue.push_back(((*event).clone(), Delivery::Nothing)),
            Push::Revoke { token_hash } => {
                if *token_hash == *self.token_hash {
                    return Ok(Some(ErrorCode::TokenRevoked));
                }
            }
            Push::Resync => self.resync(store).await?,
        }
        Ok(None)
    }

    /// Queues every stored message newer than what this device has or was
    /// sent, per conversation, in seq order, then the receipts still waiting
    /// for the user (live pushes may have been lost).
    async fn resync(&mut self, store: &dyn Store) -> StoreResult<()> {
        for c in store.device_cursors(self.user, &self.device).await? {
            let have = self
                .marks
                .sent(&c.conversation_id)
                .unwrap_or(0)
                .max(c.cursor);
            if c.last_seq > have {
                let missing = (c.last_seq - have).min(u64::from(u32::MAX)) as u32;
                for m in store
                    .messages_after(&c.conversation_id, have, missing)
                    .await?
                {
                    self.queue_message(&m, false);
                }
            }
        }
        // Receipts still waiting for the user: their live push may have
        // been lost as well. Sent as a live one is: the row is claimed only
        // when a device acks it, so a connector that dies first loses
        // nothing (a claim at sending would be lost with it).
        for row in store.offline_unread(self.user, RESYNC_ROWS).await? {
            if let OfflineItem::Receipt(r) = row.item {
                self.queue_receipt(&r);
            }
        }
        Ok(())
    }

    /// A conversation this session has no cursor for (it started after
    /// login): its start from the store, or just before `seq` if the user is
    /// not a member of it.
    async fn load_cursor(&mut self, store: &dyn Store, conv: &str, seq: u64) -> StoreResult<u64> {
        let cursors = store.device_cursors(self.user, &self.device).await?;
        let cursor = cursors
            .iter()
            .find(|c| c.conversation_id == conv)
            .map(|c| c.cursor)
            .unwrap_or(seq.saturating_sub(1));
        self.marks.entry(conv, cursor).sent = cursor;
        Ok(cursor)
    }

    /// Queues a receipt for the device; its offline row is claimed, by key,
    /// when the device acks it.
    fn queue_receipt(&mut self, r: &ReceiptRecord) {
        let key = OfflineKey::Receipt {
            msg_id: r.msg_id,
            kind: r.kind,
            by_user: r.by_user,
        };
        self.queue
            .push_back((receipt_body(r), Delivery::LiveReceipt(key)));
    }

    /// This device's own message: the device has it already, so it is not
    /// pushed, only remembered for the cursor.
    fn note_own(&mut self, m: &StoredMessage) {
        self.marks.entry(&m.conversation_id, 0).sent = m.seq;
        self.own.push(DeliveredMessage::from(m));
    }

    /// At close: own messages still waiting in the push queue (the link may
    /// close right after their SENT) are noted when they are next in line.
    pub(crate) fn note_queued_own(&mut self, push: &Push) {
        if let Push::Message {
            message,
            origin_device,
        } = push
        {
            let next = self.marks.sent(&message.conversation_id).map(|s| s + 1);
            let mine = message.from_user == self.user && **origin_device == *self.device;
            if mine && next == Some(message.seq) {
                self.note_own(message);
            }
        }
    }

    /// Queues a message unless this device already has it (by seq).
    fn queue_message(&mut self, m: &StoredMessage, offline: bool) {
        if m.seq > self.marks.sent(&m.conversation_id).unwrap_or(0) {
            self.push_message(m, offline);
        }
    }

    /// Queues a message and raises the conversation's "sent up to" mark.
    fn push_message(&mut self, m: &StoredMessage, offline: bool) {
        let mark = self.marks.entry(&m.conversation_id, 0);
        mark.sent = mark.sent.max(m.seq);
        self.queue.push_back((
            Body::Message(chat_message(m, offline)),
            Delivery::Message(DeliveredMessage::from(m)),
        ));
    }

    /// Sorts what the device acked into deliveries and receipt claims. Own
    /// messages join the deliveries only once every earlier message of their
    /// conversation is acked: the stored cursor must never pass a message
    /// the device does not have.
    pub(crate) fn acked(&mut self, deliveries: Vec<Delivery>) -> Acked {
        let mut acked = Acked::default();
        for d in deliveries {
            match d {
                Delivery::Message(m) => {
                    let mark = self.marks.entry(&m.conversation_id, 0);
                    mark.acked = mark.acked.max(m.seq);
                    acked.messages.push(m);
                }
                Delivery::LiveReceipt(key) => acked.receipts.push(key),
                Delivery::Nothing => {}
            }
        }
        self.own.sort_by_key(|m| m.seq);
        let mut waiting = Vec::new();
        for m in std::mem::take(&mut self.own) {
            let mark = self.marks.entry(&m.conversation_id, 0);
            if m.seq <= mark.acked + 1 {
                mark.acked = mark.acked.max(m.seq);
                acked.messages.push(m);
            } else {
                waiting.push(m);
            }
        }
        self.own = waiting;
        acked
    }
}

/// Per conversation, the highest seq queued to the device (or known to be
/// on it: anything at or below is not pushed again) and the highest it has
/// acked in order.
///
/// One sorted `Vec` rather than two `HashMap<String, u64>`: every link holds
/// this for its user's conversations whether or not they see traffic. Two
/// maps cost a link 96 bytes empty and, with one conversation, two 148-byte
/// tables and two copies of the id (heaptrack, 6,000 links of users with
/// one conversation each: 1.78 MB in the maps' tables alone). This is 24
/// bytes empty and 32 plus one copy of the id per conversation. A link
/// looks a conversation up once per frame it queues or is acked for, a
/// binary search over a few dozen entries at most.
#[derive(Debug, Default)]
struct Marks(Vec<Mark>);

#[derive(Debug)]
struct Mark {
    conversation: Box<str>,
    sent: u64,
    acked: u64,
}

impl Marks {
    /// Both marks of each conversation set to its stored cursor.
    fn restart_at(&mut self, cursors: &[DeviceCursor]) {
        if !self.0.is_empty() {
            for c in cursors {
                let mark = self.entry(&c.conversation_id, c.cursor);
                (mark.sent, mark.acked) = (c.cursor, c.cursor);
            }
            return;
        }
        // At login: built at its exact size, not grown one insert at a time.
        let mut marks: Vec<Mark> = cursors
            .iter()
            .map(|c| Mark {
                conversation: c.conversation_id.as_str().into(),
                sent: c.cursor,
                acked: c.cursor,
            })
            .collect();
        marks.sort_unstable_by(|a, b| a.conversation.cmp(&b.conversation));
        marks.dedup_by(|a, b| a.conversation == b.conversation);
        self.0 = marks;
    }

    fn find(&self, conversation: &str) -> Result<usize, usize> {
        self.0
            .binary_search_by(|m| (*m.conversation).cmp(conversation))
    }

    /// How far the conversation was sent, if this session knows it.
    fn sent(&self, conversation: &str) -> Option<u64> {
        self.find(conversation).ok().map(|i| self.0[i].sent)
    }

    /// The conversation's marks, both at `start` if it had none.
    fn entry(&mut self, conversation: &str, start: u64) -> &mut Mark {
        let i = self.find(conversation).unwrap_or_else(|i| {
            let mark = Mark {
                conversation: conversation.into(),
                sent: start,
                acked: start,
            };
            self.0.insert(i, mark);
            i
        });
        &mut self.0[i]
    }
}

fn receipt_body(r: &ReceiptRecord) -> Body {
    Body::Receipt(wire::receipt(r))
}

/// The SENT receipt answering the send with `client_msg_id` (the id the
/// client matches it by; the stored message has the same one).
pub(crate) fn sent_receipt(m: &StoredMessage, client_msg_id: String) -> Body {
    Body::Receipt(Receipt {
        kind: WireKind::Sent as i32,
        msg_id: m.msg_id,
        conversation_id: m.conversation_id.clone(),
        seq: m.seq,
        client_msg_id,
        by_user: 0,
        at_ms: m.sent_at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use im_proto::v1::ContentType;

    fn stored(conv: &str, seq: u64, from: UserId) -> StoredMessage {
        StoredMessage {
            msg_id: seq * 10,
            conversation_id: conv.into(),
            seq,
            from_user: from,
            to_user: 0,
            to_group: 0,
            client_msg_id: format!("c{seq}"),
            content_type: ContentType::Text as i32,
            text: String::new(),
            file: None,
            sent_at_ms: 0,
        }
    }

    fn seqs(acked: &Acked) -> Vec<u64> {
        acked.messages.iter().map(|m| m.seq).collect()
    }

    #[test]
    fn an_own_message_waits_until_everything_before_it_is_acked() {
        let mut s = Session::new(1, "phone".into(), String::new());
        s.queue_message(&stored("g1", 1, 2), false);
        s.note_own(&stored("g1", 2, 1));
        // Seq 1 (from someone else) is in flight: seq 2 must not move the cursor.
        assert!(seqs(&s.acked(Vec::new())).is_empty());
        let (_, delivery) = s.queue.pop_front().unwrap();
        assert_eq!(seqs(&s.acked(vec![delivery])), vec![1, 2]);
        assert!(s.acked(Vec::new()).messages.is_empty(), "reported once");
    }

    #[test]
    fn own_messages_still_queued_at_close_are_noted_in_order_only() {
        let mut s = Session::new(1, "phone".into(), String::new());
        s.marks.entry("g1", 3);
        let push = |seq, device: &str| Push::Message {
            message: std::sync::Arc::new(stored("g1", seq, 1)),
            origin_device: device.into(),
        };
        s.note_queued_own(&push(5, "phone")); // a gap: not next in line
        s.note_queued_own(&push(4, "laptop")); // another device's
        assert!(s.acked(Vec::new()).messages.is_empty());
        s.note_queued_own(&push(4, "phone"));
        assert_eq!(seqs(&s.acked(Vec::new())), vec![4]);
    }

    #[test]
    fn marks_find_every_conversation_however_they_arrived() {
        let cursor = |conv: &str, at| DeviceCursor {
            conversation_id: conv.into(),
            cursor: at,
            last_seq: at,
        };
        let mut marks = Marks::default();
        marks.restart_at(&[cursor("d:2", 5), cursor("a", 1), cursor("g:9", 7)]);
        marks.entry("c", 0).sent = 3;
        marks.entry("z", 2);
        marks.restart_at(&[cursor("a", 4)]);
        let found: Vec<(&str, Option<u64>)> = ["a", "c", "d:2", "g:9", "z", "b"]
            .into_iter()
            .map(|conv| (conv, marks.sent(conv)))
            .collect();
        assert_eq!(
            found,
            vec![
                ("a", Some(4)),
                ("c", Some(3)),
                ("d:2", Some(5)),
                ("g:9", Some(7)),
                ("z", Some(2)),
                ("b", None)
            ]
        );
        assert_eq!(marks.entry("d:2", 0).acked, 5, "an existing mark is kept");
    }

    #[tokio::test]
    async fn a_resync_sends_what_was_stored_but_never_pushed_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = im_store::SqliteStore::open(&dir.path().join("im.db"))
            .await
            .unwrap();
        let a = store.create_user("a", "x").await.unwrap();
        let b = store.create_user("b", "x").await.unwrap();
        let request = store.create_friend_request(a.id, b.id, "hi").await.unwrap();
        store
            .resolve_friend_request(request.id, true)
            .await
            .unwrap();
        store.register_device(b.id, "phone").await.unwrap();
        let mut session = Session::new(b.id, "phone".into(), "t".into());
        session.catch_up(&store, 100).await.unwrap();
        session.queue.clear();
        let batch: Vec<_> = (1..=3)
            .map(|i| im_store::NewMessage {
                from_user: a.id,
                client_msg_id: format!("c{i}"),
                target: im_store::Target::User(b.id),
                content_type: ContentType::Text as i32,
                text: format!("m{i}"),
                file: None,
                recipients: vec![b.id],
            })
            .collect();
        let stored = store.append_messages(&batch).await.unwrap();
        // Only the first reaches the session live; the rest were lost.
        let first = Push::Message {
            message: std::sync::Arc::new(stored[0].message.clone()),
            origin_device: "laptop".into(),
        };
        session.on_push(&store, first).await.unwrap();
        session.on_push(&store, Push::Resync).await.unwrap();
        session.on_push(&store, Push::Resync).await.unwrap();
        let queued: Vec<u64> = session
            .queue
            .iter()
            .filter_map(|(body, _)| match body {
                Body::Message(m) => Some(m.seq),
                _ => None,
            })
            .collect();
        assert_eq!(queued, vec![1, 2, 3]);
    }
}
