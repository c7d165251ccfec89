//! The zero-config deploy record `~/.instavm/deploys/<sha256(path)>.json` (the reference's
//! `_load_deploy_record` / `_save_deploy_record`), which lets the next deploy of the same
//! project boot from the snapshot `--save-snapshot` made.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use instavm_manifest::py::json::{dumps, Json};
use instavm_manifest::DeployPlan;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn deploys_dir() -> anyhow::Result<PathBuf> {
    let config = crate::config::config_path()?;
    let dir = config
        .parent()
        .map_or_else(|| PathBuf::from(".instavm"), Path::to_path_buf)
        .join("deploys");
    Ok(dir)
}

/// `~/.instavm/deploys/<sha256(str(path.resolve()))>.json`.
pub fn record_path(project: &Path) -> anyhow::Result<PathBuf> {
    let resolved = instavm_manifest::py::path::resolve(project);
    let digest = sha256_hex(resolved.to_string_lossy().as_bytes());
    Ok(deploys_dir()?.join(format!("{digest}.json")))
}

/// The reference's `_deploy_fingerprint`: sha256 of `json.dumps(..., sort_keys=True)`.
pub fn fingerprint(plan: &DeployPlan) -> String {
    let value = Json::object([
        (
            "build_command",
            Json::opt_str(plan.build_command.as_deref()),
        ),
        ("health_path", Json::str(&plan.health_path)),
        ("install_command", Json::str(&plan.install_command)),
        ("package_manager", Json::str(&plan.package_manager)),
        ("port", Json::Int(plan.port.clone())),
        ("runtime", Json::str(&plan.runtime)),
        ("slug", Json::str(&plan.slug)),
        ("start_command", Json::str(&plan.start_command)),
    ]);
    let text = dumps(&value).unwrap_or_default();
    sha256_hex(text.as_bytes())
}

/// The snapshot ID of a record whose fingerprint matches `plan`, if any.
pub fn saved_snapshot(project: &Path, plan: &DeployPlan) -> Option<String> {
    let text = std::fs::read_to_string(record_path(project).ok()?).ok()?;
    let record: Value = serde_json::from_str(&text).ok()?;
    let id = record.get("snapshot_id")?.as_str()?.trim().to_owned();
    let matches = record.get("fingerprint").and_then(Value::as_str) == Some(&fingerprint(plan));
    (!id.is_empty() && matches).then_some(id)
}

/// Writes the record (mode 0600, directory 0700), keys sorted, two-space indent.
pub fn save(
    project: &Path,
    plan: &DeployPlan,
    snapshot_id: &str,
    vm_id: &str,
    share_url: &str,
) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = deploys_dir()?;
    std::fs::create_dir_all(&dir)?;
    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    let port: Value = serde_json::from_str(&plan.port.to_string()).unwrap_or(Value::Null);
    let mut record: BTreeMap<&str, Value> = BTreeMap::new();
    record.insert("slug", json!(plan.slug));
    record.insert(
        "project_path",
        json!(instavm_manifest::py::path::resolve(project).to_string_lossy()),
    );
    record.insert("snapshot_id", json!(snapshot_id));
    record.insert("vm_id", json!(vm_id));
    record.insert("share_url", json!(share_url));
    record.insert(
        "last_deployed",
        json!(chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()),
    );
    record.insert("fingerprint", json!(fingerprint(plan)));
    record.insert(
        "plan",
        json!({
            "build_command": plan.build_command,
            "health_path": plan.health_path,
            "install_command": plan.install_command,
            "package_manager": plan.package_manager,
            "port": port,
            "runtime": plan.runtime,
            "start_command": plan.start_command,
        }),
    );
    let path = record_path(project)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    file.write_all((serde_json::to_string_pretty(&record)? + "\n").as_bytes())?;
    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_matches_python() {
        // python3 -c 'import hashlib,json; print(hashlib.sha256(json.dumps({"slug":"app",
        //   "runtime":"python","package_manager":"pip","install_command":"pip install -r r.txt",
        //   "build_command":None,"start_command":"python app.py","port":8000,
        //   "health_path":"/"}, sort_keys=True).encode()).hexdigest())'
        let plan = DeployPlan {
            slug: "app".into(),
            runtime: "python".into(),
            package_manager: "pip".into(),
            install_command: "pip install -r r.txt".into(),
            build_command: None,
            start_command: "python app.py".into(),
            port: 8000.into(),
            health_path: "/".into(),
            secrets: Vec::new(),
        };
        assert_eq!(
            fingerprint(&plan),
            "dcc535fc26b1c42aa0fc55dc8004301c797f5c65ab7b011905bfc3ae655243bc"
        );
    }
}
