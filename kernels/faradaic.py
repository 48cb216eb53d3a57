"""Faradaic events between field solves: plating (E1), alloying (E3), nucleation (E2).

Between two field solves the cell voltage V and the SE potential φ per pixel are frozen (PHYSICS.md
§4). Every contact face then has its Butler–Volmer current density at that V,

    j_f = χ_f j0_f [exp(−α f η_f) − exp((1 − α) f η_f)],   η_f = (V + U_CE) − φ_p(f) − U_f,

a face that appears after the solve taking its BV value at the current V as PHYSICS says. Three sum
trees over conductor sites hold, per site, the sum over its faces of:

- ``plate``: ``j_f a²`` (A) of Na faces and of sodiophilic CC faces (alloyed Au, or a bare CC pixel
  already covered by a nucleus); while the cell strips (``params[P_DIRECTION] = −1``), the anodic
  ``−j_f a²`` of Na faces only (E6: collector faces block, the alloy's Na is not recovered);
- ``alloy``: ``j_f a²`` (A) of unalloyed Au faces (electrochemical alloying at SE contact); under
  ``model.alloy = "phases"`` while the cell strips above the de-alloying potential, the anodic
  ``−j_f a²`` of alloyed Au faces (de-alloying, E3), at the local potential ``U_dealloy``;
- ``nucleate``: the nucleation hazard ``a² J0 exp(−B/η_f²)`` (s⁻¹) of bare CC faces with η_f < 0.

Galvanostatic renormalization: the faradaic current ``I_far`` (A) is shared between plating and
alloying in proportion to the trees' totals S_p and S_a (A), whatever the face set has become since
the solve: plating events (one Na voxel, charge q_v) at rate ``I_far·S_p/(S_p + S_a)/q_v`` and
alloying events (a column's Au inventory, charge ``c_au·q_v``) at rate
``I_far·S_a/(S_p + S_a)/(c_au q_v)``; within a class a face is chosen in proportion to its weight.
Nucleation events are a third class at their own hazard; each creates one Na voxel (charge q_v,
taken from the double layer) and marks its pixel NUCLEATED, after which that CC face is a
sodiophilic plating face pressed by the collector (χ = 1).

Contact quality of Na faces (``na_contact_quality``): under ``model.contact_quality = "floor"``
(v3) ``χ = min(1, max(σ, σ_floor)/σ_χ)`` with σ the stress of the Na voxel (σ_Na in a Na-support
column, 0 elsewhere); ``chi_floor`` (= σ_floor/σ_χ) is the contact quality of unloaded Na (a prior;
without it unloaded Na carries no current at all and a foil resting on its asperities could never
plate). Under ``"face_state"`` (PHYSICS §4) χ is a state of each Na voxel's faces
(``kmc.kernels.contact``): 1 where the Na was made by reduction or pressed at σ ≥ σ_χ, else
``min(1, σ/σ_χ)``, σ the deposit's stress where the run computes one; no floor. The stress term
``U_f = −V_m(σ − P)/F`` shifts Na faces; under ``model.insertion = "least_stress"`` the σ of a
deposit's faces is the deposit's stress while plating (PHYSICS §5 M, ``kmc.kernels.deposit_stress``).
That stress depends on the plating currents through its flow stress's rate factor, and the driver
iterates it with the field solve to their fixed point (``Driver._coupled_stress_solve``), so field
and stress are solved together, not lagged.
"""
import numpy as np
from numba import njit

from kmc.kernels.cell import CC, NA, SE, SEI
from kmc.kernels.clusters import CLUSTER_ACTIVE
from kmc.kernels.contact import contact_quality
from kmc.kernels.interface import COLUMN_NA_SUPPORT
from kmc.kernels.lattice import N_NEIGHBORS, neighbors6
from kmc.kernels.leaf import leaf

