//! The registry's part of the store: [`Catalog`] (searching across tenants, with visibility
//! applied in SQL) and [`TenantModels`] (one tenant's models, versions, files, uploads).

use async_trait::async_trait;
use maas_core::identity::User;
use maas_core::registry::{
    Collaborator, CollaboratorAccess, Model, ModelFile, ModelFormat, ModelQuery, ModelVersion, Quota, Viewer,
    Visibility,
};
use maas_core::{ModelId, UploadId, UserId, VersionId};

use crate::Result;

/// A model to create.
#[derive(Debug, Clone)]
pub struct NewModel {
    pub name: String,
    pub task: String,
    pub visibility: Visibility,
    pub description: String,
    pub tags: Vec<String>,
    pub license: Option<String>,
    pub readme: String,
}

/// Fields to change on a model; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ModelPatch {
    pub task: Option<String>,
    pub visibility: Option<Visibility>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub license: Option<Option<String>>,
    pub readme: Option<String>,
}

/// One page of a search, with the total number of matches.
#[derive(Debug, Clone)]
pub struct ModelPage {
    pub items: Vec<Model>,
    pub total: u64,
}

/// An upload in progress: where its bytes are staged and what was announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub id: UploadId,
    pub version_id: VersionId,
    pub path: String,
    /// The total size, when the client announced it (`Content-Range: …/total`).
    pub total: Option<i64>,
    /// The SHA-256 the client announced (`X-Content-Sha256`).
    pub sha256: Option<String>,
}

/// Searches across tenants. Visibility is part of the query: a viewer never receives a
/// private model it may not see.
#[async_trait]
pub trait Catalog: Send + Sync {
    async fn search_models(&self, viewer: &Viewer, query: &ModelQuery) -> Result<ModelPage>;
}

/// One tenant's registry rows. Every query binds the handle's tenant id.
#[async_trait]
pub trait TenantModels: Send + Sync {
    async fn create_model(&self, new: NewModel) -> Result<Model>;
    async fn model(&self, name: &str) -> Result<Model>;
    async fn model_with_id(&self, id: ModelId) -> Result<Model>;
    /// The Markdown README of a model.
    async fn readme(&self, model: ModelId) -> Result<String>;
    async fn update_model(&self, model: ModelId, patch: ModelPatch) -> Result<Model>;
    async fn delete_model(&self, model: ModelId) -> Result<()>;
    async fn count_models(&self) -> Result<u64>;
    async fn add_downloads(&self, model: ModelId, n: i64) -> Result<()>;

    async fn collaborators(&self, model: ModelId) -> Result<Vec<Collaborator>>;
    async fn collaborator_access(&self, model: ModelId, user: UserId) -> Result<Option<CollaboratorAccess>>;
    async fn set_collaborator(&self, model: ModelId, user: &User, access: CollaboratorAccess) -> Result<Collaborator>;
    async fn remove_collaborator(&self, model: ModelId, user: UserId) -> Result<()>;

    /// Stars or unstars; returns the model's new star count.
    async fn set_star(&self, model: ModelId, user: UserId, starred: bool) -> Result<i64>;
    async fn starred(&self, model: ModelId, user: UserId) -> Result<bool>;

    async fn create_version(
        &self,
        model: ModelId,
        version: &str,
        format: ModelFormat,
        metadata: serde_json::Value,
    ) -> Result<ModelVersion>;
    async fn version(&self, model: ModelId, version: &str) -> Result<ModelVersion>;
    /// Newest first.
    async fn versions(&self, model: ModelId) -> Result<Vec<ModelVersion>>;
    /// Freezes a draft with its signature; fails if it is not a draft any more.
    async fn publish_version(&self, version: VersionId, signature: serde_json::Value) -> Result<ModelVersion>;
    async fn delete_version(&self, version: VersionId) -> Result<()>;

    async fn files(&self, version: VersionId) -> Result<Vec<ModelFile>>;
    async fn file(&self, version: VersionId, path: &str) -> Result<ModelFile>;
    /// Records (or replaces) a complete, verified file of a draft version.
    async fn put_file(&self, version: VersionId, path: &str, sha256: &str, size: i64) -> Result<ModelFile>;
    async fn delete_file(&self, version: VersionId, path: &str) -> Result<()>;

    async fn upload(&self, version: VersionId, path: &str) -> Result<Option<Upload>>;
    async fn start_upload(&self, upload: &Upload) -> Result<()>;
    async fn finish_upload(&self, id: UploadId) -> Result<()>;

    /// The size of content this tenant already stores under `sha256`, if any.
    async fn blob_size(&self, sha256: &str) -> Result<Option<i64>>;
    /// Bytes of all files of all versions of the tenant's models.
    async fn storage_bytes(&self) -> Result<i64>;
    async fn quota(&self) -> Result<Quota>;
    async fn set_quota(&self, quota: Quota) -> Result<Quota>;
}
