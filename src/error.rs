//! The library's error type. The CLI wraps it in `anyhow` at the edge.

use std::path::PathBuf;

/// Everything the library can fail with. Variants carry enough context to print a useful
/// message on their own (the path, the field, what was expected).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Model files that are missing, malformed or of an unsupported architecture.
    #[error("model: {0}")]
    Model(String),
    /// Fetching, verifying or caching a downloadable asset (model weights, data).
    #[error("asset: {0}")]
    Asset(String),
    /// A spec that cannot be loaded, resolved or compiled.
    #[error("spec: {0}")]
    Spec(String),
    /// A run directory problem: lock held, stale plan, corrupt state.
    #[error("run: {0}")]
    Run(String),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Yaml(#[from] serde_yaml::Error),
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// An I/O error tagged with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
