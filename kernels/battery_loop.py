"""The battery model's batch loop between field solves: E1–E6 at frozen V, φ and σ_Na.

One call runs events until a bound: an event count, a time, or a change that needs a new solve —
the contact faces or the load-bearing columns having changed by more than the re-solve fraction,
the faces' capacity having drifted, the collector having been lifted (E1 rule 4), lowered or
settled (E5), or (while the double layer carries the current) a nucleus having formed. Four event
classes, each with its own sum tree over sites (``kmc.kernels.faradaic`` gives the first three their
propensities, ``kmc.kernels.moves`` the last; ``kmc.kernels.battery_update.refresh`` is the tree list):

- plating (E1) — or stripping (E6) while the cell current oxidizes — and electrochemical alloying
  (E3), sharing the faradaic current in proportion to their faces' Butler–Volmer currents
  (galvanostatic renormalization);
- nucleation on bare collector faces (E2), at its own hazard. A nucleus is reduced by charge like a
  plated voxel: while the faces carry a galvanostatic current its rate is taken out of ``I/q_v``
  (capped at all of it) and plating shares the rest; otherwise (``limits[L_STOP_ON_NUCLEUS]``: the
  double layer takes the current, or a potentiostatic hold) its charge is extra, and the driver books it;
- moves of Na into gaps (E4a creep, E4b capillary, E4c diffusion), at their own rates; under
  ``model.refill = "critical_current"`` (``move_params[M_REFILL_LAW]``) E4c is off and interface voids
  under continuous Na refill at the critical stripping current (E4, ``kmc.kernels.moves``: one tree, a
  Na site's leaf is its moves, a void's its refill).

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

from kmc.kernels.battery_arrays import (
    C_ALLOY,
    C_EVENTS,
    C_LIFTS,
    C_LOADED_FLOW,
    C_LOWERS,
    C_MOVES,
    C_NUCLEATE,
    C_PLATE,
    C_REFILL,
    C_SETTLES,
    C_STRIP,
    L_CAPACITY,
    L_DEPOSIT_COLS,
    L_LEAST_STRESS,
    L_PORE_DEPTH,
    L_FACES,
    L_FLOOR,
    L_FRACTION,
    L_STOP_ON_NUCLEUS,
    L_SUPPORTS,
    N_CC_CONTACTS,
    N_FACES,
    N_NA_SUPPORTS,
    T_DEALLOY,
    T_NUC_DEBT,
    T_PENDING,
    T_SEALED,
    T_UNDER_CC,
)
from kmc.kernels.battery_update import (
    after_arrival,
    alloy_touched_au,
    changed,
    count_under_cc,
    faces_of,
    refresh,
    refresh_column,
    remove_na,
    under_cc,
)
from kmc.kernels.clusters import CLUSTER_ACTIVE
from kmc.kernels.contact import ATOMIC, BY_FLOW, after_body_moved, inserted_at_face, mark_body_moving
from kmc.kernels.faradaic import (
    ALLOY_STEPS,
    CC_AU_ALLOYED,
    CC_NUCLEATED,
    P_ALLOY_PHASES,
    P_DIRECTION,
    P_FACE_STATE,
    P_SIGMA_CHI,
    alloy_steps,
    pick_face,
    state_of_steps,
)
from kmc.kernels.interface import (
    SETTLE_COLLAPSE,
    SETTLE_NONE,
    close_enclosed_gaps,
    holds_voids,
    lift_and_fill,
    lower_collector_into_layer,
    settle_unborne,
)
from kmc.kernels.cell import GAP, NA
from kmc.kernels.moves import (
    M_LOADED_FLOW,
    M_REFILL_LAW,
    execute_move,
    refill_source,
    refill_stress,
    void_under_na,
)
from kmc.kernels.deposit_stress import CANNOT_RISE, LIFT, WAIT, lift_deposits
from kmc.kernels.gap_distance import S_GAPS_SEEN, S_VALID, gap_filled, gap_opened, insertion_site_guided
from kmc.kernels.plating import admissible, deposit_insertion_site
from kmc.kernels.solver import EVENT, STOP_EVENTS, next_event, tree_select, tree_total

STOP_RESOLVE = 3  #: faces, supports or the collector changed enough to need a new field solve
STOP_FULL = 4  #: no room left for Na (lattice.nz too small for the plated capacity)
#: Under the refill law: the collector came down through interface voids under its hanging Na — every
#: bearing contact had been lost (E5, ``_settle_if_unsupported``). A re-solve, like STOP_RESOLVE; a ccd
#: level's strip that ends so fails (``kmc.battery.protocol``).
STOP_COLLAPSE = 5
_GO_ON = -1  #: an event's execution: the batch goes on
_GO_ON_UNCHANGED = -2  #: the batch goes on, and no face, support or tree changed (no re-solve test)

# Event classes, in the order the draw falls through them.
EV_PLATE = 0  #: E1 plating, or E6 stripping while the cell current oxidizes
EV_ALLOY = 1  #: E3 electrochemical alloying, or de-alloying while the cell strips ("phases")
EV_NUCLEATE = 2  #: E2 nucleation
EV_MOVE = 3  #: E4 moves


@njit(cache=True, inline="always")
def _class_rates(w, i_far_a, q_v_c, c_au, stop_on_nucleus):
    """Rates (1/s) of the four classes: the faradaic current shared by plating and alloying in
    proportion to their trees' totals (A), nucleation at its hazard — under galvanostatic control
    taken out of the current — and the moves at theirs."""
    s_p = tree_total(w.plate_tree)
    s_a = tree_total(w.alloy_tree)
    r_nuc = tree_total(w.nuc_tree)
    r_m = tree_total(w.move_tree)
    r_p = 0.0
    r_a = 0.0
    budget = i_far_a / q_v_c  # faradaic voxels per second the current supplies
    if not stop_on_nucleus and r_nuc > 0.0:
        # Galvanostatic: a nucleus is reduced by the same current (its hazard, up to all of it).
        r_nuc = min(r_nuc, budget)
        budget -= r_nuc
    if s_p + s_a > 0.0 and budget > 0.0:
        r_p = budget * s_p / (s_p + s_a)
        if c_au > 0.0:
            # one E3 event: the whole inventory (v3), or one of its ALLOY_STEPS ("phases")
            c_event = c_au / ALLOY_STEPS if w.params[P_ALLOY_PHASES] > 0.0 else c_au
            r_a = budget * s_a / (s_p + s_a) / c_event
    return r_p, r_a, r_nuc, r_m


@njit(cache=True, inline="always")
def _pick_class(u, r_p, r_a, r_nuc):
    """The class the draw u ∈ [0, total) falls in (cumulative in EV_* order)."""
    acc = r_p
    if u < acc:
        return EV_PLATE
    acc += r_a
    if u < acc:
        return EV_ALLOY
    acc += r_nuc
    if u < acc:
        return EV_NUCLEATE
    return EV_MOVE


@njit(cache=True, inline="always")
def _strip(w, u, r_p):
    """E6: strip the Na voxel at an anodic face the draw picks (a void nucleus at the interface)."""
    w.counters[C_STRIP] += 1
    if w.tally[T_PENDING] >= 1.0:
        # A sealed layer's pending volume (less than a layer, plated but not yet laid down) goes
        # first: the layer thins evenly, as it grew.
        w.tally[T_PENDING] -= 1.0
        return _GO_ON_UNCHANGED
    c, res = tree_select(w.plate_tree, w.offsets, u / r_p * tree_total(w.plate_tree))
    # Loaded Na refills the void (E4a, E4c; under the refill law, at its own rate in ``moves``).
    # Removing c may cut a cluster off the collector: the classes are redone at the next solve.
    remove_na(c, w)
    changed(c, c, w)
    if w.move_params[M_REFILL_LAW] > 0.0:
        return _settle_if_unsupported(w)
    return _GO_ON


@njit(cache=True, inline="always")
def _reduce(w, u, plating, r_p, r_a, r_nuc, c_au, stop_on_nucleus, gap_free):
    """E1 plating, or E2 nucleation: one Na voxel at the face the draw picks, inserted where the new
    volume goes (``plating.insertion_site``), or held as a sealed layer's pending volume. ``gap_free``:
    the lattice holds no GAP at all now, so no insertion site can be found (``insertion_site`` only
    returns a GAP) and its search through the whole metal is skipped."""
    # Arrays out of the tuple once, at entry (a reference count each; see battery_update.refresh).
    nx, ny, nz = w.nx, w.ny, w.nz
    nxy = nx * ny
    lattice, col_state, col_support, phi, params, nbr = w.lattice, w.col_state, w.col_support, w.phi, w.params, w.nbr
    tally, counters, offsets, plate_tree, nuc_tree = w.tally, w.counters, w.offsets, w.plate_tree, w.nuc_tree
    na_contact = w.na_contact
    face_state = params[P_FACE_STATE] > 0.0  # model.contact_quality = "face_state" (kmc.kernels.contact)
    if plating and tally[T_NUC_DEBT] >= 1.0:
        # This voxel's charge pays for a nucleus formed while the double layer took the current.
        tally[T_NUC_DEBT] -= 1.0
        return _GO_ON_UNCHANGED
    c = -1
    e = -1
    if plating and tally[T_SEALED] != 0.0:
        pass  # sealed: the voxel joins the pending volume whatever its face (no face to pick)
    elif plating:
        c, res = tree_select(plate_tree, offsets, u / r_p * tree_total(plate_tree))
        e = pick_face(c, res, 0, lattice, col_state, col_support, w.deposit_stress, na_contact, w.side_face_weight,
                      phi, params, nx, ny, nz, nbr)
        if face_state and lattice[c] == NA and na_contact[c] != ATOMIC:
            # Na reduced at c's face is made in atomic contact there (PHYSICS §4): c's faces now have
            # χ = 1, and its leaf its new weight.
            na_contact[c] = ATOMIC
            w.buf[0] = c
            refresh(w.buf, 1, w)
    else:
        r_tree = tree_total(nuc_tree)  # r_nuc may be capped: select in proportion within the tree
        c, res = tree_select(nuc_tree, offsets, min((u - r_p - r_a) / r_nuc * r_tree, r_tree * (1 - 1e-15)))
        e = pick_face(c, res, 2, lattice, col_state, col_support, w.deposit_stress, na_contact, w.side_face_weight,
                      phi, params, nx, ny, nz, nbr)
        col_state[c % nxy] = CC_NUCLEATED
    g = -1
    if tally[T_SEALED] == 0.0:
        if w.limits[L_LEAST_STRESS] > 0.0:
            g = deposit_insertion_site(c, e, lattice, w.au_column, nx, ny, nz, w.eps, w.cc_bottom,
                                       int(w.limits[L_PORE_DEPTH]), w.insertion_target, nbr, w.nbr2)
        elif not gap_free:
            g = insertion_site_guided(c, e, lattice, w.au_column, nx, ny, nz, w.eps, w.queue, w.visited, w.cc_bottom,
                                      int(w.limits[L_PORE_DEPTH]), w.gap_dist, w.gap_search, w.gap_cols)
    counters[C_PLATE if plating else C_NUCLEATE] += 1
    if not plating:
        refresh_column(c % nxy, w)
    if g == LIFT:  # PHYSICS §5 M: the deposits lift the collector (kmc.kernels.deposit_stress)
        tally[T_PENDING] += 1.0
        if tally[T_PENDING] >= max(w.limits[L_DEPOSIT_COLS], 1.0):
            code, n = lift_deposits(lattice, nx, ny, nz, w.cc_bottom, tally[T_PENDING])
            if code == WAIT:  # more deposit columns than at the solve: wait for their volume
                w.limits[L_DEPOSIT_COLS] = n
                return _GO_ON_UNCHANGED
            if code == CANNOT_RISE:
                return STOP_FULL
            tally[T_PENDING] -= n
            if face_state:  # the deposit columns' new voxels are plated Na
                after_body_moved(na_contact, lattice, w.cc_bottom, nxy, nz, True)
            alloy_touched_au(w, c_au)
            counters[C_LIFTS] += 1
            return STOP_RESOLVE  # the collector moved: every face is rebuilt
    elif g < 0:  # sealed: the volume waits for a whole layer (module docstring)
        tally[T_SEALED] = 1.0
        tally[T_PENDING] += 1.0
        if tally[T_PENDING] >= nxy:
            if not lift_and_fill(lattice, nx, ny, nz, w.cc_bottom):
                return STOP_FULL
            if face_state:  # the layer laid down is plated Na; the voids that creep shut, Na by flow
                after_body_moved(na_contact, lattice, w.cc_bottom, nxy, nz, True)
            tally[T_PENDING] -= nxy
            tally[T_PENDING] -= close_enclosed_gaps(lattice, nx, ny, nz, w.cc_bottom)
            alloy_touched_au(w, c_au)
            counters[C_LIFTS] += 1
            return STOP_RESOLVE  # every face moved: the caller rebuilds everything
    else:
        lattice[g] = NA
        gap_filled(g, w.gap_dist)
        if face_state and inserted_at_face(g, c, e, nx, ny, nz, w.nbr2):
            na_contact[g] = ATOMIC  # made by reduction at the face; pushed elsewhere, it came by flow
        after_arrival(g, w, c_au)
        changed(g, g, w)
    if not plating and stop_on_nucleus:
        return STOP_RESOLVE
    return _GO_ON


@njit(cache=True, inline="always")
def _alloy(w, u, r_p, r_a):
    """E3: a column's Au inventory sodiated electrochemically at the face the draw picks."""
    nxy = w.nx * w.ny
    c, res = tree_select(w.alloy_tree, w.offsets, (u - r_p) / r_a * tree_total(w.alloy_tree))
    if w.params[P_ALLOY_PHASES] > 0.0:  # one step of 0.5 Na per Au: Au → NaAu2 → NaAu → Na2Au
        w.col_state[c % nxy] = state_of_steps(alloy_steps(w.col_state[c % nxy]) + 1)
    else:
        w.col_state[c % nxy] = CC_AU_ALLOYED
    w.counters[C_ALLOY] += 1
    refresh_column(c % nxy, w)
    return _GO_ON


