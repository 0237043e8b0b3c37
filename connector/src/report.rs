//! A link's acks on their way to the store. At most one write is in flight
//! per link, and it takes every ack that arrived while the one before it
//! ran: a link costs one store call per store round trip, not one per ack
//! frame, and it goes on sending while its acks are written. An offline
//! drain in a cluster, where each call is a trip to a transfer and a MySQL
//! transaction, waited for each of those before sending on.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use im_store::UserId;
use im_transfer::{TransferApi, TransferError};

use crate::session::{Acked, Session};
use crate::Connector;

/// Acked items waiting past which the link sends nothing new until a write
/// is through: a store that falls behind slows the link instead of growing
/// its memory.
const BACKLOG: usize = 4_096;

/// How long a failed report is retried.
const RETRY_FOR: Duration = Duration::from_secs(60);

/// The acks of one link not yet written.
#[derive(Default)]
pub(crate) struct Reports {
    in_flight: Option<BoxFuture<'static, ()>>,
    /// Boxed: most links are idle, and this is `None` on every one of them.
    waiting: Option<Box<Acked>>,
}

/// Who a link's acks are from, and where they go.
#[derive(Clone, Copy)]
pub(crate) struct Reporter<'a> {
    transfer: &'a Arc<dyn TransferApi>,
    user: UserId,
    device: &'a str,
}

impl<'a> Reporter<'a> {
    pub(crate) fn of(ctx: &'a Connector, session: &'a Session) -> Self {
        Reporter {
            transfer: &ctx.transfer,
            user: session.user,
            device: &session.device,
        }
    }
}

impl Reports {
    /// Nothing waiting or being written.
    pub(crate) fn is_idle(&self) -> bool {
        self.in_flight.is_none() && self.waiting.is_none()
    }

    /// A write is in flight.
    pub(crate) fn is_writing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// So much is waiting that the link should send nothing new.
    pub(crate) fn is_backed_up(&self) -> bool {
        self.waiting
            .as_ref()
            .is_some_and(|w| w.messages.len() + w.receipts.len() >= BACKLOG)
    }

    /// Queues what a device acked, and starts a write if none is running.
    pub(crate) fn add(&mut self, acked: Acked, to: Reporter<'_>) {
        if acked.messages.is_empty() && acked.receipts.is_empty() {
            return;
        }
        match &mut self.waiting {
            Some(waiting) => {
                waiting.messages.extend(acked.messages);
                waiting.receipts.extend(acked.receipts);
            }
            None => self.waiting = Some(Box::new(acked)),
        }
        self.next(to);
    }

    /// Waits for the write in flight (forever if there is none); then the
    /// caller starts the next with [`next`](Self::next). Cancel-safe: the
    /// write stays here until it is through. A plain poll function, not an
    /// async fn: every idle link's task holds this future, so it is kept to
    /// one pointer.
    pub(crate) fn written(&mut self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| match &mut self.in_flight {
            Some(write) => write.as_mut().poll(cx).map(|()| self.in_flight = None),
            None => Poll::Pending,
        })
    }

    /// Writes everything acked so far.
    pub(crate) async fn flush(&mut self, to: Reporter<'_>) {
        while !self.is_idle() {
            self.next(to);
            self.written().await;
        }
    }

    /// Starts writing what is waiting, unless a write is in flight.
    pub(crate) fn next(&mut self, to: Reporter<'_>) {
        if self.in_flight.is_none() {
            self.start(to);
        }
    }

    fn start(&mut self, to: Reporter<'_>) {
        if let Some(acked) = self.waiting.take() {
            let transfer = to.transfer.clone();
            let device = to.device.to_owned();
            self.in_flight = Some(report(transfer, to.user, device, *acked).boxed());
        }
    }
}

/// Reports acked messages and receipts. One that fails (the store or every
/// transfer is down) is retried in the background, so the link goes on and
/// the senders still get their DELIVERED; cursors only ever move forward,
/// so a late report is harmless.
async fn report(transfer: Arc<dyn TransferApi>, user: UserId, device: String, acked: Acked) {
    let Acked { messages, receipts } = acked;
    if !messages.is_empty() {
        if let Err(error) = transfer.delivered(user, &device, &messages).await {
            tracing::warn!(%error, "recording delivery failed; retrying");
            let transfer = transfer.clone();
            tokio::spawn(retry(move || {
                let (transfer, device, messages) =
                    (transfer.clone(), device.clone(), messages.clone());
                async move { transfer.delivered(user, &device, &messages).await }
            }));
        }
    }
    if !receipts.is_empty() {
        if let Err(error) = transfer.receipts_delivered(user, &receipts).await {
            tracing::warn!(%error, "recording receipt delivery failed; retrying");
            tokio::spawn(retry(move || {
                let (transfer, receipts) = (transfer.clone(), receipts.clone());
                async move { transfer.receipts_delivered(user, &receipts).await }
            }));
        }
    }
}

