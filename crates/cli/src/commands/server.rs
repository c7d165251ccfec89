//! `instavm server` (the platform) and `instavm server purge`.

use crate::output::emit;
use anyhow::{anyhow, Context};
use clap::{Args, Subcommand, ValueEnum};
use instavm_server::{AdmissionLimits, ConfigFile, Limits, RuntimeKind, ServerConfig};
use serde_json::json;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use tracing_subscriber::EnvFilter;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ServerArgs {
    #[command(subcommand)]
    pub action: Option<ServerAction>,
    /// Address to listen on; port 0 picks a free port (the bound address is printed).
    #[arg(long, env = "INSTAVM_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The SSH gateway's address (`ssh <vm_id>@host -p PORT`), or `off`; port 0 picks a free
    /// port (the bound address is printed).
    #[arg(long, env = "INSTAVM_SSH_LISTEN", default_value = "127.0.0.1:2222", value_parser = parse_ssh_listen)]
    pub ssh_listen: SshListen,
    /// The host name users `ssh` to, shown as `ssh_host` on VM records [default: the address
    /// the gateway listens on].
    #[arg(long = "public-ssh-host", env = "INSTAVM_PUBLIC_SSH_HOST")]
    pub public_ssh_host: Option<String>,
    #[command(flatten)]
    pub shares: super::server_shares::ShareArgs,
    #[command(flatten)]
    pub vault: super::server_vault::VaultArgs,
    /// Where the database, the admin key and sandbox state live
    /// [default: <user data dir>/instavm, e.g. ~/.local/share/instavm].
    #[arg(long, env = "INSTAVM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Image directory, shareable between data directories [default: inside the data dir].
    #[arg(long, env = "INSTAVM_IMAGES_DIR")]
    pub images_dir: Option<PathBuf>,
    /// Sandbox backend. `fake` runs no code and is for developing the API only.
    #[arg(long, env = "INSTAVM_RUNTIME", value_enum, default_value_t = RuntimeArg::Namespaces)]
    pub runtime: RuntimeArg,
    /// Sandboxes the namespace runtime keeps pre-started so a session starts faster.
    #[arg(long, env = "INSTAVM_WARM_POOL", default_value_t = instavm_runtime_ns::DEFAULT_WARM_POOL)]
    pub warm_pool: usize,
    /// A TOML file of operator settings: `[limits]` and `[admission]` (docs/quotas.md). Flags
    /// given as well win over the file.
    #[arg(long, env = "INSTAVM_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where tapes' LLM cassettes (`<dir>/<tape_id>/llm_call.jsonl`) are written; the SDKs'
    /// replay clients read the same variable. Default: `<data-dir>/tapes`.
    #[arg(long, env = "INSTAVM_TAPES_CASSETTE_ROOT")]
    pub tapes_cassette_root: Option<PathBuf>,
    /// Memory all live sandboxes may hold together, in MB [default: the host's RAM].
    #[arg(long, env = "INSTAVM_HOST_MEMORY_MB")]
    pub host_memory_mb: Option<u64>,
    /// vCPUs all live sandboxes may hold together [default: 16 per host CPU].
    #[arg(long, env = "INSTAVM_HOST_VCPUS")]
    pub host_vcpus: Option<u64>,
    /// Disk quota all live sandboxes may hold together, in MB [default: the layer store's size].
    #[arg(long, env = "INSTAVM_HOST_DISK_MB")]
    pub host_disk_mb: Option<u64>,
    /// Memory one user's live sandboxes may hold together, in MB [default: the config file's, else 16384].
    #[arg(long, env = "INSTAVM_USER_MEMORY_MB")]
    pub user_memory_mb: Option<u64>,
    /// vCPUs one user's live sandboxes may hold together [default: the config file's, else 32].
    #[arg(long, env = "INSTAVM_USER_VCPUS")]
    pub user_vcpus: Option<u64>,
    /// Disk quota one user's live sandboxes may hold together, in MB [default: the config file's, else 32768].
    #[arg(long, env = "INSTAVM_USER_DISK_MB")]
    pub user_disk_mb: Option<u64>,
    /// Where the VMs' resolvers forward DNS questions, ADDR[:PORT] (repeatable; port 53 by
    /// default) [default: the nameservers of the host's /etc/resolv.conf].
    #[arg(long = "dns-upstream", env = "INSTAVM_DNS_UPSTREAM", value_delimiter = ',', value_parser = parse_dns_upstream)]
    pub dns_upstream: Vec<SocketAddr>,
    /// An IPv4 range no VM may reach, in addition to the defaults (RFC 1918, 100.64.0.0/10,
    /// loopback, link-local, 0/8, 192.0.0.0/24, multicast, 240/4); repeatable.
    #[arg(long = "private-range", env = "INSTAVM_PRIVATE_RANGES", value_delimiter = ',', value_parser = parse_cidr)]
    pub private_range: Vec<String>,
    /// An IPv4 range VMs may reach although it is private by default (a whole default range or
    /// a part of one, e.g. 10.20.0.0/16); repeatable. The host itself, other VMs and
    /// 169.254.0.0/16 stay unreachable whatever this says.
    #[arg(long = "allow-private-range", env = "INSTAVM_ALLOW_PRIVATE_RANGES", value_delimiter = ',', value_parser = parse_cidr)]
    pub allow_private_range: Vec<String>,
    /// Let webhook URLs resolve to loopback, private, link-local or this host's own addresses
    /// (refused by default: a delivery is a request the server makes for a user).
    #[arg(
        long = "allow-private-webhooks",
        env = "INSTAVM_ALLOW_PRIVATE_WEBHOOKS"
    )]
    pub allow_private_webhooks: bool,
    #[command(flatten)]
    pub billing: super::server_billing::BillingArgs,
    /// Log JSON lines instead of text (the filter comes from INSTAVM_LOG or RUST_LOG).
    #[arg(short = 'j', long)]
    pub json: bool,
}

