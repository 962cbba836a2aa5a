"""HF transformers `generate` decode throughput, measured like `runner bench decode`: a group of
BATCH rollouts of one chat-templated prompt, exactly NEW tokens each (EOS suppressed),
multinomial sampling at temperature 1 (no top-k/top-p). Prefill is timed by a run with one new
token; decode tok/s = batch * (NEW - 1) / (t_full - t_prefill). Median of REPS runs. JSON lines.

usage: python3 hf_generate.py MODEL_DIR [REPS]
"""
import json
import statistics
import sys
import time

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

model_dir = sys.argv[1]
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
NEW = 128
PROMPT = "Write a short story about a robot who learns to paint."
tok = AutoTokenizer.from_pretrained(model_dir)
text = tok.apply_chat_template(
    [{"role": "user", "content": PROMPT}], tokenize=False, add_generation_prompt=True
)
ids = tok(text, return_tensors="pt").input_ids.cuda()

for dtype in (torch.float32, torch.bfloat16):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).cuda().eval()
    for batch in (8, 1):
        inp = ids.repeat(batch, 1)

        def run(n):
            torch.cuda.synchronize()
            t = time.perf_counter()
            with torch.no_grad():
                out = model.generate(
                    inp, attention_mask=torch.ones_like(inp), do_sample=True,
                    temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=n,
                    min_new_tokens=n, pad_token_id=0,
                )
            torch.cuda.synchronize()
            assert out.shape[1] == inp.shape[1] + n
            return time.perf_counter() - t

        run(4)  # warm-up
        pre = statistics.median(run(1) for _ in range(reps))
        full = statistics.median(run(NEW) for _ in range(reps))
        dec = max(full - pre, 1e-9)
        print(json.dumps({
            "bench": "hf_generate", "transformers": transformers.__version__,
            "torch": torch.__version__, "gpu": torch.cuda.get_device_name(),
            "dtype": str(dtype).replace("torch.", ""), "batch": batch,
            "prompt_tokens": ids.shape[1], "new_tokens": NEW,
            "prefill_s": pre, "decode_s": dec,
            "decode_tok_s": batch * (NEW - 1) / dec,
            "ms_per_step": dec / (NEW - 1) * 1e3,
            "total_tok_s": batch * NEW / full,
        }), flush=True)
    del model
    torch.cuda.empty_cache()
