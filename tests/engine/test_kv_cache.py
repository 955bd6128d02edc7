"""Block manager: paging, freeing, prefix sharing, eviction and hit counts."""

from __future__ import annotations

from graphwright.engine.kv_cache import BlockManager


def test_slots_follow_the_block_table() -> None:
    bm = BlockManager(num_blocks=8, block_size=4)
    table = bm.allocate(list(range(10)))
    assert table is not None
    assert len(table.blocks) == 3 and table.num_tokens == 10
    slots = [bm.slot(table, i) for i in range(10)]
    assert len(set(slots)) == 10
    assert slots[5] == table.blocks[1] * 4 + 1
    assert bm.num_free == 5


def test_append_takes_a_new_block_only_at_a_boundary() -> None:
    bm = BlockManager(num_blocks=4, block_size=4, prefix_caching=False)
    table = bm.allocate([1, 2, 3])
    assert table is not None
    bm.append_slot(table)  # 4th token: same block
    assert len(table.blocks) == 1 and bm.num_free == 3
    bm.append_slot(table)  # 5th token: a new block
    assert len(table.blocks) == 2 and bm.num_free == 2


def test_free_returns_every_block() -> None:
    bm = BlockManager(num_blocks=6, block_size=4, prefix_caching=False)
    tables = [bm.allocate(list(range(7))) for _ in range(3)]
    assert all(t is not None for t in tables)
    assert bm.num_free == 0
    assert bm.allocate([1]) is None  # full: the caller must wait
    for t in tables:
        assert t is not None
        bm.free(t)
    assert bm.num_free == 6


def test_prefix_blocks_are_shared_and_counted() -> None:
    bm = BlockManager(num_blocks=16, block_size=4)
    system = list(range(100, 112))  # three full blocks
    first = bm.allocate([*system, 1, 2])
    assert first is not None
    bm.commit(first, [*system, 1, 2])
    second = bm.allocate([*system, 7, 8, 9])
    assert second is not None
    assert second.num_cached_tokens == 12
    assert second.blocks[:3] == first.blocks[:3]  # the same physical blocks
    assert second.blocks[3] != first.blocks[3]
    assert bm.stats.hit_blocks == 3 and bm.stats.hit_tokens == 12
    assert bm.stats.queries == 2 and bm.stats.query_tokens == 14 + 15


def test_a_different_prefix_does_not_hit() -> None:
    bm = BlockManager(num_blocks=16, block_size=4)
    a = bm.allocate([1, 2, 3, 4, 5, 6, 7, 8, 9])
    assert a is not None
    bm.commit(a, [1, 2, 3, 4, 5, 6, 7, 8, 9])
    b = bm.allocate([1, 2, 3, 4, 0, 6, 7, 8, 9])  # first block equal, second differs
    assert b is not None
    assert b.num_cached_tokens == 4
    c = bm.allocate([0, 2, 3, 4, 5, 6, 7, 8, 9])  # differs in the first block: nothing reused
    assert c is not None and c.num_cached_tokens == 0


def test_the_last_token_is_always_computed() -> None:
    bm = BlockManager(num_blocks=8, block_size=4)
    toks = list(range(8))
    a = bm.allocate(toks)
    assert a is not None
    bm.commit(a, toks)
    b = bm.allocate(toks)  # fully cached prompt: its last block is recomputed for the logits
    assert b is not None
    assert b.num_cached_tokens == 4


def test_cached_blocks_survive_their_sequence_until_evicted() -> None:
    bm = BlockManager(num_blocks=4, block_size=4)
    toks = list(range(9))
    a = bm.allocate(toks)
    assert a is not None
    bm.commit(a, toks)
    bm.free(a)
    assert bm.num_free == 4  # cached but evictable blocks count as free
    b = bm.allocate(toks)
    assert b is not None and b.num_cached_tokens == 8
    bm.free(b)
    # Unrelated sequences that need every block evict the cache, oldest (the tails) first.
    c = bm.allocate(list(range(50, 66)))
    assert c is not None and len(c.blocks) == 4
    bm.free(c)
    d = bm.allocate(toks)
    assert d is not None and d.num_cached_tokens == 0


def test_shared_blocks_are_freed_only_when_the_last_user_ends() -> None:
    bm = BlockManager(num_blocks=6, block_size=4)
    toks = list(range(9))
    a = bm.allocate(toks)
    assert a is not None
    bm.commit(a, toks)
    b = bm.allocate(toks)
    assert b is not None
    bm.free(a)
    # b still holds the two shared blocks: allocating everything else cannot take them.
    c = bm.allocate(list(range(200, 200 + 4 * bm.num_free)))
    assert c is not None
    assert not set(c.blocks) & set(b.blocks[:2])
