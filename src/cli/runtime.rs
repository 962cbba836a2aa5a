//! Where tensors live and how they are computed: the `--dtype`, `--device` and `--threads`
//! flags shared by every command that runs a model.

use crate::engine::device;

/// Floating-point type of the weights and activations.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtypeArg {
    F32,
    Bf16,
}

impl DtypeArg {
    pub fn dtype(self) -> candle_core::DType {
        match self {
            DtypeArg::F32 => candle_core::DType::F32,
            DtypeArg::Bf16 => candle_core::DType::BF16,
        }
    }
}

/// Dtype, device and CPU threads.
#[derive(clap::Args, Debug, Clone)]
pub struct Runtime {
    #[arg(long, value_enum, default_value_t = DtypeArg::F32)]
    pub dtype: DtypeArg,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// CPU threads for tensor work (default: candle's choice).
    #[arg(long)]
    pub threads: Option<usize>,
}

impl Runtime {
    /// Applies the thread count (before any tensor work) and opens the device.
    pub fn setup(&self) -> anyhow::Result<(candle_core::DType, candle_core::Device)> {
        device::set_threads(self.threads);
        Ok((self.dtype.dtype(), device::device(&self.device)?))
    }
}