@njit(cache=True, inline="always")
def _dealloy(w, u, r_p, r_a):
    """E3 de-alloying (``model.alloy = "phases"``): the alloy at the face the draw picks gives back one
    step's Na (c_au/4 voxels, no voxel: the alloy's Na leaves the collector's layer)."""
    nxy = w.nx * w.ny
    c, res = tree_select(w.alloy_tree, w.offsets, (u - r_p) / r_a * tree_total(w.alloy_tree))
    w.col_state[c % nxy] = state_of_steps(alloy_steps(w.col_state[c % nxy]) - 1)
    w.tally[T_DEALLOY] += 1.0
    refresh_column(c % nxy, w)
    return _GO_ON


@njit(cache=True, inline="always")
def _settle_if_unsupported(w):
    """E5: when nothing bears the collector (no Na support, no contact), it settles one voxel
    (``interface.settle_unborne``: under the refill law, through the interface voids under its Na only
    when no thinned column bears either — a collapse, reported as STOP_COLLAPSE)."""
    if w.state_counts[N_NA_SUPPORTS] + w.state_counts[N_CC_CONTACTS] == 0:
        refill_law = w.move_params[M_REFILL_LAW] > 0.0
        if w.params[P_FACE_STATE] > 0.0:  # the Na the collector carries down comes by flow
            mark_body_moving(w.na_contact, w.lattice, w.cc_bottom, w.nx * w.ny, w.nz,
                             holds_voids(w.col_support, refill_law))
        outcome = settle_unborne(w.lattice, w.nx, w.ny, w.nz, w.cc_bottom, w.col_support, refill_law)
        if outcome != SETTLE_NONE:
            w.counters[C_SETTLES] += 1
            w.tally[T_SEALED] = 0.0
            return STOP_COLLAPSE if outcome == SETTLE_COLLAPSE else STOP_RESOLVE
    return _GO_ON


