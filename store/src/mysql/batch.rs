//! Calls that arrive together, served together. Under load, the database
//! spent its time on statements and transactions, not rows: a call that
//! reads or writes a few rows cost a round trip, a parse and a commit of its
//! own. A [`Batcher`] queues calls, and a few tasks each take whatever is
//! queued (up to a bound) and serve it as one batch, so the cost is paid once
//! per batch. Alone, a call is served at once; a call never waits for a
//! timer, only for a batch already running.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::future::join_all;
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::{StoreError, StoreResult};

/// Calls queued beyond this make their callers wait.
const QUEUE: usize = 4_096;

/// A queued call and where its answer goes.
struct Job<C, A> {
    call: C,
    answer: oneshot::Sender<StoreResult<A>>,
}

/// How a [`Batcher`] serves its calls.
pub(super) trait Serve<C, A>: Send + Sync + 'static {
    /// How much of a batch `call` takes up (its rows).
    fn weight(&self, call: &C) -> usize;

    /// Serves `calls` in one round trip to the database (a transaction, or
    /// a statement), answering each as if it were served alone, in order.
    fn serve(&self, calls: &[C]) -> impl Future<Output = StoreResult<Vec<A>>> + Send;
}

/// A queue of calls, and tasks that each serve whatever is queued as one
/// batch.
#[derive(Debug)]
pub(super) struct Batcher<C, A> {
    queue: mpsc::Sender<Job<C, A>>,
    trips: Arc<AtomicU64>,
}

impl<C, A> Clone for Batcher<C, A> {
    fn clone(&self) -> Self {
        Batcher {
            queue: self.queue.clone(),
            trips: self.trips.clone(),
        }
    }
}

impl<C: Send + 'static, A: Send + 'static> Batcher<C, A> {
    /// Starts `tasks` servers on the current runtime, each taking batches of
    /// up to `max_weight` (or one call, if that alone is heavier). They stop
    /// once every clone of the batcher is dropped.
    pub(super) fn start(tasks: usize, max_weight: usize, serve: impl Serve<C, A>) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE);
        let jobs = Arc::new(Mutex::new(jobs));
        let serve = Arc::new(serve);
        let trips = Arc::new(AtomicU64::new(0));
        for _ in 0..tasks {
            tokio::spawn(run(jobs.clone(), serve.clone(), max_weight, trips.clone()));
        }
        Batcher { queue, trips }
    }

    /// Serves `call` in the next batch and returns its answer.
    pub(super) async fn call(&self, call: C) -> StoreResult<A> {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(Job { call, answer })
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::PoolClosed))?;
        answered
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::WorkerCrashed))?
    }

    /// Round trips the servers have taken so far, a batch that failed
    /// together counting once more per call in it.
    pub(super) fn trips(&self) -> u64 {
        self.trips.load(Ordering::Relaxed)
    }
}

async fn run<C, A>(
    jobs: Arc<Mutex<mpsc::Receiver<Job<C, A>>>>,
    serve: Arc<impl Serve<C, A>>,
    max_weight: usize,
    trips: Arc<AtomicU64>,
) {
    loop {
        let batch = {
            let mut jobs = jobs.lock().await;
            let Some(first) = jobs.recv().await else {
                return;
            };
            let mut weight = serve.weight(&first.call);
            let mut batch = vec![first];
            while weight < max_weight {
                let Ok(job) = jobs.try_recv() else { break };
                weight += serve.weight(&job.call);
                batch.push(job);
            }
            batch
        };
        let (calls, answers): (Vec<C>, Vec<_>) =
            batch.into_iter().map(|job| (job.call, job.answer)).unzip();
        trips.fetch_add(1, Ordering::Relaxed);
        let error = match serve.serve(&calls).await {
            Ok(served) => {
                for (answer, served) in answers.into_iter().zip(served) {
                    let _ = answer.send(Ok(served));
                }
                continue;
            }
            Err(error) => error,
        };
        if calls.len() == 1 {
            let _ = answers.into_iter().next().map(|a| a.send(Err(error)));
            continue;
        }
        // Each alone, so one bad call (a device id too long for its column)
        // fails only itself; side by side, as they ran before they were
        // grouped: with the database gone, each waits out the pool's
        // timeout once, not one after another.
        tracing::warn!(%error, calls = calls.len(), "a batch failed; serving each call alone");
        trips.fetch_add(calls.len() as u64, Ordering::Relaxed);
        let alone = calls
            .iter()
            .map(|call| serve.serve(std::slice::from_ref(call)));
        for (answer, served) in answers.into_iter().zip(join_all(alone).await) {
            let _ = answer.send(served.map(|mut one| one.remove(0)));
        }
    }
}