# Per-column state of the CC's lower face.
CC_BARE = 0
CC_AU = 1
CC_AU_ALLOYED = 2
CC_NUCLEATED = 3
# ``model.alloy = "phases"`` (PHYSICS §5 E3): a column's Au takes its Na through NaAu2 then NaAu then
# Na2Au, in four equal steps of 0.5 Na per Au (the third a two-phase NaAu + Na2Au mixture); CC_AU is
# none of it, CC_AU_ALLOYED all of it (Na2Au). Under v3 these never occur: one step does it all.
CC_AU_NAAU2 = 4  #: 1/4 of the inventory: NaAu2
CC_AU_NAAU = 5  #: 2/4: NaAu
CC_AU_NAAU_NA2AU = 6  #: 3/4: half NaAu, half Na2Au (Na per Au 1.5)
ALLOY_STEPS = 4  #: steps from Au to Na2Au (each c_au/4 Na voxels)

# Indices into the ``params`` array of the kernels.
P_VT = 0  #: V + U_CE (V)
P_F = 1  #: F/RT (1/V)
P_J0_NA = 2  #: exchange current density of Na faces (A/cm²)
P_J0_AU = 3  #: of Au faces, alloying and alloyed (A/cm²)
P_ALPHA = 4  #: cathodic transfer coefficient
P_U_ALLOY = 5  #: alloying potential of Au (V vs Na)
P_SIGMA_NA = 6  #: σ_Na of the Na supports (MPa)
P_SIGMA_CHI = 7  #: σ_χ (MPa)
P_CHI_FLOOR = 8  #: contact quality of unloaded Na
P_STRESS_V_PER_MPA = 9  #: V_m/F in V/MPa
P_PRESSURE = 10  #: stack pressure P (MPa)
P_FACE_AREA = 11  #: a² (cm²)
P_J0_NUC = 12  #: nucleation prefactor J0 (1/(cm² s))
P_B_NUC = 13  #: nucleation barrier B (V²)
P_DIRECTION = 14  #: +1 while the cell current plates (reduction), −1 while it strips (oxidation)
P_SEI_J0_RATIO = 15  #: j0 of a face on SEI (reduced electrolyte) relative to one on the electrolyte itself
P_DEPOSIT_STRESS = 16  #: 1: a deposit's faces carry its stress (``model.insertion = "least_stress"``)
P_FACE_STATE = 17  #: 1: χ is a state of each Na face (``model.contact_quality = "face_state"``, ``contact``)
P_ALLOY_PHASES = 18  #: 1: ``model.alloy = "phases"`` (Na–Au phases in steps, lateral front, de-alloying)
P_U_DEALLOY = 19  #: de-alloying potential (V vs Na): the local potential of a de-alloying face
P_DEALLOY_ON = 20  #: 1 while the cell strips with V + U_CE above the de-alloying potential (set at solves)
N_PARAMS = 21


@njit(cache=True, inline="always")
def alloy_steps(cs):
    """How many of the ALLOY_STEPS a column in state ``cs`` has taken (0 for bare or unalloyed)."""
    if cs == CC_AU_ALLOYED:
        return ALLOY_STEPS
    if cs >= CC_AU_NAAU2:
        return cs - CC_AU_NAAU2 + 1
    return 0


@njit(cache=True, inline="always")
def state_of_steps(k):
    """The column state after ``k`` alloying steps (0 → CC_AU, ALLOY_STEPS → CC_AU_ALLOYED)."""
    if k <= 0:
        return CC_AU
    if k >= ALLOY_STEPS:
        return CC_AU_ALLOYED
    return CC_AU_NAAU2 + k - 1


@njit(cache=True, inline="always")
def alloyable(cs):
    """Au that can still take Na: unalloyed, or part way to Na2Au."""
    return cs == CC_AU or cs >= CC_AU_NAAU2


@leaf
def butler_volmer(eta, j0, alpha, f):
    """Reduction-positive BV current density (same units as j0); arguments clipped to ±50."""
    a = -alpha * f * eta
    b = (1.0 - alpha) * f * eta
    if a > 50.0:
        a = 50.0
    if b > 50.0:
        b = 50.0
    return j0 * (np.exp(a) - np.exp(b))


@leaf
def _is_electrolyte(state):
    return state == SE or state == SEI