/// Retries a failed report with doubling waits for about a minute; after
/// that the device's cursor stays where it was, so it gets those messages
/// again at its next login and acks them again.
async fn retry<F, Fut>(report: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), TransferError>>,
{
    let mut wait = Duration::from_millis(200);
    let mut waited = Duration::ZERO;
    while waited < RETRY_FOR {
        tokio::time::sleep(wait).await;
        waited += wait;
        wait = (wait * 2).min(Duration::from_secs(5));
        match report().await {
            Ok(()) => return,
            Err(error) => tracing::debug!(%error, "report still failing"),
        }
    }
    tracing::warn!("report given up; the device gets those messages again at its next login");
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use im_proto::v1::SendMessage;
    use im_proto::ErrorCode;
    use im_store::{DeliveredMessage, OfflineKey};
    use im_transfer::PendingSend;
    use tokio::sync::Semaphore;

    use super::*;

    /// Records each `delivered` call; each call first takes a permit, so a
    /// test holds a write in flight for as long as it likes.
    struct Recording {
        permits: Semaphore,
        calls: Mutex<Vec<Vec<u64>>>,
    }

    #[async_trait]
    impl TransferApi for Recording {
        async fn submit(
            &self,
            _: UserId,
            _: &str,
            _: SendMessage,
        ) -> Result<PendingSend, TransferError> {
            Err(TransferError::new(ErrorCode::Internal, "no sends here"))
        }

        async fn delivered(
            &self,
            _: UserId,
            _: &str,
            messages: &[DeliveredMessage],
        ) -> Result<(), TransferError> {
            self.permits.acquire().await.unwrap().forget();
            let ids = messages.iter().map(|m| m.msg_id).collect();
            self.calls.lock().unwrap().push(ids);
            Ok(())
        }

        async fn receipts_delivered(
            &self,
            _: UserId,
            _: &[OfflineKey],
        ) -> Result<(), TransferError> {
            Ok(())
        }

        async fn read(&self, _: UserId, _: &str, _: u64) -> Result<(), TransferError> {
            Ok(())
        }

        async fn presence(&self, _: UserId, _: bool) {}
    }

    /// A recording transfer that holds every write until given permits.
    fn recording() -> (Arc<Recording>, Arc<dyn TransferApi>) {
        let recording = Arc::new(Recording {
            permits: Semaphore::new(0),
            calls: Mutex::new(Vec::new()),
        });
        (recording.clone(), recording)
    }

    /// User 2's phone reporting to `transfer`.
    fn phone(transfer: &Arc<dyn TransferApi>) -> Reporter<'_> {
        Reporter {
            transfer,
            user: 2,
            device: "phone",
        }
    }

    fn acked(ids: impl IntoIterator<Item = u64>) -> Acked {
        Acked {
            messages: ids
                .into_iter()
                .map(|msg_id| DeliveredMessage {
                    msg_id,
                    conversation_id: "d:1:2".into(),
                    seq: msg_id,
                    from_user: 1,
                    client_msg_id: format!("c{msg_id}"),
                })
                .collect(),
            receipts: Vec::new(),
        }
    }

    #[tokio::test]
    async fn acks_that_arrive_during_a_write_go_out_together_in_the_next() {
        let (recording, transfer) = recording();
        let to = phone(&transfer);
        let mut reports = Reports::default();
        assert!(reports.is_idle());

        reports.add(acked([1]), to);
        assert!(reports.is_writing());
        // Three more ack frames while the first write waits.
        for id in 2..=4 {
            reports.add(acked([id]), to);
        }
        assert!(!reports.is_idle());

        recording.permits.add_permits(2);
        reports.flush(to).await;
        assert!(reports.is_idle() && !reports.is_writing());
        assert_eq!(*recording.calls.lock().unwrap(), [vec![1], vec![2, 3, 4]]);
    }

    #[tokio::test]
    async fn a_write_that_falls_behind_holds_the_link_back() {
        let (recording, transfer) = recording();
        let to = phone(&transfer);
        let mut reports = Reports::default();
        reports.add(acked([0]), to);
        reports.add(acked(1..BACKLOG as u64), to);
        assert!(!reports.is_backed_up());
        reports.add(acked([BACKLOG as u64]), to);
        assert!(reports.is_backed_up());

        // Once the first write is through, the backlog is the one in flight.
        recording.permits.add_permits(1);
        reports.written().await;
        reports.next(to);
        assert!(!reports.is_backed_up() && reports.is_writing());
        recording.permits.add_permits(1);
        reports.flush(to).await;
        let calls = recording.calls.lock().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1].len(), BACKLOG);
    }
}
