"""E7, the interphase, per column over a batch (``kmc.battery.losses.Losses.grow_sei``).

One pass over the columns, where NumPy's version made a mask, gathered the columns under it into
temporaries, computed and scattered back: ~7 ms a batch at 512² columns, every batch of a run. The
arithmetic is NumPy's element by element (the same IEEE operations in the same order, no fast-math), so
the thickness and the debt are the same bits.
"""
import math

from numba import njit


@njit(cache=True)
def grow_sei_columns(na_faces, sei_nm, sei_debt, k_dt_nm, limit_nm, continuous, voxel_nm):
    """Grow the interphase on every column with Na faces (``na_faces`` > 0, their area in a²) by k dt
    (``k_dt_nm``): δ + k dt if ``continuous``, else the self-limiting law integrated exactly,
    √((δ0 + δ)² + 2 δ0 k dt) − δ0 (δ0 = ``limit_nm``); the Na consumed, faces × Δδ / a (voxels), is added
    to the column's ``sei_debt``. Returns the number of columns grown."""
    n = 0
    for c in range(na_faces.size):
        faces = na_faces[c]
        if faces > 0:
            d0 = sei_nm[c]
            if continuous:
                d1 = d0 + k_dt_nm
            else:
                d1 = math.sqrt((limit_nm + d0) * (limit_nm + d0) + 2.0 * limit_nm * k_dt_nm) - limit_nm
            sei_nm[c] = d1
            sei_debt[c] += faces * (d1 - d0) / voxel_nm
            n += 1
    return n
