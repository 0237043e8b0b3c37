//! Running a transaction again when InnoDB gave up on it. Row locks let
//! transactions run side by side, and two of them that lock the same rows in
//! different orders deadlock: InnoDB rolls one back (error 1213), or a waiter
//! times out (1205). Either way nothing of the attempt remains, so it is run
//! again from the start after a short, random pause that keeps the two apart.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use super::rows::is_lock_failure;
use crate::{StoreError, StoreResult};

/// Attempts before the last error is returned.
const ATTEMPTS: u32 = 6;
/// The pause before the second attempt is up to this; it doubles each time.
const FIRST_PAUSE: Duration = Duration::from_millis(5);

/// Runs `attempt` until it succeeds, fails for a reason other than a lock
/// failure, or has been tried [`ATTEMPTS`] times.
pub(super) async fn retry<T, F, Fut>(attempt: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = StoreResult<T>>,
{
    retry_when(|_| false, attempt).await
}

/// [`retry`], also running `attempt` again on errors `transient` accepts.
pub(super) async fn retry_when<T, F, Fut>(
    transient: fn(&StoreError) -> bool,
    mut attempt: F,
) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = StoreResult<T>>,
{
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(error) if tries < ATTEMPTS && (is_lock_failure(&error) || transient(&error)) => {
                tracing::debug!(tries, %error, "mysql transaction retried");
                tokio::time::sleep(pause(tries)).await;
                tries += 1;
            }
            result => return result,
        }
    }
}

/// A random pause in [0, FIRST_PAUSE * 2^(tries - 1)).
fn pause(tries: u32) -> Duration {
    let ceiling = FIRST_PAUSE * 2u32.pow(tries - 1);
    // A fresh RandomState is randomly keyed: random enough to break a tie.
    let random = RandomState::new().build_hasher().finish();
    ceiling.mul_f64((random % 1024) as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn busy(error: &StoreError) -> bool {
        matches!(error, StoreError::Conflict("busy"))
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_failure_is_tried_again_until_it_succeeds() {
        let calls = &AtomicU32::new(0);
        let result = retry_when(busy, || async move {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(StoreError::Conflict("busy")),
                _ => Ok("done"),
            }
        })
        .await;
        assert_eq!(result.unwrap(), "done");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_failure_is_returned_once_the_attempts_run_out() {
        let calls = &AtomicU32::new(0);
        let result: StoreResult<()> = retry_when(busy, || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::Conflict("busy"))
        })
        .await;
        assert!(matches!(result, Err(StoreError::Conflict("busy"))));
        assert_eq!(calls.load(Ordering::SeqCst), ATTEMPTS);
    }

    #[tokio::test(start_paused = true)]
    async fn other_failures_are_returned_at_once() {
        let calls = &AtomicU32::new(0);
        let result: StoreResult<()> = retry(|| async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::Conflict("busy"))
        })
        .await;
        assert!(matches!(result, Err(StoreError::Conflict(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn pauses_stay_under_a_doubling_ceiling() {
        for tries in 1..ATTEMPTS {
            let ceiling = FIRST_PAUSE * 2u32.pow(tries - 1);
            assert!(pause(tries) < ceiling, "try {tries}");
        }
    }
}
