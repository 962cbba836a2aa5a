//! `runner sweep --executor slurm` against a real Slurm: tests/slurm/start.sh starts munged,
//! slurmctld and slurmd (Debian's slurm-wlm and munge) for this one machine in a temp
//! directory, the test submits a two-point sweep on a tiny model as a job array, waits for it
//! and checks both run directories completed and `runner sweep status` says so. Skips (with a
//! message) when the Slurm binaries are absent or the test does not run as root.

mod common;
mod sweep_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use sweep_support::{csv_rows, project, text};

fn find(bin: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin"])
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.is_file());
    found
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Stops the private cluster however the test ends.
struct Cluster {
    dir: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slurm/stop.sh");
        let _ = Command::new("bash").arg(script).arg(&self.dir).status();
    }
}

fn runner(dir: &Path, conf: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_runner"))
        .current_dir(dir)
        .env("SLURM_CONF", conf)
        .args(args)
        .output()
        .expect("runner starts")
}

#[test]
fn sweep_runs_as_a_slurm_job_array() {
    let missing: Vec<&str> = ["sbatch", "squeue", "sinfo", "slurmctld", "slurmd", "munged"]
        .into_iter()
        .filter(|b| find(b).is_none())
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "skipping the Slurm test: {} not installed (apt-get install -y slurm-wlm munge)",
            missing.join(", ")
        );
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping the Slurm test: slurmd must run as root to start jobs");
        return;
    }
    let t0 = Instant::now();
    let d = tempfile::tempdir().unwrap();
    let spec = project(
        d.path(),
        "sweep:\n  seeds: [1, 2]\nresources: {cpus: 1, memory: 500M, time: \"00:10:00\"}\n",
    );
    let cluster_dir = d.path().join("cluster");
    let start = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slurm/start.sh"))
        .arg(&cluster_dir)
        .arg(free_port().to_string())
        .arg(free_port().to_string())
        .output()
        .unwrap();
    let _cluster = Cluster {
        dir: cluster_dir.clone(),
    };
    assert!(start.status.success(), "start.sh failed\n{}", text(&start));
    let conf = cluster_dir.join("slurm.conf");
    let spec_arg = spec.to_str().unwrap();

    // The script: one array task per point, resources from the spec.
    let dry = runner(
        d.path(),
        &conf,
        &["sweep", spec_arg, "--executor", "slurm", "--dry-run"],
    );
    assert!(dry.status.success(), "{}", text(&dry));
    let script_path = d.path().join("runs/tinysweep/slurm/sweep.sbatch");
    let script = std::fs::read_to_string(&script_path).unwrap();
    for line in [
        "#SBATCH --array=0-1",
        "#SBATCH --cpus-per-task=1",
        "#SBATCH --mem=500M",
        "#SBATCH --time=00:10:00",
        "--point tinysweep@seed=1",
        "--point tinysweep@seed=2",
    ] {
        assert!(script.contains(line), "{line:?} not in\n{script}");
    }
    assert!(!d.path().join("runs/tinysweep/slurm/job.json").exists());

    let sub = runner(d.path(), &conf, &["sweep", spec_arg, "--executor", "slurm"]);
    assert!(sub.status.success(), "{}", text(&sub));
    let job: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(d.path().join("runs/tinysweep/slurm/job.json")).unwrap(),
    )
    .unwrap();
    let job_id = job["job_id"].as_str().unwrap().to_string();
    assert!(text(&sub).contains(&format!("submitted job array {job_id}")));

    // Wait for both points to end (the first run builds nothing; a tiny model runs in seconds).
    let deadline = Instant::now() + Duration::from_secs(300);
    let records = loop {
        let st = runner(
            d.path(),
            &conf,
            &["sweep", "status", "runs/tinysweep", "--json"],
        );
        let recs: Vec<serde_json::Value> =
            serde_json::from_slice(&st.stdout).unwrap_or_else(|e| panic!("{e}\n{}", text(&st)));
        let ended = recs.iter().all(|r| {
            matches!(
                r["status"].as_str(),
                Some("completed" | "failed" | "stopped" | "interrupted")
            )
        });
        if ended {
            break recs;
        }
        assert!(
            Instant::now() < deadline,
            "the sweep did not end in time: {recs:#?}\nlogs: {:?}",
            std::fs::read_dir(d.path().join("runs/tinysweep/slurm")).map(|r| r
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .collect::<Vec<_>>())
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    let logs = || -> String {
        let mut s = String::new();
        for e in std::fs::read_dir(d.path().join("runs/tinysweep/slurm")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "out") {
                s.push_str(&format!(
                    "--- {}\n{}",
                    p.display(),
                    std::fs::read_to_string(&p).unwrap_or_default()
                ));
            }
        }
        s
    };
    for r in &records {
        assert_eq!(r["status"], "completed", "{r:#}\n{}", logs());
        assert_eq!(r["slurm"], "COMPLETED", "{r:#}");
        let run = Path::new(r["run_dir"].as_str().unwrap());
        assert!(run.join("state.json").is_file());
        let events = std::fs::read_to_string(run.join("events.jsonl")).unwrap();
        assert!(events.contains("run_finished"), "{events}");
    }
    // One log per array task, and status refreshed the tables.
    assert!(std::fs::read_dir(d.path().join("runs/tinysweep/slurm"))
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy() == format!("{job_id}_1.out")));
    let rows = csv_rows(&d.path().join("runs/tinysweep/sweep.csv"));
    assert!(rows.iter().all(|r| r["status"] == "completed"), "{rows:?}");
    let st = runner(d.path(), &conf, &["sweep", "status", spec_arg]);
    let out = text(&st);
    assert!(st.status.success(), "{out}");
    assert!(out.contains(&format!("slurm job {job_id}")), "{out}");
    assert!(out.contains("2 of 2 points ended"), "{out}");
    eprintln!("slurm test took {:.1}s", t0.elapsed().as_secs_f64());
}
