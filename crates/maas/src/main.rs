//! The `maas` binary: `maas serve` runs the platform; every other subcommand is the CLI
//! client. This file only parses arguments and wires the crates together.

mod config;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat, Overrides};

#[derive(Debug, Parser)]
#[command(name = "maas", version, about = "Model-as-a-Service: host models and offer them as APIs")]
struct Cli {
    #[command(flatten)]
    global: maas_cli::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the platform (embedded defaults: SQLite under ./maas-data, in-process state).
    Serve(ServeArgs),
    #[command(flatten)]
    Client(maas_cli::Command),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (env MAAS_DATA_DIR; default ./maas-data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// HTTP listen address (env MAAS_LISTEN; default 127.0.0.1:8080; port 0 = any free port).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// gRPC listen address (env MAAS_GRPC_LISTEN; default 127.0.0.1:8081; port 0 = any free port).
    #[arg(long)]
    grpc_listen: Option<std::net::SocketAddr>,
    /// Log format (env MAAS_LOG_FORMAT; default text).
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
}

fn init_logging(config: &Config) {
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(true);
    match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(args) => {
            let overrides = Overrides {
                data_dir: args.data_dir,
                listen: args.listen,
                grpc_listen: args.grpc_listen,
                log_format: args.log_format,
            };
            match Config::load(args.config.as_deref(), &overrides) {
                Ok(config) => {
                    init_logging(&config);
                    runtime.block_on(serve::run(config))
                }
                Err(e) => Err(e),
            }
        }
        Command::Client(command) => runtime.block_on(maas_cli::run(&cli.global, command)).map_err(anyhow::Error::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
