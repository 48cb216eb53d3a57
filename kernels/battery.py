"""The battery model's batch loop between field solves (plating: E1, E2, E3, lifts).

One call runs faradaic events at the frozen V and φ of the last field solve (``kmc.kernels.faradaic``)
until a bound: an event count, a time, or a change that needs a new solve — the contact faces or the
load-bearing columns having changed by more than the re-solve fraction since the solve, the collector
having been lifted, or (while the double layer carries the current) a nucleus having formed.

Charge and volume bookkeeping (``counters``): every plating and nucleation event adds one Na voxel
(charge q_v); an electrochemical alloying event sodiates one column's Au inventory (charge
``c_au·q_v``, no voxel). Na metal touching unalloyed Au alloys it chemically (no charge): the column's
inventory ``c_au`` (voxels) is taken from the metal, accumulated in ``na_debt`` and paid by removing
the touching voxel once a whole voxel is owed. So, recounted from the lattice at any time,

    N_plate + N_nucleate + c_au·N_alloy = (Na voxels − Na voxels at start − na_debt) + c_au·(alloyed columns).
"""
import numpy as np
from numba import njit

from kmc.kernels.cell import CC, GAP, NA, SE, SEI
from kmc.kernels.clusters import CLUSTER_ACTIVE
from kmc.kernels.faradaic import (
    CC_AU,
    CC_AU_ALLOYED,
    CC_NUCLEATED,
    pick_face,
    site_weights,
)
from kmc.kernels.interface import COLUMN_CC_CONTACT, COLUMN_NA_SUPPORT, COLUMN_OPEN
from kmc.kernels.lattice import N_NEIGHBORS, neighbors6
from kmc.kernels.plating import DOMAIN_FULL, PLATED_AFTER_LIFT, plate_voxel
from kmc.kernels.solver import STOP_EVENTS, STOP_NO_EVENTS, STOP_TIME, tree_select, tree_total, tree_update

STOP_RESOLVE = 3  #: faces, supports or the collector changed enough to need a new field solve
STOP_FULL = 4  #: no room left for Na (lattice.nz too small for the plated capacity)

# counters
C_EVENTS = 0
C_PLATE = 1
C_ALLOY = 2
C_NUCLEATE = 3
C_LIFTS = 4
C_CHEM_ALLOY = 5
N_COUNTERS = 8

# fields of the ``tally`` float array
T_NA_DEBT = 0  #: Na (voxels) owed to chemical alloying, not yet removed from the lattice
N_TALLY = 2

# ``limits``: [faces at solve, supports at solve, re-solve fraction, stop on nucleation (0/1)]


@njit(cache=True)
def _update_site(c, lattice, site_class, col_state, col_support, phi, params, nx, ny, nz,
                 plate_tree, alloy_tree, nuc_tree, offsets, nbr, one, scratch):
    wp, wa, kn = site_weights(c, lattice, site_class, col_state, col_support, phi, params, nx, ny, nz, nbr)
    one[0] = c
    plate_tree[c] = wp
    alloy_tree[c] = wa
    nuc_tree[c] = kn
    tree_update(plate_tree, offsets, one, 1, scratch)
    tree_update(alloy_tree, offsets, one, 1, scratch)
    tree_update(nuc_tree, offsets, one, 1, scratch)


@njit(cache=True)
def _update_column(col, lattice, site_class, col_state, col_support, phi, params, nx, ny, nz,
                   plate_tree, alloy_tree, nuc_tree, offsets, nbr, one, scratch):
    nxy = nx * ny
    for z in range(nz):
        c = col + z * nxy
        if lattice[c] == CC:
            _update_site(c, lattice, site_class, col_state, col_support, phi, params, nx, ny, nz,
                         plate_tree, alloy_tree, nuc_tree, offsets, nbr, one, scratch)


