"""Na clusters by union-find, and what each one touches (PHYSICS.md §5, §7).

A Na cluster is a set of Na voxels connected through shared faces. Each cluster is classified by
what its voxels touch across a face:

- **active**: touches the CC (electronically connected) and an electrolyte voxel (SE or SEI):
  it can plate and strip;
- **trapped**: touches the CC but no electrolyte (Na in CC pores, in gaps the CC re-landed on):
  connected, but cannot strip;
- **dead**: does not touch the CC: electronically isolated, cannot strip.

Everything here is recomputed from the lattice alone, so it serves as the independent recount of
the charge bookkeeping too.
"""
import numpy as np
from numba import njit

from kmc.kernels.cell import CC, NA, SE, SEI, holds_state, lattice_words
from kmc.kernels.lattice import N_NEIGHBORS

CLUSTER_ACTIVE = 0
CLUSTER_TRAPPED = 1
CLUSTER_DEAD = 2

# classify_na's flags per cluster root
_TOUCHES_CC = 1
_TOUCHES_EL = 2


@njit(cache=True, inline="always")
def _touch_flag(s):
    """What a neighbour of state ``s`` gives a cluster: TOUCHES_CC if it is CC, TOUCHES_EL if SE or SEI."""
    return (s == CC) * _TOUCHES_CC | ((s == SE) | (s == SEI)) * _TOUCHES_EL


@njit(cache=True)
def _find(parent, i):
    while parent[i] != i:
        parent[i] = parent[parent[i]]  # path halving
        i = parent[i]
    return i


@njit(cache=True)
def label_na_clusters(lattice, nx, ny, nz, parent):
    """Union-find over Na–Na faces; afterwards ``parent[i]`` leads to the root of i's cluster.

    ``parent`` is an int64 array of the lattice's size (non-Na sites point to themselves).
    Neighbours across the z walls do not exist; x and y are periodic. The sites are visited in index
    order, each joined to its +x, +y, +z neighbours in that order (each face once); the neighbours
    come from the loop's coordinates, not from decoding every index.
    """
    n = lattice.size
    nxy = nx * ny
    for i in range(n):
        parent[i] = i
    for z in range(nz):
        for y in range(ny):
            row = nx * y + nxy * z
            dy = nx if y < ny - 1 else -(ny - 1) * nx
            for x in range(nx):
                i = row + x
                if lattice[i] != NA:
                    continue
                k = i + 1 if x < nx - 1 else i - (nx - 1)
                if lattice[k] == NA:
                    _union(parent, i, k)
                k = i + dy
                if lattice[k] == NA:
                    _union(parent, i, k)
                if z < nz - 1:
                    k = i + nxy
                    if lattice[k] == NA:
                        _union(parent, i, k)


@njit(cache=True, inline="always")
def _union(parent, i, k):
    """Join i's and k's clusters under the lower root."""
    ri = _find(parent, i)
    rk = _find(parent, k)
    if ri != rk:
        if ri < rk:
            parent[rk] = ri
        else:
            parent[ri] = rk


@njit(cache=True)
def classify_na(lattice, nx, ny, nz, parent, site_class, counts):
    """Classify every Na voxel's cluster; ``site_class[i]`` = CLUSTER_* for Na sites, −1 otherwise.

    ``counts[0:3]`` gets the number of active, trapped and dead Na voxels; ``counts[3]`` the number of
    clusters that touch the electrolyte (what the nucleation density counts); ``counts[4]``, if there is
    one, the number of active clusters (``count_active_roots``, without its pass over the lattice).
    """
    n = lattice.size
    nxy = nx * ny
    touches = np.zeros(n, dtype=np.uint8)  # per root: TOUCHES_CC | TOUCHES_EL
    for z in range(nz):
        for y in range(ny):
            row = nx * y + nxy * z
            up_y = nx if y < ny - 1 else -(ny - 1) * nx
            down_y = -nx if y > 0 else (ny - 1) * nx
            for x in range(nx):
                i = row + x
                if lattice[i] != NA:
                    continue
                r = _find(parent, i)
                # the six neighbours in the order of lattice.DIRECTIONS (what each touches, not the order, counts)
                for d in range(N_NEIGHBORS):
                    if d == 0:
                        k = i - 1 if x > 0 else i + (nx - 1)
                    elif d == 1:
                        k = i + 1 if x < nx - 1 else i - (nx - 1)
                    elif d == 2:
                        k = i + down_y
                    elif d == 3:
                        k = i + up_y
                    elif d == 4:
                        if z == 0:
                            continue
                        k = i - nxy
                    else:
                        if z == nz - 1:
                            continue
                        k = i + nxy
                    touches[r] |= _touch_flag(lattice[k])
    for c in range(counts.size):
        counts[c] = 0
    for i in range(n):
        if lattice[i] != NA:
            site_class[i] = -1
            continue
        r = _find(parent, i)
        if touches[r] & _TOUCHES_CC == 0:
            cls = CLUSTER_DEAD
        elif touches[r] & _TOUCHES_EL == 0:
            cls = CLUSTER_TRAPPED
        else:
            cls = CLUSTER_ACTIVE
        site_class[i] = cls
        counts[cls] += 1
        if r == i and touches[r] & _TOUCHES_EL:
            counts[3] += 1
            if cls == CLUSTER_ACTIVE and counts.size > 4:
                counts[4] += 1


