"""The selection structure against brute force: sums, selection, exactness under wide rate ranges."""
import numpy as np
import pytest

from kmc.kernels.solver import (
    BRANCH,
    tree_build,
    tree_build_range,
    tree_clear_outside,
    tree_new,
    tree_nonzero_leaves,
    tree_offsets,
    tree_select,
    tree_total,
    tree_update,
    tree_zero_leaves,
)


def _brute_levels(leaves, offsets):
    """Every level of the tree recomputed with NumPy from the leaves (block sums)."""
    levels = [leaves]
    for lev in range(1, offsets.size - 1):
        prev = levels[-1]
        size = offsets[lev + 1] - offsets[lev]
        sums = prev.reshape(-1, BRANCH).sum(axis=1)
        level = np.zeros(size)
        level[: sums.size] = sums
        levels.append(level)
    return levels


@pytest.mark.parametrize("n_sites", [1, 7, 8, 9, 64, 65, 1000, 4097])
def test_layout_covers_every_site(n_sites):
    offsets = tree_offsets(n_sites)
    assert offsets[0] == 0 and offsets[-1] - offsets[-2] == 1  # a single root at the end
    assert offsets[1] >= n_sites and offsets[1] % BRANCH == 0
    for lev in range(1, offsets.size - 2):
        assert (offsets[lev + 1] - offsets[lev]) * BRANCH >= offsets[lev] - offsets[lev - 1]


@pytest.mark.parametrize("n_sites", [5, 300, 5000])
def test_tree_equals_brute_force_after_many_random_updates(n_sites):
    rng = np.random.default_rng(n_sites)
    tree, offsets = tree_new(n_sites)
    leaves = np.zeros(offsets[1])
    leaves[:n_sites] = rng.exponential(size=n_sites) * (rng.random(n_sites) < 0.7)
    tree[:n_sites] = leaves[:n_sites]
    tree_build(tree, offsets)
    scratch = np.empty(32, dtype=np.int64)
    for _ in range(3000):
        k = rng.integers(1, 14)
        sites = rng.integers(0, n_sites, size=k).astype(np.int64)
        for s in sites:
            leaves[s] = 0.0 if rng.random() < 0.3 else rng.exponential() * 10.0 ** rng.integers(-3, 4)
            tree[s] = leaves[s]
        tree_update(tree, offsets, sites, k, scratch)
    for lev, level in enumerate(_brute_levels(leaves, offsets)):
        np.testing.assert_allclose(tree[offsets[lev]:offsets[lev + 1]], level, rtol=1e-12, atol=0)
    assert tree_total(tree) == pytest.approx(leaves.sum(), rel=1e-12)
    # Selection agrees with a search in the brute-force cumulative sum, away from interval edges.
    cum = np.cumsum(leaves)
    for u in rng.random(2000):
        r = u * tree_total(tree)
        site, residual = tree_select(tree, offsets, r)
        expect = int(np.searchsorted(cum, r, side="right"))
        edge = min(abs(cum[expect] - r), abs(r - (cum[expect - 1] if expect else 0.0)))
        if edge > 1e-9 * cum[-1]:
            assert site == expect
            assert residual == pytest.approx(r - (cum[expect - 1] if expect else 0.0), abs=1e-9 * cum[-1])
        assert leaves[site] > 0.0
        assert 0.0 <= residual < leaves[site]


def test_incremental_tree_is_bitwise_a_rebuild_from_its_leaves():
    """Ancestors are recomputed, never delta-updated: the step-by-step tree equals a fresh build."""
    n = 2000
    rng = np.random.default_rng(3)
    tree, offsets = tree_new(n)
    tree[:n] = rng.random(n)
    tree_build(tree, offsets)
    scratch = np.empty(16, dtype=np.int64)
    for _ in range(5000):
        s = np.array([rng.integers(n)], dtype=np.int64)
        tree[s[0]] = rng.random() * 10.0 ** rng.integers(-8, 9)
        tree_update(tree, offsets, s, 1, scratch)
    rebuilt = tree.copy()
    rebuilt[offsets[1]:] = 0.0
    tree_build(rebuilt, offsets)
    assert rebuilt.tobytes() == tree.tobytes()


