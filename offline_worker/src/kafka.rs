//! The cluster's message log: Kafka between the transfers and the offline
//! worker.
//!
//! A transfer publishes each checked message with [`KafkaLog::publish`]: an
//! idempotent producer with `acks=all`, keyed by conversation id so one
//! conversation stays in one partition and keeps its order. [`run_worker`]
//! is the offline worker: a consumer group that appends what it reads to the
//! store in batched transactions (the store gives each message its seq in
//! partition order and drops a replayed one by its client id), hands the
//! batch to a [`CommitListener`] (which routes it to online devices), and
//! only then commits the Kafka offsets. A worker killed at any point replays
//! from the last committed offset; the store's dedupe makes that harmless.

use std::sync::Arc;
use std::time::Duration;

use im_proto::internal::LoggedMessage;
use im_proto::v1::FileRef as WireFileRef;
use im_store::{conversation_of, FileRef, NewMessage, Store, Target};
use prost::Message as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message as _, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::{CommitListener, Committed, LogError, Submission};

/// Where the Kafka log lives.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `bootstrap.servers`, e.g. `127.0.0.1:19092`.
    pub brokers: String,
    /// The topic messages go through.
    pub topic: String,
}

/// A librdkafka client configuration for `brokers`. `IM_KAFKA_DEBUG` (a
/// librdkafka `debug` context list such as `cgrp,fetch`) turns on its debug
/// log, shown with `RUST_LOG=rdkafka=debug`.
fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    if let Ok(debug) = std::env::var("IM_KAFKA_DEBUG") {
        config.set("debug", debug);
    }
    config
}

/// Why Kafka could not be used.
#[derive(Debug, thiserror::Error)]
#[error("kafka: {0}")]
pub struct KafkaSetupError(#[from] rdkafka::error::KafkaError);

/// Creates `config.topic` with `partitions` partitions unless it exists.
/// Transfers and workers call this at start, so a fresh broker needs no
/// set-up by hand.
pub async fn ensure_topic(config: &KafkaConfig, partitions: i32) -> Result<(), KafkaSetupError> {
    let admin: AdminClient<DefaultClientContext> = client_config(&config.brokers).create()?;
    let topic = NewTopic::new(&config.topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics([&topic], &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(KafkaSetupError(rdkafka::error::KafkaError::AdminOp(code)))
                    .inspect_err(|_| tracing::error!(topic = %name, ?code, "cannot create topic"));
            }
        }
    }
    Ok(())
}

/// The producer side, used by transfers.
pub struct KafkaLog {
    producer: FutureProducer,
    topic: String,
}

impl KafkaLog {
    /// An idempotent producer (`acks=all`) for `config.topic`.
    pub fn connect(config: &KafkaConfig) -> Result<KafkaLog, KafkaSetupError> {
        let producer: FutureProducer = client_config(&config.brokers)
            .set("enable.idempotence", "true")
            // One produce request at a time per broker; what queues
            // meanwhile goes in the next, larger one. With the idempotent
            // default of five, a partition with five requests out and
            // records past `linger.ms` makes librdkafka's broker thread
            // poll with a zero timeout until one comes back: that spin
            // was 14% of the box's samples in cluster chat at saturation
            // (1% with one), and saturation went from 4.0-4.5k to
            // 5.2-5.3k msg/s (docs/DESIGN.md). One in flight also keeps
            // the partition's order without relying on the sequence
            // numbers' reordering.
            .set("max.in.flight.requests.per.connection", "1")
            .set("acks", "all")
            // Java clients' partitioner, so a conversation maps to the same
            // partition whichever client library wrote it.
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "1")
            .set("message.timeout.ms", "15000")
            .create()?;
        Ok(KafkaLog {
            producer,
            topic: config.topic.clone(),
        })
    }

    /// Writes the message; the returned future resolves once Kafka
    /// acknowledged it (all in-sync replicas have it). The record is queued
    /// when this is called, so calls made one after another are written in
    /// that order and a device's messages keep their order.
    pub fn publish(
        &self,
        submission: &Submission,
    ) -> impl std::future::Future<Output = Result<(), LogError>> + Send + 'static {
        let key = conversation_of(submission.message.from_user, submission.message.target);
        let payload = encode(submission).encode_to_vec();
        let record = FutureRecord::to(&self.topic).key(&key).payload(&payload);
        let queued = self
            .producer
            .send_result(record)
            .map_err(|(error, _)| LogError::Store(format!("kafka: {error}")));
        async move {
            match queued?.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((error, _))) => Err(LogError::Store(format!("kafka: {error}"))),
                Err(_) => Err(LogError::Closed),
            }
        }
    }
}

