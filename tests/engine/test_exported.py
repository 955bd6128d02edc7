"""The decode step compiled ahead of time (AOTInductor) on a CPU: the eager tokens on the real
model (float32 exactly, int4 up to near ties), eager steps where no library applies, the build
cache, and the model's own tensors as the library's constants."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from graphwright.engine import exported
from graphwright.engine.config import ModelConfig
from graphwright.engine.exported import ExportedDecode, NotExportable
from graphwright.engine.kv_cache import KVCache
from graphwright.engine.llm import LocalEngine
from graphwright.engine.model import AttentionInputs, Transformer
from graphwright.engine.sampling import SamplingParams


@pytest.fixture(scope="module", params=["none", "int4"])
def engines(request: pytest.FixtureRequest, engine: Any, weights_cache: Path) -> Any:
    """(compiled, eager) engines of one precision: float32, and int4 (our CPU decode kernel)."""
    quantize = request.param
    compiled = LocalEngine.load("smollm2", cache_dir=str(weights_cache), quantize=quantize, compile=True)
    eager = engine if quantize == "none" else LocalEngine.load(
        "smollm2", cache_dir=str(weights_cache), quantize=quantize
    )
    yield compiled, eager
    compiled.close()
    if eager is not engine:
        eager.close()


def test_exported_decode_gives_the_eager_tokens(
    engines: Any, chat_prompts: list[str], decodes_like_eager: Any
) -> None:
    compiled, eager = engines
    step = compiled.scheduler.decode_step
    assert isinstance(step, ExportedDecode)
    used: list[int] = []
    runner_for = step._runner_for

    def recording(batch: int, attn: AttentionInputs) -> Any:
        runner = runner_for(batch, attn)
        used.append(batch if runner is not None else -batch)
        return runner

    step._runner_for = recording  # type: ignore[method-assign]
    try:
        decodes_like_eager(compiled, eager, [eager.encode_chat([{"role": "user", "content": p}])
                                             for p in chat_prompts[:4]])
    finally:
        del step._runner_for
    # Every step of both runs went through a library: batch 1, then batches of 4 down to 2.
    assert used and min(used) > 0 and {1, 4} <= set(used)


def test_a_step_no_library_covers_runs_eagerly(engines: Any, chat_prompts: list[str]) -> None:
    # 32 sequences in one decode step: the quantized linears take their prompt path at 32 rows,
    # which neither library holds. It runs on the eager model, with the eager model's tokens.
    compiled, eager = engines
    prompts = [eager.encode_chat([{"role": "user", "content": f"{p} ({i})"}]) for p in chat_prompts
               for i in range(4)]
    assert len(prompts) == 32
    params = SamplingParams(temperature=0.0, max_tokens=3, min_tokens=3)
    step = compiled.scheduler.decode_step
    batches: list[tuple[int, bool]] = []

    def recording(ids: torch.Tensor, positions: torch.Tensor, attn: Any) -> torch.Tensor:
        batches.append((ids.shape[0], step._runner_for(ids.shape[0], attn) is not None))
        return step(ids, positions, attn)  # type: ignore[no-any-return]

    compiled.scheduler.decode_step = recording
    try:
        with compiled._wake:
            handles = [compiled.submit(p, params) for p in prompts]
        outs = [h.result(timeout=300).outputs[0].token_ids for h in handles]
    finally:
        compiled.scheduler.decode_step = step
    assert (32, False) in batches and all(len(o) == 3 for o in outs)
    # The first token comes from the (eager) prefill; the next two from 32-row decode steps.
    assert outs[:4] == [eager.generate(p, params).outputs[0].token_ids for p in prompts[:4]]


# A tiny int8 Llama with our CPU kernels (its sizes multiples of 64), for what needs no real model.
TINY = ModelConfig(
    vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
)


def _tiny_model(quantize: str = "int8", cpu_kernel: bool = True) -> Transformer:
    g = torch.Generator().manual_seed(0)
    h, f, v, d = TINY.hidden_size, TINY.intermediate_size, TINY.vocab_size, TINY.head_dim
    shapes = {
        "self_attn.q_proj": (4 * d, h), "self_attn.k_proj": (2 * d, h), "self_attn.v_proj": (2 * d, h),
        "self_attn.o_proj": (h, 4 * d), "mlp.gate_proj": (f, h), "mlp.up_proj": (f, h),
        "mlp.down_proj": (h, f),
    }
    state = {"model.embed_tokens.weight": torch.randn(v, h, generator=g), "model.norm.weight": torch.ones(h)}
    for i in range(TINY.num_hidden_layers):
        p = f"model.layers.{i}."
        state |= {p + k + ".weight": torch.randn(*s, generator=g) / s[1] ** 0.5 for k, s in shapes.items()}
        for norm in ("input_layernorm", "post_attention_layernorm"):
            state[p + norm + ".weight"] = torch.ones(h)
    model = Transformer.from_state_dict(TINY, state, quantize=quantize, cpu_kernel=cpu_kernel)
    return model.set_cpu_attention(True)


@torch.inference_mode()
def test_libraries_are_cached_and_read_the_models_own_tensors() -> None:
    model = _tiny_model()
    kv = KVCache(TINY.num_hidden_layers, 4, 16, TINY.num_key_value_heads, TINY.head_dim, torch.float32, "cpu")
    ExportedDecode(model, kv.k, kv.v, kv.scratch_slot)  # built, or found built by an earlier run
    step = ExportedDecode(model, kv.k, kv.v, kv.scratch_slot)
    assert step.built == []  # the second load compiles nothing

    # A sequence of 20 tokens in blocks 2 and 0: its cache filled, then one decode step.
    slots = torch.cat([torch.arange(32, 48), torch.arange(0, 4)])[None]
    for t in kv.k + kv.v:
        t[slots[0]] = torch.randn(20, TINY.num_key_value_heads, TINY.head_dim)
    ids, pos = torch.tensor([[7]]), torch.tensor([[19]])

    def attn() -> AttentionInputs:
        lens = torch.tensor([20], dtype=torch.int32)
        return AttentionInputs(kv.k, kv.v, slots[:, -1], slots, None, seq_lens=lens)

    assert step._runner_for(1, attn()) is not None
    want = model(ids, pos, attn())
    torch.testing.assert_close(step(ids, pos, attn()), want, rtol=1e-4, atol=1e-4)
    # The library holds no copy of the weights: a change to the model's tensor is seen by it.
    head: Any = model.lm_head
    head.kernel.scales.mul_(2.0)
    torch.testing.assert_close(step(ids, pos, attn()), 2 * want, rtol=1e-4, atol=1e-4)
    head.kernel.scales.mul_(0.5)
    # Flags changed after the export (attention back to the torch path): the eager model runs.
    model.set_cpu_attention(False)
    assert step._runner_for(1, attn()) is None
    torch.testing.assert_close(step(ids, pos, attn()), want, rtol=1e-4, atol=1e-4)


def test_a_corrupt_cached_library_is_compiled_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = tmp_path / "batch1-0123.pt2"
    bad.write_bytes(b"not a zip archive")
    with caplog.at_level(logging.WARNING):
        assert exported._load(bad) is None
    assert str(bad) in caplog.text and "compiling it again" in caplog.text


def test_only_the_cpu_and_the_torch_path() -> None:
    model = _tiny_model()
    kv = KVCache(TINY.num_hidden_layers, 4, 16, TINY.num_key_value_heads, TINY.head_dim, torch.float32, "cpu")
    model.set_kernels(True)
    with pytest.raises(ValueError, match="Triton kernels"):
        ExportedDecode(model, kv.k, kv.v, kv.scratch_slot)


@torch.inference_mode()
def test_a_step_inductor_adds_constants_to_is_not_exported() -> None:
    # torch's int4 kernel (kernels="torch"): Inductor repacks its weights into constants of its
    # own, which the library would need and the model does not have. The engine then uses
    # torch.compile (LocalEngine._compiled_decode).
    model = _tiny_model("int4", cpu_kernel=False)
    kv = KVCache(TINY.num_hidden_layers, 4, 16, TINY.num_key_value_heads, TINY.head_dim, torch.float32, "cpu")
    with pytest.raises(NotExportable, match="tensors the model lacks"):
        ExportedDecode(model, kv.k, kv.v, kv.scratch_slot)
