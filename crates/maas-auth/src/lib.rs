//! Identity and access: who is calling, and what they may do.
//!
//! - [`password`]: argon2id hashing, run off the async executor.
//! - [`token`]: random secrets (session ids, API keys) and their SHA-256 digests.
//! - [`session`]: server-side sessions behind [`SessionStore`] (in-memory and Redis).
//! - [`counter`]: expiring counters behind [`Counter`] (in-memory and Redis), used by
//!   [`throttle`] to slow down password guessing.
//! - [`principal`]: the authenticated caller and the tenant-access check that hands out a
//!   tenant-scoped store handle.
//! - [`service`]: the operations the management API exposes (accounts, tenants, members,
//!   keys, audit), each recording its audit entry.

pub mod counter;
pub mod error;
pub mod password;
pub mod principal;
pub mod service;
pub mod session;
pub mod throttle;
pub mod token;

pub use counter::{Counter, MemoryCounter, RedisCounter};
pub use error::AuthError;
pub use principal::{Caller, Principal, TenantAccess};
pub use service::{AuthConfig, IdentityService};
pub use session::{MemorySessions, RedisSessions, Session, SessionStore};
pub use throttle::ThrottleConfig;
