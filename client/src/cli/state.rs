//! The CLI's state file: who is logged in, the token, and this device's id.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::output::CliError;

/// What `im login` remembers between runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    /// Login name.
    #[serde(default)]
    pub name: Option<String>,
    /// Numeric user id.
    #[serde(default)]
    pub user_id: Option<u64>,
    /// Bearer token; `None` after logout.
    #[serde(default)]
    pub token: Option<String>,
    /// This device's id on the link, made once per state file.
    #[serde(default)]
    pub device_id: String,
}

/// `~/.im/state.json` (or `.im/state.json` without a home directory).
pub fn default_path() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".im").join("state.json")
}

impl State {
    /// Reads the state file; a missing file is a fresh state. Either way the
    /// state has a device id.
    pub fn load(path: &Path) -> Result<State, CliError> {
        let mut state = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| CliError::new("BAD_STATE", format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(e.into()),
        };
        if state.device_id.is_empty() {
            let id = uuid::Uuid::new_v4().simple().to_string();
            state.device_id = format!("cli-{}", &id[..8]);
        }
        Ok(state)
    }

    /// Writes the state file (readable by its owner only: it holds a token).
    pub fn save(&self, path: &Path) -> Result<(), CliError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| CliError::new("BAD_STATE", e.to_string()))?;
        file.write_all(&json)?;
        file.sync_all()?;
        // Rename so a crash never leaves half a state file.
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_id_is_made_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("im-state-{}", uuid::Uuid::new_v4()));
        let path = dir.join("state.json");
        let state = State::load(&path).unwrap();
        assert!(state.device_id.starts_with("cli-") && state.device_id.len() == 12);
        state.save(&path).unwrap();
        let again = State::load(&path).unwrap();
        assert_eq!(again.device_id, state.device_id);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
