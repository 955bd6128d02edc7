"""Our CPU decode kernel against torch's weight-only kernel, the same quantized model, A/B.

    .venv/bin/python benchmarks/engine_kernel_ab.py [--quantize int4] [--rounds 8] [--no-compile]

Two engines, ``kernels="auto"`` (ours: int8 activations per block of 32, AVX-512 VNNI) and
``kernels="torch"`` (torch's ``_weight_int4pack_mm_for_cpu`` / ``_weight_int8pack_mm``, bfloat16
activations), both compiled unless ``--no-compile``. The scheduler is stepped on this thread (no
engine thread, no streaming) and the two alternate round by round, the order flipped each round,
so that this machine's minute-to-minute swings fall on both. Reports ms per batch-1 decode step.
Writes benchmarks/results/engine_kernel_ab.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from graphwright.engine.llm import LocalEngine
from graphwright.engine.sampling import SamplingParams

RESULTS = Path(__file__).parent / "results" / "engine_kernel_ab.json"
PROMPT = "Write a short story about a lighthouse keeper."


def step_ms(engine: LocalEngine, prompt: list[int], tokens: int) -> float:
    """Mean ms per decode step of one greedy request, the prompt's steps excluded."""
    engine._kick = lambda: None  # type: ignore[method-assign]  # no engine thread: we step it
    sched = engine.scheduler
    engine.submit(prompt, SamplingParams(temperature=0, max_tokens=tokens, min_tokens=tokens))
    sched.step()  # the prompt, or its first chunk
    while any(s.prefilling for s in sched.running):  # a prompt longer than max_prefill_tokens
        sched.step()
    t0, steps = time.perf_counter(), 0
    while sched.has_work():
        sched.step()
        steps += 1
    return (time.perf_counter() - t0) / steps * 1e3


def alternate(
    engines: dict[str, LocalEngine], prompt: list[int], rounds: int, tokens: int
) -> dict[str, list[float]]:
    """``step_ms`` of each engine, round by round, the order rotated each round (for two engines:
    flipped), so that this machine's minute-to-minute swings fall on all of them."""
    names = list(engines)
    for e in engines.values():
        step_ms(e, prompt, 8)  # warm-up
    samples: dict[str, list[float]] = {k: [] for k in names}
    for r in range(rounds):
        for k in names[r % len(names):] + names[: r % len(names)]:
            samples[k].append(step_ms(engines[k], prompt, tokens))
    return samples


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quantize", choices=["int8", "int4"], default="int4")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()

    engines = {
        kernels: LocalEngine.load(
            "smollm2", quantize=args.quantize, compile=not args.no_compile, prefix_caching=False,
            kernels=kernels,
        )
        for kernels in ("auto", "torch")
    }
    prompt = engines["auto"].encode_chat([{"role": "user", "content": PROMPT}])
    samples = alternate(engines, prompt, args.rounds, args.tokens)
    ratios = [t / o for o, t in zip(samples["auto"], samples["torch"], strict=True)]
    mode = f"{args.quantize}{'' if args.no_compile else ' compiled'}"
    print(f"\nSmolLM2-135M {mode}, batch-1 decode, {args.tokens} tokens x {args.rounds} alternating rounds")
    print(f"{'kernel':28} {'median ms/step':>15} {'tok/s':>8}   all rounds (ms)")
    for k, name in (("auto", "ours (int8 act., VNNI)"), ("torch", "torch's (bf16 act.)")):
        med = statistics.median(samples[k])
        print(f"{name:28} {med:15.2f} {1e3 / med:8.1f}   {' '.join(f'{x:.1f}' for x in samples[k])}")
    print(f"ours vs torch's, per round: {' '.join(f'{r:.2f}' for r in ratios)}; "
          f"median {statistics.median(ratios):.2f}x")
    for e in engines.values():
        e.close()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "config": vars(args),
        "ms_per_step": samples,
        "speedup_per_round": ratios,
        "median_speedup": statistics.median(ratios),
    }, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
