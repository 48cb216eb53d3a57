"""The battery model's batch loop between field solves: E1–E5 at frozen V, φ and σ_Na.

One call runs events until a bound: an event count, a time, or a change that needs a new solve —
the contact faces or the load-bearing columns having changed by more than the re-solve fraction,
the collector having been lifted (E1 rule 4) or having settled (E5), or (while the double layer
carries the current) a nucleus having formed. Four event classes, each with its own sum tree over
sites (``kmc.kernels.faradaic`` for the first three, ``kmc.kernels.moves`` for the last):

- plating (E1) and electrochemical alloying (E3), sharing the faradaic current in proportion to
  their faces' Butler–Volmer currents (galvanostatic renormalization);
- nucleation on bare collector faces (E2), at its own hazard. A nucleus is reduced by charge like a
  plated voxel: while the faces carry a galvanostatic current its rate is taken out of ``I/q_v``
  (capped at all of it) and plating shares the rest; otherwise (``limits[3]``: the double layer takes
  the current, or a potentiostatic hold) its charge is extra, and the driver books it;
- moves of Na into gaps (E4a creep, E4b capillary, E4c diffusion), at their own rates.

Charge and volume bookkeeping (``counters``): every plating and nucleation event adds one Na voxel
(charge q_v); an electrochemical alloying event sodiates one column's Au inventory (charge
``c_au·q_v``, no voxel); moves conserve the Na voxels. Na metal touching unalloyed Au alloys it
chemically (no charge): the column's inventory ``c_au`` (voxels) is taken from the metal, accumulated
in ``tally[T_NA_DEBT]`` and paid by removing the touching voxel once a whole voxel is owed. So,
recounted from the lattice at any time,

    N_plate + N_nucleate + c_au·N_alloy
        = (Na voxels − Na voxels at start − debt + pending) + c_au·(alloyed columns).

Sealed interface (E1 rule 4): when a plating face reaches no gap at all, the Na layer is sealed
between SE and CC and loaded by the stack pressure; the new volume can only lift the CC. Lifting the
rigid CC a whole voxel for one inserted voxel would open a gap layer under every column and leave
one column carrying the stack load (σ = P·A/a²), which creeps sideways at a rate many decades above
plating. Loaded Na under P creeps at ~10⁴ s⁻¹ per voxel (Na's creep law at 5 MPa), far faster than
plating fills a layer (~10⁻³ s⁻¹ per column), so the layer thickens uniformly on the plating time
scale (time-scale separation, PHYSICS §5). So while sealed, each plated voxel is held as ``pending``
volume (charge and volume counted), and when a whole layer (nx·ny voxels) is pending the CC rises
one voxel and every column gains one Na voxel under it (``interface.lift_and_fill``). Na owed to
chemical alloying while sealed is paid from the pending volume (which may go negative: a layer
thinner, evenly, by that volume), not by opening a vacancy in the loaded layer; and at each lift,
voids left enclosed in the loaded layer are closed by creep, their volume taken from the pending
volume too (``interface.close_enclosed_gaps``).
"""
import numpy as np
from numba import njit

from kmc.kernels.capillary import STENCIL_SIZE, stencil_two_steps
from kmc.kernels.cell import CC, GAP, NA, SE, SEI
from kmc.kernels.clusters import CLUSTER_ACTIVE, CLUSTER_DEAD
from kmc.kernels.faradaic import CC_AU, CC_AU_ALLOYED, CC_NUCLEATED, P_DIRECTION, pick_face, site_weights
from kmc.kernels.interface import (
    COLUMN_CC_CONTACT,
    COLUMN_NA_SUPPORT,
    COLUMN_OPEN,
    close_enclosed_gaps,
    lift_and_fill,
    lower_collector_into_layer,
    settle_collector,
)
from kmc.kernels.lattice import N_NEIGHBORS, neighbors6
from kmc.kernels.moves import M_LOADED_FLOW, execute_move, move_propensity
from kmc.kernels.plating import insertion_site
from kmc.kernels.solver import (
    STOP_EVENTS,
    STOP_NO_EVENTS,
    STOP_TIME,
    tree_select,
    tree_total,
    tree_update_many,
    waiting_time,
)

STOP_RESOLVE = 3  #: faces, supports or the collector changed enough to need a new field solve
STOP_FULL = 4  #: no room left for Na (lattice.nz too small for the plated capacity)

