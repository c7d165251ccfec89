//! `instavm.yaml` v1/v2: the manifest model and its validation, zero-config project detection,
//! and the resolved deploy plan, all matching the reference Python CLI (`instavm` 0.26.1).

pub mod detect;
pub mod plan;
pub mod py;
pub mod schema;
pub mod yaml;

pub use detect::{detect_project, DeployPlan, DetectError};
pub use num_bigint::BigInt;
pub use plan::{resolve_plan, DeployOptions, DetectedPlan, ManifestPlan, Plan, PlanError};
pub use schema::{load_manifest, parse_manifest, Manifest, ManifestError};
