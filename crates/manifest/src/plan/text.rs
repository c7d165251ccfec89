//! `deploy --plan` without `--json`: the reference's `_print_manifest_plan` and
//! `_print_deploy_plan`, line for line.

use super::{DeployOptions, DetectedPlan, ManifestPlan, Plan};
use crate::py::num::int_to_string;
use crate::py::PyError;
use crate::yaml::PyInt;

fn int_text(value: &PyInt) -> Result<String, PyError> {
    match value {
        PyInt::Bool(true) => Ok("True".into()),
        PyInt::Bool(false) => Ok("False".into()),
        PyInt::Int(i) => int_to_string(i),
    }
}

/// A secret's status line; `env` tells whether the variable is set (non-empty).
fn secret_line(env_name: &str, options: &DeployOptions, optional_marker: bool) -> String {
    if options.env_value(env_name).is_some_and(|v| !v.is_empty()) {
        format!("    {env_name}: set  (from environment)")
    } else {
        let marker = if optional_marker { "  (optional)" } else { "" };
        format!("    {env_name}: (not set — will prompt){marker}")
    }
}

impl Plan {
    /// The readable summary, newline-terminated lines.
    pub fn to_text(&self, options: &DeployOptions) -> Result<String, PyError> {
        let lines = match self {
            Plan::Manifest(plan) => plan.text_lines(options)?,
            Plan::Detected(plan) => plan.text_lines(options)?,
        };
        Ok(lines.into_iter().map(|l| l + "\n").collect())
    }
}

impl ManifestPlan {
    fn text_lines(&self, options: &DeployOptions) -> Result<Vec<String>, PyError> {
        let m = &self.manifest;
        let install = m
            .source
            .as_ref()
            .map(|s| crate::py::text::strip(&s.setup_command).to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "(none — manifest-driven)".to_string());
        let mut lines = vec![
            String::new(),
            format!(
                "  Detected: {} (instavm.yaml v{})",
                m.runtime.label(),
                int_text(&m.schema_version)?
            ),
            format!("  Slug:     {}  v{}", m.slug, m.version),
            format!("  Kind:     {}", m.kind.as_str()),
            format!("  Deploy:   {}", m.deploy.kind.as_str()),
            String::new(),
            format!("  Install:  {install}"),
        ];
        if let Some(run) = &m.run {
            lines.push(format!("  Start:    {}", run.start_command));
        }
        if let Some(t) = &m.terminal {
            lines.push(format!("  Terminal: {} ({})", t.command, t.tmux_session));
            lines.push(format!("  Cwd:      {}", t.cwd));
        }
        if let Some(app) = &m.app {
            lines.push(format!("  Port:     {}", int_text(&app.port)?));
            lines.push(format!("  Health:   {}", app.healthcheck_path));
        }
        if let Some(s) = &m.schedule {
            lines.push(format!("  Schedule: {} {}", s.cron, s.timezone));
        }
        if !m.triggers.is_empty() {
            let kinds: Vec<&str> = m.triggers.iter().map(|t| t.kind.as_str()).collect();
            lines.push(format!("  Triggers: {}", kinds.join(", ")));
        }
        if !m.secrets.is_empty() {
            lines.push(String::new());
            lines.push("  Secrets:".into());
            for s in &m.secrets {
                lines.push(secret_line(&s.env_name, options, !s.required));
            }
        }
        if let Some(vault) = m.vault.as_ref().filter(|v| !v.hosts.is_empty()) {
            lines.push(String::new());
            let marker = if vault.required {
                "required"
            } else {
                "optional"
            };
            lines.push(format!(
                "  Vault:    auto-attach matching org vault ({marker})"
            ));
            lines.extend(vault.hosts.iter().map(|h| format!("    host: {h}")));
        }
        if let Some(egress) = &m.egress {
            lines.push(String::new());
            lines.push(format!("  Egress:   {}", egress.mode));
            let entries = m.effective_egress();
            if !entries.is_empty() {
                lines.push("  Egress effective allowlist:".into());
                for e in entries {
                    let suffix = if e.source == "egress.allowed_domains" {
                        String::new()
                    } else {
                        format!("      ({})", e.source)
                    };
                    lines.push(format!("    - {}{suffix}", e.domain));
                }
            }
        }
        if !m.env.is_empty() {
            lines.push(String::new());
            lines.push(format!("  Env:      {}", m.env_names_sorted().join(", ")));
        }
        if !m.volumes.is_empty() {
            lines.push(String::new());
            lines.push("  Volumes:".into());
            lines.extend(
                m.volumes
                    .iter()
                    .map(|v| format!("    - {} -> {} {}", v.name, v.mount, v.mode)),
            );
        }
        if !m.warnings.is_empty() {
            lines.push(String::new());
            lines.push("  Warnings:".into());
            lines.extend(m.warnings.iter().map(|w| format!("    - {w}")));
        }
        lines.push(String::new());
        Ok(lines)
    }
}

impl DetectedPlan {
    fn text_lines(&self, options: &DeployOptions) -> Result<Vec<String>, PyError> {
        let p = &self.plan;
        let label = match p.runtime.as_str() {
            "node" => "Node.js",
            "python" => "Python",
            "static" => "Static Site",
            "go" => "Go",
            "deno" => "Deno",
            other => other,
        };
        let mut lines = vec![
            String::new(),
            format!("  Detected: {label} ({})", p.package_manager),
            String::new(),
            format!("  Install:  {}", p.install_command),
        ];
        if let Some(build) = p.build_command.as_deref().filter(|b| !b.is_empty()) {
            lines.push(format!("  Build:    {build}"));
        }
        lines.push(format!("  Start:    {}", p.start_command));
        lines.push(format!("  Port:     {}", int_to_string(&p.port)?));
        lines.push(format!("  Health:   {}", p.health_path));
        if !p.secrets.is_empty() {
            lines.push(String::new());
            lines.push("  Secrets:".into());
            for s in &p.secrets {
                lines.push(secret_line(&s.env_name, options, false));
            }
        }
        lines.push(String::new());
        Ok(lines)
    }
}
