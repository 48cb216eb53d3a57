"""The solve's band fill of the move tree (``moves.fill_move_band``) against the per-site definition
(``moves.move_propensity``), bit for bit, on random lattices under the production move parameters."""
from pathlib import Path

import numpy as np
import pytest

from kmc.battery import BatteryModel
from kmc.config import load_scenario
from kmc.kernels import moves as km
from kmc.kernels.cell import CC, GAP, NA, SE
from kmc.kernels.interface import COLUMN_NA_SUPPORT
from kmc.kernels.lattice import N_NEIGHBORS

T4 = Path(__file__).resolve().parent.parent / "scenarios" / "validation" / "T4.toml"


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("refill", ["loaded_flow", "critical_current"])
@pytest.mark.parametrize("seed", range(3))
def test_move_band_fill_equals_each_sites_propensity(refill, seed, sparse):
    """Every leaf of the band (which starts and ends mid-layer) has the bits of ``move_propensity``, the
    leaves outside it are untouched. With ``sparse``, a lattice of a multiple of eight sites with few
    gaps, read eight voxels at a time. Planted faults: the fill visiting only the gaps inside the band (the
    band's Na next to a gap just outside it left at 0), and the word test skipping eight voxels that
    hold a gap (``!= 0``), each fail here."""
    nx, ny, nz = (8, 5, 7) if sparse else (6, 5, 7)
    p = BatteryModel(load_scenario(T4, overrides=[f"lattice.nx={nx}", f"lattice.ny={ny}",
                                                  f'model.refill="{refill}"'])).params
    rng = np.random.default_rng(seed)
    n = nx * ny * nz
    lattice = rng.choice(np.array([GAP, SE, NA, CC], dtype=np.uint8), n,
                         p=[0.03, 0.1, 0.77, 0.1] if sparse else [0.35, 0.1, 0.45, 0.1])
    au_column = (rng.random(nx * ny) < 0.5).astype(np.uint8)
    col_support = np.where(rng.random(nx * ny) < 0.6, COLUMN_NA_SUPPORT, 0).astype(np.int64)
    cc_bottom = rng.integers(nz - 3, nz, nx * ny).astype(np.int64)
    move_params = p.moves.copy()
    move_params[km.M_LOADED_FLOW] = 1.0
    pore_depth = 1
    lo, hi = 4, n - 3
    tree = np.full(n, -7.0)
    tree[lo:hi] = 0.0  # zero on entry: the driver zeroes them (``solver.tree_zero_leaves``, tests/test_solver.py)
    km.fill_move_band(tree, lattice, au_column, col_support, cc_bottom, pore_depth, nx, ny, nz, p.eps, move_params,
                      lo, hi)
    nbr_s, nbr_tmp = np.empty(N_NEIGHBORS, dtype=np.int64), np.empty(N_NEIGHBORS, dtype=np.int64)
    for s in range(n):
        want = (km.move_propensity(s, lattice, au_column, col_support, cc_bottom, pore_depth, nx, ny, nz, p.eps,
                                   move_params, nbr_s, nbr_tmp) if lo <= s < hi else -7.0)
        assert tree[s] == want, s
    assert (tree[lo:hi] > 0).sum() > (5 if sparse else 20)
