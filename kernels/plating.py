"""Plating one voxel of Na at a contact face: where the new volume goes (PHYSICS.md §5, E1).

Na reduced at the face between a conductor voxel ``c`` and an electrolyte voxel ``e`` adds one voxel
of metal, volume-conserving. All Na voxels are alike, so the net change of an insertion is one GAP
voxel ``g`` becoming Na; the rules decide which:

1. a GAP next to the face (a neighbour of c or of e) touching both an electrolyte voxel and a
   conductor (CC or Na): growth along the interface;
2. the first GAP above c in its column, reached through contiguous Na: the Na column is pushed up;
3. otherwise the nearest GAP reachable through the Na connected to c (breadth-first, unbounded):
   plastic flow to the nearest free surface; and if c's own Na (or c, a collector face) is
   confined, the nearest gap left anywhere at the interface (``nearest_interface_gap``);
4. otherwise (no gap at the interface at all) the CC is lifted one voxel, and the search repeats.

Among the candidates of rules 1 and 2 the one of lowest insertion energy (capillary bond counting,
``kmc.kernels.capillary``) wins, the first in search order on a tie. Rule 3 is searched only when
rules 1 and 2 give nothing: it is the expensive, non-local case (a sealed interface).

E9: a GAP inside the collector body (at or above the column's lowest CC voxel: a pore of a porous
collector) is a candidate only down to ``pore_depth`` layers below the collector's lower face — the
extrusion depth of the loaded Na (``kmc.pores``; 0 below the capillary entry pressure). Deeper pore
voxels are not filled and not searched through.
"""
import numpy as np
from numba import njit

from kmc.kernels.capillary import _eps_of
from kmc.kernels.cell import CC, GAP, NA, SE, SEI
from kmc.kernels.deposit_stress import LIFT, receiving_gap
from kmc.kernels.interface import lift_collector
from kmc.kernels.lattice import N_NEIGHBORS, neighbors6, site_xyz, walled_neighbor
from kmc.kernels.leaf import leaf

PLATED = 0  #: a voxel was inserted
PLATED_AFTER_LIFT = 1  #: the CC was lifted first
DOMAIN_FULL = 2  #: no room: the CC cannot be lifted further (lattice.nz too small)


@leaf
def insertion_energy(g, lattice, au_column, nx, ny, nz, eps, nbr):
    """E/E_eff gained by putting Na at the GAP g: Σ over g's neighbours of ε(neighbour)."""
    nxy = nx * ny
    neighbors6(g, nx, ny, nz, False, nbr)
    e = 0.0
    for d in range(N_NEIGHBORS):
        n = nbr[d]
        if n >= 0:
            e += _eps_of(n, lattice, au_column, nxy, eps)
    return e


@leaf
def _touches_interface(g, lattice, nx, ny, nz, nbr):
    neighbors6(g, nx, ny, nz, False, nbr)
    el = False
    cond = False
    for d in range(N_NEIGHBORS):
        n = nbr[d]
        if n < 0:
            continue
        s = lattice[n]
        if s == SE or s == SEI:
            el = True
        elif s == CC or s == NA:
            cond = True
    return el and cond


@njit(cache=True, inline="always")
def admissible(g, cc_bottom, nxy, pore_depth):
    """Whether Na may be put at the GAP g (E9): anywhere below the collector's lower face, and in a
    collector pore only down to ``pore_depth`` layers (the lower face's own layer is the first)."""
    col = g % nxy
    return g // nxy - cc_bottom[col] < pore_depth


@njit(cache=True)
def _nearest_gap_through_na(c, lattice, nx, ny, nz, queue, visited, nbr, cc_bottom, pore_depth):
    """Breadth-first search from the Na voxel c through Na; the first admissible GAP met, or −1."""
    if lattice[c] != NA:
        return -1
    head = 0
    tail = 0
    queue[tail] = c
    tail += 1
    visited[c] = 1
    found = -1
    while head < tail and found < 0:
        s = queue[head]
        head += 1
        neighbors6(s, nx, ny, nz, False, nbr)
        for d in range(N_NEIGHBORS):
            n = nbr[d]
            if n < 0 or visited[n]:
                continue
            st = lattice[n]
            if st == GAP and admissible(n, cc_bottom, nx * ny, pore_depth):
                found = n
                break
            if st == NA:
                visited[n] = 1
                queue[tail] = n
                tail += 1
    for i in range(tail):
        visited[queue[i]] = 0
    return found


