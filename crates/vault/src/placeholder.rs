//! Placeholders: what a VM attached to a vault sees instead of a value. One random token per
//! (VM, credential), exported as an environment variable named after the credential.

use rand::RngCore;

/// Prefix of every placeholder token (so logs and tests can tell one).
pub const PREFIX: &str = "ivp_";

pub fn new_token() -> String {
    let mut b = [0u8; 20];
    rand::thread_rng().fill_bytes(&mut b);
    format!("{PREFIX}{}", hex::encode(b))
}

/// Whether a credential name can be an environment variable name.
pub fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
