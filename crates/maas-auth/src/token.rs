//! Random secrets and their digests. Session ids and API keys are 256-bit random values;
//! stores keep only their SHA-256, so a leaked database or Redis dump reveals no credential.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use sha2::{Digest, Sha256};

/// Every API key starts with this, so secret scanners and people can recognise one.
pub const API_KEY_PREFIX: &str = "maas_";

/// 32 random bytes, base64url without padding (43 characters).
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A new API key secret: `maas_` followed by 43 random characters.
pub fn new_api_key() -> String {
    format!("{API_KEY_PREFIX}{}", random_secret())
}

/// Hex SHA-256 of a secret.
pub fn digest(secret: &str) -> String {
    let hash = Sha256::digest(secret.as_bytes());
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_digests_stable() {
        let (a, b) = (new_api_key(), new_api_key());
        assert_ne!(a, b);
        assert!(a.starts_with("maas_") && a.len() == 48);
        assert_eq!(digest("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
