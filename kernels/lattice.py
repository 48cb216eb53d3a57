"""Site indexing on the flat voxel lattice.

A lattice of ``nx × ny × nz`` voxels is stored as one flat uint8 array, x fastest:
``site = x + nx * (y + ny * z)``. x and y are always periodic. z is periodic (bulk benchmarks) or
walled (the battery cell: z = 0 at the electrolyte, z = nz − 1 under the collector); across a wall
the neighbour index is ``WALL`` (−1).

Neighbours come from index arithmetic, not from a stored table: a table would cost 24–48 bytes per
site, more than everything else the engine keeps per site.
"""
import numpy as np
from numba import njit

from kmc.kernels.leaf import leaf

WALL = -1

#: The six first-neighbour directions, in the order every kernel uses: −x, +x, −y, +y, −z, +z.
DIRECTIONS = np.array(
    [[-1, 0, 0], [1, 0, 0], [0, -1, 0], [0, 1, 0], [0, 0, -1], [0, 0, 1]], dtype=np.int64
)
N_NEIGHBORS = 6


@njit(cache=True)
def site_index(x, y, z, nx, ny):
    """Flat index of voxel (x, y, z)."""
    return x + nx * (y + ny * z)


@njit(cache=True)
def site_coords(site, nx, ny):
    """(x, y, z) of a flat index."""
    q = site // nx
    x = site - q * nx
    z = q // ny
    y = q - z * ny
    return x, y, z


@leaf
def neighbors6(site, nx, ny, nz, z_periodic, out):
    """Write the six first neighbours of ``site`` into ``out[0:6]`` (order of ``DIRECTIONS``).

    One decode of the flat index (two integer divisions) serves all six; each neighbour is then a
    plus or minus of a stride with a wrap at the periodic edges. Across a z wall the entry is WALL.
    """
    nxy = nx * ny
    q = site // nx
    x = site - q * nx
    z = q // ny
    y = q - z * ny
    out[0] = site - 1 if x > 0 else site + (nx - 1)
    out[1] = site + 1 if x < nx - 1 else site - (nx - 1)
    out[2] = site - nx if y > 0 else site + (ny - 1) * nx
    out[3] = site + nx if y < ny - 1 else site - (ny - 1) * nx
    if z > 0:
        out[4] = site - nxy
    elif z_periodic:
        out[4] = site + (nz - 1) * nxy
    else:
        out[4] = WALL
    if z < nz - 1:
        out[5] = site + nxy
    elif z_periodic:
        out[5] = site - (nz - 1) * nxy
    else:
        out[5] = WALL


@njit(cache=True, inline="always")
def walled_neighbor(site, d, x, y, z, nx, ny, nz):
    """The d-th first neighbour of ``site`` (order of ``DIRECTIONS``), whose coordinates the caller
    carries along its loop (``next_site_xyz``) instead of decoding every index as ``neighbors6`` does:
    periodic in x and y, ``WALL`` across a z wall."""
    if d == 0:
        return site - 1 if x > 0 else site + (nx - 1)
    if d == 1:
        return site + 1 if x < nx - 1 else site - (nx - 1)
    if d == 2:
        return site - nx if y > 0 else site + (ny - 1) * nx
    if d == 3:
        return site + nx if y < ny - 1 else site - (ny - 1) * nx
    if d == 4:
        return site - nx * ny if z > 0 else WALL
    return site + nx * ny if z < nz - 1 else WALL


@njit(cache=True, inline="always")
def site_xyz(site, nx, ny):
    """(x, y, z) of a flat site index (x fastest)."""
    q = site // nx
    z = q // ny
    return site - q * nx, q - z * ny, z


@njit(cache=True, inline="always")
def next_site_xyz(x, y, z, nx, ny):
    """The coordinates of the next site in the flat order (x fastest)."""
    x += 1
    if x == nx:
        x = 0
        y += 1
        if y == ny:
            y = 0
            z += 1
    return x, y, z


@njit(cache=True)
def lattices_equal(a, b):
    """Whether two lattices of one size hold the same states (stops at the first difference, and
    allocates nothing, unlike ``np.array_equal``)."""
    for i in range(a.size):
        if a[i] != b[i]:
            return False
    return True
