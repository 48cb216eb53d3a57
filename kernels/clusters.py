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

from kmc.kernels.cell import CC, NA, SE, SEI
from kmc.kernels.lattice import N_NEIGHBORS

CLUSTER_ACTIVE = 0
CLUSTER_TRAPPED = 1
CLUSTER_DEAD = 2

# classify_na's flags per cluster root
_TOUCHES_CC = 1
_TOUCHES_EL = 2


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
                    s = lattice[k]
                    if s == CC:
                        touches[r] |= _TOUCHES_CC
                    elif s == SE or s == SEI:
                        touches[r] |= _TOUCHES_EL
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
