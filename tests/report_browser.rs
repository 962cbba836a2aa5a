//! `report.html` in a real browser: headless Chromium driven over WebDriver (chromedriver,
//! started by the test, with the `fantoccini` client) opens the report from a file:// URL and
//! checks that every plot's SVG rendered: the elements are there, have non-zero bounding boxes,
//! and their lines carry path data with a non-empty geometry.
//!
//! Needs `/usr/bin/chromedriver` and Chromium (Debian: `apt-get install -y chromium
//! chromium-driver`); skipped with a message when absent.

mod report_fixture;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};
use report_fixture::{four, FakeRun};
use serde_json::json;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Kills chromedriver when the test ends, however it ends.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

fn chromium_binary() -> Option<&'static str> {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .find(|p| Path::new(p).is_file())
}

#[test]
fn report_plots_render_in_headless_chromium() {
    if !Path::new(CHROMEDRIVER).is_file() {
        eprintln!(
            "skipping: {CHROMEDRIVER} not found (Debian: apt-get install -y chromium chromium-driver)"
        );
        return;
    }
    let Some(chromium) = chromium_binary() else {
        eprintln!("skipping: no Chromium binary found (apt-get install -y chromium)");
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let mut r = FakeRun::new("browser", 1);
    r.steps = vec![
        (1, Some(0.2), Some(0.0)),
        (2, Some(0.3), Some(f64::NAN)),
        (3, None, Some(0.02)),
        (4, Some(0.6), Some(0.03)),
    ];
    r.evals = vec![
        (1, 0.4, four([0.0, 1.0, 0.5, 0.1])),
        (3, 0.55, four([1.0, 1.0, 0.2, 0.0])),
    ];
    r.best = Some(("mean_reward".into(), 0.55, 4));
    r.tasks = vec![(0, "math".into(), 0.2), (2, "math".into(), 0.5)];
    let run = r.write(d.path(), "20260101T000000Z-0b0e");
    let files = runner::report::run_report::write_report(&run, None).unwrap();
    let url = format!("file://{}", files.html.canonicalize().unwrap().display());

    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let _driver = Driver(child);
    let profile = tempfile::tempdir().unwrap();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1400,1200",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        // chromedriver needs a moment to listen.
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => panic!("could not start a WebDriver session: {e}"),
            }
        };
        let result = check_page(&client, &url).await;
        client.close().await.ok();
        result.unwrap();
    });
}

async fn check_page(client: &fantoccini::Client, url: &str) -> Result<(), String> {
    client.goto(url).await.map_err(|e| e.to_string())?;
    let title = client.title().await.map_err(|e| e.to_string())?;
    if !title.starts_with("Run report: browser") {
        return Err(format!("unexpected page title {title:?}"));
    }
    let figures = client
        .find_all(Locator::Css("figure.plot"))
        .await
        .map_err(|e| e.to_string())?;
    if figures.len() != 8 {
        return Err(format!("{} plots, expected 8", figures.len()));
    }
    for fig in figures {
        let id = fig
            .attr("id")
            .await
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        let svg = fig
            .find(Locator::Css("svg"))
            .await
            .map_err(|e| format!("{id}: no svg: {e}"))?;
        let (_, _, w, h) = svg.rectangle().await.map_err(|e| e.to_string())?;
        if !(w > 0.0 && h > 0.0) {
            return Err(format!("{id}: svg has an empty box {w}×{h}"));
        }
        let has_data = fig.attr("data-has-data").await.map_err(|e| e.to_string())?;
        if has_data.as_deref() != Some("true") {
            return Err(format!("{id}: has no data ({has_data:?})"));
        }
        let lines = fig
            .find_all(Locator::Css("path.line"))
            .await
            .map_err(|e| e.to_string())?;
        let dots = fig
            .find_all(Locator::Css("circle.dot"))
            .await
            .map_err(|e| e.to_string())?;
        if lines.is_empty() && dots.is_empty() {
            return Err(format!("{id}: no line and no dot drawn"));
        }
        for l in &lines {
            let d = l
                .attr("d")
                .await
                .map_err(|e| e.to_string())?
                .unwrap_or_default();
            if !d.starts_with('M') || !d.contains('L') {
                return Err(format!("{id}: path data {d:?}"));
            }
        }
        // The browser's own geometry: the SVG bounding box of every line and dot.
        let boxes = client
            .execute(
                "const f = document.getElementById(arguments[0]);\
                 return Array.from(f.querySelectorAll('path.line, circle.dot'))\
                   .map(e => { const b = e.getBBox(); return [b.width, b.height]; });",
                vec![json!(id)],
            )
            .await
            .map_err(|e| e.to_string())?;
        let boxes = boxes.as_array().cloned().unwrap_or_default();
        if boxes.is_empty() {
            return Err(format!("{id}: no rendered elements"));
        }
        for b in boxes {
            let w = b[0].as_f64().unwrap_or(0.0);
            let h = b[1].as_f64().unwrap_or(0.0);
            if w <= 0.0 && h <= 0.0 {
                return Err(format!("{id}: an element rendered with an empty box"));
            }
        }
    }
    // The best eval is marked.
    let marker = client
        .find(Locator::Css("#plot-eval g.marker text"))
        .await
        .map_err(|e| e.to_string())?;
    let text = marker.text().await.map_err(|e| e.to_string())?;
    if !text.starts_with("best 0.55") {
        return Err(format!("best marker text {text:?}"));
    }
    Ok(())
}
