//! The optimizer (AdamW with HF/torch semantics, or plain SGD), gradient-norm clipping and
//! gradient accumulation over candle [`Var`]s.
//!
//! AdamW is torch's `AdamW` (what HF's `adamw_torch` uses), per parameter with gradient `g`:
//! `p ← p·(1 − lr·wd)` (decoupled decay), `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`,
//! `p ← p − lr · m̂ / (sqrt(v̂) + ε)` with `m̂ = m/(1−β1ᵗ)`, `v̂ = v/(1−β2ᵗ)`, `t` the
//! parameter's own step count. A parameter without a gradient in a step is skipped, as torch
//! skips parameters whose `.grad` is `None`. The moments are kept in f32 (f64 for f64 vars).
//!
//! SGD is torch's `SGD` without momentum: `p ← p − lr·(g + wd·p)`.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};

use crate::{Error, Result};

/// AdamW hyper-parameters (the learning rate is passed per step by the schedule).
#[derive(Clone, Debug)]
pub struct AdamWConfig {
    /// Base learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to sqrt(v̂).
    pub eps: f64,
    /// Decoupled weight decay (SGD: L2 added to the gradient, as torch does).
    pub weight_decay: f64,
}

impl AdamWConfig {
    /// The optimizer settings of a spec's `train` section.
    pub fn from_spec(train: &crate::spec::Train) -> AdamWConfig {
        AdamWConfig {
            lr: train.learning_rate,
            beta1: train.adam_beta1,
            beta2: train.adam_beta2,
            eps: train.adam_epsilon,
            weight_decay: train.weight_decay,
        }
    }
}

/// Which update rule the optimizer applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// AdamW (torch semantics).
    AdamW,
    /// SGD without momentum, with torch's coupled weight decay.
    Sgd,
}

/// Moments of one parameter.
struct Moments {
    m: Tensor,
    v: Tensor,
    steps: u64,
}

/// AdamW (or plain SGD, see [`AdamW::sgd`]) over a list of Vars.
pub struct AdamW {
    vars: Vec<Var>,
    cfg: AdamWConfig,
    algorithm: Algorithm,
    state: Vec<Moments>,
    step: u64,
}

