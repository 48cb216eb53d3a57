"""Voxel state codes of the battery cell (PHYSICS.md §2) and small kernels over them.

z points from the solid electrolyte (SE, bottom) up to the current collector (CC, top); x and y
are periodic, z is walled.
"""
import numpy as np
from numba import njit

GAP = 0  #: empty: initial gap between CC and SE, a void, a pore of the CC
SE = 1  #: solid electrolyte (only as deep as its topography; the bulk enters the field solve)
NA = 2  #: sodium metal
CC = 3  #: current collector (a rigid body)
SEI = 4  #: solid-electrolyte interphase (an electrolyte with a lower exchange current)

#: Legend written to the store's ``lattice`` variable (CF flag attributes).
FLAG_VALUES = [GAP, SE, NA, CC, SEI]
FLAG_MEANINGS = "gap electrolyte sodium collector interphase"


@njit(cache=True)
def column_profile(lattice, nx, ny, nz, state, from_top, out):
    """Per column, the z of the first voxel of ``state`` scanning up (or down if ``from_top``); -1 if none."""
    nxy = nx * ny
    for c in range(nxy):
        out[c] = -1
        if from_top:
            for z in range(nz - 1, -1, -1):
                if lattice[c + z * nxy] == state:
                    out[c] = z
                    break
        else:
            for z in range(nz):
                if lattice[c + z * nxy] == state:
                    out[c] = z
                    break


def count_states(lattice: np.ndarray) -> np.ndarray:
    """Number of voxels of each state code 0…4 (a recount, independent of any counter)."""
    return np.bincount(lattice.ravel(), minlength=5)[:5]
