# Side-by-side: transformers generate (batch B, T new tokens) and LoRA q/v fwd+bwd on 8x192, f32 CPU.
import sys, time, torch, os
from transformers import AutoModelForCausalLM, AutoTokenizer
d = os.path.expanduser("~/.cache/runner/models/smollm2-135m-instruct")
f = "SmolLM2-135M-Instruct.Q4_1.gguf"
tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32).eval()
print("threads", torch.get_num_threads(), "torch", torch.__version__, flush=True)
msgs = [{"role": "user", "content": "What is the capital of France?"}]
ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt")
ids = ids["input_ids"] if not torch.is_tensor(ids) else ids
with torch.no_grad():
    out = model.generate(ids, max_new_tokens=12, do_sample=False)
print("answer:", repr(tok.decode(out[0, ids.shape[1]:])), flush=True)
msgs = [{"role": "user", "content": "Write a short story about a robot who learns to paint."}]
ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt")
ids = ids["input_ids"] if not torch.is_tensor(ids) else ids
for B in [8, 1]:
    x = ids.repeat(B, 1)
    with torch.no_grad():
        model.generate(x, max_new_tokens=4, min_new_tokens=4, do_sample=True)
        t = time.time(); model.generate(x, max_new_tokens=1, min_new_tokens=1, do_sample=True); pre = time.time() - t
        t = time.time(); model.generate(x, max_new_tokens=128, min_new_tokens=128, do_sample=True); tot = time.time() - t
    print(f"hf generate batch {B}: prefill {pre:.3f}s total {tot:.2f}s decode {B*127/(tot-pre):.1f} tok/s end-to-end {B*128/tot:.1f} tok/s", flush=True)
from peft import LoraConfig, get_peft_model
pm = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]))
pm.train()
g = torch.Generator().manual_seed(0)
times = []
for step in range(4):
    inp = torch.randint(0, 49152, (8, 192), generator=g)
    mask = torch.ones(8, 191); mask[:, :47] = 0
    t = time.time()
    logits = pm(input_ids=inp).logits[:, :-1].float()
    lp = torch.log_softmax(logits, -1).gather(-1, inp[:, 1:, None]).squeeze(-1)
    loss = -(lp * mask).sum() / mask.sum()
    loss.backward()
    dt = time.time() - t
    if step > 0: times.append(dt)
times.sort()
print(f"torch LoRA q/v r16 fwd+bwd 8x192: median {times[1]:.2f}s/step ({8*192/times[1]:.0f} tok/s) steps {times}", flush=True)