# counters
C_EVENTS = 0
C_PLATE = 1
C_ALLOY = 2
C_NUCLEATE = 3
C_LIFTS = 4
C_CHEM_ALLOY = 5
C_MOVES = 6
C_SETTLES = 7
C_STRIP = 8
C_REFILL = 9  #: loaded flow (creep, diffusion) filling a gap from the layer's volume
C_LOWERS = 10  #: the collector lowered one voxel into the layer (a layer's volume had flowed into gaps)
N_COUNTERS = 12

# tally (float)
T_NA_DEBT = 0  #: Na (voxels) owed to chemical alloying, not yet removed from the lattice
T_PENDING = 1  #: Na (voxels) plated into a sealed interface, waiting to be laid down as a layer
T_SEALED = 2  #: 1 once a search found no gap reachable from a plating face (cleared at each solve)
T_UNDER_CC = 3  #: Na voxels right under the collector (recounted at each solve, kept up to date here)
T_NUC_DEBT = 4  #: nucleus voxels formed while the double layer took the current, not yet paid by it
N_TALLY = 8

# state_counts: [contact faces, Na-support columns, CC-contact columns]
# limits: [faces at solve, supports at solve, re-solve fraction, stop on nucleation (0/1), floor,
#          faradaic capacity S_p + S_a at solve (A)]
# The faces' capacity at the frozen V drifting by more than a factor 2 (a face kind changed: Au
# alloyed, a nucleus formed) also calls for a solve: V itself has to move.
# A re-solve is due when faces or supports changed by more than fraction × max(value at solve, floor),
# the floor being the number of columns: a change of 1 % of the contact, but never less than 1 % of
# the interface, so that a few faces flickering under capillary moves do not force solve after solve.


@njit(cache=True)
def _column_kind(col, lattice, nx, ny, nz):
    """COLUMN_* of one column (the rule of ``interface.column_support``)."""
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
def _faces_of(c, lattice, nx, ny, nz, nbr):
    """Electrolyte neighbours of c (its contact faces if c is a connected conductor)."""
    neighbors6(c, nx, ny, nz, False, nbr)
    n = 0
    for d in range(N_NEIGHBORS):
        e = nbr[d]
        if e >= 0 and (lattice[e] == SE or lattice[e] == SEI):
            n += 1
    return n


@njit(cache=True)
def _recolumn(col, lattice, col_support, nx, ny, nz, state_counts):
    """Re-classify a column; returns True if its kind changed (its Na voxels' stress changed)."""
    kind = _column_kind(col, lattice, nx, ny, nz)
    old = col_support[col]
    if kind == old:
        return False
    if old == COLUMN_NA_SUPPORT:
        state_counts[1] -= 1
    elif old == COLUMN_CC_CONTACT:
        state_counts[2] -= 1
    if kind == COLUMN_NA_SUPPORT:
        state_counts[1] += 1
    elif kind == COLUMN_CC_CONTACT:
        state_counts[2] += 1
    col_support[col] = kind
    return True


@njit(cache=True)
def _refresh(sites, n, lattice, site_class, col_state, col_support, phi, params, au_column, eps, move_params,
             nx, ny, nz, plate_tree, alloy_tree, nuc_tree, move_tree, offsets, nbr, nbr2, scratch, mark):
    """Recompute every tree's leaf for ``sites[0:n]`` and propagate."""
    for a in range(n):
        c = sites[a]
        wp, wa, kn = site_weights(c, lattice, site_class, col_state, col_support, phi, params, nx, ny, nz, nbr)
        plate_tree[c] = wp
        alloy_tree[c] = wa
        nuc_tree[c] = kn
        move_tree[c] = move_propensity(c, lattice, au_column, col_support, nx, ny, nz, eps, move_params, nbr, nbr2)
    tree_update_many(plate_tree, offsets, sites, n, scratch, mark)
    tree_update_many(alloy_tree, offsets, sites, n, scratch, mark)
    tree_update_many(nuc_tree, offsets, sites, n, scratch, mark)
    tree_update_many(move_tree, offsets, sites, n, scratch, mark)


@njit(cache=True)
def _refresh_column(col, lattice, site_class, col_state, col_support, phi, params, au_column, eps, move_params,
                    nx, ny, nz, plate_tree, alloy_tree, nuc_tree, move_tree, offsets, nbr, nbr2, buf, scratch, mark):
    """Every tree's leaves for the collector and Na voxels of a column (its Au state or its
    load-bearing kind changed: CC face kinds, and the stress of its Na voxels)."""
    nxy = nx * ny
    n = 0
    for z in range(nz):
        c = col + z * nxy
        if lattice[c] == CC or lattice[c] == NA:
            buf[n] = c
            n += 1
    _refresh(buf, n, lattice, site_class, col_state, col_support, phi, params, au_column, eps, move_params,
             nx, ny, nz, plate_tree, alloy_tree, nuc_tree, move_tree, offsets, nbr, nbr2, scratch, mark)


