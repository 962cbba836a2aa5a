//! Experiment specs: the typed structs (`types`), resolution (`resolve`: defaults, `extends`,
//! env, `--set`), and validation (`validate`: JSON Schema + semantic `rules`, located with
//! `locate`, did-you-mean from `suggest`).

pub mod locate;
pub mod resolve;
pub mod rules;
pub mod suggest;
pub mod types;
pub mod validate;

pub use types::*;
