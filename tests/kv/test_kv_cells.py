"""The KV cache's cell allocator (kv/kv-cache.{h,cpp}) through the _core.KVCache test hook: each
sequence group (serving slot) takes its cells in aligned blocks of its own, so that a request's
visible cells are runs of neighbours even when many requests decode side by side; a block is released
when none of its cells is used; when no whole block is free any free cell is taken, and the cache is
full only when no cell is free. Also the metadata contract, against a plain Python model of it, under
random operations."""
from __future__ import annotations

import numpy as np
import pytest

from pipeinfer import _core

B = _core.KVCache.block_cells


def _alloc(kv, pos, seqs):
    return kv.allocate(np.asarray(pos, np.int32), [list(s) for s in seqs])


def _runs(cells):
    """The list split where consecutive entries are not neighbouring cells: [(first cell, length)]."""
    out = []
    for c in cells:
        if out and c == out[-1][0] + out[-1][1]:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((int(c), 1))
    return out


def _decode_side_by_side(kv, n_groups, seq_group, prompt_lens, n_steps):
    """Prefills each group's canonical sequence, then decodes one token per group per step, all groups
    in one batch (a serving step). Returns each group's next position."""
    canon = [g * max(seq_group, 1) for g in range(n_groups)]
    nxt = []
    for g, n in enumerate(prompt_lens):
        _alloc(kv, range(n), [[canon[g]]] * n)
        nxt.append(n)
    for _ in range(n_steps):
        _alloc(kv, nxt, [[c] for c in canon])
        nxt = [p + 1 for p in nxt]
    return canon, nxt


def test_block_size_is_a_cache_line_of_f16_k():
    assert B == 32


