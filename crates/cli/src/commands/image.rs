//! `instavm image build`: build the base image ahead of time (a server builds it on first
//! start otherwise, and answers `/health` with 503 meanwhile).

use super::server::data_dir;
use crate::output::{emit, Spinner};
use anyhow::Context;
use clap::{Args, Subcommand};
use instavm_runtime_ns::image::{ImageStore, BASE};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Build the Debian base image with debootstrap if it is not there yet (about a minute).
    Build(BuildArgs),
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Image directory [default: <data dir>/images].
    #[arg(long, env = "INSTAVM_IMAGES_DIR")]
    pub images_dir: Option<PathBuf>,
    /// Server data directory, used for the default image directory.
    #[arg(long, env = "INSTAVM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[arg(short = 'j', long)]
    pub json: bool,
}

pub fn run(cmd: ImageCommand) -> anyhow::Result<()> {
    let ImageCommand::Build(args) = cmd;
    let dir = match args.images_dir {
        Some(dir) => dir,
        None => data_dir(args.data_dir)?.join("images"),
    };
    let store = ImageStore::new(&dir)
        .with_context(|| format!("cannot use the image directory {}", dir.display()))?;
    let already = store.rootfs(BASE).is_some();
    let started = Instant::now();
    let spinner = Spinner::start(args.json, "Building the base image");
    let rootfs = store
        .ensure_base()
        .with_context(|| format!("building the base image in {}", dir.display()))?;
    drop(spinner);
    let payload = json!({
        "image": BASE,
        "rootfs": rootfs.display().to_string(),
        "built": !already,
        "seconds": started.elapsed().as_secs_f64(),
    });
    let line = if already {
        format!("The base image is ready: {}", rootfs.display())
    } else {
        format!(
            "Built the base image in {:.0} s: {}",
            started.elapsed().as_secs_f64(),
            rootfs.display()
        )
    };
    emit(args.json, &payload, &[line])
}