KIND_PLATE = 0  #: plating face (Na, alloyed Au, nucleated CC)
KIND_ALLOY = 1  #: unalloyed Au: electrochemical alloying
KIND_BARE = 2  #: bare CC: nucleation only, no faradaic current
KIND_BLOCKED = 3  #: a collector face while the cell strips: no current, no nucleation
KIND_DEALLOY = 4  #: alloyed Au facing the electrolyte while the cell strips above the de-alloying potential


@njit(cache=True, inline="always")
def na_contact_quality(c, col, sigma, col_support, col_sigma, na_contact, params):
    """χ of the faces of Na voxel c in column col, σ (MPa) its column's load-bearing stress (σ_Na of a
    Na support, else 0). ``"floor"``: ``min(1, max(σ/σ_χ, χ_floor))``; ``"face_state"``: its state
    (``kmc.kernels.contact``), a face reached by flow at ``min(1, σ/σ_χ)`` with σ the deposit's
    stress where the solve gave one (``model.insertion = "least_stress"``)."""
    if params[P_FACE_STATE] > 0.0:
        if params[P_DEPOSIT_STRESS] > 0.0 and col_support[col] == COLUMN_NA_SUPPORT and col_sigma[col] == col_sigma[col]:
            sigma = col_sigma[col]
        return contact_quality(na_contact[c], sigma, params[P_SIGMA_CHI])
    return min(1.0, max(sigma / params[P_SIGMA_CHI], params[P_CHI_FLOOR]))


@leaf
def face_kinetics(c, e, lattice, col_state, col_support, col_sigma, na_contact, params, nx, ny):
    """(kind, j0 (A/cm², χ included), U_f (V)) of the face between conductor c and electrolyte e.

    The one place where face kinds, contact quality and local potentials are decided: the faradaic
    weights and the field solve's faces both come from here. ``col_sigma``: with
    ``params[P_DEPOSIT_STRESS]``, the stress of each deposit pixel at the solve (PHYSICS §5 M, NaN off
    deposits; ``kmc.kernels.deposit_stress``), which the stress term of its Na faces carries;
    ``na_contact`` the contact state of each Na voxel (``kmc.kernels.contact``; read under
    ``params[P_FACE_STATE]`` only).
    """
    col = c % (nx * ny)
    if params[P_DIRECTION] < 0.0 and lattice[c] != NA:
        # Stripping oxidizes Na metal only: the alloy's Na is not recovered (E3) and a collector
        # face has no Na of its own, so collector faces block the anodic current. Under
        # model.alloy = "phases" the alloy facing the electrolyte gives its Na back once V + U_CE is above
        # the de-alloying potential (the driver's solve decides P_DEALLOY_ON), at that local potential.
        if params[P_DEALLOY_ON] > 0.0 and lattice[c] == CC and alloy_steps(col_state[col]) > 0:
            return KIND_DEALLOY, params[P_J0_AU], params[P_U_DEALLOY]
        return KIND_BLOCKED, 0.0, 0.0
    if lattice[c] == NA:
        sigma = params[P_SIGMA_NA] if col_support[col] == COLUMN_NA_SUPPORT else 0.0
        j0 = na_contact_quality(c, col, sigma, col_support, col_sigma, na_contact, params) * params[P_J0_NA]
        if lattice[e] == SEI:  # PHYSICS §4: SEI is electrolyte with a lower j0
            j0 *= params[P_SEI_J0_RATIO]
        if params[P_DEPOSIT_STRESS] > 0.0 and col_support[col] == COLUMN_NA_SUPPORT and col_sigma[col] == col_sigma[col]:
            # The deposit's stress (a column bridged since the solve keeps the load share: NaN here).
            return KIND_PLATE, j0, -params[P_STRESS_V_PER_MPA] * (col_sigma[col] - params[P_PRESSURE])
        return KIND_PLATE, j0, -params[P_STRESS_V_PER_MPA] * (sigma - params[P_PRESSURE])
    cs = col_state[col]
    if alloyable(cs):
        return KIND_ALLOY, params[P_J0_AU], params[P_U_ALLOY]
    if cs == CC_AU_ALLOYED:
        return KIND_PLATE, params[P_J0_AU], 0.0
    if cs == CC_NUCLEATED:
        return KIND_PLATE, params[P_J0_NA], 0.0
    return KIND_BARE, 0.0, 0.0


