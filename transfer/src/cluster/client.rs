//! The callers' side of internal links: a connector, an offline worker or a
//! REST API instance keeps one link to every transfer, reconnecting when one
//! drops, and sends each call to one of them.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use futures::FutureExt;
use im_offline_worker::{CommitListener, Committed, LogError};
use im_proto::internal::envelope::Body;
use im_proto::internal::{
    call, Call, CommittedBatch, Delivered, Hello, Notify, Presence, PushTo, Read,
    ReceiptsDelivered, Revoke, Submit,
};
use im_proto::v1::SendMessage;
use im_proto::ErrorCode;
use im_store::{Appended, DeliveredMessage, OfflineKey, UserId};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::peer::{peer_conn, run_peer, PeerConfig};
use crate::notifier::Notifier;
use crate::wire::{self, Inbound};
use crate::{Connectors, PendingSend, Push, TransferApi, TransferError};

/// How long a call may wait for its reply.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

type Waiting = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<(), TransferError>>>>>;

#[derive(Clone)]
struct Live {
    tx: mpsc::Sender<Body>,
    waiting: Waiting,
}

struct Slot {
    addr: String,
    live: Mutex<Option<Live>>,
}

/// What a connector hears from its links to the transfers.
#[derive(Debug)]
pub enum FromTransfer {
    /// Something for one of its devices.
    Push(Box<PushTo>),
    /// A link that was up broke: pushes on it may be lost.
    LinkLost,
    /// A transfer answered the Hello: it pushes on this link from now on,
    /// and what it routed while the connector had no link was dropped.
    Linked,
}

/// Links to every transfer.
pub struct TransferClient {
    slots: Vec<Slot>,
    next_call: AtomicU64,
}

fn unavailable() -> TransferError {
    TransferError::new(
        ErrorCode::ShuttingDown,
        "no transfer reachable; resend later",
    )
}

impl TransferClient {
    /// Starts keeping a link to each of `transfers`, each opened with
    /// `hello`. Pushes from transfers (for connectors), and word of a broken
    /// link, go to `pushes`. The links close at `shutdown`.
    pub fn start(
        transfers: Vec<String>,
        hello: Hello,
        peer: PeerConfig,
        pushes: Option<mpsc::Sender<FromTransfer>>,
        shutdown: CancellationToken,
    ) -> Arc<TransferClient> {
        let client = Arc::new(TransferClient {
            slots: transfers
                .into_iter()
                .map(|addr| Slot {
                    addr,
                    live: Mutex::new(None),
                })
                .collect(),
            next_call: AtomicU64::new(1),
        });
        for i in 0..client.slots.len() {
            tokio::spawn(keep_link(
                client.clone(),
                i,
                hello.clone(),
                peer,
                pushes.clone(),
                shutdown.clone(),
            ));
        }
        client
    }

    /// How many transfers are linked now.
    pub fn linked(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.live.lock().expect("slot lock").is_some())
            .count()
    }

    /// Waits until every transfer is linked, or `timeout`; true if all are.
    pub async fn wait_linked(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.linked() < self.slots.len() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Sends `op` to a transfer chosen by `route` (the same route reaches the
    /// same transfer while it is up, so one device's calls keep their
    /// order) and waits for its reply.
    pub async fn call(&self, route: u64, op: call::Op) -> Result<(), TransferError> {
        self.queue_call(route, op).await?.await
    }

    /// Queues `op` as [`call`](Self::call) does and returns the wait for
    /// its reply. Calls queued one after another reach the transfer in that
    /// order, whether or not the caller waits for each reply first.
    pub async fn queue_call(
        &self,
        route: u64,
        op: call::Op,
    ) -> Result<impl Future<Output = Result<(), TransferError>> + Send + 'static, TransferError>
    {
        let n = self.slots.len();
        let live = (0..n)
            .map(|k| &self.slots[(route as usize).wrapping_add(k) % n.max(1)])
            .find_map(|s| s.live.lock().expect("slot lock").clone())
            .ok_or_else(unavailable)?;
        let call_id = self.next_call.fetch_add(1, Ordering::Relaxed);
        let (done, reply) = oneshot::channel();
        live.waiting
            .lock()
            .expect("waiting lock")
            .insert(call_id, done);
        let call = Body::Call(Call {
            call_id,
            op: Some(op),
        });
        // One deadline for queueing and the answer: a link whose writer is
        // stuck (a peer that stopped reading) fills its queue, and a send
        // into it must not wait for ever.
        let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
        match tokio::time::timeout_at(deadline, live.tx.send(call)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                live.waiting.lock().expect("waiting lock").remove(&call_id);
                return Err(unavailable());
            }
            Err(_) => {
                live.waiting.lock().expect("waiting lock").remove(&call_id);
                return Err(TransferError::new(
                    ErrorCode::Internal,
                    "transfer link did not take the call in time",
                ));
            }
        }
        let waiting = live.waiting;
        Ok(async move {
            match tokio::time::timeout_at(deadline, reply).await {
                Ok(Ok(result)) => result,
                // The link dropped: whether the call took effect is unknown.
                Ok(Err(_)) => Err(unavailable()),
                Err(_) => {
                    waiting.lock().expect("waiting lock").remove(&call_id);
                    Err(TransferError::new(
                        ErrorCode::Internal,
                        "transfer did not answer in time",
                    ))
                }
            }
        })
    }
}

