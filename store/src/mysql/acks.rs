//! Acknowledgements, committed together: devices' DELIVERED acks (which
//! move cursors, claim offline rows and owe receipts) and acks of live
//! receipts (which claim their offline rows).
//!
//! Each ack alone is a transaction of a few rows, and a chat message makes
//! two of them (its recipient's ack, then its sender's ack of the DELIVERED
//! receipt), so the database spent its time on transactions and statements,
//! not rows. [`AckQueue`] is a group commit: acks that arrive while a
//! transaction runs wait, and the next transaction takes all of them, in
//! one multi-row statement per step. Alone, an ack is written at once.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use sqlx::{MySql, MySqlConnection, MySqlPool, QueryBuilder};

use super::batch::{Batcher, Serve};
use super::offline::{claim_rows, row_key, RowKey};
use super::receipts::{insert_receipts, send_receipts, stored_messages, Receipted};
use super::retry::retry_when;
use super::rows::{is_duplicate, sql_int, MESSAGE_ROW, ROWS_PER_STATEMENT};
use crate::types::{
    is_group_conversation, now_ms, DeliveredMessage, OfflineKey, ReceiptKind, ReceiptRecord, UserId,
};
use crate::StoreResult;

/// One acknowledgement, as the [`Store`](crate::Store) call made it.
#[derive(Debug)]
pub(super) enum Ack {
    /// A device of `user` acknowledged `messages`.
    Delivered {
        user: UserId,
        device: String,
        messages: Vec<DeliveredMessage>,
    },
    /// `user` acknowledged the live receipts of `keys`.
    Claim { user: UserId, keys: Vec<OfflineKey> },
}

impl Ack {
    /// How many rows it names, which bounds how many acks share a
    /// transaction.
    fn rows(&self) -> usize {
        match self {
            Ack::Delivered { messages, .. } => messages.len(),
            Ack::Claim { keys, .. } => keys.len(),
        }
    }
}

/// What an [`Ack`] answers.
#[derive(Debug)]
pub(super) enum Answer {
    /// The receipts a `Delivered` owes the messages' senders.
    Receipts(Vec<ReceiptRecord>),
    /// The keys a `Claim` claimed, in the order asked.
    Claimed(Vec<OfflineKey>),
}

/// Writes `acks` in one transaction, as if each ran alone in the order
/// given: where two name the same row (two devices of a user acking one
/// message), the first one takes it. A receipt another transaction stored
/// between this one's check and insert fails the insert as a duplicate;
/// the next attempt finds it stored.
pub(super) async fn write(pool: &MySqlPool, acks: &[Ack]) -> StoreResult<Vec<Answer>> {
    let at_ms = now_ms();
    retry_when(is_duplicate, || write_once(pool, acks, at_ms)).await
}

