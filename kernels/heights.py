"""Heights of the Na above the electrolyte's continuous surface (PHYSICS.md §2, §7).

The electrolyte's surface is kept per column as a continuous height in lattice coordinates (µm
above the lattice's z = 0 plane, ``kmc.geometry``), because the voxel need not resolve the relief.
The Na thickness of a column is the height of its Na top above that surface: a void under the Na or
a porous deposit shows as height the charge did not fill, which a count of Na voxels cannot see.
"""
from numba import njit

from kmc.kernels.cell import NA, SE, SEI


@njit(cache=True)
def na_height_um(lattice, nx, ny, nz, cc_bottom, se_surface_um, voxel_um, out):
    """Per column, the height (µm) of the topmost Na voxel's upper face above the continuous SE
    surface, looking down from the collector's lower face to the electrolyte; 0 where the column holds
    no Na there (Na in collector pores above the lower face is not the anode: ``trapped_na``).
    ``out`` is float64 per column."""
    nxy = nx * ny
    for col in range(nxy):
        out[col] = 0.0
        for z in range(min(cc_bottom[col], nz) - 1, -1, -1):
            v = lattice[col + z * nxy]
            if v == NA:
                out[col] = (z + 1) * voxel_um - se_surface_um[col]
                break
            if v == SE or v == SEI:
                break
