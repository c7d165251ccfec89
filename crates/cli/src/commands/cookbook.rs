//! `instavm cookbook list|info|deploy` (spec/cli.md §6.14): the catalogue is a local directory of
//! `<slug>/instavm.yaml` given by `INSTAVM_COOKBOOKS_DIR`, or an existing checkout at
//! `~/.instavm/cookbooks/repo` (used as it is: this CLI does not clone or pull it).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use instavm_manifest::py::json::{dumps, Json};
use instavm_manifest::schema::{Build, Manifest, Runtime};
use instavm_manifest::{load_manifest, DeployOptions};
use serde_json::{json, Value};

use super::deploy::{self, Style, Target};

#[derive(Subcommand, Debug)]
pub enum CookbookCommand {
    /// List the cookbooks of the catalogue.
    #[command(alias = "ls")]
    List {
        /// Emit JSON output
        #[arg(short = 'j', long)]
        json: bool,
    },
    /// Show cookbook details and required secrets.
    Info {
        /// Cookbook slug
        slug: String,
        /// Emit JSON output
        #[arg(short = 'j', long)]
        json: bool,
    },
    /// Deploy a cookbook (the same pipeline as `instavm deploy`).
    Deploy(CookbookDeployArgs),
}

#[derive(Args, Debug)]
pub struct CookbookDeployArgs {
    /// Cookbook slug
    pub slug: String,
    /// Bind a specific org vault to the new VM (repeatable); overrides auto-discovery
    #[arg(long = "vault", value_name = "VAULT_ID")]
    pub vault_ids: Vec<String>,
    /// Skip vault auto-discovery even when the manifest declares `vault.hosts`
    #[arg(long)]
    pub no_vault: bool,
    /// Fail with a setup recipe instead of prompting to bootstrap a vault
    #[arg(long)]
    pub no_setup_vault: bool,
    /// Override the InstaVM API key for this command
    #[arg(long)]
    pub api_key: Option<String>,
    /// Override the InstaVM API base URL for this command
    #[arg(long)]
    pub base_url: Option<String>,
    /// Override the SSH gateway host for this command
    #[arg(long)]
    pub ssh_host: Option<String>,
    /// Emit JSON output
    #[arg(short = 'j', long)]
    pub json: bool,
}

/// The reference's `resolve_cookbook_root`, without the git sync.
fn catalogue_root() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var("INSTAVM_COOKBOOKS_DIR")
        .ok()
        .filter(|d| !d.is_empty())
    {
        let root =
            instavm_manifest::py::path::resolve(&instavm_manifest::py::path::expanduser(&dir));
        if !root.exists() {
            return Err(format!(
                "Cookbook directory override does not exist: {}",
                root.display()
            ));
        }
        return Ok(root);
    }
    let repo = crate::config::config_path()
        .map_err(|e| e.to_string())?
        .parent()
        .map(|p| p.join("cookbooks").join("repo"))
        .unwrap_or_default();
    if repo.join(".git").exists() {
        return Ok(repo);
    }
    Err(format!(
        "The cookbook catalogue needs INSTAVM_COOKBOOKS_DIR (a directory of <slug>/instavm.yaml) \
         or a git checkout of the cookbooks repository at {}; this CLI does not clone it.",
        repo.display()
    ))
}

/// `discover_cookbooks`: every `<dir>/instavm.yaml`, sorted by directory name.
fn discover(root: &PathBuf) -> Result<Vec<Manifest>, String> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(|e| format!("cannot read {}: {e}", root.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.join("instavm.yaml").exists())
        .collect();
    dirs.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    dirs.iter()
        .map(|d| load_manifest(&d.join("instavm.yaml")).map_err(|e| e.to_string()))
        .collect()
}

fn int(v: &instavm_manifest::yaml::PyInt) -> Value {
    match v {
        instavm_manifest::yaml::PyInt::Bool(b) => json!(b),
        other => other.to_i64().map_or(Value::Null, |i| json!(i)),
    }
}

