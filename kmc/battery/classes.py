"""The Na clusters' classification, kept with the lattice it was computed from.

Labelling the clusters (``kmc.kernels.clusters``) is a pass over the whole lattice, wanted by every
field solve (the kernels' ``site_class``) and every sample (the recount). While a sealed layer
thickens, plating only adds to the pending volume: the lattice does not change for several samples
running, and the labelling would be redone on the same voxels. So the last classification is kept
beside a copy of the lattice it was computed from, and handed out again only when the lattice is
byte for byte that copy. It is a function of the lattice alone, so what is handed out is what a new
labelling gives: the recount stays a recount of the lattice as it is, not a reading of anything the
kernels maintain. Other functions of the lattice alone that a solve and the samples after it both
want (the bands, the columns' support, the electrolyte's faces) are kept with it the same way
(``derived``). The labelling joins runs of Na along x (``classify_na_runs``), not single voxels.
"""
from __future__ import annotations

import numpy as np

from kmc.kernels.clusters import classify_na, classify_na_runs, label_na_clusters
from kmc.kernels.lattice import lattices_equal


#: Lattices below this many sites are classified over runs of Na (``classify_na_runs``: int32 parents per
#: run, at most one run per site); larger ones site by site.
RUNS_MAX_SITES = 2**31


def parent_dtype(n_sites: int):
    """The union-find parents' integer type: int32 while every site index fits (half the memory traffic
    of int64 in passes that are bound by it; the labels are the same numbers)."""
    return np.int32 if n_sites < 2**31 else np.int64


class ClusterClasses:
    """The last classification (the class of every site, the Na voxels per class, the active clusters)
    and the lattice it belongs to; two bytes per site once used."""

    def __init__(self):
        self._lattice = None  # the lattice the classification below was computed from (a copy)
        self._site_class = None
        self._counts = np.zeros(5, dtype=np.int64)  # active, trapped, dead voxels; clusters at the SE; active ones
        self._nuclei = 0
        self._derived = {}  # functions of the kept lattice (``derived``), by key

    def of(self, lattice, nx: int, ny: int, nz: int):
        """(site_class, counts, nuclei) of ``lattice``: every site's ``CLUSTER_*`` (−1 off Na, int8), the Na
        voxels per class (active, trapped, dead) and the clusters touching the electrolyte, and the
        number of active clusters. The arrays are this object's: read them, do not write them."""
        if self._lattice is None or self._lattice.size != lattice.size:
            self._lattice = np.empty_like(lattice)
            self._site_class = np.empty(lattice.size, dtype=np.int8)  # a class fits a byte
        elif self._nuclei >= 0 and lattices_equal(self._lattice, lattice):
            return self._site_class, self._counts[:4], self._nuclei
        self._nuclei = -1  # not valid until the classification below is complete
        self._derived.clear()
        if lattice.size < RUNS_MAX_SITES:  # the runs' parents are int32
            classify_na_runs(lattice, nx, ny, nz, self._site_class, self._counts)  # counts[4]: the nuclei
        else:
            parent = np.empty(lattice.size, dtype=parent_dtype(lattice.size))
            label_na_clusters(lattice, nx, ny, nz, parent)
            classify_na(lattice, nx, ny, nz, parent, self._site_class, self._counts)
        self._lattice[:] = lattice
        self._nuclei = int(self._counts[4])
        return self._site_class, self._counts[:4], self._nuclei

    def derived(self, key, compute):
        """``compute()``, a function of the lattice alone (and of its classification), kept under ``key``
        with the classification: for the lattice the last ``of`` was given, so call it after ``of`` with
        nothing written to the lattice in between (the solve and the sample each call ``of`` first). It is
        computed again once ``of`` finds the lattice no longer byte for byte the one classified. (It does
        not compare the lattices itself: at 512² columns a comparison costs 3 ms, as much as some of what
        is kept.) What is returned is this object's: read it, do not write it."""
        if self._lattice is None or self._nuclei < 0:
            raise RuntimeError("ClusterClasses.derived before any classification: call of(lattice) first")
        if key not in self._derived:
            self._derived[key] = compute()
        return self._derived[key]
