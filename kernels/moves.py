"""Moves of Na voxels into adjacent gaps (PHYSICS.md §5: E4a creep, E4b capillary, E4c diffusion), and,
under ``model.refill = "critical_current"``, the refill of interface voids (PHYSICS v4 E4).

For a Na voxel s and an adjacent GAP t, with ΔE the capillary energy change of the move
(``capillary.move_energy``, in units of E_eff) and σ_s the stress of s (σ_Na in a Na-support
column, 0 elsewhere; a gap carries none), three channels add up:

- **E4a creep (driven)**: ``Δσ = σ_s − σ_t − ΔE/a³``; if Δσ > 0 the rate is ``k_ℓ ε̇(Δσ)`` with Na's
  power-law creep ``ε̇ = ε̇_ref (Δσ/σ_ref)ⁿ exp(−Q/R (1/T − 1/T_ref))``. Only loaded Na creeps: it
  stops by itself when the load is spread.
- **E4b capillary**: ``ν_cap min(1, exp(−ΔE/E_eff))`` (Metropolis; detailed balance without load),
  ``ν_cap = k_ℓ ε̇(γ/a)``, the creep rate at the capillary stress, capped at
  ``numerics.max_capillary_rate_ratio`` times the faradaic event rate per column (time-scale
  separation: a capillary fluctuation faster than that only re-samples the same equilibrium).
- **E4c vacancy diffusion**: ``D* V_m Δσ/(R T a²)`` with ``Δσ = σ_s − σ_t > 0``: the refill channel
  that is not creep.

Execution: a capillary move relocates the voxel (s becomes GAP, t Na). Creep and diffusion are
the flow of *loaded* Na, a column of metal under compression between electrolyte and collector:
it fills t from the loaded layer as a whole — the column shortens and the collector settles, it is
not left with a hole — so s stays Na and the volume is taken from the layer (the battery kernel's
pending volume; whole layers are then removed under the descending collector). This is how
interface voids refill under load (E4a, E4c); read as relocations, the column model of the stress
would only move a void from column to column (each move unloads the column it leaves), never
closing it.

**The refill law (``model.refill = "critical_current"``, ``M_REFILL_LAW`` = 1).** E4c is off (its
rate is 0) and E4a creeps only into gaps *outside deposits* (``open_gap``: no Na in the gap's column
between the electrolyte and the collector); never both laws on one site. An *interface-void pixel
under continuous Na* (``void_under_na``: the top GAP g of a column whose gaps reach down to the
electrolyte and whose voxel above g is Na reaching the collector, directly or through the one gap
voxel this law leaves at the collector side) refills as its own event — its rate is the move tree's
leaf at the GAP site g itself, a Na site's leaf being its moves — at

    r = j_r a²/q_v,   j_r = k_r σ_c exp[−(Q_r/k_B)(1/T − 1/T_ref)],

k_r (mA cm⁻² MPa⁻¹) and Q_r (eV) the ``[na] refill_*`` keys (Spencer Jolly et al. 2020; Lowack et
al. 2026), σ_c (MPa) the mean normal stress of the columns within one local Na thickness h of the
void (a disc of radius h voxels, h the Na above g): ``M_SIGMA_BEARING`` — the stack load over Na
supports and the columns this law thinned (``interface.COLUMN_THINNED``), frozen at the solve — on
those columns, 0 on voids and open gaps, collector–electrolyte contacts left out. Averaged so, σ_c is
P wherever the Na carries the stack load.

*Why r is voxel-size independent.* At the critical current a void area refills its metal as fast
as stripping at j_r removes it, a volume flux per area ``j_r V_m/F``. A pixel (a² of area, a³ =
q_v V_m/F of volume) refilled at r carries ``r a³/a² = j_r V_m/F``, in which a cancels; stripping a
contact pixel at j removes ``j V_m/F``. Mean field, the void fraction obeys
``df/dt = (V_m/(F a))(j − f j_r)``: f settles at j/j_r below the critical current and runs to 1
(contact lost) above it, at the same j for any a. v3's one-voxel E4c carries a flux ∝ 1/a.

*Where the volume comes from* (``refill_source``): the thickest Na column within the same disc (most
Na voxels in the run hanging from the collector; the nearest first among equals), at its collector
side, which becomes a GAP under the collector. The Na around a void that persists thins from the
collector down until it is cut off (stranded when the collector re-lands), not the whole layer evenly.

E9: a gap inside a porous collector's body is a target only down to ``pore_depth`` layers below
the collector's lower face (the extrusion depth of the loaded Na, ``kmc.pores``; 0 below the
capillary entry pressure), by ``plating.admissible``, the rule of the insertion. Deeper pore voxels
are neither filled by a move nor a step on a path (a move needs an admissible target), and a Na
voxel whose only gaps are inadmissible has no move. The depth is frozen at each solve with the
stress; ``cc_bottom`` changes only with the collector's moves, after which the trees are rebuilt.

The stress is frozen between field solves, like V and φ (the batch stops when the load-bearing
columns have changed by more than the re-solve fraction).
"""
import numpy as np
from numba import njit

