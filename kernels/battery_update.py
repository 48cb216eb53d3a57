"""Keeping the battery kernels' derived arrays true after the lattice changes.

After an event changes sites, the move leaves over the two-step stencil and the faradaic leaves
over the one-step stencil are recomputed (``changed``: nothing farther can have changed); a column
whose load-bearing kind or collector-face state changed has all its Na and collector leaves
recomputed (``refresh_column``); Na that arrives somewhere gets its cluster class,
its faces counted, and alloys the unalloyed Au it touches (``after_arrival``); Na that leaves
(``remove_na``) takes its faces with it. The tree list is ``refresh``: one line per event class.
All functions take the battery's ``Cell`` (``kmc.kernels.battery_arrays``).
"""
import numpy as np
from numba import njit

from kmc.kernels.battery_arrays import (
    C_CHEM_ALLOY,
    L_PORE_DEPTH,
    N_CC_CONTACTS,
    N_FACES,
    N_NA_SUPPORTS,
    T_NA_DEBT,
    T_PENDING,
    T_SEALED,
    T_UNDER_CC,
)
from kmc.kernels.capillary import stencil_near_first
from kmc.kernels.cell import CC, GAP, NA, SE, SEI
from kmc.kernels.clusters import CLUSTER_ACTIVE, CLUSTER_DEAD
from kmc.kernels.contact import BY_FLOW
from kmc.kernels.faradaic import ALLOY_STEPS, CC_AU_ALLOYED, P_ALLOY_PHASES, alloy_steps, alloyable, site_weights
from kmc.kernels.gap_distance import gap_opened
from kmc.kernels.interface import COLUMN_CC_CONTACT, COLUMN_NA_SUPPORT, column_kind
from kmc.kernels.lattice import N_NEIGHBORS, neighbors6
from kmc.kernels.leaf import leaf
from kmc.kernels.moves import M_REFILL_LAW, move_propensity
from kmc.kernels.plating import mark_gap_columns
from kmc.kernels.solver import tree_update_many


@njit(cache=True, inline="always")
def faces_of(c, w):
    """Electrolyte neighbours of c (its contact faces if c is a connected conductor)."""
    nbr, lattice = w.nbr, w.lattice
    neighbors6(c, w.nx, w.ny, w.nz, False, nbr)
    n = 0
    for d in range(N_NEIGHBORS):
        e = nbr[d]
        if e >= 0 and (lattice[e] == SE or lattice[e] == SEI):
            n += 1
    return n


@njit(cache=True, inline="always")
def recolumn(col, w):
    """Re-classify a column; returns True if its kind changed (its Na voxels' stress changed)."""
    # Thinned columns exist only under the refill law, and bear the load only while stripping.
    kind = column_kind(col, w.lattice, w.nx, w.ny, w.nz, w.move_params[M_REFILL_LAW] > 0.0)
    old = w.col_support[col]
    if kind == old:
        return False
    counts = w.state_counts
    if old == COLUMN_NA_SUPPORT:
        counts[N_NA_SUPPORTS] -= 1
    elif old == COLUMN_CC_CONTACT:
        counts[N_CC_CONTACTS] -= 1
    if kind == COLUMN_NA_SUPPORT:
        counts[N_NA_SUPPORTS] += 1
    elif kind == COLUMN_CC_CONTACT:
        counts[N_CC_CONTACTS] += 1
    w.col_support[col] = kind
    return True


@njit(cache=True, inline="always")
def _set_leaf(tree, c, value, keep, row, m):
    """Leaf c of ``tree`` set to ``value``; if it changed, c is listed in ``keep[row]`` (m listed so far):
    returns the new count."""
    if tree[c] != value:
        tree[c] = value
        keep[row, m] = c
        return m + 1
    return m


@leaf
def refresh(sites, n, w):
    """Recompute every tree's leaf for ``sites[0:n]`` and propagate: the tree list of the battery
    model (a new event class is one more leaf here and one more tree in ``Cell``)."""
    refresh_near(sites, n, n, w)


