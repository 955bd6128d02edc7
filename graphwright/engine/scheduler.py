"""Continuous batching: sequences join and leave the running batch at every step.

One :meth:`Scheduler.step` computes the next chunk of any prompt longer than
``max_prefill_tokens``, admits waiting sequences while KV blocks allow (prompts admitted together
are prefilled as one padded batch; cached prefix blocks are reused), then runs one batched decode
step for all sequences whose prompt is done, emits each sequence's new token to its own
callback, and frees the blocks of sequences that finished or were cancelled. When the blocks run
out mid-decode, the most recently admitted sequence is preempted: its blocks are freed and it
waits again at the front of the queue, to be recomputed from its tokens (nothing is dropped).
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch

from graphwright.engine.kv_cache import BlockManager, BlockTable, KVCache
from graphwright.engine.model import AttentionInputs, DecodeStep, Transformer
from graphwright.engine.sampling import SamplerState, SamplingParams, TokenConstraint, sample
from graphwright.engine.tokenizer import IncrementalDetokenizer, Tokenizer

FinishReason = Literal["stop", "length", "cancelled", "error"]
_ids = itertools.count()


@dataclass
class TokenEvent:
    """One step of one sequence: a new token (None on a bare finish) and the text it made final."""

    seq_id: int
    token_id: int | None
    text: str
    logprob: float | None = None
    top_logprobs: list[tuple[int, float]] = field(default_factory=list)
    finish_reason: FinishReason | None = None


@dataclass
class Sequence:
    prompt_ids: list[int]
    params: SamplingParams
    sampler: SamplerState
    detok: IncrementalDetokenizer
    max_tokens: int
    on_event: Callable[[TokenEvent], None]
    constraint: TokenConstraint | None = None
    seq_id: int = field(default_factory=lambda: next(_ids))
    output_ids: list[int] = field(default_factory=list)
    output_logprobs: list[float] = field(default_factory=list)
    output_top: list[list[tuple[int, float]]] = field(default_factory=list)  # top_logprobs per token
    table: BlockTable | None = None
    finish_reason: FinishReason | None = None
    cancelled: bool = False
    cached_tokens: int = 0  # prompt tokens whose KV came from the prefix cache
    computed: int = 0  # tokens of all_ids whose KV is in the cache (a prefill may take several steps)
    prefilling: bool = False  # admitted, its prompt not yet all computed: no token to decode yet

    @property
    def all_ids(self) -> list[int]:
        return self.prompt_ids + self.output_ids

    @property
    def mean_logprob(self) -> float:
        return sum(self.output_logprobs) / max(1, len(self.output_logprobs))


class Scheduler:
    def __init__(
        self,
        model: Transformer,
        tokenizer: Tokenizer,
        kv: KVCache,
        blocks: BlockManager,
        max_num_seqs: int,
        max_model_len: int,
        device: torch.device,
        decode_step: DecodeStep | None = None,
        max_prefill_tokens: int = 512,
    ) -> None:
        self.model, self.tokenizer, self.kv, self.blocks = model, tokenizer, kv, blocks
        self.decode_step = decode_step
        # Prompt tokens per prefill call: a longer prompt is computed in chunks of this size, one
        # per step, so the running batch keeps decoding between them; it also caps a batch of
        # short prompts (padded), which bounds the call's activations.
        self.max_prefill_tokens = max_prefill_tokens
        self.max_num_seqs, self.max_model_len, self.device = max_num_seqs, max_model_len, device
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.lock = threading.Lock()  # guards `waiting`, which other threads append to
        self.num_preemptions = 0
        self._eos = set(tokenizer.eos_token_ids)

    def add(self, seq: Sequence) -> None:
        with self.lock:
            self.waiting.append(seq)

    def has_work(self) -> bool:
        return bool(self.running or self.waiting)

    @torch.inference_mode()
    def step(self) -> int:
        """Admit, prefill, decode once; return how many tokens were produced."""
        self._drop_cancelled()
        produced = 0
        for seq in [s for s in self.running if s.prefilling]:  # long prompts: their next chunk
            produced += self._prefill(seq)
        # Rounds of admission: a round ends at a prompt whose first block another prompt of the
        # round is computing; the next round finds that block in the prefix cache.
        while admitted := self._admit():
            try:
                limit = self.max_prefill_tokens
                whole = [s for s in admitted if s.computed == 0 and len(s.all_ids) <= limit]
                for group in self._prefill_groups(whole):
                    produced += self._prefill_batch(group)
                batched = {s.seq_id for s in whole}
                for seq in admitted:  # after a prefix-cache hit, or a long prompt's first chunk
                    if seq.seq_id not in batched:
                        produced += self._prefill(seq)
            finally:  # on an error too: fail_all must find them
                self.running += [s for s in admitted if s.finish_reason is None]
        decoding = [s for s in self.running if not s.prefilling and s.table is not None]
        decoding = self._reserve_slots(decoding)
        if decoding:
            self._decode(decoding)
            produced += len(decoding)
        self.running = [s for s in self.running if s.finish_reason is None]
        return produced

    def _admit(self) -> list[Sequence]:
        """Take waiting sequences in order while there is room and blocks for their tokens."""
        admitted: list[Sequence] = []
        computing: set[tuple[int, ...]] = set()  # first blocks that this round's prompts compute
        bs = self.blocks.block_size
        while len(self.running) + len(admitted) < self.max_num_seqs:
            with self.lock:
                if not self.waiting:
                    break
                seq = self.waiting[0]
                first = tuple(seq.all_ids[:bs])
                if self.blocks.prefix_caching and len(first) == bs and first in computing:
                    break  # next round, after these blocks are written and cached
                table = self.blocks.allocate(seq.all_ids)
                if table is None:
                    break  # out of blocks: it waits (in order) until a running sequence ends
                self.waiting.popleft()
            seq.table, seq.computed, seq.prefilling = table, table.num_cached_tokens, True
            if not seq.output_ids:
                seq.cached_tokens = table.num_cached_tokens
            admitted.append(seq)
            if table.num_cached_tokens == 0:
                computing.add(first)
        return admitted

    def _prefill_groups(self, seqs: list[Sequence]) -> list[list[Sequence]]:
        """Split prompts into batches of at most ``max_prefill_tokens`` padded tokens each."""
        groups: list[list[Sequence]] = []
        group: list[Sequence] = []
        longest = 0
        for seq in seqs:
            n = len(seq.all_ids)
            if group and max(longest, n) * (len(group) + 1) > self.max_prefill_tokens:
                groups.append(group)
                group, longest = [], 0
            group.append(seq)
            longest = max(longest, n)
        return [*groups, group] if group else groups

    # -- model calls ----------------------------------------------------------------------

    def _prefill_batch(self, seqs: list[Sequence]) -> int:
        """Prefill whole prompts together as one ``[B, longest]`` batch, short rows padded on the right.

        Causal attention keeps each real token blind to the padding after it, so its keys, values
        and logits are those of a prefill on its own (up to the matmuls' summation order); the
        padding writes its keys and values into the scratch slot, which no sequence reads unmasked.
        """
        if len(seqs) == 1:
            return self._prefill(seqs[0])
        tables = [s.table for s in seqs if s.table is not None]
        lengths = [len(s.all_ids) for s in seqs]
        longest, dev = max(lengths), self.device
        slots = self._slot_rows(self._block_rows(tables, longest), longest)  # [B, longest]
        lens = torch.tensor(lengths, device=dev)
        pad = torch.arange(longest, device=dev)[None, :] >= lens[:, None]
        slots = slots.masked_fill(pad, self.kv.scratch_slot)
        ids = torch.tensor([s.all_ids + [0] * (longest - len(s.all_ids)) for s in seqs], device=dev)
        positions = torch.arange(longest, device=dev).expand(len(seqs), longest)
        attn = AttentionInputs(self.kv.k, self.kv.v, slots.reshape(-1), slots, None, fresh=True)
        logits = self.model(ids, positions, attn, lens - 1)
        for seq in seqs:
            assert seq.table is not None
            seq.computed, seq.prefilling = len(seq.all_ids), False
            self.blocks.commit(seq.table, seq.all_ids)
        self._accept(seqs, logits[:, -1])
        return len(seqs)


    def _prefill(self, seq: Sequence) -> int:
        """Compute the next chunk of one prompt (after what is cached); 1 if it made a token."""
        assert seq.table is not None
        ids, start = seq.all_ids, seq.computed
        n = min(len(ids), start + self.max_prefill_tokens)
        new = n - start
        dev = self.device
        slots = self._slot_rows(self._block_rows([seq.table], n), n)  # [1, n]
        q_pos = torch.arange(start, n, device=dev)
        mask = None
        if start:  # after cached tokens (a prefix-cache hit, earlier chunks) attend to them too
            mask = (torch.arange(n, device=dev)[None, :] <= q_pos[:, None])[None, None]  # [1,1,new,n]
        attn = AttentionInputs(self.kv.k, self.kv.v, slots[0, start:], slots, mask, fresh=start == 0)
        logits = self.model(
            torch.tensor([ids[start:n]], device=dev), q_pos[None], attn, torch.tensor([new - 1], device=dev)
        )
        seq.computed = n
        self.blocks.commit(seq.table, ids[:n])
        if n < len(ids):
            return 0  # more chunks to come; the sampled position is not the prompt's last
        seq.prefilling = False
        self._accept([seq], logits[:, -1])
        return 1

    def _decode(self, seqs: list[Sequence]) -> None:
        tables = [s.table for s in seqs if s.table is not None]
        lengths = [t.num_tokens for t in tables]
        longest = max(lengths)
        dev = self.device
        blocks = self._block_rows(tables, longest)  # [B, blocks of the longest]
        slots = self._slot_rows(blocks, longest)  # [B, longest]
        lens = torch.tensor(lengths, device=dev)
        write = slots.gather(1, (lens - 1)[:, None]).view(-1)
        mask = None
        if len(seqs) > 1:
            valid = torch.arange(longest, device=dev)[None, :] < lens[:, None]
            mask = valid[:, None, None, :]
            # A short row's padding reads the zeroed scratch slot, never an unwritten one.
            slots = slots.masked_fill(~valid, self.kv.scratch_slot)
        attn = AttentionInputs(
            self.kv.k,
            self.kv.v,
            write,
            slots,
            mask,
            block_tables=blocks.to(torch.int32),  # the kernels' paged attention reads these
            seq_lens=lens.to(torch.int32),
            block_size=self.blocks.block_size,
        )
        inputs = torch.tensor([[s.output_ids[-1]] for s in seqs], device=dev)
        logits = (self.decode_step or self.model)(inputs, (lens - 1)[:, None], attn)
        for s in seqs:
            assert s.table is not None
            self.blocks.commit(s.table, s.all_ids[: s.table.num_tokens])
        self._accept(seqs, logits[:, -1])

    def _block_rows(self, tables: list[BlockTable], length: int) -> torch.Tensor:
        """``[B, blocks]`` block ids covering ``length`` tokens of each table (short rows: 0s)."""
        nblocks = -(-length // self.blocks.block_size)
        rows = [t.blocks[:nblocks] + [0] * (nblocks - len(t.blocks[:nblocks])) for t in tables]
        return torch.tensor(rows, device=self.device)

    def _slot_rows(self, blocks: torch.Tensor, length: int) -> torch.Tensor:
        """``[B, length]`` cache slots of the first ``length`` tokens of each row of ``blocks``."""
        bs = self.blocks.block_size
        # A new [B, length] tensor (not a view of a wider one): a compiled decode step would
        # otherwise see strides that vary from step to step and recompile.
        pos = torch.arange(length, device=self.device)
        return blocks[:, pos // bs] * bs + pos % bs

    def _reserve_slots(self, seqs: list[Sequence]) -> list[Sequence]:
        """Give each decoding sequence a slot for its pending token, preempting if blocks run out."""
        ready: list[Sequence] = []
        queue = list(seqs)
        while queue:
            seq = queue.pop(0)
            assert seq.table is not None
            while not self.blocks.can_append(seq.table):
                victim = queue.pop() if queue else seq  # the newest sequence gives way
                self._preempt(victim)
                if victim is seq:
                    break
            else:
                self.blocks.append_slot(seq.table)
                ready.append(seq)
        return ready

    def _preempt(self, seq: Sequence) -> None:
        assert seq.table is not None
        self.blocks.free(seq.table)
        seq.table = None
        self.num_preemptions += 1
        self.running.remove(seq)
        with self.lock:
            self.waiting.appendleft(seq)

    # -- tokens out -----------------------------------------------------------------------

    def _accept(self, seqs: list[Sequence], logits: torch.Tensor) -> None:
        result = sample(logits, [s.sampler for s in seqs], [s.constraint for s in seqs])
        for i, seq in enumerate(seqs):
            tok = result.tokens[i]
            if seq.constraint is not None:
                seq.constraint.accept_token(tok)
            seq.output_ids.append(tok)
            seq.output_logprobs.append(result.logprobs[i])
            seq.output_top.append(result.top_logprobs[i])
            reason: FinishReason | None = None
            text = ""
            if (tok in self._eos and not seq.params.ignore_eos) or tok in seq.params.stop_token_ids:
                reason = "stop"
            else:
                text = seq.detok.add(tok)
                if seq.detok.stopped or (seq.constraint is not None and seq.constraint.is_terminated()):
                    reason = "stop"
                elif len(seq.output_ids) >= seq.max_tokens or len(seq.all_ids) >= self.max_model_len:
                    reason = "length"
            if reason is not None:
                text += seq.detok.flush()
                self._finish(seq, reason)
            seq.on_event(
                TokenEvent(seq.seq_id, tok, text, result.logprobs[i], result.top_logprobs[i], reason)
            )

    def _finish(self, seq: Sequence, reason: FinishReason) -> None:
        seq.finish_reason = reason
        if seq.table is not None:
            self.blocks.free(seq.table)
            seq.table = None

    def fail_all(self) -> None:
        """After an internal error: end every sequence, so no caller waits forever."""
        with self.lock:
            seqs = list(self.waiting) + self.running
            self.waiting.clear()
        self.running = []
        for s in seqs:
            if s.finish_reason is None:
                self._finish(s, "error")
                s.on_event(TokenEvent(s.seq_id, None, "", finish_reason="error"))

    def _drop_cancelled(self) -> None:
        with self.lock:
            gone = [s for s in self.waiting if s.cancelled]
            for s in gone:
                self.waiting.remove(s)
        gone += [s for s in self.running if s.cancelled]
        for s in gone:
            self._finish(s, "cancelled")
            s.on_event(TokenEvent(s.seq_id, None, "", finish_reason="cancelled"))
        self.running = [s for s in self.running if s.finish_reason is None]
