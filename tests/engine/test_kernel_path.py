"""The engine's Triton kernel path against its torch path, on a tiny random-weight Llama.

Runs the kernels on CPU under the Triton interpreter (``TRITON_INTERPRET=1``, set in this
directory's conftest before any kernel module is imported), so the wiring is tested here, not
only each kernel: fused rmsnorm + residual, in-place RoPE, fused SwiGLU, flash prefill
attention, paged decode attention over the scheduler's block tables, and the int8 matmul.
Shapes are tiny because the interpreter is slow.
"""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers

from graphwright.engine.config import EngineConfig, Kernels, ModelConfig
from graphwright.engine.cuda_graphs import DecodeGraphs
from graphwright.engine.kv_cache import KVCache
from graphwright.engine.llm import LocalEngine
from graphwright.engine.model import Attention, AttentionInputs, Transformer
from graphwright.engine.sampling import SamplingParams
from graphwright.engine.tokenizer import Tokenizer

# The same architecture as the engine's models: GQA (4 query heads over 2 kv heads), SwiGLU, RoPE.
CFG = ModelConfig(
    vocab_size=256,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    rope_theta=10000.0,
    rms_norm_eps=1e-5,
    max_position_embeddings=256,
)
# fp32 kernels vs fp32 torch ops differ only in summation order and libm cos/sin: ~1e-6 relative.
LOGITS_RTOL = 1e-4
# The int8 kernel path runs fp32 activations; the torch int8 path on CPU rounds them to bf16.
INT8_RTOL = 3e-2


def _random_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Hugging Face Llama names -> random weights, scaled so the logits are well spread (no near ties)."""
    g = torch.Generator().manual_seed(seed)
    h, f, v = CFG.hidden_size, CFG.intermediate_size, CFG.vocab_size
    q, kv = CFG.num_attention_heads * CFG.head_dim, CFG.num_key_value_heads * CFG.head_dim

    def w(rows: int, cols: int) -> torch.Tensor:
        return torch.randn(rows, cols, generator=g) / cols**0.5

    def norm() -> torch.Tensor:
        return 1 + 0.1 * torch.randn(h, generator=g)

    sd = {
        "model.embed_tokens.weight": torch.randn(v, h, generator=g),
        "model.norm.weight": norm(),
        "lm_head.weight": 4 * w(v, h),
    }
    for i in range(CFG.num_hidden_layers):
        p = f"model.layers.{i}."
        sd[p + "input_layernorm.weight"] = norm()
        sd[p + "post_attention_layernorm.weight"] = norm()
        sd[p + "self_attn.q_proj.weight"] = 2 * w(q, h)
        sd[p + "self_attn.k_proj.weight"] = 2 * w(kv, h)
        sd[p + "self_attn.v_proj.weight"] = w(kv, h)
        sd[p + "self_attn.o_proj.weight"] = w(h, q)
        sd[p + "mlp.gate_proj.weight"] = w(f, h)
        sd[p + "mlp.up_proj.weight"] = w(f, h)
        sd[p + "mlp.down_proj.weight"] = w(h, f)
    return sd


def _byte_tokenizer() -> Tokenizer:
    """A 256-token byte-level tokenizer (no merges), for the engine's detokenizer."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = HFTokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return Tokenizer(tok.to_str())


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return _random_state()


def _rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float((got - ref).norm() / ref.norm())


