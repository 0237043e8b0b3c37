//! The transfer's side of internal links: it accepts links from connectors,
//! offline workers and REST API instances, answers their calls, and pushes
//! to connectors down the links they opened.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use im_offline_worker::KafkaLog;
use im_proto::internal::envelope::Body;
use im_proto::internal::{call, Call, Hello, Reply};
use im_proto::ErrorCode;
use im_store::UserId;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::peer::{peer_conn, run_peer, PeerConfig};
use crate::notifier::Notifier;
use crate::wire;
use crate::{Connectors, Push, Transfer, TransferApi, TransferError};

/// Pushes queued for one connector before its link is considered stuck.
const PUSH_QUEUE: usize = 65_536;

/// The links connectors opened to this transfer, by connector id.
#[derive(Default)]
pub struct ConnectorLinks {
    links: DashMap<String, (u64, mpsc::Sender<Body>)>,
    next_link: AtomicU64,
}

impl ConnectorLinks {
    /// No connectors yet.
    pub fn new() -> Self {
        ConnectorLinks::default()
    }

    fn register(&self, connector: &str, tx: mpsc::Sender<Body>) -> u64 {
        let id = self.next_link.fetch_add(1, Ordering::Relaxed);
        // A reconnecting connector replaces its old link.
        self.links.insert(connector.to_owned(), (id, tx));
        id
    }

    fn deregister(&self, connector: &str, link: u64) {
        self.links.remove_if(connector, |_, (id, _)| *id == link);
    }

    fn send(&self, connector: &str, body: Body) {
        let Some(entry) = self.links.get(connector) else {
            // Its users' status entries expire; they catch up at next login.
            tracing::debug!(connector, "push for an unconnected connector dropped");
            return;
        };
        if entry.1.try_send(body).is_err() {
            tracing::warn!(connector, "connector link is full or closed; push dropped");
        }
    }
}

impl Connectors for ConnectorLinks {
    fn push(&self, connector: &str, user: UserId, device: &str, push: Push) {
        if let Some(push) = wire::push_to(user, device, &push) {
            self.send(connector, Body::Push(push));
        }
    }
}

/// Everything a transfer process serves internal links with.
pub struct TransferService {
    /// Checks, receipts, presence; its router pushes through `links`.
    pub transfer: Arc<Transfer>,
    /// Where checked messages go.
    pub log: Arc<KafkaLog>,
    /// The connectors' links.
    pub links: Arc<ConnectorLinks>,
    /// Link tuning.
    pub peer: PeerConfig,
}

/// Accepts internal links until `shutdown`, then waits for them to end.
pub async fn serve(
    listener: TcpListener,
    service: Arc<TransferService>,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                tracing::debug!(%peer, "internal link accepted");
                tracker.spawn(serve_link(stream, service.clone(), shutdown.clone()));
            }
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    tracker.close();
    tracker.wait().await;
}

async fn serve_link(stream: TcpStream, service: Arc<TransferService>, shutdown: CancellationToken) {
    let (out_tx, out_rx) = mpsc::channel(PUSH_QUEUE);
    let (in_tx, mut in_rx) = mpsc::channel(1024);
    let link_done = shutdown.child_token();
    let peer = tokio::spawn(run_peer(
        peer_conn(stream),
        service.peer,
        out_rx,
        in_tx,
        link_done.clone(),
    ));
    let hello = tokio::time::timeout(service.peer.idle_timeout, in_rx.recv()).await;
    let registered = match hello {
        Ok(Some(Body::Hello(Hello { role, connector_id }))) => {
            tracing::info!(%role, %connector_id, "internal link up");
            (role == "connector" && !connector_id.is_empty()).then(|| {
                (
                    service.links.register(&connector_id, out_tx.clone()),
                    connector_id,
                )
            })
        }
        other => {
            match other {
                // A port probe, or a caller that went away at once.
                Ok(None) => tracing::debug!("internal link closed before Hello"),
                _ => tracing::warn!("internal link did not start with Hello; closing"),
            }
            link_done.cancel();
            let _ = peer.await;
            return;
        }
    };
    let tasks = TaskTracker::new();
    while let Some(body) = in_rx.recv().await {
        if let Body::Call(call) = body {
            handle_call(&service, call, &out_tx, &tasks).await;
        }
    }
    if let Some((link, connector)) = &registered {
        service.links.deregister(connector, *link);
    }
    tasks.close();
    tasks.wait().await;
    link_done.cancel();
    match peer.await {
        Ok(Ok(())) => tracing::info!("internal link closed"),
        Ok(Err(error)) => tracing::warn!(%error, "internal link failed"),
        Err(error) => tracing::error!(%error, "internal link task panicked"),
    }
}

