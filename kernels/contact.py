"""Contact quality χ of Na faces as a state of each Na voxel (PHYSICS.md §4), under
``model.contact_quality = "face_state"``.

χ scales a Na face's exchange current density. Under the default ``"floor"`` (model v3) it is
``min(1, max(σ/σ_χ, χ_floor))`` with ``χ_floor`` the material's ``unloaded_contact_quality``, and
nothing here is used. Under ``"face_state"`` it is 1 for a face whose Na was made in atomic contact
with the electrolyte — reduced there (E1 plating at that face, E2 nucleation, a sealed layer laid
down, the initial Na of the cell) — or pressed against it at σ ≥ σ_χ; ``min(1, σ/σ_χ)`` for a face
that Na reached by flow (an E4 move, the refill of a void below σ_χ, plated volume pushed through a deposit to
a gap away from the face, Na carried by the collector as it settles) and that has not been pressed
since, σ the Na's stress (MPa: the deposit's own under ``model.insertion = "least_stress"``, else
σ_Na of a Na-support column, else 0; a column the refill law thinned bears the bearing stress while the
cell strips, which presses its Na at the next solve, and reads 0 between solves); it keeps its value
until a void opens there. There is no
floor: unloaded Na that arrived by flow carries no current. Au faces have χ = 1.

The state is kept per Na voxel (``na_contact``, uint8 per site: ``ATOMIC`` or ``BY_FLOW``), all the
voxel's electrolyte faces alike, not per face. In this lattice a void opens at a face only by the
voxel leaving (stripped, moved, taken by the alloy, the interphase or a flaw: its site stops being
Na), which opens every face it had at once; a voxel arrives as a whole, by reduction or by flow; and
the stress that presses it is per column. A face-resolved state would differ only for a voxel
reduced at one face that touches the electrolyte at another one Na reached by flow — a side face of
a single voxel, below what the model resolves.

Who writes it (only under ``"face_state"``; the array stays all ``BY_FLOW`` otherwise): the batch
loop marks ``ATOMIC`` the Na voxel at whose face a voxel is reduced and the voxel inserted next to
that face, ``BY_FLOW`` where a move brings Na or plated volume is pushed away from the face;
``kmc.kernels.battery_update.remove_na`` clears a voxel that leaves; ``after_body_moved`` follows the
collector body when it lifts, settles or lowers; and each field solve presses the Na of loaded
columns and clears every site that holds no Na (``press_and_clear``). Invariant: a site that holds
no Na holds ``BY_FLOW``.
"""
import numpy as np
from numba import njit

from kmc.kernels.cell import NA
from kmc.kernels.interface import COLUMN_NA_SUPPORT, COLUMN_THINNED, _highest_gap_below
from kmc.kernels.lattice import neighbors6

BY_FLOW = 0  #: a face Na reached by flow, not pressed since: χ = min(1, σ/σ_χ)
ATOMIC = 1  #: made by reduction or pressed at σ ≥ σ_χ: χ = 1


@njit(cache=True, inline="always")
def contact_quality(state, sigma_mpa, sigma_chi_mpa):
    """χ of a Na face under ``"face_state"``: 1 in atomic contact, else ``min(1, σ/σ_χ)`` (0 unloaded
    or under tension; no floor)."""
    if state == ATOMIC:
        return 1.0
    return min(1.0, max(sigma_mpa, 0.0) / sigma_chi_mpa)


@njit(cache=True)
def press_and_clear(lattice, col_support, col_sigma_mpa, sigma_chi_mpa, nxy, na_contact):
    """At a field solve: the Na of every column that bears on the collector — a Na support, or a column
    the refill law thinned (``interface.COLUMN_THINNED``: sub-voxel, it still bears) — pressed at
    σ ≥ σ_χ (``col_sigma_mpa``, per column, MPa: the stress the solve gives its Na, 0 where it bears
    none) is in atomic contact from now on; every site that holds no Na is cleared. Returns the voxels
    newly pressed."""
    n = 0
    for s in range(lattice.size):
        if lattice[s] != NA:
            na_contact[s] = BY_FLOW
        elif na_contact[s] != ATOMIC:
            col = s % nxy
            bears = col_support[col] == COLUMN_NA_SUPPORT or col_support[col] == COLUMN_THINNED
            if bears and col_sigma_mpa[col] >= sigma_chi_mpa:
                na_contact[s] = ATOMIC
                n += 1
    return n


@njit(cache=True)
def mark_body_moving(na_contact, lattice, cc_bottom, nxy, nz, hold_voids):
    """Before ``interface.settle_collector``: if it will move the body, every site from each column's
    highest gap under the collector up (the Na hanging from the collector, which drops with it, and
    the body's pores) is marked ``BY_FLOW``: Na carried onto the electrolyte by the collector is in
    mechanical contact, not atomic, until pressed. Mirrors the settle's own test."""
    for col in range(nxy):
        if _highest_gap_below(col, lattice, nxy, cc_bottom, hold_voids) < 0:
            return
    for col in range(nxy):
        g = _highest_gap_below(col, lattice, nxy, cc_bottom, hold_voids)
        for z in range(g, nz):
            na_contact[col + z * nxy] = BY_FLOW


@njit(cache=True)
def after_body_moved(na_contact, lattice, cc_bottom, nxy, nz, lifted):
    """After the collector body lifted (``interface.lift_collector``, in a sealed layer's lift or the
    deposits' lift) or lowered into the layer (``interface.lower_collector_into_layer``): the body's
    sites, shifted with it, are cleared (Na in its pores touches no electrolyte). After a lift, the
    site right under the collector is new: plated Na laid down there by the lift (``ATOMIC``), or the
    gap the lift opened."""
    for col in range(nxy):
        b = cc_bottom[col]
        for z in range(b, nz):
            na_contact[col + z * nxy] = BY_FLOW
        if lifted and b > 0:
            under = col + (b - 1) * nxy
            na_contact[under] = ATOMIC if lattice[under] == NA else BY_FLOW


def initial_contact(lattice: np.ndarray) -> np.ndarray:
    """The state of a fresh lattice: its Na (the initial Na layer, a Na foil pressed onto the
    electrolyte) is in atomic contact."""
    return (lattice == NA).astype(np.uint8)


@njit(cache=True)
def inserted_at_face(g, c, e, nx, ny, nz, nbr):
    """Whether the voxel E1 inserted at g, reduced at the face between c and e, is made there: g is a
    neighbour of c or of e (rule 1 of ``kmc.kernels.plating``, growth along the interface, or the gap
    right above a one-voxel column). Elsewhere the plated volume was pushed through the Na to a gap
    away from the face (rules 2 and 3, a deposit's free edge): Na that arrived there by flow."""
    for center in (c, e):
        if center < 0:
            continue
        neighbors6(center, nx, ny, nz, False, nbr)
        for d in range(6):
            if nbr[d] == g:
                return True
    return False
