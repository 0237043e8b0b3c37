//! History pages and the conversations list, over messages appended straight
//! into the store.

use axum::http::StatusCode;
use im_proto::v1::ContentType;
use im_store::{direct_conversation, FileRef, NewMessage, Store, Target};
use serde_json::json;

use crate::common::{assert_error, Account, TestApp};

/// Appends `count` text messages from `from` to `to`.
async fn send_texts(app: &TestApp, from: &Account, to: &Account, count: usize) {
    let batch: Vec<NewMessage> = (1..=count)
        .map(|i| NewMessage {
            from_user: from.id,
            client_msg_id: format!("{}-{i}", from.name),
            target: Target::User(to.id),
            content_type: ContentType::Text as i32,
            text: format!("message {i}"),
            file: None,
            recipients: vec![to.id],
        })
        .collect();
    app.store.append_messages(&batch).await.unwrap();
}

/// The seqs of a page's messages.
fn seqs(page: &serde_json::Value) -> Vec<u64> {
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn history_pages_newest_first() {
    let app = TestApp::new().await;
    let alice = app.account("alice").await;
    let bob = app.account("bob").await;
    app.befriend(&alice, &bob).await;
    send_texts(&app, &alice, &bob, 5).await;
    let conv = direct_conversation(alice.id, bob.id);
    let base = format!("/v1/conversations/{conv}/messages");

    let (status, page) = app.get(&format!("{base}?limit=2"), &bob).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(seqs(&page), vec![5, 4]);
    assert_eq!(page["next_before_seq"], 4);
    let first = &page["messages"][0];
    assert_eq!(first["conversation_id"], conv.as_str());
    assert_eq!(first["from_user"], alice.id);
    assert_eq!(first["to_user"], bob.id);
    assert_eq!(first["to_group"], 0);
    assert_eq!(first["client_msg_id"], "alice-5");
    assert_eq!(first["content_type"], "text");
    assert_eq!(first["text"], "message 5");
    assert_eq!(first["file"], json!(null));
    assert!(first["msg_id"].as_u64().unwrap() > 0);
    assert!(first["sent_at_ms"].as_u64().unwrap() > 0);

    let (_, page) = app.get(&format!("{base}?before_seq=4&limit=2"), &bob).await;
    assert_eq!(seqs(&page), vec![3, 2]);
    assert_eq!(page["next_before_seq"], 2);
    let (_, page) = app.get(&format!("{base}?before_seq=2&limit=2"), &bob).await;
    assert_eq!(seqs(&page), vec![1]);
    assert_eq!(page["next_before_seq"], json!(null));

    // The default page holds everything here, and the sender sees it too.
    let (_, page) = app.get(&base, &alice).await;
    assert_eq!(seqs(&page), vec![5, 4, 3, 2, 1]);
    assert_eq!(page["next_before_seq"], json!(null));

    for bad in ["limit=0", "limit=201", "limit=abc", "before_seq=-1"] {
        let result = app.get(&format!("{base}?{bad}"), &bob).await;
        assert_error(&result, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    }
    let (status, _) = app.get(&format!("{base}?limit=200"), &bob).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn history_is_for_members_only() {
    let app = TestApp::new().await;
    let alice = app.account("alice").await;
    let bob = app.account("bob").await;
    let carol = app.account("carol").await;
    app.befriend(&alice, &bob).await;
    send_texts(&app, &alice, &bob, 1).await;
    let path = format!(
        "/v1/conversations/{}/messages",
        direct_conversation(alice.id, bob.id)
    );
    let result = app.get(&path, &carol).await;
    assert_error(&result, StatusCode::FORBIDDEN, "FORBIDDEN");
    let unknown = app.get("/v1/conversations/g424242/messages", &carol).await;
    assert_error(&unknown, StatusCode::FORBIDDEN, "FORBIDDEN");
}

#[tokio::test]
async fn conversations_list_renders_the_last_message() {
    let app = TestApp::new().await;
    let alice = app.account("alice").await;
    let bob = app.account("bob").await;
    app.befriend(&alice, &bob).await;
    send_texts(&app, &alice, &bob, 2).await;
    let image = NewMessage {
        from_user: alice.id,
        client_msg_id: "alice-img".into(),
        target: Target::User(bob.id),
        content_type: ContentType::Image as i32,
        text: String::new(),
        file: Some(FileRef {
            file_id: "f1".into(),
            name: "cat.png".into(),
            mime: "image/png".into(),
            size: 42,
        }),
        recipients: vec![bob.id],
    };
    app.store.append_messages(&[image]).await.unwrap();

    let (status, list) = app.get("/v1/conversations", &bob).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    let conv = &list[0];
    assert_eq!(conv["id"], direct_conversation(alice.id, bob.id).as_str());
    assert_eq!(conv["kind"], "direct");
    assert_eq!(conv["peer_user"], alice.id);
    assert_eq!(conv["group_id"], 0);
    assert_eq!(conv["last_seq"], 3);
    assert_eq!(conv["unread"], 3);
    let last = &conv["last_message"];
    assert_eq!(last["seq"], 3);
    assert_eq!(last["content_type"], "image");
    assert_eq!(
        last["file"],
        json!({"file_id": "f1", "name": "cat.png", "mime": "image/png", "size": 42})
    );

    let (_, list) = app.get("/v1/conversations", &alice).await;
    assert_eq!(list[0]["peer_user"], bob.id);
    assert_eq!(list[0]["unread"], 0);

    let carol = app.account("carol").await;
    let (_, list) = app.get("/v1/conversations", &carol).await;
    assert_eq!(list, json!([]));
}