@njit(cache=True)
def count_active_roots(site_class, parent):
    """Active clusters (the nuclei): the active sites that are their cluster's root. After
    ``classify_na`` every Na site has been through a find, so a root points to itself."""
    n = 0
    for i in range(site_class.size):
        if site_class[i] == CLUSTER_ACTIVE and parent[i] == i:
            n += 1
    return n


@njit(cache=True)
def count_trapped_in_pores(site_class, cc_bottom, nxy):
    """Trapped Na voxels (connected to the collector, no electrolyte face) at or above their column's
    lowest collector voxel: in the collector's pores. The others are stranded in gaps below it."""
    n = 0
    for i in range(site_class.size):
        if site_class[i] == CLUSTER_TRAPPED and i // nxy >= cc_bottom[i % nxy]:
            n += 1
    return n


# --- the same classification over runs of Na along x ------------------------------------------------
#
# A pass of union-find over every Na voxel touches an int parent per site: at 512² columns of 48 voxels
# that is 50 MB written and read again, and it made the labelling the largest lattice-wide pass of a
# solve. Na comes in runs along x (a sealed layer is a run as long as the row), so the runs are joined
# instead: a run meets the runs of the rows beside it (y ± 1 in its layer, the same y one layer down) that
# overlap it in x, and what a run touches is read from those rows' bytes. The parents are then per run,
# not per site. The classes and counts are those of ``label_na_clusters`` + ``classify_na``: each is a
# property of a cluster (its voxels, whether it touches the collector and the electrolyte), whichever
# voxel the union-find makes its root.


@njit(cache=True)
def _join_rows(parent, row_first, run_x0, run_x1, ra, rb):
    """Union every pair of runs of rows ``ra`` and ``rb`` that overlap in x (both lists sorted, disjoint)."""
    i, i_end = row_first[ra], row_first[ra + 1]
    j, j_end = row_first[rb], row_first[rb + 1]
    while i < i_end and j < j_end:
        if run_x1[i] < run_x0[j]:
            i += 1
        elif run_x1[j] < run_x0[i]:
            j += 1
        else:
            _union(parent, i, j)
            if run_x1[i] < run_x1[j]:
                i += 1
            else:
                j += 1


@njit(cache=True, inline="always")
def _touch_flags(lattice, base, x0, x1):
    """``_touch_flag`` of the voxels ``base + x0 … base + x1`` of a neighbouring row, OR-ed (a reduction
    without an early exit, so the loop vectorizes)."""
    f = 0
    for x in range(x0, x1 + 1):
        f |= _touch_flag(lattice[base + x])
    return f


