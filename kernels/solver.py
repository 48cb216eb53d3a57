"""Rejection-free KMC solver: event selection over per-site propensities, and the clock.

The solver knows no physics. A model hands it one non-negative propensity per site (the sum of that
site's event rates, s⁻¹); the solver picks a site with probability proportional to its propensity
and returns the *residual* — where the draw fell inside that site's propensity, in s⁻¹ — so the model
picks the event within the site without a second random number. Time advances by
``Δt = −ln(u) / R`` with R the total propensity (s⁻¹) before the event.

Selection structure: a wide sum tree
------------------------------------
One flat float64 array holds every level, leaves first. Level k has ``offsets[k+1] − offsets[k]``
nodes starting at ``offsets[k]``; node n of level k > 0 is the sum of nodes ``n·B … n·B + B − 1`` of
level k − 1. The root is the last element. B = 8: one 64-byte cache line of children per level,
seven levels for a million sites, and the internal levels add 1/7 to the leaves' 8 bytes/site. On the
hop benchmark B = 8 was faster than 4, 16 and 32 at every size (L = 22, 46, 100).

Every internal node is *recomputed from its children* after a change, never updated by adding a
delta. Delta updates are cheaper by a small constant but cancel catastrophically when rates span many
decades (removing a 1e6 s⁻¹ capillary rate next to a 1e-3 s⁻¹ creep rate leaves rounding noise larger
than the creep rate); recomputation also makes the tree an exact function of its leaves, so a tree
rebuilt from the leaves has the same bits as one updated step by step. The children are summed in a
fixed order with four independent accumulators, which keeps the add chain short without letting the
compiler reorder anything (no fastmath).
"""
import numpy as np
from numba import njit

from kmc.kernels.leaf import leaf

BRANCH = 8
LOG2_BRANCH = 3

# Why a batch loop stopped (returned by every model's batch kernel).
STOP_EVENTS = 0  #: the requested number of events was executed
STOP_TIME = 1  #: the next event would fall after the time bound; the clock was set to the bound
STOP_NO_EVENTS = 2  #: total propensity is zero: nothing can happen
EVENT = -1  #: ``next_event``: an event happens (the clock has been advanced to it)


def tree_offsets(n_sites):
    """Level offsets of a sum tree over ``n_sites`` leaves: int64 array, last entry = tree length.

    Each level is padded with zero leaves to a multiple of BRANCH so every parent has a full set of
    children; the top level is the single root.
    """
    if n_sites < 1:
        raise ValueError(f"a sum tree needs at least one site, got {n_sites}")
    sizes = []
    n = int(n_sites)
    while True:
        padded = -(-n // BRANCH) * BRANCH
        sizes.append(padded)
        n = padded // BRANCH
        if n == 1:
            sizes.append(1)
            break
    return np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)


def tree_new(n_sites):
    """A zeroed sum tree and its offsets for ``n_sites`` leaves."""
    offsets = tree_offsets(n_sites)
    return np.zeros(offsets[-1], dtype=np.float64), offsets


@njit(cache=True)
def _block_sum(tree, first):
    """Sum of the BRANCH children starting at ``first``, in a fixed order (4 accumulators)."""
    a0 = 0.0
    a1 = 0.0
    a2 = 0.0
    a3 = 0.0
    for c in range(0, BRANCH, 4):
        a0 += tree[first + c]
        a1 += tree[first + c + 1]
        a2 += tree[first + c + 2]
        a3 += tree[first + c + 3]
    return (a0 + a1) + (a2 + a3)


@njit(cache=True)
def tree_build(tree, offsets):
    """Recompute every internal node from the leaves (after the leaves were written in bulk)."""
    n_levels = offsets.size - 1
    for lev in range(1, n_levels):
        child = offsets[lev - 1]
        base = offsets[lev]
        # Only the parents that have children; the padding above them stays zero.
        for p in range((base - child) >> LOG2_BRANCH):
            tree[base + p] = _block_sum(tree, child + (p << LOG2_BRANCH))


