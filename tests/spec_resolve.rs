//! Resolution of specs: every example in `experiments/`, the `extends` chain, precedence of
//! env and `--set`, cycles and other broken chains, and the resolved YAML round trip.

use std::path::{Path, PathBuf};

use runner::spec::resolve::{
    resolve, resolve_detailed, resolved_yaml, spec_hash, IssueKind, Origin, ResolveOptions,
};
use runner::spec::{Experiment, Reward};
use runner::train::schedule::LrSchedulerType;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn examples() -> Vec<PathBuf> {
    let dir = root().join("experiments");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("experiments/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn no_env() -> ResolveOptions {
    ResolveOptions::default()
}

fn example(name: &str) -> Experiment {
    resolve(&root().join("experiments").join(name), &no_env())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .spec
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write temp spec");
    p
}

#[test]
fn every_example_resolves_and_round_trips() {
    let files = examples();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "semanticrun.yaml",
        "compositerun.yaml",
        "newrun_daily.yaml",
        "polychromic.yaml",
        "v4.yaml",
        "v4_1.yaml",
        "v4_2_a.yaml",
        "v4_2_b.yaml",
        "v4_2_c.yaml",
        "quickstart.yaml",
    ] {
        assert!(names.iter().any(|n| n == expected), "missing {expected}");
    }
    let tmp = tempfile::tempdir().unwrap();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(
            text.starts_with("# yaml-language-server: $schema=../schemas/experiment.schema.json\n"),
            "{} must start with the schema line",
            file.display()
        );
        let r = resolve(file, &no_env()).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(r.files[0], *file);
        assert_eq!(r.spec.extends, None);
        assert_eq!(
            r.spec.name,
            file.file_stem().unwrap().to_string_lossy(),
            "name defaults to the file stem"
        );
        // The resolved YAML is fully explicit and parses back to the same spec...
        let yaml = resolved_yaml(&r.spec).unwrap();
        let back: Experiment = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(back, r.spec, "{}", file.display());
        // ...and resolving it as a spec file changes nothing, hash included.
        let again = resolve(&write(tmp.path(), "resolved.yaml", &yaml), &no_env()).unwrap();
        assert_eq!(again.spec, r.spec);
        assert_eq!(spec_hash(&again.spec), spec_hash(&r.spec));
        // Every section is written out, defaults included.
        let doc: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        for key in [
            "name", "seed", "model", "data", "generate", "rewards", "rank", "train", "eval",
            "monitors", "schedule", "sweep",
        ] {
            assert!(doc.get(key).is_some(), "{key} missing from resolved yaml");
        }
        assert!(doc["train"].get("epsilon_high").is_some());
    }
}

#[test]
fn v4_has_the_seed_numbers() {
    let s = example("v4.yaml");
    assert_eq!(s.model.base, "Polygl0t/Tucano2-qwen-0.5B-Instruct");
    assert_eq!(s.generate.num_generations, 16);
    assert_eq!(s.generate.max_completion_length, 512);
    assert_eq!(s.generate.temperature, 1.0);
    assert_eq!(s.train.beta, 0.0);
    assert_eq!(s.rank.scale_rewards, runner::spec::ScaleRewards::None);
    assert_eq!(s.train.batch_size, 2);
    assert_eq!(s.train.gradient_accumulation_steps, 1);
    assert_eq!(s.model.adapter.r, 16);
    assert_eq!(s.model.adapter.lora_alpha, 32.0);
    assert_eq!(s.train.max_steps, Some(200));
    assert_eq!(s.train.lr_scheduler_type, LrSchedulerType::Cosine);
    assert_eq!(s.train.warmup_ratio, Some(0.1));
    assert_eq!(s.train.learning_rate, 2e-6);
    let Some(Reward::Json(j)) = s.rewards.get("extraction") else {
        panic!("extraction is a json reward")
    };
    assert_eq!(j.parser, runner::spec::JsonParser::Strict);
    let Some(Reward::Sql(q)) = s.rewards.get("sql_qa") else {
        panic!("sql_qa is a sql reward")
    };
    assert_eq!(q.database, "experiments/data/commerce.db");
    // ceil(200 × 0.1) = 20 warm-up steps of cosine over 200.
    let lr = s.lr_schedule().expect("max_steps is set");
    assert_eq!((lr.total_steps, lr.warmup_steps), (200, 20));
}

