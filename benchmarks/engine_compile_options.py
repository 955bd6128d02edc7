"""Ways to compile the CPU decode step, A/B: torch.compile with torch's defaults and with our
Inductor options, and the step exported and compiled ahead of time (AOTInductor).

    .venv/bin/python benchmarks/engine_compile_options.py [--quantize int4] [--rounds 8]

Engines of one model, each decode step compiled another way: torch.compile with torch's
defaults (a Python wrapper), with ``compiled.CPU_OPTIONS`` (the C++ wrapper), and that with the
fused kernels on one thread (no OpenMP region each); and ``exported.ExportedDecode``, what the
engine uses on a CPU (``--skip`` leaves variants out).
The scheduler is stepped on this thread and the engines take turns round by round, the order
rotated each round, so that this machine's minute-to-minute swings fall on all of them.
Reports ms per batch-1 decode step and the time each compile took (from torch's cache when
warm). Writes benchmarks/results/engine_compile_options.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from engine_kernel_ab import PROMPT, alternate

from graphwright.engine.compiled import CPU_OPTIONS, CompiledDecode
from graphwright.engine.exported import ExportedDecode
from graphwright.engine.llm import LocalEngine
from graphwright.engine.model import Transformer

RESULTS = Path(__file__).parent / "results" / "engine_compile_options.json"
EXPORTED = "exported (AOTInductor)"

VARIANTS: dict[str, dict[str, Any]] = {
    "torch defaults": {},
    "ours (CPU_OPTIONS)": CPU_OPTIONS,
    # Tried, not kept: at batch 1 the fused kernels' OpenMP regions do no useful parallel work,
    # yet without them steps were slower (1.08x vs 1.21x defaults in one 10-round run, 1.15x vs
    # 1.19x in another). Perhaps torch's threads then sleep between the matmuls (not checked).
    "ours + 1-thread kernels": {**CPU_OPTIONS, "cpp.threads": 1},
    EXPORTED: {},
}


def _own_forward(i: int) -> type[Transformer]:
    """A Transformer subclass whose forward is a code object of its own. Dynamo keeps compiled
    graphs per code object, and each variant's graphs would pass the others' guards (same model,
    same inputs): without this, every engine would run whichever variant was compiled first."""
    src = "def forward(self, *args, **kwargs):\n    return Transformer.forward(self, *args, **kwargs)\n"
    scope: dict[str, Any] = {"Transformer": Transformer}
    exec(compile(src, f"<variant {i}>", "exec"), scope)  # a new code object per variant
    return type(f"Transformer{i}", (Transformer,), {"forward": scope["forward"]})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quantize", choices=["none", "int8", "int4"], default="int4")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--skip", nargs="*", default=[], choices=list(VARIANTS), help="variants left out")
    args = ap.parse_args()

    engines: dict[str, LocalEngine] = {}
    compile_s: dict[str, float] = {}
    for i, (name, options) in enumerate(VARIANTS.items()):
        if name in args.skip:
            continue
        eng = LocalEngine.load("smollm2", quantize=args.quantize, prefix_caching=False)
        eng.model.__class__ = _own_forward(i)
        kv = eng.scheduler.kv
        t0 = time.perf_counter()
        step: CompiledDecode | ExportedDecode
        if name == EXPORTED:
            step = ExportedDecode(eng.model, kv.k, kv.v, kv.scratch_slot)
        else:
            step = CompiledDecode(eng.model, kv.k, kv.v, kv.scratch_slot, options=dict(options))
        eng.scheduler.decode_step = step
        compile_s[name] = time.perf_counter() - t0
        engines[name] = eng
    names = list(engines)
    prompt = engines[names[0]].encode_chat([{"role": "user", "content": PROMPT}])
    samples = alternate(engines, prompt, args.rounds, args.tokens)
    base = samples[names[0]]
    print(f"\nSmolLM2-135M {args.quantize} compiled, batch-1 decode, "
          f"{args.tokens} tokens x {args.rounds} rounds")
    print(f"{'decode step':24} {'compile s':>9} {'median ms/step':>15} {'tok/s':>7} {'x first':>11}"
          "   all rounds (ms)")
    speedup: dict[str, float] = {}
    for k in names:
        med = statistics.median(samples[k])
        speedup[k] = statistics.median(b / s for b, s in zip(base, samples[k], strict=True))
        print(f"{k:24} {compile_s[k]:9.0f} {med:15.2f} {1e3 / med:7.1f} {speedup[k]:10.2f}x   "
              f"{' '.join(f'{x:.1f}' for x in samples[k])}")
    for e in engines.values():
        e.close()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "config": vars(args),
        "options": VARIANTS,
        "compile_seconds": compile_s,
        "ms_per_step": samples,
        "baseline": names[0],
        "median_speedup_vs_baseline": speedup,
    }, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
