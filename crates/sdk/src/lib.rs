//! Typed Rust client for the InstaVM API (spec/api.md), over the wire types of `instavm-api`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), instavm_sdk::Error> {
//! use instavm_sdk::{Client, ExecuteRequest, StartSessionRequest};
//! let client = Client::new("http://127.0.0.1:8080", Some("ivm_...".into()))?;
//! let session = client.start_session(&StartSessionRequest::default()).await?;
//! let out = client
//!     .execute(&ExecuteRequest {
//!         command: "print(1 + 1)".into(),
//!         session_id: session.session_id.clone(),
//!         language: None,
//!         timeout: None,
//!     })
//!     .await?;
//! assert_eq!(out.stdout, "2\n");
//! # Ok(()) }
//! ```

mod audit;
pub mod cassette;
mod credits;
mod egress;
mod error;
mod pty;
mod shares;
mod tapes;
mod vault;
mod vms;
mod volumes;
pub mod webhooks;
mod workloads;

pub use egress::EgressTarget;
pub use error::Error;
pub use instavm_api::*;
pub use pty::{PtyConnection, PtyEvent};

use base64::Engine;
use reqwest::{Method, RequestBuilder, Response, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The official SDK's default: also the default HTTP timeout of every request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Extra time the client waits beyond an execution's own timeout: the server answers before
/// the timeout, this only covers the network.
const EXEC_TIMEOUT_SLACK: Duration = Duration::from_secs(5);

/// A client for one server and one API key. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: Url,
    api_key: Option<String>,
    timeout: Duration,
}

impl Client {
    /// A client with the default 300 s request timeout.
    pub fn new(base_url: &str, api_key: Option<String>) -> Result<Client> {
        Client::with_timeout(base_url, api_key, DEFAULT_TIMEOUT)
    }