#[test]
fn v4_1_extends_v4_with_exactly_the_four_changes() {
    let path = root().join("experiments/v4_1.yaml");
    let r = resolve(&path, &no_env()).unwrap();
    assert_eq!(
        r.files,
        vec![path.clone(), root().join("experiments/v4.yaml")]
    );
    let v4 = example("v4.yaml");
    let v41 = r.spec.clone();
    let mut changed = Vec::new();
    diff_leaves(
        "",
        &serde_json::to_value(&v4).unwrap(),
        &serde_json::to_value(&v41).unwrap(),
        &mut changed,
    );
    changed.retain(|p| p != "name");
    assert_eq!(
        changed,
        vec![
            "rewards.extraction.parser",
            "train.learning_rate",
            "train.lr_scheduler_type",
            "train.max_steps",
            "train.warmup_ratio",
        ]
    );
    assert_eq!(v41.train.max_steps, Some(600));
    assert_eq!(v41.train.learning_rate, 5e-6);
    assert_eq!(
        v41.train.lr_scheduler_type,
        LrSchedulerType::ConstantWithWarmup
    );
    let lr = v41.lr_schedule().unwrap();
    assert_eq!((lr.total_steps, lr.warmup_steps), (600, 30));
    assert_eq!(lr.lr_at(599), 5e-6);
    // Provenance: the flipped option comes from v4_1, its siblings from v4.
    assert_eq!(
        r.provenance.get("rewards.extraction.parser"),
        Some(&Origin::File { path: path.clone() })
    );
    assert_eq!(
        r.provenance.get("rewards.extraction.required_fields"),
        Some(&Origin::File {
            path: root().join("experiments/v4.yaml")
        })
    );
    assert_eq!(r.provenance.get("train.epsilon"), Some(&Origin::Default));
    // The V4.2 scenarios extend V4.1 through a chain of depth 3.
    for (name, check) in [
        ("v4_2_a.yaml", 400usize),
        ("v4_2_b.yaml", 600),
        ("v4_2_c.yaml", 600),
    ] {
        let r = resolve(&root().join("experiments").join(name), &no_env()).unwrap();
        assert_eq!(r.files.len(), 3, "{name}");
        assert_eq!(r.spec.train.max_steps, Some(check), "{name}");
        assert_eq!(
            r.spec.train.learning_rate,
            if check == 400 { 2e-6 } else { 5e-6 }
        );
    }
    let b = example("v4_2_b.yaml");
    assert_eq!(b.model.base, "Polygl0t/Tucano2-qwen-0.5B-Base");
    assert!(b.train.sft.is_some());
}

fn diff_leaves(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff_leaves(
                    &p,
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        _ if a != b => out.push(path.to_string()),
        _ => {}
    }
}

#[test]
fn seed_numbers_of_the_other_experiments() {
    let s = example("semanticrun.yaml");
    assert_eq!(
        s.train.importance_sampling_level,
        runner::spec::ImportanceSamplingLevel::Sequence
    );
    assert_eq!(s.generate.num_generations, 8);
    let w: Vec<(String, f64)> = s
        .rewards
        .iter()
        .map(|(k, r)| (k.clone(), r.weight()))
        .collect();
    assert_eq!(
        w,
        vec![
            ("format".to_string(), 0.2),
            ("llm".to_string(), 0.0),
            ("semantic".to_string(), 0.8)
        ]
    );
    let c = example("compositerun.yaml");
    assert_eq!(c.generate.retries, 1);
    assert_eq!(c.generate.profile.as_deref(), Some("tight"));
    let auto = c.generate.auto_profile.as_ref().unwrap();
    assert_eq!((auto.from.as_str(), auto.to.as_str()), ("tight", "default"));
    assert_eq!(auto.when[0].value, 0.10);
    let Some(Reward::Composite(comp)) = c.rewards.get("composite") else {
        panic!("composite reward")
    };
    assert_eq!(comp.gate.as_ref().unwrap().reward, "validity");
    let tight = c.generate.sampler(None).unwrap();
    assert_eq!(tight.temperature, 0.5);
    let n = example("newrun_daily.yaml");
    assert_eq!(n.seed, 1234);
    let p = n.generate.sampler(None).unwrap();
    assert_eq!((p.temperature, p.top_p, p.top_k), (0.8, 0.95, Some(50)));
    let Some(Reward::Judge(j)) = n.rewards.get("judge_rank") else {
        panic!("judge reward")
    };
    assert_eq!((j.strict, j.pad_unpicked), (true, Some(7)));
    assert_eq!(n.schedule.run_suffix.as_deref(), Some("NEWRUN"));
    let parts = n.schedule.partitions.as_ref().unwrap();
    assert!(parts.backfill);
    assert_eq!(parts.overrides.len(), 1);
    let poly = example("polychromic.yaml");
    let d = poly.train.objective.diversity.as_ref().unwrap();
    assert_eq!(
        (
            d.n_generations,
            d.max_examples_for_diversity,
            d.compute_every_n_steps
        ),
        (5, 8, 3)
    );
    let lambdas = &poly.sweep.grid["train.objective.diversity.lambda"];
    assert_eq!(lambdas.len(), 4);
    assert!(!poly.sweep.seeds.is_empty());
    let q = example("quickstart.yaml");
    assert_eq!(q.model.base, "smollm2-135m-instruct");
    assert_eq!(q.model.device, runner::spec::Device::Cpu);
    assert!(q.train.max_steps.unwrap() <= 20);
    assert!((4..=8).contains(&q.generate.num_generations));
}

