//! `runner schema`: writes the JSON Schemas generated from the spec types, or checks that the
//! checked-in copies are up to date.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::spec::types::{experiment_schema_string, EXPERIMENT_SCHEMA_PATH};

/// Arguments of `runner schema`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    runner schema              # write schemas/experiment.schema.json\n  \
    runner schema --check      # exit 1 if the checked-in schema is stale (CI)\n  \
    runner schema --stdout | jq '.definitions.Train.properties | keys'\n\n\
Specs point editors at the schema with a first line like\n  \
    # yaml-language-server: $schema=../schemas/experiment.schema.json")]
pub struct Args {
    /// Compare the generated schemas with the files on disk instead of writing them; exit 1 when
    /// any differs or is missing.
    #[arg(long, conflicts_with = "stdout")]
    pub check: bool,
    /// Print the experiment schema to stdout instead of writing files.
    #[arg(long)]
    pub stdout: bool,
    /// Project root the `schemas/` paths are relative to.
    #[arg(long, default_value = ".")]
    pub root: PathBuf,
}

/// Every generated schema: (path relative to the project root, contents).
pub fn schema_files() -> Vec<(&'static str, String)> {
    vec![(EXPERIMENT_SCHEMA_PATH, experiment_schema_string())]
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    if args.stdout {
        use std::io::Write;
        let text = experiment_schema_string();
        return match std::io::stdout().lock().write_all(text.as_bytes()) {
            // A closed pipe (`| head`) is the reader's choice, not a failure.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
            other => other.map(|_| 0).context("writing the schema to stdout"),
        };
    }
    let mut stale = 0;
    for (rel, text) in schema_files() {
        let path = args.root.join(rel);
        if args.check {
            match std::fs::read_to_string(&path) {
                Ok(on_disk) if on_disk == text => println!("{}: up to date", path.display()),
                Ok(_) => {
                    eprintln!("{}: out of date (run `runner schema`)", path.display());
                    stale += 1;
                }
                Err(e) => {
                    eprintln!("{}: cannot read ({e}); run `runner schema`", path.display());
                    stale += 1;
                }
            }
        } else {
            write_atomic(&path, &text)?;
            println!("wrote {}", path.display());
        }
    }
    Ok(if stale > 0 { 1 } else { 0 })
}

/// Writes `text` to `path` through a temporary file in the same directory and a rename.
fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}
