//! A transfer's internal-link port under bad input: garbage, oversized
//! frames and calls before Hello close that link only; the transfer keeps
//! serving well-behaved callers and answers bad calls with errors.

use std::sync::Arc;
use std::time::Duration;

use im_offline_worker::{KafkaConfig, KafkaLog};
use im_proto::internal::{call, Hello, Presence, Submit};
use im_proto::v1::SendMessage;
use im_proto::ErrorCode;
use im_store::{SqliteStore, Store};
use im_transfer::cluster::{serve, ConnectorLinks, PeerConfig, TransferClient, TransferService};
use im_transfer::{Router, Transfer};
use im_user_status::MemoryUserStatus;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

async fn start_transfer(dir: &tempfile::TempDir) -> (String, Arc<dyn Store>, CancellationToken) {
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("im.db")).await.unwrap());
    let links = Arc::new(ConnectorLinks::new());
    let router = Arc::new(Router::new(
        Arc::new(MemoryUserStatus::new()),
        links.clone(),
    ));
    // No broker: nothing here gets as far as Kafka.
    let log = KafkaLog::connect(&KafkaConfig {
        brokers: "127.0.0.1:1".into(),
        topic: "unused".into(),
    })
    .unwrap();
    let service = Arc::new(TransferService {
        transfer: Arc::new(Transfer::without_log(store.clone(), router)),
        log: Arc::new(log),
        links,
        peer: PeerConfig::default(),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = CancellationToken::new();
    tokio::spawn(serve(listener, service, stop.clone()));
    (addr, store, stop)
}

/// Writes `bytes` and expects the transfer to close the connection.
async fn closes_after(addr: &str, bytes: &[u8]) {
    let mut sock = TcpStream::connect(addr).await.unwrap();
    sock.write_all(bytes).await.unwrap();
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "link left open after {bytes:?}");
}

#[tokio::test]
async fn bad_frames_close_one_link_and_the_transfer_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, store, stop) = start_transfer(&dir).await;
    closes_after(&addr, b"\x00\x00\x00\x05hello").await;
    closes_after(&addr, b"\xff\xff\xff\xff").await;
    // A well-formed call before Hello.
    let call = im_proto::internal::Envelope {
        id: 1,
        body: Some(im_proto::internal::envelope::Body::Call(
            im_proto::internal::Call {
                call_id: 1,
                op: Some(call::Op::Presence(Presence {
                    user: 1,
                    online: true,
                })),
            },
        )),
    };
    let mut bytes = Vec::new();
    let encoded = prost::Message::encode_to_vec(&call);
    bytes.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&encoded);
    closes_after(&addr, &bytes).await;

    let client = TransferClient::start(
        vec![addr],
        Hello {
            role: "connector".into(),
            connector_id: "c1".into(),
        },
        PeerConfig::default(),
        None,
        stop.clone(),
    );
    assert!(client.wait_linked(Duration::from_secs(5)).await);
    client
        .call(
            1,
            call::Op::Presence(Presence {
                user: 1,
                online: true,
            }),
        )
        .await
        .unwrap();

    let alice = store.create_user("alice", "x").await.unwrap();
    let bob = store.create_user("bob", "x").await.unwrap();
    let submit = |send: Option<SendMessage>| {
        call::Op::Submit(Submit {
            user: alice.id,
            device: "phone".into(),
            send,
        })
    };
    let error = client.call(alice.id, submit(None)).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::BadRequest);
    let empty = SendMessage {
        client_msg_id: "m1".into(),
        to_user: bob.id,
        ..Default::default()
    };
    let error = client
        .call(alice.id, submit(Some(empty)))
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::BadRequest);
    let stranger = SendMessage {
        client_msg_id: "m2".into(),
        to_user: bob.id,
        content_type: im_proto::v1::ContentType::Text as i32,
        text: "hi".into(),
        ..Default::default()
    };
    let error = client
        .call(alice.id, submit(Some(stranger)))
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::NotFriends);
    let error = client
        .call(
            1,
            call::Op::ReceiptsDelivered(im_proto::internal::ReceiptsDelivered {
                user: 1,
                keys: vec![im_proto::internal::ReceiptKey {
                    msg_id: 1,
                    kind: 99,
                    by_user: 2,
                }],
            }),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::BadRequest);
    stop.cancel();
}
