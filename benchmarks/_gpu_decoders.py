"""Batch-1 decode loops timed by `engine_gpu.py`: random-weight Llama weights, a decode loop
built from the Triton kernels, the engine's torch model, the whole engine, and transformers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

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


