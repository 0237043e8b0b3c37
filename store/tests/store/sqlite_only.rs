//! What only the SQLite backend has: a file on disk, in WAL mode.

use im_store::{SqliteStore, Store, UserId};

#[tokio::test]
async fn open_makes_the_directory_and_reopens_the_same_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("deeper").join("im.db");

    let store = SqliteStore::open(&path).await.unwrap();
    let alice = store.create_user("alice", "hash").await.unwrap();
    store.close().await;

    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.user(alice.id).await.unwrap(), Some(alice));
    store.close().await;
}

#[tokio::test]
async fn the_hot_writer_runs_at_the_nice_value_asked_for() {
    // A nice value above 0 needs no privilege. Other tests' stores run
    // writers of the same name at 0 in this process.
    let nice_of_writers = || -> Vec<i64> {
        let mut nices = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let task = task.unwrap().path();
            let Ok(comm) = std::fs::read_to_string(task.join("comm")) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(task.join("stat")) else {
                continue;
            };
            if comm.trim() != "sqlite-hot" {
                continue;
            }
            // After the name in parentheses: state is field 3, nice field 19.
            let after_name = &stat[stat.rfind(')').unwrap() + 2..];
            nices.push(after_name.split(' ').nth(16).unwrap().parse().unwrap());
        }
        nices
    };
    let dir = tempfile::tempdir().unwrap();
    let options = im_store::SqliteOptions { writer_nice: 7 };
    let store = SqliteStore::open_with(&dir.path().join("im.db"), options)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !nice_of_writers().contains(&7) {
        assert!(
            std::time::Instant::now() < deadline,
            "no writer at nice 7: {:?}",
            nice_of_writers()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // It still writes.
    store.create_user("alice", "hash").await.unwrap();
    store.close().await;
}

#[tokio::test]
async fn the_file_is_written_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("im.db");
    let store = SqliteStore::open(&path).await.unwrap();
    store.create_user("alice", "hash").await.unwrap();
    assert!(dir.path().join("im.db-wal").exists());
    store.close().await;
}

/// A store in a fresh directory (kept while the first value lives) with
/// two users, alice and bob.
async fn alice_and_bob() -> (tempfile::TempDir, SqliteStore, UserId, UserId) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("im.db")).await.unwrap();
    let alice = store.create_user("alice", "hash").await.unwrap().id;
    let bob = store.create_user("bob", "hash").await.unwrap().id;
    (dir, store, alice, bob)
}

/// Appends and acks that arrive together share one transaction. One that
/// fails (here a text longer than the hot connection takes) must fail
/// alone: the others in its transaction are written and answered.
#[tokio::test]
async fn a_failing_write_fails_only_its_own_caller() {
    let (_dir, store, alice, bob) = alice_and_bob().await;
    let target = im_store::Target::User(bob);
    // Spawned on this test's one thread, they all queue before the writer
    // task runs, so they reach it together.
    let mut calls = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        let mut message = crate::text(alice, target, &format!("m{i}"), &[bob]);
        if i == 7 {
            message.text = "x".repeat(1 << 20 | 1);
        }
        calls.push(tokio::spawn(async move {
            store.append_messages(&[message]).await
        }));
    }
    let mut seqs = Vec::new();
    for (i, call) in calls.into_iter().enumerate() {
        let result = call.await.unwrap();
        if i == 7 {
            assert!(result.is_err(), "a text over the limit was stored");
        } else {
            seqs.push(
                result.expect("a good write failed with a bad one")[0]
                    .message
                    .seq,
            );
        }
    }
    assert_eq!(seqs, (1..=19).collect::<Vec<u64>>());
    store.close().await;
}

/// A read mark by a non-member shares the writer's queue with appends: it
/// is refused, and the append beside it is stored.
#[tokio::test]
async fn a_refused_read_mark_leaves_its_batch_alone() {
    let (_dir, store, alice, bob) = alice_and_bob().await;
    let target = im_store::Target::User(bob);
    let (first, reader) = (store.clone(), store.clone());
    let message = crate::text(alice, target, "m0", &[bob]);
    let append = tokio::spawn(async move { first.append_messages(&[message]).await });
    let read = tokio::spawn(async move { reader.mark_read(bob, "g42", 1).await });
    assert!(matches!(
        read.await.unwrap(),
        Err(im_store::StoreError::Forbidden)
    ));
    assert_eq!(append.await.unwrap().unwrap()[0].message.seq, 1);
    store.close().await;
}

/// Once closed, the store refuses the hot writes too (they run on a thread
/// and connection of their own, not on the pools `close` shuts), rather
/// than writing behind the caller's back.
#[tokio::test]
async fn a_closed_store_refuses_hot_writes() {
    let (_dir, store, alice, bob) = alice_and_bob().await;
    let target = im_store::Target::User(bob);
    let before = crate::text(alice, target, "before", &[bob]);
    assert_eq!(store.append_messages(&[before]).await.unwrap().len(), 1);
    store.close().await;
    let after = crate::text(alice, target, "after", &[bob]);
    assert!(
        store.append_messages(&[after]).await.is_err(),
        "a message was stored after close"
    );
    assert!(store.register_device(alice, "phone").await.is_err());
}

