//! The single node's hot writes on `rusqlite`: appending messages, the
//! acks of devices (cursors, DELIVERED receipts, claimed offline rows) and
//! read marks (READ receipts).
//!
//! Why not sqlx here: sqlx-sqlite runs each statement on its worker thread
//! and hands it over through a channel, so every statement costs two thread
//! wakeups. A message takes about a dozen statements between its append and
//! its receipts; in the chat benchmark the server spent over half its time
//! waking threads (perf: futex and flume). Here a whole batch runs on one
//! blocking thread, each statement prepared once and cached, with one
//! handover per batch (`batch`).

use std::collections::BTreeMap;

use rusqlite::{params, CachedStatement, OptionalExtension, Row, Transaction};

use super::rows::{api_int, sql_int, MESSAGE_ROW};
use crate::types::{
    conversation_of, is_group_conversation, now_ms, Appended, DeliveredMessage, FileRef,
    NewMessage, OfflineKey, ReceiptKind, ReceiptRecord, StoredMessage, Target, UserId,
};
use crate::{StoreError, StoreResult};

/// The statements of the hot writes.
#[derive(Debug, Clone, Copy)]
enum Sql {
    Earlier,
    LastSeq,
    NewConversation,
    InsertMessage,
    Bump,
    QueueMessage,
    Cursor,
    TakeMessage,
    InsertReceipt,
    QueueReceipt,
    Member,
    SetRead,
    Covered,
    InsertDevice,
    StartCursors,
    Claim,
}

impl Sql {
    const COUNT: usize = Sql::Claim as usize + 1;

    fn text(self) -> &'static str {
        match self {
            Sql::Earlier => concat!(
                "SELECT ",
                crate::convert::message_columns!(),
                " FROM messages m WHERE m.from_user = ? AND m.client_msg_id = ?"
            ),
            Sql::LastSeq => "SELECT last_seq FROM conversations WHERE id = ?",
            Sql::NewConversation => {
                "INSERT INTO conversations (id, kind, updated_at_ms) VALUES (?, ?, ?)"
            }
            Sql::InsertMessage => {
                "INSERT INTO messages (conversation_id, seq, from_user, to_user, to_group, \
                 client_msg_id, content_type, text, file_id, file_name, file_mime, file_size, \
                 sent_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (from_user, client_msg_id) DO NOTHING"
            }
            Sql::Bump => {
                "UPDATE conversations SET last_seq = ?, last_msg_id = ?, updated_at_ms = ? \
                 WHERE id = ?"
            }
            Sql::QueueMessage => "INSERT OR IGNORE INTO offline (user_id, msg_id) VALUES (?, ?)",
            Sql::Cursor => {
                "INSERT INTO device_cursors (user_id, device_id, conversation_id, seq) \
                 VALUES (?, ?, ?, ?) \
                 ON CONFLICT (user_id, device_id, conversation_id) \
                 DO UPDATE SET seq = MAX(seq, excluded.seq)"
            }
            Sql::TakeMessage => {
                "UPDATE offline SET has_read = 1 \
                 WHERE user_id = ? AND msg_id = ? AND receipt_kind = 0 AND has_read = 0"
            }
            Sql::InsertReceipt => {
                "INSERT OR IGNORE INTO receipts (msg_id, by_user, kind, at_ms) VALUES (?, ?, ?, ?)"
            }
            Sql::QueueReceipt => {
                "INSERT OR IGNORE INTO offline (user_id, msg_id, receipt_kind, receipt_by) \
                 VALUES (?, ?, ?, ?)"
            }
            Sql::Member => {
                "SELECT m.start_seq, m.read_seq, c.last_seq \
                 FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id \
                 WHERE m.conversation_id = ? AND m.user_id = ?"
            }
            Sql::SetRead => {
                "UPDATE conversation_members SET read_seq = ? \
                 WHERE conversation_id = ? AND user_id = ?"
            }
            Sql::Covered => {
                "SELECT msg_id, conversation_id, seq, from_user, client_msg_id FROM messages \
                 WHERE conversation_id = ? AND seq > ? AND seq <= ? AND from_user <> ? \
                 ORDER BY seq"
            }
            Sql::InsertDevice => {
                "INSERT OR IGNORE INTO devices (user_id, device_id, created_at_ms) VALUES (?, ?, ?)"
            }
            Sql::StartCursors => {
                "INSERT OR IGNORE INTO device_cursors (user_id, device_id, conversation_id, seq) \
                 SELECT m.user_id, ?1, m.conversation_id, c.last_seq \
                 FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id \
                 WHERE m.user_id = ?2 AND c.kind = 'direct' \
                 UNION ALL \
                 SELECT d.user_id, ?1, d.conversation_id, MAX(d.seq) \
                 FROM device_cursors d JOIN conversations c ON c.id = d.conversation_id \
                 WHERE d.user_id = ?2 AND c.kind = 'group' \
                 GROUP BY d.conversation_id"
            }
            Sql::Claim => {
                "UPDATE offline SET has_read = 1 WHERE user_id = ? AND msg_id = ? \
                 AND receipt_kind = ? AND receipt_by = ? AND has_read = 0"
            }
        }
    }
}