@njit(cache=True)
def nearest_interface_gap(c, lattice, nx, ny, nz, cc_bottom, pore_depth, gap_cols):
    """The GAP nearest to c's column (rings of increasing Chebyshev distance) that touches both an
    electrolyte voxel and a conductor, or −1: is any gap left at the interface at all?

    The local rules fail for a face that is itself confined — a collector face inside a patch of
    asperity contacts, a Na pocket with no free surface — while gaps remain elsewhere; PHYSICS E1
    rule 4 lifts the collector only when no gap is reachable anywhere at the interface.

    ``gap_cols`` (uint8 per column, or empty: every column is searched) marks the columns that may
    hold such a gap: a column marked 0 is passed over, and a marked column found to hold none is
    marked 0. The caller marks a column again whenever it may have gained one (``mark_gap_columns``);
    then the answer is the one searching every column gives, and searching is ~1 byte a column for
    the columns already found empty (before a layer seals, the last gaps are far apart and the
    searches many).
    """
    nbr = np.empty(N_NEIGHBORS, dtype=np.int64)
    nxy = nx * ny
    marked = gap_cols.size > 0
    col = c % nxy
    cy = col // nx
    cx = col - cy * nx
    r_max = max(nx, ny) // 2 + 1
    for r in range(r_max + 1):
        for dy in range(-r, r + 1):
            # the ring's columns in row order: a whole row at dy = ±r, its two ends in between (not the
            # (2r + 1)² square, whose inside the smaller rings had: a far gap cost the cube of its distance)
            step = 1 if dy == -r or dy == r else 2 * r
            for dx in range(-r, r + 1, step):
                x = (cx + dx) % nx
                y = (cy + dy) % ny
                col2 = x + nx * y
                if marked and gap_cols[col2] == 0:
                    continue
                for z in range(nz):
                    g = col2 + z * nxy
                    st = lattice[g]
                    if st == CC:
                        break
                    if (st == GAP and _touches_interface(g, lattice, nx, ny, nz, nbr)
                            and admissible(g, cc_bottom, nxy, pore_depth)):
                        return g
                if marked:
                    gap_cols[col2] = 0
    return -1


@njit(cache=True, inline="always")
def mark_gap_columns(s, nx, ny, gap_cols):
    """Site s changed state: its column and the four beside it may now hold a gap at the interface
    (whether a GAP is one depends on it and its six neighbours), for ``nearest_interface_gap``."""
    col = s % (nx * ny)
    x, y, _ = site_xyz(col, nx, ny)
    gap_cols[col] = 1
    for d in range(4):  # the lateral directions: a column's index is its site in layer 0, beside the columns beside it
        gap_cols[walled_neighbor(col, d, x, y, 0, nx, ny, 1)] = 1


@leaf
def local_insertion_site(c, e, lattice, au_column, nx, ny, nz, eps, cc_bottom, pore_depth, nbr, nbr2):
    """Rules 1 and 2: the GAP of least insertion energy next to the face (c, e) at the interface, or
    the first GAP above c through its Na column; −1 if neither exists."""
    nxy = nx * ny
    best = -1
    best_e = np.inf
    for center in (c, e):
        neighbors6(center, nx, ny, nz, False, nbr)
        for d in range(N_NEIGHBORS):
            g = nbr[d]
            if (g >= 0 and lattice[g] == GAP and admissible(g, cc_bottom, nxy, pore_depth)
                    and _touches_interface(g, lattice, nx, ny, nz, nbr2)):
                en = insertion_energy(g, lattice, au_column, nx, ny, nz, eps, nbr2)
                if en < best_e:
                    best, best_e = g, en
    if lattice[c] == NA:
        z = c // nxy
        col = c - z * nxy
        while z < nz and lattice[col + z * nxy] == NA:
            z += 1
        if z < nz and lattice[col + z * nxy] == GAP and admissible(col + z * nxy, cc_bottom, nxy, pore_depth):
            g = col + z * nxy
            en = insertion_energy(g, lattice, au_column, nx, ny, nz, eps, nbr2)
            if en < best_e:
                best, best_e = g, en
    return best


