//! Typed identifiers: a `UserId` can never be passed where a `TenantId` is expected.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            utoipa::ToSchema,
        )]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered (UUIDv7) id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(
    /// A user account.
    UserId
);
id_type!(
    /// A tenant (a user's personal tenant or an organisation).
    TenantId
);
id_type!(
    /// An API key.
    ApiKeyId
);
id_type!(
    /// One audit log entry.
    AuditId
);
id_type!(
    /// A model in the registry.
    ModelId
);
id_type!(
    /// One version of a model.
    VersionId
);
id_type!(
    /// A (resumable) file upload in progress.
    UploadId
);
id_type!(
    /// A deployment (a model version served as an endpoint).
    DeploymentId
);