/// The hot statements of one transaction. Each is prepared once per
/// connection (rusqlite's cache) and taken from that cache at its first
/// use in the transaction, then held until the commit: a cache look-up
/// hashes the statement's text and moves it out of and back into an LRU
/// list, which was 6% of the writer's time when done for every run of a
/// statement (perf, `examples/hot_writes`).
pub(super) struct Statements<'t> {
    tx: &'t Transaction<'t>,
    held: [Option<CachedStatement<'t>>; Sql::COUNT],
}

impl<'t> Statements<'t> {
    pub(super) fn new(tx: &'t Transaction<'t>) -> Statements<'t> {
        Statements {
            tx,
            held: std::array::from_fn(|_| None),
        }
    }

    fn get(&mut self, sql: Sql) -> StoreResult<&mut CachedStatement<'t>> {
        let tx = self.tx;
        let slot = &mut self.held[sql as usize];
        if slot.is_none() {
            *slot = Some(tx.prepare_cached(sql.text())?);
        }
        Ok(slot.as_mut().expect("prepared just now"))
    }

    fn last_insert_rowid(&self) -> i64 {
        self.tx.last_insert_rowid()
    }
}

/// Stores a batch: one commit, one fsync, however many messages. A message
/// whose (sender, client id) is stored already is answered with the stored
/// copy, marked `duplicate`. Each is checked inside the transaction, so a
/// resend later in the same batch finds the copy stored just before it.
pub(super) fn append(st: &mut Statements, batch: &[NewMessage]) -> StoreResult<Vec<Appended>> {
    let sent_at_ms = now_ms();
    let mut appended = Vec::with_capacity(batch.len());
    for message in batch {
        appended.push(insert(st, message, sent_at_ms)?);
    }
    Ok(appended)
}

/// Stores one new message: the next seq of its conversation, a new msg_id,
/// and an unread offline row per recipient. A resend is found by the
/// insert itself: `(from_user, client_msg_id)` is unique, and the insert
/// that hits it does nothing. That saves searching the same index once
/// before every insert, in the one writer's time.
fn insert(st: &mut Statements, message: &NewMessage, sent_at_ms: u64) -> StoreResult<Appended> {
    let conversation_id = conversation_of(message.from_user, message.target);
    let (to_user, to_group, kind) = match message.target {
        Target::User(user) => (user, 0, "direct"),
        Target::Group(group) => (0, group, "group"),
    };
    let at = sql_int(sent_at_ms);
    // The transaction holds the database's write lock, so nothing else can
    // take the same seq between this and the commit. Read, then written
    // once with the new message's id: `RETURNING` would build a temporary
    // table for its one row, and the conversation's row would be written
    // twice.
    let last_seq: Option<i64> = st
        .get(Sql::LastSeq)?
        .query_row([&conversation_id], |row| row.get(0))
        .optional()?;
    let seq = match last_seq {
        Some(last) => last + 1,
        None => {
            // A resend of a message stored to another conversation must not
            // leave this one made and empty, so here the look-up comes first.
            if let Some(stored) = earlier(st, message)? {
                return Ok(duplicate(stored));
            }
            st.get(Sql::NewConversation)?
                .execute(params![conversation_id, kind, at])?;
            1
        }
    };
    let file = message.file.as_ref();
    let inserted = st.get(Sql::InsertMessage)?.execute(params![
        conversation_id,
        seq,
        sql_int(message.from_user),
        sql_int(to_user),
        sql_int(to_group),
        message.client_msg_id,
        message.content_type,
        message.text,
        file.map(|f| f.file_id.as_str()),
        file.map(|f| f.name.as_str()),
        file.map(|f| f.mime.as_str()),
        file.map(|f| sql_int(f.size)),
        at,
    ])?;
    if inserted == 0 {
        let stored = earlier(st, message)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
        return Ok(duplicate(stored));
    }
    let msg_id = st.last_insert_rowid();
    st.get(Sql::Bump)?
        .execute(params![seq, msg_id, at, conversation_id])?;
    // The sender has the message already; IGNORE drops a recipient listed
    // twice. A group's members catch up by their cursors instead.
    if matches!(message.target, Target::User(_)) {
        let offline = st.get(Sql::QueueMessage)?;
        for &recipient in message
            .recipients
            .iter()
            .filter(|&&r| r != message.from_user)
        {
            offline.execute(params![sql_int(recipient), msg_id])?;
        }
    }
    let message = StoredMessage {
        msg_id: api_int(msg_id),
        conversation_id,
        seq: api_int(seq),
        from_user: message.from_user,
        to_user,
        to_group,
        client_msg_id: message.client_msg_id.clone(),
        content_type: message.content_type,
        text: message.text.clone(),
        file: message.file.clone(),
        sent_at_ms,
    };
    Ok(Appended {
        message,
        duplicate: false,
    })
}

