"""Local engine speed, side by side with transformers (and llama.cpp when installed).

    .venv/bin/python benchmarks/engine_decode.py [--new-tokens 128] [--repeats 3] [--quick]

Batch-1 prefill and decode tokens/s for our engine (float32 exact mode, bfloat16, int8 and int4
weight-only, and fp32 / int8 / int4 with the compiled decode step (``--compile``: on a CPU the
step exported and compiled ahead of time, ``graphwright/engine/exported.py``); eager int4 also on
torch's weight-only kernel instead of ours, ``kernels="torch"``) and transformers
``generate`` on the same GGUF; aggregate tokens/s with 1, 4 and 16 concurrent requests through
the scheduler (eager and compiled fp32; the levels take turns); load time cold and warm, and with
the compile. Medians of ``--repeats`` runs; this machine is shared and noisy, so compare ratios
taken in one run.
Writes benchmarks/results/engine_decode.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from graphwright.engine.llm import LocalEngine
from graphwright.engine.sampling import SamplingParams
from graphwright.engine.weights import resolve_model

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
RESULTS = Path(__file__).parent / "results" / "engine_decode.json"


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def long_prompt(engine: LocalEngine, n: int, salt: int) -> list[int]:
    words = engine.tokenizer.encode(
        f"Document {salt}. " + "The quick brown fox jumps over the lazy dog. " * (n // 5)
    )
    return words[:n]


class EngineRunner:
    """Our engine: one batch-1 decode run and one prefill run per call."""

    def __init__(self, engine: LocalEngine, prompt: list[int], new_tokens: int, prefill_len: int) -> None:
        self.engine, self.prompt, self.new_tokens, self.prefill_len = engine, prompt, new_tokens, prefill_len
        self.tokens: list[int] = []
        self.calls = 0
        engine.generate(prompt, SamplingParams(temperature=0, max_tokens=4))  # warm-up

    def decode(self) -> float:
        n = self.new_tokens
        handle = self.engine.submit(self.prompt, SamplingParams(temperature=0, max_tokens=n, min_tokens=n))
        stamps = [time.perf_counter() for _ in handle]
        self.tokens = handle.result().outputs[0].token_ids
        return (len(stamps) - 1) / (stamps[-1] - stamps[0])

    def prefill(self) -> float:
        self.calls += 1
        long = long_prompt(self.engine, self.prefill_len, self.calls)  # new each time: no cache hit
        t0 = time.perf_counter()
        self.engine.generate(long, SamplingParams(temperature=0, max_tokens=1))
        return len(long) / (time.perf_counter() - t0)


def bench_concurrency(
    engine: LocalEngine, levels: list[int], new_tokens: int, repeats: int = 1
) -> dict[int, float]:
    """Aggregate tokens/s with ``c`` requests submitted at once, for each level; the levels take
    turns ``repeats`` times (medians), so that this machine's swings fall on all of them."""
    runs: dict[int, list[float]] = {c: [] for c in levels}
    for _ in range(repeats):
        for c in levels:
            prompts = [
                engine.encode_chat([{"role": "user", "content": f"{PROMPT} (variant {i})"}]) for i in range(c)
            ]
            params = SamplingParams(temperature=0, max_tokens=new_tokens, min_tokens=new_tokens)
            t0 = time.perf_counter()
            handles = [engine.submit(p, params) for p in prompts]
            total = sum(h.result().completion_tokens for h in handles)
            runs[c].append(total / (time.perf_counter() - t0))
    return {c: median(r) for c, r in runs.items()}


def matmul_floor(engine: LocalEngine, steps: int) -> float:
    """Tokens/s if a batch-1 step were only its matmuls: every weight read once, nothing else."""
    lins = [m for m in engine.model.modules() if isinstance(m, torch.nn.Linear)]
    xs = {n: torch.randn(1, 1, n) for n in {m.in_features for m in lins}}
    with torch.inference_mode():
        t0 = time.perf_counter()
        for _ in range(steps):
            for m in lins:
                m(xs[m.in_features])
        return steps / (time.perf_counter() - t0)


class TransformersRunner:
    """transformers' LlamaForCausalLM on the same GGUF, through ``generate``."""

    def __init__(self, prompt: list[int], new_tokens: int, filler: list[int]) -> None:
        from transformers import AutoModelForCausalLM

        path = resolve_model("smollm2")
        t0 = time.perf_counter()
        self.model = AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=torch.float32
        ).eval()
        self.load_s = time.perf_counter() - t0
        self.x, self.new_tokens, self.filler = torch.tensor([prompt]), new_tokens, filler
        self.kw: dict[str, Any] = dict(
            do_sample=False, attention_mask=torch.ones_like(self.x), pad_token_id=2
        )
        self.tokens: list[int] = []
        self._generate(2)

    def _generate(self, n: int) -> torch.Tensor:
        with torch.inference_mode():
            return self.model.generate(self.x, max_new_tokens=n, min_new_tokens=n, **self.kw)

    def decode(self) -> float:
        t0 = time.perf_counter()
        self._generate(1)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = self._generate(self.new_tokens)
        self.tokens = out[0, self.x.shape[1] :].tolist()
        return (self.new_tokens - 1) / (time.perf_counter() - t0 - first)

    def prefill(self) -> float:
        with torch.inference_mode():
            t0 = time.perf_counter()
            self.model(torch.tensor([self.filler]))
            return len(self.filler) / (time.perf_counter() - t0)


