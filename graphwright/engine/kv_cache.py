"""Paged KV cache: fixed-size blocks, one block table per sequence, and a prefix cache.

The cache tensors hold ``num_blocks * block_size`` slots per layer; a sequence owns a list of
blocks (its block table) and token ``i`` of it lives in slot
``table[i // block_size] * block_size + i % block_size``.

Prefix cache: every full block is named by a hash of its tokens chained with the hash of the
block before it, so a name stands for the whole prefix up to that block. A new sequence whose
prompt starts with the same tokens takes those blocks as they are (shared, reference-counted)
and computes only the rest. Blocks nobody uses any more stay cached until their space is
needed, then the least recently used is evicted.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch


class KVCache:
    """The storage: per layer, keys and values for every slot.

    One extra block, ``scratch_block``, follows the ``num_blocks`` that sequences own. No
    sequence is given it; it starts zeroed (CUDA-graph padding rows may write finite values
    there). A batched decode step points each short row's padding at it, so a padded read always
    sees finite values: the attention mask gives them weight 0, which a NaN from an unwritten
    slot would survive (NaN * 0 is NaN).
    """

    def __init__(
        self,
        num_layers: int,
        num_blocks: int,
        block_size: int,
        n_kv_heads: int,
        head_dim: int,
        dtype: torch.dtype,
        device: str | torch.device,
    ) -> None:
        slots = (num_blocks + 1) * block_size
        self.scratch_block = num_blocks
        self.scratch_slot = num_blocks * block_size
        # torch.empty touches no memory: pages are committed only as blocks are first written.
        self.k = [
            torch.empty(slots, n_kv_heads, head_dim, dtype=dtype, device=device) for _ in range(num_layers)
        ]
        self.v = [
            torch.empty(slots, n_kv_heads, head_dim, dtype=dtype, device=device) for _ in range(num_layers)
        ]
        for t in self.k + self.v:
            t[self.scratch_slot :].zero_()


@dataclass
class BlockTable:
    """One sequence's blocks, and how many of its tokens have a slot."""

    blocks: list[int] = field(default_factory=list)
    num_tokens: int = 0
    num_cached_tokens: int = 0  # tokens whose KV came from the prefix cache
    hashes: list[int] = field(default_factory=list)  # chained hash of each full block


@dataclass
class PrefixCacheStats:
    queries: int = 0  # sequences that looked up their prompt
    query_tokens: int = 0
    hit_tokens: int = 0  # tokens whose KV was reused
    hit_blocks: int = 0

    @property
    def hit_rate(self) -> float:
        return self.hit_tokens / self.query_tokens if self.query_tokens else 0.0


def _chain(parent: int | None, tokens: Sequence[int]) -> int:
    return hash((parent, tuple(tokens)))


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, prefix_caching: bool = True) -> None:
        self.num_blocks, self.block_size, self.prefix_caching = num_blocks, block_size, prefix_caching
        self._free: deque[int] = deque(range(num_blocks))
        self._ref = [0] * num_blocks
        self._hash_of: list[int | None] = [None] * num_blocks
        self._by_hash: dict[int, int] = {}
        self._evictable: OrderedDict[int, None] = OrderedDict()  # cached, unused; oldest first
        self.stats = PrefixCacheStats()

    @property
    def num_free(self) -> int:
        return len(self._free) + len(self._evictable)

    def slot(self, table: BlockTable, pos: int) -> int:
        return table.blocks[pos // self.block_size] * self.block_size + pos % self.block_size

    def _match(self, tokens: Sequence[int]) -> list[int]:
        # At least one token is always left to compute: its logits give the next token.
        bs, parent = self.block_size, None
        blocks: list[int] = []
        if not self.prefix_caching:
            return blocks
        for i in range((len(tokens) - 1) // bs):
            parent = _chain(parent, tokens[i * bs : (i + 1) * bs])
            block = self._by_hash.get(parent)
            if block is None:
                break
            blocks.append(block)
        return blocks

    def blocks_needed(self, tokens: Sequence[int]) -> int:
        """Blocks that admitting ``tokens`` would take from the free pool (for the scheduler)."""
        matched = self._match(tokens)
        pooled = sum(1 for b in matched if self._ref[b] == 0)  # evictable now, in use after
        return -(-len(tokens) // self.block_size) - len(matched) + pooled

    def allocate(self, tokens: Sequence[int]) -> BlockTable | None:
        """Give a sequence slots for all of ``tokens``, reusing cached prefix blocks; None if full."""
        if self.blocks_needed(tokens) > self.num_free:
            return None
        matched = self._match(tokens)
        for b in matched:
            self._take(b)
        table = BlockTable(blocks=list(matched), num_tokens=len(matched) * self.block_size)
        table.num_cached_tokens = table.num_tokens
        table.hashes = [h for h in (self._hash_of[b] for b in matched) if h is not None]
        self.stats.queries += 1
        self.stats.query_tokens += len(tokens)
        self.stats.hit_tokens += table.num_cached_tokens
        self.stats.hit_blocks += len(matched)
        while table.num_tokens < len(tokens):
            self.append_slot(table)
        return table

    def can_append(self, table: BlockTable) -> bool:
        return table.num_tokens % self.block_size != 0 or self.num_free > 0

    def append_slot(self, table: BlockTable) -> int:
        """Reserve the slot for the sequence's next token and return it."""
        if table.num_tokens % self.block_size == 0:
            table.blocks.append(self._new_block())
        slot = self.slot(table, table.num_tokens)
        table.num_tokens += 1
        return slot

    def commit(self, table: BlockTable, tokens: Sequence[int]) -> None:
        """Publish the sequence's full blocks (whose KV is now written) to the prefix cache."""
        if not self.prefix_caching:
            return
        bs = self.block_size
        full = min(len(tokens), table.num_tokens) // bs
        while len(table.hashes) < full:
            i = len(table.hashes)
            h = _chain(table.hashes[-1] if table.hashes else None, tokens[i * bs : (i + 1) * bs])
            table.hashes.append(h)
            block = table.blocks[i]
            if h not in self._by_hash and self._hash_of[block] is None:
                self._by_hash[h] = block
                self._hash_of[block] = h

    def free(self, table: BlockTable) -> None:
        for b in reversed(table.blocks):  # the tail goes first when evicted: prefixes live longest
            self._ref[b] -= 1
            if self._ref[b] == 0:
                if self._hash_of[b] is not None:
                    self._evictable[b] = None
                else:
                    self._free.append(b)
        table.blocks, table.num_tokens = [], 0

    def _take(self, block: int) -> None:
        self._evictable.pop(block, None)
        self._ref[block] += 1

    def _new_block(self) -> int:
        if self._free:
            block = self._free.popleft()
        elif self._evictable:
            block, _ = self._evictable.popitem(last=False)
            h = self._hash_of[block]
            if h is not None and self._by_hash.get(h) == block:
                del self._by_hash[h]
            self._hash_of[block] = None
        else:
            raise RuntimeError("out of KV-cache blocks")  # the scheduler checks before it asks
        self._ref[block] = 1
        return block