@njit(cache=True)
def insertion_site(c, e, lattice, au_column, nx, ny, nz, eps, queue, visited, cc_bottom, pore_depth):
    """The GAP that plating at the face (c, e) fills (rules 1–3), or −1 if none is reachable; pore
    voxels only down to ``pore_depth`` layers into the collector (E9)."""
    nbr = np.empty(N_NEIGHBORS, dtype=np.int64)
    nbr2 = np.empty(N_NEIGHBORS, dtype=np.int64)
    best = local_insertion_site(c, e, lattice, au_column, nx, ny, nz, eps, cc_bottom, pore_depth, nbr, nbr2)
    if best >= 0:
        return best
    g = _nearest_gap_through_na(c, lattice, nx, ny, nz, queue, visited, nbr, cc_bottom, pore_depth)
    if g >= 0:
        return g
    return nearest_interface_gap(c, lattice, nx, ny, nz, cc_bottom, pore_depth, np.empty(0, dtype=np.uint8))


@njit(cache=True)
def plate_voxel(c, e, lattice, au_column, nx, ny, nz, eps, cc_bottom, queue, visited, out_site, pore_depth):
    """Insert one Na voxel for the face (c, e); ``out_site[0]`` gets the filled site. Returns PLATED*."""
    g = insertion_site(c, e, lattice, au_column, nx, ny, nz, eps, queue, visited, cc_bottom, pore_depth)
    code = 0
    if g < 0:
        if not lift_collector(lattice, nx, ny, nz, cc_bottom):
            return 2
        code = 1
        # c and e did not move (the CC body above them did); c may now reach the new gap.
        g = insertion_site(c, e, lattice, au_column, nx, ny, nz, eps, queue, visited, cc_bottom, pore_depth)
        if g < 0:
            return 2
    lattice[g] = NA
    out_site[0] = g
    return code


@njit(cache=True)
def deposit_insertion_site(c, e, lattice, au_column, nx, ny, nz, eps, cc_bottom, pore_depth, target, nbr, nbr2):
    """E1 with the per-solve stress map (``model.insertion = "least_stress"``, PHYSICS §5 M): rules 1
    and 2 where the face has free space next to it (the deposit's edge, cost σ_edge alone); else the
    gap of the open pixel the face's column reaches at least stress (``kmc.kernels.deposit_stress``),
    or — if that pixel has filled since the solve — the interface gap nearest to it; ``LIFT`` (−2)
    when lifting the collector is cheaper; −1 if no gap is left at the interface at all. ``nbr``,
    ``nbr2``: neighbour scratch (int64[6]; it runs once per plating event)."""
    nxy = nx * ny
    g = local_insertion_site(c, e, lattice, au_column, nx, ny, nz, eps, cc_bottom, pore_depth, nbr, nbr2)
    if g >= 0:
        return g
    t = target[c % nxy]
    if t == LIFT:
        return LIFT
    if t < 0:  # a column that was a contact at the solve (a nucleus' first voxels): nearest gap
        return nearest_interface_gap(c, lattice, nx, ny, nz, cc_bottom, pore_depth, np.empty(0, dtype=np.uint8))
    g = receiving_gap(t, lattice, nxy, cc_bottom)
    if g >= 0:
        return g
    return nearest_interface_gap(t, lattice, nx, ny, nz, cc_bottom, pore_depth, np.empty(0, dtype=np.uint8))