def test_no_cancellation_when_rates_span_many_decades():
    """Removing a 1e12 s⁻¹ rate leaves the 1e-3 s⁻¹ rates next to it exact (a delta tree fails this)."""
    n = 64
    tree, offsets = tree_new(n)
    tree[:n] = 1e-3
    tree_build(tree, offsets)
    scratch = np.empty(4, dtype=np.int64)
    site = np.array([5], dtype=np.int64)
    tree[5] = 1e12
    tree_update(tree, offsets, site, 1, scratch)
    tree[5] = 1e-3
    tree_update(tree, offsets, site, 1, scratch)
    assert tree_total(tree) == pytest.approx(n * 1e-3, rel=1e-12)


def test_selection_never_returns_a_zero_leaf():
    n = 50
    tree, offsets = tree_new(n)
    tree[[3, 17, 49]] = [1.0, 2.0, 3.0]
    tree_build(tree, offsets)
    total = tree_total(tree)
    # Including the extreme draws where rounding could push past a block's running sum.
    for r in np.concatenate(([0.0, np.nextafter(total, 0.0)], np.linspace(0, total, 500, endpoint=False))):
        site, residual = tree_select(tree, offsets, r)
        assert site in (3, 17, 49)
        assert 0.0 <= residual < tree[site]


def test_update_many_matches_update_bitwise_and_leaves_marks_clear():
    from kmc.kernels.solver import tree_update_many

    n = 3000
    rng = np.random.default_rng(8)
    a, offsets = tree_new(n)
    a[:n] = rng.random(n)
    tree_build(a, offsets)
    b = a.copy()
    scratch = np.empty(200, dtype=np.int64)
    mark = np.zeros(a.size, dtype=np.uint8)
    for _ in range(500):
        k = int(rng.integers(1, 120))
        sites = rng.integers(0, n, size=k).astype(np.int64)  # duplicates included
        values = rng.random(k) * 10.0 ** rng.integers(-6, 7, size=k)
        a[sites] = values
        b[sites] = values
        tree_update(a, offsets, sites, k, scratch)
        tree_update_many(b, offsets, sites, k, scratch, mark)
        assert not mark.any()
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("n_sites", [9, 300, 5000])
@pytest.mark.parametrize("seed", range(4))
def test_band_rebuild_gives_the_bits_of_a_full_rebuild(n_sites, seed):
    """The driver's solve rewrites only a band of leaves, clears the nonzero leaves outside it that
    the tree itself points to (``tree_clear_outside``) and rebuilds the nodes above both
    (``tree_build_range``); the tree must have every bit of zeroing the outside, writing the band and
    rebuilding every node. The band's leaves are zeroed from their parents (``tree_zero_leaves``) and
    only its non-zero leaves written, as the solve's fills do. Planted faults: the range build one level
    short (``range(1, n_levels - 1)``), the clearing above the band stopping a leaf early
    (``tree[max(leaf_hi, first):last - 1]``), and the band's zeroing stopping a parent early (its last
    partial block left), each fail here."""
    rng = np.random.default_rng(seed)
    tree, offsets = tree_new(n_sites)
    # stale leaves from a batch: sparse, anywhere (none, some above, some below the band)
    stale = rng.exponential(size=n_sites) * (rng.random(n_sites) < rng.choice([0.0, 0.01, 0.3]))
    tree[:n_sites] = stale
    tree_build(tree, offsets)
    nz = np.flatnonzero(stale)
    assert tree_nonzero_leaves(tree, offsets) == ((int(nz[0]), int(nz[-1]) + 1) if nz.size else (0, 0))
    lo, hi = sorted(rng.integers(0, n_sites + 1, size=2))
    band = rng.exponential(size=hi - lo) * (rng.random(hi - lo) < 0.5)
    want = np.zeros_like(tree)
    want[lo:hi] = band
    tree_build(want, offsets)
    span = tree_clear_outside(tree, offsets, lo, hi)
    tree_zero_leaves(tree, offsets, lo, hi)
    written = lo + np.flatnonzero(band)
    tree[written] = band[written - lo]
    tree_build_range(tree, offsets, *span)
    assert tree.tobytes() == want.tobytes()
