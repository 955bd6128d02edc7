"""The CPU decode step compiled ahead of time with AOTInductor (``EngineConfig.compile`` on a CPU).

``torch.compile`` (``compiled.py``) makes every weight an input of the step's graph: ~490 tensors
for SmolLM2 int8, each checked by Dynamo's guards, listed by the Python wrapper and unwrapped by
the generated C++ at every call, ~1 µs apiece, a tenth of an int8 step. Here the step is exported
once (``torch.export``) and compiled by AOTInductor into a shared library whose constants are the
model's own weights, handed over by name without a copy; a step passes only what changes: token
ids, positions, cache slots, lengths and the KV cache. Measured on SmolLM2 int8, A/B in one
process (``benchmarks/engine_compile_options.py``): 1.29x faster steps than torch.compile (8.1
vs 10.3 ms); float32 keeps the eager model's exact greedy tokens.

Two libraries are built: batch 1 (no mask) and batches of 2 to 31 (masked), each for any context
length. A batch of 32 or more (where the quantized linears switch to their prompt path) runs
eagerly, as does a step whose model flags were changed after the export. The libraries are cached
by a hash of the exported graph (``$GRAPHWRIGHT_CACHE/decode``), so that a later load only
exports (a few seconds) and loads; the first build takes about half a minute per library on 2 cores.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from graphwright.engine import cpu_kernels
from graphwright.engine.config import cache_root
from graphwright.engine.model import AttentionInputs, Transformer

log = logging.getLogger(__name__)

MAX_BATCH = 31  # the quantized linears take their prompt path from 32 rows on
_FORMAT = "1"  # bump when what goes into a library changes in a way the graph does not show


def cache_dir() -> Path:
    return cache_root() / "decode" / f"torch-{torch.__version__.split('+')[0]}"


class NotExportable(RuntimeError):
    """This model's decode step cannot run as an exported library (the engine then uses
    torch.compile)."""


class _Step(nn.Module):
    """The model's decode call with flat tensor inputs, the form ``torch.export`` takes."""

    def __init__(self, model: Transformer) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        input_ids: Tensor,
        positions: Tensor,
        write_slots: Tensor,
        read_slots: Tensor,
        seq_lens: Tensor,
        k_cache: list[Tensor],
        v_cache: list[Tensor],
        mask: Tensor | None = None,
    ) -> Tensor:
        attn = AttentionInputs(list(k_cache), list(v_cache), write_slots, read_slots, mask, seq_lens=seq_lens)
        return self.model(input_ids, positions, attn)


