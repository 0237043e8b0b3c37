//! Password hashes (Argon2id, PHC strings) on threads of their own, each
//! hashing into one block of memory it keeps.
//!
//! Why not `Argon2::hash_password` on tokio's blocking pool: each hash
//! allocates 19 MiB and frees it. glibc serves the first such block with
//! mmap; freeing it raises its mmap and trim thresholds for the whole
//! process (to 19 and 38 MiB), after which every thread's arena keeps up
//! to 38 MiB of free memory instead of returning it. After the benchmark's
//! 10,000 registrations the server held 560-680 MB it no longer used
//! (`im-bench`, `rss_before_kib`). Blocks that live as long as their
//! threads are never freed, so the thresholds stay where they were.

use std::sync::{mpsc, Arc, LazyLock, Mutex};

use argon2::password_hash::{Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::rngs::OsRng;
use tokio::sync::oneshot;

use crate::error::ApiError;

type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// One thread per core: hashes are slow on purpose, and more at once than
/// cores would only hold more memory.
static HASHERS: LazyLock<mpsc::Sender<Job>> = LazyLock::new(|| {
    let (jobs, queue) = mpsc::channel::<Job>();
    let queue = Arc::new(Mutex::new(queue));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    for i in 0..cores {
        let queue = queue.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("password-hash-{i}"))
            .spawn(move || {
                let mut memory = Vec::new();
                loop {
                    let job = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok(job) = job else { return };
                    // A panicking job answers its caller with an error (its
                    // reply channel is dropped) and leaves the thread serving.
                    let run = std::panic::AssertUnwindSafe(|| job(&mut memory));
                    let _ = std::panic::catch_unwind(run);
                }
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start a password-hash thread");
        }
    }
    // With no thread started the queue's receiver is gone and every send
    // fails: requests get an error rather than wait forever.
    jobs
});

/// Runs `work` on a hashing thread, with that thread's memory.
async fn on_hasher<T: Send + 'static>(
    work: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let (done, result) = oneshot::channel();
    let job: Job = Box::new(move |memory| {
        let _ = done.send(work(memory));
    });
    HASHERS.send(job).map_err(ApiError::internal)?;
    result.await.map_err(ApiError::internal)
}

/// The Argon2id PHC string of `password` with a random salt.
pub(crate) async fn hash(password: String) -> Result<String, ApiError> {
    on_hasher(move |memory| {
        let salt = SaltString::generate(&mut OsRng);
        let argon2 = Argon2::default();
        let output = compute(&argon2, password.as_bytes(), salt.as_salt(), memory)?;
        let phc = PasswordHash {
            algorithm: Algorithm::default().ident(),
            version: Some(Version::default().into()),
            params: ParamsString::try_from(argon2.params())?,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        };
        Ok::<_, argon2::password_hash::Error>(phc.to_string())
    })
    .await?
    .map_err(ApiError::internal)
}

/// True if `password` matches the stored PHC string (any Argon2 variant,
/// version and parameters it names).
pub(crate) async fn verify(password: String, stored: String) -> Result<bool, ApiError> {
    on_hasher(move |memory| {
        check(password.as_bytes(), &stored, memory).unwrap_or_else(|error| {
            tracing::error!(%error, "stored password hash cannot be checked");
            false
        })
    })
    .await
}

/// What `PasswordVerifier::verify_password` checks, in `memory`.
fn check(
    password: &[u8],
    stored: &str,
    memory: &mut Vec<Block>,
) -> argon2::password_hash::Result<bool> {
    let parsed = PasswordHash::new(stored)?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Ok(false);
    };
    let version = parsed.version.map(Version::try_from).transpose()?;
    let argon2 = Argon2::new(
        Algorithm::try_from(parsed.algorithm)?,
        version.unwrap_or_default(),
        Params::try_from(&parsed)?,
    );
    // `Output` compares in constant time.
    Ok(compute(&argon2, password, salt, memory)? == expected)
}

/// What `PasswordHasher::hash_password` computes, in `memory` (grown to the
/// parameters' size when they ask for more) instead of a new allocation.
fn compute(
    argon2: &Argon2<'_>,
    password: &[u8],
    salt: Salt<'_>,
    memory: &mut Vec<Block>,
) -> argon2::password_hash::Result<Output> {
    let mut salt_bytes = [0u8; Salt::MAX_LENGTH];
    let salt = salt.decode_b64(&mut salt_bytes)?;
    let params = argon2.params();
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), Block::default());
    }
    let len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    Output::init_with(len, |out| {
        argon2
            .hash_password_into_with_memory(password, salt, out, &mut memory[..])
            .map_err(Into::into)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::{PasswordHasher, PasswordVerifier};

    #[tokio::test]
    async fn hashes_verify_both_ways_with_the_argon2_crate_s_own() {
        let ours = hash("correct horse".into()).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok());
        assert!(Argon2::default()
            .verify_password(b"wrong horse", &parsed)
            .is_err());

        // Other parameters and variant than ours: read from the string.
        let params = Params::new(8 * 1024, 3, 1, Some(24)).unwrap();
        let theirs = Argon2::new(Algorithm::Argon2i, Version::V0x13, params)
            .hash_password(b"battery staple", &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        assert!(verify("battery staple".into(), theirs.clone())
            .await
            .unwrap());
        assert!(!verify("battery stable".into(), theirs).await.unwrap());
        assert!(verify("correct horse".into(), ours.clone()).await.unwrap());
        assert!(!verify("correct hors".into(), ours).await.unwrap());
        assert!(!verify("x".into(), "not a hash".into()).await.unwrap());
    }
}
