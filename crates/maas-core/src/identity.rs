//! Users, tenants, roles and memberships.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{TenantId, UserId};

/// A registered user. The password hash never leaves the store crate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub email: String,
    /// Platform administrators manage every tenant. The first user registered is one.
    pub is_admin: bool,
    pub created_at: DateTime<Utc>,
}

/// Whether a tenant is a user's personal tenant or an organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TenantKind {
    Personal,
    Organization,
}

impl TenantKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TenantKind::Personal => "personal",
            TenantKind::Organization => "organization",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "personal" => Some(TenantKind::Personal),
            "organization" => Some(TenantKind::Organization),
            _ => None,
        }
    }
}

/// A tenant: the unit that owns models, deployments, keys and usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Tenant {
    pub id: TenantId,
    /// URL name; for a personal tenant it is the username.
    pub slug: String,
    pub name: String,
    pub kind: TenantKind,
    pub created_at: DateTime<Utc>,
}

/// A member's role in a tenant, from least to most privileged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads the tenant's resources.
    Viewer,
    /// Also uses them: calls models, creates its own read/infer keys.
    Member,
    /// Also manages them: members (below owner), every key, the audit log.
    Admin,
    /// Everything, including granting ownership.
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "viewer" => Some(Role::Viewer),
            "member" => Some(Role::Member),
            "admin" => Some(Role::Admin),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }

    /// Whether this role is at least `required`.
    pub fn allows(self, required: Role) -> bool {
        self >= required
    }
}

/// A tenant the user belongs to, with the user's role there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Membership {
    pub tenant: Tenant,
    pub role: Role,
}

/// A tenant as listed to a caller, with the caller's role (none for a platform admin who
/// is not a member).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantView {
    #[serde(flatten)]
    pub tenant: Tenant,
    pub role: Option<Role>,
}

/// A user as seen in a tenant's member list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Member {
    pub user_id: UserId,
    pub username: String,
    pub role: Role,
    pub since: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_round_trip() {
        assert!(Role::Owner.allows(Role::Admin));
        assert!(Role::Admin.allows(Role::Member));
        assert!(!Role::Viewer.allows(Role::Member));
        for r in [Role::Viewer, Role::Member, Role::Admin, Role::Owner] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
