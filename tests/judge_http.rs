//! The judge against a real OpenAI-compatible HTTP server started by each test (tiny_http on
//! 127.0.0.1:0), scripted per test: good answers, 5xx, stalls past the timeout, garbage,
//! 401, the bearer key. Also the local-engine judge on a tiny random model.
//!
//! Backoff timing is checked only by counting attempts (no timed asserts).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runner::engine::chat::Message;
use runner::engine::load::{self, LoadOptions};
use runner::rewards::judge_client::{judge_group, HttpJudge, JudgeBackend, LocalJudge};
use runner::rewards::Score;
use runner::spec::JudgeReward;

/// What the server does with one request.
#[derive(Clone)]
enum Reply {
    /// 200 with a chat-completions body whose content is this text.
    Content(&'static str),
    /// This status with this body.
    Status(u16, &'static str),
    /// Wait this long, then answer with the content (the client should have given up).
    Stall(u64, &'static str),
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authorization: Option<String>,
    body: serde_json::Value,
}

/// A chat-completions server following a script (the last reply repeats).
struct Server {
    server: Arc<tiny_http::Server>,
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn start(script: Vec<Reply>) -> Server {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let addr = server.server_addr().to_ip().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, log) = (server.clone(), seen.clone());
        let count = Arc::new(AtomicUsize::new(0));
        std::thread::spawn(move || {
            for mut req in s.incoming_requests() {
                let n = count.fetch_add(1, Ordering::SeqCst);
                let reply = script[n.min(script.len() - 1)].clone();
                let mut body = String::new();
                req.as_reader().read_to_string(&mut body).unwrap();
                let authorization = req
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("Authorization"))
                    .map(|h| h.value.as_str().to_string());
                log.lock().unwrap().push(Seen {
                    path: req.url().to_string(),
                    authorization,
                    body: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
                });
                // each reply on its own thread, so a stalled one does not hold the next
                std::thread::spawn(move || respond(req, reply));
            }
        });
        Server {
            server,
            url: format!("http://{addr}/v1"),
            seen,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

fn completion_body(content: &str) -> String {
    serde_json::json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": "judge",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    })
    .to_string()
}

fn respond(req: tiny_http::Request, reply: Reply) {
    let json = tiny_http::Header::from_bytes("Content-Type", "application/json").unwrap();
    let (code, body) = match reply {
        Reply::Content(c) => (200, completion_body(c)),
        Reply::Status(code, body) => (code, body.to_string()),
        Reply::Stall(ms, c) => {
            std::thread::sleep(Duration::from_millis(ms));
            (200, completion_body(c))
        }
    };
    // the client may have hung up (stall): ignore write errors
    let _ = req.respond(
        tiny_http::Response::from_string(body)
            .with_status_code(code)
            .with_header(json),
    );
}

/// A judge spec for `url`: short timeouts and backoff, overridden by `extra` (a YAML mapping).
fn spec(url: &str, extra: &str) -> JudgeReward {
    let mut m: serde_json::Map<String, serde_json::Value> =
        serde_json::from_value(serde_json::json!({
            "endpoint": url, "model": "judge-model", "timeout_ms": 2000, "http_retries": 3,
            "backoff_ms": 5, "retries": 2
        }))
        .unwrap();
    if !extra.is_empty() {
        let over: serde_json::Map<String, serde_json::Value> = serde_yaml::from_str(extra).unwrap();
        m.extend(over);
    }
    serde_json::from_value(serde_json::Value::Object(m)).unwrap()
}

const GROUP: [&str; 4] = ["answer one", "answer two", "answer three", "answer four"];

fn values(scores: &[Score]) -> Vec<Option<f64>> {
    scores.iter().map(Score::as_f64).collect()
}

#[test]
fn a_correct_ranking() {
    let srv = Server::start(vec![Reply::Content(
        "B is the most complete.\nRanking: B > D > A > C",
    )]);
    let s = spec(&srv.url, "");
    let judge = HttpJudge::from_spec(&s).unwrap();
    let o = judge_group(&judge, &s, "Explain inflation.", &GROUP, None).unwrap();
    // ranks A=3, B=1, C=4, D=2 → (4 − r)/3
    assert_eq!(
        values(&o.scores),
        vec![Some(1.0 / 3.0), Some(1.0), Some(0.0), Some(2.0 / 3.0)]
    );
    assert_eq!(o.retries, 0);
    assert!(o.raw.ends_with("B > D > A > C"));
    let seen = srv.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/chat/completions");
    let body = &seen[0].body;
    assert_eq!(body["model"], "judge-model");
    assert_eq!(body["temperature"], 0);
    assert_eq!(body["max_tokens"], 64);
    assert_eq!(body["messages"][0]["role"], "user");
    let content = body["messages"][0]["content"].as_str().unwrap();
    assert!(content.contains("Explain inflation."), "{content}");
    assert!(content.contains("### D\nanswer four"), "{content}");
    assert_eq!(seen[0].authorization, None);
}

#[test]
fn server_errors_are_retried_and_counted() {
    let srv = Server::start(vec![
        Reply::Status(500, r#"{"error": "boom"}"#),
        Reply::Status(503, "unavailable"),
        Reply::Content("C > A > B > D"),
    ]);
    let s = spec(&srv.url, "");
    let judge = HttpJudge::from_spec(&s).unwrap();
    let o = judge_group(&judge, &s, "p", &GROUP, None).unwrap();
    assert_eq!(o.retries, 2);
    assert_eq!(
        values(&o.scores),
        vec![Some(2.0 / 3.0), Some(1.0 / 3.0), Some(1.0), Some(0.0)]
    );
    assert_eq!(srv.seen().len(), 3);
    // the backend on its own reports the same count
    let srv = Server::start(vec![
        Reply::Status(429, "slow down"),
        Reply::Content("A > B"),
    ]);
    let judge = HttpJudge::from_spec(&spec(&srv.url, "")).unwrap();
    let (text, retries) = judge.complete(&[Message::new("user", "hi")], 8).unwrap();
    assert_eq!((text.as_str(), retries), ("A > B", 1));
}

#[test]
fn a_stalling_server_times_out_then_unscorable() {
    let srv = Server::start(vec![Reply::Stall(3000, "A > B > C > D")]);
    let s = spec(&srv.url, "{timeout_ms: 150, http_retries: 2}");
    let judge = HttpJudge::from_spec(&s).unwrap();
    let o = judge_group(&judge, &s, "p", &GROUP, None).unwrap();
    assert!(o.scores.iter().all(Score::is_unscorable), "{o:?}");
    // 3 attempts, 2 retries, then the backend gives up (no parse re-asks on a dead backend)
    assert_eq!(o.retries, 2);
    assert_eq!(srv.seen().len(), 3);
    let Score::Unscorable(why) = &o.scores[0] else {
        unreachable!()
    };
    assert!(why.contains("3 attempts"), "{why}");
}

#[test]
fn garbage_answers_are_reasked_then_unscorable() {
    let srv = Server::start(vec![Reply::Content("they are all quite good, hard to say")]);
    let s = spec(&srv.url, "");
    let judge = HttpJudge::from_spec(&s).unwrap();
    let o = judge_group(&judge, &s, "p", &GROUP, None).unwrap();
    assert!(o.scores.iter().all(Score::is_unscorable), "{o:?}");
    assert_eq!(o.retries, 2, "two parse re-asks");
    let seen = srv.seen();
    assert_eq!(seen.len(), 3);
    // each re-ask carries the previous answer and the complaint
    let msgs = seen[2].body["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 5);
    assert_eq!(msgs[1]["role"], "assistant");
    assert!(msgs[2]["content"]
        .as_str()
        .unwrap()
        .contains("could not be read"));
    // a 200 without choices is an error quoting the body, and unscorable
    let srv = Server::start(vec![Reply::Status(200, r#"{"object": "weird"}"#)]);
    let s = spec(&srv.url, "");
    let judge = HttpJudge::from_spec(&s).unwrap();
    let err = judge
        .complete(&[Message::new("user", "hi")], 8)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("choices[0].message.content") && err.contains("weird"),
        "{err}"
    );
    let o = judge_group(&judge, &s, "p", &GROUP, None).unwrap();
    assert!(o.scores.iter().all(Score::is_unscorable));
}

#[test]
fn unauthorized_is_not_retried() {
    let srv = Server::start(vec![Reply::Status(401, r#"{"error": "bad key"}"#)]);
    let s = spec(&srv.url, "");
    let judge = HttpJudge::from_spec(&s).unwrap();
    let o = judge_group(&judge, &s, "p", &GROUP, None).unwrap();
    assert!(o.scores.iter().all(Score::is_unscorable));
    assert_eq!(o.retries, 0);
    assert_eq!(srv.seen().len(), 1);
    let Score::Unscorable(why) = &o.scores[0] else {
        unreachable!()
    };
    assert!(why.contains("401") && why.contains("bad key"), "{why}");
}

#[test]
fn bearer_key_from_the_environment() {
    // a variable no other test reads
    std::env::set_var("RUNNER_JUDGE_HTTP_TEST_KEY", "sk-test-123");
    let srv = Server::start(vec![Reply::Content("A > B")]);
    let s = spec(&srv.url, "{api_key_env: RUNNER_JUDGE_HTTP_TEST_KEY}");
    let judge = HttpJudge::from_spec(&s).unwrap();
    let o = judge_group(&judge, &s, "p", &GROUP[..2], None).unwrap();
    assert_eq!(values(&o.scores), vec![Some(1.0), Some(0.0)]);
    assert_eq!(
        srv.seen()[0].authorization.as_deref(),
        Some("Bearer sk-test-123")
    );
    // the key is not printed
    assert!(!format!("{judge:?}").contains("sk-test-123"));
}

#[test]
fn score_mode_over_http() {
    let srv = Server::start(vec![Reply::Content("A: 0.9\nB: 0.2\nC: 0.5\nD: 1")]);
    let s = spec(&srv.url, "{mode: score}");
    let judge = HttpJudge::from_spec(&s).unwrap();
    let o = judge_group(&judge, &s, "p", &GROUP, None).unwrap();
    assert_eq!(
        values(&o.scores),
        vec![Some(0.9), Some(0.2), Some(0.5), Some(1.0)]
    );
}

#[test]
fn nothing_listening_is_retried_then_unscorable() {
    // bind then drop a listener: its port refuses connections
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let s = spec(&format!("http://127.0.0.1:{port}/v1"), "{http_retries: 2}");
    let judge = HttpJudge::from_spec(&s).unwrap();
    let o = judge_group(&judge, &s, "p", &GROUP, None).unwrap();
    assert!(o.scores.iter().all(Score::is_unscorable));
    assert_eq!(o.retries, 2);
}

#[test]
fn local_judge_on_a_tiny_random_model_never_crashes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = common::tiny_config(runner::engine::model::Arch::Llama, false);
    // room for the judge prompt with the character-level tokenizer
    cfg["max_position_embeddings"] = serde_json::json!(4096);
    let w = common::random_weights(&cfg, 7);
    common::write_hf_dir(tmp.path(), &cfg, &w);
    common::write_tiny_tokenizer(tmp.path());
    let lm = load::load(tmp.path().to_str().unwrap(), &LoadOptions::default()).unwrap();
    let judge = LocalJudge::new(Arc::new(lm.model), Arc::new(lm.tokenizer));
    let s: JudgeReward = serde_yaml::from_str(
        "{rubric: 'rank these answers to: {{ prompt }}', retries: 1, max_tokens: 12}",
    )
    .unwrap();
    let o = judge_group(&judge, &s, "what is 2+2?", &["4", "5", "22"], None).unwrap();
    eprintln!("tiny judge said {:?} → {:?}", o.raw, o.scores);
    assert_eq!(o.scores.len(), 3);
    // garbage from a random model: unscorable after the re-ask (or, should the noise happen
    // to spell a ranking, rewards in [0, 1]) — never a crash, never out of range
    if o.scores.iter().any(Score::is_unscorable) {
        assert!(o.scores.iter().all(Score::is_unscorable));
        assert_eq!(o.retries, 1);
    } else {
        assert!(values(&o.scores)
            .iter()
            .all(|v| (0.0..=1.0).contains(&v.unwrap())));
    }
    // deterministic: greedy decoding gives the same answer again
    let again = judge_group(&judge, &s, "what is 2+2?", &["4", "5", "22"], None).unwrap();
    assert_eq!(again.raw, o.raw);
    // a prompt beyond the model's context is a backend failure: unscorable, not a crash
    cfg["max_position_embeddings"] = serde_json::json!(64);
    let tmp2 = tempfile::tempdir().unwrap();
    common::write_hf_dir(tmp2.path(), &cfg, &w);
    common::write_tiny_tokenizer(tmp2.path());
    let lm = load::load(tmp2.path().to_str().unwrap(), &LoadOptions::default()).unwrap();
    let small = LocalJudge::new(Arc::new(lm.model), Arc::new(lm.tokenizer));
    let o = judge_group(&small, &s, "what is 2+2?", &["4", "5"], None).unwrap();
    assert!(o.scores.iter().all(Score::is_unscorable), "{o:?}");
}

/// Runs `apply` on the tiny model with a judge reward at `url` (`extra`: more judge options).
fn apply_with_judge(
    dir: &std::path::Path,
    url: &str,
    extra: &str,
    resume: Option<std::path::PathBuf>,
) -> Result<runner::run::ApplyReport, runner::Error> {
    let model = common::tiny_model_dir(dir, 7);
    let train = dir.join("train.jsonl");
    std::fs::write(&train, common::arithmetic_rows("t", 4)).unwrap();
    let text = common::tiny_spec(
        &model,
        &train,
        None,
        &format!(
            "rewards: {{judge: {{kind: judge, weight: 1.0, endpoint: '{url}', model: org/judge, \
             timeout_ms: 2000, http_retries: 0, backoff_ms: 5, retries: 2{extra}}}}}\n\
             train: {{max_steps: 1}}"
        ),
    );
    let spec = dir.join("judged.yaml");
    std::fs::write(&spec, text).unwrap();
    let req = runner::run::ApplyRequest {
        input: Some(spec),
        runs_dir: dir.join("runs"),
        resume,
        ..runner::run::ApplyRequest::default()
    };
    runner::run::apply(&req, &runner::stages::Registry::builtin())
}

/// The run directory of a run under `dir` that stopped in its first score stage: its rollouts
/// are kept, its score stage is not recorded as done.
fn stopped_at_score(dir: &std::path::Path) -> std::path::PathBuf {
    let run_dir = std::fs::read_dir(dir.join("runs/tiny"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let state = runner::run::RunState::load(&run_dir.join("state.json")).unwrap();
    assert!(state.record("step-0000/generate").is_some(), "kept");
    assert!(state.record("step-0000/score").is_none());
    run_dir
}

/// `max_unscorable`: a judge answering garbage stops the run at the score stage, with an
/// error naming the reward, when the spec says so; a resume once the judge answers scores
/// again and finishes. Without the limit the run goes on and counts the results unscorable.
#[test]
fn a_judge_that_cannot_answer_stops_the_run_when_the_spec_says_so() {
    // Two groups of two per step, three requests per group (two re-asks): six garbage
    // answers, then good rankings.
    let mut script = vec![Reply::Content("hard to say"); 6];
    script.push(Reply::Content("Ranking: B > A"));
    let srv = Server::start(script);
    let d = tempfile::tempdir().unwrap();
    let err = apply_with_judge(d.path(), &srv.url, ", max_unscorable: 0.5", None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("step-0000/score")
            && err.contains("reward `judge`: 4 of 4 results unscorable")
            && err.contains("max_unscorable 0.5"),
        "{err}"
    );
    let run_dir = stopped_at_score(d.path());
    let report = apply_with_judge(d.path(), &srv.url, ", max_unscorable: 0.5", Some(run_dir))
        .expect("the resumed run scores again and finishes");
    assert!(report.resumed);
    let state = runner::run::RunState::load(&report.run_dir.join("state.json")).unwrap();
    let score = &state.record("step-0000/score").unwrap().outputs;
    assert_eq!(score["rewards/judge/unscorable"], 0, "{score}");

    // No limit: the run goes on, every judge result counted unscorable (never 0).
    let srv = Server::start(vec![Reply::Content("hard to say")]);
    let d = tempfile::tempdir().unwrap();
    let report = apply_with_judge(d.path(), &srv.url, "", None).unwrap();
    let state = runner::run::RunState::load(&report.run_dir.join("state.json")).unwrap();
    let score = &state.record("step-0000/score").unwrap().outputs;
    assert_eq!(score["rewards/judge/unscorable"], 4, "{score}");
}

/// `max_unscorable` with the judge's server down (nothing listening): the score stage fails
/// naming the reward, the count and the last reason; the generated rollouts stay.
#[test]
fn a_judge_server_that_is_down_stops_the_run_when_the_spec_says_so() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let d = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}/v1");
    let err = apply_with_judge(d.path(), &url, ", max_unscorable: 0.5", None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("step-0000/score")
            && err.contains("reward `judge`: 4 of 4 results unscorable")
            && err.contains("Last reason:"),
        "{err}"
    );
    stopped_at_score(d.path());
}
