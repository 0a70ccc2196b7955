//! The client subcommands of `maas` and what each one sends.

use std::io::BufRead as _;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use crate::billing::{self, InvoicesArgs, UsageArgs};
use crate::chat::{self, ChatArgs};
use crate::client::{self, Auth, Client};
use crate::deployments::{DeployArgs, DeploymentsCommand};
use crate::embed::{self, EmbedArgs};
use crate::models::ModelsCommand;
use crate::output::{self, Output, field};
use crate::predict::PredictArgs;
use crate::pull::PullArgs;
use crate::push::PushArgs;
use crate::{CliError, Credentials, deployments, models, predict, pull, push};

/// Options every client command takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Server URL (default: the one you logged in to, else http://127.0.0.1:8080).
    #[arg(long, env = "MAAS_SERVER", global = true)]
    pub server: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text", global = true)]
    pub output: Output,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Log in and remember the session (or an API key) for later commands.
    Login(LoginArgs),
    /// Log out: end the session and forget stored credentials.
    Logout,
    /// Show who you are and your tenants.
    Whoami,
    /// Organisations.
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Tenant members.
    #[command(subcommand)]
    Members(MembersCommand),
    /// API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// A tenant's audit log, newest first (owners and admins).
    Audit {
        tenant: String,
        /// How many entries.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Models in the registry: create, list, show, delete.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Upload a directory (or one file) into a model version; resumes interrupted uploads.
    Push(PushArgs),
    /// Download a model version's files into a directory; resumes partial downloads.
    Pull(PullArgs),
    /// Serve a published model version (ONNX, embeddings, GGUF/safetensors LLM, external) as an
    /// inference endpoint TENANT/NAME.
    Deploy(DeployArgs),
    /// Deployments: list, show, update, delete.
    #[command(subcommand)]
    Deployments(DeploymentsCommand),
    /// Run one inference on a deployment (v2 protocol, JSON tensors from .npy files or JSON).
    Predict(PredictArgs),
    /// Chat with a text-generation deployment; answers stream as they are generated.
    Chat(ChatArgs),
    /// Sentence embeddings of texts from an embeddings deployment.
    Embed(EmbedArgs),
    /// Metered usage of a tenant, per day, deployment, API key or model.
    Usage(UsageArgs),
    /// A tenant's monthly invoices, or one invoice with its lines.
    Invoices(InvoicesArgs),
}