/// Keeps slot `i` linked: connect, say hello, run the link, and on any end
/// fail its waiting calls and connect again.
async fn keep_link(
    client: Arc<TransferClient>,
    i: usize,
    hello: Hello,
    peer: PeerConfig,
    pushes: Option<mpsc::Sender<FromTransfer>>,
    shutdown: CancellationToken,
) {
    let addr = client.slots[i].addr.clone();
    let mut backoff = Duration::from_millis(50);
    while !shutdown.is_cancelled() {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            stream = TcpStream::connect(addr.as_str()) => stream,
        };
        let stream = match stream {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(%addr, %error, "transfer not reachable");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let linked_at = tokio::time::Instant::now();
        let (out_tx, out_rx) = mpsc::channel(4096);
        let (in_tx, mut in_rx) = mpsc::channel(4096);
        let _ = out_tx.send(Body::Hello(hello.clone())).await;
        let waiting: Waiting = Arc::default();
        let link = tokio::spawn(run_peer(
            peer_conn(stream),
            peer,
            out_rx,
            in_tx,
            shutdown.child_token(),
        ));
        *client.slots[i].live.lock().expect("slot lock") = Some(Live {
            tx: out_tx,
            waiting: waiting.clone(),
        });
        tracing::info!(%addr, "linked to transfer");
        while let Some(body) = in_rx.recv().await {
            let from = match body {
                Body::Reply(r) => {
                    let done = waiting.lock().expect("waiting lock").remove(&r.call_id);
                    if let Some(done) = done {
                        let _ = done.send(r.error.map_or(Ok(()), |e| Err(wire::transfer_error(e))));
                    }
                    continue;
                }
                Body::Push(p) => FromTransfer::Push(Box::new(p)),
                Body::Hello(_) => FromTransfer::Linked,
                _ => continue,
            };
            if let Some(pushes) = &pushes {
                if pushes.send(from).await.is_err() {
                    break;
                }
            }
        }
        *client.slots[i].live.lock().expect("slot lock") = None;
        // Dropping the senders fails every call still waiting on this link.
        waiting.lock().expect("waiting lock").clear();
        if let Some(pushes) = &pushes {
            let _ = pushes.send(FromTransfer::LinkLost).await;
        }
        match link.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%addr, %error, "transfer link failed; reconnecting"),
            Err(error) => tracing::error!(%addr, %error, "transfer link task panicked"),
        }
        // A link that ends at once (a proxy whose transfer is down accepts
        // and closes) is retried with backoff too, not in a tight loop.
        if linked_at.elapsed() < Duration::from_secs(1) {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(1));
        } else {
            backoff = Duration::from_millis(50);
        }
    }
}

/// How long a send waits for its stored copy (its SENT) before it is
/// failed as "resend later", when SENTs come back quickly. The copy can be
/// lost: pushed while user status did not know the device (a restarted
/// Redis), or routed by no transfer. See [`Patience`] for the wait under load.
const SENT_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a send may wait for its SENT before it counts as lost.
///
/// A copy is rarely lost, but under load it can be slow: a send the
/// transfer took is in Kafka, and its SENT comes once the worker has
/// written it, behind everything queued before it. Failing a send that is
/// only queued makes its client send it again; the store deduplicates the
/// resend, but it still goes through Kafka and the worker, which lengthens
/// the queue, so more sends time out: a retry storm (at 40 s of queue,
/// 99,190 resends in three runs halved what was delivered). So the wait is
/// the base plus twice the slowest recent SENT, which falls back to the
/// base slowly (half of the excess in about 22 s) once SENTs come back
/// quickly again, or stop coming at all.
#[derive(Debug, Clone, Copy)]
struct Patience {
    base: Duration,
    recent: Duration,
}

