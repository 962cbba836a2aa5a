//! `runner export` (placeholder until its owner fills it in).

/// Arguments of `runner export`.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("runner export is being built in this session")
}
