//! The single-node backend: a concurrent map from user to online devices.

use async_trait::async_trait;
use dashmap::DashMap;

use crate::{DeviceLocation, StatusError, UserId, UserStatus};

/// In-process user status. Nothing expires: in one process a connector cannot
/// die without the status map dying with it.
#[derive(Debug, Default)]
pub struct MemoryUserStatus {
    devices: DashMap<UserId, Vec<DeviceLocation>>,
}

impl MemoryUserStatus {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl UserStatus for MemoryUserStatus {
    async fn online(
        &self,
        user: UserId,
        device: &str,
        connector: &str,
    ) -> Result<bool, StatusError> {
        let mut entry = self.devices.entry(user).or_default();
        let first = entry.is_empty();
        entry.retain(|d| d.device != device);
        entry.push(DeviceLocation {
            device: device.to_owned(),
            connector: connector.to_owned(),
        });
        Ok(first)
    }

    async fn offline(
        &self,
        user: UserId,
        device: &str,
        connector: &str,
    ) -> Result<bool, StatusError> {
        let now_empty = match self.devices.get_mut(&user) {
            Some(mut entry) => {
                entry.retain(|d| !(d.device == device && d.connector == connector));
                entry.is_empty()
            }
            None => return Ok(false),
        };
        if now_empty {
            // Only remove if still empty: a concurrent `online` may have refilled it.
            let removed = self.devices.remove_if(&user, |_, v| v.is_empty()).is_some();
            return Ok(removed);
        }
        Ok(false)
    }

    async fn lookup(&self, user: UserId) -> Result<Vec<DeviceLocation>, StatusError> {
        Ok(self
            .devices
            .get(&user)
            .map(|e| e.value().clone())
            .unwrap_or_default())
    }

    async fn lookup_many(&self, users: &[UserId]) -> Result<Vec<Vec<DeviceLocation>>, StatusError> {
        let mut out = Vec::with_capacity(users.len());
        for user in users {
            out.push(self.lookup(*user).await?);
        }
        Ok(out)
    }
}
