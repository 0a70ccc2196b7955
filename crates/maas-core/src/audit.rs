//! Audit log entries: who did what to which target, when and from where.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{ApiKeyId, AuditId, TenantId, UserId};

/// One recorded management action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditEvent {
    pub id: AuditId,
    pub tenant_id: TenantId,
    pub actor_user_id: Option<UserId>,
    /// The username of the actor at the time of the action.
    pub actor: String,
    /// The API key used, when the action came through one.
    pub actor_key_id: Option<ApiKeyId>,
    /// Dotted action name, e.g. `key.create`, `member.add`.
    pub action: String,
    /// What the action touched, e.g. a key id or a username.
    pub target: String,
    pub client_ip: Option<String>,
    /// Action-specific details (e.g. the role granted).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    pub at: DateTime<Utc>,
}