fn parse_dns_upstream(text: &str) -> Result<SocketAddr, String> {
    instavm_net::egress::parse_upstream(text.trim())
}

fn parse_cidr(text: &str) -> Result<String, String> {
    instavm_net::egress::policy::Cidr::parse(text).map(|c| c.to_string())
}

/// `--ssh-listen`: an address, or `off`.
#[derive(Debug, Clone, Copy)]
pub struct SshListen(pub Option<SocketAddr>);

fn parse_ssh_listen(text: &str) -> Result<SshListen, String> {
    match text.trim() {
        "off" | "none" | "" => Ok(SshListen(None)),
        addr => addr
            .parse()
            .map(|a| SshListen(Some(a)))
            .map_err(|e| format!("{addr:?} is not an address like 127.0.0.1:2222, nor `off`: {e}")),
    }
}

#[derive(Subcommand, Debug)]
pub enum ServerAction {
    /// Destroy every sandbox of a data directory and release its mounts (after a crash, or
    /// before deleting the directory). Run it while the server is stopped.
    Purge(PurgeArgs),
}

#[derive(Args, Debug)]
pub struct PurgeArgs {
    #[arg(long, env = "INSTAVM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[arg(long, env = "INSTAVM_IMAGES_DIR")]
    pub images_dir: Option<PathBuf>,
    #[arg(short = 'j', long)]
    pub json: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeArg {
    Namespaces,
    Fake,
}

pub fn data_dir(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match flag {
        Some(dir) => Ok(dir),
        None => dirs::data_dir()
            .map(|d| d.join("instavm"))
            .ok_or_else(|| anyhow!("cannot find the user data directory; pass --data-dir")),
    }
}

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match args.action {
        Some(ServerAction::Purge(p)) => {
            let dir = data_dir(p.data_dir)?;
            runtime
                .block_on(instavm_server::purge(&dir, p.images_dir.as_deref()))
                .with_context(|| format!("purging {}", dir.display()))?;
            let payload = json!({"status": "purged", "data_dir": dir.display().to_string()});
            emit(
                p.json,
                &payload,
                &[format!("Purged the sandboxes of {}", dir.display())],
            )
        }
        None => {
            init_logging(args.json);
            let limits = limits(&args)?;
            let config = ServerConfig {
                listen: args.listen,
                ssh_listen: args.ssh_listen.0,
                ssh_host: args.public_ssh_host.filter(|h| !h.trim().is_empty()),
                shares: args.shares.settings()?,
                data_dir: data_dir(args.data_dir)?,
                images_dir: args.images_dir,
                runtime: match args.runtime {
                    RuntimeArg::Namespaces => RuntimeKind::Namespaces,
                    RuntimeArg::Fake => RuntimeKind::Fake,
                },
                warm_pool: Some(args.warm_pool),
                // Read here, not as a flag: a key on the command line shows up in `ps`.
                admin_api_key: std::env::var("INSTAVM_ADMIN_API_KEY")
                    .ok()
                    .map(|k| k.trim().to_owned())
                    .filter(|k| !k.is_empty()),
                limits,
                egress: instavm_runtime_ns::EgressSettings {
                    dns_upstreams: args.dns_upstream,
                    private_ranges: args.private_range,
                    allowed_private_ranges: args.allow_private_range,
                },
                webhooks: instavm_server::WebhookSettings {
                    allow_private: args.allow_private_webhooks,
                },
                billing: args.billing.settings(),
                vault: args.vault.settings(),
                tapes_cassette_root: args.tapes_cassette_root,
            };
            runtime.block_on(instavm_server::run(config))?;
            Ok(())
        }
    }
}

/// The config file's limits (or the defaults), then the admission flags given on top.
fn limits(args: &ServerArgs) -> anyhow::Result<Limits> {
    let mut limits = match &args.config {
        Some(path) => ConfigFile::read(path)?.into_limits(),
        None => Limits::default(),
    };
    let a: &mut AdmissionLimits = &mut limits.admission;
    a.host_memory_mb = args.host_memory_mb.or(a.host_memory_mb);
    a.host_vcpus = args.host_vcpus.or(a.host_vcpus);
    a.host_disk_mb = args.host_disk_mb.or(a.host_disk_mb);
    a.user_memory_mb = args.user_memory_mb.unwrap_or(a.user_memory_mb);
    a.user_vcpus = args.user_vcpus.unwrap_or(a.user_vcpus);
    a.user_disk_mb = args.user_disk_mb.unwrap_or(a.user_disk_mb);
    Ok(limits)
}

fn init_logging(json: bool) {
    let filter = EnvFilter::try_from_env("INSTAVM_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