@njit(cache=True)
def _changed(s, t, lattice, site_class, col_state, col_support, phi, params, au_column, eps, move_params,
             nx, ny, nz, plate_tree, alloy_tree, nuc_tree, move_tree, offsets, state_counts,
             nbr, nbr2, stencil, scratch, seen, mark, buf):
    """After sites s and t changed state: columns, and all trees over the two-step stencil."""
    nxy = nx * ny
    n = stencil_two_steps(s, t, nx, ny, nz, stencil, nbr, nbr2, seen)
    for a in range(n):
        seen[stencil[a]] = 0
    _refresh(stencil, n, lattice, site_class, col_state, col_support, phi, params, au_column, eps, move_params,
             nx, ny, nz, plate_tree, alloy_tree, nuc_tree, move_tree, offsets, nbr, nbr2, scratch, mark)
    for col in (s % nxy, t % nxy):
        if _recolumn(col, lattice, col_support, nx, ny, nz, state_counts):
            _refresh_column(col, lattice, site_class, col_state, col_support, phi, params, au_column, eps,
                            move_params, nx, ny, nz, plate_tree, alloy_tree, nuc_tree, move_tree, offsets,
                            nbr, nbr2, buf, scratch, mark)


@njit(cache=True)
def _under_cc(g, cc_bottom, nxy):
    """Whether site g is right under the collector in its column."""
    return g // nxy == cc_bottom[g % nxy] - 1


@njit(cache=True)
def _class_of_new(g, lattice, site_class, nx, ny, nz, nbr):
    """Cluster class of a Na voxel that has just appeared at g: active if it touches the collector or
    active Na, else that of the Na it touches (dead or trapped), else dead (PHYSICS §5: connection
    to the collector through conductors). Joining clusters are reclassified at the next solve."""
    neighbors6(g, nx, ny, nz, False, nbr)
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


@njit(cache=True)
def _alloy_column(col, lattice, site_class, col_state, col_support, phi, params, au_column, eps, move_params,
                  nx, ny, nz, plate_tree, alloy_tree, nuc_tree, move_tree, offsets, c_au, tally, counters,
                  nbr, nbr2, buf, scratch, mark):
    """Chemical alloying (E3) of a column's Au, which Na metal touches: no current, its Na owed by the
    metal (``tally[T_NA_DEBT]``)."""
    col_state[col] = CC_AU_ALLOYED
    tally[T_NA_DEBT] += c_au
    counters[C_CHEM_ALLOY] += 1
    _refresh_column(col, lattice, site_class, col_state, col_support, phi, params, au_column, eps,
                    move_params, nx, ny, nz, plate_tree, alloy_tree, nuc_tree, move_tree, offsets,
                    nbr, nbr2, buf, scratch, mark)


@njit(cache=True)
def _after_arrival(g, lattice, site_class, col_state, col_support, cc_bottom, phi, params, au_column, eps,
                   move_params, nx, ny, nz, plate_tree, alloy_tree, nuc_tree, move_tree, offsets, c_au, tally,
                   counters, state_counts, nbr, nbr2, buf, scratch, mark):
    """Na has just arrived at g (inserted, moved or flowed in; the trees are up to date for it): its
    cluster class and faces, chemical alloying of the unalloyed Au it touches, and the alloy's Na
    taken from the metal — from a sealed layer's pending volume, or as the voxel g itself."""
    nxy = nx * ny
    site_class[g] = _class_of_new(g, lattice, site_class, nx, ny, nz, nbr)
    if site_class[g] == CLUSTER_ACTIVE:
        state_counts[0] += _faces_of(g, lattice, nx, ny, nz, nbr)
    if _under_cc(g, cc_bottom, nxy):
        tally[T_UNDER_CC] += 1.0
    neighbors6(g, nx, ny, nz, False, nbr2)
    for d in range(N_NEIGHBORS):
        k = nbr2[d]
        if k >= 0 and lattice[k] == CC and col_state[k % nxy] == CC_AU:
            _alloy_column(k % nxy, lattice, site_class, col_state, col_support, phi, params, au_column, eps,
                          move_params, nx, ny, nz, plate_tree, alloy_tree, nuc_tree, move_tree, offsets, c_au,
                          tally, counters, nbr, nbr2, buf, scratch, mark)
            neighbors6(g, nx, ny, nz, False, nbr2)  # the refresh used nbr2 as scratch
    if tally[T_NA_DEBT] >= 1.0 and tally[T_SEALED] > 0.0:
        # A sealed layer is loaded Na with no gap: the alloy's Na comes out of the layer's volume
        # (the collector settles by it, evenly, as a lift raises it) rather than as a vacancy that
        # loaded Na would close again by creep at ~1e4 /s.
        tally[T_PENDING] -= np.floor(tally[T_NA_DEBT])
        tally[T_NA_DEBT] -= np.floor(tally[T_NA_DEBT])
    if tally[T_NA_DEBT] >= 1.0 and lattice[g] == NA:
        _remove_na(g, lattice, site_class, cc_bottom, nx, ny, nz, tally, state_counts, nbr)
        tally[T_NA_DEBT] -= 1.0
        return True  # g is gone
    return False


