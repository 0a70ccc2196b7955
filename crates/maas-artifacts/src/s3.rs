//! `S3Artifacts`: blobs in any S3-compatible object store (AWS S3, MinIO, SeaweedFS),
//! through `object_store`. Large files are uploaded as multipart uploads in fixed-size parts
//! read from the staged file, so memory stays bounded.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt as _;
use maas_core::Secret;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt as _, WriteMultipart};
use tokio::io::AsyncReadExt as _;

use crate::{ArtifactError, ArtifactStore, ByteStream, Digest, Staged};

/// Bytes per multipart part (S3 needs ≥ 5 MiB except for the last part).
const PART_SIZE: usize = 16 * 1024 * 1024;
/// Parts uploaded concurrently.
const PARTS_IN_FLIGHT: usize = 4;

/// Where and how to reach the bucket (also the `artifacts.s3` configuration section).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    pub bucket: String,
    /// e.g. `http://127.0.0.1:9000`; unset for AWS itself.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: Secret<String>,
    pub secret_access_key: Secret<String>,
    /// Key prefix inside the bucket, e.g. `maas/`.
    pub prefix: String,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            bucket: String::new(),
            endpoint: None,
            region: "us-east-1".into(),
            access_key_id: Secret::default(),
            secret_access_key: Secret::default(),
            prefix: String::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct S3Artifacts {
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

impl S3Artifacts {
    pub fn new(config: &S3Config) -> Result<Self, ArtifactError> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(config.access_key_id.expose())
            .with_secret_access_key(config.secret_access_key.expose());
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        Ok(Self { store: Arc::new(builder.build()?), prefix: config.prefix.clone() })
    }

    fn key(&self, digest: &Digest) -> ObjectPath {
        ObjectPath::from(format!("{}sha256/{}", self.prefix, digest.as_str()))
    }
}

fn not_found(e: object_store::Error) -> ArtifactError {
    match e {
        object_store::Error::NotFound { .. } => ArtifactError::NotFound,
        e => e.into(),
    }
}

#[async_trait]
impl ArtifactStore for S3Artifacts {
    fn backend(&self) -> &'static str {
        "s3"
    }

    async fn contains(&self, digest: &Digest) -> Result<bool, ArtifactError> {
        match self.store.head(&self.key(digest)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn ingest(&self, staged: Staged, digest: &Digest) -> Result<(), ArtifactError> {
        if !self.contains(digest).await? {
            let upload = self.store.put_multipart(&self.key(digest)).await?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            let mut file = tokio::fs::File::open(staged.path()).await?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = file.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                writer.write(&buf[..n]);
            }
            writer.finish().await?;
        }
        tokio::fs::remove_file(staged.path()).await?;
        Ok(())
    }

    async fn get(&self, digest: &Digest, range: Option<Range<u64>>) -> Result<ByteStream, ArtifactError> {
        let options = GetOptions { range: range.map(GetRange::Bounded), ..GetOptions::default() };
        let result = self.store.get_opts(&self.key(digest), options).await.map_err(not_found)?;
        Ok(result.into_stream().map(|chunk| chunk.map_err(ArtifactError::from)).boxed())
    }

    async fn read_range(&self, digest: &Digest, range: Range<u64>) -> Result<Bytes, ArtifactError> {
        self.store.get_range(&self.key(digest), range).await.map_err(not_found)
    }

    async fn size(&self, digest: &Digest) -> Result<u64, ArtifactError> {
        Ok(self.store.head(&self.key(digest)).await.map_err(not_found)?.size)
    }

    async fn delete(&self, digest: &Digest) -> Result<(), ArtifactError> {
        match self.store.delete(&self.key(digest)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Staging;

    /// Runs against the SeaweedFS S3 server that `scripts/test.sh` starts.
    #[tokio::test]
    async fn contract() {
        let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set: use scripts/test.sh"));
        let store = S3Artifacts::new(&S3Config {
            bucket: var("MAAS_TEST_S3_BUCKET"),
            endpoint: Some(var("MAAS_TEST_S3_ENDPOINT")),
            region: var("MAAS_TEST_S3_REGION"),
            access_key_id: Secret::new(var("MAAS_TEST_S3_ACCESS_KEY")),
            secret_access_key: Secret::new(var("MAAS_TEST_S3_SECRET_KEY")),
            prefix: format!("test-{}/", uuid::Uuid::new_v4().simple()),
        })
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let staging = Staging::new(dir.path()).unwrap();
        crate::contract::round_trip(&store, &staging).await;

        // A file bigger than one part goes up as a multipart upload.
        let big: Vec<u8> = (0..(PART_SIZE + 3_000_000)).map(|i| (i % 253) as u8).collect();
        let (staged, digest) = crate::contract::stage(&staging, &big).await;
        store.ingest(staged, &digest).await.unwrap();
        assert_eq!(store.size(&digest).await.unwrap(), big.len() as u64);
        let tail = store.read_range(&digest, (big.len() - 10) as u64..big.len() as u64).await.unwrap();
        assert_eq!(tail.as_ref(), &big[big.len() - 10..]);
        store.delete(&digest).await.unwrap();
    }
}
