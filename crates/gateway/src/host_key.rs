//! The gateway's ed25519 host key: generated once and kept (mode 0600), so clients that pinned
//! it (`StrictHostKeyChecking=accept-new`) keep trusting the gateway across restarts.

use rand::RngCore;
use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};
use russh::keys::ssh_key::LineEnding;
use russh::keys::PrivateKey;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    #[error("reading the SSH host key {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the SSH host key {path} is not an OpenSSH private key: {reason}")]
    Parse { path: String, reason: String },
    #[error("writing the SSH host key {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

pub fn load_or_create_host_key(path: &Path) -> Result<PrivateKey, HostKeyError> {
    let shown = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => PrivateKey::from_openssh(text.as_bytes()).map_err(|e| HostKeyError::Parse {
            path: shown,
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut seed);
            let keypair = KeypairData::Ed25519(Ed25519Keypair::from_seed(&seed));
            let key =
                PrivateKey::new(keypair, "instavm-gateway").map_err(|e| HostKeyError::Parse {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?;
            let text = key
                .to_openssh(LineEnding::LF)
                .map_err(|e| HostKeyError::Parse {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?;
            let write = |text: &str| -> std::io::Result<()> {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                // Written to a temporary name, then renamed: a crash never leaves half a key.
                let tmp = path.with_extension("tmp");
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)?;
                f.write_all(text.as_bytes())?;
                f.sync_all()?;
                std::fs::rename(&tmp, path)
            };
            write(&text).map_err(|source| HostKeyError::Write {
                path: shown,
                source,
            })?;
            Ok(key)
        }
        Err(source) => Err(HostKeyError::Read {
            path: shown,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ssh_host_ed25519_key");
        let first = load_or_create_host_key(&path).unwrap();
        let second = load_or_create_host_key(&path).unwrap();
        assert_eq!(first.public_key(), second.public_key());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&path, "garbage").unwrap();
        assert!(matches!(
            load_or_create_host_key(&path),
            Err(HostKeyError::Parse { .. })
        ));
    }
}