@njit(cache=True)
def _remove_na(g, lattice, site_class, cc_bottom, nx, ny, nz, tally, state_counts, nbr):
    """The Na voxel at g becomes a gap (stripped, or taken by the alloy): faces and counts."""
    if site_class[g] == CLUSTER_ACTIVE:
        state_counts[0] -= _faces_of(g, lattice, nx, ny, nz, nbr)
    if _under_cc(g, cc_bottom, nx * ny):
        tally[T_UNDER_CC] -= 1.0
    lattice[g] = GAP
    site_class[g] = -1
    tally[T_SEALED] = 0.0  # a gap has opened


@njit(cache=True)
def _alloy_touched_au(lattice, site_class, col_state, col_support, cc_bottom, phi, params, au_column, eps,
                      move_params, nx, ny, nz, plate_tree, alloy_tree, nuc_tree, move_tree, offsets, c_au, tally,
                      counters, nbr, nbr2, buf, scratch, mark):
    """After a lift filled every column: the unalloyed Au now touching Na alloys chemically, its Na
    from the (sealed) layer's pending volume."""
    nxy = nx * ny
    for col in range(nxy):
        b = cc_bottom[col]
        if col_state[col] == CC_AU and b > 0 and lattice[col + (b - 1) * nxy] == NA:
            _alloy_column(col, lattice, site_class, col_state, col_support, phi, params, au_column, eps,
                          move_params, nx, ny, nz, plate_tree, alloy_tree, nuc_tree, move_tree, offsets, c_au,
                          tally, counters, nbr, nbr2, buf, scratch, mark)
    tally[T_PENDING] -= np.floor(tally[T_NA_DEBT])
    tally[T_NA_DEBT] -= np.floor(tally[T_NA_DEBT])


@njit(cache=True)
def _count_under_cc(lattice, cc_bottom, nxy):
    n = 0
    for col in range(nxy):
        b = cc_bottom[col]
        if b > 0 and lattice[col + (b - 1) * nxy] == NA:
            n += 1
    return n


