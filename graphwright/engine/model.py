"""A Llama-family decoder in plain torch: the reference every faster path is checked against.

RMSNorm -> grouped-query attention with RoPE -> RMSNorm -> SwiGLU, repeated, then a final norm
and the (optionally tied) output head. The arithmetic follows Hugging Face's ``LlamaModel`` op
for op in float32, so greedy decoding gives the same tokens. Two fusions that change no
arithmetic are applied: q/k/v share one matmul, and so do the gate and up projections (each
output is still the same dot product of one weight row with the input).

With ``use_kernels`` (``Transformer.set_kernels``) the same weights run through the Triton kernels
of ``graphwright.engine.kernels`` instead: RMSNorm fused with the residual add, RoPE in place,
fused SwiGLU, flash attention for fresh prompts, paged attention over the block tables for
decode steps, and the int8 matmul. That path needs CUDA tensors (or ``TRITON_INTERPRET=1``); it
is checked against this torch path, which stays the reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from graphwright.engine.config import ModelConfig, Quantize
from graphwright.engine.quant import Int4Linear, Int8Linear


@dataclass
class AttentionInputs:
    """Where each layer writes the new keys/values and which cache slots it attends over.

    ``k_cache[layer]`` / ``v_cache[layer]`` are ``[num_slots, n_kv_heads, head_dim]``: the paged
    cache's blocks laid end to end, so that a slot is ``block * block_size + offset``.
    """

    k_cache: list[Tensor]
    v_cache: list[Tensor]
    write_slots: Tensor  # [B * T] slot of each new token
    read_slots: Tensor  # [B, L] slots of each sequence's context (new tokens included); padding: finite
    mask: Tensor | None  # [B, 1, T, L] bool, True = attend; None = attend to all L
    fresh: bool = False  # the context is just the new tokens: attend causally, no gather
    # The paged view of the same context, for the kernels' decode attention (T == 1):
    block_tables: Tensor | None = None  # [B, max_blocks] int32 physical block of each logical block
    seq_lens: Tensor | None = None  # [B] int32 context length, the new token included
    block_size: int = 0


# What stands in for ``model(input_ids, positions, attn)`` on decode steps: CUDA graphs, or the
# torch.compile'd model.
DecodeStep = Callable[[Tensor, Tensor, AttentionInputs], Tensor]


def _kernels() -> ModuleType:
    """The Triton kernels, imported on first use: triton is an optional dependency (``[gpu]``)."""
    from graphwright.engine import kernels

    return kernels


def _linear(weight: Tensor) -> nn.Linear:
    """An ``nn.Linear`` around an existing weight (no bias), skipping the default init."""
    lin = nn.Linear.__new__(nn.Linear)
    nn.Module.__init__(lin)
    lin.in_features, lin.out_features = weight.shape[1], weight.shape[0]
    lin.weight = nn.Parameter(weight, requires_grad=False)
    lin.register_parameter("bias", None)
    return lin


class RMSNorm(nn.Module):
    def __init__(self, weight: Tensor, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(weight, requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        if dtype == torch.float32:
            # The same arithmetic as below, in order, as one op: fewer dispatches per decode step.
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dtype)

    def fused(self, x: Tensor, residual: Tensor | None) -> tuple[Tensor, Tensor]:
        """Kernel path: ``residual += x`` and the norm of the sum in one pass; (normed, residual)."""
        return _kernels().rmsnorm(x, self.weight, self.eps, residual=residual)  # type: ignore[no-any-return]


def rope_inv_freq(cfg: ModelConfig) -> Tensor:
    dim = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    s = cfg.rope_scaling
    if s is None:
        return inv_freq
    if s.rope_type == "linear":
        return inv_freq / s.factor
    # llama3: long wavelengths are slowed by `factor`, short ones kept, a smooth blend between.
    low_wavelen = s.original_max_position_embeddings / s.low_freq_factor
    high_wavelen = s.original_max_position_embeddings / s.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / s.factor, inv_freq)
    smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) / (
        s.high_freq_factor - s.low_freq_factor
    )
    blended = (1 - smooth) * scaled / s.factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, blended, scaled)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, wqkv: nn.Module, wo: nn.Module) -> None:
        super().__init__()
        self.n_heads, self.n_kv, self.head_dim = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        )
        self.q_size, self.kv_size = self.n_heads * self.head_dim, self.n_kv * self.head_dim
        self.wqkv, self.wo = wqkv, wo  # q, k and v rows stacked: one matmul
        self.cpu_attention = False  # decode steps in C++ (Transformer.set_cpu_attention)

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, layer: int, attn: AttentionInputs | None
    ) -> Tensor:
        bsz, seqlen, _ = x.shape
        qkv = self.wqkv(x)
        # q and k heads get RoPE together (the same per-element arithmetic, half the ops).
        qk = qkv[..., : self.q_size + self.kv_size].view(bsz, seqlen, self.n_heads + self.n_kv, self.head_dim)
        # transformers' rotate_half(qk) * sin, i.e. cat(-x2, x1) * sin, as roll(qk) * cat(-sin, sin):
        # bit for bit the same numbers (negation is exact), in fewer ops. cos, sin: [B, T, 1, D].
        qk = qk * cos + qk.roll(self.head_dim // 2, -1) * sin
        q = qk[:, :, : self.n_heads].transpose(1, 2)  # [B, H, T, D]
        k = qk[:, :, self.n_heads :]  # [B, T, KV, D]
        v = qkv[..., self.q_size + self.kv_size :].view(bsz, seqlen, self.n_kv, self.head_dim)
        scale = self.head_dim**-0.5
        if attn is not None:
            kc, vc = attn.k_cache[layer], attn.v_cache[layer]
            kc.index_copy_(0, attn.write_slots, k.reshape(-1, self.n_kv, self.head_dim).to(kc.dtype))
            vc.index_copy_(0, attn.write_slots, v.reshape(-1, self.n_kv, self.head_dim).to(vc.dtype))
        if attn is None or attn.fresh:  # plain causal attention over the tokens given
            out = F.scaled_dot_product_attention(
                q, k.transpose(1, 2), v.transpose(1, 2), is_causal=seqlen > 1, scale=scale, enable_gqa=True
            )
        elif seqlen == 1 and self.cpu_attention and attn.seq_lens is not None:
            # A decode step, straight over the cache's slots: no gather of the context.
            q3 = q.reshape(bsz, self.n_heads, self.head_dim)
            out = torch.ops.graphwright.decode_attention(q3, kc, vc, attn.read_slots, attn.seq_lens, scale)
            out = out.unsqueeze(2)
        else:
            out = self._attend_cached(q, kc, vc, attn)
        return self.wo(out.transpose(1, 2).reshape(bsz, seqlen, self.q_size))

    def _attend_cached(self, q: Tensor, kc: Tensor, vc: Tensor, attn: AttentionInputs) -> Tensor:
        """Gather each row's context from the cache and attend to it; q and out are [B, H, T, D]."""
        bsz, ctx = attn.read_slots.shape
        keys = kc.index_select(0, attn.read_slots.reshape(-1)).view(bsz, ctx, self.n_kv, self.head_dim)
        values = vc.index_select(0, attn.read_slots.reshape(-1)).view(bsz, ctx, self.n_kv, self.head_dim)
        # Every slot read here holds finite values, masked or not: padding points at the KV
        # cache's zeroed scratch slot (a NaN in a masked slot would survive: NaN * 0 is NaN).
        return F.scaled_dot_product_attention(
            q,
            keys.transpose(1, 2),
            values.transpose(1, 2),
            attn_mask=attn.mask,
            scale=self.head_dim**-0.5,
            enable_gqa=True,
        )

    def forward_kernels(
        self, x: Tensor, positions: Tensor, inv_freq: Tensor, layer: int, attn: AttentionInputs | None
    ) -> Tensor:
        """:meth:`forward` through the Triton kernels; ``positions`` is ``[B * T]``."""
        kern = _kernels()
        bsz, seqlen, _ = x.shape
        qkv = self.wqkv(x).view(bsz * seqlen, self.n_heads + 2 * self.n_kv, self.head_dim)
        q, k, v = qkv.split([self.n_heads, self.n_kv, self.n_kv], dim=1)  # views, [B * T, heads, D]
        kern.rope_(q, k, positions, inv_freq=inv_freq)  # in place, in qkv
        scale = self.head_dim**-0.5
        if attn is not None:
            kc, vc = attn.k_cache[layer], attn.v_cache[layer]
            kc.index_copy_(0, attn.write_slots, k.to(kc.dtype))
            vc.index_copy_(0, attn.write_slots, v.to(vc.dtype))
        if attn is None or attn.fresh:  # each row is one whole prompt: causal flash attention
            cu_seqlens = torch.arange(0, (bsz + 1) * seqlen, seqlen, dtype=torch.int32, device=x.device)
            out = kern.prefill_attention(q, k, v, cu_seqlens, seqlen, scale)
        elif seqlen == 1 and attn.block_tables is not None and attn.seq_lens is not None:
            # A decode step: paged attention straight over the blocks, no gather.
            paged_shape = (-1, attn.block_size, self.n_kv, self.head_dim)
            out = kern.decode_attention(
                q, kc.view(paged_shape), vc.view(paged_shape), attn.block_tables, attn.seq_lens, scale
            )
        else:  # new tokens after cached ones (a prefix-cache hit): the torch gather
            q4 = q.view(bsz, seqlen, self.n_heads, self.head_dim).transpose(1, 2)
            out = self._attend_cached(q4, kc, vc, attn).transpose(1, 2)
        return self.wo(out.reshape(bsz, seqlen, self.q_size))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig, w_gate_up: nn.Module, w_down: nn.Module) -> None:
        super().__init__()
        self.hidden = cfg.intermediate_size
        self.w_gate_up, self.w_down = w_gate_up, w_down  # gate and up rows stacked

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.w_gate_up(x).split(self.hidden, dim=-1)
        return self.w_down(F.silu(gate) * up)

    def forward_kernels(self, x: Tensor) -> Tensor:
        return self.w_down(_kernels().swiglu(self.w_gate_up(x)))  # gate|up halves, fused


