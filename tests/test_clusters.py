"""Na cluster classification against scipy.ndimage labelling (an independent recount)."""
import numpy as np
import pytest
from scipy import ndimage

from kmc.kernels.cell import CC, GAP, NA, SE, SEI
from kmc.kernels.clusters import classify_na, classify_na_runs, label_na_clusters


def _classify(lat3, by_runs=False):
    nz, ny, nx = lat3.shape
    flat = lat3.ravel().copy()
    site_class = np.empty(flat.size, dtype=np.int64)
    counts = np.zeros(4, dtype=np.int64)
    if by_runs:
        classify_na_runs(flat, nx, ny, nz, site_class, counts)
    else:
        parent = np.empty(flat.size, dtype=np.int64)
        label_na_clusters(flat, nx, ny, nz, parent)
        classify_na(flat, nx, ny, nz, parent, site_class, counts)
    return site_class.reshape(lat3.shape), counts


def _reference(lat3):
    """scipy labelling with x, y periodic (merge labels across the periodic edges) and z walled."""
    na = lat3 == NA
    labels, n = ndimage.label(na)  # face connectivity
    # merge across periodic x and y edges
    parent = list(range(n + 1))

    def find(a):
        while parent[a] != a:
            a = parent[a]
        return a

    for a, b in ((labels[:, :, 0], labels[:, :, -1]), (labels[:, 0, :], labels[:, -1, :])):
        for la, lb in zip(a.ravel(), b.ravel()):
            if la and lb:
                ra, rb = find(la), find(lb)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([find(v) for v in range(n + 1)])
    lab = roots[labels]

    def touching(state):
        mask = lat3 == state
        near = np.zeros_like(mask)
        for axis in (1, 2):
            near |= np.roll(mask, 1, axis) | np.roll(mask, -1, axis)
        near[1:] |= mask[:-1]
        near[:-1] |= mask[1:]
        return set(np.unique(lab[na & near])) - {0}

    cc, el = touching(CC), touching(SE)
    cls = np.full(lat3.shape, -1)
    for r in set(np.unique(lab[na])) - {0}:
        cls[lab == r] = 2 if r not in cc else (1 if r not in el else 0)
    return cls, len(set(np.unique(lab[na])) & el)


@pytest.mark.parametrize("by_runs", [False, True], ids=["sites", "runs"])
@pytest.mark.parametrize("seed", range(5))
def test_cluster_classes_match_an_independent_labelling(seed, by_runs):
    rng = np.random.default_rng(seed)
    nz, ny, nx = 9, 7, 8
    lat3 = rng.choice([GAP, NA], size=(nz, ny, nx), p=[0.55, 0.45]).astype(np.uint8)
    lat3[0] = SE
    lat3[-1] = CC
    lat3[rng.random((nz, ny, nx)) < 0.05] = SE  # electrolyte inclusions
    cls, counts = _classify(lat3, by_runs)
    ref, n_touching_el = _reference(lat3)
    np.testing.assert_array_equal(cls, ref)
    assert counts[0] == (ref == 0).sum() and counts[1] == (ref == 1).sum() and counts[2] == (ref == 2).sum()
    assert counts[3] == n_touching_el


@pytest.mark.parametrize("by_runs", [False, True], ids=["sites", "runs"])
def test_handmade_cases(by_runs):
    nz, ny, nx = 6, 4, 4
    lat3 = np.full((nz, ny, nx), GAP, dtype=np.uint8)
    lat3[0] = SE
    lat3[-1] = CC
    lat3[1:5, 0, 0] = NA  # a pillar SE→CC: active
    lat3[2, 2, 2] = NA  # floating: dead
    lat3[4, 2, 2] = NA  # hanging from the CC, no electrolyte: trapped
    lat3[1, 3, 1] = NA  # on the SE, not touching CC: dead (still counts as touching electrolyte)
    cls, counts = _classify(lat3, by_runs)
    assert cls[1, 0, 0] == 0 and cls[2, 2, 2] == 2 and cls[4, 2, 2] == 1 and cls[1, 3, 1] == 2
    assert list(counts) == [4, 1, 2, 2]


def test_runs_classify_as_the_site_by_site_labelling():
    """``classify_na_runs`` (runs of Na along x joined by overlap) against the site-by-site union-find on
    1500 random lattices of 1–8 voxels a side, every state at random weights (SEI among them), five
    counts: the same class at every site and the same counts. The small sides are where the periodic
    joins are subtle: a run across the row's end (x), a row beside itself (ny = 1) or twice beside
    another (ny = 2). Planted faults, each failing here: the join across the row's periodic end left out,
    the join of row y = 0 to y = ny − 1 left out, the run's ends along x not read for what they touch."""
    rng = np.random.default_rng(2026)
    states = np.array([GAP, SE, NA, CC, SEI], dtype=np.uint8)
    for _ in range(1500):
        nx, ny, nz = (int(v) for v in rng.integers(1, 9, 3))
        lattice = rng.choice(states, nx * ny * nz, p=rng.dirichlet(np.full(5, 0.7)))
        parent = np.empty(lattice.size, dtype=np.int32)
        want_class, want = np.empty(lattice.size, dtype=np.int8), np.zeros(5, dtype=np.int64)
        label_na_clusters(lattice, nx, ny, nz, parent)
        classify_na(lattice, nx, ny, nz, parent, want_class, want)
        got_class, got = np.empty(lattice.size, dtype=np.int8), np.zeros(5, dtype=np.int64)
        classify_na_runs(lattice, nx, ny, nz, got_class, got)
        assert np.array_equal(got_class, want_class), (nx, ny, nz)
        assert np.array_equal(got, want), (nx, ny, nz)