@njit(cache=True)
def tree_build_range(tree, offsets, leaf_lo, leaf_hi):
    """``tree_build`` for leaves ``[leaf_lo, leaf_hi)`` written in bulk, the others unchanged since the
    tree was last consistent: only the ancestors of that range are recomputed. Every node is an exact
    function of its leaves, so the tree has the bits a full ``tree_build`` gives."""
    if leaf_hi <= leaf_lo:
        return
    lo = leaf_lo >> LOG2_BRANCH
    hi = (leaf_hi - 1) >> LOG2_BRANCH
    n_levels = offsets.size - 1
    for lev in range(1, n_levels):
        child = offsets[lev - 1]
        base = offsets[lev]
        for p in range(lo, hi + 1):
            tree[base + p] = _block_sum(tree, child + (p << LOG2_BRANCH))
        lo >>= LOG2_BRANCH
        hi >>= LOG2_BRANCH


@njit(cache=True)
def tree_nonzero_leaves(tree, offsets):
    """(first, last + 1) of the leaves that are not zero, found from the root down (the leaves are
    non-negative, so a node is zero exactly when all its leaves are); (0, 0) for an empty tree. The
    tree must be consistent (every node the sum of its children)."""
    n_levels = offsets.size - 1
    if tree[offsets[n_levels - 1]] == 0.0:
        return 0, 0
    first = 0
    last = 0
    for lev in range(n_levels - 2, -1, -1):  # from the root's children down to the leaves
        base = offsets[lev]
        c = first << LOG2_BRANCH
        while tree[base + c] == 0.0:
            c += 1
        first = c
        c = (last << LOG2_BRANCH) + BRANCH - 1
        while tree[base + c] == 0.0:
            c -= 1
        last = c
    return first, last + 1


@njit(cache=True)
def tree_clear_outside(tree, offsets, leaf_lo, leaf_hi):
    """Zero the leaves outside ``[leaf_lo, leaf_hi)`` (only the span that is not zero already, found
    from the tree); returns the range of leaves a ``tree_build_range`` must cover once the band's
    leaves are written: the band and the span cleared."""
    first, last = tree_nonzero_leaves(tree, offsets)
    if last <= first:
        return leaf_lo, leaf_hi
    if first < leaf_lo:
        tree[first:min(leaf_lo, last)] = 0.0
    if last > leaf_hi:
        tree[max(leaf_hi, first):last] = 0.0
    if leaf_hi <= leaf_lo:
        return first, last
    return min(first, leaf_lo), max(last, leaf_hi)


@njit(cache=True)
def tree_zero_leaves(tree, offsets, leaf_lo, leaf_hi):
    """Zero the leaves in ``[leaf_lo, leaf_hi)`` that are not zero, found from their parents: a parent is
    zero exactly when its BRANCH leaves are (they are non-negative), so one parent is read per BRANCH
    leaves instead of every leaf written (a band of millions of leaves, nearly all zero, in a solve's
    rebuild). No parent may be zero above a leaf that is not: true of a consistent tree and still once
    some of its leaves were zeroed since (``tree_clear_outside``), not of a leaf written without its
    parents."""
    if leaf_hi <= leaf_lo:
        return
    parents = offsets[1]
    for p in range(leaf_lo >> LOG2_BRANCH, ((leaf_hi - 1) >> LOG2_BRANCH) + 1):
        if tree[parents + p] != 0.0:
            for c in range(max(p << LOG2_BRANCH, leaf_lo), min((p + 1) << LOG2_BRANCH, leaf_hi)):
                tree[c] = 0.0


@leaf
def tree_total(tree):
    """Total propensity R (the root)."""
    return tree[tree.size - 1]


@njit(cache=True, inline="always")
def _recompute_parents(tree, offsets, lev, parents, m):
    """Recompute nodes ``parents[0:m]`` of level ``lev`` from their children.

    Inlined at the Numba IR level: as a plain call it cost ~10 % of the hop benchmark at L = 100.
    """
    child = offsets[lev - 1]
    base = offsets[lev]
    for b in range(m):
        p = parents[b]
        tree[base + p] = _block_sum(tree, child + (p << LOG2_BRANCH))


@njit(cache=True, inline="always")
def _append_unique(buf, m, value):
    """Append ``value`` to ``buf[0:m]`` unless it is there already; returns the new length."""
    for b in range(m):
        if buf[b] == value:
            return m
    buf[m] = value
    return m + 1


