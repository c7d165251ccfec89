//! The deploy pipeline of spec/manifest.md §7.2, run through the platform's own API instead of
//! SSH: the VM is created with `POST /v1/vms?wait=true`, the project goes up as one `.tar.gz`
//! through `POST /upload`, and every remote step (unpack, setup, start, health check) is a
//! bash execution (`POST /execute`) in the VM's session.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use instavm_manifest::py::json::{dumps, Json};
use instavm_manifest::schema::{DeployKind, Kind, Manifest};
use instavm_manifest::DeployOptions;
use instavm_sdk::{
    Client, CreateShareRequest, CreateVmRequest, Error as SdkError, ExecuteRequest,
    ExecuteResponse, SnapshotVmRequest,
};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use super::package::{bundle, sh_quote};

/// The remote base directory, below the VM user's home (`/root` in our VMs).
pub const REMOTE_DIRNAME: &str = ".instavm-cookbooks";
/// How many output lines a failing remote step shows.
const TAIL_LINES: usize = 20;
/// Setup commands (pip, npm) may take a while; the server allows up to a day.
const SETUP_TIMEOUT_SECONDS: u64 = 1800;

/// Why a deploy stopped. `Before` had no VM yet; `After` keeps the VM and reports what it has.
#[derive(Debug)]
pub enum DeployFailure {
    Before(String),
    After(String, Box<FailureContext>),
}

/// What a failure after VM creation reports (the reference's partial payload).
#[derive(Debug, Serialize)]
pub struct PartialPayload {
    pub slug: String,
    pub version: String,
    pub deploy_kind: String,
    pub vm_id: String,
    pub session_id: String,
    pub service_name: String,
    pub service_mode: String,
    pub port: i64,
    pub connect_command: String,
    pub logs_command: String,
    pub destroy_command: String,
    pub configured_secrets: Vec<String>,
    pub timings: Timings,
}

#[derive(Debug)]
pub enum FailureContext {
    Service(PartialPayload),
    Workload(WorkloadPartial),
}

#[derive(Debug, Serialize)]
pub struct WorkloadPartial {
    pub slug: String,
    pub version: String,
    pub kind: String,
    pub vm_id: String,
    pub session_id: String,
    pub destroy_command: String,
    pub configured_secrets: Vec<String>,
    pub timings: Timings,
}

/// The success payload: the reference's keys in its order, plus `timings` (ours).
#[derive(Debug, Serialize)]
pub struct DeployPayload {
    pub slug: String,
    pub version: String,
    pub deploy_kind: String,
    pub vm_id: String,
    pub session_id: String,
    pub service_name: String,
    pub service_mode: String,
    pub port: i64,
    pub share_url: String,
    pub healthcheck_url: String,
    pub connect_command: String,
    pub logs_command: String,
    pub destroy_command: String,
    pub configured_secrets: Vec<String>,
    pub env: Vec<String>,
    pub vault_ids: Vec<String>,
    pub vault_bindings: Vec<VaultBinding>,
    pub notes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reused_snapshot_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved_snapshot_id: Option<String>,
    pub timings: Timings,
}

#[derive(Debug, Clone, Serialize)]
pub struct VaultBinding {
    pub host: String,
    pub vault_id: String,
    pub vault_name: String,
}

/// Seconds per step, in the order the steps ran (a JSON object).
#[derive(Debug, Clone, Default)]
pub struct Timings(pub Vec<(&'static str, f64)>);

impl Serialize for Timings {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, &((v * 1000.0).round() / 1000.0))?;
        }
        map.end()
    }
}

/// The progress rail on stderr: one line per finished step with its time.
pub struct Rail {
    pub timings: Timings,
    current: Option<(&'static str, Instant)>,
    total: usize,
    done: usize,
}

impl Rail {
    pub fn new(total: usize) -> Rail {
        Rail {
            timings: Timings::default(),
            current: None,
            total,
            done: 0,
        }
    }

    pub fn note(&self, message: &str) {
        eprintln!("  · {message}");
    }

    pub fn start(&mut self, step: &'static str, what: &str) {
        self.current = Some((step, Instant::now()));
        eprintln!("  [{}/{}] {step:<8} {what}", self.done + 1, self.total);
    }

    pub fn finish(&mut self, detail: &str) {
        if let Some((step, started)) = self.current.take() {
            let secs = started.elapsed().as_secs_f64();
            self.timings.0.push((step, secs));
            self.done += 1;
            let detail = if detail.is_empty() {
                String::new()
            } else {
                format!("  {detail}")
            };
            eprintln!("  ✓ {step:<8} {secs:>7.2}s{detail}");
        }
    }

    /// Marks the running step as failed (its time is recorded too).
    pub fn fail(&mut self) {
        if let Some((step, started)) = self.current.take() {
            let secs = started.elapsed().as_secs_f64();
            self.timings.0.push((step, secs));
            eprintln!("  ✗ {step:<8} {secs:>7.2}s  failed");
        }
    }
}

/// What the caller asks beyond the manifest.
pub struct DeployRequest<'a> {
    pub manifest: &'a Manifest,
    pub options: &'a DeployOptions,
    /// `--snapshot`, or a reused zero-config snapshot.
    pub snapshot_override: Option<String>,
    pub vault_ids: Vec<String>,
    pub no_vault: bool,
    pub ssh_host: String,
}

