//! `maas models …`: create, list (search), show and delete models in the registry; and the
//! `tenant/name[:version]` references the registry commands take.

use clap::{Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{self, segment};
use crate::output::{self, Output, field};
use crate::{CliError, commands};

#[derive(Debug, Clone, Subcommand)]
pub enum ModelsCommand {
    /// Create a model in a tenant (members and up).
    Create {
        /// TENANT/NAME
        model: String,
        /// e.g. embeddings, text-generation, image-classification, tensor.
        #[arg(long)]
        task: String,
        /// Visible to everyone, including anonymous users (default: private).
        #[arg(long)]
        public: bool,
        #[arg(long, default_value = "")]
        description: String,
        /// A tag; repeat for several.
        #[arg(long = "tag")]
        tags: Vec<String>,
        #[arg(long)]
        license: Option<String>,
        /// A Markdown file to use as the README.
        #[arg(long)]
        readme: Option<std::path::PathBuf>,
    },
    /// Search the models you may see (works without logging in: public models).
    List {
        /// Full-text search on name and description.
        #[arg(long)]
        q: Option<String>,
        #[arg(long)]
        tag: Option<String>,
        #[arg(long)]
        task: Option<String>,
        /// Owner tenant.
        #[arg(long)]
        owner: Option<String>,
        #[arg(long, value_enum)]
        sort: Option<Sort>,
        /// 1-based page.
        #[arg(long)]
        page: Option<u32>,
    },
    /// Show a model and its versions.
    Show {
        /// TENANT/NAME
        model: String,
    },
    /// Delete a model with its versions and files (admin right).
    Delete {
        /// TENANT/NAME
        model: String,
    },
}

/// Orders of `maas models list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Sort {
    Downloads,
    Stars,
    Updated,
}

impl Sort {
    fn as_str(self) -> &'static str {
        match self {
            Sort::Downloads => "downloads",
            Sort::Stars => "stars",
            Sort::Updated => "updated",
        }
    }
}

/// A parsed `tenant/name[:version]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    pub tenant: String,
    pub name: String,
    pub version: Option<String>,
}

impl ModelRef {
    /// Parses `tenant/name`, with `:version` only when `allow_version`.
    pub fn parse(reference: &str, allow_version: bool) -> Result<Self, CliError> {
        let expected = if allow_version { "TENANT/NAME[:VERSION]" } else { "TENANT/NAME" };
        let bad = || CliError::BadReference { reference: reference.to_owned(), expected };
        let (model, version) = match reference.split_once(':') {
            Some((model, version)) if allow_version && !version.is_empty() => (model, Some(version.to_owned())),
            Some(_) => return Err(bad()),
            None => (reference, None),
        };
        let (tenant, name) = model.split_once('/').ok_or_else(bad)?;
        if tenant.is_empty() || name.is_empty() || name.contains('/') {
            return Err(bad());
        }
        Ok(Self { tenant: tenant.to_owned(), name: name.to_owned(), version })
    }

    /// `/api/v1/models/{tenant}/{name}`.
    pub fn api(&self) -> String {
        format!("/api/v1/models/{}/{}", segment(&self.tenant), segment(&self.name))
    }

    /// `/api/v1/models/{tenant}/{name}/versions/{version}`.
    pub fn version_api(&self, version: &str) -> String {
        format!("{}/versions/{}", self.api(), segment(version))
    }

    /// `tenant/name`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.tenant, self.name)
    }
}

