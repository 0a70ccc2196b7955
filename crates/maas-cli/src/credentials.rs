//! Stored credentials: `$MAAS_CONFIG_DIR/credentials.json` (default: the user's config dir,
//! e.g. `~/.config/maas`), written with mode 0600.

use std::io::Write as _;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::CliError;

/// What `maas login` remembers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub server: Option<String>,
    /// The session id (the `maas_session` cookie's value).
    pub session: Option<String>,
    /// An API key, when logged in with `--api-key`.
    pub api_key: Option<String>,
}

fn dir() -> Result<PathBuf, CliError> {
    match std::env::var_os("MAAS_CONFIG_DIR") {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => dirs::config_dir().map(|d| d.join("maas")).ok_or(CliError::NoConfigDir),
    }
}

/// Path of the credentials file.
pub fn path() -> Result<PathBuf, CliError> {
    Ok(dir()?.join("credentials.json"))
}

fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> CliError + '_ {
    move |source| CliError::Credentials { path: path.display().to_string(), source }
}

impl Credentials {
    /// The stored credentials, or empty ones if none were saved.
    pub fn load() -> Result<Self, CliError> {
        let path = path()?;
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| CliError::CredentialsFormat { path: path.display().to_string(), source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Writes the file readable by its owner only.
    pub fn save(&self) -> Result<(), CliError> {
        let path = path()?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(&path))?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
            options.mode(0o600);
            if path.exists() {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io_err(&path))?;
            }
        }
        let mut file = options.open(&path).map_err(io_err(&path))?;
        let json = serde_json::to_vec_pretty(self)
            .map_err(|source| CliError::CredentialsFormat { path: path.display().to_string(), source })?;
        file.write_all(&json).map_err(io_err(&path))
    }

    /// Forgets everything.
    pub fn remove() -> Result<(), CliError> {
        let path = path()?;
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => Ok(()),
        }
    }
}
