//! The KV cache for decoding: per layer, preallocated `[b, kv_heads, capacity, head_dim]` buffers
//! written in place, so a decode step appends without copying the whole history.

use candle_core::{Result, Tensor};

/// One layer's keys and values.
#[derive(Debug, Clone)]
struct LayerKv {
    k: Tensor,
    v: Tensor,
}

/// Keys and values of every layer for a batch of sequences that all have the same length.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<Option<LayerKv>>,
    len: usize,
    capacity: usize,
}

impl KvCache {
    /// An empty cache for `n_layers` layers, preallocating room for `capacity` positions.
    pub fn new(n_layers: usize, capacity: usize) -> Self {
        KvCache {
            layers: vec![None; n_layers],
            len: 0,
            capacity: capacity.max(1),
        }
    }

    /// Positions stored so far (the offset of the next token).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The batch size, if anything is stored.
    pub fn batch(&self) -> Option<usize> {
        self.layers
            .iter()
            .flatten()
            .next()
            .and_then(|l| l.k.dims().first().copied())
    }

    /// Append `k`, `v` (`[b, kv_heads, t, head_dim]`) to layer `layer` and return views of all
    /// keys and values stored for it. The caller advances the length with [`KvCache::advance`]
    /// once every layer has appended.
    pub fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let t = k.dim(2)?;
        let needed = self.len + t;
        let slot = self
            .layers
            .get_mut(layer)
            .ok_or_else(|| candle_core::Error::Msg(format!("KV cache has no layer {layer}")))?;
        let cap = self.capacity.max(needed);
        match slot {
            None => {
                let (b, h, _, d) = k.dims4()?;
                let kb = Tensor::zeros((b, h, cap, d), k.dtype(), k.device())?;
                let vb = Tensor::zeros((b, h, cap, d), v.dtype(), v.device())?;
                *slot = Some(LayerKv { k: kb, v: vb });
            }
            Some(kv) if kv.k.dim(2)? < needed => {
                // Grow: double the capacity (amortised O(1) per appended position).
                let new_cap = (kv.k.dim(2)? * 2).max(needed);
                kv.k = grow(&kv.k, self.len, new_cap)?;
                kv.v = grow(&kv.v, self.len, new_cap)?;
            }
            Some(_) => {}
        }
        let kv = slot
            .as_mut()
            .ok_or_else(|| candle_core::Error::Msg("KV cache slot is empty".into()))?;
        kv.k.slice_set(&k.contiguous()?, 2, self.len)?;
        kv.v.slice_set(&v.contiguous()?, 2, self.len)?;
        Ok((kv.k.narrow(2, 0, needed)?, kv.v.narrow(2, 0, needed)?))
    }

    /// Record that `t` positions were appended to every layer.
    pub fn advance(&mut self, t: usize) {
        self.len += t;
        self.capacity = self.capacity.max(self.len);
    }

    /// A cache for `n` copies of this batch-1 cache (after one shared prefill), with room for
    /// `capacity` positions.
    pub fn broadcast(&self, n: usize, capacity: usize) -> Result<KvCache> {
        let capacity = capacity.max(self.len).max(1);
        let mut layers = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            layers.push(match l {
                None => None,
                Some(kv) => Some(LayerKv {
                    k: copy_rows(&kv.k, self.len, n, capacity)?,
                    v: copy_rows(&kv.v, self.len, n, capacity)?,
                }),
            });
        }
        Ok(KvCache {
            layers,
            len: self.len,
            capacity,
        })
    }

    /// Keep only the batch rows `rows` (e.g. the rollouts still running).
    pub fn select_rows(&mut self, rows: &[u32]) -> Result<()> {
        let Some(b) = self.batch() else {
            return Ok(());
        };
        if rows.len() == b {
            return Ok(());
        }
        let device = self
            .layers
            .iter()
            .flatten()
            .next()
            .map(|l| l.k.device().clone())
            .ok_or_else(|| candle_core::Error::Msg("KV cache is empty".into()))?;
        let idx = Tensor::new(rows, &device)?;
        for kv in self.layers.iter_mut().flatten() {
            kv.k = kv.k.index_select(&idx, 0)?;
            kv.v = kv.v.index_select(&idx, 0)?;
        }
        Ok(())
    }
}

/// A new buffer with `new_cap` positions holding the first `len` positions of `buf`.
fn grow(buf: &Tensor, len: usize, new_cap: usize) -> Result<Tensor> {
    let (b, h, _, d) = buf.dims4()?;
    let out = Tensor::zeros((b, h, new_cap, d), buf.dtype(), buf.device())?;
    if len > 0 {
        out.slice_set(&buf.narrow(2, 0, len)?.contiguous()?, 2, 0)?;
    }
    Ok(out)
}

/// `n` copies of row 0 of `buf` (first `len` positions) in a buffer of `capacity` positions.
fn copy_rows(buf: &Tensor, len: usize, n: usize, capacity: usize) -> Result<Tensor> {
    let (_, h, _, d) = buf.dims4()?;
    let out = Tensor::zeros((n, h, capacity, d), buf.dtype(), buf.device())?;
    if len > 0 {
        let src = buf
            .narrow(0, 0, 1)?
            .narrow(2, 0, len)?
            .broadcast_as((n, h, len, d))?
            .contiguous()?;
        out.slice_set(&src, 2, 0)?;
    }
    Ok(out)
}
