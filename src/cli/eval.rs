//! `runner eval`: sample from checkpoints on a spec's fixed eval prompt set, score with the
//! spec's rewards, compute the diversity and pass@k metrics, and compare the checkpoints.

use std::path::PathBuf;

use anyhow::Context;

use crate::report::checkpoint_eval::{
    evaluate, output_name, resolve_checkpoint, write_index, EvalOptions,
};
use crate::report::compare::{compare, render_markdown, CompareOptions};
use crate::rewards::semantic::Embedder;
use crate::spec::resolve::ResolveOptions;

/// Arguments of `runner eval`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  runner eval experiments/quickstart.yaml --checkpoint base --checkpoint runs/quickstart/20261122T043544Z-3d84563f
  runner eval experiments/polychromic.yaml --checkpoint runs/poly/RUN/checkpoints/best \\
      --checkpoint runs/poly/RUN/checkpoints/final --set eval.num_generations=10 --set eval.max_examples=50

A checkpoint is `base` (the spec's base model), a checkpoint directory (training_state.json), a
PEFT adapter directory, or a run directory (its final weights). Every checkpoint sees the same
prompts (eval.sets, first eval.max_examples) and sampling seed. Writes <out>/index.json and one
directory per checkpoint (eval.json, eval_completions.jsonl, eval_prompts.jsonl); with two or
more checkpoints the comparison table (`runner compare <out>`) is printed and saved as
<out>/compare.md.")]
pub struct Args {
    /// The spec whose eval sets, sampler and rewards are used.
    pub spec: PathBuf,
    /// A checkpoint to evaluate (repeatable; the first is the baseline of the comparison).
    #[arg(long = "checkpoint", value_name = "CKPT", required = true)]
    pub checkpoints: Vec<String>,
    /// Override a spec field: `--set path=value` (e.g. eval.num_generations=8); repeatable.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub sets: Vec<String>,
    /// Output directory (default `evals/<spec name>-<UTC time>`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Partition date for date-partitioned eval sets (`{date}` in their paths).
    #[arg(long, value_name = "YYYYMMDD")]
    pub date: Option<String>,
    /// Sentence embedder (a known id or directory) to also compute semantic diversity.
    #[arg(long, value_name = "MODEL")]
    pub embedder: Option<String>,
    /// Bootstrap resamples of the printed comparison.
    #[arg(long, default_value_t = 10_000)]
    pub resamples: usize,
    /// Ignore `RUNNER_*` environment variables.
    #[arg(long)]
    pub no_env: bool,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let opts = ResolveOptions {
        sets: args.sets.clone(),
        use_env: !args.no_env,
    };
    let spec = crate::spec::resolve::resolve(&args.spec, &opts)
        .map(|r| r.spec)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("resolving {}", args.spec.display()))?;
    let checkpoints = args
        .checkpoints
        .iter()
        .map(|c| resolve_checkpoint(c))
        .collect::<crate::Result<Vec<_>>>()?;
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("evals").join(format!(
            "{}-{}",
            crate::run::safe_name(&spec.name),
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        ))
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let embedder = match &args.embedder {
        Some(id) => Some(Embedder::load(id).with_context(|| format!("loading embedder {id}"))?),
        None => None,
    };
    let eopts = EvalOptions {
        date: args.date.clone(),
        embedder: embedder.as_ref(),
    };
    let mut done = Vec::new();
    for (i, ck) in checkpoints.iter().enumerate() {
        let name = output_name(i, ck);
        let dir = out.join(&name);
        eprintln!(
            "[{}/{}] {} ({})",
            i + 1,
            checkpoints.len(),
            ck.label,
            ck.source
        );
        let summary = evaluate(&spec, ck, &dir, &eopts)
            .with_context(|| format!("evaluating checkpoint {}", ck.source))?;
        if let Some(m) = summary.get("metrics").and_then(|m| m.as_object()) {
            let shown: Vec<String> = m
                .iter()
                .filter_map(|(k, v)| v.as_f64().map(|x| format!("{k}={x:.4}")))
                .collect();
            eprintln!("    {}", shown.join("  "));
        }
        done.push((ck.clone(), name));
        write_index(&out, &spec, &done)?;
    }
    println!("wrote {}", out.display());
    if done.len() >= 2 {
        let copts = CompareOptions {
            resamples: args.resamples.max(1),
            ..CompareOptions::default()
        };
        let c = compare(std::slice::from_ref(&out), &copts)?;
        let md = render_markdown(&c);
        crate::run::atomic::write_text(&out.join("compare.md"), &md)?;
        print!("{md}");
    }
    Ok(0)
}