fn reply(out: &mpsc::Sender<Body>, call_id: u64, result: Result<(), TransferError>) {
    let error = result.err().map(|e| wire::wire_error(&e));
    // A closed link fails the caller's pending call on its side.
    let _ = out.try_send(Body::Reply(Reply { call_id, error }));
}

/// Answers one call. Calls whose order matters (submits, committed batches,
/// presence, events) are handled in link order; the rest run concurrently.
async fn handle_call(
    service: &Arc<TransferService>,
    call: Call,
    out: &mpsc::Sender<Body>,
    tasks: &TaskTracker,
) {
    let call_id = call.call_id;
    let Some(op) = call.op else {
        reply(
            out,
            call_id,
            Err(TransferError::new(ErrorCode::BadRequest, "empty call")),
        );
        return;
    };
    let transfer = service.transfer.clone();
    match op {
        call::Op::Submit(submit) => {
            let Some(send) = submit.send else {
                reply(
                    out,
                    call_id,
                    Err(TransferError::new(
                        ErrorCode::BadRequest,
                        "submit without a message",
                    )),
                );
                return;
            };
            // Checked and queued to Kafka in link order; the ack is awaited
            // apart, so the next submit need not wait for it.
            match transfer.check(submit.user, &submit.device, send).await {
                Ok(submission) => {
                    let published = service.log.publish(&submission);
                    let out = out.clone();
                    tasks.spawn(async move {
                        let result = published.await.map_err(|e| {
                            tracing::warn!(error = %e, "kafka publish failed");
                            TransferError::new(
                                ErrorCode::Internal,
                                "message could not be stored; resend later",
                            )
                        });
                        reply(&out, call_id, result);
                    });
                }
                Err(error) => reply(out, call_id, Err(error)),
            }
        }
        call::Op::Delivered(d) => {
            let out = out.clone();
            tasks.spawn(async move {
                let messages = wire::delivered_messages(d.messages);
                let result = transfer.delivered(d.user, &d.device, &messages).await;
                reply(&out, call_id, result);
            });
        }
        call::Op::ReceiptsDelivered(r) => {
            let out = out.clone();
            tasks.spawn(async move {
                let result = match wire::offline_keys(r.keys) {
                    Ok(keys) => transfer.receipts_delivered(r.user, &keys).await,
                    Err(e) => Err(e),
                };
                reply(&out, call_id, result);
            });
        }
        call::Op::Read(r) => {
            let out = out.clone();
            tasks.spawn(async move {
                let result = transfer.read(r.user, &r.conversation_id, r.seq).await;
                reply(&out, call_id, result);
            });
        }
        call::Op::Presence(p) => {
            transfer.presence(p.user, p.online).await;
            reply(out, call_id, Ok(()));
        }
        call::Op::Notify(n) => {
            let result = match wire::event_body(n.event) {
                Some(event) => {
                    transfer.router().notify(&n.users, event).await;
                    Ok(())
                }
                None => Err(TransferError::new(
                    ErrorCode::BadRequest,
                    "notify without an event",
                )),
            };
            reply(out, call_id, result);
        }
        call::Op::Revoke(r) => {
            transfer.router().revoke(r.user, &r.token_hash).await;
            reply(out, call_id, Ok(()));
        }
        call::Op::Committed(batch) => {
            let committed: Vec<_> = batch
                .messages
                .into_iter()
                .filter_map(wire::committed)
                .collect();
            route_committed(service, &committed).await;
            reply(out, call_id, Ok(()));
        }
    }
}

/// Routes a batch the offline worker committed: new messages to every
/// online device of their recipients and sender, and for a resend the
/// store already had, the stored copy back to the sending device only (its
/// connector answers the pending send with it).
async fn route_committed(service: &TransferService, batch: &[im_offline_worker::Committed]) {
    use im_offline_worker::CommitListener as _;
    service.transfer.router().committed(batch).await;
    for c in batch.iter().filter(|c| c.appended.duplicate) {
        let devices = match service.transfer.router().status().lookup(c.from_user).await {
            Ok(devices) => devices,
            Err(error) => {
                tracing::warn!(%error, "status lookup failed; the resend is answered at its next try");
                continue;
            }
        };
        for loc in devices.iter().filter(|l| l.device == c.origin_device) {
            let push = wire::duplicate_push(c.from_user, &loc.device, &c.appended.message);
            service.links.send(&loc.connector, Body::Push(push));
        }
    }
}