from kmc.kernels.capillary import STENCIL_SIZE, move_energy, stencil_two_steps
from kmc.kernels.cell import BYTE_ONES, CC, GAP, NA, SE, SEI, lattice_words, zero_bytes
from kmc.kernels.interface import COLUMN_CC_CONTACT, COLUMN_NA_SUPPORT, COLUMN_THINNED
from kmc.kernels.lattice import N_NEIGHBORS, neighbors6
from kmc.kernels.leaf import leaf
from kmc.kernels.plating import admissible
from kmc.kernels.solver import EVENT, STOP_EVENTS, next_event, tree_select, tree_total, tree_update_many

# Indices into the ``move_params`` array.
M_NU_CAP = 0  #: capped capillary attempt rate ν (1/s)
M_CREEP_K = 1  #: k_ℓ ε̇_ref exp(−Q/R (1/T − 1/T_ref)) (1/s)
M_SIGMA_REF = 2  #: σ_ref of the creep law (MPa)
M_CREEP_N = 3  #: stress exponent n
M_STRESS_PER_E = 4  #: E_eff/a³ in MPa: converts ΔE/E_eff to a stress
M_DIFF_PER_MPA = 5  #: D* V_m/(R T a²) (1/(s MPa))
M_SIGMA_NA = 6  #: σ_Na of the Na supports (MPa), frozen at the solve
M_LOADED_FLOW = 7  #: 1 if loaded flow may take volume from the layer; 0 while the collector cannot settle
M_REFILL_LAW = 8  #: 1: interface voids refill by the critical stripping current (``model.refill``); 0: v3
M_REFILL_PER_MPA = 9  #: refill rate per MPa of σ_c: k_r exp(−Q_r/k_B (1/T − 1/T_ref)) a²/q_v (1/(s MPa))
M_SIGMA_BEARING = 10  #: the stack load over Na supports and thinned columns (MPa), frozen at the solve
N_MOVE_PARAMS = 11


@njit(cache=True)
def site_stress(s, col_support, nxy, move_params):
    return move_params[M_SIGMA_NA] if col_support[s % nxy] == COLUMN_NA_SUPPORT else 0.0


@njit(cache=True)
def open_gap(t, lattice, nxy, nz):
    """Whether the GAP t is outside deposits: its column holds no Na between the electrolyte and the
    collector (under the refill law E4a acts only there)."""
    col = t % nxy
    z = t // nxy
    for zz in range(z + 1, nz):  # up to the collector
        st = lattice[col + zz * nxy]
        if st == NA:
            return False
        if st != GAP:
            break
    for zz in range(z - 1, -1, -1):  # down to the electrolyte
        st = lattice[col + zz * nxy]
        if st == NA:
            return False
        if st != GAP:
            break
    return True


@njit(cache=True)
def void_under_na(g, lattice, nxy, nz):
    """h, the Na voxels above g, if g is an interface-void pixel under continuous Na: a GAP with gaps
    only down to the electrolyte and Na right above it that reaches the collector — directly, or
    through the one gap voxel the refill's thinning leaves under it (sub-voxel, the Na still bears on
    the collector: ``interface.COLUMN_THINNED``); else 0."""
    if lattice[g] != GAP:
        return 0
    col = g % nxy
    z = g // nxy
    h = 0
    zz = z + 1
    while zz < nz and lattice[col + zz * nxy] == NA:
        h += 1
        zz += 1
    if h == 0 or zz >= nz:
        return 0
    if lattice[col + zz * nxy] == GAP and zz + 1 < nz:
        zz += 1
    if lattice[col + zz * nxy] != CC:
        return 0
    for zz in range(z - 1, -1, -1):
        st = lattice[col + zz * nxy]
        if st == GAP:
            continue
        return h if (st == SE or st == SEI) else 0
    return 0


