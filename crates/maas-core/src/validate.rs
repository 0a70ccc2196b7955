//! Validation of user-supplied names: usernames, tenant slugs, emails, passwords.

use crate::{Coded, ErrorCode};

/// A field failed validation; the message says which and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidField {
    pub field: &'static str,
    pub reason: String,
}

impl Coded for InvalidField {
    fn code(&self) -> ErrorCode {
        ErrorCode::InvalidRequest
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> InvalidField {
    InvalidField { field, reason: reason.into() }
}

/// Slugs that would clash with routes or confuse people.
const RESERVED: &[&str] = &[
    "admin",
    "api",
    "v1",
    "v2",
    "new",
    "me",
    "settings",
    "login",
    "logout",
    "register",
    "models",
    "deployments",
    "tenants",
    "healthz",
    "readyz",
    "metrics",
    "static",
    "maas",
];

/// Usernames and tenant slugs share one namespace and one rule: 2–39 characters of
/// lowercase ASCII letters, digits and single hyphens, not starting or ending with a hyphen.
pub fn slug(field: &'static str, value: &str) -> Result<(), InvalidField> {
    if !(2..=39).contains(&value.len()) {
        return Err(invalid(field, "must be 2 to 39 characters long"));
    }
    if !value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(invalid(field, "may contain only lowercase letters, digits and '-'"));
    }
    if value.starts_with('-') || value.ends_with('-') || value.contains("--") {
        return Err(invalid(field, "must not start or end with '-' or contain '--'"));
    }
    if RESERVED.contains(&value) {
        return Err(invalid(field, format!("'{value}' is reserved")));
    }
    Ok(())
}

/// A plausible email address: one '@' with something on both sides, no spaces, ≤ 254 bytes.
pub fn email(value: &str) -> Result<(), InvalidField> {
    let ok = value.len() <= 254
        && !value.chars().any(char::is_whitespace)
        && matches!(value.split_once('@'), Some((local, domain))
            if !local.is_empty() && domain.contains('.') && !domain.contains('@')
                && !domain.starts_with('.') && !domain.ends_with('.'));
    if ok { Ok(()) } else { Err(invalid("email", "is not a valid email address")) }
}

/// Passwords: 8 to 1024 characters.
pub fn password(value: &str) -> Result<(), InvalidField> {
    match value.chars().count() {
        n if n < 8 => Err(invalid("password", "must be at least 8 characters long")),
        n if n > 1024 => Err(invalid("password", "must be at most 1024 characters long")),
        _ => Ok(()),
    }
}

/// A display name or key name: 1–100 characters, no control characters.
pub fn display_name(field: &'static str, value: &str) -> Result<(), InvalidField> {
    let n = value.trim().chars().count();
    if n == 0 || n > 100 {
        return Err(invalid(field, "must be 1 to 100 characters long"));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for ok in ["ab", "acme", "acme-corp", "a1", "x".repeat(39).as_str()] {
            assert!(slug("slug", ok).is_ok(), "{ok}");
        }
        for bad in ["a", "Acme", "-acme", "acme-", "ac--me", "ac me", "api", "é1", &"x".repeat(40)] {
            assert!(slug("slug", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails_and_passwords() {
        assert!(email("a@b.io").is_ok());
        for bad in ["", "a", "a@b", "@b.io", "a @b.io", "a@b@c.io", "a@.io"] {
            assert!(email(bad).is_err(), "{bad}");
        }
        assert!(password("12345678").is_ok());
        assert!(password("1234567").is_err());
    }
}