/// alice (1) sent bob (2) two messages; bob's device took the first (row 1
/// claimed, a DELIVERED receipt queued for alice as row 3); the second
/// waits (row 2).
const ONE_TAKEN_ONE_WAITING: &str = "INSERT INTO users (id, name, password_hash, created_at_ms)
             VALUES (1, 'alice', 'h', 0), (2, 'bob', 'h', 0);
         INSERT INTO conversations (id, kind, last_seq, last_msg_id, updated_at_ms)
             VALUES ('u1-2', 'direct', 2, 2, 0);
         INSERT INTO messages (msg_id, conversation_id, seq, from_user, to_user,
                               client_msg_id, content_type, text, sent_at_ms)
             VALUES (1, 'u1-2', 1, 1, 2, 'c1', 1, 'one', 10),
                    (2, 'u1-2', 2, 1, 2, 'c2', 1, 'two', 20);
         INSERT INTO offline (id, user_id, msg_id, receipt_kind, receipt_by, has_read)
             VALUES (1, 2, 1, 0, 0, 1), (2, 2, 2, 0, 0, 0), (3, 1, 1, 2, 2, 0);
         INSERT INTO receipts (msg_id, by_user, kind, at_ms) VALUES (1, 2, 2, 1234);";

/// A database made before migration 3 rebuilt the offline and receipt
/// tables keeps its rows through the rebuild: what was unread is unread
/// with the same ids, a claimed row stays claimed, a receipt keeps its
/// time, and rows queued afterwards come after the old ones.
#[tokio::test]
async fn the_offline_rebuild_keeps_every_row_and_the_order() {
    let (_dir, path) = database_before(3, ONE_TAKEN_ONE_WAITING).await;

    let store = SqliteStore::open(&path).await.unwrap();
    let bobs = store.offline_unread(2, 10).await.unwrap();
    assert_eq!(bobs.len(), 1, "{bobs:?}");
    assert_eq!(bobs[0].id, 2);
    assert!(
        matches!(&bobs[0].item, im_store::OfflineItem::Message(m) if m.msg_id == 2 && m.text == "two")
    );
    let alices = store.offline_unread(1, 10).await.unwrap();
    assert_eq!(alices.len(), 1, "{alices:?}");
    assert_eq!(alices[0].id, 3);
    let im_store::OfflineItem::Receipt(receipt) = &alices[0].item else {
        panic!("not a receipt: {alices:?}");
    };
    assert_eq!(
        (receipt.msg_id, receipt.by_user, receipt.at_ms),
        (1, 2, 1234)
    );
    // The rebuilt receipts table still holds one receipt per kind.
    let again = store
        .mark_delivered(
            2,
            "phone",
            &[im_store::DeliveredMessage {
                msg_id: 1,
                conversation_id: "u1-2".into(),
                seq: 1,
                from_user: 1,
                client_msg_id: "c1".into(),
            }],
        )
        .await
        .unwrap();
    assert!(again.is_empty(), "a second DELIVERED: {again:?}");

    let third = crate::text(1, im_store::Target::User(2), "three", &[2]);
    let appended = store.append_messages(&[third]).await.unwrap();
    assert_eq!(appended[0].message.seq, 3);
    let ids: Vec<u64> = store
        .offline_unread(2, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids[0] == 2 && ids[1] > 3, "{ids:?}");
    assert!(store.claim_offline(3).await.unwrap());
    assert!(!store.claim_offline(3).await.unwrap());
    assert!(!store.claim_offline(1).await.unwrap(), "row 1 was claimed");
    store.close().await;
}

/// A database file made by the migrations before `version` alone, then
/// filled by `rows`: what an older server left, for the store to open and
/// migrate the rest of the way. The directory lives as long as the first
/// value.
async fn database_before(version: u32, rows: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    use sqlx::migrate::Migrator;
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

    let dir = tempfile::tempdir().unwrap();
    let before = dir.path().join("migrations");
    std::fs::create_dir(&before).unwrap();
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sql/sqlite");
    for entry in std::fs::read_dir(&all).unwrap() {
        let name = entry.unwrap().file_name();
        let number: u32 = name.to_str().unwrap()[..4].parse().unwrap();
        if number < version {
            std::fs::copy(all.join(&name), before.join(&name)).unwrap();
        }
    }
    let path = dir.path().join("im.db");
    let options = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .foreign_keys(true);
    let old = SqlitePool::connect_with(options).await.unwrap();
    let migrator = Migrator::new(before.as_path()).await.unwrap();
    migrator.run(&old).await.unwrap();
    sqlx::raw_sql(rows).execute(&old).await.unwrap();
    old.close().await;
    (dir, path)
}