#[test]
fn env_and_set_precedence() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(
        tmp.path(),
        "base.yaml",
        "train: {learning_rate: 1.0e-6, max_steps: 10}\neval: {sets: [eval, train]}\n",
    );
    // Only this test sets RUNNER_* variables and only it reads them (use_env: true).
    std::env::set_var("RUNNER_TRAIN__LEARNING_RATE", "5e-6");
    std::env::set_var("RUNNER_TRAIN__MAX_GRAD_NORM", "0.5");
    std::env::set_var("RUNNER_OS", "Linux"); // a CI variable that is not a spec field
    let env = ResolveOptions {
        sets: vec![],
        use_env: true,
    };
    let r = resolve(&f, &env).unwrap();
    assert_eq!(r.spec.train.learning_rate, 5e-6, "env beats the file");
    assert_eq!(r.spec.train.max_grad_norm, Some(0.5));
    assert_eq!(
        r.provenance.get("train.learning_rate"),
        Some(&Origin::Env {
            var: "RUNNER_TRAIN__LEARNING_RATE".into()
        })
    );
    let with_set = ResolveOptions {
        sets: vec![
            "train.learning_rate=7e-6".into(),
            "eval.sets.1=holdout".into(),
            "generate.stop=[\"\\n\", END]".into(),
            "model.adapter.target_modules=[q_proj, k_proj]".into(),
        ],
        use_env: true,
    };
    let r = resolve(&f, &with_set).unwrap();
    assert_eq!(r.spec.train.learning_rate, 7e-6, "--set beats env");
    assert_eq!(r.spec.eval.sets, vec!["eval", "holdout"]);
    assert_eq!(r.spec.generate.stop, vec!["\n", "END"]);
    assert_eq!(r.spec.model.adapter.target_modules.len(), 2);
    assert_eq!(
        r.provenance.get("train.learning_rate"),
        Some(&Origin::Set {
            flag: "train.learning_rate=7e-6".into()
        })
    );
    let plain = resolve(&f, &no_env()).unwrap();
    assert_eq!(
        plain.spec.train.learning_rate, 1e-6,
        "env ignored unless asked"
    );
    std::env::remove_var("RUNNER_TRAIN__LEARNING_RATE");
    std::env::remove_var("RUNNER_TRAIN__MAX_GRAD_NORM");
    std::env::remove_var("RUNNER_OS");
}

#[test]
fn bad_set_flags_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(tmp.path(), "s.yaml", "eval: {sets: [eval]}\n");
    for (flag, needle) in [
        ("train.learning_rate", "path=value"),
        ("eval.sets.5=x", "past the end"),
        ("eval.sets.first=x", "index it with a number"),
        ("train..lr=1", "not a field path"),
        ("train.learning_rate=[1,", "not YAML"),
    ] {
        let opts = ResolveOptions {
            sets: vec![flag.into()],
            use_env: false,
        };
        let err = resolve_detailed(&f, &opts).unwrap_err();
        assert!(
            matches!(err.issues[0].kind, IssueKind::BadSet { .. }),
            "{flag}: {err}"
        );
        assert!(err.to_string().contains(needle), "{flag}: {err}");
    }
    // A --set of an unknown field is an unknown field, attributed to the flag.
    let opts = ResolveOptions {
        sets: vec!["train.learning_rat=1".into()],
        use_env: false,
    };
    let err = resolve_detailed(&f, &opts).unwrap_err();
    let issue = &err.issues[0];
    assert_eq!(issue.field_path(), "train.learning_rat");
    assert_eq!(
        issue.origin,
        Some(Origin::Set {
            flag: "train.learning_rat=1".into()
        })
    );
}

