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
from kmc.kernels.lattice import N_NEIGHBORS, neighbors6

CLUSTER_ACTIVE = 0
CLUSTER_TRAPPED = 1
CLUSTER_DEAD = 2


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
    Neighbours across the z walls do not exist; x and y are periodic.
    """
    nbr = np.empty(N_NEIGHBORS, dtype=np.int64)
    n = lattice.size
    for i in range(n):
        parent[i] = i
    for i in range(n):
        if lattice[i] != NA:
            continue
        neighbors6(i, nx, ny, nz, False, nbr)
        # Only +x, +y, +z: each face is visited once.
        for d in (1, 3, 5):
            k = nbr[d]
            if k >= 0 and lattice[k] == NA:
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
    clusters that touch the electrolyte (what the nucleation density counts).
    """
    nbr = np.empty(N_NEIGHBORS, dtype=np.int64)
    n = lattice.size
    touches_cc = np.zeros(n, dtype=np.uint8)
    touches_el = np.zeros(n, dtype=np.uint8)
    for i in range(n):
        if lattice[i] != NA:
            continue
        r = _find(parent, i)
        neighbors6(i, nx, ny, nz, False, nbr)
        for d in range(N_NEIGHBORS):
            k = nbr[d]
            if k < 0:
                continue
            s = lattice[k]
            if s == CC:
                touches_cc[r] = 1
            elif s == SE or s == SEI:
                touches_el[r] = 1
    for c in range(4):
        counts[c] = 0
    for i in range(n):
        if lattice[i] != NA:
            site_class[i] = -1
            continue
        r = _find(parent, i)
        if touches_cc[r] == 0:
            cls = CLUSTER_DEAD
        elif touches_el[r] == 0:
            cls = CLUSTER_TRAPPED
        else:
            cls = CLUSTER_ACTIVE
        site_class[i] = cls
        counts[cls] += 1
        if r == i and touches_el[r] == 1:
            counts[3] += 1


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
