"""E7's growth per column (``kmc.kernels.interphase``) against the law written out in NumPy."""
import numpy as np
import pytest

from kmc.kernels.interphase import grow_sei_columns


def _numpy_law(na_faces, sei_nm, sei_debt, k_dt, lim, continuous, voxel_nm):
    """The law as ``Losses.grow_sei`` wrote it in NumPy before the kernel: masked, gathered, scattered."""
    on = na_faces > 0
    d0 = sei_nm[on]
    d1 = d0 + k_dt if continuous else np.sqrt((lim + d0) ** 2 + 2.0 * lim * k_dt) - lim
    sei_nm[on] = d1
    sei_debt[on] += na_faces[on] * (d1 - d0) / voxel_nm
    return int(on.sum())


@pytest.mark.parametrize("continuous", [False, True], ids=["self_limiting", "continuous"])
def test_interphase_grows_as_the_law_bit_for_bit(continuous):
    """On 4000 columns (a third with no Na faces, side faces at fractional area, thicknesses from 0 to 10 δ0,
    five batches of different dt): the same thickness and debt, bit for bit, and the same number of
    columns grown; the self-limiting law's growth agrees with its differential form dδ/dt = k/(1 + δ/δ0)
    for a short step; none grown when no column has Na faces. Planted faults, each failing here: the
    continuous law for both, the debt without the faces' area."""
    rng = np.random.default_rng(7)
    n = 4000
    faces = rng.choice([0.0, 1.0, 1.37, 2.0, 2.74], n, p=[0.33, 0.3, 0.17, 0.1, 0.1])
    faces[rng.random(n) < 0.02] = -0.0  # a zero of either sign grows nothing
    lim, k, voxel = 1.5, 0.02, 500.0
    want_nm, want_debt = rng.random(n) * 10 * lim, rng.random(n) * 1e-3
    got_nm, got_debt = want_nm.copy(), want_debt.copy()
    for dt in (0.1, 3.0, 60.0, 1e-9, 600.0):
        n_want = _numpy_law(faces, want_nm, want_debt, k * dt, lim, continuous, voxel)
        n_got = grow_sei_columns(faces, got_nm, got_debt, k * dt, lim, continuous, voxel)
        assert n_got == n_want
        np.testing.assert_array_equal(got_nm, want_nm)
        np.testing.assert_array_equal(got_debt, want_debt)
    if not continuous:  # the integrated law's rate at its start
        d0 = np.array([0.0, lim, 5 * lim])
        d = d0.copy()
        grow_sei_columns(np.ones(3), d, np.zeros(3), k * 1e-4, lim, False, voxel)
        np.testing.assert_allclose((d - d0) / 1e-4, k / (1 + d0 / lim), rtol=1e-6)
    assert grow_sei_columns(np.zeros(5), np.zeros(5), np.zeros(5), 1.0, lim, continuous, voxel) == 0