class ExportedDecode:
    """``model(input_ids, positions, attn)`` for decode steps, compiled ahead of time; same call."""

    def __init__(self, model: Transformer, k_cache: list[Tensor], v_cache: list[Tensor], scratch_slot: int):
        if model.embed_tokens.weight.device.type != "cpu":
            raise ValueError("ExportedDecode runs on a CPU; on other devices the engine uses CompiledDecode")
        if model.use_kernels:
            raise ValueError("compile applies to the torch path; the Triton kernels are compiled already")
        self.model = model
        self._flags = _flags(model)
        step = _Step(model).eval()
        # The constants each library asks for, by name: the model's tensors themselves.
        self._tensors = {
            **dict(step.named_parameters(remove_duplicate=False)),
            **dict(step.named_buffers(remove_duplicate=False)),
        }
        self.built: list[str] = []  # libraries compiled by this load, not found in the cache
        self._single = self._library(step, "batch1", k_cache, v_cache, scratch_slot, batch=1)
        self._batched = self._library(step, "batched", k_cache, v_cache, scratch_slot, batch=7)

    def __call__(self, input_ids: Tensor, positions: Tensor, attn: AttentionInputs) -> Tensor:
        runner = self._runner_for(input_ids.shape[0], attn)
        if runner is None:
            return self.model(input_ids, positions, attn)
        assert attn.seq_lens is not None
        inputs = [input_ids, positions, attn.write_slots, attn.read_slots, attn.seq_lens]
        inputs += [*attn.k_cache, *attn.v_cache]
        if attn.mask is not None:
            inputs.append(attn.mask)
        return runner.loader.boxed_run(inputs)[0]  # type: ignore[no-any-return]

    def _runner_for(self, batch: int, attn: AttentionInputs) -> Any:
        """The library for this step, or None where it would not be the model's own computation."""
        if attn.seq_lens is None or attn.fresh or attn.read_slots.shape[1] < 2:
            return None
        if _flags(self.model) != self._flags:
            return None
        if batch == 1 and attn.mask is None:
            return self._single
        if 2 <= batch <= MAX_BATCH and attn.mask is not None:
            return self._batched
        return None

    @torch.inference_mode()
    def _library(
        self, step: _Step, name: str, k_cache: list[Tensor], v_cache: list[Tensor], scratch: int, batch: int
    ) -> Any:
        # Example inputs: every read and write goes to the scratch slot. Sizes 0 and 1 would be
        # specialized, so the context length is 37 and the batch (when dynamic) 7.
        ctx = 37
        args: tuple[Any, ...] = (
            torch.zeros(batch, 1, dtype=torch.long),
            torch.full((batch, 1), ctx - 1, dtype=torch.long),
            torch.full((batch,), scratch, dtype=torch.long),
            torch.full((batch, ctx), scratch, dtype=torch.long),
            torch.full((batch,), ctx, dtype=torch.int32),
            list(k_cache),
            list(v_cache),
        )
        context = torch.export.Dim("context", min=2, max=1 << 20)
        shapes: list[Any] = [{}, {}, {}, {1: context}, {}, [{}] * len(k_cache), [{}] * len(v_cache)]
        if batch > 1:
            rows = torch.export.Dim("batch", min=2, max=MAX_BATCH)
            args += (torch.ones(batch, 1, 1, ctx, dtype=torch.bool),)
            shapes = [{0: rows}, {0: rows}, {0: rows}, {0: rows, 1: context}, {0: rows},
                      shapes[5], shapes[6], {0: rows, 3: context}]
        program = torch.export.export(step, args, dynamic_shapes=tuple(shapes), strict=False)
        path = cache_dir() / f"{name}-{_key(program)}.pt2"
        runner = _load(path) if path.exists() else None
        if runner is None:
            _build(program, path)
            self.built.append(name)
            runner = _load(path)
            if runner is None:
                raise RuntimeError(f"the compiled decode step at {path} does not load (see the log)")
        names = runner.get_constant_fqns()
        missing = [n for n in names if n not in self._tensors]
        if missing:  # Inductor derived constants of its own from the weights (torch's int4 kernel)
            raise NotExportable(f"the compiled decode step asks for tensors the model lacks: {missing[:5]}")
        # user_managed: the library reads the model's tensors in place (no second copy of the
        # weights); this object keeps the model, and so them, alive.
        runner.load_constants({n: self._tensors[n] for n in names}, check_full_update=True, user_managed=True)
        return runner


def _flags(model: Transformer) -> tuple[bool, bool]:
    """What the exported graphs were traced under (set through the model's setters); a change
    sends steps back to the eager model."""
    return model.use_kernels, model.cpu_attention


def _options() -> dict[str, Any]:
    # Our C++ ops are called as C functions; else AOTInductor would run them through its
    # proxy executor, which decodes each call's arguments from JSON.
    return {
        "aot_inductor.custom_ops_to_c_shims": cpu_kernels.c_shims(),
        "aot_inductor.package_constants_in_so": False,  # the model's tensors are handed over at load
    }


def _key(program: torch.export.ExportedProgram) -> str:
    """A hash of what the library is built from: the graph, its inputs' shapes and types, the
    shape ranges, torch, this CPU's vector ISA, the thread count (written into the generated
    loops) and our ops' C signatures."""
    from torch._inductor import cpu_vec_isa

    h = hashlib.sha256()
    placeholders = [(n.name, str(n.meta.get("val"))) for n in program.graph.nodes if n.op == "placeholder"]
    parts = [
        _FORMAT,
        torch.__version__,
        str(cpu_vec_isa.pick_vec_isa()),
        str(torch.get_num_threads()),
        program.graph_module.code,
        str(placeholders),
        str(sorted(program.range_constraints.items(), key=str)),
        str(sorted((k, repr(v)) for k, v in _options().items())),
    ]
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def _build(program: torch.export.ExportedProgram, path: Path) -> None:
    log.info("compiling the decode step %s (about half a minute on 2 cores; cached after)", path.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".pt2", dir=path.parent)
    os.close(fd)
    try:
        with torch._inductor.config.patch(_options()):
            torch._inductor.aoti_compile_and_package(program, package_path=tmp)
        os.replace(tmp, path)  # whole or not at all: another process may be loading it
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load(path: Path) -> Any:
    try:
        return torch._inductor.aoti_load_package(str(path))
    except Exception as exc:  # a truncated or foreign file: build it again
        log.warning("the cached decode step %s does not load (%s); compiling it again", path, exc)
        return None
