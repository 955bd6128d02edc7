"""The torch path's decode step through ``torch.compile`` (``EngineConfig.compile`` off a CPU,
and on a CPU where the step cannot be exported: ``exported.py`` is the CPU's, 1.29x faster).

On a CPU a small model's decode step is mostly weight reads plus ~1,000 small ops, each paying
Python and dispatcher overhead. Inductor fuses the small ops (norms, RoPE, SwiGLU, residual adds)
into generated C++ loops and runs the whole step without the Python layer in between; the
matmuls stay with the BLAS library, so the arithmetic that matters is unchanged (logits move by
~1e-5, greedy tokens stay the same in our checks).

Two graphs are compiled at load, so that no request waits for the compiler: batch 1 (no mask)
and batch >= 2 (masked), each with the context length symbolic. The first load compiles (about
a minute or two on 2 cores); later loads find the kernels in torch's inductor cache
(``TORCHINDUCTOR_CACHE_DIR``, default under the temp directory) but still trace (~40 s).
On a CPU, Inductor writes the step's glue in C++ as well (``cpp_wrapper``): the generated Python
wrapper cost ~1 ms a step calling ~300 kernels and ops one by one. Measured on SmolLM2 int4,
compiled, A/B in one process (``benchmarks/engine_compile_options.py``): 1.19-1.21x faster steps.
The first compile takes no longer (int4 from an empty cache: 136 s, torch's defaults 154 s).
Prompts (prefill) run eagerly: their shapes vary too much to be worth a graph each. A decode
step that the two graphs do not cover (a batch of 32 or more, where the quantized linears switch
to their prompt path) runs eagerly too, rather than holding every request for a compile.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from graphwright.engine.model import AttentionInputs, Transformer

# Inductor's options for the CPU decode step (see the module docstring). The wrapper is built
# apart from the kernels, at -O1 rather than -O3 (int4's first compile: 136 s instead of 304 s).
CPU_OPTIONS: dict[str, Any] = {"cpp_wrapper": True, "cpp_wrapper_build_separate": True}


class CompiledDecode:
    """``model(input_ids, positions, attn)`` for decode steps, compiled; same call, same result."""

    def __init__(
        self,
        model: Transformer,
        k_cache: list[Tensor],
        v_cache: list[Tensor],
        scratch_slot: int,
        options: dict[str, Any] | None = None,  # Inductor's. None: CPU_OPTIONS on a CPU; {}: torch's defaults
    ):
        if model.use_kernels:
            raise ValueError("compile applies to the torch path; the Triton kernels are compiled already")
        self.model = model
        # What a step that would need a new graph does: run eagerly ("eager_on_recompile"), or
        # raise ("fail_on_recompile", for tests that prove the warm-up covered a workload).
        self.stance = "eager_on_recompile"
        if options is None and model.embed_tokens.weight.device.type == "cpu":
            options = CPU_OPTIONS
        self._fn = torch.compile(model, dynamic=True, options=options)
        self._warm_up(k_cache, v_cache, scratch_slot)

    @torch.inference_mode()
    def _warm_up(self, k_cache: list[Tensor], v_cache: list[Tensor], scratch_slot: int) -> None:
        # The compiler specializes sizes 0 and 1, and a size equal to a model constant (3 KV heads,
        # the 2 of int4's [groups, rows, 2] scales) would be tied to it: the batch here is 7 and
        # the context length 37, sizes no weight has, so that both stay symbolic. Every
        # read and write goes to the scratch slot (finite values in, finite values out), so no
        # sequence's cache is touched. Inputs are contiguous, as the scheduler's are: a stride
        # equal to a size would be tied to it too.
        dev = self.model.embed_tokens.weight.device
        # A second model of another kind in this process (int8 after int4, say) is a recompile of
        # the same forward, and Dynamo's automatic dynamic shapes would then make its weights'
        # sizes symbolic (they differ from the first model's): a generic graph, measured 1.8x
        # slower a step (int4 after int8: 27.7 vs 15.0 ms). Everything that varies is symbolic
        # already (dynamic=True), so it is off for these compiles.
        with torch._dynamo.config.patch(automatic_dynamic_shapes=False):
            # Batch 1 last: Dynamo tries the newest graph's guards first, and a batch-1 step
            # (latency) then pays for one graph's guards (~0.3 ms here), not for two.
            for bsz in (7, 1):
                ctx = 37
                slots = torch.full((bsz, ctx), scratch_slot, dtype=torch.long, device=dev)
                mask = None
                if bsz > 1:
                    mask = torch.ones(bsz, 1, 1, ctx, dtype=torch.bool, device=dev)
                write = torch.full((bsz,), scratch_slot, dtype=torch.long, device=dev)
                lens = torch.full((bsz,), ctx, dtype=torch.int32, device=dev)
                attn = AttentionInputs(k_cache, v_cache, write, slots, mask, seq_lens=lens)
                ids = torch.zeros(bsz, 1, dtype=torch.long, device=dev)
                self._fn(ids, torch.full((bsz, 1), ctx - 1, device=dev), attn)

    def __call__(self, input_ids: Tensor, positions: Tensor, attn: AttentionInputs) -> Tensor:
        with torch.compiler.set_stance(self.stance):
            return self._fn(input_ids, positions, attn)  # type: ignore[no-any-return]