    pub fn with_timeout(
        base_url: &str,
        api_key: Option<String>,
        timeout: Duration,
    ) -> Result<Client> {
        let base_url = Url::parse(base_url.trim())
            .map_err(|e| Error::Invalid(format!("invalid base URL {base_url:?}: {e}")))?;
        if !matches!(base_url.scheme(), "http" | "https") || base_url.cannot_be_a_base() {
            return Err(Error::Invalid(format!(
                "invalid base URL {base_url}: use http:// or https://"
            )));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("instavm-rust-sdk/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(Error::Network)?;
        Ok(Client {
            http,
            base_url,
            api_key,
            timeout,
        })
    }

    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    pub fn api_key(&self) -> Option<&str> {
        self.api_key.as_deref()
    }

    /// The underlying HTTP client, for requests this crate has no method for.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The URL of `segments` under the base URL; each segment is percent-encoded on its own,
    /// so an id can never change the path (spec §0.1).
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn request(&self, method: Method, segments: &[&str]) -> Result<RequestBuilder> {
        let key = self.api_key.as_deref().ok_or_else(|| {
            Error::Invalid(
                "No InstaVM API key configured. Run `instavm auth set-key` or export INSTAVM_API_KEY."
                    .into(),
            )
        })?;
        Ok(self
            .http
            .request(method, self.url(segments))
            .timeout(self.timeout)
            .header(API_KEY_HEADER, key))
    }

    async fn send<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T> {
        let res = req.send().await.map_err(Error::Network)?;
        decode(res).await
    }

    async fn get<T: DeserializeOwned>(&self, segments: &[&str]) -> Result<T> {
        self.send(self.request(Method::GET, segments)?).await
    }

    async fn post<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        segments: &[&str],
        body: &B,
    ) -> Result<T> {
        self.send(self.request(Method::POST, segments)?.json(body))
            .await
    }

    // --- Health --------------------------------------------------------------------------

    /// `GET /health` (no key needed). A server that is still preparing answers 503.
    pub async fn health(&self) -> Result<Health> {
        let req = self.http.get(self.url(&["health"])).timeout(self.timeout);
        self.send(req).await
    }

    // --- Sessions ------------------------------------------------------------------------

    /// `POST /v1/sessions/session`. The key goes in the body, as the official SDK sends it;
    /// the client's key is used when `req.api_key` is unset.
    pub async fn start_session(&self, req: &StartSessionRequest) -> Result<SessionInfo> {
        let mut body = req.clone();
        if body.api_key.is_none() {
            body.api_key = self.api_key.clone();
        }
        if body.api_key.is_none() {
            return Err(Error::Invalid(
                "an API key is needed to start a session".into(),
            ));
        }
        let req = self
            .http
            .post(self.url(&["v1", "sessions", "session"]))
            .timeout(self.timeout)
            .json(&body);
        self.send(req).await
    }

    pub async fn session_info(&self, session_id: &str) -> Result<SessionInfo> {
        self.get(&["v1", "sessions", "session", session_id]).await
    }

    pub async fn session_status(&self, session_id: &str) -> Result<SessionStatus> {
        self.get(&["v1", "sessions", "status", session_id]).await
    }

    pub async fn session_usage(&self, session_id: &str) -> Result<SessionUsage> {
        self.get(&["v1", "sessions", "usage", session_id]).await
    }

    pub async fn app_url(&self, session_id: &str, port: Option<u16>) -> Result<AppUrl> {
        let mut req = self.request(Method::GET, &["v1", "sessions", "app-url", session_id])?;
        if let Some(port) = port {
            req = req.query(&[("port", port)]);
        }
        self.send(req).await
    }

    /// `GET /v1/sessions/sandboxes`: sessions whose metadata contains every key of `metadata`.
    pub async fn list_sandboxes(
        &self,
        metadata: Option<&Metadata>,
        limit: Option<u32>,
    ) -> Result<Vec<SessionInfo>> {
        let mut query = Vec::new();
        if let Some(m) = metadata {
            query.push(("metadata", serde_json::Value::Object(m.clone()).to_string()));
        }
        if let Some(l) = limit {
            query.push(("limit", l.to_string()));
        }
        let req = self
            .request(Method::GET, &["v1", "sessions", "sandboxes"])?
            .query(&query);
        self.send(req).await
    }

    /// `POST /kill`: end the session and destroy its sandbox.
    pub async fn kill(&self, session_id: &str) -> Result<KillResponse> {
        self.post(
            &["kill"],
            &KillRequest {
                session_id: session_id.to_owned(),
            },
        )
        .await
    }

    // --- Execution -----------------------------------------------------------------------

    /// `POST /execute`. A non-zero exit code is an `Ok` answer.
    pub async fn execute(&self, req: &ExecuteRequest) -> Result<ExecuteResponse> {
        let mut builder = self.request(Method::POST, &["execute"])?.json(req);
        if let Some(t) = req.timeout {
            builder = builder.timeout(Duration::from_secs(t) + EXEC_TIMEOUT_SLACK);
        }
        self.send(builder).await
    }

    pub async fn execute_async(&self, req: &ExecuteRequest) -> Result<ExecuteAsyncResponse> {
        self.post(&["execute_async"], req).await
    }

    /// `GET /v1/executions/{task_id}`.
    pub async fn execution(&self, task_id: &str) -> Result<ExecutionRecord> {
        self.get(&["v1", "executions", task_id]).await
    }

    /// Poll a task every `poll` until it is complete, for at most `timeout`.
    pub async fn wait_for_task(
        &self,
        task_id: &str,
        poll: Duration,
        timeout: Duration,
    ) -> Result<ExecutionRecord> {
        let deadline = Instant::now() + timeout;
        loop {
            let record = self.execution(task_id).await?;
            if record.is_complete {
                return Ok(record);
            }
            if Instant::now() + poll > deadline {
                return Err(Error::TaskTimeout {
                    task_id: task_id.to_owned(),
                    waited: timeout,
                });
            }
            tokio::time::sleep(poll).await;
        }
    }

    // --- Files ---------------------------------------------------------------------------

    /// `POST /upload` of bytes in memory.
    pub async fn upload_bytes(
        &self,
        session_id: &str,
        remote_path: &str,
        data: Vec<u8>,
    ) -> Result<UploadResponse> {
        let part = reqwest::multipart::Part::bytes(data).file_name("upload");
        self.upload_part(session_id, remote_path, part).await
    }

    /// `POST /upload` of a local file, streamed from disk.
    pub async fn upload_file(
        &self,
        session_id: &str,
        local: &Path,
        remote_path: &str,
    ) -> Result<UploadResponse> {
        let file = tokio::fs::File::open(local)
            .await
            .map_err(|e| Error::Invalid(format!("cannot open {}: {e}", local.display())))?;
        let len = file
            .metadata()
            .await
            .map_err(|e| Error::Invalid(format!("cannot read {}: {e}", local.display())))?
            .len();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let name = local
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "upload".into());
        let part = reqwest::multipart::Part::stream_with_length(body, len).file_name(name);
        self.upload_part(session_id, remote_path, part).await
    }

    async fn upload_part(
        &self,
        session_id: &str,
        remote_path: &str,
        part: reqwest::multipart::Part,
    ) -> Result<UploadResponse> {
        // Target fields first, so the server can stream the file straight into the sandbox.
        let form = reqwest::multipart::Form::new()
            .text(upload_fields::REMOTE_PATH, remote_path.to_owned())
            .text(upload_fields::SESSION_ID, session_id.to_owned())
            .text(upload_fields::RECURSIVE, "false")
            .part(upload_fields::FILE, part);
        self.send(self.request(Method::POST, &["upload"])?.multipart(form))
            .await
    }

