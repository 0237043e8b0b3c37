//! Each count of the checker, made to fail by a hand-made ledger.

use im_client::{ChatMessage, Receipt, ReceiptKind};

use super::check;
use crate::scenario::ledger::{Ledger, Sent, User};

const ALICE_PHONE: usize = 0;
const ALICE_LAPTOP: usize = 1;
const BOB: usize = 2;
const CAROL: usize = 3;

/// alice (user id 1) on a phone and a laptop, bob (2) and carol (3) on a
/// phone each; every device logged in and caught up.
fn ledger() -> Ledger {
    let mut ledger = Ledger::default();
    for (id, name) in [(1, "alice"), (2, "bob"), (3, "carol")] {
        ledger.users.push(User {
            id,
            name: name.into(),
        });
    }
    for (user, name) in [(0, "phone"), (0, "laptop"), (1, "phone"), (2, "phone")] {
        let d = ledger.add_device(user, name);
        ledger.link_up(d);
        ledger.sync_done(d);
    }
    ledger
}

/// alice's phone sent `client` to bob and got SENT with `msg_id` and `seq`;
/// returns the message as the server hands it out.
fn send(ledger: &mut Ledger, client: &str, msg_id: u64, seq: u64) -> ChatMessage {
    let message = ChatMessage {
        msg_id,
        conversation_id: "u1-2".into(),
        seq,
        from_user: 1,
        to_user: 2,
        client_msg_id: client.into(),
        text: format!("text of {client}"),
        ..ChatMessage::default()
    };
    ledger.sent.push(Sent {
        device: ALICE_PHONE,
        client_msg_id: client.into(),
        text: message.text.clone(),
        conversation: "u1-2".into(),
        recipients: vec![1],
        receipt: receipt(ReceiptKind::Sent, &message, 0),
    });
    message
}

fn receipt(kind: ReceiptKind, m: &ChatMessage, by_user: u64) -> Receipt {
    Receipt {
        kind: kind as i32,
        msg_id: m.msg_id,
        conversation_id: m.conversation_id.clone(),
        seq: m.seq,
        client_msg_id: m.client_msg_id.clone(),
        by_user,
        at_ms: 0,
    }
}

/// alice sends one message; bob and alice's laptop get it live, and alice's
/// phone gets bob's DELIVERED.
fn clean_run() -> (Ledger, ChatMessage) {
    let mut ledger = ledger();
    let m = send(&mut ledger, "c1", 10, 1);
    ledger.message(ALICE_LAPTOP, m.clone());
    ledger.message(BOB, m.clone());
    ledger.receipt(ALICE_PHONE, receipt(ReceiptKind::Delivered, &m, 2));
    (ledger, m)
}

#[test]
fn a_run_where_everything_arrived_once_in_order_is_clean() {
    let (ledger, _) = clean_run();
    let report = check(&ledger);
    assert!(report.clean(), "{report:?}");
    assert_eq!(
        (report.expected, report.delivered, report.receipts),
        (2, 2, 1)
    );
    assert_eq!(
        report.receipts_partial, 1,
        "alice's laptop has no DELIVERED"
    );
}

#[test]
fn a_device_of_the_sender_that_misses_the_message_is_a_loss() {
    let mut ledger = ledger();
    let m = send(&mut ledger, "c1", 10, 1);
    ledger.message(BOB, m.clone());
    ledger.receipt(ALICE_PHONE, receipt(ReceiptKind::Delivered, &m, 2));
    let report = check(&ledger);
    assert_eq!(report.loss, 1);
    assert_eq!(report.faulty[0].device, "alice/laptop");
    assert!(!report.owes_nothing() && !report.clean());
}

#[test]
fn a_resend_stored_twice_is_a_duplicate_though_its_ids_differ() {
    let (mut ledger, m) = clean_run();
    let again = ChatMessage {
        msg_id: 11,
        seq: 2,
        client_msg_id: "c1~stored-again".into(),
        ..m
    };
    ledger.message(BOB, again);
    assert_eq!(check(&ledger).duplicates, 1);
}