@torch.inference_mode()
def test_prefill_and_decode_logits_match_the_torch_path(state: dict[str, torch.Tensor]) -> None:
    model = Transformer.from_state_dict(CFG, state)
    g = torch.Generator().manual_seed(1)
    # Two prompts of 19 tokens through the paged cache (block 8: the second block is partly used,
    # and the two sequences own different, non-adjacent blocks), then one decode step each.
    block, n = 8, 19
    ids = torch.randint(0, CFG.vocab_size, (2, n), generator=g)
    pos = torch.arange(n)[None].expand(2, n)
    tables = torch.tensor([[5, 1, 3], [0, 4, 6]])  # physical blocks per sequence
    slots = (tables[:, :, None] * block + torch.arange(block)).view(2, -1)  # [2, 24]

    def run(use_kernels: bool) -> tuple[torch.Tensor, torch.Tensor]:
        model.set_kernels(use_kernels)
        kv = KVCache(
            CFG.num_hidden_layers, 8, block, CFG.num_key_value_heads, CFG.head_dim, torch.float32, "cpu"
        )
        for t in kv.k + kv.v:
            t.fill_(float("nan"))  # an unwritten slot that is read poisons the logits
        prefill = AttentionInputs(kv.k, kv.v, slots[:, :n].reshape(-1), slots[:, :n], None, fresh=True)
        first = model(ids, pos, prefill)  # [2, n, vocab]
        lens = torch.tensor([n + 1, n + 1])
        decode = AttentionInputs(
            kv.k,
            kv.v,
            slots[:, n],
            slots[:, : n + 1],
            None,
            block_tables=tables.to(torch.int32),
            seq_lens=lens.to(torch.int32),
            block_size=block,
        )
        nxt = model(first[:, -1].argmax(-1)[:, None], (lens - 1)[:, None], decode)  # [2, 1, vocab]
        return first, nxt

    ref_first, ref_next = run(False)
    got_first, got_next = run(True)
    assert torch.isfinite(got_first).all() and torch.isfinite(got_next).all()
    assert _rel_err(got_first, ref_first) < LOGITS_RTOL
    assert _rel_err(got_next, ref_next) < LOGITS_RTOL
    assert torch.equal(got_first.argmax(-1), ref_first.argmax(-1))
    assert torch.equal(got_next.argmax(-1), ref_next.argmax(-1))


@torch.inference_mode()
def test_int8_kernel_path_is_close_to_the_torch_int8_path(state: dict[str, torch.Tensor]) -> None:
    model = Transformer.from_state_dict(CFG, state, quantize="int8")
    ids = torch.randint(0, CFG.vocab_size, (1, 9), generator=torch.Generator().manual_seed(2))
    pos = torch.arange(9)[None]
    ref = model.set_kernels(False)(ids, pos)
    got = model.set_kernels(True)(ids, pos)
    assert _rel_err(got, ref) < INT8_RTOL
    assert torch.equal(got[0, -1].argmax(), ref[0, -1].argmax())


class _EagerBuckets(DecodeGraphs):
    """DecodeGraphs with each "graph" run eagerly: its buckets, padding and static buffers on CPU."""

    def _capture(self) -> None:
        pass

    def _replay(self, bucket: int) -> torch.Tensor:
        return self.model(self.ids[:bucket], self.pos[:bucket], self._inputs(bucket))  # type: ignore[no-any-return]