/// The dtype optimizer state is kept in for a parameter of dtype `dt`.
fn state_dtype(dt: DType) -> DType {
    if dt == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

impl AdamW {
    /// An AdamW optimizer over `vars` with zeroed state.
    pub fn new(vars: Vec<Var>, cfg: AdamWConfig) -> Result<AdamW> {
        Self::with_algorithm(vars, cfg, Algorithm::AdamW)
    }

    /// A plain SGD optimizer over `vars` (betas and eps unused), behind the same interface so
    /// the trainer and its saved state need not care which one runs.
    pub fn sgd(vars: Vec<Var>, cfg: AdamWConfig) -> Result<AdamW> {
        Self::with_algorithm(vars, cfg, Algorithm::Sgd)
    }

    /// The optimizer a spec's `train.optim` names.
    pub fn from_spec(vars: Vec<Var>, train: &crate::spec::Train) -> Result<AdamW> {
        let cfg = AdamWConfig::from_spec(train);
        match train.optim {
            crate::spec::Optimizer::Adamw => Self::new(vars, cfg),
            crate::spec::Optimizer::Sgd => Self::sgd(vars, cfg),
        }
    }

    fn with_algorithm(vars: Vec<Var>, cfg: AdamWConfig, algorithm: Algorithm) -> Result<AdamW> {
        let ok = |x: f64| x.is_finite() && x >= 0.0;
        let valid = ok(cfg.lr)
            && ok(cfg.eps)
            && ok(cfg.weight_decay)
            && (0.0..1.0).contains(&cfg.beta1)
            && (0.0..1.0).contains(&cfg.beta2);
        if !valid {
            return Err(Error::Other(format!(
                "optimizer: invalid settings {cfg:?} (lr, eps, weight_decay ≥ 0; betas in [0, 1))"
            )));
        }
        let state = vars
            .iter()
            .map(|v| {
                let z = Tensor::zeros(v.shape(), state_dtype(v.dtype()), v.device())?;
                Ok(Moments {
                    m: z.clone(),
                    v: z,
                    steps: 0,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(AdamW {
            vars,
            cfg,
            algorithm,
            state,
            step: 0,
        })
    }

    /// The update rule in use.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The parameters this optimizer updates.
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// One update with learning rate `lr` (from the schedule). Vars absent from `grads` are
    /// left alone.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(Error::Other(format!(
                "optimizer: learning rate must be finite and ≥ 0, got {lr}"
            )));
        }
        let c = self.cfg.clone();
        for (var, st) in self.vars.iter().zip(self.state.iter_mut()) {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let sdt = state_dtype(var.dtype());
            let g = g.to_dtype(sdt)?;
            let p = var.as_tensor().detach().to_dtype(sdt)?;
            st.steps += 1;
            let new_p = match self.algorithm {
                Algorithm::Sgd => {
                    let g = if c.weight_decay != 0.0 {
                        (g + (&p * c.weight_decay)?)?
                    } else {
                        g
                    };
                    (p - (g * lr)?)?
                }
                Algorithm::AdamW => {
                    let p = if c.weight_decay != 0.0 {
                        (p * (1.0 - lr * c.weight_decay))?
                    } else {
                        p
                    };
                    st.m = ((&st.m * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
                    st.v = ((&st.v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
                    let t = st.steps as f64;
                    let bc1 = 1.0 - c.beta1.powf(t);
                    let bc2 = 1.0 - c.beta2.powf(t);
                    // torch: denom = sqrt(v)/sqrt(bc2) + eps; p -= (lr/bc1)·m/denom.
                    let denom = st.v.sqrt()?.affine(1.0 / bc2.sqrt(), c.eps)?;
                    (p - (st.m.div(&denom)? * (lr / bc1))?)?
                }
            };
            var.set(&new_p.to_dtype(var.dtype())?)?;
        }
        self.step += 1;
        Ok(())
    }

    /// Updates taken so far.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The state as named tensors: `m.{i}`, `v.{i}`, `steps.{i}` (the parameter's own count)
    /// and `step` (the optimizer's), counts as f64 scalars (exact below 2⁵³).
    pub fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::with_capacity(3 * self.state.len() + 1);
        out.push(("step".to_string(), count_tensor(self.step)?));
        for (i, st) in self.state.iter().enumerate() {
            out.push((format!("m.{i}"), st.m.clone()));
            out.push((format!("v.{i}"), st.v.clone()));
            out.push((format!("steps.{i}"), count_tensor(st.steps)?));
        }
        Ok(out)
    }

    /// Restore the state written by [`AdamW::state_tensors`] (moved to each Var's device).
    /// Every tensor must be present with the right shape; nothing changes on error.
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        let get = |k: &str| {
            tensors
                .get(k)
                .ok_or_else(|| Error::Other(format!("optimizer state lacks `{k}`")))
        };
        let step = read_count(get("step")?, "step")?;
        let mut state = Vec::with_capacity(self.vars.len());
        for (i, var) in self.vars.iter().enumerate() {
            let sdt = state_dtype(var.dtype());
            let moment = |k: String| -> Result<Tensor> {
                let t = get(&k)?;
                if t.dims() != var.dims() {
                    return Err(Error::Other(format!(
                        "optimizer state `{k}` has shape {:?}, the parameter {:?}",
                        t.dims(),
                        var.dims()
                    )));
                }
                Ok(t.to_device(var.device())?.to_dtype(sdt)?)
            };
            let m = moment(format!("m.{i}"))?;
            let v = moment(format!("v.{i}"))?;
            let k = format!("steps.{i}");
            let steps = read_count(get(&k)?, &k)?;
            state.push(Moments { m, v, steps });
        }
        let extra = tensors.keys().filter(|k| k.starts_with("m.")).count();
        if extra != self.vars.len() {
            return Err(Error::Other(format!(
                "optimizer state holds {extra} parameters, the model has {}",
                self.vars.len()
            )));
        }
        self.state = state;
        self.step = step;
        Ok(())
    }
}

fn count_tensor(n: u64) -> Result<Tensor> {
    Ok(Tensor::new(n as f64, &Device::Cpu)?)
}

fn read_count(t: &Tensor, name: &str) -> Result<u64> {
    let x = t
        .to_dtype(DType::F64)?
        .to_device(&Device::Cpu)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    match x.as_slice() {
        [n] if *n >= 0.0 && n.fract() == 0.0 && *n < 9.0e15 => Ok(*n as u64),
        _ => Err(Error::Other(format!(
            "optimizer state `{name}` is not a step count: {x:?}"
        ))),
    }
}

/// Global L2 norm of the gradients of `vars` (vars without a gradient count as 0).
pub fn grad_norm(grads: &GradStore, vars: &[Var]) -> Result<f64> {
    let mut sq = 0.0f64;
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            sq += g
                .to_dtype(DType::F64)?
                .sqr()?
                .sum_all()?
                .to_scalar::<f64>()?;
        }
    }
    Ok(sq.sqrt())
}