impl Patience {
    fn new(base: Duration) -> Self {
        Patience {
            base,
            recent: Duration::ZERO,
        }
    }

    /// Takes the slowest SENT answered since the last call (called once a
    /// second) and returns how long a send may now wait.
    fn update(&mut self, slowest: Duration) -> Duration {
        self.recent = slowest.max(self.recent.mul_f64(31.0 / 32.0));
        self.base + self.recent * 2
    }
}

type SendKey = (UserId, String, String);
type SendWaiter = (Instant, oneshot::Sender<Result<Appended, LogError>>);

/// The sends waiting for their SENT, and how long the slowest SENT answered
/// since the expiry last looked took, in ms.
#[derive(Default)]
struct SendWaiters {
    waiting: DashMap<SendKey, SendWaiter>,
    slowest_ms: AtomicU64,
}

/// A connector's transfer: its calls go over internal links; the SENT of a
/// message arrives later as the stored message pushed to its own device.
pub struct RemoteTransfer {
    client: Arc<TransferClient>,
    sends: Arc<SendWaiters>,
}

impl RemoteTransfer {
    /// Links to `transfers` as connector `connector_id` and hands what they
    /// push to `local` (the connector's registry).
    pub fn start(
        transfers: Vec<String>,
        connector_id: &str,
        local: Arc<dyn Connectors>,
        peer: PeerConfig,
        shutdown: CancellationToken,
    ) -> RemoteTransfer {
        let (push_tx, push_rx) = mpsc::channel(4096);
        let hello = Hello {
            role: "connector".into(),
            connector_id: connector_id.to_owned(),
        };
        let client = TransferClient::start(transfers, hello, peer, Some(push_tx), shutdown.clone());
        let sends: Arc<SendWaiters> = Arc::default();
        tokio::spawn(deliver_pushes(
            push_rx,
            connector_id.to_owned(),
            local,
            sends.clone(),
        ));
        tokio::spawn(expire_sends(sends.clone(), shutdown));
        RemoteTransfer { client, sends }
    }

    /// The links.
    pub fn client(&self) -> &Arc<TransferClient> {
        &self.client
    }
}

/// Hands pushes to the connector's sessions; a device's own new message
/// also answers its pending send (after the session has noted it, as in a
/// single process where the router runs before the sender hears SENT).
///
/// When a link breaks, what it carried may be lost: every session re-reads
/// from the store what is newer than what it has, and every send still
/// waiting for its SENT is failed with a retryable error (a resend with the
/// same client id is answered with the stored message, or stored once).
/// Every session re-reads again when a transfer links (again): what it
/// routed to this connector while there was no link was dropped, and a
/// transfer killed while it committed may have had that commit land after
/// the first re-read.
async fn deliver_pushes(
    mut rx: mpsc::Receiver<FromTransfer>,
    connector_id: String,
    local: Arc<dyn Connectors>,
    sends: Arc<SendWaiters>,
) {
    while let Some(from) = rx.recv().await {
        let p = match from {
            FromTransfer::Push(p) => *p,
            FromTransfer::LinkLost => {
                if !sends.waiting.is_empty() {
                    tracing::warn!(
                        pending = sends.waiting.len(),
                        "transfer link lost; failing sends still waiting for SENT"
                    );
                }
                sends.waiting.clear();
                local.resync_all();
                continue;
            }
            FromTransfer::Linked => {
                local.resync_all();
                continue;
            }
        };
        match wire::inbound(p) {
            Some(Inbound::Push(user, device, push)) => {
                let own = match &push {
                    Push::Message {
                        message,
                        origin_device,
                    } if message.from_user == user && **origin_device == *device => {
                        Some(Appended {
                            message: (**message).clone(),
                            duplicate: false,
                        })
                    }
                    _ => None,
                };
                local.push(&connector_id, user, &device, push);
                if let Some(appended) = own {
                    answer(&sends, user, device, appended);
                }
            }
            Some(Inbound::Duplicate(user, device, appended)) => {
                answer(&sends, user, device, appended)
            }
            None => tracing::warn!("malformed push from a transfer dropped"),
        }
    }
}

