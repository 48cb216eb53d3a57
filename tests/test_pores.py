"""E9: Na enters a collector pore only above the capillary entry pressure and only to its extrusion depth
(``kmc.pores``), through the production insertion kernel (``kmc.kernels.plating.insertion_site``)."""
import math

import numpy as np
import pytest

from kmc import pores
from kmc.kernels.capillary import EPS_SIZE
from kmc.kernels.cell import CC, GAP, NA, SE
from kmc.kernels.plating import insertion_site

GAMMA, PAIR_CU, RADIUS, SIGMA_REF, SIZE_STRENGTH, SIZE_EXP = 0.2, -0.1, 1.4, 0.235, 13.8, 1.0  # materials.toml


def test_entry_pressure_and_extrusion_law_by_hand():
    """θ_Cu = 120° (W_adh = γ/2): p_entry = 2γ·0.5/r_p = 0.1429 MPa at r_p = 1.4 µm; σ_f = 0.235 + 13.8/2.8 =
    5.164 MPa, τ_f = σ_f/√3, L = (σ − p_entry) r_p/(2τ_f): 2.314 µm at 10 MPa, 4 voxels of 0.5 µm."""
    entry = pores.entry_pressure_mpa(GAMMA, PAIR_CU, RADIUS)
    assert entry == pytest.approx(2 * 0.2 * 0.5 / 1.4e-6 * 1e-6, rel=1e-12)
    rate = pores.extrusion_um_per_mpa(RADIUS, SIGMA_REF, SIZE_STRENGTH, SIZE_EXP)
    tau = (0.235 + 13.8 / 2.8) / math.sqrt(3)
    assert rate * (10 - entry) == pytest.approx((10 - entry) * 1.4 / (2 * tau), rel=1e-12)
    assert pores.depth_voxels(10.0, entry, rate, 0.5) == 4
    assert pores.depth_voxels(entry * 0.99, entry, rate, 0.5) == 0


def _straight_pore(pore_layers=5):
    """3×3 columns: SE at z = 0, a Na layer at z = 1, the collector from z = 2 with one straight pore up the
    middle column (open to the Na), solid top layer."""
    nx = ny = 3
    nz = pore_layers + 3
    lat = np.full((nz, ny, nx), CC, dtype=np.uint8)
    lat[0] = SE
    lat[1] = NA
    lat[2:2 + pore_layers, 1, 1] = GAP
    return lat.ravel(), nx, ny, nz, np.full(nx * ny, 2, dtype=np.int64)


@pytest.mark.parametrize("stress_mpa", [0.1, 3.0, 10.0, 20.0])
def test_plated_na_fills_a_straight_pore_to_the_extrusion_depth(stress_mpa):
    """Plating at the face under the pore fills it from its mouth, one voxel per event, exactly the
    extrusion law's whole voxels deep (none below the entry pressure, 0.14 MPa), then finds no room.
    Shown to fail with the admissibility test removed (all 5 pore voxels filled at any stress)."""
    lat, nx, ny, nz, cc_bottom = _straight_pore()
    voxel = 0.5
    entry = pores.entry_pressure_mpa(GAMMA, PAIR_CU, RADIUS)
    depth = pores.depth_voxels(stress_mpa, entry, pores.extrusion_um_per_mpa(RADIUS, SIGMA_REF, SIZE_STRENGTH,
                                                                             SIZE_EXP), voxel)
    nxy = nx * ny
    c, e = 4 + nxy, 4  # the Na voxel under the pore and the electrolyte below it
    queue, visited = np.zeros(lat.size, dtype=np.int64), np.zeros(lat.size, dtype=np.uint8)
    filled = 0
    for _ in range(10):
        g = insertion_site(c, e, lat, np.zeros(nxy, dtype=np.uint8), nx, ny, nz, np.zeros(EPS_SIZE), queue, visited,
                           cc_bottom, depth)
        if g < 0:
            break
        assert g == 4 + (2 + filled) * nxy  # up the pore from its mouth
        lat[g] = NA
        filled += 1
    assert filled == min(depth, 5)
    assert filled == {0.1: 0, 3.0: 1, 10.0: 4, 20.0: 5}[stress_mpa]
