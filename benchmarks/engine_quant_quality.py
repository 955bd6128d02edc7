"""How far each faster mode's next-token distribution is from the float32 reference.

    .venv/bin/python benchmarks/engine_quant_quality.py [--tokens 64]

The float32 engine (which equals transformers token for token) writes a greedy answer to each of
8 chat prompts; then every mode reads the same texts (teacher forcing) and is scored at every
position against float32's distribution: top-1 agreement (does it pick the same next token?) and
the mean KL divergence KL(fp32 || mode) in nats. Modes: bfloat16, ``--quantize int8``,
``--quantize int4`` (each twice: the prompt path, whose quantized linears widen the weights to
bfloat16, and the decode-step path, whose CPU kernel quantizes activations to int8 per block of
32), and llama.cpp (same GGUF: Q4_1 weights, its own int8 activations) when
llama-cpp-python is installed, in a child process (it cannot share one with torch). Writes
benchmarks/results/engine_quant_quality.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from graphwright.engine.llm import LocalEngine
from graphwright.engine.quant import Int4Linear, Int8Linear
from graphwright.engine.sampling import SamplingParams
from graphwright.engine.weights import resolve_model

RESULTS = Path(__file__).parent / "results" / "engine_quant_quality.json"
PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about autumn.",
    "Explain photosynthesis simply.",
    "List three uses of copper.",
    "Who wrote Hamlet?",
    "Give me a tip for learning Python.",
    "What is 12 times 7?",
    "Describe a cat in two sentences.",
]

_LLAMA_CPP_CHILD = """
import json, sys
import numpy as np
from llama_cpp import Llama
path, seqs, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
llm = Llama(model_path=path, n_ctx=2048, logits_all=True, verbose=False)
logits = []
for ids in seqs:
    llm.reset()
    llm.eval(ids)
    logits.append(np.array(llm.scores[: len(ids)], dtype=np.float32))
np.savez(out, *logits)
"""


def llama_cpp_logits(seqs: list[list[int]]) -> list[torch.Tensor] | None:
    if importlib.util.find_spec("llama_cpp") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "logits.npz"
        args = [str(resolve_model("smollm2")), json.dumps(seqs), str(out)]
        done = subprocess.run([sys.executable, "-c", _LLAMA_CPP_CHILD, *args], capture_output=True, text=True)
        if done.returncode != 0:
            print(f"llama.cpp failed ({done.returncode}): {done.stderr[-500:]}")
            return None
        with np.load(out) as npz:
            return [torch.from_numpy(npz[f"arr_{i}"]) for i in range(len(seqs))]


@torch.inference_mode()
def engine_logits(engine: LocalEngine, seqs: list[list[int]]) -> list[torch.Tensor]:
    return [engine.model(torch.tensor([s]), torch.arange(len(s))[None])[0].float() for s in seqs]


def score(ref: list[torch.Tensor], got: list[torch.Tensor], starts: list[int]) -> dict[str, float]:
    """Over the answer positions only (where the reference chose the next token)."""
    agree = total = 0
    kl = 0.0
    for r, g, start in zip(ref, got, starts, strict=True):
        r, g = r[start - 1 : -1], g[start - 1 : -1]
        agree += int((r.argmax(-1) == g.argmax(-1)).sum())
        total += r.shape[0]
        lr, lg = r.log_softmax(-1), g.log_softmax(-1)
        kl += float((lr.exp() * (lr - lg)).sum())
    return {"top1_agreement": agree / total, "mean_kl_nats": kl / total, "positions": total}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=64, help="answer tokens per prompt")
    args = ap.parse_args()

    ref_engine = LocalEngine.load("smollm2", dtype="float32")
    starts, seqs = [], []
    for p in PROMPTS:
        ids = ref_engine.encode_chat([{"role": "user", "content": p}])
        out = ref_engine.generate(ids, SamplingParams(temperature=0, max_tokens=args.tokens))
        starts.append(len(ids))
        seqs.append(ids + out.outputs[0].token_ids)
    ref = engine_logits(ref_engine, seqs)
    ref_engine.close()

    rows: dict[str, dict[str, Any]] = {}
    for name, options in (
        ("engine bf16", {"dtype": "bfloat16"}),
        ("engine int8", {"quantize": "int8"}),
        ("engine int4", {"quantize": "int4"}),
    ):
        eng = LocalEngine.load("smollm2", **options)
        rows[name] = score(ref, engine_logits(eng, seqs), starts)
        linears = [m for m in eng.model.modules() if isinstance(m, (Int4Linear, Int8Linear))]
        if linears:
            # The same texts through the decode-step path (activations int8 per block of 32 in
            # the CPU kernel), which a generated token takes: every row, as if one at a time.
            for m in linears:
                m.prefill_rows = 1 << 30
            rows[name + " decode"] = score(ref, engine_logits(eng, seqs), starts)
        eng.close()
    llama = llama_cpp_logits(seqs)
    if llama is not None:
        rows["llama.cpp (Q4_1)"] = score(ref, llama, starts)

    print(f"\nSmolLM2-135M, {len(PROMPTS)} chat prompts x {args.tokens} answer tokens, against float32")
    print(f"{'':24} {'top-1 agreement':>16} {'mean KL (nats)':>15}")
    for name, r in rows.items():
        print(f"{name:24} {r['top1_agreement']:16.4f} {r['mean_kl_nats']:15.5f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"config": vars(args), "modes": rows}, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
