"""Load a runner-saved PEFT adapter with Python's `peft` and print token log-probs as JSON.

Usage: check_peft.py BASE_DIR ADAPTER_DIR TOKENS_JSON

BASE_DIR is an HF model directory (config.json + model.safetensors), ADAPTER_DIR a PEFT
adapter directory (adapter_config.json + adapter_model.safetensors), TOKENS_JSON a JSON list
of equal-length token-id rows. Prints {"base": [[...]], "adapter": [[...]]}: for each row,
log p(ids[t+1] | ids[..=t]) for t in 0..len-1, from the base model alone and with the
adapter, in f32 on the CPU. Used by tests/peft_python.rs.
"""
import json
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM


def token_logprobs(model, ids):
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()
    lsm = torch.log_softmax(logits[:, :-1, :], dim=-1)
    return lsm.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    base_dir, adapter_dir, tokens_json = sys.argv[1:]
    with open(tokens_json) as f:
        ids = torch.tensor(json.load(f), dtype=torch.long)
    torch.set_grad_enabled(False)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    base = token_logprobs(model, ids)
    peft_model = PeftModel.from_pretrained(model, adapter_dir).eval()
    adapted = token_logprobs(peft_model, ids)
    json.dump({"base": base.tolist(), "adapter": adapted.tolist()}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
