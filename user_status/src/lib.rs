//! Where is user U (device D)? `online / offline / lookup`, behind one trait:
//! an in-process map in the single-node default, Redis in a cluster.

mod memory;
mod redis;

use async_trait::async_trait;

pub use memory::MemoryUserStatus;
pub use redis::RedisUserStatus;

/// A user's numeric id (as in the store).
pub type UserId = u64;

/// One online device of a user and the connector holding its link.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceLocation {
    /// The device id the client chose.
    pub device: String,
    /// The connector that holds the device's link.
    pub connector: String,
}

/// Why a status call failed.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The backend could not be reached or answered badly.
    #[error("user status backend: {0}")]
    Backend(String),
}

/// Where users are connected.
#[async_trait]
pub trait UserStatus: Send + Sync + 'static {
    /// Records that `device` of `user` is on `connector`. Returns true if this
    /// is the user's first online device (they just came online).
    async fn online(
        &self,
        user: UserId,
        device: &str,
        connector: &str,
    ) -> Result<bool, StatusError>;
    /// Records that `device` left `connector` (ignored if the device has since
    /// moved to another connector). Returns true if the user has no device left.
    async fn offline(
        &self,
        user: UserId,
        device: &str,
        connector: &str,
    ) -> Result<bool, StatusError>;
    /// The online devices of `user`.
    async fn lookup(&self, user: UserId) -> Result<Vec<DeviceLocation>, StatusError>;
    /// The online devices of each of `users`, in the same order, in one round trip.
    async fn lookup_many(&self, users: &[UserId]) -> Result<Vec<Vec<DeviceLocation>>, StatusError>;
    /// True if entries expire unless `refresh`ed (so connectors must renew
    /// them); false for backends that live and die with the process.
    fn leases(&self) -> bool {
        false
    }
    /// Extends the lease of devices still held by `connector`, so a dead
    /// connector's devices expire. A device whose entry is gone although it
    /// is on no other connector (the backend lost its data: a restarted
    /// Redis) is written back; those are returned, as pushes meant for them
    /// may have been missed. Backends without expiry do nothing.
    async fn refresh(
        &self,
        _connector: &str,
        _devices: &[(UserId, String)],
    ) -> Result<Vec<(UserId, String)>, StatusError> {
        Ok(Vec::new())
    }
}
