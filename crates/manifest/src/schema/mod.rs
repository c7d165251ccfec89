//! The `instavm.yaml` schema (v1 and v2; kinds service, cron, job and devbox) exactly as the
//! reference parser validates it: model, field helpers, loader, errors and derived payloads.

mod blocks;
mod derived;
mod devbox;
mod error;
mod fields;
mod load;
mod model;
mod timezone;
mod workloads;

pub(crate) use derived::int_json;
pub use derived::{EgressDomain, EgressPolicy, VolumePayload};
pub use error::ManifestError;
pub use load::{load_manifest, parse_manifest};
pub use model::*;
