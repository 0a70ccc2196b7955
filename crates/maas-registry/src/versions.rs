//! Versions: drafts, listing, and publishing (which validates the files, reads the
//! signature and freezes the version).

use maas_auth::Caller;
use maas_core::registry::{ModelFile, ModelFormat, ModelVersion, VersionState};
use maas_store::StoreError;
use serde_json::json;

use crate::access::{ModelAccess, ModelRight};
use crate::{Registry, RegistryError, signature, validate};

/// Largest `metadata` object, serialised.
const MAX_METADATA_BYTES: usize = 64 * 1024;

impl Registry {
    /// Creates a draft version (write right).
    pub async fn create_version(
        &self,
        caller: &Caller,
        access: &ModelAccess,
        version: &str,
        format: ModelFormat,
        metadata: serde_json::Value,
    ) -> Result<ModelVersion, RegistryError> {
        access.require(ModelRight::Write)?;
        validate::version(version)?;
        let metadata = match metadata {
            serde_json::Value::Null => json!({}),
            m @ serde_json::Value::Object(_) => m,
            _ => return Err(RegistryError::InvalidRequest("metadata: must be a JSON object".into())),
        };
        if metadata.to_string().len() > MAX_METADATA_BYTES {
            return Err(RegistryError::InvalidRequest(format!("metadata: at most {MAX_METADATA_BYTES} bytes")));
        }
        let created = access.store().create_version(access.model.id, version, format, metadata).await?;
        let target = format!("{}:{version}", access.model.full_name());
        self.audit(caller, access.store(), "version.create", &target, json!({ "format": format })).await?;
        Ok(created)
    }

    /// Versions newest first; drafts only for callers who may write.
    pub async fn versions(&self, access: &ModelAccess) -> Result<Vec<ModelVersion>, RegistryError> {
        let mut all = access.store().versions(access.model.id).await?;
        if access.right < ModelRight::Write {
            all.retain(|v| v.state == VersionState::Published);
        }
        Ok(all)
    }

    /// One version and its files. `main` is the newest published version. Drafts are
    /// visible to writers only.
    pub async fn version(
        &self,
        access: &ModelAccess,
        version: &str,
    ) -> Result<(ModelVersion, Vec<ModelFile>), RegistryError> {
        let found = if version == "main" {
            let all = access.store().versions(access.model.id).await?;
            all.into_iter()
                .filter(|v| v.state == VersionState::Published)
                .max_by_key(|v| v.published_at)
                .ok_or_else(|| RegistryError::VersionNotFound("main (no published version yet)".into()))?
        } else {
            access.store().version(access.model.id, version).await.map_err(|e| match e {
                StoreError::NotFound(_) => RegistryError::VersionNotFound(version.to_owned()),
                e => e.into(),
            })?
        };
        if found.state == VersionState::Draft && access.right < ModelRight::Write {
            return Err(RegistryError::VersionNotFound(version.to_owned()));
        }
        let files = access.store().files(found.id).await?;
        Ok((found, files))
    }

    /// A draft version (write right), or "immutable" if it is published.
    pub(crate) async fn draft(&self, access: &ModelAccess, version: &str) -> Result<ModelVersion, RegistryError> {
        access.require(ModelRight::Write)?;
        let (v, _) = self.version(access, version).await?;
        if v.state != VersionState::Draft {
            return Err(RegistryError::Immutable(version.to_owned()));
        }
        Ok(v)
    }

    /// Validates every file for the version's format, reads the signature from the files,
    /// and freezes the version. A malformed file is a 422 naming the file and the problem.
    pub async fn publish(
        &self,
        caller: &Caller,
        access: &ModelAccess,
        version: &str,
    ) -> Result<ModelVersion, RegistryError> {
        let draft = self.draft(access, version).await?;
        let files = access.store().files(draft.id).await?;
        let signature = signature::read(self.artifacts.clone(), draft.format, &draft.metadata, &files).await?;
        let published = access.store().publish_version(draft.id, signature).await.map_err(|e| match e {
            StoreError::VersionNotDraft => RegistryError::Immutable(version.to_owned()),
            e => e.into(),
        })?;
        let target = format!("{}:{version}", access.model.full_name());
        self.audit(caller, access.store(), "version.publish", &target, json!({ "files": files.len() })).await?;
        Ok(published)
    }

    /// Deletes a version: drafts with the write right, published ones with admin.
    pub async fn delete_version(
        &self,
        caller: &Caller,
        access: &ModelAccess,
        version: &str,
    ) -> Result<(), RegistryError> {
        access.require(ModelRight::Write)?;
        let (v, _) = self.version(access, version).await?;
        if v.state == VersionState::Published {
            access.require(ModelRight::Admin)?;
        }
        access.store().delete_version(v.id).await?;
        let target = format!("{}:{}", access.model.full_name(), v.version);
        self.audit(caller, access.store(), "version.delete", &target, json!({ "state": v.state })).await?;
        Ok(())
    }
}

/// The 40-hex "commit" the Hugging Face Hub API names a version by: the version id's 32 hex
/// digits, zero-padded. Versions are immutable once published, so this never moves.
pub fn commit_of(version: &ModelVersion) -> String {
    format!("{}00000000", version.id.0.simple())
}

impl Registry {
    /// A Hub-style revision: `main`, a version name, or a commit from [`commit_of`].
    pub async fn revision(
        &self,
        access: &ModelAccess,
        revision: &str,
    ) -> Result<(ModelVersion, Vec<ModelFile>), RegistryError> {
        let is_commit = revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit());
        if !is_commit {
            return self.version(access, revision).await;
        }
        let all = access.store().versions(access.model.id).await?;
        let found = all
            .into_iter()
            .find(|v| commit_of(v) == revision.to_ascii_lowercase())
            .ok_or_else(|| RegistryError::VersionNotFound(revision.to_owned()))?;
        self.version(access, &found.version).await
    }
}