/// The stored copy of `message` (same sender, same client id), if any.
fn earlier(st: &mut Statements, message: &NewMessage) -> StoreResult<Option<StoredMessage>> {
    let stored = st
        .get(Sql::Earlier)?
        .query_row(
            params![sql_int(message.from_user), message.client_msg_id],
            stored_message,
        )
        .optional()?;
    Ok(stored)
}

fn duplicate(stored: StoredMessage) -> Appended {
    Appended {
        message: stored,
        duplicate: true,
    }
}

/// A row of [`message_columns!`](crate::convert::message_columns).
pub(super) fn stored_message(row: &Row) -> rusqlite::Result<StoredMessage> {
    let file_id: Option<String> = row.get(9)?;
    let file = match file_id {
        Some(file_id) => Some(FileRef {
            file_id,
            name: row.get::<_, Option<String>>(10)?.unwrap_or_default(),
            mime: row.get::<_, Option<String>>(11)?.unwrap_or_default(),
            size: api_int(row.get::<_, Option<i64>>(12)?.unwrap_or(0)),
        }),
        None => None,
    };
    Ok(StoredMessage {
        msg_id: api_int(row.get(0)?),
        conversation_id: row.get(1)?,
        seq: api_int(row.get(2)?),
        from_user: api_int(row.get(3)?),
        to_user: api_int(row.get(4)?),
        to_group: api_int(row.get(5)?),
        client_msg_id: row.get(6)?,
        content_type: row.get(7)?,
        text: row.get(8)?,
        file,
        sent_at_ms: api_int(row.get(13)?),
    })
}

/// A row of [`Sql::Covered`]: what a receipt needs to know of its message.
fn covered_row(row: &Row) -> rusqlite::Result<DeliveredMessage> {
    Ok(DeliveredMessage {
        msg_id: api_int(row.get(0)?),
        conversation_id: row.get(1)?,
        seq: api_int(row.get(2)?),
        from_user: api_int(row.get(3)?),
        client_msg_id: row.get(4)?,
    })
}

/// A device of `user` acknowledged `messages`: its cursors move forward,
/// the first device's ack takes the message's offline row, and the sender
/// is owed one DELIVERED receipt per recipient.
///
/// The acks' fields are the stored messages' (the connector built them
/// from what it pushed), so nothing is read back, and each conversation's
/// cursor is written once per call. Alternate runs of one build pair, quick
/// chat at saturation: 62.9k -> 68.8k msg/s (medians of 3).
pub(super) fn mark_delivered(
    st: &mut Statements,
    user: UserId,
    device: &str,
    messages: &[DeliveredMessage],
) -> StoreResult<Vec<ReceiptRecord>> {
    let at_ms = now_ms();
    let user_id = sql_int(user);
    // One write per conversation, to the highest seq acked in it: a link
    // acks what one turn brought, often several messages of a conversation.
    let mut cursors: BTreeMap<&str, u64> = BTreeMap::new();
    for acked in messages {
        let seq = cursors.entry(&acked.conversation_id).or_default();
        *seq = (*seq).max(acked.seq);
    }
    for (conversation, seq) in cursors {
        st.get(Sql::Cursor)?
            .execute(params![user_id, device, conversation, sql_int(seq)])?;
    }
    let mut receipts = Vec::new();
    for acked in messages.iter().filter(|m| m.from_user != user) {
        // Whichever device acks first takes the message's offline row too;
        // a group message has none.
        if !is_group_conversation(&acked.conversation_id) {
            st.get(Sql::TakeMessage)?
                .execute(params![user_id, sql_int(acked.msg_id)])?;
        }
        let receipt = store_receipt(st, ReceiptKind::Delivered, acked, user, at_ms)?;
        receipts.extend(receipt);
    }
    Ok(receipts)
}

