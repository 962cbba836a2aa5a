//! Metric parity with the reference implementations: NLTK `sentence_bleu` (method1), sacrebleu
//! `sentence_bleu` (13a, exp, effective order), distinct-n over `str.split()` tokens, numpy
//! pairwise cosine, the Codex paper's pass@k — values in `fixtures/metrics/reference.json`,
//! made by `fixtures/metrics/make_fixtures.py` (the command is in its docstring).

use runner::metrics::sacre_bleu::self_bleu_sacre_each;
use runner::metrics::self_bleu::self_bleu_nltk_each;
use runner::metrics::tokenize::{is_python_space, tokenize_13a};
use runner::metrics::{
    distinct_n, effective_diversity, pass_at_k, self_bleu_nltk, self_bleu_sacre,
    semantic_diversity, Pooling,
};
use serde_json::Value;

const TOL: f64 = 1e-6;

fn reference() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/metrics/reference.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn texts(corpus: &Value) -> Vec<String> {
    corpus["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn assert_close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= TOL,
        "{what}: runner {got} vs reference {want} (|Δ| = {:e})",
        (got - want).abs()
    );
}

fn corpora(r: &Value) -> Vec<(String, Value)> {
    let c = r["corpora"].as_object().unwrap();
    assert!(c.len() >= 6, "fixture has the corpora");
    c.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

#[test]
fn self_bleu_matches_nltk_per_text_and_mean() {
    let r = reference();
    let mut checked = 0;
    for (name, c) in corpora(&r) {
        let t = texts(&c);
        let t: Vec<&str> = t.iter().map(String::as_str).collect();
        for (max_n, want) in c["self_bleu_nltk"].as_object().unwrap() {
            let max_n: usize = max_n.parse().unwrap();
            let want = floats(want);
            let got = self_bleu_nltk_each(&t, max_n).unwrap();
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_close(*g, *w, &format!("{name} n={max_n} text {i} {:?}", t[i]));
                checked += 1;
            }
            let mean = want.iter().sum::<f64>() / want.len() as f64;
            assert_close(
                self_bleu_nltk(&t, max_n).unwrap(),
                mean,
                &format!("{name} mean"),
            );
        }
    }
    assert!(checked > 400, "{checked}");
}

#[test]
fn self_bleu_matches_sacrebleu_per_text_and_mean() {
    let r = reference();
    for (name, c) in corpora(&r) {
        let t = texts(&c);
        let t: Vec<&str> = t.iter().map(String::as_str).collect();
        let want = floats(&c["self_bleu_sacre"]);
        let got = self_bleu_sacre_each(&t).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_close(*g, *w, &format!("{name} text {i} {:?}", t[i]));
        }
        let mean = want.iter().sum::<f64>() / want.len() as f64;
        assert_close(self_bleu_sacre(&t).unwrap(), mean, &format!("{name} mean"));
    }
}

#[test]
fn tokenize_13a_matches_sacrebleu() {
    let r = reference();
    for (name, c) in corpora(&r) {
        for (t, want) in texts(&c).iter().zip(c["tokens_13a"].as_array().unwrap()) {
            let want: Vec<&str> = want
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap())
                .collect();
            assert_eq!(tokenize_13a(t), want, "{name}: {t:?}");
        }
    }
}