fn answer(sends: &SendWaiters, user: UserId, device: String, appended: Appended) {
    let key = (user, device, appended.message.client_msg_id.clone());
    if let Some((_, (since, done))) = sends.waiting.remove(&key) {
        let waited = since.elapsed().as_millis() as u64;
        sends.slowest_ms.fetch_max(waited, Ordering::Relaxed);
        let _ = done.send(Ok(appended));
    }
}

/// Fails the sends that waited longer than their [`Patience`], once a
/// second.
async fn expire_sends(sends: Arc<SendWaiters>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut patience = Patience::new(SENT_TIMEOUT);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let slowest = Duration::from_millis(sends.slowest_ms.swap(0, Ordering::Relaxed));
        let wait = patience.update(slowest);
        let late: Vec<SendKey> = sends
            .waiting
            .iter()
            .filter(|e| e.value().0.elapsed() >= wait)
            .map(|e| e.key().clone())
            .collect();
        if !late.is_empty() {
            tracing::warn!(
                sends = late.len(),
                ?wait,
                "no SENT in time; asking for resends"
            );
        }
        for key in late {
            let expired = sends
                .waiting
                .remove_if(&key, |_, (since, _)| since.elapsed() >= wait);
            if let Some((_, (_, done))) = expired {
                let _ = done.send(Err(LogError::Unconfirmed));
            }
        }
    }
}

#[async_trait]
impl TransferApi for RemoteTransfer {
    async fn submit(
        &self,
        user: UserId,
        device: &str,
        send: SendMessage,
    ) -> Result<PendingSend, TransferError> {
        let key = (user, device.to_owned(), send.client_msg_id.clone());
        let (done, pending) = oneshot::channel();
        // Registered before the call: the stored copy may come back through
        // another transfer before this call's reply.
        self.sends
            .waiting
            .insert(key.clone(), (Instant::now(), done));
        let op = call::Op::Submit(Submit {
            user,
            device: device.to_owned(),
            send: Some(send),
        });
        // Returns once the call is queued on the link, in this link's order,
        // not once the transfer answered: a connector link waiting out each
        // answer (the check and the Kafka ack, one internal round trip
        // each way) before reading its next frame could take only a few
        // dozen sends a second. The answer comes ahead of the SENT.
        let answer = match self.client.queue_call(user, op).await {
            Ok(answer) => answer,
            Err(error) => {
                self.sends.waiting.remove(&key);
                return Err(error);
            }
        };
        let sends = self.sends.clone();
        let accepted = async move {
            let answered = answer.await;
            if answered.is_err() {
                sends.waiting.remove(&key);
            }
            answered
        };
        Ok(PendingSend::after(accepted.boxed(), pending))
    }

    async fn delivered(
        &self,
        user: UserId,
        device: &str,
        messages: &[DeliveredMessage],
    ) -> Result<(), TransferError> {
        let op = call::Op::Delivered(Delivered {
            user,
            device: device.to_owned(),
            messages: wire::message_refs(messages),
        });
        self.client.call(user, op).await
    }

    async fn receipts_delivered(
        &self,
        user: UserId,
        keys: &[OfflineKey],
    ) -> Result<(), TransferError> {
        let op = call::Op::ReceiptsDelivered(ReceiptsDelivered {
            user,
            keys: wire::receipt_keys(keys),
        });
        self.client.call(user, op).await
    }

    async fn read(&self, user: UserId, conversation: &str, seq: u64) -> Result<(), TransferError> {
        let op = call::Op::Read(Read {
            user,
            conversation_id: conversation.to_owned(),
            seq,
        });
        self.client.call(user, op).await
    }

    async fn presence(&self, user: UserId, online: bool) {
        if let Err(error) = self
            .client
            .call(user, call::Op::Presence(Presence { user, online }))
            .await
        {
            tracing::warn!(%error, user, "presence not sent");
        }
    }
}

/// The REST API's notifier in a cluster: events go through a transfer.
pub struct RemoteNotifier {
    client: Arc<TransferClient>,
}