fn pyint(value: &instavm_manifest::yaml::PyInt) -> i64 {
    value.to_i64().unwrap_or(0)
}

fn json_value(value: &Json) -> Result<serde_json::Value, String> {
    let text = dumps(value).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

fn sdk_message(err: &SdkError) -> String {
    match err {
        SdkError::Api { status, detail } => format!("HTTP {status}: {detail}"),
        other => other.to_string(),
    }
}

/// Secrets from `--env`, the environment, or a prompt on a terminal (the reference's
/// `resolve_secret_values`).
pub fn resolve_secrets(
    manifest: &Manifest,
    options: &DeployOptions,
) -> Result<(BTreeMap<String, String>, Vec<String>), String> {
    let mut values = BTreeMap::new();
    let mut names = Vec::new();
    for secret in &manifest.secrets {
        let mut value = options
            .env_value(&secret.env_name)
            .unwrap_or_default()
            .trim()
            .to_owned();
        if value.is_empty() && secret.required {
            if !std::io::stdin().is_terminal() {
                return Err(format!(
                    "Secret `{}` is required for `{}`. Set it in the environment or rerun interactively.",
                    secret.env_name, manifest.slug
                ));
            }
            value = rpassword::prompt_password(format!("{}: ", secret.prompt))
                .unwrap_or_default()
                .trim()
                .to_owned();
        }
        if !value.is_empty() {
            values.insert(secret.env_name.clone(), value);
            names.push(secret.env_name.clone());
        } else if secret.required {
            return Err(format!(
                "Secret `{}` is required for `{}`.",
                secret.env_name, manifest.slug
            ));
        }
    }
    Ok((values, names))
}

/// `resolve_snapshot_id`: the first ready snapshot called `name` among the system snapshots
/// and (v2) the user's own.
pub async fn resolve_snapshot_name(
    client: &Client,
    manifest: &Manifest,
    name: &str,
) -> Result<String, String> {
    let mut lists = vec![client
        .list_snapshots(Some("system"))
        .await
        .map_err(|e| format!("Failed to list snapshots: {}", sdk_message(&e)))?];
    if !manifest.is_v1() {
        lists.push(
            client
                .list_snapshots(None)
                .await
                .map_err(|e| format!("Failed to list snapshots: {}", sdk_message(&e)))?,
        );
    }
    let mut latest = None;
    for snapshot in lists.iter().flatten() {
        if snapshot.name != name || (manifest.is_v1() && !snapshot.is_public) {
            continue;
        }
        latest = Some(snapshot);
        if snapshot_status(snapshot) == "ready" && !snapshot.id.is_empty() {
            return Ok(snapshot.id.clone());
        }
    }
    if let Some(s) = latest {
        return Err(format!(
            "Snapshot `{name}` exists (status: {}) but is not ready yet. Watch progress with \
             `instavm snapshot get {} --watch`, or rebuild with `instavm snapshot build`.",
            snapshot_status(s),
            s.id
        ));
    }
    Err(format!(
        "Snapshot `{name}` was not found. Run `instavm snapshot ls` to see available snapshots."
    ))
}

fn snapshot_status(s: &instavm_sdk::SnapshotRecord) -> String {
    serde_json::to_value(s.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// `_validate_snapshot_ready`.
pub async fn validate_snapshot(client: &Client, id: &str) -> Result<(), String> {
    match client.get_snapshot(id).await {
        Ok(s) => {
            let status = snapshot_status(&s);
            if !status.is_empty() && status != "ready" {
                return Err(format!(
                    "Snapshot `{id}` is not ready (status: {status}). Wait for the build to \
                     finish, or watch progress with `instavm snapshot get {id} --watch`."
                ));
            }
            Ok(())
        }
        Err(SdkError::Api { status: 404, .. }) => Err(format!(
            "Snapshot `{id}` not found. Run `instavm snapshot ls` to see available snapshots."
        )),
        Err(e) => Err(format!(
            "Failed to read snapshot `{id}`: {}",
            sdk_message(&e)
        )),
    }
}

/// Step 5: `--snapshot`, `deploy.snapshot_id`, `deploy.snapshot_name`, then the artifact's.
async fn pick_snapshot(
    client: &Client,
    req: &DeployRequest<'_>,
    rail: &Rail,
) -> Result<Option<String>, String> {
    let m = req.manifest;
    let mut id = req
        .snapshot_override
        .clone()
        .or_else(|| m.deploy.snapshot_id.clone());
    if id.is_none() {
        if let Some(name) = m.deploy.snapshot_name.as_deref() {
            rail.note(&format!("Resolving snapshot {name}"));
            id = Some(resolve_snapshot_name(client, m, name).await?);
        }
    }
    if id.is_none() && m.deploy.kind == DeployKind::PublishedSnapshot {
        let artifact = m
            .artifact
            .as_ref()
            .ok_or("Published snapshot deploys require `artifact` config.")?;
        rail.note(&format!("Resolving snapshot {}", artifact.snapshot_name));
        id = Some(resolve_snapshot_name(client, m, &artifact.snapshot_name).await?);
    }
    if let Some(id) = &id {
        validate_snapshot(client, id).await?;
    }
    Ok(id)
}

/// The vault list of a `GET /v1/vaults` answer (`{"vaults": [...]}`; anything else is none).
fn items(value: &serde_json::Value, key: &str) -> Vec<serde_json::Value> {
    match value {
        serde_json::Value::Array(a) => a.clone(),
        serde_json::Value::Object(o) => o
            .get(key)
            .and_then(|v| v.as_array())
            .cloned()
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Step 6 (spec/manifest.md §8): `--vault` wins; otherwise discovery when the manifest
/// declares vault hosts. A server without vaults (404) has none.
async fn pick_vaults(
    client: &Client,
    req: &DeployRequest<'_>,
    rail: &Rail,
) -> Result<(Vec<String>, Vec<VaultBinding>), String> {
    if !req.vault_ids.is_empty() {
        let mut ids: Vec<String> = Vec::new();
        for id in &req.vault_ids {
            if !id.is_empty() && !ids.contains(id) {
                ids.push(id.clone());
            }
        }
        rail.note(&format!(
            "Binding {} vault(s) from --vault override: {}",
            ids.len(),
            ids.join(", ")
        ));
        return Ok((ids, Vec::new()));
    }
    let Some(vault) = req.manifest.vault.as_ref().filter(|_| !req.no_vault) else {
        return Ok((Vec::new(), Vec::new()));
    };
    if vault.hosts.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    rail.note(&format!(
        "Scanning org vaults for {}",
        vault.hosts.join(", ")
    ));
    let vaults = match client.get_json(&["v1", "vaults"]).await {
        Ok(v) => match v {
            serde_json::Value::Object(_) => items(&v, "vaults"),
            _ => Vec::new(),
        },
        Err(_) => Vec::new(),
    };
    let mut ids = Vec::new();
    let mut bindings = Vec::new();
    let mut covered: Vec<String> = Vec::new();
    for v in vaults {
        let id = v
            .get("id")
            .map(|x| match x {
                serde_json::Value::String(s) => s.trim().to_owned(),
                other => other.to_string(),
            })
            .unwrap_or_default();
        if id.is_empty() || id == "null" {
            continue;
        }
        let name = v
            .get("name")
            .and_then(|n| n.as_str())
            .unwrap_or(&id)
            .to_owned();
        let services = match client.get_json(&["v1", "vaults", &id, "services"]).await {
            Ok(s) => items(&s, "services"),
            Err(_) => Vec::new(),
        };
        for s in services {
            if s.get("enabled") == Some(&serde_json::Value::Bool(false)) {
                continue;
            }
            let Some(host) = s
                .get("host")
                .and_then(|h| h.as_str())
                .map(|h| h.trim().to_lowercase())
            else {
                continue;
            };
            if !vault.hosts.contains(&host) || covered.contains(&host) {
                continue;
            }
            covered.push(host.clone());
            rail.note(&format!("Binding {host} via vault {id} ({name})"));
            bindings.push(VaultBinding {
                host,
                vault_id: id.clone(),
                vault_name: name.clone(),
            });
            if !ids.contains(&id) {
                ids.push(id.clone());
            }
        }
    }
    let unmatched: Vec<&String> = vault
        .hosts
        .iter()
        .filter(|h| !covered.contains(h))
        .collect();
    if vault.required && (!unmatched.is_empty() || ids.is_empty()) {
        let missing: Vec<String> = if unmatched.is_empty() {
            vault.hosts.clone()
        } else {
            unmatched.iter().map(|s| s.to_string()).collect()
        };
        return Err(format!(
            "This cookbook requires an org vault for: {}.\n\nCreate a vault that covers it \
             (`instavm vault create {}-vault`, then `instavm vault service add` for {}), then \
             rerun the deploy, or pass --vault VAULT_ID. This CLI does not bootstrap vaults \
             interactively.",
            missing.join(", "),
            req.manifest.slug,
            missing[0]
        ));
    }
    if !unmatched.is_empty() {
        rail.note(&format!(
            "No org vault binding found for: {} (deploy continues — credentials must be injected another way)",
            unmatched.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    Ok((ids, bindings))
}

/// `build_vm_payload`, as the typed request.
fn vm_request(
    manifest: &Manifest,
    snapshot_id: Option<&str>,
    vault_ids: &[String],
) -> Result<CreateVmRequest, String> {
    let mut payload = serde_json::Map::new();
    payload.insert("memory_mb".into(), pyint(&manifest.vm.memory_mb).into());
    payload.insert("vcpu_count".into(), pyint(&manifest.vm.vcpu_count).into());
    if let Some(t) = &manifest.vm.timeout_seconds {
        payload.insert("vm_lifetime_seconds".into(), pyint(t).into());
    }
    if let Some(v) = manifest
        .vm
        .image_variant
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        payload.insert("image_variant".into(), v.into());
    } else if manifest.vm.profile.as_deref() == Some("computer_use") {
        payload.insert("image_variant".into(), "computer-use".into());
    }
    let metadata = json_value(&manifest.vm.metadata)?;
    if metadata.as_object().is_some_and(|m| !m.is_empty()) {
        payload.insert("metadata".into(), metadata);
    }
    if let Some(id) = snapshot_id {
        payload.insert("snapshot_id".into(), id.into());
    }
    let volumes: Vec<serde_json::Value> = manifest
        .volumes
        .iter()
        .map(|v| {
            let mut o = serde_json::Map::new();
            o.insert("name".into(), v.name.clone().into());
            o.insert("mount_path".into(), v.mount.clone().into());
            o.insert("mode".into(), v.mode.clone().into());
            if let Some(id) = &v.id {
                o.insert("volume_id".into(), id.clone().into());
            }
            if let Some(size) = &v.size_gb {
                o.insert("size_gb".into(), pyint(size).into());
            }
            if v.create_if_missing {
                o.insert("create_if_missing".into(), true.into());
            }
            if let Some(c) = &v.checkpoint_id {
                o.insert("checkpoint_id".into(), c.clone().into());
            }
            serde_json::Value::Object(o)
        })
        .collect();
    if !volumes.is_empty() {
        payload.insert("volumes".into(), volumes.into());
    }
    if let Some(policy) = egress_policy(manifest) {
        payload.insert("egress_policy".into(), policy);
    }
    if !vault_ids.is_empty() {
        payload.insert("vault_ids".into(), vault_ids.to_vec().into());
    }
    serde_json::from_value(serde_json::Value::Object(payload))
        .map_err(|e| format!("The manifest's VM settings are out of range: {e}"))
}

/// `build_egress_policy_payload`.
fn egress_policy(m: &Manifest) -> Option<serde_json::Value> {
    let mut domains: Vec<String> = Vec::new();
    let add = |d: &str, domains: &mut Vec<String>| {
        if !domains.iter().any(|x| x == d) {
            domains.push(d.to_owned());
        }
    };
    let Some(egress) = &m.egress else {
        if m.is_v1() {
            if let Some(v) = &m.vault {
                for h in &v.hosts {
                    add(h, &mut domains);
                }
            }
        }
        if domains.is_empty() {
            return None;
        }
        return Some(serde_json::json!({
            "allow_public_repos": true, "allow_http": true, "allow_https": true,
            "allowed_domains": domains, "allowed_cidrs": [],
        }));
    };
    let pm = egress.allow_package_managers;
    match egress.mode.as_str() {
        "open" => Some(serde_json::json!({
            "allow_public_repos": pm, "allow_http": true, "allow_https": true,
            "allowed_domains": [], "allowed_cidrs": [],
        })),
        "deny" => Some(serde_json::json!({
            "allow_public_repos": pm, "allow_http": false, "allow_https": false,
            "allowed_domains": [], "allowed_cidrs": [],
        })),
        _ => {
            for d in &egress.allowed_domains {
                add(d, &mut domains);
            }
            if egress.include_vault_hosts {
                if let Some(v) = &m.vault {
                    for h in &v.hosts {
                        add(h, &mut domains);
                    }
                }
            }
            Some(serde_json::json!({
                "allow_public_repos": pm, "allow_http": false, "allow_https": false,
                "allowed_domains": domains, "allowed_cidrs": egress.allowed_cidrs,
            }))
        }
    }
}

/// `_remote_workdir`.
pub fn remote_workdir(workdir: &str, remote_root: &str) -> String {
    if workdir.starts_with('/') {
        workdir.to_owned()
    } else if workdir == "." || workdir == "./" {
        remote_root.to_owned()
    } else {
        format!(
            "{remote_root}/{}",
            workdir.trim_matches(|c| c == '.' || c == '/')
        )
    }
}

/// The last `n` lines of a step's stdout and stderr.
fn tail(out: &ExecuteResponse, n: usize) -> String {
    let text = format!("{}{}", out.stdout, out.stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

/// One VM with its session: runs bash there.
pub struct Remote<'a> {
    pub client: &'a Client,
    pub vm_id: String,
    pub session_id: String,
}

impl Remote<'_> {
    pub async fn bash(&self, script: &str, timeout: u64) -> Result<ExecuteResponse, String> {
        self.client
            .execute(&ExecuteRequest {
                command: script.to_owned(),
                session_id: self.session_id.clone(),
                language: Some("bash".into()),
                timeout: Some(timeout),
            })
            .await
            .map_err(|e| {
                format!(
                    "command execution in VM {} failed: {}",
                    self.vm_id,
                    sdk_message(&e)
                )
            })
    }

    /// Runs `script`; a non-zero exit is `message` plus the exit code and the last output lines.
    pub async fn checked(
        &self,
        script: &str,
        timeout: u64,
        message: &str,
    ) -> Result<ExecuteResponse, String> {
        let out = self.bash(script, timeout).await?;
        if out.exit_code != 0 {
            let how = if out.timed_out {
                format!("timed out after {timeout}s")
            } else {
                format!("exit code {}", out.exit_code)
            };
            let lines = tail(&out, TAIL_LINES);
            let shown = if lines.is_empty() {
                " (no output)".to_owned()
            } else {
                format!(" Last {TAIL_LINES} lines of output:\n{lines}")
            };
            return Err(format!("{message} ({how}).{shown}"));
        }
        Ok(out)
    }
}

/// The project's directory layout inside the VM.
pub struct Layout {
    pub base: String,
    pub root: String,
    pub workdir: String,
}

/// Steps 10 to 12: find the home, upload and unpack the bundle, run the setup command.
async fn upload_and_setup(
    remote: &Remote<'_>,
    manifest: &Manifest,
    rail: &mut Rail,
) -> Result<Layout, String> {
    rail.start("upload", "bundling and uploading the project");
    let home = remote
        .checked(
            "printf %s \"$HOME\"",
            30,
            "Failed to determine the remote home directory",
        )
        .await?;
    let home = match home.stdout.trim() {
        "" => "/tmp".to_owned(),
        h => h.to_owned(),
    };
    let base = format!("{home}/{REMOTE_DIRNAME}");
    let root = format!("{base}/{}", manifest.slug);
    let workdir = remote_workdir(
        manifest.run.as_ref().map_or(".", |r| r.workdir.as_str()),
        &root,
    );
    let layout = Layout {
        base,
        root,
        workdir,
    };
    let Some(source) = manifest
        .source
        .as_ref()
        .filter(|_| manifest.deploy.kind == DeployKind::UploadAndRun)
    else {
        rail.finish("nothing to upload (published snapshot)");
        rail.start("setup", "none");
        rail.finish("no setup (published snapshot)");
        return Ok(layout);
    };
    let project = manifest.path.clone();
    let (include, exclude) = (source.include.clone(), source.exclude.clone());
    let (bytes, count) = tokio::task::spawn_blocking(move || bundle(&project, &include, &exclude))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("Failed to bundle the project: {e}"))?;
    let size = bytes.len();
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let tgz = format!("/tmp/{}-{unix}.tar.gz", manifest.slug);
    remote
        .client
        .upload_bytes(&remote.session_id, &tgz, bytes)
        .await
        .map_err(|e| {
            format!(
                "Failed to upload the cookbook bundle to the VM: {}",
                sdk_message(&e)
            )
        })?;
    remote
        .checked(
            &format!(
                "mkdir -p {root} && tar -xzf {tgz} -C {root} && rm -f {tgz}",
                root = sh_quote(&layout.root),
                tgz = sh_quote(&tgz)
            ),
            300,
            "Failed to extract the cookbook bundle",
        )
        .await?;
    rail.finish(&format!("{count} files, {} KiB", size.div_ceil(1024)));

    rail.start("setup", &source.setup_command);
    remote
        .checked(
            &format!(
                "cd {} && {}",
                sh_quote(&layout.workdir),
                source.setup_command
            ),
            SETUP_TIMEOUT_SECONDS,
            "Cookbook setup command failed",
        )
        .await?;
    rail.finish("");
    Ok(layout)
}

/// Creates the VM (step 7) and reports it on the rail.
async fn create_vm(
    client: &Client,
    request: &CreateVmRequest,
    rail: &mut Rail,
) -> Result<(String, String), String> {
    rail.start("create", "creating the VM");
    let vm = match client.create_vm(request, true).await {
        Ok(vm) => vm,
        Err(e) => {
            rail.fail();
            return Err(format!("Failed to create the VM: {}", sdk_message(&e)));
        }
    };
    if vm.vm_id.is_empty() {
        rail.fail();
        return Err("VM creation did not return a VM ID.".into());
    }
    rail.finish(&vm.vm_id);
    Ok((vm.vm_id, vm.session_id))
}

fn launch_body(manifest: &Manifest, workdir: &str, env: &BTreeMap<String, String>) -> String {
    let exports: String = env
        .iter()
        .map(|(k, v)| format!("export {k}={}; ", sh_quote(v)))
        .collect();
    let run = manifest.run.as_ref();
    let mut parts = Vec::new();
    if let Some(pre) = run.and_then(|r| r.pre_start_command.as_deref()) {
        parts.push(pre.to_owned());
    }
    parts.push(run.map(|r| r.start_command.clone()).unwrap_or_default());
    format!(
        "cd {} && {exports}{}",
        sh_quote(workdir),
        parts.join(" && ")
    )
    .trim()
    .to_owned()
}

/// The environment of the service: the manifest's `env`, then the secrets.
fn service_env(
    manifest: &Manifest,
    secrets: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = manifest.env.iter().cloned().collect();
    env.extend(secrets.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// `_logs_command`: the hint, else the journal (systemd) or the log file through the gateway.
fn logs_command(
    hint: Option<&str>,
    vm_id: &str,
    ssh_host: &str,
    service_name: &str,
    slug: &str,
    mode: &str,
    base: &str,
) -> String {
    if let Some(hint) = hint {
        return hint.to_owned();
    }
    let prefix = format!("ssh {vm_id}@{ssh_host}");
    if mode == "systemd" {
        format!("{prefix} journalctl --no-pager -u {service_name} -n 200")
    } else {
        format!(
            "{prefix} tail -n 200 {}",
            sh_quote(&format!("{base}/logs/{slug}.log"))
        )
    }
}

/// Deploys a `kind: service` manifest (spec/manifest.md §7.2 without SSH).
pub async fn deploy_service(
    client: &Client,
    req: &DeployRequest<'_>,
    rail: &mut Rail,
) -> Result<DeployPayload, DeployFailure> {
    let m = req.manifest;
    let app = m
        .app
        .as_ref()
        .ok_or_else(|| DeployFailure::Before("Service deploys require `app` config.".into()))?;
    let (secrets, configured) = resolve_secrets(m, req.options).map_err(DeployFailure::Before)?;
    let env = service_env(m, &secrets);
    let snapshot_id = pick_snapshot(client, req, rail)
        .await
        .map_err(DeployFailure::Before)?;
    let (vault_ids, bindings) = pick_vaults(client, req, rail)
        .await
        .map_err(DeployFailure::Before)?;
    let request =
        vm_request(m, snapshot_id.as_deref(), &vault_ids).map_err(DeployFailure::Before)?;
    let (vm_id, session_id) = create_vm(client, &request, rail)
        .await
        .map_err(DeployFailure::Before)?;

    let remote = Remote {
        client,
        vm_id: vm_id.clone(),
        session_id: session_id.clone(),
    };
    let service_name = format!("instavm-cookbook-{}", m.slug);
    let port = pyint(&app.port);
    let mut base = format!("/root/{REMOTE_DIRNAME}");
    let mut service_mode = "unknown".to_owned();
    let logs_hint = m.run.as_ref().and_then(|r| r.logs_hint.clone());
    let result: Result<(String, String), String> = async {
        let layout = upload_and_setup(&remote, m, rail).await?;
        base = layout.base.clone();

        // Step 13: start the service exactly like the reference.
        rail.start("start", "starting the service");
        let log_file = format!("{}/logs/{}.log", layout.base, m.slug);
        let pid_file = format!("{}/logs/{}.pid", layout.base, m.slug);
        let launch = launch_body(m, &layout.workdir, &env);
        let script = format!(
            "set -e\nmkdir -p {logs}\nmkdir -p {root}\n\
             if command -v systemd-run >/dev/null 2>&1 && [ -d /run/systemd/system ]; then\n  \
             if systemd-run --unit {unit} --collect --quiet --property=WorkingDirectory={wd} /bin/bash -lc {launch} >/dev/null 2>&1; then\n    \
             printf '%s' 'systemd'\n    exit 0\n  fi\nfi\n\
             nohup /bin/bash -lc {launch} > {log} 2>&1 < /dev/null &\n\
             echo $! > {pid}\nprintf '%s' 'nohup'\n",
            logs = sh_quote(&format!("{}/logs", layout.base)),
            root = sh_quote(&layout.root),
            unit = sh_quote(&service_name),
            wd = sh_quote(&layout.workdir),
            launch = sh_quote(&launch),
            log = sh_quote(&log_file),
            pid = sh_quote(&pid_file),
        );
        let out = remote
            .checked(&script, 60, "Failed to start the cookbook service")
            .await?;
        service_mode = match out.stdout.trim() {
            "" => "nohup".to_owned(),
            s => s.to_owned(),
        };
        rail.finish(&service_mode);

        // Step 14: the health check inside the VM.
        let internal = format!("http://127.0.0.1:{port}{}", app.healthcheck_path);
        rail.start("health", &internal);
        let readiness = pyint(&app.readiness_timeout_seconds).max(1) as u64;
        // The reference's budget (`readiness // 2` tries, 2 s apart), polled every 0.25 s so
        // that an app that is up in half a second is not reported two seconds later.
        let budget = 2 * (readiness / 2).max(1);
        let script = format!(
            "URL={url}\nlast='no answer'\nend=$((SECONDS + {budget}))\nwhile :; do\n  \
             code=$(curl -sS -o /dev/null -w '%{{http_code}}' --max-time 5 \"$URL\" 2>/tmp/.instavm-health.err); rc=$?\n  \
             if [ $rc -eq 0 ] && [ \"$code\" -ge 200 ] && [ \"$code\" -lt 400 ]; then exit 0; fi\n  \
             if [ $rc -eq 0 ]; then last=\"HTTP $code\"; else last=$(tail -n 1 /tmp/.instavm-health.err); fi\n  \
             [ $SECONDS -ge $end ] && break\n  sleep 0.25\ndone\nprintf '%s' \"$last\"\nexit 1\n",
            url = sh_quote(&internal),
        );
        let out = remote.bash(&script, budget + 60).await?;
        if out.exit_code != 0 {
            let answer = match out.stdout.trim() {
                "" => "no answer".to_owned(),
                a => a.to_owned(),
            };
            let log_tail = remote
                .bash(&format!("tail -n {TAIL_LINES} {} 2>&1", sh_quote(&log_file)), 30)
                .await
                .map(|o| o.stdout.trim_end().to_owned())
                .unwrap_or_default();
            return Err(format!(
                "Timed out waiting for the app healthcheck: {internal} last answered: {answer} \
                 (checked for {budget}s). Last lines of {log_file}:\n{log_tail}\n\
                 Use `instavm connect {vm_id}` to inspect the VM."
            ));
        }
        rail.finish("healthy");

        // Steps 15 and 16: the share and its URL.
        let share_port = m.share.as_ref().map_or(port, |s| pyint(&s.port));
        let public = m
            .share
            .as_ref()
            .map_or(app.share_public_default, |s| s.public);
        rail.start("share", &format!("port {share_port}, {}", if public { "public" } else { "private" }));
        let share = client
            .create_share(&CreateShareRequest {
                port: Some(share_port),
                is_public: Some(public),
                session_id: None,
                vm_id: Some(vm_id.clone()),
            })
            .await
            .map_err(|e| format!("Failed to create the share: {}", sdk_message(&e)))?;
        if share.url.is_empty() {
            return Err("Share creation did not return a URL.".into());
        }
        let share_url = share.url.clone();
        let joined = if share_url.ends_with('/') {
            share_url.clone()
        } else {
            format!("{share_url}/")
        };
        let healthcheck_url = format!("{joined}{}", app.healthcheck_path.trim_start_matches('/'));
        verify_share(client, &healthcheck_url, !public, readiness).await?;
        rail.finish(&share_url);
        Ok((share_url, healthcheck_url))
    }
    .await;

    match result {
        Ok((share_url, healthcheck_url)) => Ok(DeployPayload {
            slug: m.slug.clone(),
            version: m.version.clone(),
            deploy_kind: m.deploy.kind.as_str().into(),
            vm_id: vm_id.clone(),
            session_id,
            service_name: service_name.clone(),
            service_mode: service_mode.clone(),
            port,
            share_url,
            healthcheck_url,
            connect_command: format!("instavm connect {vm_id}"),
            logs_command: logs_command(
                logs_hint.as_deref(),
                &vm_id,
                &req.ssh_host,
                &service_name,
                &m.slug,
                &service_mode,
                &base,
            ),
            destroy_command: format!("instavm rm {vm_id}"),
            configured_secrets: configured,
            env: m
                .env_names_sorted()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            vault_ids,
            vault_bindings: bindings,
            notes: m.post_deploy_notes.clone(),
            reused_snapshot_id: None,
            saved_snapshot_id: None,
            timings: rail.timings.clone(),
        }),
        Err(message) => {
            rail.fail();
            Err(DeployFailure::After(
                message,
                Box::new(FailureContext::Service(PartialPayload {
                    slug: m.slug.clone(),
                    version: m.version.clone(),
                    deploy_kind: m.deploy.kind.as_str().into(),
                    vm_id: vm_id.clone(),
                    session_id,
                    service_name: service_name.clone(),
                    service_mode: service_mode.clone(),
                    port,
                    connect_command: format!("instavm connect {vm_id}"),
                    logs_command: logs_command(
                        logs_hint.as_deref(),
                        &vm_id,
                        &req.ssh_host,
                        &service_name,
                        &m.slug,
                        &service_mode,
                        &base,
                    ),
                    destroy_command: format!("instavm rm {vm_id}"),
                    configured_secrets: configured,
                    timings: rail.timings.clone(),
                })),
            ))
        }
    }
}

/// Step 16: GET the share's health URL until it answers 2xx or 3xx. A private share is
/// checked with the owner's key.
async fn verify_share(
    client: &Client,
    url: &str,
    private: bool,
    timeout: u64,
) -> Result<(), String> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(timeout);
    loop {
        let mut req = http.get(url).timeout(Duration::from_secs(5));
        if private {
            if let Some(key) = client.api_key() {
                req = req.header("X-API-Key", key);
            }
        }
        let last = match req.send().await {
            Ok(res) if (200..400).contains(&res.status().as_u16()) => return Ok(()),
            Ok(res) => format!("HTTP {}", res.status().as_u16()),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "Timed out verifying the share URL: {url} (last answer: {last})"
            ));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// `--save-snapshot`: snapshot the deployed VM as `deploy/<slug>`.
pub async fn save_snapshot(
    client: &Client,
    vm_id: &str,
    slug: &str,
) -> Result<Option<String>, String> {
    let snap = client
        .snapshot_vm(
            vm_id,
            &SnapshotVmRequest {
                name: Some(format!("deploy/{slug}")),
            },
            true,
        )
        .await
        .map_err(|e| format!("Failed to create deploy snapshot: {}", sdk_message(&e)))?;
    let id = if snap.snapshot_id.is_empty() {
        snap.id
    } else {
        snap.snapshot_id
    };
    Ok((!id.is_empty()).then_some(id))
}

/// Deploys a `kind: cron` or `kind: job` manifest: a build VM gets the project and its setup,
/// is snapshotted as `workload/<slug>/<version>`, the workload is registered, and the build VM
/// is destroyed.
pub async fn deploy_workload(
    client: &Client,
    req: &DeployRequest<'_>,
    rail: &mut Rail,
) -> Result<WorkloadPayload, DeployFailure> {
    use instavm_sdk::{
        Catchup, Concurrency, CreateWorkloadRequest, RetryPolicy, Schedule, Trigger, TriggerAuth,
        TriggerType, WorkloadKind, WorkloadVm,
    };
    let m = req.manifest;
    let kind = match m.kind {
        Kind::Cron => WorkloadKind::Cron,
        Kind::Job => WorkloadKind::Job,
        _ => return Err(DeployFailure::Before("not a cron or job manifest".into())),
    };
    let run = m
        .run
        .as_ref()
        .ok_or_else(|| DeployFailure::Before("Workload deploys require a `run` block.".into()))?;
    let (secrets, configured) = resolve_secrets(m, req.options).map_err(DeployFailure::Before)?;
    let env = service_env(m, &secrets);
    let parse = |v: &str| serde_json::Value::String(v.to_owned());
    let schedule = match &m.schedule {
        Some(s) => {
            let concurrency: Concurrency = serde_json::from_value(parse(&s.concurrency))
                .map_err(|e| DeployFailure::Before(format!("schedule.concurrency: {e}")))?;
            let catchup: Catchup = serde_json::from_value(parse(&s.catchup))
                .map_err(|e| DeployFailure::Before(format!("schedule.catchup: {e}")))?;
            Some(Schedule {
                cron: s.cron.clone(),
                timezone: s.timezone.clone(),
                concurrency,
                catchup,
                timeout_seconds: s.timeout_seconds.as_ref().map(|t| pyint(t).max(0) as u64),
                retries: RetryPolicy {
                    max: pyint(&s.retries.max).max(0) as u32,
                    backoff_seconds: pyint(&s.retries.backoff_seconds).max(0) as u64,
                },
            })
        }
        None => None,
    };
    let mut triggers = Vec::new();
    for t in &m.triggers {
        let kind: TriggerType =
            serde_json::from_value(serde_json::Value::String(t.kind.clone()))
                .map_err(|e| DeployFailure::Before(format!("triggers.type: {e}")))?;
        let auth: TriggerAuth =
            serde_json::from_value(serde_json::Value::String(t.auth.clone()))
                .map_err(|e| DeployFailure::Before(format!("triggers.auth: {e}")))?;
        triggers.push(Trigger {
            kind,
            path: t.path.clone(),
            auth,
            timeout_seconds: t.timeout_seconds.as_ref().map(|v| pyint(v).max(0) as u64),
            url: None,
        });
    }
    let snapshot_id = pick_snapshot(client, req, rail)
        .await
        .map_err(DeployFailure::Before)?;
    let request = vm_request(m, snapshot_id.as_deref(), &[]).map_err(DeployFailure::Before)?;
    let (vm_id, session_id) = create_vm(client, &request, rail)
        .await
        .map_err(DeployFailure::Before)?;
    let remote = Remote {
        client,
        vm_id: vm_id.clone(),
        session_id: session_id.clone(),
    };
    let snapshot_name = format!("workload/{}/{}", m.slug, m.version);
    let result: Result<instavm_sdk::WorkloadRecord, String> = async {
        let layout = upload_and_setup(&remote, m, rail).await?;
        rail.start("snapshot", &snapshot_name);
        let snap = client
            .snapshot_vm(
                &vm_id,
                &SnapshotVmRequest {
                    name: Some(snapshot_name.clone()),
                },
                true,
            )
            .await
            .map_err(|e| format!("Failed to snapshot the build VM: {}", sdk_message(&e)))?;
        let snap_id = if snap.snapshot_id.is_empty() {
            snap.id
        } else {
            snap.snapshot_id
        };
        rail.finish(&snap_id);
        rail.start("register", &format!("{} {}", kind_str(kind), m.slug));
        let mut start = Vec::new();
        if let Some(pre) = &run.pre_start_command {
            start.push(pre.clone());
        }
        start.push(run.start_command.clone());
        let record = client
            .create_workload(&CreateWorkloadRequest {
                slug: m.slug.clone(),
                kind,
                version: Some(m.version.clone()),
                snapshot_id: snap_id,
                workdir: Some(layout.workdir.clone()),
                start_command: start.join(" && "),
                env: env.clone(),
                vm: WorkloadVm {
                    memory_mb: m.vm.memory_mb.to_i64().and_then(|v| u64::try_from(v).ok()),
                    vcpu_count: m.vm.vcpu_count.to_i64().and_then(|v| u32::try_from(v).ok()),
                },
                schedule: schedule.clone(),
                triggers: triggers.clone(),
            })
            .await
            .map_err(|e| match e {
                SdkError::Api { status: 404, .. } => {
                    "Failed to register the workload: this server \
                     has no workloads API (POST /v1/workloads answered 404)."
                        .to_owned()
                }
                e => format!("Failed to register the workload: {}", sdk_message(&e)),
            })?;
        rail.finish(&record.id);
        Ok(record)
    }
    .await;
    match result {
        Ok(workload) => {
            rail.start("cleanup", &format!("destroying the build VM {vm_id}"));
            let destroyed = client.delete_vm(&vm_id).await.is_ok();
            rail.finish(if destroyed {
                "destroyed"
            } else {
                "could not destroy it"
            });
            Ok(WorkloadPayload {
                workload,
                snapshot_name,
                build_vm_id: vm_id,
                build_vm_destroyed: destroyed,
                configured_secrets: configured,
                timings: rail.timings.clone(),
            })
        }
        Err(message) => {
            rail.fail();
            Err(DeployFailure::After(
                message,
                Box::new(FailureContext::Workload(WorkloadPartial {
                    slug: m.slug.clone(),
                    version: m.version.clone(),
                    kind: kind_str(kind).into(),
                    vm_id: vm_id.clone(),
                    session_id,
                    destroy_command: format!("instavm rm {vm_id}"),
                    configured_secrets: configured,
                    timings: rail.timings.clone(),
                })),
            ))
        }
    }
}

fn kind_str(kind: instavm_sdk::WorkloadKind) -> &'static str {
    match kind {
        instavm_sdk::WorkloadKind::Cron => "cron",
        instavm_sdk::WorkloadKind::Job => "job",
    }
}

/// The answer of a workload deploy: the registered record plus how it was built.
#[derive(Debug, Serialize)]
pub struct WorkloadPayload {
    #[serde(flatten)]
    pub workload: instavm_sdk::WorkloadRecord,
    pub snapshot_name: String,
    pub build_vm_id: String,
    pub build_vm_destroyed: bool,
    pub configured_secrets: Vec<String>,
    pub timings: Timings,
}
