//! Shared state of the HTTP gateway and its configuration.

use maas_auth::IdentityService;
use serde::{Deserialize, Serialize};

/// Settings of the HTTP edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Largest JSON body accepted by the management API, in bytes.
    pub max_body_bytes: usize,
    /// Take the client IP from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// Mark the session cookie `Secure` (set when the platform is served over HTTPS).
    pub secure_cookies: bool,
    /// Largest inference request body (v2 and `/v1`), in bytes; also the largest answer (or
    /// stream event) read from an external engine.
    pub max_infer_bytes: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            trust_forwarded_for: false,
            secure_cookies: false,
            max_infer_bytes: 64 << 20,
        }
    }
}

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub identity: IdentityService,
    pub registry: maas_registry::Registry,
    pub controller: maas_controller::Controller,
    pub metering: crate::metering::Metering,
    pub config: GatewayConfig,
}
