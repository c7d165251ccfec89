//! Wire types shared by the server, the SDK and the CLI (spec/api.md).
//!
//! Serde structs only: no HTTP framework, no runtime, no storage. Request types accept `null` for
//! every optional field (spec §0.1: a `null` is the same as a missing field) and ignore unknown
//! fields; response types always serialize as JSON objects, except where the spec requires a bare
//! array (`GET /v1/sessions/sandboxes`, `GET /v1/api-keys/`), which are plain `Vec`s.

mod audit;
mod egress;
mod error;
mod exec;
mod files;
mod keys;
mod pty;
mod sessions;
mod shares;
mod tapes;
mod users;
mod vault;
mod vms;
mod volumes;
mod webhooks;
mod workloads;

pub use audit::*;
pub use egress::*;
pub use error::*;
pub use exec::*;
pub use files::*;
pub use keys::*;
pub use pty::*;
pub use sessions::*;
pub use shares::*;
pub use tapes::*;
pub use users::*;
pub use vault::*;
pub use vms::*;
pub use volumes::*;
pub use webhooks::*;
pub use workloads::*;

use serde::{Deserialize, Serialize};

/// Header that carries the API key on every authenticated request (spec §0.1).
pub const API_KEY_HEADER: &str = "x-api-key";

/// Header the server sets on every response so a log line can be matched with a request.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// `GET /health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// Always `"ok"` (a server that cannot create sandboxes answers 503 with an [`ErrorBody`]).
    pub status: String,
    /// The sandbox backend ("namespaces" or "fake").
    pub runtime: String,
    pub version: String,
}