fn encode(submission: &Submission) -> LoggedMessage {
    let m = &submission.message;
    let (to_user, to_group) = match m.target {
        Target::User(u) => (u, 0),
        Target::Group(g) => (0, g),
    };
    LoggedMessage {
        from_user: m.from_user,
        origin_device: submission.origin_device.clone(),
        client_msg_id: m.client_msg_id.clone(),
        to_user,
        to_group,
        content_type: m.content_type,
        text: m.text.clone(),
        file: m.file.as_ref().map(|f| WireFileRef {
            file_id: f.file_id.clone(),
            name: f.name.clone(),
            mime: f.mime.clone(),
            size: f.size,
        }),
        recipients: m.recipients.clone(),
    }
}

/// A Kafka record as a submission; `None` if it is not one (logged and
/// skipped: a bad record must not stop the partition forever).
fn decode(payload: &[u8]) -> Option<Submission> {
    let m = LoggedMessage::decode(payload).ok()?;
    let target = match (m.to_user, m.to_group) {
        (u, 0) if u > 0 => Target::User(u),
        (0, g) if g > 0 => Target::Group(g),
        _ => return None,
    };
    Some(Submission {
        message: NewMessage {
            from_user: m.from_user,
            client_msg_id: m.client_msg_id,
            target,
            content_type: m.content_type,
            text: m.text,
            file: m.file.map(|f| FileRef {
                file_id: f.file_id,
                name: f.name,
                mime: f.mime,
                size: f.size,
            }),
            recipients: m.recipients,
        },
        origin_device: m.origin_device,
    })
}

/// Tuning of the offline worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Brokers and topic.
    pub kafka: KafkaConfig,
    /// The consumer group all offline workers share.
    pub group: String,
    /// Most messages in one store transaction.
    pub max_batch: usize,
    /// Kafka static membership (`group.instance.id`): a worker restarted
    /// with the same id takes its partitions back at once instead of
    /// waiting for the group to notice the old process is gone.
    pub instance_id: Option<String>,
}

