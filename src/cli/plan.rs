//! `runner plan`: compile a spec into a plan, show it with the cache status of every stage
//! (cached from an earlier run of the same name, or to run and why), optionally save it for
//! `runner apply`.

use crate::stages::StageKind;
use anyhow::Context;
use std::path::{Path, PathBuf};

/// Arguments of `runner plan`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  runner plan experiments/v4_1.yaml
  runner plan experiments/polychromic.yaml --set train.learning_rate=5e-6 --json
  runner plan experiments/newrun_daily.yaml --out newrun.plan.json && runner apply newrun.plan.json
  runner plan experiments/quickstart.yaml --force generate
  runner plan experiments/newrun_daily.yaml --from 20250802 --to 20250804

Each stage is shown as `cached (run <id>)` — an earlier run under --runs-dir has its outputs
for the same inputs — or `to run (<reason>)`, the reason being the first input that differs.")]
pub struct Args {
    /// The spec file.
    pub file: PathBuf,
    /// Override a field after resolution: `--set path=value` (value parsed as YAML); repeatable.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub sets: Vec<String>,
    /// Print the plan as JSON (the `plan.json` format) instead of the readable view.
    #[arg(long)]
    pub json: bool,
    /// Save the plan to this file; `runner apply PLAN` runs it, refusing it if the spec changed.
    #[arg(long, value_name = "PLAN")]
    pub out: Option<PathBuf>,
    /// Ignore `RUNNER_*` environment variables.
    #[arg(long)]
    pub no_env: bool,
    /// Where earlier runs are looked up for the cache status (as `runner apply --runs-dir`).
    #[arg(long, value_name = "DIR", default_value = "runs")]
    pub runs_dir: PathBuf,
    /// Show this stage kind (and what reads it) as re-running, as `runner apply --force`
    /// would; repeatable.
    #[arg(long, value_name = "STAGE", value_parser = parse_stage)]
    pub force: Vec<StageKind>,
    /// Daily loop: plan a backfill from this date (replaces schedule.partitions.from), as
    /// `runner apply --from`.
    #[arg(long, value_name = "YYYYMMDD")]
    pub from: Option<String>,
    /// Daily loop: plan a backfill to this date (replaces schedule.partitions.to), as
    /// `runner apply --to`.
    #[arg(long, value_name = "YYYYMMDD")]
    pub to: Option<String>,
}

/// A stage kind name for `--force`.
pub fn parse_stage(s: &str) -> Result<StageKind, String> {
    StageKind::parse(s).ok_or_else(|| {
        let names: Vec<&str> = StageKind::ALL.iter().map(|k| k.name()).collect();
        format!("unknown stage `{s}` (stages: {})", names.join(", "))
    })
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let partition = crate::run::apply::PartitionOptions {
        from: args.from.clone(),
        to: args.to.clone(),
        ..Default::default()
    };
    if partition.is_set() && args.out.is_some() {
        eprintln!(
            "error: --from/--to are not recorded in a saved plan; plan the range without --out \
             and run it with `runner apply SPEC --from A --to B`, or save a plan made with \
             --set schedule.partitions.from='A' --set schedule.partitions.to='B'"
        );
        return Ok(2);
    }
    let mut sets = args.sets.clone();
    sets.extend(crate::run::apply::selected_range_sets(
        &args.file,
        &args.sets,
        !args.no_env,
        &partition,
        &args.runs_dir,
    ));
    if let Some(code) = report_diagnostics(&args.file, &sets, !args.no_env) {
        return Ok(code);
    }
    let req = crate::run::ApplyRequest {
        input: Some(args.file.clone()),
        sets: args.sets.clone(),
        use_env: !args.no_env,
        runs_dir: args.runs_dir.clone(),
        partition,
        force: args.force.clone(),
        ..Default::default()
    };
    let prepared = match crate::run::apply::prepare_for(&req, &args.file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(1);
        }
    };
    let plan = &prepared.plan;
    let cache = crate::run::cache::CachePlan::decide(
        &args.runs_dir,
        &plan.run_name,
        &prepared.spec,
        plan,
        None,
        &args.force,
        None,
        &Default::default(),
    )
    .map(|c| c.view());
    if args.json {
        let mut v = serde_json::to_value(plan)?;
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "cache".into(),
                match &cache {
                    Ok(view) => serde_json::to_value(view)?,
                    Err(e) => serde_json::json!({ "error": e.to_string() }),
                },
            );
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", crate::plan::render::render_in(plan, &args.runs_dir));
        println!();
        match &cache {
            Ok(view) => {
                print!("{}", crate::plan::render::render_cache(view));
                let per = crate::plan::render::render_partitions(plan, view);
                if !per.is_empty() {
                    println!();
                    print!("{per}");
                }
            }
            Err(e) => println!("cache status unknown: {e}"),
        }
    }
    if let Some(out) = &args.out {
        crate::run::atomic::write_json(out, plan)
            .with_context(|| format!("saving the plan to {}", out.display()))?;
        eprintln!(
            "plan saved to {}; run it with `runner apply {}`",
            out.display(),
            out.display()
        );
    }
    Ok(0)
}

/// Validate `file` (schema and semantic rules) and print every diagnostic to stderr. Returns
/// the exit code to stop with when there are errors (1), or `None` when the spec is valid
/// (warnings are printed and do not stop).
pub fn report_diagnostics(file: &Path, sets: &[String], use_env: bool) -> Option<i32> {
    let opts = crate::spec::resolve::ResolveOptions {
        sets: sets.to_vec(),
        use_env,
    };
    let diags = crate::spec::validate::validate_file(file, &opts);
    for d in &diags {
        eprintln!("{d}");
    }
    let errors = diags.iter().filter(|d| d.is_error()).count();
    if errors > 0 {
        eprintln!(
            "{}: {errors} error{}; nothing was planned or run",
            file.display(),
            if errors == 1 { "" } else { "s" }
        );
        return Some(1);
    }
    None
}