    /// `POST /download`: the file's bytes.
    pub async fn download(&self, session_id: &str, filename: &str) -> Result<Vec<u8>> {
        let form = DownloadRequest {
            filename: filename.to_owned(),
            session_id: session_id.to_owned(),
        };
        let res: DownloadResponse = self
            .send(self.request(Method::POST, &["download"])?.form(&form))
            .await?;
        base64::engine::general_purpose::STANDARD
            .decode(res.content)
            .map_err(|e| Error::Decode(format!("download content is not base64: {e}")))
    }

    // --- Account -------------------------------------------------------------------------

    pub async fn me(&self) -> Result<User> {
        self.get(&["v1", "users", "me"]).await
    }

    pub async fn usage_breakdown(&self, days: u32) -> Result<UsageBreakdown> {
        let req = self
            .request(Method::GET, &["v1", "users", "me", "usage-breakdown"])?
            .query(&[("days", days)]);
        self.send(req).await
    }

    /// `POST /v1/api-keys/`; the answer holds the only copy of the new key.
    pub async fn create_api_key(&self, description: Option<&str>) -> Result<CreatedApiKey> {
        let body = CreateApiKeyRequest {
            description: description.map(str::to_owned),
        };
        self.post(&["v1", "api-keys", ""], &body).await
    }

    pub async fn list_api_keys(&self) -> Result<Vec<ApiKey>> {
        self.get(&["v1", "api-keys", ""]).await
    }

    pub async fn get_api_key(&self, id: i64) -> Result<ApiKey> {
        self.get(&["v1", "api-keys", &id.to_string()]).await
    }

    pub async fn update_api_key(&self, id: i64, update: &UpdateApiKeyRequest) -> Result<ApiKey> {
        let req = self
            .request(Method::PATCH, &["v1", "api-keys", &id.to_string()])?
            .json(update);
        self.send(req).await
    }

    pub async fn delete_api_key(&self, id: i64) -> Result<Deleted> {
        self.send(self.request(Method::DELETE, &["v1", "api-keys", &id.to_string()])?)
            .await
    }

    pub async fn add_ssh_key(&self, public_key: &str) -> Result<SshKey> {
        let body = AddSshKeyRequest {
            public_key: public_key.to_owned(),
        };
        self.post(&["v1", "ssh-keys"], &body).await
    }

    pub async fn list_ssh_keys(&self) -> Result<Vec<SshKey>> {
        let list: SshKeyList = self.get(&["v1", "ssh-keys"]).await?;
        Ok(list.keys)
    }

    pub async fn delete_ssh_key(&self, id: i64) -> Result<Deleted> {
        self.send(self.request(Method::DELETE, &["v1", "ssh-keys", &id.to_string()])?)
            .await
    }

    // --- Admin ---------------------------------------------------------------------------

    /// `POST /v1/admin/users` (admin key): a new user and its first key.
    pub async fn create_user(&self, email: &str, name: Option<&str>) -> Result<CreatedUser> {
        let body = CreateUserRequest {
            email: email.to_owned(),
            name: name.map(str::to_owned),
        };
        self.post(&["v1", "admin", "users"], &body).await
    }

    pub async fn list_users(&self) -> Result<Vec<User>> {
        self.get(&["v1", "admin", "users"]).await
    }

    pub async fn user_limits(&self, user_id: i64) -> Result<UserLimitsResponse> {
        self.get(&["v1", "admin", "users", &user_id.to_string(), "limits"])
            .await
    }

    /// Replace a user's overrides (fields left `None` take the server's limits).
    pub async fn set_user_limits(
        &self,
        user_id: i64,
        overrides: &UserLimits,
    ) -> Result<UserLimitsResponse> {
        let id = user_id.to_string();
        let req = self.request(Method::PUT, &["v1", "admin", "users", &id, "limits"])?;
        self.send(req.json(overrides)).await
    }
}

/// A 2xx body as `T`, anything else as [`Error::Api`] with the server's `detail`.
async fn decode<T: DeserializeOwned>(res: Response) -> Result<T> {
    let status = res.status();
    let bytes = res.bytes().await.map_err(Error::Network)?;
    if !status.is_success() {
        return Err(Error::Api {
            status: status.as_u16(),
            detail: error::detail_of(status, &bytes),
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        let text = String::from_utf8_lossy(&bytes);
        let excerpt: String = text.chars().take(200).collect();
        Error::Decode(format!("{e} in {excerpt:?}"))
    })
}