@njit(cache=True, inline="always")
def _refresh_void_below(src, w):
    """The source column may hang over a void of its own, no longer under continuous Na: its leaf,
    beyond the stencil, is recomputed."""
    nxy = w.nx * w.ny
    z = src - nxy
    while z >= 0 and w.lattice[z] == NA:
        z -= nxy
    if z >= 0 and z != src - nxy and w.lattice[z] == GAP:
        changed(z, z, w)


@njit(cache=True, inline="always")
def _filled(g, w):
    """Na has flowed into the gap g: the insertion search's labels stay lower bounds only if g was a
    gap plating could fill (``kmc.kernels.gap_distance``: a path through a gap it could not fill was
    no path to a gap at the labelling)."""
    gap_filled(g, w.gap_dist)
    if not admissible(g, w.cc_bottom, w.nx * w.ny, int(w.limits[L_PORE_DEPTH])):
        w.gap_search[S_VALID] = 0


@njit(cache=True, inline="always")
def _refill(w, g, res, c_au):
    """E4 refill law: the interface-void pixel g becomes Na, the voxel taken at the collector side of
    the thickest Na column within one local Na thickness (``moves.refill_source``; ``res``, the draw's
    residual within g's leaf, chooses among equals)."""
    leaf = w.move_tree[g]
    # The stress that pushes the Na into the void (E4's σ_c) presses its new face: at σ_c ≥ σ_χ it is in
    # atomic contact (PHYSICS §4, "pressed at σ ≥ σ_χ"), read before the lattice changes.
    pressed = refill_stress(g, void_under_na(g, w.lattice, w.nx * w.ny, w.nz), w.col_support, w.nx, w.ny,
                            w.move_params) >= w.params[P_SIGMA_CHI]
    src = refill_source(g, min(res / leaf, 1.0 - 1e-12) if leaf > 0.0 else 0.0, w.lattice, w.cc_bottom,
                        w.nx, w.ny, w.nz)
    if src < 0:  # the leaf was stale (the Na above g changed beyond its stencil): a null event
        changed(g, g, w)
        return _GO_ON
    remove_na(src, w)
    changed(src, src, w)
    _refresh_void_below(src, w)
    w.lattice[g] = NA
    _filled(g, w)
    w.na_contact[g] = ATOMIC if pressed else BY_FLOW  # refilled by flow, pressed in or not (PHYSICS §4)
    w.counters[C_REFILL] += 1
    w.counters[C_MOVES] += 1
    after_arrival(g, w, c_au)
    changed(g, g, w)
    return _settle_if_unsupported(w)


