"""The decode step's attention in C++ (``cpu_kernels/attention.cpp``) against the gather + SDPA
it replaces, the same model, A/B.

    .venv/bin/python benchmarks/engine_attention_ab.py [--quantize int8] [--rounds 6] [--context 0 512]

Two engines of one model, one with ``Transformer.set_cpu_attention(False)``, both compiled unless
``--no-compile`` (each with a ``forward`` code object of its own, see engine_compile_options.py).
The scheduler is stepped on this thread and the two alternate round by round, the order flipped
each round. ``--context`` pads the prompt with that many extra tokens (attention's share of a
step grows with the context). Reports ms per batch-1 decode step. Writes
benchmarks/results/engine_attention_ab.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from engine_compile_options import _own_forward
from engine_kernel_ab import PROMPT, alternate

from graphwright.engine.compiled import CompiledDecode
from graphwright.engine.llm import LocalEngine

RESULTS = Path(__file__).parent / "results" / "engine_attention_ab.json"
NAMES = {True: "C++ decode attention", False: "gather + SDPA"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quantize", choices=["none", "int8", "int4"], default="int8")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--context", type=int, nargs="+", default=[0, 512], help="extra prompt tokens")
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()

    engines: dict[str, LocalEngine] = {}
    for i, cpp in enumerate((True, False)):
        eng = LocalEngine.load("smollm2", quantize=args.quantize, prefix_caching=False)
        eng.model.set_cpu_attention(cpp)
        if not args.no_compile:
            eng.model.__class__ = _own_forward(i)
            kv = eng.scheduler.kv
            eng.scheduler.decode_step = CompiledDecode(eng.model, kv.k, kv.v, kv.scratch_slot)
        engines[NAMES[cpp]] = eng
    first = engines[NAMES[True]]
    chat = first.encode_chat([{"role": "user", "content": PROMPT}])
    filler = first.tokenizer.encode(" the sea and the light" * 400)
    mode = f"{args.quantize}{'' if args.no_compile else ' compiled'}"
    results = []
    for extra in args.context:
        prompt = filler[:extra] + chat
        samples = alternate(engines, prompt, args.rounds, args.tokens)
        a, b = samples[NAMES[True]], samples[NAMES[False]]
        speedup = statistics.median(y / x for x, y in zip(a, b, strict=True))
        print(f"\nSmolLM2-135M {mode}, batch-1 decode, context {len(prompt)}-{len(prompt) + args.tokens}, "
              f"{args.tokens} tokens x {args.rounds} rounds")
        print(f"{'attention':22} {'median ms/step':>15} {'tok/s':>7}   all rounds (ms)")
        for k, s in samples.items():
            med = statistics.median(s)
            print(f"{k:22} {med:15.2f} {1e3 / med:7.1f}   {' '.join(f'{x:.1f}' for x in s)}")
        print(f"C++ attention: {speedup:.2f}x a step (median of the rounds' ratios)")
        results.append({"prompt_tokens": len(prompt), "ms_per_step": samples, "speedup": speedup})
    for e in engines.values():
        e.close()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"config": vars(args), "results": results}, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