#[test]
fn python_whitespace_is_str_isspace() {
    let r = reference();
    let want: std::collections::BTreeSet<u32> = r["python_space"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    let got: std::collections::BTreeSet<u32> = (0..0x110000u32)
        .filter_map(char::from_u32)
        .filter(|&c| is_python_space(c))
        .map(u32::from)
        .collect();
    assert_eq!(got, want);
}

#[test]
fn distinct_n_matches_the_python_definition() {
    let r = reference();
    for (name, c) in corpora(&r) {
        let t = texts(&c);
        let t: Vec<&str> = t.iter().map(String::as_str).collect();
        for (n, want) in c["distinct"].as_object().unwrap() {
            let n: usize = n.parse().unwrap();
            for (pooling, key) in [
                (Pooling::Pooled, "pooled"),
                (Pooling::PerSentence, "per_sentence"),
            ] {
                let got = distinct_n(&t, n, pooling);
                match want[key].as_f64() {
                    Some(w) => assert_close(got.unwrap(), w, &format!("{name} distinct-{n} {key}")),
                    // Python divides by zero there: an error here, never 0.
                    None => assert!(got.is_err(), "{name} distinct-{n} {key}: {got:?}"),
                }
            }
        }
    }
}

#[test]
fn pass_at_k_matches_codex_and_the_closed_form() {
    let r = reference();
    for case in r["pass_at_k"].as_array().unwrap() {
        let n = case["n"].as_u64().unwrap() as usize;
        let c = case["c"].as_u64().unwrap() as usize;
        let k = case["k"].as_u64().unwrap() as usize;
        let got = pass_at_k(n, c, k).unwrap();
        let what = format!("pass@{k} n={n} c={c}");
        assert_close(got, case["codex"].as_f64().unwrap(), &what);
        assert!(
            (got - case["exact"].as_f64().unwrap()).abs() < 1e-12,
            "{what}: {got} vs exact {}",
            case["exact"]
        );
    }
    // Every k ≤ n works; k > n is an error.
    for k in 1..=20 {
        assert!(pass_at_k(20, 5, k).is_ok());
    }
    assert!(pass_at_k(20, 5, 21).is_err());
}

#[test]
fn semantic_diversity_matches_numpy() {
    let r = reference();
    let s = &r["semantic"];
    let emb: Vec<Vec<f32>> = s["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| floats(row).into_iter().map(|x| x as f32).collect())
        .collect();
    assert_close(
        semantic_diversity(&emb).unwrap(),
        s["diversity"].as_f64().unwrap(),
        "semantic",
    );
    let q = floats(&s["quality"]);
    let e = effective_diversity(&emb, &q, s["threshold"].as_f64().unwrap()).unwrap();
    assert_close(e.value, s["effective"].as_f64().unwrap(), "effective");
    assert_eq!(e.kept, s["kept"].as_u64().unwrap() as usize);
    assert_eq!(e.total, emb.len());
}

/// `semantic` through [`runner::metrics::compute`] with the real all-MiniLM-L6-v2 embedder
/// (chunked embedding, running sums) equals the plain pairwise mean of 1 − cosine over the
/// same embeddings. Skips when the asset is not cached.
#[test]
fn semantic_with_the_embedder_equals_pairwise_cosine() {
    use runner::engine::assets;
    use runner::metrics::{compute, MetricOptions, Sample};
    use runner::rewards::semantic::{cosine, Embedder};
    let asset = assets::known("all-minilm-l6-v2").expect("a known asset");
    if assets::status(asset).ok() != Some(assets::CacheStatus::Cached) {
        eprintln!("skipping: all-minilm-l6-v2 is not cached");
        return;
    }
    let e = Embedder::load("all-minilm-l6-v2").unwrap();
    let r = reference();
    let t = texts(&r["corpora"]["ptbr"]);
    let samples: Vec<Sample> = t
        .iter()
        .map(|x| Sample {
            text: x.clone(),
            ..Default::default()
        })
        .collect();
    let opts = MetricOptions {
        embedder: Some(&e),
        ..Default::default()
    };
    let got = compute("semantic", &samples, &opts).unwrap().values["semantic"];
    let refs: Vec<&str> = t.iter().map(String::as_str).collect();
    let emb = e.embed(&refs).unwrap();
    let (mut sum, mut pairs) = (0.0, 0);
    for i in 0..emb.len() {
        for j in i + 1..emb.len() {
            sum += 1.0 - f64::from(cosine(&emb[i], &emb[j]));
            pairs += 1;
        }
    }
    assert_close(got, sum / f64::from(pairs), "semantic vs pairwise");
    assert!(got > 0.1 && got < 1.5, "{got}");
}
