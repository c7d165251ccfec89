//! The secrets vault's own logic, free of HTTP and SQL: sealing credential values at rest
//! ([`crypto`]), the provider catalog ([`catalog`]), service auth configs and what injection
//! does to a request ([`auth`]), per-VM placeholders ([`placeholder`]) and the platform CA that
//! signs the TLS proxy's leaf certificates ([`ca`]).
//!
//! The rule everything here keeps: a credential value exists in clear only in the server's
//! memory, for the time of one sealing, unsealing or injection. It is never formatted by
//! `Debug`, never logged, never returned.

pub mod auth;
pub mod ca;
pub mod catalog;
pub mod crypto;
pub mod placeholder;

pub use auth::{AuthConfig, AuthError};
pub use ca::{CaError, PlatformCa};
pub use catalog::{CatalogEntry, CATALOG};
pub use crypto::{CryptoError, Sealer, Secret};