@njit(cache=True, inline="always")
def face_area_factor(c, e, side_w, nxy):
    """The area of the face between conductor c and electrolyte e, in units of a²: 1 for a horizontal
    face, ``side_w`` of the electrolyte's column for a side face (``geometry.side_face_weight``: the true
    area of the relief a step of its staircase stands for; 1 under ``model.face_area = "staircase"``).
    The one place the faces' area is decided: the faradaic weights and the field solve's faces both
    come from here."""
    if c - e == nxy or e - c == nxy:
        return 1.0
    return side_w[e % nxy]


@leaf
def face_weights(c, e, lattice, col_state, col_support, col_sigma, na_contact, side_w, phi, params, nx, ny):
    """(plate A, alloy A, nucleation 1/s) of the one face between conductor c and electrolyte e, of area
    ``face_area_factor``·a²."""
    kind, j0, u = face_kinetics(c, e, lattice, col_state, col_support, col_sigma, na_contact, params, nx, ny)
    return weights_of_face(kind, j0, u, face_area_factor(c, e, side_w, nx * ny), phi[e % (nx * ny)], params)


@leaf
def weights_of_face(kind, j0, u, area_factor, phi_v, params):
    """``face_weights`` of a face whose kinetics (``face_kinetics``) and area factor are known: the SE
    potential ``phi_v`` (V) of its pixel sets η."""
    eta = params[P_VT] - phi_v - u
    area = params[P_FACE_AREA] * area_factor
    if kind == KIND_BLOCKED:
        return 0.0, 0.0, 0.0
    if kind == KIND_BARE:
        if eta >= 0.0:
            return 0.0, 0.0, 0.0
        return 0.0, 0.0, area * params[P_J0_NUC] * np.exp(-params[P_B_NUC] / (eta * eta))
    w = butler_volmer(eta, j0, params[P_ALPHA], params[P_F]) * area * params[P_DIRECTION]
    w = max(0.0, w)  # the faces' current in the cell current's direction (A); none against it
    if kind == KIND_ALLOY or kind == KIND_DEALLOY:
        return 0.0, w, 0.0
    return w, 0.0, 0.0


@njit(cache=True)
def face_table(face_conductor, face_electrolyte, n, lattice, col_state, col_support, col_sigma, na_contact, side_w,
               params, nx, ny, kind_out, j0_out, u_out, area_out):
    """Kinetics and area (in units of a², ``face_area_factor``) of a list of faces
    (``interface.contact_faces``), for the field solve."""
    for i in range(n):
        c, e = face_conductor[i], face_electrolyte[i]
        k, j0, u = face_kinetics(c, e, lattice, col_state, col_support, col_sigma, na_contact, params, nx, ny)
        kind_out[i] = k
        j0_out[i] = j0
        u_out[i] = u
        area_out[i] = face_area_factor(c, e, side_w, nx * ny)


@leaf
def _is_face_conductor(c, lattice, site_class):
    st = lattice[c]
    return st == CC or (st == NA and site_class[c] == CLUSTER_ACTIVE)


@leaf
def site_weights(c, lattice, site_class, col_state, col_support, col_sigma, na_contact, side_w, phi, params, nx, ny,
                 nz, nbr):
    """(plate A, alloy A, nucleation 1/s) of conductor site c: the sums over its contact faces."""
    if not _is_face_conductor(c, lattice, site_class):
        return 0.0, 0.0, 0.0
    neighbors6(c, nx, ny, nz, False, nbr)
    w_plate = 0.0
    w_alloy = 0.0
    k_nuc = 0.0
    for d in range(N_NEIGHBORS):
        e = nbr[d]
        if e >= 0 and _is_electrolyte(lattice[e]):
            wp, wa, kn = face_weights(c, e, lattice, col_state, col_support, col_sigma, na_contact, side_w, phi,
                                      params, nx, ny)
            w_plate += wp
            w_alloy += wa
            k_nuc += kn
    return w_plate, w_alloy, k_nuc


