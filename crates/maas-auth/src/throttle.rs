//! Login throttling: after too many failures for one account or from one IP address within
//! a window, further attempts are refused with 429 until the window ends.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::AuthError;
use crate::counter::Counter;

/// Limits on failed logins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleConfig {
    /// Failed attempts allowed per account per window.
    pub max_failures_per_account: u64,
    /// Failed attempts allowed per client IP per window.
    pub max_failures_per_ip: u64,
    /// Window length in seconds.
    pub window_secs: u64,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self { max_failures_per_account: 5, max_failures_per_ip: 50, window_secs: 900 }
    }
}

pub(crate) struct LoginThrottle<'a> {
    pub counter: &'a dyn Counter,
    pub config: &'a ThrottleConfig,
}

impl LoginThrottle<'_> {
    fn keys(login: &str, ip: Option<&str>) -> (String, Option<String>) {
        (format!("login-fail:account:{login}"), ip.map(|ip| format!("login-fail:ip:{ip}")))
    }

    /// Refuses the attempt if either the account or the IP has used up its failures.
    pub async fn check(&self, login: &str, ip: Option<&str>) -> Result<(), AuthError> {
        let (account, ip) = Self::keys(login, ip);
        let mut limits = vec![(account, self.config.max_failures_per_account)];
        limits.extend(ip.map(|k| (k, self.config.max_failures_per_ip)));
        for (key, max) in limits {
            let count = self.counter.get(&key).await?;
            if count.value >= max {
                return Err(AuthError::TooManyAttempts { retry_after_secs: count.resets_in.as_secs().max(1) });
            }
        }
        Ok(())
    }

    pub async fn failed(&self, login: &str, ip: Option<&str>) -> Result<(), AuthError> {
        let window = Duration::from_secs(self.config.window_secs.max(1));
        let (account, ip) = Self::keys(login, ip);
        self.counter.increment(&account, window).await?;
        if let Some(ip) = ip {
            self.counter.increment(&ip, window).await?;
        }
        Ok(())
    }

    /// A successful login clears the account's failures (not the IP's).
    pub async fn succeeded(&self, login: &str) -> Result<(), AuthError> {
        self.counter.reset(&Self::keys(login, None).0).await
    }
}
