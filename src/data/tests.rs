use super::*;
use crate::spec::{DataFormat, DataSource, FieldMap};

fn source(path: &Path, fields: FieldMap) -> DataSource {
    DataSource {
        path: path.display().to_string(),
        format: DataFormat::Auto,
        fields,
        limit: None,
        shuffle: false,
    }
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn jsonl_with_template_reference_and_id() {
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        "a.jsonl",
        "{\"id\": \"x1\", \"question\": \"2+2?\", \"answer\": \"4\"}\n\n{\"id\": 7, \"question\": \"3+3?\", \"answer\": 6}\n",
    );
    let mut spec = Experiment::default();
    spec.data.prompt.template = Some("Q: {{ question }}\nA:".into());
    spec.data.prompt.system = Some("Be brief.".into());
    let fields = FieldMap {
        prompt: "question".into(),
        reference: Some("answer".into()),
        task: None,
        id: Some("id".into()),
    };
    let recs = load_records(&spec, &source(&p, fields), None).unwrap();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].id, "x1");
    assert_eq!(recs[1].id, "7");
    assert_eq!(recs[1].line, 3);
    assert_eq!(recs[0].prompt_text, "Q: 2+2?\nA:");
    assert_eq!(recs[0].messages[0], Message::new("system", "Be brief."));
    assert_eq!(recs[0].messages[1], Message::new("user", "Q: 2+2?\nA:"));
    assert_eq!(recs[0].reference, Some(Value::from("4")));
    assert_eq!(recs[1].reference, Some(Value::from(6)));
}

#[test]
fn message_list_prompts_keep_their_system() {
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        "m.jsonl",
        r#"{"task": "extraction", "prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]}"#,
    );
    let mut spec = Experiment::default();
    spec.data.prompt.system = Some("other".into());
    let fields = FieldMap {
        task: Some("task".into()),
        ..FieldMap::default()
    };
    let recs = load_records(&spec, &source(&p, fields), None).unwrap();
    assert_eq!(recs[0].messages.len(), 2);
    assert_eq!(recs[0].messages[0].content, "S");
    assert_eq!(recs[0].prompt_text, "U");
    assert_eq!(recs[0].task.as_deref(), Some("extraction"));
    assert_eq!(recs[0].id, "1");
}

#[test]
fn errors_name_file_line_and_field() {
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        "e.jsonl",
        "{\"prompt\": \"a\"}\n{\"text\": \"b\"}\n",
    );
    let spec = Experiment::default();
    let e = load_records(&spec, &source(&p, FieldMap::default()), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("e.jsonl:2"), "{e}");
    assert!(e.contains("`prompt`"), "{e}");

    let p = write(d.path(), "bad.jsonl", "{\"prompt\": \"a\"}\n{oops\n");
    let e = load_records(&spec, &source(&p, FieldMap::default()), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bad.jsonl:2") && e.contains("invalid JSON"),
        "{e}"
    );

    let p = write(d.path(), "r.jsonl", "{\"prompt\": \"a\"}\n");
    let f = FieldMap {
        reference: Some("answer".into()),
        ..FieldMap::default()
    };
    let e = load_records(&spec, &source(&p, f), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("r.jsonl:1") && e.contains("`answer`"), "{e}");

    let mut spec = Experiment::default();
    spec.data.prompt.template = Some("{{ question }}".into());
    let p = write(d.path(), "t.jsonl", "{\"q\": \"a\"}\n");
    let e = load_records(&spec, &source(&p, FieldMap::default()), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("t.jsonl:1") && e.contains("template"), "{e}");

    let p = write(d.path(), "n.jsonl", "[1, 2]\n");
    let e = load_records(
        &Experiment::default(),
        &source(&p, FieldMap::default()),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("n.jsonl:1") && e.contains("object"), "{e}");
}

#[test]
fn json_array_and_csv() {
    let d = tempfile::tempdir().unwrap();
    let spec = Experiment::default();
    let p = write(d.path(), "a.json", r#"[{"prompt": "a"}, {"prompt": "b"}]"#);
    let recs = load_records(&spec, &source(&p, FieldMap::default()), None).unwrap();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[1].line, 2);
    assert_eq!(recs[1].prompt_text, "b");

    let p = write(
        d.path(),
        "a.csv",
        "prompt,answer\n\"hello, you\",3\nbye,4\n",
    );
    let f = FieldMap {
        reference: Some("answer".into()),
        ..FieldMap::default()
    };
    let recs = load_records(&spec, &source(&p, f), None).unwrap();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].prompt_text, "hello, you");
    assert_eq!(recs[0].reference, Some(Value::from("3")));
    assert_eq!(recs[1].line, 3);

    let p = write(d.path(), "a.txt", "x");
    let e = load_records(&spec, &source(&p, FieldMap::default()), None).unwrap_err();
    assert!(e.to_string().contains("format"), "{e}");
}

#[test]
fn limit_and_shuffle_are_seeded() {
    let d = tempfile::tempdir().unwrap();
    let text: String = (0..30)
        .map(|i| format!("{{\"prompt\": \"p{i}\"}}\n"))
        .collect();
    let p = write(d.path(), "s.jsonl", &text);
    let spec = Experiment::default();
    let mut s = source(&p, FieldMap::default());
    s.limit = Some(5);
    let first: Vec<String> = load_records(&spec, &s, None)
        .unwrap()
        .into_iter()
        .map(|r| r.prompt_text)
        .collect();
    assert_eq!(first, vec!["p0", "p1", "p2", "p3", "p4"]);
    s.shuffle = true;
    let a: Vec<String> = load_records(&spec, &s, None)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    let b: Vec<String> = load_records(&spec, &s, None)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(a, b);
    assert_eq!(a.len(), 5);
    assert_ne!(a, vec!["1", "2", "3", "4", "5"]);
}

#[test]
fn date_partitioned_paths() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "20250101.jsonl", "{\"prompt\": \"x\"}\n");
    let s = DataSource {
        path: format!("{}/{{date}}.jsonl", d.path().display()),
        format: DataFormat::Auto,
        fields: FieldMap::default(),
        limit: None,
        shuffle: true,
    };
    let recs = load_records(&Experiment::default(), &s, Some("20250101")).unwrap();
    assert_eq!(recs.len(), 1);
}

#[test]
fn project_data_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let spec_path = root.join("experiments/quickstart.yaml");
    let text = std::fs::read_to_string(&spec_path).unwrap();
    let mut spec: Experiment = serde_yaml::from_str(&text).unwrap();
    let mut train = spec.data.train.clone().unwrap();
    train.path = root.join(&train.path).display().to_string();
    let recs = load_records(&spec, &train, None).unwrap();
    assert!(recs.len() >= 10);
    assert!(recs.iter().all(|r| r.reference.is_some()));
    assert!(recs[0].prompt_text.contains("Answer: <integer>"));
    // pairs: chat message lists with task labels
    spec.data.prompt.template = None;
    let pairs = DataSource {
        path: root
            .join("experiments/data/pairs/eval.jsonl")
            .display()
            .to_string(),
        format: DataFormat::Auto,
        fields: FieldMap {
            prompt: "prompt".into(),
            reference: Some("reference".into()),
            task: Some("task".into()),
            id: Some("id".into()),
        },
        limit: None,
        shuffle: false,
    };
    let recs = load_records(&spec, &pairs, None).unwrap();
    assert!(recs
        .iter()
        .all(|r| r.messages[0].role == "system" && r.task.is_some()));
}