@njit(cache=True)
def fill_face_weights(face_conductor, face_electrolyte, n, kind, j0, u, area_factor, phi, params, nxy, plate_tree,
                      alloy_tree, nuc_tree):
    """Write the weights (``site_weights``) of every site of the faces' band into the trees' leaves, which
    must be zero on entry (the driver zeroes the few that are not: ``solver.tree_zero_leaves``): a site
    without faces keeps its zero, the other leaves are left as they are (the driver clears the few that
    are not zero: ``solver.tree_clear_outside``); ``tree_build_range`` over the band after.

    From the band's face table: ``interface.contact_faces`` of the same lattice and classes (every face
    of the band, in site order and each site's in direction order, the order ``site_weights`` sums
    them) with its kinetics and area factors from ``face_table`` at the same stresses and contact. The
    leaves are the same sums in the same order, so the same bits, without a pass over the band's sites
    (mostly electrolyte) or the faces' kinetics a second time: each face adds its weights to its
    conductor's (at 512² columns a solve's fill took 29 ms from the sites)."""
    for i in range(n):
        c = face_conductor[i]
        wp, wa, kn = weights_of_face(kind[i], j0[i], u[i], area_factor[i], phi[face_electrolyte[i] % nxy], params)
        plate_tree[c] += wp
        alloy_tree[c] += wa
        nuc_tree[c] += kn


@leaf
def pick_face(c, residual, kind, lattice, col_state, col_support, col_sigma, na_contact, side_w, phi, params, nx, ny,
              nz, nbr):
    """The electrolyte voxel of site c's face on which the residual falls, within the site's weight
    of ``kind`` (0 plate, 1 alloy, 2 nucleation), summing the faces in the order ``site_weights`` does."""
    neighbors6(c, nx, ny, nz, False, nbr)
    acc = 0.0
    last = -1
    for d in range(N_NEIGHBORS):
        e = nbr[d]
        if e < 0 or not _is_electrolyte(lattice[e]):
            continue
        w = face_weights(c, e, lattice, col_state, col_support, col_sigma, na_contact, side_w, phi, params, nx,
                         ny)[kind]
        if w > 0.0:
            last = e
            acc += w
            if residual < acc:
                return e
    return last


@njit(cache=True)
def count_unloaded_na(lattice, site_class, parent, col_support, col_sigma, na_contact, params, nx, ny, nz,
                      site_lo, site_hi):
    """Na voxels of active clusters (connected to the collector, touching the electrolyte) none of
    whose electrolyte faces has χ > 0 at the last solve's stresses (``na_contact_quality``): such Na
    can neither strip nor be plated on until it is pressed. ``site_class`` and ``parent`` from
    ``clusters.classify_na`` (every Na site then points at its root in one step or a few); faces
    are looked for among sites [site_lo, site_hi) (the band that can hold them)."""
    nxy = nx * ny
    live = np.zeros(lattice.size, dtype=np.uint8)  # per cluster root: some face has χ > 0
    nbr = np.empty(N_NEIGHBORS, dtype=np.int64)
    for c in range(site_lo, site_hi):
        if lattice[c] != NA or site_class[c] != CLUSTER_ACTIVE:
            continue
        col = c % nxy
        sigma = params[P_SIGMA_NA] if col_support[col] == COLUMN_NA_SUPPORT else 0.0
        if na_contact_quality(c, col, sigma, col_support, col_sigma, na_contact, params) <= 0.0:
            continue
        neighbors6(c, nx, ny, nz, False, nbr)
        for d in range(N_NEIGHBORS):
            e = nbr[d]
            if e >= 0 and _is_electrolyte(lattice[e]):
                r = c
                while parent[r] != r:
                    r = parent[r]
                live[r] = 1
                break
    n = 0
    for c in range(lattice.size):
        if lattice[c] == NA and site_class[c] == CLUSTER_ACTIVE:
            r = c
            while parent[r] != r:
                r = parent[r]
            if live[r] == 0:
                n += 1
    return n