@njit(cache=True)
def classify_na_runs(lattice, nx, ny, nz, site_class, counts):
    """``label_na_clusters`` then ``classify_na``, over runs of Na along x: the same ``site_class`` (CLUSTER_*
    per Na site, −1 elsewhere) and ``counts`` (active, trapped, dead voxels; clusters touching the
    electrolyte; and, if ``counts`` has a fifth entry, the active clusters). x and y periodic, z walled.
    Scratch: the runs' x range, parent and flags (13 bytes a run, at most half a run per site), allocated
    here once counted."""
    nxy = nx * ny
    n_rows = ny * nz
    # 1. The runs: counted (a run starts at a Na voxel whose −x neighbour in the row is not Na, or at x = 0),
    #    then listed row by row in x order. A run across the row's periodic end is two runs, joined below.
    #    Only the layers holding Na are read byte by byte (found eight voxels at a time): most of a cell's
    #    layers are electrolyte or collector.
    words = lattice_words(lattice)
    layer_na = np.zeros(nz, dtype=np.uint8)
    n_runs = 0
    for z in range(nz):
        if not holds_state(lattice, words, z * nxy, (z + 1) * nxy, NA):
            continue
        layer_na[z] = 1
        for r in range(z * ny, (z + 1) * ny):
            base = r * nx
            n_runs += lattice[base] == NA
            for x in range(1, nx):
                n_runs += (lattice[base + x] == NA) & (lattice[base + x - 1] != NA)
    row_first = np.empty(n_rows + 1, dtype=np.int64)
    run_x0 = np.empty(n_runs, dtype=np.int32)
    run_x1 = np.empty(n_runs, dtype=np.int32)
    parent = np.empty(n_runs, dtype=np.int32)  # fewer than 2**31 runs: the caller's bound (``classes.RUNS_MAX_SITES``)
    touches = np.zeros(n_runs, dtype=np.uint8)
    m = 0
    for r in range(n_rows):
        row_first[r] = m
        if layer_na[r // ny] == 0:
            continue
        base = r * nx
        x = 0
        while x < nx:
            if lattice[base + x] != NA:
                x += 1
                continue
            x0 = x
            while x < nx and lattice[base + x] == NA:
                x += 1
            run_x0[m] = x0
            run_x1[m] = x - 1
            parent[m] = m
            m += 1
    row_first[n_rows] = m
    # 2. Joins: across the row's periodic end, to the row at y − 1 (and y = 0 to y = ny − 1), to the layer below.
    for z in range(nz):
        for y in range(ny):
            r = z * ny + y
            a, b = row_first[r], row_first[r + 1]
            if b - a >= 2 and run_x0[a] == 0 and run_x1[b - 1] == nx - 1:
                _union(parent, a, b - 1)
            if y > 0:
                _join_rows(parent, row_first, run_x0, run_x1, r, r - 1)
            if z > 0:
                _join_rows(parent, row_first, run_x0, run_x1, r, r - ny)
        if ny > 2:
            _join_rows(parent, row_first, run_x0, run_x1, z * ny, z * ny + ny - 1)
    # 3. What each cluster touches: each run's ends along x, and the rows beside, below and above it.
    for z in range(nz):
        for y in range(ny):
            r = z * ny + y
            base = r * nx
            y_down = (y - 1) % ny
            y_up = (y + 1) % ny
            for k in range(row_first[r], row_first[r + 1]):
                x0, x1 = run_x0[k], run_x1[k]
                f = 0
                for x in (x0 - 1 if x0 > 0 else nx - 1, x1 + 1 if x1 < nx - 1 else 0):
                    f |= _touch_flag(lattice[base + x])
                f |= _touch_flags(lattice, (z * ny + y_down) * nx, x0, x1)
                f |= _touch_flags(lattice, (z * ny + y_up) * nx, x0, x1)
                if z > 0:
                    f |= _touch_flags(lattice, base - nxy, x0, x1)
                if z < nz - 1:
                    f |= _touch_flags(lattice, base + nxy, x0, x1)
                touches[_find(parent, k)] |= f
    # 4. Classes and counts, row by row.
    for c in range(counts.size):
        counts[c] = 0
    for z in range(nz):
        if layer_na[z] == 0:
            site_class[z * nxy:(z + 1) * nxy] = -1
    for r in range(n_rows):
        if layer_na[r // ny] == 0:
            continue
        base = r * nx
        for x in range(nx):
            site_class[base + x] = -1
        for k in range(row_first[r], row_first[r + 1]):
            root = _find(parent, k)
            t = touches[root]
            if t & _TOUCHES_CC == 0:
                cls = CLUSTER_DEAD
            elif t & _TOUCHES_EL == 0:
                cls = CLUSTER_TRAPPED
            else:
                cls = CLUSTER_ACTIVE
            for x in range(run_x0[k], run_x1[k] + 1):
                site_class[base + x] = cls
            counts[cls] += run_x1[k] - run_x0[k] + 1
            if root == k and t & _TOUCHES_EL:
                counts[3] += 1
                if cls == CLUSTER_ACTIVE and counts.size > 4:
                    counts[4] += 1