#[test]
fn extends_cycles_and_missing_parents() {
    let tmp = tempfile::tempdir().unwrap();
    let a = write(tmp.path(), "a.yaml", "extends: b.yaml\nseed: 1\n");
    write(tmp.path(), "b.yaml", "# parent\nextends: a.yaml\n");
    let err = resolve_detailed(&a, &no_env()).unwrap_err();
    let issue = &err.issues[0];
    assert!(
        matches!(&issue.kind, IssueKind::ExtendsCycle { chain } if chain.len() == 3),
        "{err}"
    );
    assert!(
        issue.message.contains("a.yaml → b.yaml → a.yaml"),
        "{}",
        issue.message
    );
    assert_eq!(
        issue.file.as_deref(),
        Some(tmp.path().join("b.yaml").as_path())
    );
    assert_eq!(issue.line, Some(2));
    // A file that extends itself.
    let s = write(tmp.path(), "self.yaml", "extends: ./self.yaml\n");
    let err = resolve_detailed(&s, &no_env()).unwrap_err();
    assert!(matches!(err.issues[0].kind, IssueKind::ExtendsCycle { .. }));
    // A missing parent is reported at the extends line, with its column.
    let m = write(tmp.path(), "m.yaml", "seed: 3\n\nextends: nowhere.yaml\n");
    let err = resolve_detailed(&m, &no_env()).unwrap_err();
    let issue = &err.issues[0];
    assert!(matches!(issue.kind, IssueKind::ExtendsMissing { .. }));
    assert_eq!((issue.line, issue.col), (Some(3), Some(10)));
    assert_eq!(issue.path, vec!["extends"]);
    assert!(err
        .to_string()
        .contains("m.yaml:3:10: extends: parent spec `nowhere.yaml`"));
    // extends must be a string.
    let n = write(tmp.path(), "n.yaml", "extends: [a.yaml]\n");
    let err = resolve_detailed(&n, &no_env()).unwrap_err();
    assert!(matches!(err.issues[0].kind, IssueKind::ExtendsInvalid));
    // Relative paths are relative to the extending file, at any depth.
    std::fs::create_dir(tmp.path().join("sub")).unwrap();
    write(tmp.path(), "root.yaml", "train: {max_steps: 7}\nseed: 5\n");
    write(
        tmp.path(),
        "sub/mid.yaml",
        "extends: ../root.yaml\nseed: 6\n",
    );
    let leaf = write(tmp.path(), "sub/leaf.yaml", "extends: mid.yaml\n");
    let r = resolve(&leaf, &no_env()).unwrap();
    assert_eq!(r.files.len(), 3);
    assert_eq!((r.spec.seed, r.spec.train.max_steps), (6, Some(7)));
}

#[test]
fn maps_merge_lists_replace_and_names_do_not_inherit() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "parent.yaml",
        "name: parent\ndescription: from the parent\n\
         eval: {sets: [eval, train], metrics: [mean_reward]}\n\
         rewards:\n  f: {kind: format, regex: '^a$', weight: 0.5}\n  j: {kind: json}\n",
    );
    let child = write(
        tmp.path(),
        "child.yaml",
        "extends: parent.yaml\neval: {sets: [eval]}\nrewards:\n  f: {weight: 0.25}\n",
    );
    let r = resolve(&child, &no_env()).unwrap();
    assert_eq!(r.spec.name, "child");
    assert_eq!(r.spec.description.as_deref(), Some("from the parent"));
    assert_eq!(r.spec.eval.sets, vec!["eval"], "lists are replaced");
    assert_eq!(r.spec.eval.metrics, vec!["mean_reward"], "siblings kept");
    let Some(Reward::Format(f)) = r.spec.rewards.get("f") else {
        panic!("f stays a format reward")
    };
    assert_eq!((f.weight, f.regex.as_str()), (0.25, "^a$"));
    assert!(r.spec.rewards.contains_key("j"));
    let named = write(
        tmp.path(),
        "named.yaml",
        "extends: parent.yaml\nname: custom\n",
    );
    assert_eq!(resolve(&named, &no_env()).unwrap().spec.name, "custom");
}

