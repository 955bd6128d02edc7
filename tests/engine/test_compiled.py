"""The torch.compile'd decode step (the engine's ``compile`` off a CPU; on a CPU it is the
exported step, ``test_exported.py``), run here on the CPU with the real int4 model: the eager
tokens up to near ties, no compiling at run time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from graphwright.engine.compiled import CompiledDecode
from graphwright.engine.llm import LocalEngine


def _graphs() -> int:
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def test_compiled_decode_gives_the_eager_tokens(
    weights_cache: Path, chat_prompts: list[str], decodes_like_eager: Any
) -> None:
    eager = LocalEngine.load("smollm2", cache_dir=str(weights_cache), quantize="int4")
    compiled = LocalEngine.load("smollm2", cache_dir=str(weights_cache), quantize="int4")
    kv = compiled.scheduler.kv
    step = CompiledDecode(compiled.model, kv.k, kv.v, kv.scratch_slot)
    compiled.scheduler.decode_step = step
    step.stance = "fail_on_recompile"  # a step that needs a graph the warm-up did not build fails
    graphs_at_load = _graphs()
    assert graphs_at_load >= 2  # batch 1 and batch >= 2, compiled by the warm-up
    try:
        decodes_like_eager(compiled, eager, [eager.encode_chat([{"role": "user", "content": p}])
                                             for p in chat_prompts[:4]])
    finally:
        compiled.close()
        eager.close()
    # Batch 1 and batch >= 2, every context length: both graphs were built at load.
    assert _graphs() == graphs_at_load
