//! The transfer's side of internal links: it accepts links from connectors,
//! offline workers and REST API instances, answers their calls, and pushes
//! to connectors down the links they opened.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use im_offline_worker::{KafkaLog, Submission};
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
            if role == "connector" && !connector_id.is_empty() {
                let link = service.links.register(&connector_id, out_tx.clone());
                // Pushes for this connector are routed here from now on; it
                // re-reads the store for those dropped while it had no link.
                let _ = out_tx.send(Body::Hello(transfer_hello())).await;
                Some((link, connector_id))
            } else {
                None
            }
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
    let (submits, checking) = mpsc::channel(CHECKING);
    tasks.spawn(publish_in_order(
        service.log.clone(),
        checking,
        out_tx.clone(),
        tasks.clone(),
    ));
    while let Some(body) = in_rx.recv().await {
        if let Body::Call(call) = body {
            handle_call(&service, call, &out_tx, &submits, &tasks).await;
        }
    }
    drop(submits);
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

/// A transfer's answer to a connector's Hello.
fn transfer_hello() -> Hello {
    Hello {
        role: "transfer".into(),
        connector_id: String::new(),
    }
}

fn reply(out: &mpsc::Sender<Body>, call_id: u64, result: Result<(), TransferError>) {
    let error = result.err().map(|e| wire::wire_error(&e));
    // A closed link fails the caller's pending call on its side.
    let _ = out.try_send(Body::Reply(Reply { call_id, error }));
}

/// A submit being checked: its call and the check's outcome.
type Checking = BoxFuture<'static, (u64, Result<Submission, TransferError>)>;

/// Submits of one link checked at once. A check waits for the store (a
/// friendship or membership read); checked one at a time, a link carried
/// one message per read's round trip, whatever the load.
const CHECKING: usize = 1024;

/// Publishes a link's submits to Kafka in the order they came, each once
/// its check is through; the checks themselves run side by side (and the
/// store reads them together). A refused submit is answered at its turn.
async fn publish_in_order(
    log: Arc<KafkaLog>,
    submits: mpsc::Receiver<Checking>,
    out: mpsc::Sender<Body>,
    tasks: TaskTracker,
) {
    in_order(submits, CHECKING, |(call_id, checked)| {
        publish(&log, &out, &tasks, call_id, checked)
    })
    .await;
}

/// Runs up to `at_once` of the futures from `queue` side by side and hands
/// their outputs to `each` in queue order, until the queue closes and all
/// have finished.
async fn in_order<T>(
    mut queue: mpsc::Receiver<BoxFuture<'static, T>>,
    at_once: usize,
    mut each: impl FnMut(T),
) {
    let mut running = FuturesOrdered::new();
    let mut open = true;
    loop {
        tokio::select! {
            biased;
            Some(done) = running.next(), if !running.is_empty() => each(done),
            next = queue.recv(), if open && running.len() < at_once => match next {
                Some(future) => running.push_back(future),
                None => open = false,
            },
            else => return,
        }
    }
}

/// Queues a checked submit to Kafka and answers it once Kafka has it (the
/// ack is awaited apart, so the next submit need not wait for it); answers
/// a refused one at once.
fn publish(
    log: &KafkaLog,
    out: &mpsc::Sender<Body>,
    tasks: &TaskTracker,
    call_id: u64,
    checked: Result<Submission, TransferError>,
) {
    let submission = match checked {
        Ok(submission) => submission,
        Err(error) => return reply(out, call_id, Err(error)),
    };
    let published = log.publish(&submission);
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

/// Answers one call. Calls whose order matters (submits, committed batches,
/// presence, events) are handled in link order; the rest run concurrently.
/// Submits are checked side by side but published in order (see
/// [`publish_in_order`]).
async fn handle_call(
    service: &Arc<TransferService>,
    call: Call,
    out: &mpsc::Sender<Body>,
    submits: &mpsc::Sender<Checking>,
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
            let check = async move {
                let checked = transfer.check(submit.user, &submit.device, send).await;
                (call_id, checked)
            };
            if submits.send(check.boxed()).await.is_err() {
                reply(
                    out,
                    call_id,
                    Err(TransferError::new(
                        ErrorCode::ShuttingDown,
                        "transfer is shutting down; resend later",
                    )),
                );
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use tokio::sync::oneshot;
    use tokio::time::timeout;

    use super::*;

    #[tokio::test]
    async fn checks_run_side_by_side_and_finish_in_order() {
        let (queue, queued) = mpsc::channel(8);
        let (done_tx, mut done) = mpsc::unbounded_channel();
        let runner = tokio::spawn(in_order(queued, CHECKING, move |n: u32| {
            done_tx.send(n).unwrap();
        }));
        // The first check waits on `release`; the two behind it count
        // themselves as started and finish at once.
        let (release, held) = oneshot::channel::<()>();
        let started = Arc::new(AtomicUsize::new(0));
        let first = async move {
            held.await.unwrap();
            1
        };
        queue.send(first.boxed()).await.unwrap();
        for n in [2, 3] {
            let started = started.clone();
            let quick = async move {
                started.fetch_add(1, Ordering::SeqCst);
                n
            };
            queue.send(quick.boxed()).await.unwrap();
        }
        let both_started = async {
            while started.load(Ordering::SeqCst) < 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        assert!(
            timeout(Duration::from_secs(5), both_started).await.is_ok(),
            "the checks behind a slow one did not start before it finished"
        );
        assert!(done.try_recv().is_err(), "finished ahead of the first");

        release.send(()).unwrap();
        drop(queue);
        runner.await.unwrap();
        let mut order = Vec::new();
        while let Ok(n) = done.try_recv() {
            order.push(n);
        }
        assert_eq!(order, [1, 2, 3]);
    }
}