@njit(cache=True, inline="always")
def _offsets(r, n):
    """Lateral offsets −lo..hi of a disc of radius r on a periodic axis of n columns, each column once."""
    return -min(r, (n - 1) // 2), min(r, n // 2)


@njit(cache=True)
def refill_stress(g, h, col_support, nx, ny, move_params):
    """σ_c (MPa): the mean normal stress of the columns within h voxels of g's column (the bearing
    stress on Na supports and thinned columns, 0 on the others; collector–electrolyte contacts left
    out)."""
    nxy = nx * ny
    cx = g % nx
    cy = (g % nxy) // nx
    lo_x, hi_x = _offsets(h, nx)
    lo_y, hi_y = _offsets(h, ny)
    r2 = h * h
    n = 0
    n_loaded = 0
    for dy in range(lo_y, hi_y + 1):
        row = ((cy + dy) % ny) * nx
        for dx in range(lo_x, hi_x + 1):
            if dx * dx + dy * dy > r2:
                continue
            kind = col_support[row + (cx + dx) % nx]
            if kind == COLUMN_CC_CONTACT:
                continue
            n += 1
            if kind == COLUMN_NA_SUPPORT or kind == COLUMN_THINNED:
                n_loaded += 1
    return move_params[M_SIGMA_BEARING] * n_loaded / n if n > 0 else 0.0


@leaf
def refill_rate(g, lattice, col_support, nx, ny, nz, move_params):
    """Refill rate (1/s) of the interface-void pixel g: j_r a²/q_v at σ_c (0 if g is not one)."""
    h = void_under_na(g, lattice, nx * ny, nz)
    if h == 0:
        return 0.0
    return move_params[M_REFILL_PER_MPA] * refill_stress(g, h, col_support, nx, ny, move_params)


@njit(cache=True)
def refill_source(g, u, lattice, cc_bottom, nx, ny, nz):
    """The Na voxel a refill of g takes: at the collector side of the thickest Na column within one
    local Na thickness of g (most Na voxels in the run hanging from the collector), the nearest
    first among equals, ``u`` ∈ [0, 1) choosing among the still equal; −1 if there is none."""
    nxy = nx * ny
    h = void_under_na(g, lattice, nxy, nz)
    cx = g % nx
    cy = (g % nxy) // nx
    lo_x, hi_x = _offsets(h, nx)
    lo_y, hi_y = _offsets(h, ny)
    r2 = h * h
    best_n, best_d, ties = 0, 0, 0
    for sweep in range(2):  # the best (thickness, −distance) and its ties; then the chosen tie
        pick = int(u * ties)
        k = 0
        for dy in range(lo_y, hi_y + 1):
            row = ((cy + dy) % ny) * nx
            for dx in range(lo_x, hi_x + 1):
                d = dx * dx + dy * dy
                if d > r2:
                    continue
                col = row + (cx + dx) % nx
                b = cc_bottom[col]
                if b <= 0 or lattice[col + (b - 1) * nxy] != NA:
                    continue
                n = 0
                z = b - 1
                while z >= 0 and lattice[col + z * nxy] == NA:
                    n += 1
                    z -= 1
                if sweep == 0:
                    if n > best_n or (n == best_n and d < best_d):
                        best_n, best_d, ties = n, d, 1
                    elif n == best_n and d == best_d:
                        ties += 1
                elif n == best_n and d == best_d:
                    if k == pick:
                        return col + (b - 1) * nxy
                    k += 1
        if ties == 0:
            return -1
    return -1


@leaf
def move_rates(s, t, lattice, au_column, col_support, nx, ny, nz, eps, move_params, nbr):
    """(capillary, loaded) rates (1/s) of moving Na into the GAP t from the Na voxel s: the capillary
    relocation of s (E4b), and the creep + diffusion flow of loaded Na (E4a, E4c; 0 unless s is
    loaded; under the refill law creep only, into gaps outside deposits)."""
    de = move_energy(s, t, lattice, au_column, nx, ny, nz, eps, nbr)
    nu = move_params[M_NU_CAP]
    capillary = nu if de <= 0.0 else nu * np.exp(-de)
    loaded = 0.0
    sigma = site_stress(s, col_support, nx * ny, move_params)
    if sigma > 0.0 and move_params[M_LOADED_FLOW] > 0.0:
        drive = sigma - de * move_params[M_STRESS_PER_E]
        # Under the refill law, creep fills only gaps outside deposits (interface voids are its own).
        if drive > 0.0 and (move_params[M_REFILL_LAW] == 0.0 or open_gap(t, lattice, nx * ny, nz)):
            loaded += move_params[M_CREEP_K] * (drive / move_params[M_SIGMA_REF]) ** move_params[M_CREEP_N]
        loaded += move_params[M_DIFF_PER_MPA] * sigma  # E4c: 0 under the refill law
    return capillary, loaded


@leaf
def move_rate(s, t, lattice, au_column, col_support, nx, ny, nz, eps, move_params, nbr):
    """Total rate (1/s) of moving Na into the GAP t from the Na voxel s: creep + capillary + diffusion."""
    capillary, loaded = move_rates(s, t, lattice, au_column, col_support, nx, ny, nz, eps, move_params, nbr)
    return capillary + loaded


@njit(cache=True, inline="always")
def is_target(t, lattice, cc_bottom, nxy, pore_depth):
    """Whether Na may move into the site t: a GAP, and (E9) not in a collector pore deeper than
    ``pore_depth`` layers (``plating.admissible``)."""
    return t >= 0 and lattice[t] == GAP and admissible(t, cc_bottom, nxy, pore_depth)


@leaf
def move_propensity(s, lattice, au_column, col_support, cc_bottom, pore_depth, nx, ny, nz, eps, move_params, nbr_s,
                    nbr_tmp):
    """The move tree's leaf of site s (1/s): a Na voxel's moves summed over its target gaps; under the
    refill law a GAP's refill rate (an interface-void pixel under continuous Na, admissible by E9);
    0 for anything else."""
    if lattice[s] != NA:
        if move_params[M_REFILL_LAW] > 0.0 and lattice[s] == GAP and admissible(s, cc_bottom, nx * ny, pore_depth):
            return refill_rate(s, lattice, col_support, nx, ny, nz, move_params)
        return 0.0
    neighbors6(s, nx, ny, nz, False, nbr_s)
    total = 0.0
    for d in range(N_NEIGHBORS):
        t = nbr_s[d]
        if is_target(t, lattice, cc_bottom, nx * ny, pore_depth):
            total += move_rate(s, t, lattice, au_column, col_support, nx, ny, nz, eps, move_params, nbr_tmp)
    return total


@njit(cache=True)
def pick_move(s, residual, lattice, au_column, col_support, cc_bottom, pore_depth, nx, ny, nz, eps, move_params,
              nbr_s, nbr_tmp):
    """The target gap t of s on which the residual falls (rates summed in ``move_propensity``
    order, each split capillary then loaded), and whether it fell on the loaded channel."""
    neighbors6(s, nx, ny, nz, False, nbr_s)
    acc = 0.0
    last = -1
    for d in range(N_NEIGHBORS):
        t = nbr_s[d]
        if is_target(t, lattice, cc_bottom, nx * ny, pore_depth):
            capillary, loaded = move_rates(s, t, lattice, au_column, col_support, nx, ny, nz, eps, move_params,
                                           nbr_tmp)
            acc += capillary
            last = t
            if residual < acc:
                return t, False
            acc += loaded
            if residual < acc:
                return t, True
    return last, False


@njit(cache=True)
def fill_move_leaves(tree, lattice, au_column, col_support, cc_bottom, pore_depth, nx, ny, nz, eps, move_params,
                     site_lo, site_hi):
    """Every site's move propensity into the tree's leaves (call ``tree_build`` after). Only Na next
    to a gap moves: sites outside ``[site_lo, site_hi)`` (the caller's band of layers around the
    gaps) get 0. ``cc_bottom`` (z of the collector's lower face per column) and ``pore_depth`` (the
    pore layers Na may fill, E9) bound the targets."""
    tree[:lattice.size] = 0.0
    fill_move_band(tree, lattice, au_column, col_support, cc_bottom, pore_depth, nx, ny, nz, eps, move_params,
                   site_lo, site_hi)


@njit(cache=True)
def fill_move_band(tree, lattice, au_column, col_support, cc_bottom, pore_depth, nx, ny, nz, eps, move_params,
                   site_lo, site_hi):
    """``fill_move_leaves`` of the sites in ``[site_lo, site_hi)`` only, whose leaves must be zero on entry
    (the driver zeroes the few that are not: ``solver.tree_zero_leaves``), the other leaves left as they
    are (the driver clears the few that are not zero: ``solver.tree_clear_outside``).

    Only Na next to a gap moves (and, under the refill law, only a gap refills), so only the gaps and
    their Na neighbours get ``move_propensity``: the gaps are found by a scan of the lattice eight voxels
    at a time (``cell.zero_bytes``), and a nearly sealed layer has few of them among millions of Na
    voxels (the scan of every Na voxel's six neighbours cost ~0.1 µs a site). The gaps one layer outside
    the band are looked at too, for the band's Na next to them. Each leaf is ``move_propensity``'s sum, in
    its order of neighbours, so the leaves have the bits of computing every site's."""
    nbr_g = np.empty(N_NEIGHBORS, dtype=np.int64)
    nbr_s = np.empty(N_NEIGHBORS, dtype=np.int64)
    nbr_tmp = np.empty(N_NEIGHBORS, dtype=np.int64)
    nxy = nx * ny
    refill_law = move_params[M_REFILL_LAW] > 0.0
    words = lattice_words(lattice)
    no_gap = np.uint64(GAP) * BYTE_ONES
    g = max(site_lo - nxy, 0)
    g_end = min(site_hi + nxy, lattice.size)
    while g < g_end:
        if g % 8 == 0 and g + 8 <= g_end and words.size > 0 and zero_bytes(words[g >> 3] ^ no_gap) == 0:
            g += 8  # no gap among these eight voxels
            continue
        if lattice[g] != GAP:
            g += 1
            continue
        if refill_law and site_lo <= g < site_hi:
            tree[g] = move_propensity(g, lattice, au_column, col_support, cc_bottom, pore_depth, nx, ny, nz, eps,
                                      move_params, nbr_s, nbr_tmp)
        neighbors6(g, nx, ny, nz, False, nbr_g)
        for d in range(N_NEIGHBORS):
            s = nbr_g[d]
            if s >= site_lo and s < site_hi and lattice[s] == NA:
                tree[s] = move_propensity(s, lattice, au_column, col_support, cc_bottom, pore_depth, nx, ny, nz, eps,
                                          move_params, nbr_s, nbr_tmp)
        g += 1


@njit(cache=True)
def execute_move(s, residual, lattice, au_column, col_support, cc_bottom, pore_depth, nx, ny, nz, eps, move_params,
                 tree, offsets, nbr_s, nbr_tmp, stencil, scratch, seen, mark):
    """Execute the move of Na voxel s the residual picks and update the move tree; returns
    ``(t, loaded)``: the gap filled, and whether by loaded flow.

    A capillary move relocates the voxel (s becomes GAP). Loaded flow (creep, diffusion) fills t
    from the loaded layer as a whole — a loaded column is continuous metal under compression, which
    shortens (the collector settles) rather than leaving a hole — so s stays Na and the caller
    takes the voxel from the layer's volume (``kmc.kernels.battery``: the pending volume)."""
    t, loaded = pick_move(s, residual, lattice, au_column, col_support, cc_bottom, pore_depth, nx, ny, nz, eps,
                          move_params, nbr_s, nbr_tmp)
    lattice[t] = NA
    if not loaded:
        lattice[s] = GAP
    n = stencil_two_steps(s, t, nx, ny, nz, stencil, nbr_s, nbr_tmp, seen)
    for a in range(n):
        k = stencil[a]
        seen[k] = 0
        tree[k] = move_propensity(k, lattice, au_column, col_support, cc_bottom, pore_depth, nx, ny, nz, eps,
                                  move_params, nbr_s, nbr_tmp)
    tree_update_many(tree, offsets, stencil, n, scratch, mark)
    return t, loaded


@njit(cache=True, nogil=True)
def run_moves(lattice, au_column, col_support, cc_bottom, pore_depth, eps, move_params, tree, offsets, nx, ny, nz,
              clock, counters, rng, max_events, t_end):
    """Moves only (no current) until ``max_events`` or time ``t_end`` (s): relaxation at rest, and the
    production move rates on their own for the detailed-balance check. Returns a STOP_* code.
    Loaded flow, if the caller's ``move_params`` allow it, is executed as in the battery loop but
    without taking its volume from anywhere (no pending volume here)."""
    nbr_s = np.empty(N_NEIGHBORS, dtype=np.int64)
    nbr_tmp = np.empty(N_NEIGHBORS, dtype=np.int64)
    stencil = np.empty(STENCIL_SIZE, dtype=np.int64)
    scratch = np.empty(STENCIL_SIZE, dtype=np.int64)
    seen = np.zeros(lattice.size, dtype=np.uint8)
    mark = np.zeros(tree.size, dtype=np.uint8)
    done = 0
    while done < max_events:
        code, u = next_event(rng, tree_total(tree), clock, t_end)
        if code != EVENT:
            return code
        s, residual = tree_select(tree, offsets, u)
        execute_move(s, residual, lattice, au_column, col_support, cc_bottom, pore_depth, nx, ny, nz, eps,
                     move_params, tree, offsets, nbr_s, nbr_tmp, stencil, scratch, seen, mark)
        counters[0] += 1
        done += 1
    return STOP_EVENTS