#[derive(Debug, Clone, Args)]
pub struct LoginArgs {
    /// Username or email (not needed with --api-key).
    pub login: Option<String>,
    /// Password (default: $MAAS_PASSWORD, else asked for).
    #[arg(long, env = "MAAS_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Store this API key instead of logging in with a password.
    #[arg(long, conflicts_with_all = ["login", "password"])]
    pub api_key: Option<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum TenantsCommand {
    /// Create an organisation (you become its owner).
    Create {
        slug: String,
        /// Display name (default: the slug).
        #[arg(long)]
        name: Option<String>,
    },
    /// List your tenants (all tenants for a platform admin).
    List,
}

#[derive(Debug, Clone, Subcommand)]
pub enum MembersCommand {
    /// Add a member or change their role.
    Add {
        tenant: String,
        username: String,
        #[arg(long, default_value = "member", value_parser = ["viewer", "member", "admin", "owner"])]
        role: String,
    },
    /// List members.
    List { tenant: String },
    /// Remove a member.
    Remove { tenant: String, username: String },
}

#[derive(Debug, Clone, Subcommand)]
pub enum KeysCommand {
    /// Create an API key; its secret is printed once.
    Create {
        tenant: String,
        #[arg(long)]
        name: String,
        /// Comma-separated scopes: read, infer, manage.
        #[arg(long, value_delimiter = ',', default_value = "read,infer")]
        scopes: Vec<String>,
        /// Expiry as an RFC 3339 time, e.g. 2027-01-01T00:00:00Z.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// List keys (no secrets).
    List { tenant: String },
    /// Revoke a key by id.
    Revoke { tenant: String, id: String },
}

/// Runs one client command.
pub async fn run(global: &GlobalArgs, command: Command) -> Result<(), CliError> {
    let server = global.server.as_deref();
    let out = global.output;
    match command {
        Command::Login(args) => login(server, out, args).await,
        Command::Logout => logout(server).await,
        Command::Whoami => {
            let c = client::authenticated(server).await?;
            let me = c.json(c.request(Method::GET, "/api/v1/me")).await?;
            show(out, &me, || {
                let user = &me["user"];
                let admin = if user["is_admin"] == json!(true) { " [platform admin]" } else { "" };
                println!("{} <{}>{admin} on {}", field(user, "username"), field(user, "email"), c.base);
                tenant_rows(&me["tenants"]);
            });
            Ok(())
        }
        Command::Tenants(cmd) => tenants(server, out, cmd).await,
        Command::Members(cmd) => members(server, out, cmd).await,
        Command::Keys(cmd) => keys(server, out, cmd).await,
        Command::Audit { tenant, limit } => {
            let c = client::authenticated(server).await?;
            let page = c.json(c.request(Method::GET, &format!("/api/v1/tenants/{tenant}/audit?limit={limit}"))).await?;
            show(out, &page, || {
                let rows: Vec<_> = items(&page)
                    .iter()
                    .map(|e| {
                        vec![
                            field(e, "at"),
                            field(e, "actor"),
                            field(e, "action"),
                            field(e, "target"),
                            field(e, "client_ip"),
                        ]
                    })
                    .collect();
                output::table(&["at", "actor", "action", "target", "from"], &rows);
            });
            Ok(())
        }
        Command::Models(cmd) => models::run(server, out, cmd).await,
        Command::Push(args) => push::run(server, out, args).await,
        Command::Pull(args) => pull::run(server, out, args).await,
        Command::Deploy(args) => deployments::deploy(server, out, args).await,
        Command::Deployments(cmd) => deployments::run(server, out, cmd).await,
        Command::Predict(args) => predict::run(server, out, args).await,
        Command::Chat(args) => chat::run(server, args).await,
        Command::Embed(args) => embed::run(server, out, args).await,
        Command::Usage(args) => billing::usage(server, out, args).await,
        Command::Invoices(args) => billing::invoices(server, out, args).await,
    }
}

/// Prints `value` as JSON, or runs `text` to print it for people.
pub(crate) fn show(out: Output, value: &Value, text: impl FnOnce()) {
    match out {
        Output::Json => output::json(value),
        Output::Text => text(),
    }
}

/// The `items` array of a list answer.
pub(crate) fn items(value: &Value) -> &[Value] {
    value["items"].as_array().map(Vec::as_slice).unwrap_or_default()
}

fn tenant_rows(tenants: &Value) {
    let rows: Vec<Vec<String>> = tenants
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|t| vec![field(t, "slug"), field(t, "name"), field(t, "kind"), field(t, "role")])
        .collect();
    output::table(&["slug", "name", "kind", "role"], &rows);
}

fn read_password() -> Result<String, CliError> {
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return rpassword::prompt_password("Password: ").map_err(CliError::Password);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(CliError::Password)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

async fn login(server: Option<&str>, out: Output, args: LoginArgs) -> Result<(), CliError> {
    let mut creds = Credentials::load()?;
    let base = server.map(str::to_owned).or_else(|| creds.server.clone()).unwrap_or_else(client::default_server);
    let (me, creds) = if let Some(key) = args.api_key {
        let c = Client::new(&base, Auth::ApiKey(key.clone()))?;
        let me = c.json(c.request(Method::GET, "/api/v1/me")).await?;
        (me, Credentials { server: Some(base), session: None, api_key: Some(key) })
    } else {
        let login = match args.login {
            Some(login) => login,
            None => {
                eprint!("Username or email: ");
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line).map_err(CliError::Password)?;
                line.trim().to_owned()
            }
        };
        let password = match args.password {
            Some(p) => p,
            None => read_password()?,
        };
        let c = Client::new(&base, Auth::None)?;
        let key = if login.contains('@') { "email" } else { "username" };
        let response = c
            .send(c.request(Method::POST, "/api/v1/auth/login").json(&json!({ key: login, "password": password })))
            .await?;
        let session = client::session_from(&response).ok_or(CliError::NoSessionCookie)?;
        let me: Value = response.json().await?;
        creds.server = Some(base);
        creds.session = Some(session);
        creds.api_key = None;
        (me, creds)
    };
    creds.save()?;
    show(out, &me, || {
        println!("Logged in as {} ({})", field(&me["user"], "username"), creds.server.as_deref().unwrap_or_default());
    });
    Ok(())
}

async fn logout(server: Option<&str>) -> Result<(), CliError> {
    let creds = Credentials::load()?;
    if let Some(session) = creds.session {
        let base = server.map(str::to_owned).or(creds.server).unwrap_or_else(client::default_server);
        let c = Client::new(&base, Auth::Session(session))?;
        // The server may be gone; the local credentials are forgotten regardless.
        let _ = c.send(c.request(Method::POST, "/api/v1/auth/logout")).await;
    }
    Credentials::remove()?;
    eprintln!("Logged out.");
    Ok(())
}

async fn tenants(server: Option<&str>, out: Output, cmd: TenantsCommand) -> Result<(), CliError> {
    let c = client::authenticated(server).await?;
    match cmd {
        TenantsCommand::Create { slug, name } => {
            let name = name.unwrap_or_else(|| slug.clone());
            let t =
                c.json(c.request(Method::POST, "/api/v1/tenants").json(&json!({ "slug": slug, "name": name }))).await?;
            show(out, &t, || println!("Created organisation {} ({})", field(&t, "slug"), field(&t, "id")));
        }
        TenantsCommand::List => {
            let list = c.json(c.request(Method::GET, "/api/v1/tenants")).await?;
            show(out, &list, || tenant_rows(&list["items"]));
        }
    }
    Ok(())
}

async fn members(server: Option<&str>, out: Output, cmd: MembersCommand) -> Result<(), CliError> {
    let c = client::authenticated(server).await?;
    match cmd {
        MembersCommand::Add { tenant, username, role } => {
            let path = format!("/api/v1/tenants/{tenant}/members");
            let m = c.json(c.request(Method::POST, &path).json(&json!({ "username": username, "role": role }))).await?;
            show(out, &m, || println!("{} is now {} of {tenant}", field(&m, "username"), field(&m, "role")));
        }
        MembersCommand::List { tenant } => {
            let list = c.json(c.request(Method::GET, &format!("/api/v1/tenants/{tenant}/members"))).await?;
            show(out, &list, || {
                let rows: Vec<_> = items(&list)
                    .iter()
                    .map(|m| vec![field(m, "username"), field(m, "role"), field(m, "since")])
                    .collect();
                output::table(&["username", "role", "since"], &rows);
            });
        }
        MembersCommand::Remove { tenant, username } => {
            c.send(c.request(Method::DELETE, &format!("/api/v1/tenants/{tenant}/members/{username}"))).await?;
            show(out, &json!({ "removed": username }), || println!("Removed {username} from {tenant}"));
        }
    }
    Ok(())
}

async fn keys(server: Option<&str>, out: Output, cmd: KeysCommand) -> Result<(), CliError> {
    let c = client::authenticated(server).await?;
    match cmd {
        KeysCommand::Create { tenant, name, scopes, expires_at } => {
            let body = json!({ "name": name, "scopes": scopes, "expires_at": expires_at });
            let k = c.json(c.request(Method::POST, &format!("/api/v1/tenants/{tenant}/keys")).json(&body)).await?;
            show(out, &k, || {
                println!("Created key {} ({}) with scopes {}", field(&k, "name"), field(&k, "id"), field(&k, "scopes"));
                println!("Secret (shown only now): {}", field(&k, "key"));
            });
        }
        KeysCommand::List { tenant } => {
            let list = c.json(c.request(Method::GET, &format!("/api/v1/tenants/{tenant}/keys"))).await?;
            show(out, &list, || {
                let rows: Vec<_> = items(&list)
                    .iter()
                    .map(|k| {
                        let state = if !k["revoked_at"].is_null() { "revoked" } else { "active" };
                        vec![
                            field(k, "id"),
                            field(k, "name"),
                            field(k, "prefix"),
                            field(k, "scopes"),
                            state.to_owned(),
                            field(k, "expires_at"),
                            field(k, "last_used_at"),
                        ]
                    })
                    .collect();
                output::table(&["id", "name", "prefix", "scopes", "state", "expires", "last used"], &rows);
            });
        }
        KeysCommand::Revoke { tenant, id } => {
            c.send(c.request(Method::DELETE, &format!("/api/v1/tenants/{tenant}/keys/{id}"))).await?;
            show(out, &json!({ "revoked": id }), || println!("Revoked key {id}"));
        }
    }
    Ok(())
}
