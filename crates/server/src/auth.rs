//! API keys and the authenticated caller.
//!
//! Keys are 192 random bits from the OS, so a plain SHA-256 of the key is a safe thing to
//! store: there is nothing to brute-force that a slow password hash would protect (those exist
//! for low-entropy human passwords). A fast hash keeps authentication cheap on every request.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use instavm_api::API_KEY_HEADER;
use instavm_store::UserRecord;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Prefix of every key this server issues, so a leaked key is recognisable.
pub const KEY_PREFIX: &str = "ivm_";
/// How many leading characters of a key are kept to tell keys apart.
const DISPLAY_PREFIX_LEN: usize = 12;

/// A fresh key: `ivm_` and 48 hex digits (192 bits).
pub fn generate_key() -> String {
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{KEY_PREFIX}{}", hex::encode(bytes))
}

pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The part of a key that may be shown after creation.
pub fn display_prefix(key: &str) -> String {
    key.chars().take(DISPLAY_PREFIX_LEN).collect()
}

/// The user a request acts for.
#[derive(Debug, Clone)]
pub struct Principal(pub UserRecord);

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = header_key(&parts.headers)?.ok_or_else(|| {
            ApiError::Unauthorized("missing API key: send it in the X-API-Key header".into())
        })?;
        authenticate(state, &key).await.map(Principal)
    }
}

/// The key in the `X-API-Key` header, if any.
pub fn header_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match headers.get(API_KEY_HEADER) {
        None => Ok(None),
        Some(value) => {
            let text = value
                .to_str()
                .map_err(|_| ApiError::Unauthorized("invalid API key".into()))?
                .trim();
            Ok((!text.is_empty()).then(|| text.to_owned()))
        }
    }
}

/// Resolve a key to its user: the admin key, or an active stored key.
pub async fn authenticate(state: &AppState, key: &str) -> Result<UserRecord, ApiError> {
    let invalid = || ApiError::Unauthorized("invalid API key".into());
    if key.len() > 256 {
        return Err(invalid());
    }
    let hash = hash_key(key);
    let user = match state.admin_for_hash(&hash) {
        Some(admin) => admin,
        None => state
            .db(move |s| s.user_by_key_hash(&hash))
            .await?
            .ok_or_else(invalid)?,
    };
    crate::audit::set_actor(&user);
    Ok(user)
}

/// Constant-time comparison, so the admin check does not leak how many bytes matched.
pub fn hashes_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_prefixed_and_hash_stably() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a, b);
        assert!(a.starts_with("ivm_") && a.len() == 52, "{a}");
        assert_eq!(hash_key(&a), hash_key(&a));
        assert!(hashes_equal(&hash_key(&a), &hash_key(&a)));
        assert!(!hashes_equal(&hash_key(&a), &hash_key(&b)));
        assert_eq!(display_prefix(&a).len(), 12);
    }
}