#[test]
fn typing_errors_are_structured() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, &str, &str)> = vec![
        // (spec text, expected field path, expected message fragment)
        ("traing: {}\n", "traing", "unknown field `traing`"),
        (
            "train: {learning_rat: 1}\n",
            "train.learning_rat",
            "unknown field",
        ),
        (
            "train: {loss_type: grpoo}\n",
            "train.loss_type",
            "unknown value `grpoo`",
        ),
        ("train: {max_steps: 1.5}\n", "train.max_steps", "expected"),
        (
            "generate: {num_generations: many}\n",
            "generate.num_generations",
            "expected",
        ),
        (
            "rewards:\n  r: {kind: format, regex: x, parser: tolerant}\n",
            "rewards.r.parser",
            "unknown field `parser`",
        ),
        (
            "rewards:\n  r: {kind: jsno}\n",
            "rewards.r.kind",
            "unknown value `jsno`",
        ),
        (
            "rewards:\n  r: {kind: format}\n",
            "rewards.r.regex",
            "missing required field",
        ),
        (
            "rewards:\n  r: {weight: 1}\n",
            "rewards.r.kind",
            "missing required field",
        ),
        (
            "monitors: [{metric: m, op: above, value: 1}]\n",
            "monitors",
            "above",
        ),
    ];
    for (i, (text, path, fragment)) in cases.into_iter().enumerate() {
        let f = write(tmp.path(), &format!("case{i}.yaml"), text);
        let err = resolve_detailed(&f, &no_env()).unwrap_err();
        let issue = &err.issues[0];
        assert!(
            issue.field_path().starts_with(path),
            "case {i}: path {} != {path}",
            issue.field_path()
        );
        assert!(
            issue.message.contains(fragment),
            "case {i}: {}",
            issue.message
        );
        assert_eq!(issue.file.as_deref(), Some(f.as_path()), "case {i}");
    }
    let f = write(tmp.path(), "unknown.yaml", "train: {learning_rat: 1}\n");
    let err = resolve_detailed(&f, &no_env()).unwrap_err();
    match &err.issues[0].kind {
        IssueKind::UnknownField { field, expected } => {
            assert_eq!(field, "learning_rat");
            assert!(expected.iter().any(|e| e == "learning_rate"));
        }
        k => panic!("{k:?}"),
    }
    assert_eq!(err.issues[0].path, vec!["train"]);
}

#[test]
fn syntax_errors_and_non_mappings_have_locations() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(
        tmp.path(),
        "syn.yaml",
        "train:\n  max_steps: [1, 2\nseed: 3\n",
    );
    let err = resolve_detailed(&f, &no_env()).unwrap_err();
    let issue = &err.issues[0];
    assert_eq!(issue.kind, IssueKind::Syntax);
    assert!(issue.line.is_some() && issue.col.is_some());
    let l = write(tmp.path(), "list.yaml", "- a\n- b\n");
    let err = resolve_detailed(&l, &no_env()).unwrap_err();
    assert_eq!(err.issues[0].kind, IssueKind::NotAMapping);
    let missing = tmp.path().join("absent.yaml");
    let err = resolve_detailed(&missing, &no_env()).unwrap_err();
    assert_eq!(err.issues[0].kind, IssueKind::Io);
    // An empty file is the defaults.
    let e = write(tmp.path(), "empty.yaml", "");
    let r = resolve(&e, &no_env()).unwrap();
    assert_eq!(r.spec.model.base, "smollm2-135m-instruct");
    assert_eq!(r.spec.name, "empty");
}

#[test]
fn spec_hash_is_stable_and_sensitive() {
    let a = example("v4.yaml");
    let b = example("v4.yaml");
    assert_eq!(spec_hash(&a), spec_hash(&b));
    assert_eq!(spec_hash(&a).len(), 64);
    let mut c = a.clone();
    c.train.learning_rate = 3e-6;
    assert_ne!(spec_hash(&a), spec_hash(&c));
}

/// A field that holds a string keeps a `--set` value as written: a bare date is the date
/// string, not the integer YAML reads; a numeric field still gets a number.
#[test]
fn set_keeps_text_for_string_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(
        tmp.path(),
        "daily.yaml",
        "schedule: {mode: partitions, partitions: {from: '20250801', to: '20250805'}}\n",
    );
    let opts = ResolveOptions {
        sets: vec![
            "schedule.partitions.from=20250802".into(),
            "train.max_steps=12".into(),
        ],
        use_env: false,
    };
    let r = resolve(&f, &opts).unwrap();
    let p = r.spec.schedule.partitions.as_ref().expect("partitions");
    assert_eq!(p.from, "20250802");
    assert_eq!(r.spec.train.max_steps, Some(12));
}
