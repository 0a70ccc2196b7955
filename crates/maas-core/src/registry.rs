//! The model registry's vocabulary: models, versions, files, collaborators, queries.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{ModelId, TenantId, UserId, VersionId};

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $s:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vdoc])* $variant),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),* }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$variant),)* _ => None }
            }
        }
    };
}

string_enum!(
    /// Who can see a model.
    Visibility {
        /// Its tenant's members and its collaborators only; a 404 to everyone else.
        Private = "private",
        /// Everyone, including anonymous visitors.
        Public = "public",
    }
);

string_enum!(
    /// The format of a version's files.
    ModelFormat {
        Onnx = "onnx",
        Safetensors = "safetensors",
        Gguf = "gguf",
        /// Served elsewhere; the version holds metadata only.
        External = "external",
    }
);

string_enum!(
    /// A version is a draft until published; then it is immutable.
    VersionState {
        Draft = "draft",
        Published = "published",
    }
);

string_enum!(
    /// What a collaborator may do on one model.
    CollaboratorAccess {
        /// See the model and download its files.
        Read = "read",
        /// Also edit it and push versions.
        Write = "write",
    }
);

string_enum!(
    /// Orders of the model list.
    ModelSort {
        Downloads = "downloads",
        Stars = "stars",
        Updated = "updated",
    }
);

/// A model at `{owner}/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Model {
    pub id: ModelId,
    pub tenant_id: TenantId,
    /// The owning tenant's slug.
    pub owner: String,
    pub name: String,
    /// e.g. `embeddings`, `text-generation`, `image-classification`, `tensor`.
    pub task: String,
    pub visibility: Visibility,
    pub description: String,
    pub tags: Vec<String>,
    pub license: Option<String>,
    pub downloads: i64,
    pub calls: i64,
    pub stars: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Model {
    /// `owner/name`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
}

/// One version of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelVersion {
    pub id: VersionId,
    pub model_id: ModelId,
    pub version: String,
    pub format: ModelFormat,
    pub state: VersionState,
    /// Free-form: metrics, dataset references, parent version…
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// Inputs, outputs and format facts read from the files at publish time.
    #[schema(value_type = Option<Object>)]
    pub signature: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub published_at: Option<DateTime<Utc>>,
}

/// A file of a version, stored under its content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ModelFile {
    pub path: String,
    pub sha256: String,
    pub size: i64,
    pub created_at: DateTime<Utc>,
}

/// A user granted access to one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Collaborator {
    pub user_id: UserId,
    pub username: String,
    pub access: CollaboratorAccess,
    pub since: DateTime<Utc>,
}

/// A tenant's quotas (what it may store and use) and its tenant-wide rate limits, set by
/// platform admins. `None` is unlimited (or the server default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Quota {
    pub max_models: Option<i64>,
    pub max_storage_bytes: Option<i64>,
    /// GPU-hours per calendar month (UTC), counted from the metered compute time of GPU deployments.
    pub max_gpu_hours: Option<i64>,
    /// Inference calls per day (UTC).
    pub max_calls_per_day: Option<i64>,
    /// Input plus output tokens per day (UTC).
    pub max_tokens_per_day: Option<i64>,
    /// Inference requests per minute, summed over every key and session of the tenant.
    pub requests_per_minute: Option<i64>,
    /// Tokens per minute, summed over the tenant.
    pub tokens_per_minute: Option<i64>,
}

/// A search over the models a viewer may see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelQuery {
    /// Full-text on name and description.
    pub q: Option<String>,
    pub tag: Option<String>,
    pub task: Option<String>,
    /// Owner tenant slug.
    pub owner: Option<String>,
    pub sort: Option<ModelSort>,
    /// 1-based.
    pub page: u32,
    pub per_page: u32,
}

/// Whose view a search is: which private models it may include.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Viewer {
    pub user_id: Option<UserId>,
    /// Platform admins see everything.
    pub is_admin: bool,
    /// When set (API keys), private models of other tenants are excluded even if the user
    /// could see them through a session.
    pub only_tenant: Option<TenantId>,
}