@njit(cache=True, inline="always")
def _move(w, u, r_p, r_a, r_nuc, r_m, c_au):
    """E4: a Na move into a gap (capillary relocation, or loaded flow from the layer) or, under the
    refill law, the refill of an interface void, and what it lets the collector do (E5: lower into
    the layer, settle)."""
    nxy = w.nx * w.ny
    tally = w.tally
    refill_law = w.move_params[M_REFILL_LAW] > 0.0
    s, res = tree_select(w.move_tree, w.offsets, min(u - r_p - r_a - r_nuc, r_m * (1 - 1e-15)))
    if refill_law and w.lattice[s] == GAP:
        return _refill(w, s, res, c_au)
    faces_s = faces_of(s, w) if w.site_class[s] == CLUSTER_ACTIVE else 0
    t, loaded = execute_move(s, res, w.lattice, w.au_column, w.col_support, w.cc_bottom, int(w.limits[L_PORE_DEPTH]),
                             w.nx, w.ny, w.nz, w.eps, w.move_params, w.move_tree, w.offsets, w.nbr, w.nbr2, w.stencil,
                             w.scratch, w.seen, w.mark)
    # Na reached t by flow; a void opens at s if s moved (PHYSICS §4; before the leaves are redone)
    w.na_contact[t] = BY_FLOW
    if not loaded:
        w.na_contact[s] = BY_FLOW
        gap_opened(s, w.nx, w.ny, w.gap_search)
    _filled(t, w)
    if loaded:  # the layer's volume flowed into t (moves module docstring); s stays
        tally[T_PENDING] -= 1.0
        # v3 counts it as the refill; under the refill law the refill is the void's own event.
        w.counters[C_LOADED_FLOW if refill_law else C_REFILL] += 1
    else:  # s moved to t (leaving s may cut a cluster: reclassified at the next solve)
        w.state_counts[N_FACES] -= faces_s
        if under_cc(s, w):
            tally[T_UNDER_CC] -= 1.0
        w.site_class[s] = -1
    w.counters[C_MOVES] += 1
    after_arrival(t, w, c_au)
    changed(s, t, w)
    if loaded and tally[T_UNDER_CC] > 0.0 and tally[T_PENDING] <= -tally[T_UNDER_CC]:
        # The volume that has flowed into gaps covers the Na right under the collector: the
        # collector descends one voxel, removing that Na (any gaps under it close).
        removed = lower_collector_into_layer(w.lattice, w.nx, w.ny, w.nz, w.cc_bottom)
        if removed >= 0:
            after_body_moved(w.na_contact, w.lattice, w.cc_bottom, nxy, w.nz, False)
            tally[T_PENDING] += removed
            tally[T_UNDER_CC] = count_under_cc(w)
            w.counters[C_LOWERS] += 1
        else:  # the collector rests on the electrolyte somewhere: no more volume to give
            w.move_params[M_LOADED_FLOW] = 0.0
        return STOP_RESOLVE
    return _settle_if_unsupported(w)


