"""The solve's band fill of the faradaic trees against the per-site definition (``faradaic.site_weights``),
bit for bit, on random lattices with every face kind: the band's faces (``interface.contact_faces``), their
kinetics (``faradaic.face_table``) and the leaves summed from them (``faradaic.fill_face_weights``), the
path the driver takes at every solve."""
import numpy as np
import pytest

from kmc.kernels import faradaic as kf
from kmc.kernels.cell import CC, GAP, NA, SE, SEI
from kmc.kernels.interface import contact_faces
from kmc.kernels.lattice import N_NEIGHBORS


def _params(direction):
    p = np.zeros(kf.N_PARAMS)
    p[kf.P_VT], p[kf.P_F], p[kf.P_ALPHA] = -0.03 * direction, 38.9, 0.5  # plating below, stripping above
    p[kf.P_J0_NA], p[kf.P_J0_AU], p[kf.P_U_ALLOY] = 2e-3, 5e-4, 0.35
    p[kf.P_SIGMA_NA], p[kf.P_SIGMA_CHI], p[kf.P_CHI_FLOOR] = 3.0, 5.0, 0.05
    p[kf.P_STRESS_V_PER_MPA], p[kf.P_PRESSURE], p[kf.P_FACE_AREA] = 2.4e-7, 5.6, 2.5e-9
    p[kf.P_J0_NUC], p[kf.P_B_NUC], p[kf.P_DIRECTION], p[kf.P_SEI_J0_RATIO] = 1e6, 1e-4, direction, 0.1
    p[kf.P_DEPOSIT_STRESS] = 1.0
    return p


@pytest.mark.parametrize("direction", [1.0, -1.0])
@pytest.mark.parametrize("seed", range(3))
def test_band_fill_equals_the_sum_over_each_sites_faces(direction, seed):
    """Every leaf of the band (which starts and ends mid-layer) has the bits of ``site_weights``, the
    leaves outside it are untouched. Planted faults: the −x neighbour not wrapped at x = 0 (``c − 1``
    there) in the faces' list, the +z neighbour taken across the top wall, and a face's weight written
    over its site's instead of added, each fail here."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = 5, 4, 6
    n = nx * ny * nz
    lattice = rng.choice(np.array([GAP, SE, NA, CC, SEI], dtype=np.uint8), n, p=[0.1, 0.3, 0.35, 0.15, 0.1])
    site_class = rng.choice(np.array([-1, 0, 1, 2], dtype=np.int8), n, p=[0.1, 0.6, 0.15, 0.15])
    col_state = rng.integers(0, 4, nx * ny).astype(np.uint8)
    col_support = rng.integers(0, 4, nx * ny).astype(np.int64)
    col_sigma = np.where(rng.random(nx * ny) < 0.7, rng.random(nx * ny) * 10.0, np.nan)
    phi = rng.normal(0.0, 0.02, nx * ny)
    na_contact = rng.integers(0, 2, n).astype(np.uint8)
    side_w = rng.random(nx * ny) * 0.3  # model.face_area = "true_area": side faces of each electrolyte column
    params = _params(direction)
    params[kf.P_FACE_STATE] = float(seed % 2)  # χ from the contact state on every other lattice
    lo, hi = 3, n - 2
    trees = [np.full(n, -7.0) for _ in range(3)]
    for t in trees:
        t[lo:hi] = 0.0  # zero on entry: the driver zeroes them (``solver.tree_zero_leaves``, tests/test_solver.py)
    cond, elec, pix, kind = (np.empty(6 * n, dtype=np.int64) for _ in range(4))
    au_present = rng.integers(0, 2, nx * ny).astype(np.uint8)
    n_faces = contact_faces(lattice, site_class, au_present, (col_state == kf.CC_AU_ALLOYED).astype(np.uint8), nx, ny,
                            nz, cond, elec, pix, kind, lo, hi)
    fk, j0, u, area = np.empty(n_faces, dtype=np.int64), np.empty(n_faces), np.empty(n_faces), np.empty(n_faces)
    kf.face_table(cond, elec, n_faces, lattice, col_state, col_support, col_sigma, na_contact, side_w, params, nx, ny,
                  fk, j0, u, area)
    kf.fill_face_weights(cond, elec, n_faces, fk, j0, u, area, phi, params, nx * ny, *trees)
    nbr = np.empty(N_NEIGHBORS, dtype=np.int64)
    for c in range(n):
        want = (kf.site_weights(c, lattice, site_class, col_state, col_support, col_sigma, na_contact, side_w, phi,
                                params, nx, ny, nz, nbr)
                if lo <= c < hi else (-7.0, -7.0, -7.0))
        assert tuple(t[c] for t in trees) == want, c
    assert any(t[lo:hi].any() for t in trees)
