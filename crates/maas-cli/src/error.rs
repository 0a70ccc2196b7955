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
}
