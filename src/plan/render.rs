//! The human view of a plan: a tree of the loop and stages, then LR landmarks and estimates.

use super::{LoopPlan, Plan};
use std::fmt::Write;

/// Render a plan for a terminal, its runs under `runs/`.
pub fn render(plan: &Plan) -> String {
    render_in(plan, std::path::Path::new("runs"))
}

/// Render a plan for a terminal, its runs under `runs_dir` (`runner plan --runs-dir`).
pub fn render_in(plan: &Plan, runs_dir: &std::path::Path) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "plan for {} (spec {})",
        plan.name,
        short_hash(&plan.spec_hash)
    );
    if let Some(d) = &plan.description {
        let _ = writeln!(o, "  {}", d.trim().replace('\n', "\n  "));
    }
    if let Some(p) = &plan.source.spec_path {
        let _ = write!(o, "  spec: {}", p.display());
        if !plan.source.sets.is_empty() {
            let _ = write!(o, "  --set {}", plan.source.sets.join(" --set "));
        }
        let _ = writeln!(o);
    }
    let _ = writeln!(
        o,
        "  run directory: {}/<run-id>/",
        runs_dir.join(&plan.run_name).display()
    );
    let _ = writeln!(o);
    tree(&mut o, plan);
    if let Some(lr) = &plan.lr {
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "learning rate ({}, peak {}, {} steps, warm-up {}) over {}:",
            // The spec's own spelling (snake_case), not the Rust variant name.
            serde_json::to_value(lr.scheduler)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            fmt_f(lr.peak),
            lr.total_steps,
            lr.warmup_steps,
            lr.scope
        );
        for p in &lr.points {
            let _ = writeln!(o, "  {:<11} step {:>6}  lr {}", p.at, p.step, fmt_f(p.lr));
        }
        if let Some(s) = lr.below_1pct_from {
            let _ = writeln!(
                o,
                "  note: LR is under 1% of its peak from step {s} on ({} of {} steps barely train)",
                lr.total_steps - s,
                lr.total_steps
            );
        }
    }
    let e = &plan.estimates;
    let _ = writeln!(o);
    let _ = writeln!(o, "estimates:");
    let _ = writeln!(o, "  optimizer steps     {}", e.optimizer_steps);
    let _ = writeln!(
        o,
        "  rollouts            {} (train {} = prompts × {} generations; eval {})",
        e.rollouts, e.train_rollouts, e.num_generations, e.eval_rollouts
    );
    let _ = writeln!(
        o,
        "  completion tokens   ≤ {} ({} × max_completion_length {})",
        e.completion_tokens_max, e.rollouts, e.max_completion_length
    );
    match e.prompt_tokens_per_prompt {
        Some(p) => {
            let _ = writeln!(
                o,
                "  prompt tokens       ≈ {} (≈ {p} per prompt)",
                e.prompt_tokens
            );
        }
        None => {
            let _ = writeln!(o, "  prompt tokens       unknown");
        }
    }
    let _ = writeln!(o, "  tokens in all       ≤ {}", e.tokens_max);
    if !plan.sweep.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "sweep ({} points, one run each with `runner sweep --apply`):",
            plan.sweep.len()
        );
        for p in &plan.sweep {
            let _ = writeln!(o, "  {}", p.name);
        }
    }
    if !plan.notes.is_empty() {
        let _ = writeln!(o);
        for n in &plan.notes {
            let _ = writeln!(o, "note: {n}");
        }
    }
    o
}

