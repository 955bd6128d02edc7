"""The kernel path's decode step replayed as CUDA graphs (``EngineConfig.cuda_graphs``)."""

from __future__ import annotations

import torch
from torch import Tensor

from graphwright.engine.model import AttentionInputs, Transformer


class DecodeGraphs:
    """The kernel path's decode step captured as CUDA graphs, one per batch-size bucket.

    A small model decodes launch-bound: replaying a graph issues the step's dozens of kernel
    launches at once. A batch is padded up to the next bucket (1, 2, 4, 8, ... ``max_batch``):
    padded rows read token 0 at position 0 and write their K/V into ``scratch_block``, a cache
    block the block manager never hands out, so they disturb no sequence. Each replay copies the
    step's inputs into static buffers first; batches that fit no bucket run eagerly.
    CUDA only (the capture refuses anything else).
    """

    def __init__(
        self,
        model: Transformer,
        k_cache: list[Tensor],
        v_cache: list[Tensor],
        block_size: int,
        max_batch: int,
        max_blocks: int,
        scratch_block: int,
    ) -> None:
        dev = model.embed_tokens.weight.device
        self.model, self.k_cache, self.v_cache, self.block_size = model, k_cache, v_cache, block_size
        self.buckets = sorted({min(1 << i, max_batch) for i in range(max_batch.bit_length() + 1)})
        self.scratch_block, self.scratch_slot = scratch_block, scratch_block * block_size
        self.ids = torch.zeros(max_batch, 1, dtype=torch.long, device=dev)
        self.pos = torch.zeros(max_batch, 1, dtype=torch.long, device=dev)
        self.write = torch.full((max_batch,), self.scratch_slot, dtype=torch.long, device=dev)
        self.tables = torch.full((max_batch, max_blocks), scratch_block, dtype=torch.int32, device=dev)
        self.lens = torch.ones(max_batch, dtype=torch.int32, device=dev)
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, Tensor]] = {}
        self._capture()

    def _inputs(self, b: int) -> AttentionInputs:
        tables = self.tables[:b]
        # read_slots and mask are unused by the kernels' decode attention (it reads the tables).
        return AttentionInputs(
            self.k_cache, self.v_cache, self.write[:b], tables, None,
            block_tables=tables, seq_lens=self.lens[:b], block_size=self.block_size,
        )  # fmt: skip

    @torch.inference_mode()
    def _capture(self) -> None:
        if self.ids.device.type != "cuda" or not self.model.use_kernels:
            raise ValueError("CUDA graphs need the model on a CUDA device with the Triton kernels on")
        pool = None
        for b in reversed(self.buckets):  # largest first: the smaller graphs share its memory pool
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(2):  # compile every Triton kernel outside the capture
                    self.model(self.ids[:b], self.pos[:b], self._inputs(b))
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                logits = self.model(self.ids[:b], self.pos[:b], self._inputs(b))
            pool = graph.pool()
            self.graphs[b] = (graph, logits)
        torch.cuda.synchronize()

    def __call__(self, input_ids: Tensor, positions: Tensor, attn: AttentionInputs) -> Tensor:
        """Logits ``[B, 1, vocab]`` of one decode step, as ``model(input_ids, positions, attn)``."""
        b = input_ids.shape[0]
        bucket = next((n for n in self.buckets if n >= b), None)
        tables, lens = attn.block_tables, attn.seq_lens
        if bucket is None or tables is None or lens is None or tables.shape[1] > self.tables.shape[1]:
            return self.model(input_ids, positions, attn)  # type: ignore[no-any-return]
        self.ids[:b].copy_(input_ids)
        self.pos[:b].copy_(positions)
        self.write[:b].copy_(attn.write_slots)
        self.tables[:b, : tables.shape[1]].copy_(tables)  # columns past a row's length are never read
        self.lens[:b].copy_(lens)
        self.ids[b:bucket].zero_()
        self.pos[b:bucket].zero_()
        self.write[b:bucket].fill_(self.scratch_slot)
        self.tables[b:bucket].fill_(self.scratch_block)
        self.lens[b:bucket].fill_(1)
        return self._replay(bucket)[:b].clone()  # the next replay (of any bucket) reuses this memory

    def _replay(self, bucket: int) -> Tensor:
        graph, logits = self.graphs[bucket]
        graph.replay()
        return logits
