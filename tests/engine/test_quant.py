"""The weight-only quantized linears: int4 keeps a Q4_1 GGUF's weights exactly; both stay close."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from graphwright.engine.config import ModelConfig
from graphwright.engine.model import Transformer
from graphwright.engine.quant import Int4Linear, Int8Linear
from graphwright.engine.sampling import SamplingParams
from graphwright.engine.weights import load_weights


def test_int4_gives_back_the_gguf_q4_1_weights_exactly(weights_cache: Path) -> None:
    # SmolLM2's GGUF stores every layer matrix as Q4_1; the loader dequantizes them to float32.
    # Re-quantized here, each one must come back bit for bit: the int4 model is the file's model.
    w = load_weights("smollm2", weights_cache)
    names = [n for n in w.state_dict if n.startswith("model.layers.") and n.endswith("proj.weight")]
    assert len(names) >= 4 * w.config.num_hidden_layers  # qkv, o, gate_up, down (fused or not)
    for name in names:
        weight = w.state_dict[name]
        assert torch.equal(Int4Linear(weight).dequantize(), weight), name


def test_int4_on_weights_that_are_not_on_its_grid() -> None:
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(64, 96, generator=g)
    weight[3, :32] = 0.25  # a constant group: scale 0, every q 0, still exact
    lin = Int4Linear(weight)
    deq = lin.dequantize()
    assert torch.equal(deq[3, :32], weight[3, :32])
    # Round to nearest on each group's 16-level grid: off by at most half a step.
    step = lin.scales.repeat_interleave(Int4Linear.group_size, dim=1)
    assert ((deq - weight).abs() <= step / 2 + 1e-6).all()
    assert lin.q.max().item() <= 15


@pytest.mark.parametrize("cpu_kernel", [True, False], ids=["our-kernel", "torch-kernel"])
@pytest.mark.parametrize("rows", [1, 5, 40])  # decode rows take a weight-only kernel, prompts the bf16 matmul
@pytest.mark.parametrize("linear", [Int4Linear, Int8Linear])
def test_quantized_matmul_matches_its_dequantized_weight(linear: Any, rows: int, cpu_kernel: bool) -> None:
    g = torch.Generator().manual_seed(1)
    lin = linear(torch.randn(96, 128, generator=g) / 10, cpu_kernel)
    assert (lin.kernel is not None) == cpu_kernel  # this machine builds it (VNNI)
    x = torch.randn(2, rows, 128, generator=g)
    out = lin(x)
    w = lin.dequantize() if linear is Int4Linear else lin.weight.float() * lin.scales[:, None]
    ref = F.linear(x, w)
    assert out.shape == (2, rows, 96) and out.dtype == torch.float32
    # Activations rounded to bfloat16 (8 bits of mantissa), or to int8 per block of 32 in ours.
    assert (out - ref).abs().max().item() < 0.02 * ref.abs().max().item()


def test_int4_needs_whole_groups_of_input_features() -> None:
    with pytest.raises(ValueError, match=r"groups of 32.*\[8, 48\]"):
        Int4Linear(torch.randn(8, 48))


def test_int4_model_keeps_int8_where_4_bits_do_not_fit() -> None:
    # hidden 48 is no multiple of 32: the projections that read it fall back to int8; the down
    # projection (input 64) and nothing else takes int4. The head is int8 in int4 mode.
    cfg = ModelConfig(
        vocab_size=40, hidden_size=48, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, head_dim=24, max_position_embeddings=64,
    )
    g = torch.Generator().manual_seed(2)
    p = "model.layers.0."
    shapes = {
        "self_attn.q_proj": (48, 48), "self_attn.k_proj": (24, 48), "self_attn.v_proj": (24, 48),
        "self_attn.o_proj": (48, 48), "mlp.gate_proj": (64, 48), "mlp.up_proj": (64, 48),
        "mlp.down_proj": (48, 64),
    }
    state = {p + k + ".weight": torch.randn(*s, generator=g) / 7 for k, s in shapes.items()}
    for norm in ("model.norm", p + "input_layernorm", p + "post_attention_layernorm"):
        state[norm + ".weight"] = torch.ones(48)
    state["model.embed_tokens.weight"] = torch.randn(40, 48, generator=g)
    model = Transformer.from_state_dict(cfg, state, quantize="int4")
    block: Any = model.layers[0]
    assert isinstance(block.mlp.w_down, Int4Linear)
    assert isinstance(block.mlp.w_gate_up, Int8Linear) and isinstance(block.attn.wqkv, Int8Linear)
    assert isinstance(model.lm_head, Int8Linear)
    ref = Transformer.from_state_dict(cfg, state)
    ids = torch.tensor([[1, 5, 9, 2]])
    pos = torch.arange(4)[None]
    with torch.inference_mode():
        got, want = model(ids, pos)[0, -1], ref(ids, pos)[0, -1]
    assert torch.cosine_similarity(got, want, dim=0).item() > 0.99


@pytest.mark.parametrize(
    ("quantize", "kernels"), [("int8", "auto"), ("int4", "auto"), ("int4", "torch")]
)
def test_quantized_engine_decodes_tokens_the_fp32_model_ranks_high(
    quantize: str, kernels: str, engine: Any, weights_cache: Path, chat_prompts: list[str]
) -> None:
    # Decode steps run the CPU weight-only kernels (batch 1 and a batch of 3): ours ("auto"), or
    # torch's. Each token they pick must be one the float32 model, fed the same text, also ranks
    # near the top: its log-probability within 1 nat of float32's best (near ties may flip;
    # garbage would not).
    from graphwright.engine.llm import LocalEngine

    quant = LocalEngine.load("smollm2", cache_dir=str(weights_cache), quantize=quantize, kernels=kernels)
    assert (quant.model.lm_head.kernel is not None) == (kernels == "auto")
    try:
        prompts = [engine.encode_chat([{"role": "user", "content": p}]) for p in chat_prompts[:3]]
        greedy = SamplingParams(temperature=0.0, max_tokens=24, min_tokens=24)
        single = quant.generate(prompts[0], greedy)
        with quant._wake:  # all queued before the first step: batched decode steps
            batch = [quant.submit(p, greedy) for p in prompts]
        outs = [single] + [h.result() for h in batch]
    finally:
        quant.close()
    worst = 0.0
    for prompt, out in zip([prompts[0], *prompts], outs, strict=True):
        tokens = out.outputs[0].token_ids
        ids = torch.tensor([prompt + tokens])
        with torch.inference_mode():
            logits = engine.model(ids, torch.arange(ids.shape[1])[None])[0]
            eos = torch.zeros(logits.shape[-1], dtype=torch.bool)
            eos[engine.tokenizer.eos_token_ids] = True
            logp = logits.masked_fill(eos, float("-inf")).log_softmax(-1)  # min_tokens masks eos
        steps = logp[len(prompt) - 1 : -1]  # the distribution each output token was chosen from
        chosen = steps.gather(1, torch.tensor(tokens)[:, None])[:, 0]
        worst = max(worst, (steps.max(dim=1).values - chosen).max().item())
    assert worst < 1.0, f"{quantize}: a decoded token is {worst:.2f} nats below float32's best"