fn tree(o: &mut String, plan: &Plan) {
    let stage = |k: crate::stages::StageKind| plan.stages.iter().find(|s| s.kind == k);
    if let Some(s) = stage(crate::stages::StageKind::Sft) {
        let _ = writeln!(o, "sft  ({})", s.runs);
    }
    match &plan.loop_ {
        LoopPlan::Steps {
            total_steps,
            eval_after,
        } => {
            let _ = writeln!(o, "for step in 0..{total_steps}:");
            for k in ["generate", "score", "rank", "train"] {
                let _ = writeln!(o, "  ├─ {k}");
            }
            let evals = if eval_after.len() <= 6 {
                eval_after
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            } else {
                format!(
                    "{}, {}, ..., {} ({} times)",
                    eval_after[0],
                    eval_after[1],
                    eval_after[eval_after.len() - 1],
                    eval_after.len()
                )
            };
            if eval_after.is_empty() {
                let _ = writeln!(o, "  └─ (no eval)");
            } else {
                let _ = writeln!(o, "  └─ eval after steps {evals}");
            }
        }
        LoopPlan::Partitions { rounds, pending } => {
            let _ = writeln!(o, "for each date partition ({} dates):", rounds.len());
            for r in rounds {
                let steps = r
                    .train_steps
                    .map_or(String::new(), |s| format!(", {s} train steps"));
                let gen = match (r.generate, r.prompts) {
                    (false, _) => "no prompts (skipped)".to_string(),
                    (true, Some(n)) => format!("generate {n} prompts"),
                    (true, None) => "generate".to_string(),
                };
                let score = if r.score.is_empty() {
                    String::new()
                } else {
                    let pairs: Vec<String> = r
                        .score
                        .iter()
                        .map(|p| {
                            format!(
                                "predictions {} × outcomes {}{}",
                                p.predictions_from,
                                p.outcomes_from,
                                if p.overridden { " (override)" } else { "" }
                            )
                        })
                        .collect();
                    format!("; score {} → rank → train{steps} → eval", pairs.join(" + "))
                };
                let _ = writeln!(o, "  {}: {gen}{score}", r.date);
            }
            for p in pending {
                let _ = writeln!(
                    o,
                    "  (pending: predictions of {} wait for outcomes of {})",
                    p.predictions_from, p.outcomes_from
                );
            }
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "stages:");
    for s in &plan.stages {
        let _ = writeln!(o, "  {:<9} {:>6} × {}", s.kind.name(), s.instances, s.runs);
    }
}

fn short_hash(h: &str) -> &str {
    let h = h.strip_prefix("sha256:").unwrap_or(h);
    &h[..h.len().min(12)]
}

/// A float compactly, to 4 significant digits: `1e-5`, `5.413e-6`, `0`.
fn fmt_f(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let s = format!("{x:.3e}");
    match s.split_once('e') {
        Some((m, e)) => {
            let m = m.trim_end_matches('0').trim_end_matches('.');
            format!("{m}e{e}")
        }
        None => s,
    }
}

/// The cache status of a plan's instances, per stage kind: one line when all its instances
/// agree, else the most common status and the instances that differ.
pub fn render_cache(v: &crate::run::cache::CacheView) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "cache (earlier runs in {}):", v.runs_dir.display());
    let mut kinds: Vec<crate::stages::StageKind> = Vec::new();
    for i in &v.instances {
        if !kinds.contains(&i.kind) {
            kinds.push(i.kind);
        }
    }
    for k in kinds {
        let of_kind: Vec<&crate::run::cache::InstanceView> =
            v.instances.iter().filter(|i| i.kind == k).collect();
        // Statuses in order of first appearance, with their instances.
        let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
        for i in &of_kind {
            let s = i.status_text();
            match groups.iter_mut().find(|(t, _)| *t == s) {
                Some((_, ids)) => ids.push(&i.id),
                None => groups.push((s, vec![&i.id])),
            }
        }
        let major = groups
            .iter()
            .enumerate()
            .max_by_key(|(n, (_, ids))| (ids.len(), std::cmp::Reverse(*n)))
            .map_or(0, |(n, _)| n);
        let (status, ids) = &groups[major];
        let _ = writeln!(o, "  {:<9} {:>4} × {status}", k.name(), ids.len());
        for (n, (status, ids)) in groups.iter().enumerate() {
            if n == major {
                continue;
            }
            if ids.len() <= 6 {
                for id in ids {
                    let _ = writeln!(o, "      {id}  {status}");
                }
            } else {
                let _ = writeln!(
                    o,
                    "      {} × {status}: {} … {}",
                    ids.len(),
                    ids[0],
                    ids[ids.len() - 1]
                );
            }
        }
    }
    let cached = v.instances.iter().filter(|i| i.status == "cached").count();
    let to_run = v.instances.iter().filter(|i| i.status == "to_run").count();
    match &v.up_to_date {
        Some(run) => {
            let _ = writeln!(
                o,
                "up to date: {} has every stage; `runner apply` does nothing",
                run.display()
            );
        }
        None => {
            let _ = writeln!(o, "{cached} cached, {to_run} to run");
        }
    }
    for u in &v.unreadable {
        let _ = writeln!(o, "note: earlier run not used: {u}");
    }
    o
}

/// The daily loop's cache status per partition: for each date, what it scores (which
/// predictions against which outcomes), then each of its stages as cached (from which run),
/// to run (and why) or done. Empty for a plan that is not a daily loop.
pub fn render_partitions(plan: &Plan, v: &crate::run::cache::CacheView) -> String {
    let LoopPlan::Partitions { rounds, pending } = &plan.loop_ else {
        return String::new();
    };
    let mut o = String::new();
    let _ = writeln!(o, "per partition:");
    for r in rounds {
        let of_date: Vec<&crate::run::cache::InstanceView> = v
            .instances
            .iter()
            .filter(|i| i.id.split_once('/').is_some_and(|(d, _)| d == r.date))
            .collect();
        let count = |s: &str| of_date.iter().filter(|i| i.status == s).count();
        let mut head = format!("  {}", r.date);
        if !r.generate {
            head.push_str("  no prompt file: nothing generated");
        }
        if of_date.is_empty() {
            let _ = writeln!(o, "{head}  nothing to run");
            continue;
        }
        let _ = writeln!(
            o,
            "{head}  {} cached, {} to run, {} done",
            count("cached"),
            count("to_run"),
            count("done")
        );
        for p in &r.score {
            let _ = writeln!(
                o,
                "      scores the predictions of {} against the outcomes of {}{}",
                p.predictions_from,
                p.outcomes_from,
                if p.overridden { " (override)" } else { "" }
            );
        }
        for i in &of_date {
            let _ = writeln!(o, "      {:<9} {}", i.kind.name(), i.status_text());
        }
    }
    for p in pending {
        let _ = writeln!(
            o,
            "  pending: the predictions of {} wait for the outcomes of {} (a later run)",
            p.predictions_from, p.outcomes_from
        );
    }
    o
}
