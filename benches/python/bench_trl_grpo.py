# One GRPO step with TRL's GRPOTrainer, timed per phase, matching `runner bench grpo`:
# SmolLM2-135M-Instruct (the same Q4_1 GGUF runner uses, dequantised to f32 by transformers),
# one prompt, 8 generations x 64 new tokens (min_new_tokens = max = 64: eos is suppressed, as
# runner disables stop tokens), LoRA r 16 / alpha 32 on q_proj,v_proj, per-device batch 8,
# f32 on CPU, beta 0 (no reference model), num_iterations 1, loss_type grpo, fixed random
# rewards, TRL's default optimizer (AdamW, lr 1e-6, max_grad_norm 1.0).
# Usage: OMP_NUM_THREADS=2 python benches/python/bench_trl_grpo.py [--steps 3] [--threads 2]
import argparse, json, os, random, sys, time, tempfile, warnings

warnings.filterwarnings("ignore")
ap = argparse.ArgumentParser()
ap.add_argument("--steps", type=int, default=3, help="measured steps after one warm-up step")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--rollouts", type=int, default=8)
ap.add_argument("--new-tokens", type=int, default=64)
ap.add_argument("--prompt", default="Write a short story about a robot who learns to paint.")
a = ap.parse_args()

import torch
torch.set_num_threads(a.threads)
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
import trl
from trl import GRPOConfig, GRPOTrainer

d = os.path.expanduser("~/.cache/runner/models/smollm2-135m-instruct")
f = "SmolLM2-135M-Instruct.Q4_1.gguf"
tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32)
# The weights are dequantised to f32 on load; drop the GGUF marker so Trainer accepts the model.
model.hf_quantizer = None
model.is_quantized = False
if hasattr(model.config, "quantization_config"):
    del model.config.quantization_config

rng = random.Random(0)
def reward(completions, **kw):  # fixed random rewards: the reward function costs nothing
    return [rng.random() for _ in completions]

ds = Dataset.from_list([{"prompt": [{"role": "user", "content": a.prompt}]}])
out = tempfile.mkdtemp(prefix="trl_grpo_bench_")
cfg = GRPOConfig(
    output_dir=out, use_cpu=True, bf16=False, fp16=False, seed=0,
    per_device_train_batch_size=a.rollouts, num_generations=a.rollouts,
    gradient_accumulation_steps=1, max_steps=a.steps + 1,
    max_completion_length=a.new_tokens, generation_kwargs={"min_new_tokens": a.new_tokens},
    temperature=1.0, top_p=1.0, beta=0.0, num_iterations=1, loss_type="grpo",
    learning_rate=1e-6, logging_steps=1, report_to="none", save_strategy="no",
    gradient_checkpointing=False,  # TRL 1.x defaults to True; runner recomputes nothing either
    dataloader_num_workers=0, disable_tqdm=True,
)
trainer = GRPOTrainer(
    model=model, processing_class=tok, reward_funcs=reward, args=cfg, train_dataset=ds,
    peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                           task_type="CAUSAL_LM"),
)

cur = {}
def timed(obj, name, key):
    orig = getattr(obj, name)
    def w(*args, **kw):
        t = time.perf_counter()
        r = orig(*args, **kw)
        cur[key] = cur.get(key, 0.0) + time.perf_counter() - t
        return r
    setattr(obj, name, w)
timed(trainer, "_generate", "generation_s")
timed(trainer, "compute_loss", "forward_s")
timed(trainer.accelerator, "backward", "backward_s")
timed(trainer, "_clip_grad_norm", "clip_s")

steps, lens = [], []
class Clock(TrainerCallback):
    def on_step_begin(self, args, state, control, **kw):
        cur.clear(); cur["t0"] = time.perf_counter()
    def on_pre_optimizer_step(self, args, state, control, **kw):
        cur["t_opt"] = time.perf_counter()
    def on_step_end(self, args, state, control, **kw):
        t1 = time.perf_counter()
        ph = {k: cur.get(k, 0.0) for k in ("generation_s", "forward_s", "backward_s")}
        # gradient clipping (before the hook) + optimizer.step + scheduler/zero_grad
        ph["optimizer_s"] = t1 - cur["t_opt"] + cur.get("clip_s", 0.0)
        ph["total_s"] = t1 - cur["t0"]
        ph["other_s"] = ph["total_s"] - sum(ph[k] for k in ("generation_s", "forward_s", "backward_s", "optimizer_s"))
        steps.append(ph)
    def on_log(self, args, state, control, logs=None, **kw):
        if logs and "completions/mean_length" in logs:
            lens.append(logs["completions/mean_length"])
trainer.add_callback(Clock())
trainer.train()

warm, meas = steps[0], steps[1:]
med = {k: sorted(s[k] for s in meas)[len(meas) // 2] for k in warm}
print(json.dumps({"bench": "trl_grpo", "trl": trl.__version__, "torch": torch.__version__,
                  "threads": torch.get_num_threads(), "rollouts": a.rollouts, "new_tokens": a.new_tokens,
                  "completion_mean_length": lens, "warmup": warm, "steps": meas, "median": med}))
