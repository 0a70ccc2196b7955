//! API keys and their scopes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{ApiKeyId, TenantId, UserId};

/// What an API key may do. `manage` implies `read`; `infer` is separate so that a key
/// embedded in an application can call models and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read management data (models, keys list, usage).
    Read,
    /// Call inference endpoints.
    Infer,
    /// Change management data (create, update, delete).
    Manage,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Infer => "infer",
            Scope::Manage => "manage",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Scope::Read),
            "infer" => Some(Scope::Infer),
            "manage" => Some(Scope::Manage),
            _ => None,
        }
    }

    /// Whether a key holding `scopes` may perform an action needing `self`.
    pub fn granted_by(self, scopes: &[Scope]) -> bool {
        scopes.contains(&self) || (self == Scope::Read && scopes.contains(&Scope::Manage))
    }
}

/// An API key as stored and listed. The secret itself is never kept, only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub tenant_id: TenantId,
    /// The user who created the key; the key never has more rights than this user.
    pub created_by: UserId,
    pub name: String,
    /// The first characters of the secret, to recognise a key in a list.
    pub prefix: String,
    pub scopes: Vec<Scope>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl ApiKey {
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manage_implies_read_but_not_infer() {
        assert!(Scope::Read.granted_by(&[Scope::Manage]));
        assert!(!Scope::Infer.granted_by(&[Scope::Manage]));
        assert!(!Scope::Manage.granted_by(&[Scope::Read, Scope::Infer]));
        assert!(Scope::Infer.granted_by(&[Scope::Infer]));
    }
}
