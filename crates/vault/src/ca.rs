//! The platform CA: generated once in the data directory (`vault-ca/ca.key`, mode 0600, never
//! inside any VM; `vault-ca/ca.pem`, the certificate VMs trust). It signs one leaf per host
//! name the vault proxy terminates TLS for.
//!
//! At load the issuer is rebuilt from the stored key and the fixed distinguished name: leaves
//! it signs chain to the stored certificate (same subject, same key).

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::io::Write;
use std::path::{Path, PathBuf};

const CA_CN: &str = "instavm vault egress CA";

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("vault CA file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("vault CA: {0}")]
    Cert(#[from] rcgen::Error),
}

pub struct PlatformCa {
    issuer: rcgen::Certificate,
    key: KeyPair,
    pem: String,
    dir: PathBuf,
}

/// A leaf certificate and its key, DER.
pub struct Leaf {
    pub cert_der: Vec<u8>,
    pub ca_der: Vec<u8>,
    pub key_pkcs8_der: Vec<u8>,
}

fn ca_params() -> Result<CertificateParams, CaError> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_CN);
    dn.push(DnType::OrganizationName, "instavm");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2044, 1, 1);
    Ok(p)
}

impl PlatformCa {
    /// Load the CA of `data_dir`, or create it.
    pub fn load_or_create(data_dir: &Path) -> Result<PlatformCa, CaError> {
        let dir = data_dir.join("vault-ca");
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| CaError::Io {
                path: path.clone(),
                source,
            }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let key_path = dir.join("ca.key");
        let pem_path = dir.join("ca.pem");
        let key = match std::fs::read_to_string(&key_path) {
            Ok(text) => KeyPair::from_pem(&text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = KeyPair::generate()?;
                use std::os::unix::fs::OpenOptionsExt;
                let tmp = dir.join("ca.key.tmp");
                let _ = std::fs::remove_file(&tmp);
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map_err(io(&tmp))?;
                f.write_all(key.serialize_pem().as_bytes())
                    .map_err(io(&tmp))?;
                f.sync_all().map_err(io(&tmp))?;
                std::fs::rename(&tmp, &key_path).map_err(io(&key_path))?;
                let _ = std::fs::remove_file(&pem_path);
                key
            }
            Err(e) => return Err(io(&key_path)(e)),
        };
        let issuer = ca_params()?.self_signed(&key)?;
        let pem = match std::fs::read_to_string(&pem_path) {
            Ok(pem) => pem,
            Err(_) => {
                let pem = issuer.pem();
                std::fs::write(&pem_path, &pem).map_err(io(&pem_path))?;
                pem
            }
        };
        Ok(PlatformCa {
            issuer,
            key,
            pem,
            dir,
        })
    }

    /// The CA certificate (PEM) that VMs trust.
    pub fn cert_pem(&self) -> &str {
        &self.pem
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A leaf for `host` (DNS name), valid for TLS servers.
    pub fn issue(&self, host: &str) -> Result<Leaf, CaError> {
        let mut p = CertificateParams::new(vec![host.to_owned()])?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        p.distinguished_name = dn;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.not_before = rcgen::date_time_ymd(2024, 1, 1);
        p.not_after = rcgen::date_time_ymd(2044, 1, 1);
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &self.issuer, &self.key)?;
        let ca_der = pem_to_der(&self.pem).unwrap_or_else(|| self.issuer.der().to_vec());
        Ok(Leaf {
            cert_der: cert.der().to_vec(),
            ca_der,
            key_pkcs8_der: key.serialize_der(),
        })
    }
}

fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("");
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_key_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = PlatformCa::load_or_create(dir.path()).unwrap();
        let b = PlatformCa::load_or_create(dir.path()).unwrap();
        assert_eq!(a.cert_pem(), b.cert_pem());
        let mode = std::fs::metadata(dir.path().join("vault-ca/ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let leaf = b.issue("api.openai.com").unwrap();
        assert!(!leaf.cert_der.is_empty());
        assert_eq!(leaf.ca_der, pem_to_der(a.cert_pem()).unwrap());
    }
}
