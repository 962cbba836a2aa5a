//! Linear layers: a frozen base weight (through `ops::frozen_linear`, which never computes the
//! weight gradient), an optional bias, and an optional LoRA adapter whose A/B are the trainable
//! `Var`s. Under full fine-tuning the base weight itself is a `Var`.

use candle_core::{DType, Device, Result, Tensor, Var};
use rand::Rng;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::engine::ops;

/// A LoRA adapter on one linear layer: `y += scale · B(A(dropout(x)))`, kept in f32.
#[derive(Debug, Clone)]
pub struct LoraAdapter {
    /// `[r, in]`, initialised as PEFT does (Kaiming-uniform with a = √5, i.e. U(±1/√in)).
    pub a: Var,
    /// `[out, r]`, initialised to zeros (the adapter starts as the identity).
    pub b: Var,
    /// `alpha / r`.
    pub scale: f64,
    /// Dropout probability on the adapter's input (training only).
    pub dropout: f64,
    /// Shared by every adapter of a model: off = the base model's forward (the KL reference
    /// without a second copy of the weights).
    pub enabled: Arc<AtomicBool>,
}

impl LoraAdapter {
    /// A fresh adapter for a layer `in → out`, drawn from `rng`.
    pub fn fresh(
        in_dim: usize,
        out_dim: usize,
        r: usize,
        alpha: f64,
        dropout: f64,
        rng: &mut impl Rng,
        device: &Device,
    ) -> Result<Self> {
        let bound = 1.0 / (in_dim as f64).sqrt();
        let a: Vec<f32> = (0..r * in_dim)
            .map(|_| rng.random_range(-bound..bound) as f32)
            .collect();
        let a = Tensor::from_vec(a, (r, in_dim), device)?;
        let b = Tensor::zeros((out_dim, r), DType::F32, device)?;
        Self::from_tensors(&a, &b, alpha, dropout)
    }

    /// An adapter from given `A: [r, in]` and `B: [out, r]` (e.g. loaded from PEFT files).
    pub fn from_tensors(a: &Tensor, b: &Tensor, alpha: f64, dropout: f64) -> Result<Self> {
        let (r, _) = a.dims2()?;
        let (_, r_b) = b.dims2()?;
        if r != r_b || r == 0 {
            candle_core::bail!("LoRA A has rank {r} but B has rank {r_b}")
        }
        Ok(LoraAdapter {
            a: Var::from_tensor(&a.to_dtype(DType::F32)?)?,
            b: Var::from_tensor(&b.to_dtype(DType::F32)?)?,
            scale: alpha / r as f64,
            dropout,
            enabled: Arc::new(AtomicBool::new(true)),
        })
    }

    /// The rank r.
    pub fn rank(&self) -> usize {
        self.a.dims()[0]
    }

    /// `scale · B A`, the update to merge into the base weight, `[out, in]` f32.
    pub fn delta(&self) -> Result<Tensor> {
        self.b.as_tensor().matmul(self.a.as_tensor())? * self.scale
    }

    /// The adapter's contribution for 2-D input `x: [n, in]`; `mask` is the dropout mask
    /// (already scaled by 1/(1-p)) when training.
    fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let mut x = x.to_dtype(DType::F32)?;
        if let Some(m) = mask {
            x = x.mul(m)?;
        }
        let h = x.matmul(&self.a.as_tensor().t()?)?;
        h.matmul(&self.b.as_tensor().t()?)? * self.scale
    }
}

/// A linear layer `y = x Wᵀ + b (+ LoRA)`, `W: [out, in]` as HF stores it.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Tensor,
    /// Set under full fine-tuning: the weight is trainable (and `weight` is its tensor).
    pub weight_var: Option<Var>,
    pub bias: Option<Tensor>,
    pub lora: Option<LoraAdapter>,
}

/// A source of dropout masks for the training forward.
pub trait DropoutMasks {
    /// A mask of `shape` with entries 0 (probability `p`) or `1/(1-p)`.
    fn mask(&self, shape: &[usize], p: f64, device: &Device) -> Result<Tensor>;
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Linear {
            weight,
            weight_var: None,
            bias,
            lora: None,
        }
    }

    /// `(out, in)`.
    pub fn dims(&self) -> Result<(usize, usize)> {
        self.weight.dims2()
    }

    /// Make the base weight (and bias) trainable.
    pub fn make_trainable(&mut self) -> Result<()> {
        let v = Var::from_tensor(&self.weight)?;
        self.weight = v.as_tensor().clone();
        self.weight_var = Some(v);
        Ok(())
    }

    /// Forward over `x: [.., in]`. `dropout` supplies masks when training.
    pub fn forward(&self, x: &Tensor, dropout: Option<&dyn DropoutMasks>) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let in_dim = *dims.last().unwrap_or(&0);
        let n = x.elem_count() / in_dim.max(1);
        let x2 = x.reshape((n, in_dim))?;
        let mut y = match &self.weight_var {
            Some(v) => x2.matmul(&v.as_tensor().t()?)?,
            None => ops::frozen_linear(&x2, &self.weight)?,
        };
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b)?;
        }
        if let Some(lora) = self
            .lora
            .as_ref()
            .filter(|l| l.enabled.load(Ordering::Relaxed))
        {
            let mask = match dropout {
                Some(d) if lora.dropout > 0.0 => {
                    Some(d.mask(&[n, in_dim], lora.dropout, x.device())?)
                }
                _ => None,
            };
            let h = lora.forward(&x2, mask.as_ref())?;
            let h = h.to_dtype(y.dtype())?;
            y = (y + h)?;
        }
        let mut out_dims = dims;
        if let Some(last) = out_dims.last_mut() {
            *last = y.dim(1)?;
        }
        y.reshape(out_dims)
    }

    /// The effective weight with the adapter merged in, in `dtype`.
    pub fn merged_weight(&self, dtype: DType) -> Result<Tensor> {
        match &self.lora {
            None => self.weight.to_dtype(dtype),
            Some(l) => (self.weight.to_dtype(DType::F32)? + l.delta()?)?.to_dtype(dtype),
        }
    }
}