_LLAMA_CPP_CHILD = """
import json, os, statistics, sys, time
from llama_cpp import Llama
path, ids, new_tokens, repeats = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
llm = Llama(model_path=path, n_ctx=2048, verbose=False, n_threads=os.cpu_count())
decode = []
for _ in range(repeats):
    llm.reset()
    stamps, tokens = [], []
    for tok in llm.generate(ids, temp=0.0, top_k=1):
        stamps.append(time.perf_counter())
        tokens.append(int(tok))
        if len(stamps) >= new_tokens:
            break
    decode.append((len(stamps) - 1) / (stamps[-1] - stamps[0]))
print(json.dumps({"decode_tok_s": statistics.median(decode), "decode_samples": decode, "tokens": tokens}))
"""


def bench_llama_cpp(ids: list[int], new_tokens: int, repeats: int) -> dict[str, Any] | None:
    """llama.cpp's batch-1 decode on the same GGUF, in a child process.

    Its own OpenMP threads and torch's fight when they share a process (it spins at 200% CPU,
    or dies with an illegal instruction), so it runs in a child, while our engines sit idle.
    """
    if importlib.util.find_spec("llama_cpp") is None:
        return None
    args = [str(resolve_model("smollm2")), json.dumps(ids), str(new_tokens), str(repeats)]
    out = subprocess.run(
        [sys.executable, "-c", _LLAMA_CPP_CHILD, *args], capture_output=True, text=True, timeout=600
    )
    if out.returncode != 0:
        print(f"llama.cpp benchmark failed ({out.returncode}): {out.stderr[-500:]}")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--prefill-len", type=int, default=512)
    ap.add_argument(
        "--quick", action="store_true", help="32 new tokens, 1 repeat, no transformers, no compile"
    )
    ap.add_argument("--no-compile", action="store_true", help="skip the compiled engines (--compile)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.new_tokens, args.repeats, args.no_compile = 32, 1, True

    # Load time: a fresh cache directory (cold: dequantize + write the cache), then again (warm).
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        LocalEngine.load("smollm2", cache_dir=cache).close()
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        LocalEngine.load("smollm2", cache_dir=cache).close()
        warm = time.perf_counter() - t0

    # Every system is loaded first, then measured in turns (A, B, C, A, B, C, ...): on a shared,
    # noisy machine this keeps the load drift out of the ratios.
    engines = {
        "engine fp32 (exact)": LocalEngine.load("smollm2", prefix_caching=False, dtype="float32"),
        "engine bf16": LocalEngine.load("smollm2", prefix_caching=False, dtype="bfloat16"),
        "engine int8": LocalEngine.load("smollm2", prefix_caching=False, dtype="float32", quantize="int8"),
        "engine int4": LocalEngine.load("smollm2", prefix_caching=False, dtype="float32", quantize="int4"),
        # The same int4 weights on torch's weight-only kernel (bfloat16 activations), not ours.
        "engine int4 torch-kernel": LocalEngine.load(
            "smollm2", prefix_caching=False, dtype="float32", quantize="int4", kernels="torch"
        ),
    }
    compile_load_s: dict[str, float] = {}
    if not args.no_compile:  # compiled decode steps: the load includes the compile (or its cache)
        for name, quant, kernels in (
            ("engine fp32 compiled", "none", "auto"),
            ("engine int8 compiled", "int8", "auto"),
            ("engine int4 compiled", "int4", "auto"),
            # Our int4 kernel against torch's, both compiled: benchmarks/engine_kernel_ab.py.
        ):
            t0 = time.perf_counter()
            engines[name] = LocalEngine.load(
                "smollm2", prefix_caching=False, quantize=quant, compile=True, kernels=kernels
            )
            compile_load_s[name] = time.perf_counter() - t0
    fp32 = engines["engine fp32 (exact)"]
    prompt_ids = fp32.encode_chat([{"role": "user", "content": PROMPT}])
    filler = long_prompt(fp32, args.prefill_len, 0)
    runners: dict[str, Any] = {
        k: EngineRunner(e, prompt_ids, args.new_tokens, args.prefill_len) for k, e in engines.items()
    }
    hf: TransformersRunner | None = None
    if not args.quick:
        hf = runners["transformers fp32"] = TransformersRunner(prompt_ids, args.new_tokens, filler)
    samples: dict[str, dict[str, list[float]]] = {k: {"decode": [], "prefill": []} for k in runners}
    floor: list[float] = []
    llama_runs: list[dict[str, Any]] = []
    for _ in range(args.repeats):
        for name, runner in runners.items():
            samples[name]["decode"].append(runner.decode())
            samples[name]["prefill"].append(runner.prefill())
        floor.append(matmul_floor(fp32, args.new_tokens))
        # llama.cpp takes its turn in the same rounds, so that its ratios see the same machine.
        run = bench_llama_cpp(prompt_ids, args.new_tokens, 1)
        if run:
            llama_runs.append(run)
    rows: dict[str, dict[str, Any]] = {
        name: {
            "decode_tok_s": median(samples[name]["decode"]),
            "prefill_tok_s": median(samples[name]["prefill"]),
            "decode_samples": samples[name]["decode"],
            "prefill_samples": samples[name]["prefill"],
            "tokens": runner.tokens,
        }
        for name, runner in runners.items()
    }
    if hf is not None:
        rows["transformers fp32"]["load_s"] = hf.load_s
    concurrency = bench_concurrency(fp32, [1, 4, 16], min(64, args.new_tokens), args.repeats)
    compiled_concurrency = None
    if "engine fp32 compiled" in engines:
        compiled_concurrency = bench_concurrency(
            engines["engine fp32 compiled"], [1, 4, 16], min(64, args.new_tokens), args.repeats
        )
    for e in engines.values():
        e.close()
    llama: dict[str, Any] | None = None
    if llama_runs:
        decode = [r["decode_tok_s"] for r in llama_runs]
        llama = {"decode_tok_s": median(decode), "decode_samples": decode, "tokens": llama_runs[-1]["tokens"]}
        rows["llama.cpp (Q4_1)"] = llama

    ref = rows.get("transformers fp32")
    print(
        f"\nSmolLM2-135M, {len(prompt_ids)}-token chat prompt, {args.new_tokens} new tokens, "
        f"prefill at {args.prefill_len} tokens, {torch.get_num_threads()} threads, medians of {args.repeats}"
    )
    print(
        f"{'':24} {'decode tok/s':>12} {'x hf':>6} {'prefill tok/s':>14} {'x hf':>6} "
        f"{'same tokens as hf':>18}"
    )
    for name, r in rows.items():
        dx = f"{r['decode_tok_s'] / ref['decode_tok_s']:.2f}" if ref else "-"
        pf = r.get("prefill_tok_s")
        px = f"{pf / ref['prefill_tok_s']:.2f}" if ref and pf else "-"
        same = "-" if not ref or "tokens" not in r else str(r["tokens"] == ref["tokens"])
        print(f"{name:24} {r['decode_tok_s']:12.1f} {dx:>6} {pf or 0:14.1f} {px:>6} {same:>18}")
    fp32_floor = median(floor)
    print(
        f"fp32 floor, the step's matmuls alone: {fp32_floor:.1f} tok/s; "
        + ", ".join(
            f"{name} at {rows[name]['decode_tok_s'] / fp32_floor:.0%} of it"
            for name in ("engine fp32 (exact)", "engine fp32 compiled", "transformers fp32")
            if name in rows
        )
    )
    for ours, theirs in (
        ("engine int4", "engine int4 torch-kernel"),
    ):
        if ours in rows and theirs in rows:
            ratio = rows[ours]["decode_tok_s"] / rows[theirs]["decode_tok_s"]
            print(f"{ours}: our CPU kernel vs torch's: {ratio:.2f}x decode")
    if llama:
        names = ("engine int8", "engine int8 compiled", "engine int4", "engine int4 compiled")
        for name in names:
            if name in rows:
                ratio = rows[name]['decode_tok_s'] / llama['decode_tok_s']
                print(f"{name} vs llama.cpp decode: {ratio:.2f}x")
    base = concurrency.get(1, 0.0)
    for label, conc in (("fp32", concurrency), ("fp32 compiled", compiled_concurrency)):
        if conc:
            print(
                f"concurrent requests ({label}):  "
                + "  ".join(f"{c}: {v:.1f} tok/s ({v / conc[1]:.1f}x)" for c, v in conc.items())
            )
    for name, secs in compile_load_s.items():
        print(f"{name}: load with compile {secs:.1f} s")
    print(
        f"load: cold {cold:.2f} s, warm {warm:.2f} s"
        + (f"; transformers {ref['load_s']:.1f} s" if ref else "")
    )

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "config": {
                    **vars(args),
                    "threads": torch.get_num_threads(),
                    "prompt_tokens": len(prompt_ids),
                },
                "batch1": {k: {kk: vv for kk, vv in v.items() if kk != "tokens"} for k, v in rows.items()},
                "same_tokens_as_transformers": {
                    k: v["tokens"] == ref["tokens"] for k, v in rows.items() if ref and "tokens" in v
                },
                "concurrency_tok_s": concurrency,
                "concurrency_ratio_16_vs_1": concurrency.get(16, 0.0) / base if base else None,
                "compiled_concurrency_tok_s": compiled_concurrency,
                "compiled_concurrency_ratio_16_vs_1": (
                    compiled_concurrency[16] / compiled_concurrency[1] if compiled_concurrency else None
                ),
                "compile_load_s": compile_load_s,
                "fp32_matmul_floor_tok_s": fp32_floor,
                "load_s": {"cold": cold, "warm": warm},
                "load_average_after": os.getloadavg(),
            },
            indent=2,
        )
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