#[tokio::test]
async fn the_conversations_rebuild_keeps_every_conversation() {
    // alice (1) and bob (2) have a direct conversation of two messages, bob
    // read the first; both are in group 1, whose conversation is empty but
    // was made later, so it lists first.
    let (_dir, path) = database_before(
        4,
        "INSERT INTO users (id, name, password_hash, created_at_ms)
             VALUES (1, 'alice', 'h', 0), (2, 'bob', 'h', 0);
         INSERT INTO groups (id, name, creator, created_at_ms) VALUES (1, 'g', 1, 0);
         INSERT INTO group_members (group_id, user_id, role, joined_at_ms)
             VALUES (1, 1, 3, 0), (1, 2, 1, 0);
         INSERT INTO conversations (id, kind, last_seq, last_msg_id, updated_at_ms)
             VALUES ('u1-2', 'direct', 2, 2, 20), ('g1', 'group', 0, NULL, 30);
         INSERT INTO conversation_members (conversation_id, user_id, start_seq, read_seq)
             VALUES ('u1-2', 1, 0, 2), ('u1-2', 2, 0, 1), ('g1', 1, 0, 0), ('g1', 2, 0, 0);
         INSERT INTO messages (msg_id, conversation_id, seq, from_user, to_user,
                               client_msg_id, content_type, text, sent_at_ms)
             VALUES (1, 'u1-2', 1, 1, 2, 'c1', 1, 'one', 10),
                    (2, 'u1-2', 2, 1, 2, 'c2', 1, 'two', 20);",
    )
    .await;

    let store = SqliteStore::open(&path).await.unwrap();
    let bobs: Vec<String> = store
        .conversations(2)
        .await
        .unwrap()
        .into_iter()
        .map(|c| {
            let last = c.last_message.map(|m| m.msg_id);
            let (id, kind) = (c.id, c.kind);
            format!(
                "{id} {kind:?} {} {} {} {last:?}",
                c.last_seq, c.read_seq, c.unread
            )
        })
        .collect();
    assert_eq!(bobs, ["g1 Group 0 0 0 None", "u1-2 Direct 2 1 1 Some(2)"]);
    let next = crate::text(2, im_store::Target::Group(1), "hi", &[1, 2]);
    let appended = store.append_messages(&[next]).await.unwrap();
    assert_eq!(
        (
            appended[0].message.conversation_id.as_str(),
            appended[0].message.seq
        ),
        ("g1", 1)
    );
    store.close().await;
}

/// Migration 5 keys the offline table's unique index by message first: the
/// rows of older servers keep their ids and claims, a device's ack still
/// claims its row through that key, and a row cannot be queued twice.
#[tokio::test]
async fn the_offline_rows_keyed_by_message_keep_their_claims() {
    let (_dir, path) = database_before(5, ONE_TAKEN_ONE_WAITING).await;

    let store = SqliteStore::open(&path).await.unwrap();
    let unread = |user| {
        let store = &store;
        async move {
            let rows = store.offline_unread(user, 10).await.unwrap();
            rows.iter().map(|r| r.id).collect::<Vec<u64>>()
        }
    };
    assert_eq!(unread(2).await, [2]);
    assert_eq!(unread(1).await, [3]);

    // bob's device acks message 2: its row is claimed through the new key,
    // and alice is queued the DELIVERED receipt.
    let delivered = im_store::DeliveredMessage {
        msg_id: 2,
        conversation_id: "u1-2".into(),
        seq: 2,
        from_user: 1,
        client_msg_id: "c2".into(),
    };
    let receipts = store
        .mark_delivered(2, "phone", std::slice::from_ref(&delivered))
        .await
        .unwrap();
    assert_eq!(receipts.len(), 1, "{receipts:?}");
    assert!(unread(2).await.is_empty());
    let alices = unread(1).await;
    assert_eq!(alices.len(), 2, "{alices:?}");
    assert!(alices[0] == 3 && alices[1] > 3, "{alices:?}");
    // A second ack queues nothing more.
    store
        .mark_delivered(2, "tablet", &[delivered])
        .await
        .unwrap();
    assert_eq!(unread(1).await, alices);
    store.close().await;

    // The unique index leads with the message.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mut columns = Vec::new();
    let unique: String = conn
        .query_row(
            "SELECT name FROM pragma_index_list('offline') WHERE \"unique\" = 1",
            [],
            |row| row.get(0),
        )
        .unwrap();
    let mut info = conn
        .prepare("SELECT name FROM pragma_index_info(?) ORDER BY seqno")
        .unwrap();
    let mut rows = info.query([&unique]).unwrap();
    while let Some(row) = rows.next().unwrap() {
        columns.push(row.get::<_, String>(0).unwrap());
    }
    assert_eq!(columns, ["msg_id", "user_id", "receipt_kind", "receipt_by"]);
}