@njit(cache=True)
def _column_kind(col, lattice, nx, ny, nz):
    """COLUMN_* of one column (same rule as ``interface.column_support``)."""
    nxy = nx * ny
    z = 0
    while z < nz and (lattice[col + z * nxy] == SE or lattice[col + z * nxy] == SEI):
        z += 1
    if z >= nz:
        return COLUMN_OPEN
    st = lattice[col + z * nxy]
    if st == CC:
        return COLUMN_CC_CONTACT
    if st == NA:
        while z < nz and lattice[col + z * nxy] == NA:
            z += 1
        if z < nz and lattice[col + z * nxy] == CC:
            return COLUMN_NA_SUPPORT
    return COLUMN_OPEN


@njit(cache=True)
def _count_faces_of(c, lattice, nx, ny, nz, nbr):
    neighbors6(c, nx, ny, nz, False, nbr)
    n = 0
    for d in range(N_NEIGHBORS):
        e = nbr[d]
        if e >= 0 and (lattice[e] == SE or lattice[e] == SEI):
            n += 1
    return n


@njit(cache=True)
def _after_insertion(g, lattice, site_class, col_state, col_support, phi, params, eps, au_column, nx, ny, nz,
                     plate_tree, alloy_tree, nuc_tree, offsets, c_au, tally, counters, state_counts,
                     nbr, one, scratch):
    """Bookkeeping after a Na voxel appeared at g: activity, chemical alloying, faces, support."""
    nxy = nx * ny
    site_class[g] = CLUSTER_ACTIVE
    state_counts[0] += _count_faces_of(g, lattice, nx, ny, nz, nbr)
    # Chemical alloying: Au that the new Na touches sodiates, paid for with Na from the metal.
    neighbors6(g, nx, ny, nz, False, nbr)
    for d in range(N_NEIGHBORS):
        k = nbr[d]
        if k >= 0 and lattice[k] == CC and col_state[k % nxy] == CC_AU:
            col = k % nxy
            col_state[col] = CC_AU_ALLOYED
            tally[T_NA_DEBT] += c_au
            counters[C_CHEM_ALLOY] += 1
            _update_column(col, lattice, site_class, col_state, col_support, phi, params, nx, ny, nz,
                           plate_tree, alloy_tree, nuc_tree, offsets, nbr, one, scratch)
            neighbors6(g, nx, ny, nz, False, nbr)
    if tally[T_NA_DEBT] >= 1.0 and lattice[g] == NA:
        state_counts[0] -= _count_faces_of(g, lattice, nx, ny, nz, nbr)
        lattice[g] = GAP
        site_class[g] = -1
        tally[T_NA_DEBT] -= 1.0
    _update_site(g, lattice, site_class, col_state, col_support, phi, params, nx, ny, nz,
                 plate_tree, alloy_tree, nuc_tree, offsets, nbr, one, scratch)
    col = g % nxy
    kind = _column_kind(col, lattice, nx, ny, nz)
    if kind != col_support[col]:
        if col_support[col] == COLUMN_NA_SUPPORT:
            state_counts[1] -= 1
        if kind == COLUMN_NA_SUPPORT:
            state_counts[1] += 1
        col_support[col] = kind