@njit(cache=True)
def tree_update(tree, offsets, sites, n_sites, scratch):
    """Propagate changed leaves to the root.

    The caller has already written the new propensities of ``sites[0:n_sites]`` into the leaves.
    Each distinct ancestor is recomputed once per level; ``scratch`` is an int64 buffer of at least
    ``n_sites`` entries (the stencil of one event is a dozen sites, so the linear de-duplication is
    cheaper than anything cleverer).
    """
    n_levels = offsets.size - 1
    m = 0
    for a in range(n_sites):
        m = _append_unique(scratch, m, sites[a] >> LOG2_BRANCH)
    for lev in range(1, n_levels):
        _recompute_parents(tree, offsets, lev, scratch, m)
        if lev == n_levels - 1:
            break
        # In place: entry b is read before any write at an index > b can happen.
        m_next = 0
        for b in range(m):
            m_next = _append_unique(scratch, m_next, scratch[b] >> LOG2_BRANCH)
        m = m_next


@leaf
def tree_update_many(tree, offsets, sites, n_sites, scratch, mark):
    """``tree_update`` for large stencils: de-duplicates ancestors with a mark array, O(n) per level.

    ``mark`` is a uint8 array of the tree's length, all zero on entry and on return; ``scratch`` an
    int64 buffer of at least ``n_sites`` entries. Same result as ``tree_update`` (each ancestor is
    recomputed once, from its children).
    """
    n_levels = offsets.size - 1
    m = 0
    base = offsets[1]
    for a in range(n_sites):
        p = sites[a] >> LOG2_BRANCH
        if mark[base + p] == 0:
            mark[base + p] = 1
            scratch[m] = p
            m += 1
    for lev in range(1, n_levels):
        _recompute_parents(tree, offsets, lev, scratch, m)
        base = offsets[lev]
        for b in range(m):
            mark[base + scratch[b]] = 0
        if lev == n_levels - 1:
            break
        up = offsets[lev + 1]
        m_next = 0
        for b in range(m):
            p = scratch[b] >> LOG2_BRANCH
            if mark[up + p] == 0:
                mark[up + p] = 1
                scratch[m_next] = p
                m_next += 1
        m = m_next


@leaf
def tree_select(tree, offsets, r):
    """Leaf whose cumulative interval contains ``r`` ∈ [0, R), and the residual within that leaf.

    Returns ``(site, residual)`` with ``0 ≤ residual < propensity[site]`` up to rounding; the
    residual is clamped into that interval. A zero-propensity leaf is never returned: within a
    block the scan stops at the first child whose running sum exceeds ``r``, which a zero child
    cannot do. If rounding puts ``r`` past the running sum of a block (the parent was summed in
    another order), the last non-zero child is taken.
    """
    n_levels = offsets.size - 1
    node = 0
    for lev in range(n_levels - 2, -1, -1):
        first = offsets[lev] + (node << LOG2_BRANCH)
        acc = 0.0
        chosen = -1
        last_nonzero = 0
        for c in range(BRANCH):
            v = tree[first + c]
            if v > 0.0:
                last_nonzero = c
                if r < acc + v:
                    chosen = c
                    break
            acc += v
        if chosen < 0:
            chosen = last_nonzero
            acc -= tree[first + chosen]
        r -= acc
        node = (node << LOG2_BRANCH) + chosen
    leaf = tree[node]
    if r < 0.0:
        r = 0.0
    elif r >= leaf:
        r = leaf * (1.0 - 1e-15)
    return node, r


@njit(cache=True)
def waiting_time(rng, total_rate):
    """Exponential waiting time with rate ``total_rate`` (s⁻¹): ``−ln(u)/R`` with u ∈ (0, 1]."""
    return -np.log(1.0 - rng.random()) / total_rate


@njit(cache=True, inline="always")
def next_event(rng, total_rate, clock, t_end):
    """The next event of every model's batch loop: ``(EVENT, u)`` with the clock advanced by the
    waiting time and ``u`` uniform on [0, R) for the selection; or ``(STOP_NO_EVENTS, 0)`` when
    nothing can happen, ``(STOP_TIME, 0)`` when the event would fall after ``t_end`` (the clock is
    then set to ``t_end``: by memorylessness, stopping there and drawing afresh later is exact).

    Two draws per event, in this order: the waiting time, then the selection.
    """
    if total_rate <= 0.0:
        return STOP_NO_EVENTS, 0.0
    dt = waiting_time(rng, total_rate)
    if clock[0] + dt > t_end:
        clock[0] = t_end
        return STOP_TIME, 0.0
    clock[0] += dt
    return EVENT, rng.random() * total_rate
