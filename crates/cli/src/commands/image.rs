//! `instavm image build|import|list`: the root filesystems sandboxes start from. `build` makes
//! the Debian base image ahead of time (a server builds it on first start otherwise, and answers
//! `/health` with 503 meanwhile); `import` turns a rootfs tarball into an image.

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
    /// Build the Debian base image (debootstrap, then the deploy toolchain with apt; about two
    /// minutes), or upgrade an outdated one in place of a rebuild.
    Build(StoreArgs),
    /// Import a rootfs tarball (plain or gzip) as a new image. Paths that would land outside
    /// the image, and device nodes, are refused.
    Import(ImportArgs),
    /// List the images.
    #[command(alias = "ls")]
    List(StoreArgs),
}

#[derive(Args, Debug)]
pub struct StoreArgs {
    /// Image directory [default: <data dir>/images].
    #[arg(long, env = "INSTAVM_IMAGES_DIR")]
    pub images_dir: Option<PathBuf>,
    /// Server data directory, used for the default image directory.
    #[arg(long, env = "INSTAVM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[arg(short = 'j', long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Name of the new image (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// The rootfs tarball.
    pub tarball: PathBuf,
    #[command(flatten)]
    pub store: StoreArgs,
}

fn open_store(args: &StoreArgs) -> anyhow::Result<(PathBuf, ImageStore)> {
    let dir = match &args.images_dir {
        Some(dir) => dir.clone(),
        None => data_dir(args.data_dir.clone())?.join("images"),
    };
    let store = ImageStore::new(&dir)
        .with_context(|| format!("cannot use the image directory {}", dir.display()))?;
    Ok((dir, store))
}

pub fn run(cmd: ImageCommand) -> anyhow::Result<()> {
    match cmd {
        ImageCommand::Build(args) => build(args),
        ImageCommand::Import(args) => import(args),
        ImageCommand::List(args) => list(args),
    }
}

fn import(args: ImportArgs) -> anyhow::Result<()> {
    let (dir, store) = open_store(&args.store)?;
    let file = std::fs::File::open(&args.tarball)
        .with_context(|| format!("cannot open {}", args.tarball.display()))?;
    let spinner = Spinner::start(args.store.json, &format!("Importing {}", args.name));
    let rootfs = store.import_tarball(&args.name, file).with_context(|| {
        format!(
            "importing {} into {}",
            args.tarball.display(),
            dir.display()
        )
    })?;
    drop(spinner);
    let payload = json!({ "image": args.name, "rootfs": rootfs.display().to_string() });
    emit(
        args.store.json,
        &payload,
        &[format!(
            "Imported image {}: {}",
            args.name,
            rootfs.display()
        )],
    )
}

fn list(args: StoreArgs) -> anyhow::Result<()> {
    let (_, store) = open_store(&args)?;
    let images = store.list();
    let rows: Vec<Vec<String>> = images
        .iter()
        .map(|i| vec![i.name.clone(), i.created_at.clone(), i.source.clone()])
        .collect();
    emit(
        args.json,
        &json!({ "images": images }),
        &crate::output::table(&["NAME", "CREATED", "SOURCE"], &rows),
    )
}

fn build(args: StoreArgs) -> anyhow::Result<()> {
    let (dir, store) = open_store(&args)?;
    let started = Instant::now();
    let spinner = Spinner::start(args.json, "Building the base image");
    let plain = !args.json && !spinner.is_active();
    let (rootfs, built) = store
        .upgrade_base(&|step| {
            spinner.set_message(&format!("Building the base image: {step}"));
            if plain {
                eprintln!("base image: {step}");
            }
        })
        .with_context(|| format!("building the base image in {}", dir.display()))?;
    drop(spinner);
    let payload = json!({
        "image": BASE,
        "rootfs": rootfs.display().to_string(),
        "built": built,
        "seconds": started.elapsed().as_secs_f64(),
    });
    let line = if !built {
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