def test_side_by_side_requests_see_runs_of_whole_blocks():
    n_groups, lens = 16, [3 + 7 * g for g in range(16)]
    kv = _core.KVCache(n_ctx=16 * 256, n_seq_max=16, seq_group=1)
    canon, nxt = _decode_side_by_side(kv, n_groups, 1, lens, n_steps=70)
    owners = kv.block_owners()
    pos = kv.positions()
    for g in range(n_groups):
        vis = kv.visible_cells(np.array([nxt[g] - 1], np.int32), [[canon[g]]])[0]
        assert len(vis) == nxt[g]
        assert np.array_equal(pos[vis], np.arange(nxt[g]))  # every position, in order
        assert np.all(owners[vis // B] == g)  # only in the group's own blocks
        runs = _runs(vis)
        for first, length in runs[:-1]:
            assert first % B == 0 and length % B == 0, runs  # whole aligned blocks
        assert runs[-1][0] % B == 0
        assert len(runs) <= -(-nxt[g] // B)


@pytest.mark.parametrize("n_ctx", [64, 100, 4096, 4097])
def test_f16_k_rows_start_on_cache_lines(n_ctx):
    """A block of 32 cells is one 64-byte line of every K row: rows start on lines, and the stride
    (n_ctx rounded up to 32, plus 32 cells) is not a power of two."""
    kv = _core.KVCache(n_ctx=n_ctx, n_seq_max=1, n_embd=3 * 64)
    assert np.all(kv.k_row_line_offsets(64) == 0)
    assert kv.k_t_stride % 32 == 0 and kv.k_t_stride >= n_ctx + 16
    assert kv.k_t_stride & (kv.k_t_stride - 1) != 0


def test_one_group_fills_cells_in_order():
    """Without groups the whole cache is one group: a generation's cells are 0, 1, 2, ... as before."""
    kv = _core.KVCache(n_ctx=100, n_seq_max=3)
    assert np.array_equal(_alloc(kv, range(40), [[0]] * 40), np.arange(40))
    assert np.array_equal(_alloc(kv, [40, 41], [[1], [2]]), [40, 41])  # other ids: the same group
    assert set(kv.block_owners()[:2]) == {0}


def test_speculative_buffers_take_cells_of_their_slots_blocks():
    kv = _core.KVCache(n_ctx=256, n_seq_max=8, seq_group=4)  # 2 slots of 4 ids: canonical + 3 buffers
    a = _alloc(kv, range(10), [[0]] * 10)
    b = _alloc(kv, range(10), [[4]] * 10)
    spec_a = _alloc(kv, [10, 11, 10, 11], [[1], [1], [2, 3], [2, 3]])
    spec_b = _alloc(kv, [10, 11], [[5], [6]])
    owners = kv.block_owners()
    assert np.all(owners[np.concatenate([a, spec_a]) // B] == 0)
    assert np.all(owners[np.concatenate([b, spec_b]) // B] == 1)
    assert np.array_equal(spec_a, np.arange(10, 14))  # right after the slot's canonical cells
    vis = kv.visible_cells(np.array([11], np.int32), [[1]])[0]  # buffer 1 sees the canonical history
    assert np.array_equal(vis, np.arange(12))


def test_a_block_is_released_when_no_cell_uses_it():
    kv = _core.KVCache(n_ctx=8 * B, n_seq_max=2, seq_group=1)
    _alloc(kv, range(2 * B + 5), [[0]] * (2 * B + 5))
    _alloc(kv, range(3), [[1]] * 3)
    assert list(kv.block_owners()[:4]) == [0, 0, 0, 1]
    kv.seq_rm(0, B, -1)  # keeps the first block only
    assert list(kv.block_owners()[:4]) == [0, -1, -1, 1]
    kv.seq_rm(0, 0, 1)  # one cell of the block freed: still the group's
    assert kv.block_owners()[0] == 0
    # group 1 needs a new block: the lowest wholly free one
    _alloc(kv, range(3, B + 3), [[1]] * B)
    assert list(kv.block_owners()[:4]) == [0, 1, -1, 1]
    kv.seq_keep(1)
    assert list(kv.block_owners()[:4]) == [-1, 1, -1, 1]
    kv.clear()
    assert np.all(kv.block_owners() == -1) and kv.n_used == 0 and kv.used_end == 0


def test_group_reuses_free_cells_of_its_blocks_first():
    """Rejected drafts leave holes in a slot's block: its next tokens fill them before a new block."""
    kv = _core.KVCache(n_ctx=4 * B, n_seq_max=8, seq_group=4)
    _alloc(kv, range(10), [[0]] * 10)
    _alloc(kv, range(10, 14), [[1]] * 4)
    kv.seq_rm(1, -1, -1)  # rejected
    assert np.array_equal(_alloc(kv, [10, 11], [[0], [0]]), [10, 11])


def test_fragmented_cache_falls_back_to_any_free_cell():
    kv = _core.KVCache(n_ctx=4 * B, n_seq_max=4, seq_group=1)
    for g in range(4):  # each group owns one block holding one cell
        _alloc(kv, [0], [[g]])
    cells = _alloc(kv, range(1, 3 * B + 1), [[0]] * (3 * B))  # more than group 0's block holds
    assert len(set(cells.tolist())) == 3 * B
    assert kv.n_free == B - 4
    assert np.all(kv.positions()[cells] == np.arange(1, 3 * B + 1))
    assert list(kv.block_owners()) == [0, 1, 2, 3]  # the blocks stay their groups'
    # the rest fits exactly; one more cell does not, and leaves the cache untouched
    _alloc(kv, range(1, B - 3), [[2]] * (B - 4))
    assert kv.n_free == 0
    with pytest.raises(_core.KVCacheFullError, match="full"):
        _alloc(kv, [99], [[3]])
    assert kv.n_used == 4 * B


def test_full_only_when_no_cell_is_free():
    n_ctx = 3 * B + 7  # a last block of 7 cells
    kv = _core.KVCache(n_ctx=n_ctx, n_seq_max=5, seq_group=1)
    rng = np.random.default_rng(0)
    nxt = [0] * 5
    while kv.n_free > 0:
        g = int(rng.integers(0, 5))
        k = int(min(rng.integers(1, 9), kv.n_free))
        _alloc(kv, range(nxt[g], nxt[g] + k), [[g]] * k)
        nxt[g] += k
    assert kv.n_used == n_ctx and kv.used_end == n_ctx
    assert sorted(np.concatenate([kv.visible_cells(np.array([nxt[g]], np.int32), [[g]])[0] for g in range(5)]).tolist()) \
        == list(range(n_ctx))
    with pytest.raises(_core.KVCacheFullError):
        _alloc(kv, [nxt[0]], [[0]])
    kv.seq_rm(3, -1, -1)
    assert kv.n_free == nxt[3]
    _alloc(kv, range(nxt[0], nxt[0] + nxt[3]), [[0]] * nxt[3])  # group 0 now fits in group 3's cells
    assert kv.n_free == 0


def test_full_batch_is_refused_whole():
    kv = _core.KVCache(n_ctx=B, n_seq_max=2, seq_group=1)
    _alloc(kv, range(B - 2), [[0]] * (B - 2))
    with pytest.raises(_core.KVCacheFullError, match="3 tokens"):
        _alloc(kv, [0, 1, 2], [[1]] * 3)
    assert kv.n_used == B - 2 and kv.seq_n_cells(1) == 0


def test_bad_input_is_refused_by_name():
    kv = _core.KVCache(n_ctx=64, n_seq_max=4, seq_group=2)
    with pytest.raises(ValueError, match="sequence id 4 out of range"):
        _alloc(kv, [0], [[4]])
    with pytest.raises(ValueError, match="negative position"):
        _alloc(kv, [-1], [[0]])
    with pytest.raises(ValueError, match="no sequence id"):
        _alloc(kv, [0], [[]])
    with pytest.raises(ValueError, match="seq_group must be 0 or divide n_seq_max"):
        _core.KVCache(n_ctx=64, n_seq_max=4, seq_group=3)
    assert kv.n_used == 0


class _Model:
    """The metadata contract of kv-cache.h, cell placement aside: tokens (pos, set of ids)."""

    def __init__(self, seq_group):
        self.g = seq_group
        self.cells = {}  # cell -> [pos, set of ids]

    def canon(self, s):
        return s - s % self.g if self.g else s

    def visible(self, pos, ids):
        ids = set(ids) | {self.canon(s) for s in ids}
        return sorted(((p, c) for c, (p, s) in self.cells.items() if p <= pos and s & ids))


def _check_against_model(kv, m, n_seq_max):
    assert kv.n_used == len(m.cells)
    pos = kv.positions()
    assert sorted(np.flatnonzero(pos >= 0).tolist()) == sorted(m.cells)
    for c, (p, _) in m.cells.items():
        assert pos[c] == p
    for s in range(n_seq_max):
        got = kv.visible_cells(np.array([1 << 20], np.int32), [[s]])[0]
        want = m.visible(1 << 20, [s])
        assert [int(pos[c]) for c in got] == [p for p, _ in want]
        assert sorted(got.tolist()) == sorted(c for _, c in want)
    # a used block has an owner, a block without used cells none
    used = np.zeros(kv.block_owners().shape, bool)
    used[np.flatnonzero(pos >= 0) // B] = True
    assert np.array_equal(kv.block_owners() >= 0, used)


@pytest.mark.parametrize("seq_group", [0, 1, 3])
@pytest.mark.parametrize("seed", range(4))
def test_random_operations_keep_the_contract(seq_group, seed):
    rng = np.random.default_rng(seed * 10 + seq_group)
    n_seq_max, n_ctx = 6, 5 * B + 11
    kv = _core.KVCache(n_ctx=n_ctx, n_seq_max=n_seq_max, seq_group=seq_group)
    m = _Model(seq_group)
    for _ in range(150):
        op = rng.integers(0, 10)
        if op < 6:
            n = int(rng.integers(1, 12))
            pos = rng.integers(0, 200, n).astype(np.int32)
            seqs = [sorted(set(rng.integers(0, n_seq_max, rng.integers(1, 3)).tolist())) for _ in range(n)]
            if n > kv.n_free:
                with pytest.raises(_core.KVCacheFullError):
                    _alloc(kv, pos, seqs)
                continue
            cells = _alloc(kv, pos, seqs)
            assert len(set(cells.tolist()) | set(m.cells)) == len(m.cells) + n  # free cells only
            for c, p, s in zip(cells.tolist(), pos.tolist(), seqs):
                m.cells[c] = [p, set(s)]
        elif op < 8:
            s = int(rng.integers(-1, n_seq_max))
            p0, p1 = int(rng.integers(0, 150)), int(rng.integers(-1, 200))
            kv.seq_rm(s, p0, p1)
            for c in list(m.cells):
                p, ids = m.cells[c]
                if p >= p0 and (p1 < 0 or p < p1):
                    if s >= 0:
                        ids.discard(s)
                    else:
                        ids.clear()
                    if not ids:
                        del m.cells[c]
        elif op < 9:
            src, dst = (int(x) for x in rng.integers(0, n_seq_max, 2))
            kv.seq_cp(src, dst, 0, -1)
            for p, ids in m.cells.values():
                if src in ids:
                    ids.add(dst)
        else:
            s = int(rng.integers(0, n_seq_max))
            kv.seq_keep(s)
            m.cells = {c: [p, {s}] for c, (p, ids) in m.cells.items() if s in ids}
        _check_against_model(kv, m, n_seq_max)