/// Scale grads so the global norm ≤ max_norm (torch clip_grad_norm_ semantics: multiply by
/// `max_norm / (norm + 1e-6)` when that is below 1); returns the norm before clipping. A
/// non-finite norm is returned as it is, with the gradients untouched, for the caller to stop on.
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[Var], max_norm: f64) -> Result<f64> {
    if !(max_norm.is_finite() && max_norm > 0.0) {
        return Err(Error::Other(format!(
            "max_grad_norm must be positive and finite, got {max_norm}"
        )));
    }
    let norm = grad_norm(grads, vars)?;
    if !norm.is_finite() {
        return Ok(norm);
    }
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for v in vars {
            if let Some(g) = grads.remove(v.as_tensor()) {
                grads.insert(v.as_tensor(), (g * coef)?);
            }
        }
    }
    Ok(norm)
}

/// Sum two GradStores (gradient accumulation over micro-batches). Only the gradients of
/// `vars` are kept, so the activations' gradients of each backward are freed.
pub fn accumulate(into: &mut Option<GradStore>, grads: GradStore, vars: &[Var]) -> Result<()> {
    let mut grads = grads;
    let acc = into.get_or_insert_with(GradStore::default);
    for v in vars {
        if let Some(g) = grads.remove(v.as_tensor()) {
            let g = g.detach();
            let sum = match acc.remove(v.as_tensor()) {
                Some(prev) => (prev + g)?,
                None => g,
            };
            acc.insert(v.as_tensor(), sum);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> AdamWConfig {
        AdamWConfig {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }

    fn vals(v: &Var) -> Vec<f64> {
        v.as_tensor()
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    /// Gradients of `0.5·p₀² + 3·p₁`: `[p₀, 3]`.
    fn grads(p: &Var) -> GradStore {
        let c = Tensor::new(&[0.0, 3.0], p.device())
            .unwrap()
            .to_dtype(p.dtype())
            .unwrap();
        let sel = Tensor::new(&[0.5, 0.0], p.device())
            .unwrap()
            .to_dtype(p.dtype())
            .unwrap();
        let loss = ((p.as_tensor().sqr().unwrap() * sel).unwrap() + (p.as_tensor() * c).unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        loss.backward().unwrap()
    }

    /// AdamW on `0.5·p₀² + 3·p₁` from p = (1, −2), lr 0.1, β (0.9, 0.999), ε 1e-8, wd 0.01.
    /// Step 1: decay p ← 0.999·p; m = 0.1·g, v = 0.001·g², bias-corrected m̂ = g, v̂ = g², so
    /// p ← 0.999·p − 0.1·g/(|g| + 1e-8): p₀ = 0.999 − 0.1/(1 + 1e-8) = 0.899000001,
    /// p₁ = −1.998 − 0.3/(3 + 1e-8) = −2.0979999996667.
    /// Step 2 (g = (0.899000001, 3)): p₀: decayed 0.898101000999, m = 0.09 + 0.0899000001 =
    /// 0.1799000001, v = 0.000999 + 0.001·0.899000001² = 0.0018072010018, m̂ = m/0.19, v̂ =
    /// v/0.001999, p₀ = 0.898101000999 − 0.1·m̂/(√v̂ + 1e-8) = 0.79851902819. p₁ keeps a
    /// constant gradient, so m̂ = 3, v̂ = 9 again: p₁ = 0.999·p₁ − 0.1·3/(3 + 1e-8).
    /// Step 3 continues the same recursion (values from the same formulas in Python).
    #[test]
    fn adamw_matches_torch_by_hand() {
        let p = Var::new(&[1.0f64, -2.0], &Device::Cpu).unwrap();
        let mut opt = AdamW::new(vec![p.clone()], cfg()).unwrap();
        let want = [
            [0.899000001, -2.0979999996666665],
            [0.7985190281887788, -2.1959019993336657],
            [0.6989111847156934, -2.2937060970009986],
        ];
        for w in want {
            let g = grads(&p);
            opt.step(&g, 0.1).unwrap();
            let got = vals(&p);
            for k in 0..2 {
                assert!((got[k] - w[k]).abs() < 1e-12, "{got:?} vs {w:?}");
            }
        }
        assert_eq!(opt.step_count(), 3);
    }

    /// SGD with torch's coupled decay: p ← p − lr·(g + wd·p):
    /// p₀ = 1 − 0.1·(1 + 0.01) = 0.899, p₁ = −2 − 0.1·(3 − 0.02) = −2.298.
    #[test]
    fn sgd_step_by_hand() {
        let p = Var::new(&[1.0f64, -2.0], &Device::Cpu).unwrap();
        let mut opt = AdamW::sgd(vec![p.clone()], cfg()).unwrap();
        opt.step(&grads(&p), 0.1).unwrap();
        let got = vals(&p);
        assert!((got[0] - 0.899).abs() < 1e-12 && (got[1] + 2.298).abs() < 1e-12);
    }

    /// Save after 2 steps, load into a fresh optimizer over a copy of the weights, and both
    /// continue bit-identically (f32 vars: f32 moments).
    #[test]
    fn state_round_trip_continues_identically() {
        let p = Var::new(&[1.0f32, -2.0], &Device::Cpu).unwrap();
        let mut opt = AdamW::new(vec![p.clone()], cfg()).unwrap();
        for _ in 0..2 {
            opt.step(&grads(&p), 0.05).unwrap();
        }
        let saved: HashMap<String, Tensor> = opt.state_tensors().unwrap().into_iter().collect();
        assert_eq!(saved["m.0"].dtype(), DType::F32);
        let q = Var::from_tensor(&p.as_tensor().copy().unwrap()).unwrap();
        let mut opt2 = AdamW::new(vec![q.clone()], cfg()).unwrap();
        opt2.load_state(&saved).unwrap();
        assert_eq!(opt2.step_count(), 2);
        for _ in 0..3 {
            opt.step(&grads(&p), 0.05).unwrap();
            opt2.step(&grads(&q), 0.05).unwrap();
        }
        assert_eq!(vals(&p), vals(&q));
        // Missing or misshapen state is an error and leaves the optimizer as it was.
        let mut bad = saved.clone();
        bad.remove("v.0");
        assert!(opt2.load_state(&bad).is_err());
        let mut bad = saved;
        bad.insert(
            "m.0".into(),
            Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
        );
        assert!(opt2.load_state(&bad).is_err());
        assert_eq!(opt2.step_count(), 5);
    }

    /// Gradients (3, 4): norm 5; clipping to 1 scales by 1/(5 + 1e-6), clipping to 10 does not.
    #[test]
    fn clip_and_accumulate() {
        let p = Var::new(&[0.0f64, 0.0], &Device::Cpu).unwrap();
        let g = || {
            (p.as_tensor() * Tensor::new(&[3.0f64, 4.0], &Device::Cpu).unwrap())
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap()
        };
        let vars = vec![p.clone()];
        let mut gs = g();
        assert!((grad_norm(&gs, &vars).unwrap() - 5.0).abs() < 1e-12);
        assert!((clip_grad_norm(&mut gs, &vars, 10.0).unwrap() - 5.0).abs() < 1e-12);
        assert!((grad_norm(&gs, &vars).unwrap() - 5.0).abs() < 1e-12);
        assert!((clip_grad_norm(&mut gs, &vars, 1.0).unwrap() - 5.0).abs() < 1e-12);
        let c: Vec<f64> = gs.get(p.as_tensor()).unwrap().to_vec1().unwrap();
        let s = 1.0 / (5.0 + 1e-6);
        assert!((c[0] - 3.0 * s).abs() < 1e-12 && (c[1] - 4.0 * s).abs() < 1e-12);
        // Accumulating two micro-batches sums them.
        let mut acc = None;
        accumulate(&mut acc, g(), &vars).unwrap();
        accumulate(&mut acc, g(), &vars).unwrap();
        let sum: Vec<f64> = acc.unwrap().get(p.as_tensor()).unwrap().to_vec1().unwrap();
        assert_eq!(sum, vec![6.0, 8.0]);
    }
}