/// `user` read `conversation` up to `seq`. The cursor stops at the
/// conversation's last seq: a cursor ahead of it would swallow the READ
/// receipts of messages not yet sent. `Forbidden` for a non-member comes
/// before any write, so the caller's transaction can go on without it.
pub(super) fn mark_read(
    st: &mut Statements,
    user: UserId,
    conversation: &str,
    seq: u64,
) -> StoreResult<Vec<ReceiptRecord>> {
    let at_ms = now_ms();
    let user_id = sql_int(user);
    let (start_seq, read_seq, last_seq): (i64, i64, i64) = st
        .get(Sql::Member)?
        .query_row(params![conversation, user_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?
        .ok_or(StoreError::Forbidden)?;
    // Messages from before the user joined were never theirs to read.
    let read_from = read_seq.max(start_seq);
    let read_to = sql_int(seq).min(last_seq);
    if read_to <= read_from {
        return Ok(Vec::new());
    }
    st.get(Sql::SetRead)?
        .execute(params![read_to, conversation, user_id])?;
    let covered: Vec<DeliveredMessage> = st
        .get(Sql::Covered)?
        .query_map(
            params![conversation, read_from, read_to, user_id],
            covered_row,
        )?
        .collect::<rusqlite::Result<_>>()?;
    let mut receipts = Vec::new();
    for message in &covered {
        receipts.extend(store_receipt(st, ReceiptKind::Read, message, user, at_ms)?);
    }
    Ok(receipts)
}

/// Stores `by_user`'s receipt of `kind` for `message` and an unread offline
/// row carrying it to the sender, unless that receipt exists already: each
/// message gets at most one of each kind per recipient, however many devices
/// or read marks report it.
fn store_receipt(
    st: &mut Statements,
    kind: ReceiptKind,
    message: &DeliveredMessage,
    by_user: UserId,
    at_ms: u64,
) -> StoreResult<Option<ReceiptRecord>> {
    let msg_id = sql_int(message.msg_id);
    let inserted = st.get(Sql::InsertReceipt)?.execute(params![
        msg_id,
        sql_int(by_user),
        kind.as_i64(),
        sql_int(at_ms)
    ])?;
    if inserted == 0 {
        return Ok(None);
    }
    st.get(Sql::QueueReceipt)?.execute(params![
        sql_int(message.from_user),
        msg_id,
        kind.as_i64(),
        sql_int(by_user)
    ])?;
    Ok(Some(ReceiptRecord {
        kind,
        msg_id: message.msg_id,
        conversation_id: message.conversation_id.clone(),
        seq: message.seq,
        client_msg_id: message.client_msg_id.clone(),
        to_user: message.from_user,
        by_user,
        at_ms,
    }))
}

/// Records `device` of `user` unless it is known already; returns whether
/// it was new. A new device starts each direct conversation at its current
/// last seq: what came before and no device has yet still reaches it
/// through the offline rows. Group messages have no offline rows, so a
/// group starts where the user's furthest device is, or, with none there,
/// at the member's start (no cursor row: see `devices::cursors`).
pub(super) fn register_device(
    st: &mut Statements,
    user: UserId,
    device: &str,
) -> StoreResult<bool> {
    let user = sql_int(user);
    let inserted = st
        .get(Sql::InsertDevice)?
        .execute(params![user, device, sql_int(now_ms())])?;
    if inserted == 0 {
        return Ok(false);
    }
    st.get(Sql::StartCursors)?.execute(params![device, user])?;
    Ok(true)
}

/// Claims the unread offline rows behind `keys` (compare-and-set on
/// `has_read`); returns the keys this call claimed.
pub(super) fn claim_keys(
    st: &mut Statements,
    user: UserId,
    keys: &[OfflineKey],
) -> StoreResult<Vec<OfflineKey>> {
    let claim = st.get(Sql::Claim)?;
    let mut claimed = Vec::new();
    for &key in keys {
        let (msg_id, kind, by_user) = match key {
            OfflineKey::Message(msg_id) => (msg_id, MESSAGE_ROW, 0),
            OfflineKey::Receipt {
                msg_id,
                kind,
                by_user,
            } => (msg_id, kind.as_i64(), by_user),
        };
        let done = claim.execute(params![
            sql_int(user),
            sql_int(msg_id),
            kind,
            sql_int(by_user)
        ])?;
        if done == 1 {
            claimed.push(key);
        }
    }
    Ok(claimed)
}