impl RemoteNotifier {
    /// Links to `transfers` as a REST API instance.
    pub fn start(transfers: Vec<String>, peer: PeerConfig, shutdown: CancellationToken) -> Self {
        let hello = Hello {
            role: "rest-api".into(),
            connector_id: String::new(),
        };
        RemoteNotifier {
            client: TransferClient::start(transfers, hello, peer, None, shutdown),
        }
    }

    /// The links.
    pub fn client(&self) -> &Arc<TransferClient> {
        &self.client
    }
}

#[async_trait]
impl Notifier for RemoteNotifier {
    async fn notify(&self, users: &[UserId], event: im_proto::Body) {
        let op = call::Op::Notify(Notify {
            users: users.to_vec(),
            event: Some(im_proto::Frame::new(0, event)),
        });
        let route = users.first().copied().unwrap_or(0);
        if let Err(error) = self.client.call(route, op).await {
            tracing::warn!(%error, "event not sent; it is live-only");
        }
    }

    async fn revoke(&self, user: UserId, token_hash: &str) {
        let op = call::Op::Revoke(Revoke {
            user,
            token_hash: token_hash.to_owned(),
        });
        if let Err(error) = self.client.call(user, op).await {
            tracing::warn!(%error, "revoke not sent; the token is revoked in the store");
        }
    }
}

/// The offline worker's listener in a cluster: each committed batch goes to
/// a transfer to be routed, retried on another transfer until one takes it
/// or `give_up_after` passes (the messages are stored either way; devices
/// then get them at their next sync).
pub struct RemoteCommits {
    client: Arc<TransferClient>,
    give_up_after: Duration,
}

impl RemoteCommits {
    /// Links to `transfers` as an offline worker.
    pub fn start(transfers: Vec<String>, peer: PeerConfig, shutdown: CancellationToken) -> Self {
        let hello = Hello {
            role: "offline-worker".into(),
            connector_id: String::new(),
        };
        RemoteCommits {
            client: TransferClient::start(transfers, hello, peer, None, shutdown),
            give_up_after: Duration::from_secs(60),
        }
    }

    /// The links.
    pub fn client(&self) -> &Arc<TransferClient> {
        &self.client
    }
}

#[async_trait]
impl CommitListener for RemoteCommits {
    async fn committed(&self, batch: &[Committed]) {
        let messages: Vec<_> = batch.iter().map(wire::committed_message).collect();
        let deadline = tokio::time::Instant::now() + self.give_up_after;
        loop {
            let op = call::Op::Committed(CommittedBatch {
                messages: messages.clone(),
            });
            match self.client.call(0, op).await {
                Ok(()) => return,
                Err(error) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!(%error, "routing a committed batch failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => {
                    tracing::error!(%error, batch = batch.len(), "committed batch not routed; devices get it at their next sync");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = SENT_TIMEOUT;

    #[test]
    fn quick_sents_keep_the_base_wait() {
        let mut patience = Patience::new(BASE);
        for _ in 0..10 {
            assert_eq!(
                patience.update(Duration::from_millis(40)),
                BASE + 2 * Duration::from_millis(40)
            );
        }
        assert_eq!(Patience::new(BASE).update(Duration::ZERO), BASE);
    }

    #[test]
    fn a_long_queue_is_waited_out_not_failed() {
        // SENTs come back after 40 s: a send queued behind them must not be
        // failed at 15 s (that is the retry storm).
        let mut patience = Patience::new(BASE);
        let wait = patience.update(Duration::from_secs(40));
        assert!(wait > Duration::from_secs(40), "{wait:?}");
        // A second without answers does not shrink it at once.
        let wait = patience.update(Duration::ZERO);
        assert!(wait > Duration::from_secs(90), "{wait:?}");
    }

    #[test]
    fn the_wait_falls_back_to_the_base_slowly() {
        let mut patience = Patience::new(BASE);
        let first = patience.update(Duration::from_secs(40));
        let mut last = first;
        for _ in 0..22 {
            let wait = patience.update(Duration::from_millis(10));
            assert!(wait < last, "{wait:?} after {last:?}");
            last = wait;
        }
        // About half the excess is gone after 22 s.
        let excess = (last - BASE).as_secs_f64() / (first - BASE).as_secs_f64();
        assert!((0.45..0.55).contains(&excess), "{excess}");
        for _ in 0..400 {
            last = patience.update(Duration::ZERO);
        }
        assert!(last - BASE < Duration::from_millis(100), "{last:?}");
    }
}
