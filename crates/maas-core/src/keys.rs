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
    /// The key's own rate limits (the tenant's apply too).
    pub limits: RateLimits,
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

/// Per-minute rate limits of one API key. `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    pub requests_per_minute: Option<i64>,
    pub tokens_per_minute: Option<i64>,
}

impl RateLimits {
    /// Limits must be positive when set.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in
            [("requests_per_minute", self.requests_per_minute), ("tokens_per_minute", self.tokens_per_minute)]
        {
            if v.is_some_and(|v| v < 1) {
                return Err(format!("{name} must be at least 1 (leave it out for no limit)"));
            }
        }
        Ok(())
    }
}
