//! The `semantic` reward's sentence embedder against the real all-MiniLM-L6-v2 asset.
//!
//! `fixtures/semantic/reference.json` holds sentence-transformers' embeddings of a few
//! sentences (made by `fixtures/semantic/make_reference.py`, command in its docstring). The
//! tests skip with a message when the asset is not cached and cannot be fetched.

use std::sync::OnceLock;

use runner::engine::assets;
use runner::rewards::semantic::{cosine, Embedder, Pooling};

const ASSET: &str = "all-minilm-l6-v2";

/// The embedder, or None (with a message) when the asset cannot be had on this machine.
fn embedder() -> Option<&'static Embedder> {
    static E: OnceLock<Option<Embedder>> = OnceLock::new();
    E.get_or_init(|| {
        let asset = assets::known(ASSET).expect("all-minilm-l6-v2 is a known asset");
        if assets::status(asset).unwrap() != assets::CacheStatus::Cached {
            if let Err(e) = assets::resolve_known(ASSET) {
                eprintln!("skipping: {ASSET} is not cached and cannot be fetched: {e}");
                return None;
            }
        }
        // Cached: loading must work.
        Some(Embedder::load(ASSET).expect("load the cached embedder"))
    })
    .as_ref()
}

struct Reference {
    sentences: Vec<String>,
    token_lengths: Vec<usize>,
    embeddings: Vec<Vec<f32>>,
}

fn reference() -> Reference {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/semantic/reference.json"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let strs = |k: &str| -> Vec<String> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    Reference {
        sentences: strs("sentences"),
        token_lengths: v["token_lengths"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect(),
        embeddings: v["embeddings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                row.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect()
            })
            .collect(),
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

#[test]
fn matches_sentence_transformers_within_1e_4() {
    let Some(e) = embedder() else { return };
    let r = reference();
    assert_eq!(e.dim(), 384);
    assert_eq!(e.max_seq_length(), 256);
    assert_eq!(e.pooling(), Pooling::Mean);
    let texts: Vec<&str> = r.sentences.iter().map(String::as_str).collect();
    // same word pieces, including truncation of the long text at 256
    assert_eq!(e.token_counts(&texts).unwrap(), r.token_lengths);
    let got = e.embed(&texts).unwrap();
    assert_eq!(got.len(), texts.len());
    let mut worst = 0f32;
    for (i, (g, want)) in got.iter().zip(&r.embeddings).enumerate() {
        let d = max_abs_diff(g, want);
        worst = worst.max(d);
        assert!(d <= 1e-4, "sentence {i} {:?}: max |diff| {d}", texts[i]);
    }
    eprintln!("largest |candle − sentence-transformers| over all dimensions: {worst:e}");
    // the published first dimensions of "This is an example sentence"
    for (g, w) in got[0].iter().zip([0.06766f32, 0.06350, 0.04871, 0.07930]) {
        assert!((g - w).abs() < 1e-4, "{g} vs {w}");
    }
}

#[test]
fn unit_norm_deterministic_and_batch_size_invariant() {
    let Some(e) = embedder() else { return };
    let r = reference();
    let texts: Vec<&str> = r.sentences.iter().map(String::as_str).collect();
    let a = e.embed(&texts).unwrap();
    let b = e.embed(&texts).unwrap();
    assert_eq!(a, b, "embedding is deterministic");
    for v in &a {
        assert!((norm(v) - 1.0).abs() < 1e-5, "norm {}", norm(v));
    }
    // padding must not leak into the pooled vector: any batch size gives the same vectors
    let dir = assets::entry_path(assets::known(ASSET).unwrap());
    let one = Embedder::load(ASSET).unwrap().with_batch_size(1);
    let three = Embedder::load(ASSET).unwrap().with_batch_size(3);
    let o = one.embed(&texts).unwrap();
    let t = three.embed(&texts).unwrap();
    for i in 0..texts.len() {
        assert!(max_abs_diff(&a[i], &o[i]) < 1e-5, "batch 1 vs 32, text {i}");
        assert!(max_abs_diff(&a[i], &t[i]) < 1e-5, "batch 3 vs 32, text {i}");
    }
    // order of the output is the order of the input
    let rev: Vec<&str> = texts.iter().rev().copied().collect();
    let rv = e.embed(&rev).unwrap();
    for i in 0..texts.len() {
        assert!(max_abs_diff(&a[i], &rv[texts.len() - 1 - i]) < 1e-5);
    }
    assert!(e.embed(&[]).unwrap().is_empty());
    assert!(dir.is_dir());
}

#[test]
fn paraphrase_is_closer_than_unrelated() {
    let Some(e) = embedder() else { return };
    let v = e
        .embed(&[
            "The cat sits outside on the warm porch.",
            "A feline is resting on the porch in the sun.",
            "Quarterly revenue grew 12% while operating margins narrowed.",
        ])
        .unwrap();
    let para = cosine(&v[0], &v[1]);
    let unrelated = cosine(&v[0], &v[2]);
    assert!(
        para > unrelated + 0.3,
        "paraphrase {para} vs unrelated {unrelated}"
    );
    assert!((cosine(&v[0], &v[0]) - 1.0).abs() < 1e-5);
}

#[test]
fn loads_a_sentence_transformers_directory() {
    let Some(e) = embedder() else { return };
    // the asset's files plus the sentence-transformers config files of the published model
    let src = assets::entry_path(assets::known(ASSET).unwrap());
    let d = tempfile::tempdir().unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::os::unix::fs::symlink(src.join(f), d.path().join(f)).unwrap();
    }
    // a plain HF directory: max length from the model (512), mean pooling
    let plain = Embedder::load(d.path().to_str().unwrap()).unwrap();
    assert_eq!(plain.max_seq_length(), 512);
    std::fs::write(
        d.path().join("sentence_bert_config.json"),
        r#"{"max_seq_length": 256, "do_lower_case": false}"#,
    )
    .unwrap();
    let st = Embedder::load(d.path().to_str().unwrap()).unwrap();
    assert_eq!(st.max_seq_length(), 256);
    let texts = ["This is an example sentence", "Each sentence is converted"];
    let a = e.embed(&texts).unwrap();
    let b = st.embed(&texts).unwrap();
    for i in 0..2 {
        assert!(max_abs_diff(&a[i], &b[i]) < 1e-6);
    }
    // CLS pooling gives a different (still unit) vector
    std::fs::write(
        d.path().join("modules.json"),
        r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
            {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"}]"#,
    )
    .unwrap();
    std::fs::create_dir(d.path().join("1_Pooling")).unwrap();
    std::fs::write(
        d.path().join("1_Pooling/config.json"),
        r#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#,
    )
    .unwrap();
    let cls = Embedder::load(d.path().to_str().unwrap()).unwrap();
    assert_eq!(cls.pooling(), Pooling::Cls);
    let c = cls.embed(&texts).unwrap();
    assert!((norm(&c[0]) - 1.0).abs() < 1e-5);
    assert!(max_abs_diff(&a[0], &c[0]) > 1e-3);
}

#[test]
fn embedder_can_be_shared_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Embedder>();
}

#[test]
fn bad_sources_are_errors() {
    let err = Embedder::load("no-such-embedder").unwrap_err().to_string();
    assert!(err.contains("no-such-embedder"), "{err}");
    let d = tempfile::tempdir().unwrap();
    assert!(Embedder::load(d.path().to_str().unwrap()).is_err());
    std::fs::write(d.path().join("config.json"), "{not json").unwrap();
    assert!(Embedder::load(d.path().to_str().unwrap()).is_err());
}