/// The rows several transactions may share are written in one order,
/// whatever the acks' order: the cursors by (user, device, conversation),
/// then the offline rows by (user, msg_id), then the receipts by msg_id;
/// two transactions wait for each other instead of deadlocking. The
/// senders' offline rows, which only the transaction that made the receipt
/// writes, are added last in the acks' order, so they are numbered as
/// SQLite numbers them.
async fn write_once(pool: &MySqlPool, acks: &[Ack], at_ms: u64) -> StoreResult<Vec<Answer>> {
    let mut tx = pool.begin().await?;
    // The stored message, not the ack's copy of its fields, says where it
    // belongs and who sent it. An unknown id acknowledges nothing.
    let mut ids: Vec<i64> = delivered(acks)
        .flat_map(|(_, _, messages)| messages.iter().map(|m| sql_int(m.msg_id)))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let stored = stored_messages(&mut tx, &ids).await?;
    let sender = |msg_id: u64| stored.get(&sql_int(msg_id)).map(|m| m.from_user);

    // Each cursor moves to the highest seq acked in its conversation.
    let mut cursors: BTreeMap<(i64, &str, &str), i64> = BTreeMap::new();
    for (user, device, messages) in delivered(acks) {
        for message in messages
            .iter()
            .filter_map(|m| stored.get(&sql_int(m.msg_id)))
        {
            let key = (sql_int(user), device, message.conversation_id.0.as_str());
            let cursor = cursors.entry(key).or_default();
            *cursor = (*cursor).max(message.seq);
        }
    }
    move_cursors(&mut tx, cursors).await?;

    // The offline rows each ack names: a delivered message from someone
    // else (messages a user sent only move the cursor), or a receipt. The
    // first ack to name an unread row takes it. A group message has no
    // offline row: it is named for its DELIVERED receipt (below), but not
    // looked for, as a locking read of a missing row would lock its gap.
    let named: Vec<Vec<(UserId, RowKey)>> = acks
        .iter()
        .map(|ack| match ack {
            Ack::Delivered { user, messages, .. } => messages
                .iter()
                .filter(|m| sender(m.msg_id).is_some_and(|from| from != sql_int(*user)))
                .map(|m| (*user, (m.msg_id, MESSAGE_ROW, 0)))
                .collect(),
            Ack::Claim { user, keys } => keys.iter().map(|&k| (*user, row_key(k))).collect(),
        })
        .collect();
    let group_message = |&(_, (msg_id, kind, _)): &(UserId, RowKey)| {
        kind == MESSAGE_ROW
            && stored
                .get(&sql_int(msg_id))
                .is_some_and(|m| is_group_conversation(&m.conversation_id.0))
    };
    let all: BTreeSet<(UserId, RowKey)> = named
        .iter()
        .flatten()
        .filter(|key| !group_message(key))
        .copied()
        .collect();
    let mut unclaimed = claim_rows(&mut tx, &Vec::from_iter(all)).await?;

    // A DELIVERED receipt per message from someone else and recipient, unless
    // one is stored already; the first ack of the message owes it.
    let mut pairs: Vec<(i64, UserId)> = acks
        .iter()
        .zip(&named)
        .filter(|(ack, _)| matches!(ack, Ack::Delivered { .. }))
        .flat_map(|(_, named)| named.iter().map(|&(user, (id, _, _))| (sql_int(id), user)))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    let mut receipted: HashSet<(i64, UserId)> =
        insert_receipts(&mut tx, ReceiptKind::Delivered, &pairs, at_ms)
            .await?
            .into_iter()
            .collect();

    let mut owed: Vec<(&Receipted, UserId)> = Vec::new();
    let mut owed_by_ack = Vec::with_capacity(acks.len());
    let mut claimed_by_ack = Vec::with_capacity(acks.len());
    for (ack, named) in acks.iter().zip(&named) {
        let won: HashSet<(UserId, RowKey)> = named
            .iter()
            .filter(|key| unclaimed.remove(key))
            .copied()
            .collect();
        match ack {
            Ack::Delivered { user, messages, .. } => {
                let before = owed.len();
                for message in messages {
                    let msg_id = sql_int(message.msg_id);
                    if receipted.remove(&(msg_id, *user)) {
                        owed.extend(stored.get(&msg_id).map(|m| (m, *user)));
                    }
                }
                owed_by_ack.push(owed.len() - before);
                claimed_by_ack.push(Vec::new());
            }
            Ack::Claim { user, keys } => {
                let mut reported = HashSet::new();
                let claimed = keys
                    .iter()
                    .copied()
                    .filter(|&k| won.contains(&(*user, row_key(k))) && reported.insert(k))
                    .collect();
                owed_by_ack.push(0);
                claimed_by_ack.push(claimed);
            }
        }
    }
    let mut receipts = send_receipts(&mut tx, ReceiptKind::Delivered, &owed, at_ms)
        .await?
        .into_iter();
    tx.commit().await?;

    Ok(acks
        .iter()
        .zip(owed_by_ack)
        .zip(claimed_by_ack)
        .map(|((ack, owed), claimed)| match ack {
            Ack::Delivered { .. } => Answer::Receipts(receipts.by_ref().take(owed).collect()),
            Ack::Claim { .. } => Answer::Claimed(claimed),
        })
        .collect())
}

/// Moves each (user, device, conversation) cursor up to its seq, in key
/// order; a cursor already further stays.
async fn move_cursors(
    tx: &mut MySqlConnection,
    cursors: BTreeMap<(i64, &str, &str), i64>,
) -> StoreResult<()> {
    let cursors: Vec<_> = cursors.into_iter().collect();
    for chunk in cursors.chunks(ROWS_PER_STATEMENT) {
        QueryBuilder::<MySql>::new(
            "INSERT INTO device_cursors (user_id, device_id, conversation_id, seq) ",
        )
        .push_values(chunk, |mut row, &((user, device, conversation), seq)| {
            row.push_bind(user)
                .push_bind(device)
                .push_bind(conversation)
                .push_bind(seq);
        })
        .push(" ON DUPLICATE KEY UPDATE seq = GREATEST(seq, VALUES(seq))")
        .build()
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// The `Delivered` acks: user, device, messages.
fn delivered(acks: &[Ack]) -> impl Iterator<Item = (UserId, &str, &[DeliveredMessage])> {
    acks.iter().filter_map(|ack| match ack {
        Ack::Delivered {
            user,
            device,
            messages,
        } => Some((*user, device.as_str(), messages.as_slice())),
        Ack::Claim { .. } => None,
    })
}

/// Most rows the acks of one transaction name, so one multi-row statement
/// per step still covers them.
const MAX_ROWS: usize = ROWS_PER_STATEMENT;

/// Ack transactions that run at once: one fills while another commits.
/// At a trickle each ack is still written as it comes; more would only
/// split the queue into smaller transactions.
const WRITERS: usize = 4;

/// The group commit of acks: [`WRITERS`] tasks that each take whatever is
/// queued into one transaction.
pub(super) type AckQueue = Batcher<Ack, Answer>;

/// Starts the writers of the group commit on the current runtime.
pub(super) fn start(pool: &MySqlPool) -> AckQueue {
    Batcher::start(WRITERS, MAX_ROWS, Writer { pool: pool.clone() })
}

/// Writes a batch of acks in one transaction.
struct Writer {
    pool: MySqlPool,
}

impl Serve<Ack, Answer> for Writer {
    fn weight(&self, ack: &Ack) -> usize {
        ack.rows()
    }

    async fn serve(&self, acks: &[Ack]) -> StoreResult<Vec<Answer>> {
        write(&self.pool, acks).await
    }
}