@njit(cache=True, nogil=True)
def run_faradaic(lattice, site_class, col_state, col_support, cc_bottom, phi, params, eps, au_column,
                 nx, ny, nz, plate_tree, alloy_tree, nuc_tree, offsets, i_far_a, q_v_c, c_au,
                 clock, counters, tally, rng, max_events, t_end, limits, state_counts, queue, visited):
    """Faradaic events at the frozen V, φ until a bound; returns a STOP_* code (solver's, or this
    module's STOP_RESOLVE / STOP_FULL).

    ``state_counts``: [contact faces, Na-support columns], kept up to date here and compared with
    ``limits`` (their values at the solve, and the re-solve fraction) to decide when to stop.
    """
    nxy = nx * ny
    nbr = np.empty(N_NEIGHBORS, dtype=np.int64)
    one = np.empty(1, dtype=np.int64)
    scratch = np.empty(4, dtype=np.int64)
    out = np.empty(1, dtype=np.int64)
    faces0 = limits[0]
    supports0 = limits[1]
    frac = limits[2]
    stop_on_nucleation = limits[3] > 0.0
    done = 0
    while done < max_events:
        s_p = tree_total(plate_tree)
        s_a = tree_total(alloy_tree)
        r_nuc = tree_total(nuc_tree)
        r_p = 0.0
        r_a = 0.0
        if s_p + s_a > 0.0 and i_far_a > 0.0:
            r_p = i_far_a * s_p / (s_p + s_a) / q_v_c
            r_a = i_far_a * s_a / (s_p + s_a) / (c_au * q_v_c) if c_au > 0.0 else 0.0
        total = r_p + r_a + r_nuc
        if total <= 0.0:
            return STOP_NO_EVENTS
        dt = -np.log(1.0 - rng.random()) / total
        if clock[0] + dt > t_end:
            clock[0] = t_end
            return STOP_TIME
        clock[0] += dt
        u = rng.random() * total
        counters[C_EVENTS] += 1
        done += 1
        if u < r_p:
            c, res = tree_select(plate_tree, offsets, u / r_p * s_p)
            e = pick_face(c, res, 0, lattice, col_state, col_support, phi, params, nx, ny, nz, nbr)
            code = plate_voxel(c, e, lattice, au_column, nx, ny, nz, eps, cc_bottom, queue, visited, out)
            if code == DOMAIN_FULL:
                counters[C_EVENTS] -= 1
                return STOP_FULL
            counters[C_PLATE] += 1
            _after_insertion(out[0], lattice, site_class, col_state, col_support, phi, params, eps, au_column,
                             nx, ny, nz, plate_tree, alloy_tree, nuc_tree, offsets, c_au, tally, counters,
                             state_counts, nbr, one, scratch)
            if code == PLATED_AFTER_LIFT:  # every face moved: the caller rebuilds everything
                counters[C_LIFTS] += 1
                return STOP_RESOLVE
        elif u < r_p + r_a:
            c, res = tree_select(alloy_tree, offsets, (u - r_p) / r_a * s_a)
            col = c % nxy
            col_state[col] = CC_AU_ALLOYED
            counters[C_ALLOY] += 1
            _update_column(col, lattice, site_class, col_state, col_support, phi, params, nx, ny, nz,
                           plate_tree, alloy_tree, nuc_tree, offsets, nbr, one, scratch)
        else:
            c, res = tree_select(nuc_tree, offsets, min(u - r_p - r_a, r_nuc * (1 - 1e-15)))
            e = pick_face(c, res, 2, lattice, col_state, col_support, phi, params, nx, ny, nz, nbr)
            col = c % nxy
            col_state[col] = CC_NUCLEATED
            code = plate_voxel(c, e, lattice, au_column, nx, ny, nz, eps, cc_bottom, queue, visited, out)
            if code == DOMAIN_FULL:
                counters[C_EVENTS] -= 1
                return STOP_FULL
            counters[C_NUCLEATE] += 1
            _update_column(col, lattice, site_class, col_state, col_support, phi, params, nx, ny, nz,
                           plate_tree, alloy_tree, nuc_tree, offsets, nbr, one, scratch)
            _after_insertion(out[0], lattice, site_class, col_state, col_support, phi, params, eps, au_column,
                             nx, ny, nz, plate_tree, alloy_tree, nuc_tree, offsets, c_au, tally, counters,
                             state_counts, nbr, one, scratch)
            if code == PLATED_AFTER_LIFT:
                counters[C_LIFTS] += 1
                return STOP_RESOLVE
            if stop_on_nucleation:
                return STOP_RESOLVE
        if abs(state_counts[0] - faces0) > frac * max(faces0, 1.0) \
                or abs(state_counts[1] - supports0) > frac * max(supports0, 1.0):
            return STOP_RESOLVE
    return STOP_EVENTS