/// Consumes the message topic until `shutdown`, writing the store in batches.
/// Offsets are committed only after the store committed the batch and the
/// listener has routed it, so a crash replays rather than loses.
pub async fn run_worker(
    config: WorkerConfig,
    store: Arc<dyn Store>,
    listener: Arc<dyn CommitListener>,
    shutdown: CancellationToken,
) -> Result<(), KafkaSetupError> {
    let mut consumer = Arc::new(subscribe(&config)?);
    let max_batch = config.max_batch.max(1);
    let mut batch: Vec<OwnedMessage> = Vec::with_capacity(max_batch);
    let mut watchdog = Watchdog::default();
    let mut check = tokio::time::interval(STALL_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => break,
            received = consumer.recv() => received,
            _ = check.tick() => {
                // Its calls block: off the async threads.
                let (c, topic) = (consumer.clone(), config.kafka.topic.clone());
                let mut dog = std::mem::take(&mut watchdog);
                let checked = tokio::task::spawn_blocking(move || {
                    let stuck = dog.stuck(&c, &topic);
                    (dog, stuck)
                })
                .await;
                let Ok((dog, stuck)) = checked else { continue };
                watchdog = dog;
                if stuck {
                    tracing::warn!(
                        "records wait in the topic but the group has not moved for {STALL_CHECK:?}; rejoining"
                    );
                    drop(consumer);
                    consumer = Arc::new(subscribe(&config)?);
                    watchdog = Watchdog::default();
                }
                continue;
            }
        };
        match first {
            Ok(m) => batch.push(m.detach()),
            Err(error) => {
                tracing::warn!(%error, "kafka receive failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        }
        // Whatever else is already fetched joins the same transaction.
        while batch.len() < max_batch {
            match tokio::time::timeout(Duration::from_millis(2), consumer.recv()).await {
                Ok(Ok(m)) => batch.push(m.detach()),
                _ => break,
            }
        }
        let started = std::time::Instant::now();
        if !write_batch(&batch, store.as_ref(), listener.as_ref(), &shutdown).await {
            break;
        }
        tracing::debug!(
            records = batch.len(),
            ms = started.elapsed().as_secs_f64() * 1e3,
            "batch stored and routed"
        );
        let mut offsets = TopicPartitionList::new();
        for m in &batch {
            // Later offsets of a partition overwrite earlier ones.
            let _ = offsets.add_partition_offset(
                m.topic(),
                m.partition(),
                Offset::Offset(m.offset() + 1),
            );
        }
        // Queued, not awaited: a synchronous commit blocks this loop, and
        // with it the watchdog, for as long as the broker does not answer.
        // A commit that fails, or lands after a later one, only means a
        // replay from an older offset, which the store drops by client id.
        if let Err(error) = consumer.commit(&offsets, CommitMode::Async) {
            tracing::warn!(%error, "offset commit not queued");
        }
        batch.clear();
    }
    tracing::info!("offline worker stopped");
    Ok(())
}

/// A consumer in the workers' group, subscribed to the topic.
fn subscribe(config: &WorkerConfig) -> Result<StreamConsumer, KafkaSetupError> {
    let mut client = client_config(&config.kafka.brokers);
    if let Some(id) = &config.instance_id {
        client.set("group.instance.id", id);
    }
    let consumer: StreamConsumer = client
        .set("group.id", &config.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .set("session.timeout.ms", "10000")
        .create()?;
    consumer.subscribe(&[&config.kafka.topic])?;
    tracing::info!(topic = %config.kafka.topic, group = %config.group, "offline worker consuming");
    Ok(consumer)
}

/// How often the worker checks that the group is moving.
const STALL_CHECK: Duration = Duration::from_secs(15);

/// Finds a group that has stopped: a partition with records past the
/// group's committed offset, whose committed offset has not moved since the
/// last check. A broker restart can leave a member that is in the group
/// but fetches nothing (seen with tansu 0.6); leaving and joining again
/// mends it. A group that is merely busy moves its offsets, and one with
/// nothing to do has no records waiting, so neither is disturbed.
#[derive(Default)]
struct Watchdog {
    /// Per partition, the committed offset at the last check.
    last: std::collections::HashMap<i32, i64>,
}

impl Watchdog {
    fn stuck(&mut self, consumer: &StreamConsumer, topic: &str) -> bool {
        let timeout = Duration::from_secs(2);
        let Ok(metadata) = consumer.fetch_metadata(Some(topic), timeout) else {
            return false;
        };
        let Some(partitions) = metadata.topics().first().map(|t| t.partitions().len()) else {
            return false;
        };
        let mut all = TopicPartitionList::new();
        for p in 0..partitions as i32 {
            all.add_partition(topic, p);
        }
        let Ok(committed) = consumer.committed_offsets(all, timeout) else {
            return false;
        };
        let mut stuck = false;
        let mut now = std::collections::HashMap::new();
        for element in committed.elements() {
            let p = element.partition();
            let Ok((low, high)) = consumer.fetch_watermarks(topic, p, timeout) else {
                continue;
            };
            let at = match element.offset() {
                Offset::Offset(n) => n,
                _ => low,
            };
            if high > at && self.last.get(&p) == Some(&at) {
                stuck = true;
            }
            now.insert(p, at);
        }
        self.last = now;
        stuck
    }
}

/// Appends one batch, retrying a failing store until it succeeds or the
/// worker is told to stop (then false: nothing is committed, it replays).
async fn write_batch(
    batch: &[OwnedMessage],
    store: &dyn Store,
    listener: &dyn CommitListener,
    shutdown: &CancellationToken,
) -> bool {
    // The messages move into the batch; their sending devices stay beside
    // it, in the same order (as in the single-node log).
    let (messages, origins): (Vec<NewMessage>, Vec<String>) = batch
        .iter()
        .filter_map(|m| {
            let decoded = m.payload().and_then(decode);
            if decoded.is_none() {
                tracing::error!(
                    partition = m.partition(),
                    offset = m.offset(),
                    "skipping undecodable record"
                );
            }
            decoded
        })
        .map(|s| (s.message, s.origin_device))
        .unzip();
    if messages.is_empty() {
        return true;
    }
    let mut backoff = Duration::from_millis(100);
    let started = std::time::Instant::now();
    let appended = loop {
        match store.append_messages(&messages).await {
            Ok(appended) => break appended,
            Err(error) => {
                tracing::error!(%error, batch = messages.len(), "append failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return false,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    };
    tracing::debug!(
        records = messages.len(),
        ms = started.elapsed().as_secs_f64() * 1e3,
        "batch stored"
    );
    let committed: Vec<Committed> = messages
        .into_iter()
        .zip(origins)
        .zip(appended)
        .map(|((message, origin_device), appended)| Committed {
            from_user: message.from_user,
            origin_device,
            recipients: message.recipients,
            appended,
        })
        .collect();
    listener.committed(&committed).await;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_submission_survives_the_record_encoding() {
        let submission = Submission {
            message: NewMessage {
                from_user: 7,
                client_msg_id: "c-1".into(),
                target: Target::Group(3),
                content_type: 3,
                text: "see file".into(),
                file: Some(FileRef {
                    file_id: "f1".into(),
                    name: "a.txt".into(),
                    mime: "text/plain".into(),
                    size: 12,
                }),
                recipients: vec![8, 9],
            },
            origin_device: "phone".into(),
        };
        let bytes = encode(&submission).encode_to_vec();
        let back = decode(&bytes).expect("decodes");
        assert_eq!(back.message, submission.message);
        assert_eq!(back.origin_device, "phone");
    }

    #[test]
    fn a_record_without_a_target_is_refused() {
        let bytes = LoggedMessage {
            from_user: 1,
            to_user: 2,
            to_group: 3,
            ..Default::default()
        }
        .encode_to_vec();
        assert!(decode(&bytes).is_none());
        assert!(decode(b"\xff\xff\xff").is_none());
    }
}