@leaf
def refresh_near(sites, n_near, n, w):
    """``refresh`` of ``sites[0:n]`` where only ``sites[0:n_near]`` can have changed faradaic leaves:
    a site's faces, their kinetics and its cluster class depend on the site and its six neighbours
    only (``faradaic.site_weights``; the column arrays change only with ``refresh_column``), while its
    moves reach two steps (``moves.move_propensity``). Recomputing a leaf that cannot have changed
    writes the same value, so the trees are the same bit for bit."""
    # The arrays are taken out of the tuple once (compiled with reference counting, each access of a
    # tuple's array took and dropped a reference: a third of the batch's time, before ``leaf``).
    nx, ny, nz = w.nx, w.ny, w.nz
    lattice, site_class, col_state, col_support, au_column = w.lattice, w.site_class, w.col_state, w.col_support, \
        w.au_column
    phi, params, eps, move_params, nbr, nbr2 = w.phi, w.params, w.eps, w.move_params, w.nbr, w.nbr2
    col_sigma, na_contact, side_w = w.deposit_stress, w.na_contact, w.side_face_weight
    plate_tree, alloy_tree, nuc_tree, move_tree = w.plate_tree, w.alloy_tree, w.nuc_tree, w.move_tree
    cc_bottom, pore_depth = w.cc_bottom, int(w.limits[L_PORE_DEPTH])  # E9: the moves' admissible targets
    # Only the leaves whose value changed are propagated: a node is an exact function of its children
    # (``kmc.kernels.solver``), so skipping an unchanged leaf leaves every bit of the tree as before —
    # and most leaves a refresh visits do not change (a column's collector body, the stencil's
    # electrolyte). One list per tree (``w.keep``): a site's four leaves change independently.
    keep = w.keep
    m_p = 0
    m_a = 0
    m_n = 0
    m_m = 0
    for a in range(n):
        c = sites[a]
        if a < n_near:
            wp, wa, kn = site_weights(c, lattice, site_class, col_state, col_support, col_sigma, na_contact, side_w,
                                      phi, params, nx, ny, nz, nbr)
            m_p = _set_leaf(plate_tree, c, wp, keep, 0, m_p)
            m_a = _set_leaf(alloy_tree, c, wa, keep, 1, m_a)
            m_n = _set_leaf(nuc_tree, c, kn, keep, 2, m_n)
        mv = move_propensity(c, lattice, au_column, col_support, cc_bottom, pore_depth, nx, ny, nz, eps,
                             move_params, nbr, nbr2)
        m_m = _set_leaf(move_tree, c, mv, keep, 3, m_m)
    if m_p > 0:
        tree_update_many(plate_tree, w.offsets, keep[0], m_p, w.scratch, w.mark)
    if m_a > 0:
        tree_update_many(alloy_tree, w.offsets, keep[1], m_a, w.scratch, w.mark)
    if m_n > 0:
        tree_update_many(nuc_tree, w.offsets, keep[2], m_n, w.scratch, w.mark)
    if m_m > 0:
        tree_update_many(move_tree, w.offsets, keep[3], m_m, w.scratch, w.mark)


@leaf
def refresh_column(col, w):
    """Every tree's leaves for the collector and Na voxels of a column (its Au state or its
    load-bearing kind changed: CC face kinds, and the stress of its Na voxels)."""
    nxy = w.nx * w.ny
    lattice, buf = w.lattice, w.buf
    n = 0
    for z in range(w.nz):
        c = col + z * nxy
        if lattice[c] == CC or lattice[c] == NA:
            buf[n] = c
            n += 1
    refresh(buf, n, w)


@leaf
def changed(s, t, w):
    """After sites s and t changed state: columns, the columns that may hold a gap at the interface
    (``plating.mark_gap_columns``; every lattice change in a batch comes through here), and the trees
    over the stencil (``refresh_near``)."""
    nxy = w.nx * w.ny
    stencil, seen = w.stencil, w.seen
    mark_gap_columns(s, w.nx, w.ny, w.gap_cols)  # for the search of the interface's gaps
    mark_gap_columns(t, w.nx, w.ny, w.gap_cols)
    n_near, n = stencil_near_first(s, t, w.nx, w.ny, w.nz, stencil, w.nbr, w.nbr2, seen)
    for a in range(n):
        seen[stencil[a]] = 0
    refresh_near(stencil, n_near, n, w)
    for col in (s % nxy, t % nxy):
        if recolumn(col, w):
            refresh_column(col, w)


@njit(cache=True, inline="always")
def under_cc(g, w):
    """Whether site g is right under the collector in its column."""
    nxy = w.nx * w.ny
    return g // nxy == w.cc_bottom[g % nxy] - 1


@njit(cache=True, inline="always")
def _class_of_new(g, w):
    """Cluster class of a Na voxel that has just appeared at g: active if it touches the collector or
    active Na, else that of the Na it touches (dead or trapped), else dead (PHYSICS §5: connection
    to the collector through conductors). Joining clusters are reclassified at the next solve."""
    nbr, lattice, site_class = w.nbr, w.lattice, w.site_class
    neighbors6(g, w.nx, w.ny, w.nz, False, nbr)
    cls = CLUSTER_DEAD
    for d in range(N_NEIGHBORS):
        k = nbr[d]
        if k < 0:
            continue
        if lattice[k] == CC or (lattice[k] == NA and site_class[k] == CLUSTER_ACTIVE):
            return CLUSTER_ACTIVE
        if lattice[k] == NA and site_class[k] >= 0:
            cls = site_class[k]
    return cls


