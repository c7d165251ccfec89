//! `instavm server` flags of the secrets vault (docs/vault.md). The sealing key is read from
//! `INSTAVM_VAULT_KEY` only, never a flag: a key on the command line shows up in `ps`.

use clap::Args;
use instavm_server::vault::VaultSettings;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct VaultArgs {
    /// How many days vault request logs are kept.
    #[arg(long, env = "INSTAVM_VAULT_LOG_RETENTION_DAYS", default_value_t = 30)]
    pub vault_log_retention_days: u64,
    /// A CA certificate (PEM) the vault proxy trusts for upstream servers, beside the host's
    /// trust store (repeatable; for a private CA, and for tests).
    #[arg(
        long = "upstream-ca",
        env = "INSTAVM_VAULT_UPSTREAM_CA",
        value_delimiter = ','
    )]
    pub upstream_ca: Vec<PathBuf>,
}

impl VaultArgs {
    pub fn settings(&self) -> VaultSettings {
        VaultSettings {
            key: std::env::var(instavm_vault::crypto::KEY_ENV)
                .ok()
                .filter(|k| !k.trim().is_empty()),
            log_retention: std::time::Duration::from_secs(
                self.vault_log_retention_days.max(1) * 86400,
            ),
            upstream_ca: self.upstream_ca.clone(),
        }
    }
}
