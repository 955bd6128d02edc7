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


# --------------------------------------------------------------------------------------------
# Batch-1 decode loops


def random_state_dict(cfg: dict[str, Any], device: str, dtype: Any, seed: int = 0) -> dict[str, Any]:
    """Hugging Face Llama names -> random weights (std 0.02, norms near 1)."""
    import torch

    g = torch.Generator(device=device).manual_seed(seed)
    h, f, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    nh, nkv, d = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]

    def w(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=g, device=device) * 0.02).to(dtype)

    def norm() -> torch.Tensor:
        return (1 + 0.1 * torch.randn(h, generator=g, device=device)).to(dtype)

    sd = {"model.embed_tokens.weight": w(v, h), "model.norm.weight": norm(), "lm_head.weight": w(v, h)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        sd[p + "input_layernorm.weight"] = norm()
        sd[p + "post_attention_layernorm.weight"] = norm()
        sd[p + "self_attn.q_proj.weight"] = w(nh * d, h)
        sd[p + "self_attn.k_proj.weight"] = w(nkv * d, h)
        sd[p + "self_attn.v_proj.weight"] = w(nkv * d, h)
        sd[p + "self_attn.o_proj.weight"] = w(h, nh * d)
        sd[p + "mlp.gate_proj.weight"] = w(f, h)
        sd[p + "mlp.up_proj.weight"] = w(f, h)
        sd[p + "mlp.down_proj.weight"] = w(h, f)
    return sd


def weight_bytes_per_token(sd: dict[str, Any], int8: bool = False) -> int:
    """Bytes of weights a batch-1 decode step reads: every matrix but the embedding table."""
    total = 0
    for name, t in sd.items():
        if name == "model.embed_tokens.weight":
            total += t.shape[1] * t.element_size()  # one row
        elif int8 and t.dim() == 2:
            total += t.numel() + t.shape[0] * 4  # int8 values + fp32 scales
        else:
            total += t.numel() * t.element_size()
    return total


class KernelDecoder:
    """A batch-1 Llama decode step written with the Triton kernels (cuBLAS or int8 for matmuls).

    The KV cache is paged (block 16, identity block table) and pre-filled with ``context`` random
    tokens; all per-step state lives in device tensors updated inside the step, so the step can
    be captured once as a CUDA graph and replayed.
    """

    def __init__(
        self, cfg: dict[str, Any], sd: dict[str, Any], context: int, max_steps: int, int8: bool
    ) -> None:
        import torch

        from graphwright.engine import kernels as K

        self.K, self.cfg, self.int8 = K, cfg, int8
        emb = sd["model.embed_tokens.weight"]
        dev, dt = emb.device, emb.dtype
        self.nh, self.nkv, self.d = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
        self.eps = cfg["rms_norm_eps"]
        self.emb = emb

        def lin(*names: str) -> Any:
            w = torch.cat([sd[n] for n in names], dim=0).contiguous()
            return K.quantize_int8(w) if int8 else w

        self.layers = []
        for i in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{i}."
            a = p + "self_attn."
            self.layers.append(
                dict(
                    ln1=sd[p + "input_layernorm.weight"],
                    ln2=sd[p + "post_attention_layernorm.weight"],
                    wqkv=lin(a + "q_proj.weight", a + "k_proj.weight", a + "v_proj.weight"),
                    wo=lin(a + "o_proj.weight"),
                    wgu=lin(p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"),
                    wdown=lin(p + "mlp.down_proj.weight"),
                )
            )
        self.norm = sd["model.norm.weight"]
        self.lm_head = lin("lm_head.weight")
        self.inv_freq = K.rope_inv_freq(self.d, cfg["rope_theta"], dev)

        block = 16
        n_blocks = -(-(context + max_steps + 1) // block)
        shape = (n_blocks, block, self.nkv, self.d)
        # Seeded, so the bf16 and int8 decoders hold the same cache and can be compared.
        g = torch.Generator(device=dev).manual_seed(1)
        self.k_cache = [torch.randn(shape, generator=g, device=dev).to(dt) for _ in self.layers]
        self.v_cache = [torch.randn(shape, generator=g, device=dev).to(dt) for _ in self.layers]
        self.block_table = torch.arange(n_blocks, device=dev, dtype=torch.int32)[None]
        self.context = context
        self.token = torch.zeros(1, dtype=torch.int64, device=dev)
        self.pos = torch.full((1,), context, dtype=torch.int64, device=dev)
        self.seq_len = torch.full((1,), context + 1, dtype=torch.int32, device=dev)
        self.temperature = torch.zeros(1, device=dev)  # greedy
        self.top_k = torch.zeros(1, dtype=torch.int32, device=dev)
        self.top_p = torch.ones(1, device=dev)
        self.seed = torch.zeros(1, dtype=torch.int64, device=dev)
        self.logits: torch.Tensor | None = None
        self.graph: Any = None

    def reset(self) -> None:
        self.token.zero_()
        self.pos.fill_(self.context)
        self.seq_len.fill_(self.context + 1)

    def linear(self, x: Any, w: Any) -> Any:
        import torch.nn.functional as F

        if self.int8:
            return self.K.int8_matmul(x, w[0], w[1].to(x.dtype))
        return F.linear(x, w)

    def step(self) -> None:
        K, nh, nkv, d = self.K, self.nh, self.nkv, self.d
        x = self.emb[self.token]  # [1, hidden]
        res = None
        for i, L in enumerate(self.layers):
            h, res = K.rmsnorm(x, L["ln1"], self.eps, residual=res)
            qkv = self.linear(h, L["wqkv"])
            q = qkv[:, : nh * d].view(1, nh, d)
            k = qkv[:, nh * d : (nh + nkv) * d].view(1, nkv, d)
            v = qkv[:, (nh + nkv) * d :].view(1, nkv, d)
            K.rope_(q, k, self.pos, inv_freq=self.inv_freq)
            # Identity block table: the new token's slot is its position.
            self.k_cache[i].view(-1, nkv, d).index_copy_(0, self.pos, k)
            self.v_cache[i].view(-1, nkv, d).index_copy_(0, self.pos, v)
            o = K.decode_attention(q, self.k_cache[i], self.v_cache[i], self.block_table, self.seq_len)
            x = self.linear(o.view(1, nh * d), L["wo"])
            h, res = K.rmsnorm(x, L["ln2"], self.eps, residual=res)
            x = self.linear(K.swiglu(self.linear(h, L["wgu"])), L["wdown"])
        h, _ = K.rmsnorm(x, self.norm, self.eps, residual=res)
        self.logits = self.linear(h, self.lm_head).float()
        self.token.copy_(K.sample(self.logits, self.temperature, self.top_k, self.top_p, self.seed))
        self.pos.add_(1)
        self.seq_len.add_(1)
        self.seed.add_(1)

    def capture(self) -> None:
        import torch

        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):  # warm up: compile every kernel before capture
                self.step()
        torch.cuda.current_stream().wait_stream(stream)
        self.reset()
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.step()
        self.reset()

    def run(self, steps: int, graphed: bool) -> float:
        """Seconds for ``steps`` decode steps (after a reset)."""
        import torch

        self.reset()
        sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
        sync()
        t = time.perf_counter()
        for _ in range(steps):
            if graphed:
                self.graph.replay()
            else:
                self.step()
        sync()
        return time.perf_counter() - t


def engine_torch_decoder(
    cfg: dict[str, Any],
    sd: dict[str, Any],
    context: int,
    steps: int,
    caches: tuple[list[Any], list[Any]] | None,
) -> tuple[Any, Any]:
    """The engine's own torch model, through the API it had when this was written.

    ``caches``: per-layer ``[slots, n_kv_heads, head_dim]`` K and V to share (the kernel
    decoder's, so the first-step logits of both paths can be compared). Returns
    ``(run(steps) -> seconds, first_logits() -> [1, vocab])``; raises if the API has moved on.
    """
    import torch

    from graphwright.engine.config import ModelConfig
    from graphwright.engine.model import AttentionInputs, Transformer

    mcfg = ModelConfig(**cfg)
    dev, dt = sd["model.embed_tokens.weight"].device, sd["model.embed_tokens.weight"].dtype
    model = Transformer.from_state_dict(mcfg, sd, dtype=dt, device=dev)
    slots = context + steps + 1
    nkv, d = cfg["num_key_value_heads"], cfg["head_dim"]
    if caches is None:
        kc = [torch.randn(slots, nkv, d, device=dev).to(dt) for _ in range(cfg["num_hidden_layers"])]
        vc = [torch.randn(slots, nkv, d, device=dev).to(dt) for _ in range(cfg["num_hidden_layers"])]
    else:
        kc, vc = caches

    def step(token: torch.Tensor, pos: int) -> torch.Tensor:
        attn = AttentionInputs(
            k_cache=kc,
            v_cache=vc,
            write_slots=torch.tensor([pos], device=dev),
            read_slots=torch.arange(pos + 1, device=dev)[None],
            mask=None,
        )
        return model(token, torch.tensor([[pos]], device=dev), attn)

    @torch.inference_mode()
    def run(n: int) -> float:
        token = torch.zeros(1, 1, dtype=torch.int64, device=dev)
        sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
        sync()
        t = time.perf_counter()
        for s in range(n):
            token = step(token, context + s)[:, -1].argmax(-1, keepdim=True)
        sync()
        return time.perf_counter() - t

    @torch.inference_mode()
    def first_logits() -> torch.Tensor:
        return step(torch.zeros(1, 1, dtype=torch.int64, device=dev), context)[:, -1].float()

    return run, first_logits


def hf_decoder(cfg: dict[str, Any], sd: dict[str, Any], context: int) -> Any:
    """transformers ``LlamaForCausalLM`` (eager, its default cache) with the same weights."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    dev, dt = sd["model.embed_tokens.weight"].device, sd["model.embed_tokens.weight"].dtype
    hf_cfg = LlamaConfig(
        vocab_size=cfg["vocab_size"],
        hidden_size=cfg["hidden_size"],
        intermediate_size=cfg["intermediate_size"],
        num_hidden_layers=cfg["num_hidden_layers"],
        num_attention_heads=cfg["num_attention_heads"],
        num_key_value_heads=cfg["num_key_value_heads"],
        head_dim=cfg["head_dim"],
        rms_norm_eps=cfg["rms_norm_eps"],  # rope theta: LlamaConfig's default 10000, as in TINYLLAMA
        max_position_embeddings=max(4096, context * 4),
        tie_word_embeddings=False,
    )
    # Built on the device (not on "meta"): the rotary inv_freq buffer is computed at init.
    with torch.device(dev):
        model = LlamaForCausalLM(hf_cfg).to(dt)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected and all("rotary" in m for m in missing), (missing, unexpected)
    model.eval()
    prompt = torch.randint(0, cfg["vocab_size"], (1, context), device=dev)

    @torch.inference_mode()
    def run(n: int) -> float:
        out = model(prompt, use_cache=True)
        past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
        sync()
        t = time.perf_counter()
        for _ in range(n):
            out = model(token, past_key_values=past, use_cache=True)
            past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        sync()
        return time.perf_counter() - t

    return run


def engine_decoder(
    cfg: dict[str, Any],
    sd: dict[str, Any],
    context: int,
    steps: int,
    kernels: str,
    cuda_graphs: bool = False,
    quantize: str = "none",
) -> tuple[Callable[[], float], Callable[[], None]]:
    """Batch-1 decode through the engine itself: ``LocalEngine.from_model`` with these weights.

    ``kernels`` / ``cuda_graphs`` are the engine's own switches (``EngineConfig``). Returns
    ``(run() -> seconds, close)``; ``run`` generates ``steps + 1`` greedy tokens after a
    ``context``-token prompt and times the ``steps`` decode steps between the first token (the
    prefill's) and the last, as the stream delivers them.
    """
    import torch
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models, pre_tokenizers

    from graphwright.engine.config import EngineConfig, ModelConfig
    from graphwright.engine.llm import LocalEngine
    from graphwright.engine.model import Transformer
    from graphwright.engine.sampling import SamplingParams
    from graphwright.engine.tokenizer import Tokenizer

    dev, dt = sd["model.embed_tokens.weight"].device, sd["model.embed_tokens.weight"].dtype
    max_len = context + steps + 16
    mcfg = ModelConfig(**cfg, max_position_embeddings=max(2048, max_len))
    model = Transformer.from_state_dict(mcfg, sd, dtype=dt, device=dev, quantize=quantize)  # type: ignore[arg-type]
    # Random weights, so any tokenizer with the model's vocabulary will do: one word per id.
    words = HFTokenizer(models.WordLevel({f"t{i}": i for i in range(cfg["vocab_size"])}, unk_token="t0"))
    words.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    ecfg = EngineConfig(
        model="random-llama",
        kernels=kernels,  # type: ignore[arg-type]
        cuda_graphs=cuda_graphs,
        max_num_seqs=1,
        max_model_len=max_len,
        num_blocks=-(-max_len // 16) + 1,
        prefix_caching=False,
    )
    engine = LocalEngine.from_model(model, Tokenizer(words.to_str()), ecfg)
    g = torch.Generator().manual_seed(2)
    prompt = torch.randint(0, cfg["vocab_size"], (context,), generator=g).tolist()
    params = SamplingParams(temperature=0.0, max_tokens=steps + 1, ignore_eos=True)

    def run() -> float:
        stamps = [time.perf_counter() for _ in engine.submit(prompt, params)]
        assert len(stamps) == steps + 1, f"expected {steps + 1} tokens, got {len(stamps)}"
        return stamps[-1] - stamps[0]

    return run, engine.close


# --------------------------------------------------------------------------------------------


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