pub async fn run(server: Option<&str>, out: Output, cmd: ModelsCommand) -> Result<(), CliError> {
    match cmd {
        ModelsCommand::Create { model, task, public, description, tags, license, readme } => {
            let r = ModelRef::parse(&model, false)?;
            let readme = match readme {
                Some(path) => std::fs::read_to_string(&path).map_err(CliError::file(&path))?,
                None => String::new(),
            };
            let c = client::authenticated(server).await?;
            let body = json!({
                "tenant": r.tenant,
                "name": r.name,
                "task": task,
                "visibility": if public { "public" } else { "private" },
                "description": description,
                "tags": tags,
                "license": license,
                "readme": readme,
            });
            let m = c.json(c.request(Method::POST, "/api/v1/models").json(&body)).await?;
            commands::show(out, &m, || {
                println!(
                    "Created model {}/{} ({}, {})",
                    field(&m, "owner"),
                    field(&m, "name"),
                    field(&m, "visibility"),
                    field(&m, "task")
                );
            });
        }
        ModelsCommand::List { q, tag, task, owner, sort, page } => {
            let c = client::optional(server).await?;
            let mut query: Vec<(&str, String)> = Vec::new();
            for (key, value) in [("q", q), ("tag", tag), ("task", task), ("owner", owner)] {
                if let Some(value) = value {
                    query.push((key, value));
                }
            }
            if let Some(sort) = sort {
                query.push(("sort", sort.as_str().to_owned()));
            }
            if let Some(page) = page {
                query.push(("page", page.to_string()));
            }
            let list = c.json(c.request(Method::GET, "/api/v1/models").query(&query)).await?;
            commands::show(out, &list, || {
                let rows: Vec<_> = commands::items(&list).iter().map(model_row).collect();
                output::table(&["model", "task", "visibility", "downloads", "stars", "tags", "updated"], &rows);
                let shown = commands::items(&list).len();
                println!("page {} · {shown} of {} models", field(&list, "page"), field(&list, "total"));
            });
        }
        ModelsCommand::Show { model } => {
            let r = ModelRef::parse(&model, false)?;
            let c = client::optional(server).await?;
            let mut m = c.json(c.request(Method::GET, &r.api())).await?;
            let versions = c.json(c.request(Method::GET, &format!("{}/versions", r.api()))).await?;
            m["versions"] = versions["items"].clone();
            commands::show(out, &m, || show_model(&m));
        }
        ModelsCommand::Delete { model } => {
            let r = ModelRef::parse(&model, false)?;
            let c = client::authenticated(server).await?;
            c.send(c.request(Method::DELETE, &r.api())).await?;
            commands::show(out, &json!({ "deleted": r.full_name() }), || {
                println!("Deleted model {} with its versions and files", r.full_name());
            });
        }
    }
    Ok(())
}

fn model_row(m: &Value) -> Vec<String> {
    vec![
        format!("{}/{}", field(m, "owner"), field(m, "name")),
        field(m, "task"),
        field(m, "visibility"),
        field(m, "downloads"),
        field(m, "stars"),
        field(m, "tags"),
        field(m, "updated_at"),
    ]
}

fn show_model(m: &Value) {
    println!("{}/{}  ({}, {})", field(m, "owner"), field(m, "name"), field(m, "visibility"), field(m, "task"));
    let description = field(m, "description");
    if !description.is_empty() && description != "-" {
        println!("{description}");
    }
    println!(
        "license {} · tags {} · {} downloads · {} stars · updated {}",
        field(m, "license"),
        field(m, "tags"),
        field(m, "downloads"),
        field(m, "stars"),
        field(m, "updated_at")
    );
    let versions = m["versions"].as_array().map(Vec::as_slice).unwrap_or_default();
    if versions.is_empty() {
        println!("no versions yet");
        return;
    }
    println!();
    let rows: Vec<_> = versions
        .iter()
        .map(|v| vec![field(v, "version"), field(v, "format"), field(v, "state"), field(v, "created_at")])
        .collect();
    output::table(&["version", "format", "state", "created"], &rows);
}

#[cfg(test)]
mod tests {
    use super::ModelRef;

    #[test]
    fn references() {
        let r = ModelRef::parse("acme/bert", false).unwrap();
        assert_eq!((r.tenant.as_str(), r.name.as_str(), r.version), ("acme", "bert", None));
        let r = ModelRef::parse("acme/bert:1.0", true).unwrap();
        assert_eq!(r.version.as_deref(), Some("1.0"));
        assert_eq!(r.version_api("1.0+b"), "/api/v1/models/acme/bert/versions/1.0%2Bb");
        for bad in ["acme", "/bert", "acme/", "a/b/c", "acme/bert:", "acme/bert:1"] {
            let allow = bad != "acme/bert:1";
            assert!(ModelRef::parse(bad, allow).is_err(), "{bad}");
        }
    }
}
