//! The cluster backend: Redis, shared by every connector and transfer.
//!
//! Each user is one sorted set `im:status:{<user>}` whose members are
//! `device \t connector` scored by the time (ms) their lease runs out, so a
//! device whose connector died disappears once its lease is not refreshed.
//! (Redis 7.0, as shipped by Debian, has no per-field TTL on hashes.) All of
//! a user's state is that one key, so the scripts are atomic and Redis
//! Cluster routes every call by the user's hash tag alone.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

use crate::{DeviceLocation, StatusError, UserId, UserStatus};

/// Adds a device (replacing the same device on any connector); returns 1 if
/// the user had no live device before.
const ONLINE: &str = r#"
local key, device, member = KEYS[1], ARGV[1], ARGV[2]
local now, expires, ttl = tonumber(ARGV[3]), ARGV[4], ARGV[5]
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
local members = redis.call('ZRANGE', key, 0, -1)
local prefix = device .. '\t'
for _, m in ipairs(members) do
  if string.sub(m, 1, #prefix) == prefix then redis.call('ZREM', key, m) end
end
redis.call('ZADD', key, expires, member)
redis.call('PEXPIRE', key, ttl)
if #members == 0 then return 1 else return 0 end
"#;

/// Removes one device from one connector; returns 1 if that left the user
/// with no live device.
const OFFLINE: &str = r#"
local key, member, now = KEYS[1], ARGV[1], tonumber(ARGV[2])
local removed = redis.call('ZREM', key, member)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if removed == 1 and redis.call('ZCARD', key) == 0 then return 1 else return 0 end
"#;

/// Writes a device back whose entry is gone (Redis lost its data), unless
/// the device is live on some connector now; returns 1 if it was written.
const RESTORE: &str = r#"
local key, device, member = KEYS[1], ARGV[1], ARGV[2]
local now, expires, ttl = tonumber(ARGV[3]), ARGV[4], ARGV[5]
local prefix = device .. '\t'
for _, m in ipairs(redis.call('ZRANGEBYSCORE', key, now + 1, '+inf')) do
  if string.sub(m, 1, #prefix) == prefix then return 0 end
end
redis.call('ZADD', key, expires, member)
redis.call('PEXPIRE', key, ttl)
return 1
"#;

/// How long a call waits for Redis to answer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Devices per pipeline of a lease refresh: a connector holds up to 20,000,
/// and one pipeline of them all would hold every other call on the shared
/// connection up behind it.
const REFRESH_CHUNK: usize = 1_000;

/// User status in Redis.
#[derive(Clone)]
pub struct RedisUserStatus {
    conn: ConnectionManager,
    prefix: String,
    lease: Duration,
    online: Script,
    offline: Script,
    restore: Script,
}

impl std::fmt::Debug for RedisUserStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisUserStatus")
            .field("prefix", &self.prefix)
            .field("lease", &self.lease)
            .finish()
    }
}