@njit(cache=True, nogil=True)
def run_batch(lattice, site_class, col_state, col_support, cc_bottom, phi, params, eps, au_column, move_params,
              nx, ny, nz, plate_tree, alloy_tree, nuc_tree, move_tree, offsets, i_far_a, q_v_c, c_au,
              clock, counters, tally, rng, max_events, t_end, limits, state_counts, queue, visited, seen, mark):
    """Events at the frozen V, φ and σ_Na until a bound; returns a STOP_* code (the solver's, or this
    module's STOP_RESOLVE / STOP_FULL). ``i_far_a`` (A) is the current the faces carry. ``queue``,
    ``visited`` (per site) and ``seen`` (per site), ``mark`` (per tree node) are scratch, all zero
    on entry and left zero: the caller keeps them between calls (allocating ~40 B per site for every
    batch cost seconds on a 256² lattice)."""
    nxy = nx * ny
    nbr = np.empty(N_NEIGHBORS, dtype=np.int64)
    nbr2 = np.empty(N_NEIGHBORS, dtype=np.int64)
    stencil = np.empty(STENCIL_SIZE, dtype=np.int64)
    scratch = np.empty(max(STENCIL_SIZE, nz), dtype=np.int64)
    buf = np.empty(nz, dtype=np.int64)
    faces0 = limits[0]
    supports0 = limits[1]
    frac = limits[2]
    stop_on_nucleation = limits[3] > 0.0
    floor = limits[4]
    capacity0 = limits[5]
    done = 0
    while done < max_events:
        s_p = tree_total(plate_tree)
        s_a = tree_total(alloy_tree)
        r_nuc = tree_total(nuc_tree)
        r_m = tree_total(move_tree)
        r_p = 0.0
        r_a = 0.0
        budget = i_far_a / q_v_c  # faradaic voxels per second the current supplies
        if not stop_on_nucleation and r_nuc > 0.0:
            # Galvanostatic: a nucleus is reduced by the same current (its hazard, up to all of it).
            r_nuc = min(r_nuc, budget)
            budget -= r_nuc
        if s_p + s_a > 0.0 and budget > 0.0:
            r_p = budget * s_p / (s_p + s_a)
            if c_au > 0.0:
                r_a = budget * s_a / (s_p + s_a) / c_au
        total = r_p + r_a + r_nuc + r_m
        if total <= 0.0:
            return STOP_NO_EVENTS
        dt = waiting_time(rng, total)
        if clock[0] + dt > t_end:
            clock[0] = t_end
            return STOP_TIME
        clock[0] += dt
        u = rng.random() * total
        counters[C_EVENTS] += 1
        done += 1
        if u < r_p and params[P_DIRECTION] < 0.0:  # E6: strip the Na voxel at an anodic face
            counters[C_STRIP] += 1
            if tally[T_PENDING] >= 1.0:
                # A sealed layer's pending volume (less than a layer, plated but not yet laid down) goes
                # first: the layer thins evenly, as it grew.
                tally[T_PENDING] -= 1.0
                continue
            c, res = tree_select(plate_tree, offsets, u / r_p * s_p)
            # A void nucleus at the interface; loaded Na refills it (E4a, E4c). Removing c may cut a
            # cluster off the collector: the classes are redone at the next solve.
            _remove_na(c, lattice, site_class, cc_bottom, nx, ny, nz, tally, state_counts, nbr)
            _changed(c, c, lattice, site_class, col_state, col_support, phi, params, au_column, eps, move_params,
                     nx, ny, nz, plate_tree, alloy_tree, nuc_tree, move_tree, offsets, state_counts,
                     nbr, nbr2, stencil, scratch, seen, mark, buf)
        elif u < r_p or (u < r_p + r_a + r_nuc and u >= r_p + r_a):
            plating = u < r_p
            if plating and tally[T_NUC_DEBT] >= 1.0:
                # This voxel's charge pays for a nucleus formed while the double layer took the current.
                tally[T_NUC_DEBT] -= 1.0
                continue
            if plating:
                c, res = tree_select(plate_tree, offsets, u / r_p * s_p)
                e = pick_face(c, res, 0, lattice, col_state, col_support, phi, params, nx, ny, nz, nbr)
            else:
                r_tree = tree_total(nuc_tree)  # r_nuc may be capped: select in proportion within the tree
                c, res = tree_select(nuc_tree, offsets, min((u - r_p - r_a) / r_nuc * r_tree, r_tree * (1 - 1e-15)))
                e = pick_face(c, res, 2, lattice, col_state, col_support, phi, params, nx, ny, nz, nbr)
                col_state[c % nxy] = CC_NUCLEATED
            g = -1
            if tally[T_SEALED] == 0.0:
                g = insertion_site(c, e, lattice, au_column, nx, ny, nz, eps, queue, visited)
            counters[C_PLATE if plating else C_NUCLEATE] += 1
            if not plating:
                _refresh_column(c % nxy, lattice, site_class, col_state, col_support, phi, params, au_column, eps,
                                move_params, nx, ny, nz, plate_tree, alloy_tree, nuc_tree, move_tree, offsets,
                                nbr, nbr2, buf, scratch, mark)
            if g < 0:  # sealed: the volume waits for a whole layer (module docstring)
                tally[T_SEALED] = 1.0
                tally[T_PENDING] += 1.0
                if tally[T_PENDING] >= nxy:
                    if not lift_and_fill(lattice, nx, ny, nz, cc_bottom):
                        return STOP_FULL
                    tally[T_PENDING] -= nxy
                    tally[T_PENDING] -= close_enclosed_gaps(lattice, nx, ny, nz, cc_bottom)
                    _alloy_touched_au(lattice, site_class, col_state, col_support, cc_bottom, phi, params,
                                      au_column, eps, move_params, nx, ny, nz, plate_tree, alloy_tree, nuc_tree,
                                      move_tree, offsets, c_au, tally, counters, nbr, nbr2, buf, scratch, mark)
                    counters[C_LIFTS] += 1
                    return STOP_RESOLVE  # every face moved: the caller rebuilds everything
            else:
                lattice[g] = NA
                _after_arrival(g, lattice, site_class, col_state, col_support, cc_bottom, phi, params, au_column,
                               eps, move_params, nx, ny, nz, plate_tree, alloy_tree, nuc_tree, move_tree, offsets,
                               c_au, tally, counters, state_counts, nbr, nbr2, buf, scratch, mark)
                _changed(g, g, lattice, site_class, col_state, col_support, phi, params, au_column, eps,
                         move_params, nx, ny, nz, plate_tree, alloy_tree, nuc_tree, move_tree, offsets,
                         state_counts, nbr, nbr2, stencil, scratch, seen, mark, buf)
            if not plating and stop_on_nucleation:
                return STOP_RESOLVE
        elif u < r_p + r_a:
            c, res = tree_select(alloy_tree, offsets, (u - r_p) / r_a * s_a)
            col_state[c % nxy] = CC_AU_ALLOYED
            counters[C_ALLOY] += 1
            _refresh_column(c % nxy, lattice, site_class, col_state, col_support, phi, params, au_column, eps,
                            move_params, nx, ny, nz, plate_tree, alloy_tree, nuc_tree, move_tree, offsets,
                            nbr, nbr2, buf, scratch, mark)
        else:
            s, res = tree_select(move_tree, offsets, min(u - r_p - r_a - r_nuc, r_m * (1 - 1e-15)))
            faces_s = _faces_of(s, lattice, nx, ny, nz, nbr) if site_class[s] == CLUSTER_ACTIVE else 0
            t, loaded = execute_move(s, res, lattice, au_column, col_support, nx, ny, nz, eps, move_params,
                                     move_tree, offsets, nbr, nbr2, stencil, scratch, seen, mark)
            if loaded:  # the layer's volume flowed into t (moves module docstring); s stays
                tally[T_PENDING] -= 1.0
                counters[C_REFILL] += 1
            else:  # s moved to t (leaving s may cut a cluster: reclassified at the next solve)
                state_counts[0] -= faces_s
                if _under_cc(s, cc_bottom, nxy):
                    tally[T_UNDER_CC] -= 1.0
                site_class[s] = -1
            counters[C_MOVES] += 1
            _after_arrival(t, lattice, site_class, col_state, col_support, cc_bottom, phi, params, au_column,
                           eps, move_params, nx, ny, nz, plate_tree, alloy_tree, nuc_tree, move_tree, offsets,
                           c_au, tally, counters, state_counts, nbr, nbr2, buf, scratch, mark)
            _changed(s, t, lattice, site_class, col_state, col_support, phi, params, au_column, eps, move_params,
                     nx, ny, nz, plate_tree, alloy_tree, nuc_tree, move_tree, offsets, state_counts,
                     nbr, nbr2, stencil, scratch, seen, mark, buf)
            if loaded and tally[T_UNDER_CC] > 0.0 and tally[T_PENDING] <= -tally[T_UNDER_CC]:
                # The volume that has flowed into gaps covers the Na right under the collector: the
                # collector descends one voxel, removing that Na (any gaps under it close).
                removed = lower_collector_into_layer(lattice, nx, ny, nz, cc_bottom)
                if removed >= 0:
                    tally[T_PENDING] += removed
                    tally[T_UNDER_CC] = _count_under_cc(lattice, cc_bottom, nxy)
                    counters[C_LOWERS] += 1
                else:  # the collector rests on the electrolyte somewhere: no more volume to give
                    move_params[M_LOADED_FLOW] = 0.0
                return STOP_RESOLVE
            if state_counts[1] + state_counts[2] == 0:  # E5: nothing bears the collector
                if settle_collector(lattice, nx, ny, nz, cc_bottom):
                    counters[C_SETTLES] += 1
                    tally[T_SEALED] = 0.0
                    return STOP_RESOLVE
        if abs(state_counts[0] - faces0) > frac * max(faces0, floor) \
                or abs(state_counts[1] - supports0) > frac * max(supports0, floor):
            return STOP_RESOLVE
        capacity = tree_total(plate_tree) + tree_total(alloy_tree)
        if i_far_a > 0.0 and (capacity > 2.0 * capacity0 or capacity < 0.5 * capacity0):
            return STOP_RESOLVE
    return STOP_EVENTS