fn runtime_label(m: &Manifest) -> &str {
    m.runtime.label()
}

/// `manifest_display_record`, key order kept.
fn display_record(m: &Manifest) -> Vec<(&'static str, Value)> {
    vec![
        ("slug", json!(m.slug)),
        ("title", json!(m.title)),
        ("summary", json!(m.summary)),
        ("runtime", json!(runtime_label(m))),
        ("category", json!(m.category)),
        ("kind", json!(m.kind.as_str())),
        ("deploy_kind", json!(m.deploy.kind.as_str())),
        ("port", m.app.as_ref().map_or(Value::Null, |a| int(&a.port))),
        ("requires_secrets", json!(!m.secrets.is_empty())),
        ("version", json!(m.version)),
    ]
}

fn title_case(value: &str) -> String {
    value
        .split(|c: char| c == '-' || c == '_' || c.is_whitespace())
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut chars = p.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().collect::<String>() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `_format_cookbook_list`.
fn list_text(manifests: &[Manifest]) -> Vec<String> {
    if manifests.is_empty() {
        return vec!["No cookbooks found.".into()];
    }
    let order = |c: &str| match c {
        "web" => 0,
        "graphics" => 1,
        "agents" => 2,
        _ => 99,
    };
    let category = |m: &Manifest| {
        if m.category.is_empty() {
            "other".to_owned()
        } else {
            m.category.clone()
        }
    };
    let mut sorted: Vec<&Manifest> = manifests.iter().collect();
    sorted.sort_by_key(|m| {
        let c = category(m);
        let title = if m.title.is_empty() {
            m.slug.clone()
        } else {
            m.title.clone()
        };
        (order(&c), c, usize::from(!m.secrets.is_empty()), title)
    });
    let title_w = sorted
        .iter()
        .map(|m| m.title.chars().count())
        .max()
        .unwrap_or(0)
        .min(20);
    let slug_w = sorted
        .iter()
        .map(|m| m.slug.chars().count())
        .max()
        .unwrap_or(0);
    let line = |m: &Manifest| {
        let port = m
            .app
            .as_ref()
            .map_or("None".to_owned(), |a| a.port.value().to_string());
        let key = if m.secrets.is_empty() {
            "no key"
        } else {
            "key"
        };
        format!(
            "  {:<title_w$}  {:<slug_w$}  :{port}  {key}",
            m.title, m.slug
        )
    };
    let mut lines = vec![format!("Cookbooks ({})", sorted.len())];
    let featured: Vec<&&Manifest> = sorted.iter().filter(|m| m.secrets.is_empty()).collect();
    if !featured.is_empty() {
        lines.push(String::new());
        lines.push("Try first".into());
        lines.extend(featured.iter().map(|m| line(m)));
    }
    let mut current: Option<String> = None;
    for m in sorted.iter().filter(|m| !m.secrets.is_empty()) {
        let c = category(m);
        if current.as_deref() != Some(c.as_str()) {
            lines.push(String::new());
            lines.push(title_case(&c));
            current = Some(c);
        }
        lines.push(line(m));
    }
    lines.push(String::new());
    lines.push("Use `instavm cookbook info <slug>` for details.".into());
    lines.push("Use `instavm cookbook deploy <slug>` to launch one.".into());
    lines
}

/// A value as compact JSON.
fn v(x: impl serde::Serialize) -> String {
    serde_json::to_string(&x).unwrap_or_else(|_| "null".into())
}

/// An object whose keys keep the given order; values are rendered JSON.
fn obj(entries: &[(&str, String)]) -> String {
    let body: Vec<String> = entries
        .iter()
        .map(|(k, val)| format!("{}:{val}", v(k)))
        .collect();
    format!("{{{}}}", body.join(","))
}

fn arr(items: Vec<String>) -> String {
    format!("[{}]", items.join(","))
}

/// The reference's `handle_cookbook_info` payload, keys in its order at every level.
fn info_json(m: &Manifest) -> String {
    let mut entries: Vec<(&str, String)> = display_record(m)
        .into_iter()
        .map(|(k, val)| (k, v(val)))
        .collect();
    entries.push((
        "vm",
        obj(&[
            ("memory_mb", v(int(&m.vm.memory_mb))),
            ("vcpu_count", v(int(&m.vm.vcpu_count))),
            (
                "timeout_seconds",
                v(m.vm.timeout_seconds.as_ref().map_or(Value::Null, int)),
            ),
            ("image_variant", v(&m.vm.image_variant)),
            ("profile", v(&m.vm.profile)),
            ("metadata", compact_py(&m.vm.metadata)),
        ]),
    ));
    entries.push((
        "app",
        m.app.as_ref().map_or("null".into(), |a| {
            obj(&[
                ("port", v(int(&a.port))),
                ("healthcheck_path", v(&a.healthcheck_path)),
                ("share_public_default", v(a.share_public_default)),
                (
                    "readiness_timeout_seconds",
                    v(int(&a.readiness_timeout_seconds)),
                ),
            ])
        }),
    ));
    entries.push((
        "run",
        m.run.as_ref().map_or("null".into(), |r| {
            obj(&[
                ("workdir", v(&r.workdir)),
                ("start_command", v(&r.start_command)),
                ("logs_hint", v(&r.logs_hint)),
            ])
        }),
    ));
    let build = match &m.build {
        Build::Steps(steps) => steps
            .iter()
            .map(|s| obj(&[("name", v(&s.name)), ("command", v(&s.command))]))
            .collect(),
        _ => Vec::new(),
    };
    entries.push(("build", arr(build)));
    let runtime_steps = match &m.runtime {
        Runtime::Steps(steps) => steps
            .iter()
            .map(|s| {
                let secrets = s
                    .secrets
                    .iter()
                    .map(|x| {
                        obj(&[
                            ("name", v(&x.name)),
                            ("env_name", v(&x.env_name)),
                            ("optional", v(x.optional)),
                        ])
                    })
                    .collect();
                obj(&[
                    ("kind", v(&s.kind)),
                    ("name", v(&s.name)),
                    ("command", v(&s.command)),
                    ("optional", v(s.optional)),
                    ("secrets", arr(secrets)),
                ])
            })
            .collect(),
        Runtime::Label(_) => Vec::new(),
    };
    entries.push(("runtime_steps", arr(runtime_steps)));
    entries.push((
        "terminal",
        m.terminal.as_ref().map_or("null".into(), |t| {
            obj(&[
                ("tmux_session", v(&t.tmux_session)),
                ("command", v(&t.command)),
                ("cwd", v(&t.cwd)),
            ])
        }),
    ));
    entries.push(("audience", v(&m.audience)));
    entries.push(("source_repo", v(&m.source_repo)));
    entries.push(("icon", v(&m.icon)));
    let secrets = m
        .secrets
        .iter()
        .map(|s| {
            obj(&[
                ("name", v(&s.name)),
                ("env_name", v(&s.env_name)),
                ("required", v(s.required)),
                ("prompt", v(&s.prompt)),
            ])
        })
        .collect();
    entries.push(("secrets", arr(secrets)));
    entries.push(("notes", v(&m.post_deploy_notes)));
    obj(&entries)
}

/// `vm.metadata` as the reference prints it (its own key order), compacted.
fn compact_py(metadata: &Json) -> String {
    // Python's separators are ", " and ": "; re-render without them, keeping the order, by
    // walking the value.
    fn walk(j: &Json) -> String {
        match j {
            Json::Object(entries) => {
                let body: Vec<String> = entries
                    .iter()
                    .map(|(k, val)| {
                        let key = match k {
                            Json::Str(s) => v(s),
                            other => v(dumps(other).unwrap_or_default()),
                        };
                        format!("{key}:{}", walk(val))
                    })
                    .collect();
                format!("{{{}}}", body.join(","))
            }
            Json::Array(items) => arr(items.iter().map(walk).collect()),
            other => dumps(other)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .map_or("null".into(), v),
        }
    }
    walk(metadata)
}

fn info_text(m: &Manifest) -> Vec<String> {
    let secrets: Vec<&str> = m.secrets.iter().map(|s| s.env_name.as_str()).collect();
    let mut lines = vec![
        format!("Slug: {}", m.slug),
        format!("Title: {}", m.title),
        format!("Summary: {}", m.summary),
        format!("Runtime: {}", runtime_label(m)),
        format!("Kind: {}", m.kind.as_str()),
        format!("Deploy: {}", m.deploy.kind.as_str()),
        format!(
            "VM: {} vCPU, {}MB",
            m.vm.vcpu_count.value(),
            m.vm.memory_mb.value()
        ),
    ];
    if let Some(t) = &m.terminal {
        lines.push(format!("Terminal: {} ({})", t.command, t.tmux_session));
    }
    if let Some(a) = &m.app {
        lines.push(format!("Port: {}", a.port.value()));
        lines.push(format!("Healthcheck: {}", a.healthcheck_path));
    }
    lines.push(format!(
        "Secrets: {}",
        if secrets.is_empty() {
            "none".to_owned()
        } else {
            secrets.join(", ")
        }
    ));
    if !m.post_deploy_notes.is_empty() {
        lines.push("Notes:".into());
        lines.extend(m.post_deploy_notes.iter().map(|n| format!("  - {n}")));
    }
    lines
}

fn fail(json: bool, message: &str, slug: Option<&str>) -> ExitCode {
    if json {
        deploy::print_failed_before(message, slug);
    } else {
        eprintln!("Error: {message}");
    }
    ExitCode::from(1)
}

pub fn run(command: CookbookCommand) -> anyhow::Result<ExitCode> {
    match command {
        CookbookCommand::List { json } => {
            let manifests = match catalogue_root().and_then(|r| discover(&r)) {
                Ok(m) => m,
                Err(e) => return Ok(fail(json, &e, None)),
            };
            if json {
                let items: Vec<String> = manifests
                    .iter()
                    .map(|m| {
                        obj(&display_record(m)
                            .into_iter()
                            .map(|(k, val)| (k, v(val)))
                            .collect::<Vec<_>>())
                    })
                    .collect();
                println!("{{\"cookbooks\":[{}]}}", items.join(","));
            } else {
                for line in list_text(&manifests) {
                    println!("{line}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        CookbookCommand::Info { slug, json } => {
            let manifest = match catalogue_root().and_then(|r| {
                load_manifest(&r.join(&slug).join("instavm.yaml")).map_err(|e| e.to_string())
            }) {
                Ok(m) => m,
                Err(e) => return Ok(fail(json, &e, None)),
            };
            if json {
                println!("{}", info_json(&manifest));
            } else {
                for line in info_text(&manifest) {
                    println!("{line}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        CookbookCommand::Deploy(args) => {
            let manifest = match catalogue_root().and_then(|r| {
                load_manifest(&r.join(&args.slug).join("instavm.yaml")).map_err(|e| e.to_string())
            }) {
                Ok(m) => m,
                Err(e) => return Ok(fail(args.json, &e, Some(&args.slug))),
            };
            let target = Target {
                api_key: args.api_key,
                base_url: args.base_url,
                ssh_host: args.ssh_host,
                json: args.json,
                vault_ids: args.vault_ids,
                no_vault: args.no_vault,
                style: Style::Cookbook,
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(deploy::deploy_manifest(
                &target,
                &manifest,
                &DeployOptions::default(),
                None,
            ))
        }
    }
}