def _generate(
    state: dict[str, torch.Tensor],
    kernels: Kernels,
    prompts: list[list[int]],
    new: int,
    buckets: bool = False,
) -> list[list[int]]:
    """Greedy tokens of each prompt, all decoded in one batch; ``buckets``: through _EagerBuckets."""
    model = Transformer.from_state_dict(CFG, state)
    # Block 4 and a few tokens: sequences cross block boundaries while decoding, and their
    # block tables and lengths differ within each batched decode step.
    cfg = EngineConfig(model="tiny-random", kernels=kernels, block_size=4, num_blocks=32, max_num_seqs=4)
    engine = LocalEngine.from_model(model, _byte_tokenizer(), cfg)
    assert engine.model.use_kernels == (kernels == "triton")
    # On a CPU, "auto" runs decode attention in C++ (cpu_kernels/attention.cpp), "torch" SDPA.
    assert {m.cpu_attention for m in model.modules() if isinstance(m, Attention)} == {kernels == "auto"}
    steps: list[list[int]] = []  # seq_lens of each decode step the model ran

    def model_call(
        ids: torch.Tensor, pos: torch.Tensor, attn: AttentionInputs, logits_index: torch.Tensor | None = None
    ) -> torch.Tensor:
        if attn.seq_lens is not None:  # a decode step
            steps.append(attn.seq_lens.tolist())
        return model(ids, pos, attn, logits_index)

    engine.scheduler.model = model_call  # type: ignore[assignment]
    # Poison every unwritten slot so that a stray read shows: the kernels read only slots that
    # were written; the torch path gathers whole padded rows, whose padding must read the
    # cache's zeroed scratch block (left as it is here) and nothing else.
    kv = engine.scheduler.kv
    for t in kv.k + kv.v:
        t[: kv.scratch_slot].fill_(float("nan"))
    if buckets:
        # Block 31 as the padded rows' scratch: these few short sequences never reach it.
        graphs = _EagerBuckets(model, kv.k, kv.v, 4, 4, max_blocks=8, scratch_block=31)
        graphs.model = model_call  # type: ignore[assignment]
        engine.scheduler.decode_step = graphs
    try:
        greedy = SamplingParams(temperature=0.0, max_tokens=new, ignore_eos=True)
        # Holding the loop's lock until all are queued: the first step admits every prompt, so
        # each decode step is one batch of sequences of different lengths.
        with engine._wake:
            handles = [engine.submit(p, greedy) for p in prompts]
        out = [h.result().outputs[0].token_ids for h in handles]
    finally:
        engine.close()
    assert engine.blocks.num_free == 32  # every block came back
    # The first decode step batches every sequence, each at its own length (+ padding rows).
    assert len(steps) == new - 1 and len(set(steps[0][: len(prompts)])) == len(prompts)
    if buckets:
        assert all(lens[len(prompts) :] == [1] for lens in steps)  # 3 rows padded to the bucket of 4
    return out


def test_greedy_generation_through_the_engine_matches_the_torch_path(state: dict[str, torch.Tensor]) -> None:
    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(0, CFG.vocab_size, (n,), generator=g).tolist() for n in (3, 9, 6)]
    ref = _generate(state, "torch", prompts, 6)
    got = _generate(state, "triton", prompts, 6)
    assert got == ref
    assert all(len(t) == 6 for t in got)
    # The CUDA-graph runner's bucketing, padding and static buffers, replayed eagerly on CPU.
    assert _generate(state, "triton", prompts, 6, buckets=True) == ref


def test_cpu_decode_attention_through_the_engine_matches_the_torch_path(
    state: dict[str, torch.Tensor],
) -> None:
    """The C++ decode attention over the same ragged, block-crossing batches as the torch path's
    gather + SDPA (head_dim 16 here: its portable loops)."""
    g = torch.Generator().manual_seed(4)
    prompts = [torch.randint(0, CFG.vocab_size, (n,), generator=g).tolist() for n in (3, 9, 6)]
    assert _generate(state, "auto", prompts, 6) == _generate(state, "torch", prompts, 6)


def test_triton_on_cpu_without_the_interpreter_is_refused(
    state: dict[str, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRITON_INTERPRET")
    model = Transformer.from_state_dict(CFG, state)
    with pytest.raises(ValueError, match="TRITON_INTERPRET"):
        LocalEngine.from_model(model, _byte_tokenizer(), EngineConfig(kernels="triton", num_blocks=4))
    # "auto" on CPU is the torch path, and CUDA graphs are ignored there (with a log line).
    engine = LocalEngine.from_model(model, _byte_tokenizer(), EngineConfig(cuda_graphs=True, num_blocks=4))
    assert not engine.model.use_kernels and engine.scheduler.decode_step is None
    engine.close()


def test_compile_is_ignored_with_the_triton_kernels(
    state: dict[str, torch.Tensor], caplog: pytest.LogCaptureFixture
) -> None:
    model = Transformer.from_state_dict(CFG, state)
    cfg = EngineConfig(kernels="triton", compile=True, num_blocks=4)
    engine = LocalEngine.from_model(model, _byte_tokenizer(), cfg)
    assert engine.model.use_kernels and engine.scheduler.decode_step is None
    assert "compile=True ignored" in caplog.text
    engine.close()
