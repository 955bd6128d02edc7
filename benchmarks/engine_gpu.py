"""GPU figures for the engine's Triton kernels: per-kernel times and batch-1 decode vs the roofline.

    python benchmarks/engine_gpu.py [--steps 128] [--context 512] [--no-hf]

Needs an NVIDIA GPU: without one it prints why and exits with status 2, measuring nothing.

What it measures (bf16, random weights, TinyLlama shape: hidden 2048, 22 layers, 32 heads /
4 kv heads, ffn 5632, vocab 32000, ~1.1B parameters):

* per-kernel times (``triton.testing.do_bench``, median) against the torch ops they replace;
* device copy bandwidth (``dst.copy_(src)`` of 1 GiB: 2 bytes moved per byte copied);
* the batch-1 decode roofline: measured bandwidth / weight bytes read per token;
* batch-1 decode tokens/s for: a decode loop built from these kernels (eager, and replayed as a
  CUDA graph, with bf16 and with int8 weights), the engine's torch model
  (``graphwright.engine.model.Transformer``) called directly, the whole engine
  (``LocalEngine``: scheduler, paged KV cache, sampler) with ``kernels="torch"``, with
  ``kernels="triton"`` and with ``kernels="triton", cuda_graphs=True`` (bf16 and int8 weights),
  and Hugging Face ``LlamaForCausalLM`` with the same weights; each with its percentage of the
  roofline. The engine's figures count decode steps only (first generated token to last).

Prints a table and writes ``benchmarks/results/engine_gpu.json``.
``--smoke`` runs the decode loops for two steps on a tiny config on CPU under the Triton
interpreter (no timings): a check that the script's own code runs, for machines without a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: find _gpu_decoders
from _gpu_decoders import (
    KernelDecoder,
    engine_decoder,
    engine_torch_decoder,
    hf_decoder,
    random_state_dict,
    weight_bytes_per_token,
)

RESULTS = Path(__file__).resolve().parent / "results" / "engine_gpu.json"

TINYLLAMA: dict[str, Any] = dict(
    vocab_size=32000,
    hidden_size=2048,
    intermediate_size=5632,
    num_hidden_layers=22,
    num_attention_heads=32,
    num_key_value_heads=4,
    head_dim=64,
    rope_theta=10000.0,
    rms_norm_eps=1e-5,
)
TINY: dict[str, Any] = dict(
    vocab_size=96,
    hidden_size=64,
    intermediate_size=80,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    rope_theta=10000.0,
    rms_norm_eps=1e-5,
)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=128, help="decode steps timed per path")
    p.add_argument("--context", type=int, default=512, help="tokens already in the KV cache")
    p.add_argument("--no-hf", action="store_true", help="skip the transformers baseline")
    p.add_argument("--smoke", action="store_true", help="CPU + Triton interpreter dry run, no timings")
    return p.parse_args()


# --------------------------------------------------------------------------------------------
# Timing helpers


def bench_ms(fn: Callable[[], Any]) -> float:
    """Median milliseconds of ``fn`` (do_bench on GPU; one timed call in smoke mode)."""
    import torch

    if torch.cuda.is_available() and not os.environ.get("TRITON_INTERPRET"):
        from triton.testing import do_bench

        return float(do_bench(fn, warmup=25, rep=100, return_mode="median"))
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1e3


def copy_bandwidth_gbs() -> float:
    import torch

    n = 1 << 30  # 1 GiB
    src = torch.empty(n, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = bench_ms(lambda: dst.copy_(src))
    return 2 * n / (ms * 1e-3) / 1e9  # read + write


# --------------------------------------------------------------------------------------------
# Per-kernel comparisons


def kernel_table(device: str) -> list[dict[str, Any]]:
    import torch
    import torch.nn.functional as F

    from graphwright.engine import kernels as K

    dt = torch.bfloat16
    rows: list[dict[str, Any]] = []

    def add(name: str, shape: str, triton_fn: Callable[[], Any], torch_fn: Callable[[], Any]) -> None:
        t_ms, r_ms = bench_ms(triton_fn), bench_ms(torch_fn)
        rows.append(
            dict(kernel=name, shape=shape, triton_us=t_ms * 1e3, torch_us=r_ms * 1e3, speedup=r_ms / t_ms)
        )

    def rnd(*shape: int, dtype: torch.dtype = dt) -> torch.Tensor:
        return torch.randn(*shape, device=device, dtype=torch.float32).to(dtype)

    for n_rows in (1, 64):
        x, r, w = rnd(n_rows, 2048), rnd(n_rows, 2048), rnd(2048)
        add(
            "rmsnorm+residual",
            f"{n_rows}x2048",
            partial(K.rmsnorm, x, w, 1e-5, residual=r),
            partial(K.rmsnorm_reference, x, w, 1e-5, residual=r),
        )
    for tokens in (1, 512):
        q, k = rnd(tokens, 32, 64), rnd(tokens, 4, 64)
        pos = torch.arange(tokens, device=device)
        add(
            "rope (in place)",
            f"{tokens} tok, 32/4 heads, d64",
            partial(K.rope_, q, k, pos),
            partial(K.rope_reference, q, k, pos),
        )
    for tokens in (1, 512):
        gu = rnd(tokens, 2 * 5632)
        add(
            "swiglu (fused gate|up)",
            f"{tokens}x{2 * 5632}",
            partial(K.swiglu, gu),
            partial(K.swiglu_reference, gu),
        )

    def torch_paged(q: torch.Tensor, kc: torch.Tensor, vc: torch.Tensor, bt: torch.Tensor) -> torch.Tensor:
        # What a torch path does: gather the blocks, then SDPA (GQA-aware).
        batch, ctx = bt.shape[0], bt.shape[1] * kc.shape[1]
        keys = kc[bt.long()].view(batch, ctx, 4, 64).transpose(1, 2)
        vals = vc[bt.long()].view(batch, ctx, 4, 64).transpose(1, 2)
        return F.scaled_dot_product_attention(q[:, :, None], keys, vals, enable_gqa=True)

    for batch, ctx in ((1, 1024), (1, 4096), (16, 1024)):
        n_blocks = ctx // 16
        kc, vc = rnd(batch * n_blocks, 16, 4, 64), rnd(batch * n_blocks, 16, 4, 64)
        bt = torch.randperm(batch * n_blocks, device=device).view(batch, n_blocks).to(torch.int32)
        lens = torch.full((batch,), ctx, dtype=torch.int32, device=device)
        q = rnd(batch, 32, 64)
        add(
            "decode_attention (paged)",
            f"b{batch} ctx{ctx} 32/4 heads d64",
            partial(K.decode_attention, q, kc, vc, bt, lens),
            partial(torch_paged, q, kc, vc, bt),
        )

    def torch_causal(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        qt, kt, vt = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
        return F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, enable_gqa=True)

    for tokens in (512, 2048):
        q, k, v = rnd(tokens, 32, 64), rnd(tokens, 4, 64), rnd(tokens, 4, 64)
        add(
            "prefill_attention (causal)",
            f"{tokens} tok 32/4 heads d64",
            partial(K.prefill_attention, q, k, v),
            partial(torch_causal, q, k, v),
        )

    def torch_sample(logits: torch.Tensor) -> torch.Tensor:
        # The usual torch recipe: top-k values, sort, cumsum for top-p, softmax, multinomial.
        x = logits / 0.8
        kth = torch.topk(x, 50, dim=-1).values[:, -1:]
        x = x.masked_fill(x < kth, float("-inf"))
        s, idx = torch.sort(x, dim=-1, descending=True)
        probs = s.softmax(-1)
        s = s.masked_fill(probs.cumsum(-1) - probs > 0.9, float("-inf"))
        return idx.gather(-1, torch.multinomial(s.softmax(-1), 1))

    for batch, vocab in ((1, 32000), (8, 128256)):
        logits = rnd(batch, vocab, dtype=torch.float32)
        temp = torch.full((batch,), 0.8, device=device)
        top_k = torch.full((batch,), 50, dtype=torch.int32, device=device)
        top_p = torch.full((batch,), 0.9, device=device)
        seeds = torch.arange(batch, device=device)
        add(
            "sample (T, top-k 50, top-p 0.9)",
            f"b{batch} vocab{vocab}",
            partial(K.sample, logits, temp, top_k, top_p, seeds),
            partial(torch_sample, logits),
        )
    for m, n, kdim in ((1, 2 * 5632, 2048), (1, 2048, 5632), (1, 32000, 2048), (64, 2 * 5632, 2048)):
        w = rnd(n, kdim)
        w8, scale = K.quantize_int8(w)
        x = rnd(m, kdim)
        add(
            "int8_matmul vs bf16 F.linear",
            f"{m}x{kdim} @ {n}x{kdim}^T",
            partial(K.int8_matmul, x, w8, scale.to(dt)),
            partial(F.linear, x, w),
        )
    return rows

def main() -> int:
    args = parse_args()
    if args.smoke:
        os.environ.setdefault("TRITON_INTERPRET", "1")
    import torch

    if not args.smoke and not torch.cuda.is_available():
        print(
            "engine_gpu: no CUDA GPU here (torch.cuda.is_available() is False): nothing measured, "
            f"{RESULTS.name} not written. Run it on a machine with an NVIDIA GPU.",
            file=sys.stderr,
        )
        return 2
    device = "cpu" if args.smoke else "cuda"
    cfg = TINY if args.smoke else TINYLLAMA
    dtype = torch.float32 if args.smoke else torch.bfloat16
    steps, context = (2, 20) if args.smoke else (args.steps, args.context)
    torch.manual_seed(0)
    result: dict[str, Any] = {"config": cfg, "context": context, "steps": steps, "dtype": str(dtype)}
    if not args.smoke:
        import triton

        props = torch.cuda.get_device_properties(0)
        result["device"] = props.name
        result["versions"] = dict(
            torch=torch.__version__, triton=triton.__version__, python=platform.python_version()
        )
        bw = copy_bandwidth_gbs()
        result["copy_bandwidth_gbs"] = bw
        print(f"device: {props.name}   copy bandwidth: {bw:.0f} GB/s")
        result["kernels"] = kernel_table(device)
        print(f"\n{'kernel':34} {'shape':30} {'triton us':>10} {'torch us':>10} {'speedup':>8}")
        for r in result["kernels"]:
            times = f"{r['triton_us']:10.1f} {r['torch_us']:10.1f} {r['speedup']:8.2f}"
            print(f"{r['kernel']:34} {r['shape']:30} {times}")

    sd = random_state_dict(cfg, device, dtype)
    n_params = sum(t.numel() for t in sd.values())
    bytes_bf16 = weight_bytes_per_token(sd)
    bytes_int8 = weight_bytes_per_token(sd, int8=True)
    result.update(params=n_params, weight_bytes_per_token=bytes_bf16, weight_bytes_per_token_int8=bytes_int8)
    bw_bytes = result.get("copy_bandwidth_gbs", 0.0) * 1e9
    roofline = {
        "bf16": bw_bytes / bytes_bf16 if bw_bytes else None,
        "int8": bw_bytes / bytes_int8 if bw_bytes else None,
    }
    result["roofline_tok_s"] = roofline

    decode: list[dict[str, Any]] = []

    def record(path: str, fn: Callable[[], float], weights: str) -> None:
        try:
            secs = fn()
            tok_s = steps / secs
            limit = roofline[weights]
            pct = 100 * tok_s / limit if limit else None
            decode.append(dict(path=path, weights=weights, tok_s=tok_s, pct_roofline=pct))
        except Exception as e:  # one failing path must not hide the others' figures
            decode.append(dict(path=path, weights=weights, error=f"{type(e).__name__}: {e}"))

    first_logits: dict[str, Any] = {}
    shared_caches = None
    for int8 in (False, True):
        weights = "int8" if int8 else "bf16"
        try:
            dec = KernelDecoder(cfg, sd, context, steps + 8, int8=int8)
        except Exception as e:
            decode.append(dict(path="triton kernels", weights=weights, error=f"{type(e).__name__}: {e}"))
            continue
        with torch.inference_mode():
            dec.reset()
            dec.step()
            first_logits[weights] = dec.logits
            if not int8:
                nkv, d = cfg["num_key_value_heads"], cfg["head_dim"]
                shared_caches = (
                    [c.view(-1, nkv, d) for c in dec.k_cache],
                    [c.view(-1, nkv, d) for c in dec.v_cache],
                )
            dec.run(2, graphed=False)  # warm-up / compile
            record("triton kernels, eager", partial(dec.run, steps, graphed=False), weights)
            if not args.smoke:
                try:
                    dec.capture()
                    record("triton kernels, CUDA graph", partial(dec.run, steps, graphed=True), weights)
                except Exception as e:
                    decode.append(dict(path="triton kernels, CUDA graph", weights=weights, error=repr(e)))
        del dec

    try:
        run_torch, torch_first_logits = engine_torch_decoder(cfg, sd, context, steps + 8, shared_caches)
        if shared_caches is not None:
            # Same weights, same cache, same token and position: the paths should agree.
            ref = torch_first_logits()
            for w, lg in first_logits.items():
                err = float((lg - ref).norm() / ref.norm())
                result[f"first_step_logits_rel_err_{w}_vs_engine_torch"] = err
                print(f"first-step logits, triton ({w}) vs engine torch model: rel err {err:.2e}")
        run_torch(2)
        record("engine torch model", lambda: run_torch(steps), "bf16")
    except Exception as e:
        decode.append(dict(path="engine torch model", weights="bf16", error=f"{type(e).__name__}: {e}"))
    engine_paths = [
        ("engine, kernels=torch", "torch", False, "none"),
        ("engine, kernels=triton", "triton", False, "none"),
        ("engine, kernels=triton, CUDA graphs", "triton", True, "none"),
        ("engine, kernels=triton, CUDA graphs", "triton", True, "int8"),
    ]
    for path, kernels, graphs, quantize in engine_paths:
        weights = "int8" if quantize == "int8" else "bf16"
        if args.smoke and (graphs or kernels == "torch" or quantize != "none"):
            continue  # smoke: only the engine's kernel path, once (graphs are CUDA only anyway)
        try:
            run_engine, close = engine_decoder(cfg, sd, context, steps, kernels, graphs, quantize)
        except Exception as e:
            decode.append(dict(path=path, weights=weights, error=f"{type(e).__name__}: {e}"))
            continue
        try:
            run_engine()  # warm-up: compiles the kernels on the first prompt
            record(path, run_engine, weights)
        finally:
            close()
    if not args.no_hf:
        try:
            run_hf = hf_decoder(cfg, sd, context)
            run_hf(2)
            record("transformers LlamaForCausalLM", lambda: run_hf(steps), "bf16")
        except Exception as e:
            decode.append(
                dict(path="transformers LlamaForCausalLM", weights="bf16", error=f"{type(e).__name__}: {e}")
            )
    result["decode_batch1"] = decode

    print(f"\nbatch-1 decode, {n_params / 1e9:.2f}B params, context {context}, {steps} steps")
    for w in ("bf16", "int8"):
        rt = roofline[w]
        per_tok = bytes_bf16 if w == "bf16" else bytes_int8
        print(
            f"  roofline {w}: {per_tok / 1e9:.2f} GB/token -> {rt:.0f} tok/s"
            if rt
            else f"  roofline {w}: n/a"
        )
    print(f"{'path':34} {'weights':8} {'tok/s':>9} {'% roofline':>11}")
    for d in decode:
        if "error" in d:
            print(f"{d['path']:34} {d['weights']:8} {d['error']}")
        else:
            pct = f"{d['pct_roofline']:.0f}%" if d["pct_roofline"] is not None else "n/a"
            print(f"{d['path']:34} {d['weights']:8} {d['tok_s']:9.1f} {pct:>11}")

    if args.smoke:
        ok = all(torch.isfinite(v).all() for v in first_logits.values())
        print(f"smoke run finished; logits finite: {ok}")
        return 0 if ok and not any("error" in d for d in decode) else 1
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