#[test]
fn a_seq_going_back_or_offline_after_live_breaks_order() {
    let mut ledger = ledger();
    let first = send(&mut ledger, "c1", 10, 1);
    let second = send(&mut ledger, "c2", 11, 2);
    ledger.message(ALICE_LAPTOP, first.clone());
    ledger.message(ALICE_LAPTOP, second.clone());
    ledger.message(BOB, second.clone());
    ledger.message(BOB, first.clone());
    assert_eq!(check(&ledger).order, 1, "bob got seq 2 before seq 1");

    // bob comes back; on his new link something live comes before SyncDone,
    // or a catch-up message after it.
    for synced_first in [false, true] {
        let mut ledger = self::ledger();
        send(&mut ledger, "c1", 10, 1);
        send(&mut ledger, "c2", 11, 2);
        ledger.message(ALICE_LAPTOP, first.clone());
        ledger.message(ALICE_LAPTOP, second.clone());
        ledger.link_up(BOB);
        if synced_first {
            ledger.sync_done(BOB);
            ledger.message(BOB, first.clone());
            let offline = ChatMessage {
                offline: true,
                ..second.clone()
            };
            ledger.message(BOB, offline);
        } else {
            ledger.message(BOB, first.clone());
        }
        assert_eq!(check(&ledger).order, 1, "synced first: {synced_first}");
    }
}

#[test]
fn the_sender_getting_its_own_message_back_once_is_an_echo_twice_a_duplicate() {
    let (mut ledger, m) = clean_run();
    ledger.link_up(ALICE_PHONE);
    let echo = ChatMessage {
        offline: true,
        ..m.clone()
    };
    ledger.message(ALICE_PHONE, echo.clone());
    let report = check(&ledger);
    assert!(report.clean(), "{report:?}");
    assert_eq!(report.echoes, 1);
    ledger.message(ALICE_PHONE, echo);
    assert_eq!(check(&ledger).duplicates, 1);
}

#[test]
fn a_message_on_a_device_it_was_not_addressed_to_is_a_stray() {
    let (mut ledger, m) = clean_run();
    ledger.message(CAROL, m);
    assert_eq!(check(&ledger).strays, 1);
}

#[test]
fn receipts_naming_a_wrong_recipient_or_something_that_did_not_happen_are_wrong() {
    let (mut ledger, m) = clean_run();
    ledger.receipt(ALICE_PHONE, receipt(ReceiptKind::Delivered, &m, 3));
    assert_eq!(check(&ledger).receipts_wrong, 1, "carol is no recipient");

    let (mut ledger, m) = clean_run();
    ledger.receipt(ALICE_PHONE, receipt(ReceiptKind::Read, &m, 2));
    assert_eq!(check(&ledger).receipts_wrong, 1, "bob marked nothing read");
    let mark = ledger.read(1, "u1-2", 1);
    assert!(
        check(&ledger).clean(),
        "an unacked mark may have been applied"
    );
    ledger.reads[mark].seq = 0;
    assert_eq!(
        check(&ledger).receipts_wrong,
        1,
        "the mark is below its seq"
    );

    let mut ledger = self::ledger();
    let m = send(&mut ledger, "c1", 10, 1);
    ledger.message(ALICE_LAPTOP, m.clone());
    ledger.receipt(ALICE_PHONE, receipt(ReceiptKind::Delivered, &m, 2));
    let report = check(&ledger);
    assert_eq!(
        (report.loss, report.receipts_wrong),
        (1, 1),
        "bob never got it"
    );

    let (mut ledger, m) = clean_run();
    ledger.receipt(BOB, receipt(ReceiptKind::Sent, &m, 0));
    assert_eq!(
        check(&ledger).receipts_wrong,
        1,
        "a SENT for someone else's send"
    );

    let (mut ledger, _) = clean_run();
    ledger.sent[0].receipt.client_msg_id = "c2".into();
    assert_eq!(
        check(&ledger).receipts_wrong,
        1,
        "SENT answers another send"
    );
}

#[test]
fn a_delivery_or_acked_read_without_its_receipt_at_any_sender_device_is_missing() {
    let (mut ledger, m) = clean_run();
    ledger.devices[ALICE_PHONE].receipts.clear();
    let report = check(&ledger);
    assert_eq!(report.receipts_missing, 1, "no DELIVERED");
    assert_eq!(
        report.faulty[0].missing_receipts,
        [(m.msg_id, ReceiptKind::Delivered as i32, 2)],
        "listed by (msg_id, kind, by)"
    );
    ledger.receipt(ALICE_LAPTOP, receipt(ReceiptKind::Delivered, &m, 2));
    assert!(check(&ledger).clean(), "one device of the sender suffices");

    let mark = ledger.read(1, "u1-2", 1);
    assert!(check(&ledger).clean(), "an unacked mark owes nothing");
    ledger.reads[mark].confirmed = true;
    let report = check(&ledger);
    assert_eq!(report.receipts_missing, 1, "no READ");
    assert!(!report.owes_nothing());
    ledger.receipt(ALICE_PHONE, receipt(ReceiptKind::Read, &m, 2));
    let report = check(&ledger);
    assert!(report.clean() && report.owes_nothing(), "{report:?}");
    assert_eq!((report.reads, report.receipts), (1, 2));
}
