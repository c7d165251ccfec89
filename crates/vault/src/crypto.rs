//! Credential values at rest: AES-256-GCM with a random 96-bit nonce per sealing and the
//! credential's id as associated data (a sealed value copied onto another row does not open).
//!
//! The key is 32 bytes: from `INSTAVM_VAULT_KEY` (64 hex digits) or the file `vault.key` in the
//! data directory, created on first start with mode 0600. Sealed layout: `1 || nonce(12) ||
//! ciphertext || tag(16)`.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use rand::RngCore;
use std::io::Write;
use std::path::Path;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
pub const KEY_ENV: &str = "INSTAVM_VAULT_KEY";
pub const KEY_FILE: &str = "vault.key";

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the vault key must be 64 hex digits (32 bytes)")]
    BadKey,
    #[error("vault key file {path}: {source}")]
    KeyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("vault key file {0} must not be readable by group or others (chmod 600)")]
    KeyFileMode(String),
    /// Wrong key, a damaged row, or a value moved to another credential.
    #[error("a sealed credential value does not open with this key")]
    Open,
    #[error("sealing failed")]
    Seal,
}

/// A credential value in clear. Never printed: `Debug` shows its length only.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

/// Seals and opens credential values with one key.
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<key>)")
    }
}

impl Sealer {
    pub fn from_key(key: [u8; 32]) -> Sealer {
        let key: Key<Aes256Gcm> = key.into();
        Sealer {
            cipher: Aes256Gcm::new(&key),
        }
    }

    pub fn from_hex(hex_key: &str) -> Result<Sealer, CryptoError> {
        let bytes = hex::decode(hex_key.trim()).map_err(|_| CryptoError::BadKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadKey)?;
        Ok(Sealer::from_key(key))
    }

    /// The key from `env_key` when given, else the key file in `data_dir` (created, 0600).
    pub fn load(env_key: Option<&str>, data_dir: &Path) -> Result<Sealer, CryptoError> {
        if let Some(k) = env_key.filter(|k| !k.trim().is_empty()) {
            return Sealer::from_hex(k);
        }
        let path = data_dir.join(KEY_FILE);
        let shown = path.display().to_string();
        let io = |source| CryptoError::KeyFile {
            path: shown.clone(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&path).map_err(io)?.permissions().mode();
                if mode & 0o077 != 0 {
                    return Err(CryptoError::KeyFileMode(shown));
                }
                Sealer::from_hex(&text)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::thread_rng().fill_bytes(&mut key);
                use std::os::unix::fs::OpenOptionsExt;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(io)?;
                f.write_all(hex::encode(key).as_bytes()).map_err(io)?;
                f.sync_all().map_err(io)?;
                Ok(Sealer::from_key(key))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Seal `value` for the credential `id`.
    pub fn seal(&self, id: &str, value: &Secret) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let n: Nonce<_> = nonce.into();
        let ct = self
            .cipher
            .encrypt(
                &n,
                Payload {
                    msg: value.expose().as_bytes(),
                    aad: id.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Seal)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub fn open(&self, id: &str, sealed: &[u8]) -> Result<Secret, CryptoError> {
        if sealed.len() < 1 + NONCE_LEN + 16 || sealed[0] != VERSION {
            return Err(CryptoError::Open);
        }
        let nonce: [u8; NONCE_LEN] = sealed[1..1 + NONCE_LEN]
            .try_into()
            .map_err(|_| CryptoError::Open)?;
        let n: Nonce<_> = nonce.into();
        let pt = self
            .cipher
            .decrypt(
                &n,
                Payload {
                    msg: &sealed[1 + NONCE_LEN..],
                    aad: id.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Open)?;
        String::from_utf8(pt)
            .map(Secret::new)
            .map_err(|_| CryptoError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_binding() {
        let s = Sealer::from_key([7; 32]);
        let v = Secret::new("sk-live-123".into());
        let sealed = s.seal("cred_a", &v).unwrap();
        assert!(!sealed.windows(11).any(|w| w == b"sk-live-123"));
        assert_eq!(s.open("cred_a", &sealed).unwrap(), v);
        assert!(matches!(s.open("cred_b", &sealed), Err(CryptoError::Open)));
        assert!(Sealer::from_key([8; 32]).open("cred_a", &sealed).is_err());
        assert_ne!(
            sealed,
            s.seal("cred_a", &v).unwrap(),
            "fresh nonce each time"
        );
        assert_eq!(format!("{v:?}"), "Secret(<11 bytes>)");
    }

    #[test]
    fn key_file_is_created_0600_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = Sealer::load(None, dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let sealed = a.seal("x", &Secret::new("v".into())).unwrap();
        let b = Sealer::load(None, dir.path()).unwrap();
        assert_eq!(b.open("x", &sealed).unwrap().expose(), "v");
        std::fs::set_permissions(
            dir.path().join(KEY_FILE),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert!(matches!(
            Sealer::load(None, dir.path()),
            Err(CryptoError::KeyFileMode(_))
        ));
        assert!(Sealer::load(Some(&"ab".repeat(32)), dir.path()).is_ok());
        assert!(Sealer::load(Some("zz"), dir.path()).is_err());
    }
}
