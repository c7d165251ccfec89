//! The instavm control plane: the HTTP API of spec/api.md over a sandbox [`Runtime`] and the
//! SQLite [`Store`].
//!
//! [`app`] builds the router (used in process by tests), [`run`] is `instavm server`.
//!
//! [`Runtime`]: instavm_runtime::Runtime
//! [`Store`]: instavm_store::Store

pub mod admission;
mod audit;
pub mod auth;
pub mod config;
mod egress;
pub mod error;
mod exec;
mod extract;
mod gate;
mod json_body;
pub mod lifecycle;
pub mod metering;
mod metrics;
mod routes;
mod serve;
mod sessions;
pub mod shares;
mod snapshots;
mod ssh_gateway;
mod sshkey;
pub mod state;
mod tapes;
mod terminals;
mod usage;
pub mod vault;
mod vms;
mod volumes;
pub mod webhooks;
pub mod workloads;

pub use config::{AdmissionLimits, ConfigFile, Limits, RuntimeKind, ServerConfig};
pub use metering::BillingSettings;
pub use routes::app;
pub use serve::{ns_config, purge, run, ServeError};
pub use shares::ShareSettings;
pub use state::{AppState, Readiness};
pub use webhooks::WebhookSettings;
