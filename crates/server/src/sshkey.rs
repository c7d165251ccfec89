//! OpenSSH public keys: parsing an `authorized_keys`-style line and its SHA-256 fingerprint.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use sha2::{Digest, Sha256};

/// Key types the SSH gateway can authenticate.
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub key_type: String,
    /// `type base64 [comment]`, normalised to single spaces.
    pub line: String,
    pub comment: Option<String>,
    /// `SHA256:` + unpadded base64 of sha256(key blob), as `ssh-keygen -l` prints it.
    pub fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("public_key is empty")]
    Empty,
    #[error("public_key is longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("public_key must be a single line")]
    MultiLine,
    #[error("unsupported key type {0:?}; expected one of: {types}", types = KEY_TYPES.join(", "))]
    UnsupportedType(String),
    #[error("public_key has no key data after the key type")]
    MissingData,
    #[error("the key data is not valid base64")]
    BadBase64,
    #[error("the key data does not encode a {0} key")]
    TypeMismatch(String),
}

/// Parse `type base64 [comment]` (the format of `~/.ssh/*.pub`).
pub fn parse(input: &str) -> Result<PublicKey, KeyError> {
    let line = input.trim();
    if line.is_empty() {
        return Err(KeyError::Empty);
    }
    if line.len() > MAX_LINE {
        return Err(KeyError::TooLong);
    }
    if line.contains(['\n', '\r', '\0']) {
        return Err(KeyError::MultiLine);
    }
    let mut parts = line.split_ascii_whitespace();
    let key_type = parts.next().ok_or(KeyError::Empty)?;
    if !KEY_TYPES.contains(&key_type) {
        return Err(KeyError::UnsupportedType(
            key_type.chars().take(64).collect(),
        ));
    }
    let data = parts.next().ok_or(KeyError::MissingData)?;
    let blob = STANDARD.decode(data).map_err(|_| KeyError::BadBase64)?;
    if blob_type(&blob) != Some(key_type.as_bytes()) {
        return Err(KeyError::TypeMismatch(key_type.to_owned()));
    }
    let comment = parts.collect::<Vec<_>>().join(" ");
    let comment = (!comment.is_empty()).then_some(comment);
    let fingerprint = format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(&blob)));
    let line = match &comment {
        Some(c) => format!("{key_type} {data} {c}"),
        None => format!("{key_type} {data}"),
    };
    Ok(PublicKey {
        key_type: key_type.to_owned(),
        line,
        comment,
        fingerprint,
    })
}

/// The key type string at the start of an SSH wire-format key blob.
fn blob_type(blob: &[u8]) -> Option<&[u8]> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    blob.get(4..4usize.checked_add(len)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Generated with `ssh-keygen -t ed25519 -C test@example`; `ssh-keygen -lf` printed
    // `SHA256:bU05fYdcKvBloGJtHM7i8Ao2bQyKnP7FxU5KXJwFPDU` for it.
    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOXVjkXmOASXrQbvyWaF9wtjh+RVyXP7SjOBus2Q2o9H test@example";

    #[test]
    fn parses_and_fingerprints_like_ssh_keygen() {
        let k = parse(&format!("  {KEY}\n")).unwrap();
        assert_eq!(k.key_type, "ssh-ed25519");
        assert_eq!(k.comment.as_deref(), Some("test@example"));
        assert_eq!(k.line, KEY);
        assert_eq!(
            k.fingerprint,
            "SHA256:bU05fYdcKvBloGJtHM7i8Ao2bQyKnP7FxU5KXJwFPDU"
        );
    }

    #[test]
    fn refuses_garbage() {
        assert_eq!(parse(""), Err(KeyError::Empty));
        assert!(matches!(
            parse("ssh-dss AAAA"),
            Err(KeyError::UnsupportedType(_))
        ));
        assert_eq!(parse("ssh-ed25519"), Err(KeyError::MissingData));
        assert_eq!(parse("ssh-ed25519 !!!"), Err(KeyError::BadBase64));
        // An RSA blob labelled as ed25519.
        assert!(matches!(
            parse("ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAAAgQ=="),
            Err(KeyError::TypeMismatch(_))
        ));
        assert_eq!(
            parse("ssh-ed25519 AAAA\nssh-rsa AAAA"),
            Err(KeyError::MultiLine)
        );
    }
}