class Block(nn.Module):
    def __init__(
        self, input_layernorm: RMSNorm, attn: Attention, post_attention_layernorm: RMSNorm, mlp: MLP
    ) -> None:
        super().__init__()
        self.input_layernorm, self.attn = input_layernorm, attn
        self.post_attention_layernorm, self.mlp = post_attention_layernorm, mlp

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, layer: int, attn: AttentionInputs | None
    ) -> Tensor:
        h = x + self.attn(self.input_layernorm(x), cos, sin, layer, attn)
        return h + self.mlp(self.post_attention_layernorm(h))

    def forward_kernels(
        self,
        x: Tensor,
        residual: Tensor | None,
        positions: Tensor,
        inv_freq: Tensor,
        layer: int,
        attn: AttentionInputs | None,
    ) -> tuple[Tensor, Tensor]:
        """Kernel path: each norm also adds the residual stream; returns (mlp output, residual)."""
        h, residual = self.input_layernorm.fused(x, residual)
        x = self.attn.forward_kernels(h, positions, inv_freq, layer, attn)
        h, residual = self.post_attention_layernorm.fused(x, residual)
        return self.mlp.forward_kernels(h), residual


class Transformer(nn.Module):
    def __init__(
        self,
        cfg: ModelConfig,
        embed: Tensor,
        layers: list[Block],
        norm: RMSNorm,
        lm_head: nn.Module,
        use_kernels: bool = False,
    ) -> None:
        super().__init__()
        self.config = cfg
        self.embed_tokens = nn.Embedding.from_pretrained(embed, freeze=True)
        self.layers = nn.ModuleList(layers)
        self.norm = norm
        self.lm_head = lm_head
        self.inv_freq: Tensor
        self.register_buffer("inv_freq", rope_inv_freq(cfg).to(embed.device), persistent=False)
        self.cpu_attention = False  # as its Attention modules' (set_cpu_attention)
        self.set_kernels(use_kernels)

    def set_kernels(self, on: bool) -> Transformer:
        """Run through the Triton kernels (CUDA, or CPU under ``TRITON_INTERPRET=1``) or plain torch."""
        self.use_kernels = on
        for m in self.modules():
            if isinstance(m, Int8Linear):
                m.use_kernels = on
        return self

    def set_cpu_attention(self, on: bool) -> Transformer:
        """Decode steps' attention through the C++ kernel (``cpu_kernels/attention.cpp``; float32
        caches on a CPU), or through a gather of the context and SDPA."""
        self.cpu_attention = on
        for m in self.modules():
            if isinstance(m, Attention):
                m.cpu_attention = on
        return self

    def forward(
        self,
        input_ids: Tensor,  # [B, T]
        positions: Tensor,  # [B, T]
        attn: AttentionInputs | None = None,
        logits_index: Tensor | None = None,  # [B] which position of each row needs logits; None: all
    ) -> Tensor:
        x = self.embed_tokens(input_ids)
        if self.use_kernels:
            return self._forward_kernels(x, positions, attn, logits_index)
        # The RoPE angles are computed in float32 as transformers does, then cast.
        freqs = positions.float()[..., None, None] * self.inv_freq  # [B, T, 1, head_dim / 2]
        cos, sin = freqs.cos().to(x.dtype), freqs.sin().to(x.dtype)
        cos, sin = torch.cat((cos, cos), dim=-1), torch.cat((-sin, sin), dim=-1)  # see Attention
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, i, attn)
        if logits_index is not None:
            # Only the positions that are sampled from need the (large) output projection.
            x = x[torch.arange(x.shape[0], device=x.device), logits_index][:, None]
        return self.lm_head(self.norm(x)).float()

    def _forward_kernels(
        self, x: Tensor, positions: Tensor, attn: AttentionInputs | None, logits_index: Tensor | None
    ) -> Tensor:
        # The residual stream travels beside x: each fused norm adds the previous sublayer's
        # output into it. RoPE angles are computed inside the kernel from the positions.
        residual, flat_pos = None, positions.reshape(-1)
        for i, layer in enumerate(cast(list[Block], self.layers)):
            x, residual = layer.forward_kernels(x, residual, flat_pos, self.inv_freq, i, attn)
        assert residual is not None
        if logits_index is not None:
            rows = torch.arange(x.shape[0], device=x.device)
            x, residual = x[rows, logits_index][:, None], residual[rows, logits_index][:, None]
        return self.lm_head(self.norm.fused(x, residual)[0]).float()

    @classmethod
    def from_state_dict(
        cls,
        cfg: ModelConfig,
        state: dict[str, Tensor],
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        quantize: Quantize = "none",
        use_kernels: bool = False,
        cpu_kernel: bool = True,
    ) -> Transformer:
        """Build from Hugging Face Llama names (``model.layers.0.self_attn.q_proj.weight`` ...).

        Pre-fused ``qkv_proj`` / ``gate_up_proj`` weights (what the GGUF cache stores) are taken
        as they are; separate ones are stacked here. ``cpu_kernel``: quantized linears on a CPU run
        their decode steps on our C++ kernel where it builds (else torch's weight-only kernels).
        """

        def get(*names: str) -> Tensor:
            missing = [n for n in names if n not in state]
            if missing:
                raise KeyError(f"weight {missing[0]} missing from the checkpoint")
            return torch.cat([state[n] for n in names]) if len(names) > 1 else state[names[0]]

        def linear(fused: str, *parts: str) -> nn.Module:
            w = state[fused] if fused in state else get(*parts)
            if quantize == "int4" and w.shape[1] % Int4Linear.group_size == 0:
                return Int4Linear(w.to(device), cpu_kernel)
            if quantize != "none":  # int8, and int4's odd-width leftovers
                return Int8Linear(w.to(device), cpu_kernel)
            return _linear(w.to(device=device, dtype=dtype))

        def norm(name: str) -> RMSNorm:
            return RMSNorm(get(name).to(device=device, dtype=dtype), cfg.rms_norm_eps)

        layers = []
        for i in range(cfg.num_hidden_layers):
            p, a = f"model.layers.{i}.", f"model.layers.{i}.self_attn."
            wqkv = linear(
                a + "qkv_proj.weight", a + "q_proj.weight", a + "k_proj.weight", a + "v_proj.weight"
            )
            mlp = MLP(
                cfg,
                linear(p + "mlp.gate_up_proj.weight", p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"),
                linear(p + "mlp.down_proj.weight", p + "mlp.down_proj.weight"),
            )
            attn = Attention(cfg, wqkv, linear(a + "o_proj.weight", a + "o_proj.weight"))
            layers.append(
                Block(
                    norm(p + "input_layernorm.weight"), attn, norm(p + "post_attention_layernorm.weight"), mlp
                )
            )
        embed = get("model.embed_tokens.weight").to(device=device, dtype=dtype)
        tied = cfg.tie_word_embeddings or "lm_head.weight" not in state
        head_w = state["model.embed_tokens.weight"] if tied else get("lm_head.weight")
        if quantize != "none":
            # int8 for the head in int4 mode too: 4-bit logits cost accuracy (top-1 agreement
            # with float32 0.86 instead of 0.98 on SmolLM2), and its int8 matmul is ~15% of a step.
            head: nn.Module = Int8Linear(head_w.to(device), cpu_kernel)
        else:
            head = _linear(embed if tied else head_w.to(device=device, dtype=dtype))  # tied: one tensor
        return cls(cfg, embed, layers, norm("model.norm.weight"), head, use_kernels).eval()
