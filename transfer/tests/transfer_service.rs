//! A transfer's internal-link port under bad input: garbage, oversized
//! frames and calls before Hello close that link only; the transfer keeps
//! serving well-behaved callers and answers bad calls with errors. And a
//! connector whose transfer comes back re-reads the store for what was
//! routed while it had no link.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use im_offline_worker::{KafkaConfig, KafkaLog};
use im_proto::internal::{call, Hello, Presence, Submit};
use im_proto::v1::SendMessage;
use im_proto::ErrorCode;
use im_store::{SqliteStore, Store, UserId};
use im_transfer::cluster::{
    serve, ConnectorLinks, PeerConfig, RemoteTransfer, TransferClient, TransferService,
};
use im_transfer::{Connectors, Push, Router, Transfer};
use im_user_status::MemoryUserStatus;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

async fn start_transfer(dir: &tempfile::TempDir) -> (String, Arc<dyn Store>, CancellationToken) {
    start_transfer_at(dir, "127.0.0.1:0").await
}

async fn start_transfer_at(
    dir: &tempfile::TempDir,
    addr: &str,
) -> (String, Arc<dyn Store>, CancellationToken) {
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
    // A transfer started again on its address waits for the old one's
    // listener to close.
    let mut tries = 0;
    let listener = loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => break listener,
            Err(_) if tries < 100 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("cannot listen on {addr}: {error}"),
        }
    };
    let addr = listener.local_addr().unwrap().to_string();
    let stop = CancellationToken::new();
    tokio::spawn(serve(listener, service, stop.clone()));
    (addr, store, stop)
}

/// A connector's sessions as its links see them: counts the re-reads.
#[derive(Default)]
struct Sessions {
    resyncs: AtomicUsize,
}

impl Connectors for Sessions {
    fn push(&self, _: &str, _: UserId, _: &str, _: Push) {}

    fn resync_all(&self) {
        self.resyncs.fetch_add(1, Ordering::SeqCst);
    }
}

impl Sessions {
    /// Waits up to 5 s for at least `n` re-reads; how many there were.
    async fn resynced(&self, n: usize) -> usize {
        for _ in 0..100 {
            if self.resyncs.load(Ordering::SeqCst) >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.resyncs.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn a_connector_re_reads_the_store_when_its_transfer_is_back() {
    let first = tempfile::tempdir().unwrap();
    let (addr, _, stop_first) = start_transfer(&first).await;
    let sessions = Arc::new(Sessions::default());
    let stop = CancellationToken::new();
    let remote = RemoteTransfer::start(
        vec![addr.clone()],
        "c1",
        sessions.clone(),
        PeerConfig::default(),
        stop.clone(),
    );
    assert!(remote.client().wait_linked(Duration::from_secs(5)).await);
    assert_eq!(sessions.resynced(1).await, 1, "a re-read once linked");

    // The transfer goes away: one re-read for what its link carried.
    stop_first.cancel();
    assert_eq!(sessions.resynced(2).await, 2, "a re-read at the loss");
    // Until it is back, what it routes to this connector is dropped (a
    // commit it sent as it died may land now too); once back and linked,
    // the sessions read again.
    let second = tempfile::tempdir().unwrap();
    let (_, _, stop_second) = start_transfer_at(&second, &addr).await;
    assert!(remote.client().wait_linked(Duration::from_secs(5)).await);
    assert_eq!(sessions.resynced(3).await, 3, "a re-read once linked again");
    stop.cancel();
    stop_second.cancel();
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
