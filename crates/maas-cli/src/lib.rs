//! The `maas` command-line client: every command is an HTTP call to a MaaS server, with
//! credentials kept in the user's config dir (mode 0600).

mod billing;
mod chat;
mod client;
mod commands;
mod credentials;
mod deployments;
mod embed;
mod error;
mod files;
mod models;
mod npy;
mod output;
mod predict;
mod progress;
mod pull;
mod push;

pub use commands::{Command, GlobalArgs, run};
pub use credentials::Credentials;
pub use error::CliError;