@njit(cache=True, inline="always")
def _needs_solve(w, i_far_a, capacity_drift):
    """Whether the faces, the supports or the faces' capacity have moved enough to need a new solve."""
    lim, counts = w.limits, w.state_counts
    faces0 = lim[L_FACES]
    supports0 = lim[L_SUPPORTS]
    frac = lim[L_FRACTION]
    floor = lim[L_FLOOR]
    if abs(counts[N_FACES] - faces0) > frac * max(faces0, floor) \
            or abs(counts[N_NA_SUPPORTS] - supports0) > frac * max(supports0, floor):
        return True
    capacity = tree_total(w.plate_tree) + tree_total(w.alloy_tree)
    capacity0 = lim[L_CAPACITY]
    return i_far_a > 0.0 and (capacity > capacity_drift * capacity0 or capacity < capacity0 / capacity_drift)


@njit(cache=True, nogil=True)
def run_batch(w, rng, i_far_a, q_v_c, c_au, max_events, t_end, capacity_drift, gap_free):
    """Events at the frozen V, φ and σ_Na until a bound; returns a STOP_* code (the solver's, or this
    module's STOP_RESOLVE / STOP_FULL).

    ``w``: the ``Cell`` of arrays (its scratch all zero on entry, and left zero); ``i_far_a`` (A) the
    current the faces carry; ``q_v_c`` (C) the charge of a voxel; ``c_au`` a column's Au inventory
    in Na voxels; ``capacity_drift`` the factor of the capacity test (``_needs_solve``); ``gap_free``:
    the lattice holds no GAP on entry (the caller knows it from the last solve's bands). It stays
    true until an event that may open one: an alloying event changes no voxel, and a plating or
    nucleation event in a gap-free lattice joins the pending volume, but the batch drops it after
    any event but alloying, to be safe."""
    stop_on_nucleus = w.limits[L_STOP_ON_NUCLEUS] > 0.0
    stripping = w.params[P_DIRECTION] < 0.0
    clock, counters, tally = w.clock, w.counters, w.tally  # out of the tuple once (see battery_update.refresh)
    layer_voxels = w.nx * w.ny
    done = 0
    rates_current = False  # the class rates are those of the lattice as it is
    tested = False  # the re-solve test has passed on the lattice as it is
    r_p = r_a = r_nuc = r_m = 0.0
    w.gap_search[S_VALID] = 0  # the lattice may have changed since the last batch: relabel when needed
    w.gap_search[S_GAPS_SEEN] = 0  # and a long search may read it for a GAP again (``gap_distance``)
    w.gap_cols[:] = 1  # and any column may hold a gap at the interface (``battery_update.changed`` marks them after)
    while done < max_events:
        if not rates_current:
            r_p, r_a, r_nuc, r_m = _class_rates(w, i_far_a, q_v_c, c_au, stop_on_nucleus)
        rates_current = False
        code, u = next_event(rng, r_p + r_a + r_nuc + r_m, clock, t_end)
        if code != EVENT:
            return code
        counters[C_EVENTS] += 1
        done += 1
        kind = _pick_class(u, r_p, r_a, r_nuc)
        if (kind == EV_PLATE and not stripping and tally[T_SEALED] != 0.0 and tally[T_NUC_DEBT] < 1.0
                and tally[T_PENDING] + 1.0 < layer_voxels):
            # A sealed layer thickening: ``_reduce``'s sealed branch short of a lift, without its call
            # (whose taking of a dozen arrays out of the tuple cost more than the event). Nothing but the
            # pending volume changes, so the class rates stay as they are.
            counters[C_PLATE] += 1
            tally[T_PENDING] += 1.0
            if not tested and _needs_solve(w, i_far_a, capacity_drift):
                return STOP_RESOLVE
            rates_current = True
            tested = True
            continue
        tested = False
        if kind == EV_PLATE and stripping:
            code = _strip(w, u, r_p)
            gap_free = False
        elif kind == EV_PLATE or kind == EV_NUCLEATE:
            code = _reduce(w, u, kind == EV_PLATE, r_p, r_a, r_nuc, c_au, stop_on_nucleus, gap_free)
            gap_free = False
        elif kind == EV_ALLOY and stripping:
            code = _dealloy(w, u, r_p, r_a)
        elif kind == EV_ALLOY:
            code = _alloy(w, u, r_p, r_a)
        else:
            code = _move(w, u, r_p, r_a, r_nuc, r_m, c_au)
            gap_free = False
        if code == _GO_ON_UNCHANGED:
            continue
        if code != _GO_ON:
            return code
        if _needs_solve(w, i_far_a, capacity_drift):
            return STOP_RESOLVE
    return STOP_EVENTS