@leaf
def alloy_column(col, w, c_au):
    """Chemical alloying (E3) of a column's Au, which Na metal touches: no current, its Na owed by the
    metal (``tally[T_NA_DEBT]``). In contact with Na metal the Au ends as Na2Au; under
    ``model.alloy = "phases"`` a column part way there owes only the steps it has not taken."""
    if w.params[P_ALLOY_PHASES] > 0.0:
        w.tally[T_NA_DEBT] += c_au * (ALLOY_STEPS - alloy_steps(w.col_state[col])) / ALLOY_STEPS
    else:
        w.tally[T_NA_DEBT] += c_au
    w.col_state[col] = CC_AU_ALLOYED
    w.counters[C_CHEM_ALLOY] += 1
    refresh_column(col, w)


@leaf
def after_arrival(g, w, c_au):
    """Na has just arrived at g (inserted, moved or flowed in; the trees are up to date for it): its
    cluster class and faces, chemical alloying of the unalloyed Au it touches, and the alloy's Na
    taken from the metal — from a sealed layer's pending volume, or as the voxel g itself. Returns
    True if g is gone again (taken by the alloy)."""
    nxy = w.nx * w.ny
    tally = w.tally
    w.site_class[g] = _class_of_new(g, w)
    if w.site_class[g] == CLUSTER_ACTIVE:
        w.state_counts[N_FACES] += faces_of(g, w)
    if under_cc(g, w):
        tally[T_UNDER_CC] += 1.0
    nbr2, lattice, col_state = w.nbr2, w.lattice, w.col_state
    neighbors6(g, w.nx, w.ny, w.nz, False, nbr2)
    for d in range(N_NEIGHBORS):
        k = nbr2[d]
        if k >= 0 and lattice[k] == CC and alloyable(col_state[k % nxy]):
            alloy_column(k % nxy, w, c_au)
            neighbors6(g, w.nx, w.ny, w.nz, False, nbr2)  # the refresh used nbr2 as scratch
    if tally[T_NA_DEBT] >= 1.0 and tally[T_SEALED] > 0.0:
        # A sealed layer is loaded Na with no gap: the alloy's Na comes out of the layer's volume
        # (the collector settles by it, evenly, as a lift raises it) rather than as a vacancy that
        # loaded Na would close again by creep at ~1e4 /s.
        tally[T_PENDING] -= np.floor(tally[T_NA_DEBT])
        tally[T_NA_DEBT] -= np.floor(tally[T_NA_DEBT])
    if tally[T_NA_DEBT] >= 1.0 and lattice[g] == NA:
        remove_na(g, w)
        tally[T_NA_DEBT] -= 1.0
        return True
    return False


@njit(cache=True, inline="always")
def remove_na(g, w):
    """The Na voxel at g becomes a gap (stripped, or taken by the alloy): faces and counts, and its
    contact state cleared (a void has opened at its faces: ``kmc.kernels.contact``)."""
    if w.site_class[g] == CLUSTER_ACTIVE:
        w.state_counts[N_FACES] -= faces_of(g, w)
    if under_cc(g, w):
        w.tally[T_UNDER_CC] -= 1.0
    w.lattice[g] = GAP
    gap_opened(g, w.nx, w.ny, w.gap_search)  # the insertion search's bound takes it in
    w.na_contact[g] = BY_FLOW
    w.site_class[g] = -1
    w.tally[T_SEALED] = 0.0  # a gap has opened


@leaf
def alloy_touched_au(w, c_au):
    """After a lift filled every column: the unalloyed Au now touching Na alloys chemically, its Na
    from the (sealed) layer's pending volume."""
    nxy = w.nx * w.ny
    for col in range(nxy):
        b = w.cc_bottom[col]
        if alloyable(w.col_state[col]) and b > 0 and w.lattice[col + (b - 1) * nxy] == NA:
            alloy_column(col, w, c_au)
    w.tally[T_PENDING] -= np.floor(w.tally[T_NA_DEBT])
    w.tally[T_NA_DEBT] -= np.floor(w.tally[T_NA_DEBT])


@leaf
def count_under_cc(w):
    """Na voxels right under the collector (a recount)."""
    nxy = w.nx * w.ny
    n = 0
    for col in range(nxy):
        b = w.cc_bottom[col]
        if b > 0 and w.lattice[col + (b - 1) * nxy] == NA:
            n += 1
    return n