fn backend(error: redis::RedisError) -> StatusError {
    StatusError::Backend(error.to_string())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl RedisUserStatus {
    /// Connects to `url` (e.g. `redis://127.0.0.1:6379`). Keys start with
    /// `prefix` (normally `im`); a device's entry lives `lease` unless
    /// refreshed.
    pub async fn connect(url: &str, prefix: &str, lease: Duration) -> Result<Self, StatusError> {
        let client = redis::Client::open(url).map_err(backend)?;
        // redis-rs gives up on an answer after 500 ms by default. A box busy
        // with tens of thousands of logins at once answers slower than
        // that now and then, and a login or a lease refresh that gives up
        // fails for nothing: the client allows a login 10 s.
        let config = ConnectionManagerConfig::new().set_response_timeout(Some(RESPONSE_TIMEOUT));
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(backend)?;
        Ok(RedisUserStatus {
            conn,
            prefix: prefix.to_owned(),
            lease,
            online: Script::new(ONLINE),
            offline: Script::new(OFFLINE),
            restore: Script::new(RESTORE),
        })
    }

    fn key(&self, user: UserId) -> String {
        // The braces are a Redis Cluster hash tag: the slot comes from the user.
        format!("{}:status:{{{user}}}", self.prefix)
    }

    fn lease_ms(&self) -> u64 {
        self.lease.as_millis() as u64
    }
}

fn member(device: &str, connector: &str) -> String {
    format!("{device}\t{connector}")
}

fn location(member: &str) -> Option<DeviceLocation> {
    let (device, connector) = member.split_once('\t')?;
    Some(DeviceLocation {
        device: device.to_owned(),
        connector: connector.to_owned(),
    })
}

#[async_trait]
impl UserStatus for RedisUserStatus {
    async fn online(
        &self,
        user: UserId,
        device: &str,
        connector: &str,
    ) -> Result<bool, StatusError> {
        let now = now_ms();
        let first: i64 = self
            .online
            .key(self.key(user))
            .arg(device)
            .arg(member(device, connector))
            .arg(now)
            .arg(now + self.lease_ms())
            .arg(self.lease_ms())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        Ok(first == 1)
    }

    async fn offline(
        &self,
        user: UserId,
        device: &str,
        connector: &str,
    ) -> Result<bool, StatusError> {
        let last: i64 = self
            .offline
            .key(self.key(user))
            .arg(member(device, connector))
            .arg(now_ms())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        Ok(last == 1)
    }

    async fn lookup(&self, user: UserId) -> Result<Vec<DeviceLocation>, StatusError> {
        Ok(self.lookup_many(&[user]).await?.pop().unwrap_or_default())
    }

    async fn lookup_many(&self, users: &[UserId]) -> Result<Vec<Vec<DeviceLocation>>, StatusError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        // One pipeline: one round trip for a whole group.
        let now = now_ms();
        let mut pipe = redis::pipe();
        for user in users {
            pipe.cmd("ZRANGEBYSCORE")
                .arg(self.key(*user))
                .arg(now + 1)
                .arg("+inf");
        }
        let found: Vec<Vec<String>> = pipe
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        Ok(found
            .into_iter()
            .map(|members| members.iter().filter_map(|m| location(m)).collect())
            .collect())
    }

    fn leases(&self) -> bool {
        true
    }

    async fn refresh(
        &self,
        connector: &str,
        devices: &[(UserId, String)],
    ) -> Result<Vec<(UserId, String)>, StatusError> {
        if devices.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let expires = now + self.lease_ms();
        let mut extended: Vec<i64> = Vec::with_capacity(devices.len());
        for chunk in devices.chunks(REFRESH_CHUNK) {
            let mut pipe = redis::pipe();
            for (user, device) in chunk {
                // XX: only extend what is there. CH: 1 if it was (the score
                // always moves on), 0 if the entry is gone.
                pipe.cmd("ZADD")
                    .arg(self.key(*user))
                    .arg("XX")
                    .arg("CH")
                    .arg(expires)
                    .arg(member(device, connector));
                pipe.cmd("PEXPIRE")
                    .arg(self.key(*user))
                    .arg(self.lease_ms())
                    .ignore();
            }
            let answers: Vec<i64> = pipe
                .query_async(&mut self.conn.clone())
                .await
                .map_err(backend)?;
            extended.extend(answers);
        }
        // Gone entries are rare (a Redis restart), so one script call each.
        let mut restored = Vec::new();
        for ((user, device), _) in devices.iter().zip(extended).filter(|(_, n)| *n == 0) {
            let written: i64 = self
                .restore
                .key(self.key(*user))
                .arg(device)
                .arg(member(device, connector))
                .arg(now)
                .arg(expires)
                .arg(self.lease_ms())
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(backend)?;
            if written == 1 {
                restored.push((*user, device.clone()));
            }
        }
        Ok(restored)
    }
}
