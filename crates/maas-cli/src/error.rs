//! CLI errors: what went wrong, in words a person at a terminal can act on.

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot reach the server: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{message} ({code}, HTTP {status})")]
    Api { status: u16, code: String, message: String },
    #[error("not logged in: run `maas login` first (or set MAAS_API_KEY)")]
    NotLoggedIn,
    #[error("the server did not set a session cookie")]
    NoSessionCookie,
    #[error("credentials file {path}: {source}")]
    Credentials { path: String, source: std::io::Error },
    #[error("credentials file {path} is not valid JSON: {source}")]
    CredentialsFormat { path: String, source: serde_json::Error },
    #[error("no config directory: set MAAS_CONFIG_DIR")]
    NoConfigDir,
    #[error("cannot read the password: {0}")]
    Password(std::io::Error),
    #[error("unexpected response from the server: {0}")]
    Response(serde_json::Error),
    #[error("{path}: {error}")]
    File { path: String, error: std::io::Error },
    #[error("'{reference}' is not a model reference: expected {expected}")]
    BadReference { reference: String, expected: &'static str },
    #[error("{0}")]
    Usage(String),
    #[error("version '{0}' is published and can no longer change: push to a new version")]
    VersionPublished(String),
    #[error("{path}: the server lists SHA-256 {expected}, but the downloaded bytes hash to {actual}")]
    ChecksumMismatch { path: String, expected: String, actual: String },
    #[error("refusing the file path '{0}' from the server: it is not a safe relative path")]
    UnsafePath(String),
    #[error("{path}: giving up after {attempts} attempts: {last}")]
    GaveUp { path: String, attempts: u32, last: Box<CliError> },
    #[error("deployment {name} failed: {reasons}")]
    DeploymentFailed { name: String, reasons: String },
    #[error("deployment {name} is still {state} after {secs} s: see `maas deployments show {name}`")]
    WaitTimedOut { name: String, state: String, secs: u64 },
    #[error("input '{name}': {message}")]
    Input { name: String, message: String },
    #[error("a background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl CliError {
    /// A local file error, naming the file.
    pub(crate) fn file(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> CliError + '_ {
        move |error| CliError::File { path: path.display().to_string(), error }
    }

    /// The server's error code, for API errors.
    pub(crate) fn code(&self) -> Option<&str> {
        match self {
            CliError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether trying again may help: the connection broke, or the server had a transient failure.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            CliError::Http(_) => true,
            CliError::Api { status, code, .. } => *status >= 500 || code == "upload_in_progress",
            _ => false,
        }
    }
}
