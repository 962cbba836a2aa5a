//! Device choice and the CPU runtime settings that decide speed: threads and the allocator.
//!
//! Call [`tune_allocator`] and [`set_threads`] once, early in `main`, before any tensor work
//! (and before other threads start: `set_threads` writes an environment variable).

use candle_core::Device;

use crate::{Error, Result};

/// The device for `kind`: `cpu`, `cuda` (GPU 0) or `cuda:N`, or `auto` (CUDA when the runner
/// is built with the `cuda` feature and a GPU is present, else CPU).
pub fn device(kind: &str) -> Result<Device> {
    match kind.trim() {
        "cpu" => Ok(Device::Cpu),
        "cuda" => cuda(0),
        // candle's `cuda_is_available` only says whether the feature is on, so try GPU 0.
        "auto" => Ok(cuda(0).unwrap_or(Device::Cpu)),
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(ordinal)) => cuda(ordinal),
            _ => Err(Error::Other(format!(
                "unknown device {other:?}: expected cpu, cuda, cuda:N or auto"
            ))),
        },
    }
}

#[cfg(feature = "cuda")]
fn cuda(ordinal: usize) -> Result<Device> {
    // cudarc loads the driver and cuBLAS/cuRAND libraries on first use and panics when one is
    // missing (a CUDA build on a machine without a GPU): make that an error like any other.
    match std::panic::catch_unwind(|| Device::new_cuda(ordinal)) {
        Ok(r) => r.map_err(|e| Error::Other(format!("CUDA device {ordinal}: {e}"))),
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown reason");
            Err(Error::Other(format!(
                "CUDA device {ordinal}: the CUDA libraries could not be loaded: {why}"
            )))
        }
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda(ordinal: usize) -> Result<Device> {
    Err(Error::Other(format!(
        "CUDA device {ordinal} requested, but this runner was built without CUDA support; \
         rebuild with `cargo build --release --features cuda` (or use --device cpu)"
    )))
}

/// Sets the number of CPU threads for tensor work; `None` keeps the defaults (candle: the
/// physical cores; rayon: the logical CPUs).
///
/// candle's CPU backend has two thread counts: its gemm matmuls read `RAYON_NUM_THREADS` on
/// every call to pick their parallelism, while its other parallel loops (and the fused ops in
/// [`super::ops`]) run on rayon's global pool, whose size is fixed the first time it is used.
/// So this sets the variable *and* builds the global pool; if the pool already exists (some
/// tensor work ran before), only the matmul setting changes. On a small, busy machine fewer
/// threads can be faster (batch-1 decode beat two threads with one here): measure.
pub fn set_threads(n: Option<usize>) {
    let Some(n) = n.filter(|&n| n > 0) else {
        return;
    };
    // Edition 2021: `set_var` is safe to call, but racy against concurrent `getenv` in other
    // threads; hence "call early" above.
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    // An error only means the pool already exists; the matmul setting above still applies.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
}

/// The number of threads candle's matmuls will use.
pub fn threads() -> usize {
    candle_core::utils::get_num_threads()
}

/// Keeps glibc's allocator from returning large tensor buffers to the kernel.
///
/// By default glibc serves every allocation above 128 KiB–32 MiB (the mmap threshold) with a
/// fresh `mmap` and gives it back with `munmap` on free. A training step allocates and frees
/// thousands of multi-megabyte tensors, so every one of them is mapped, zero-filled page by
/// page on first touch (millions of page faults) and unmapped again. With `M_MMAP_MAX = 0` all
/// allocations come from the heap and freed blocks are reused; a high `M_TRIM_THRESHOLD` stops
/// the heap from being shrunk after each step only to grow again. The prototype measured
/// training 1.7× faster with these (jemalloc was slower). The cost: memory freed after a peak
/// stays with the process (up to ~2 GiB of free heap top) instead of going back to the OS.
/// Equivalent to `GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=...`.
/// A no-op on other platforms.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it takes glibc's own locks and is
    // safe to call at any time from any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_kinds() {
        assert!(device("cpu").is_ok_and(|d| d.is_cpu()));
        assert!(device("auto").is_ok());
        let err = device("tpu").unwrap_err().to_string();
        assert!(err.contains("cpu, cuda"), "{err}");
        assert!(device("cuda:x").is_err());
        if !cfg!(feature = "cuda") {
            let err = device("cuda").unwrap_err().to_string();
            assert!(err.contains("--features cuda"), "{err}");
        }
    }

    #[test]
    fn allocator_tuning_keeps_allocations_working() {
        tune_allocator();
        let v = vec![1u8; 64 << 20];
        assert_eq!(v.iter().map(|&b| b as usize).sum::<usize>(), 64 << 20);
    }
}
