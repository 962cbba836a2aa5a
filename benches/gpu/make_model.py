"""Write a random-init model with the real SmolLM2-135M-Instruct shape (config.json from the
real model) plus its real tokenizer files into OUT, loadable by runner and transformers.

usage: python3 make_model.py SRC_DIR OUT_DIR   (SRC_DIR: config.json + tokenizer files)
"""
import shutil
import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM

src, out = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
cfg = LlamaConfig.from_pretrained(src)
model = LlamaForCausalLM(cfg).to(torch.float32)
model.save_pretrained(out, safe_serialization=True)
for f in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
    shutil.copy(f"{src}/{f}", f"{out}/{f}")
print(f"wrote {out}: {sum(p.numel() for p in model.parameters())} parameters")
