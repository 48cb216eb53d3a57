"""The battery driver: field solves, event batches between them, and the double-layer start.

What one galvanostatic step does (``kmc.battery.protocol``), until its end:

1. **Field solve** (``solve``) on the contact faces with their kinds, contact quality and local
   potentials (``kmc.kernels.faradaic.face_kinetics``; under ``model.contact_quality = "face_state"``
   the Na of columns loaded at σ ≥ σ_χ is pressed into atomic contact first, ``kmc.kernels.contact``):
   the cell voltage V and the electrolyte potential φ per pixel for the step's current I; then every
   event's propensity at them.
2. **Events** — faradaic (E1–E3, E6) and Na moves (E4, with E5 settling) — at that frozen V, φ and
   σ_Na (``batch``: ``kmc.kernels.battery_loop.run_batch``) until the faces or the load-bearing
   columns have changed by more than ``numerics.resolve_area_fraction``, the collector moved, or the
   step's time is reached; E7 and E8 over the batch's time (``book_batch``); then back to 1.
3. **Nucleation-limited start** (``double_layer_step``): while the faces cannot carry I (|V| would
   exceed ``numerics.voltage_bound_v``), the excess charges the double layer on the contact area,
   ``dV/dt = −(I − I_far(V))/(C_dl A_c)``, in steps of at most ``numerics.resolve_dv_mv``; in each step
   the nucleation hazard of the bare collector faces acts at the step's V (a piecewise-constant
   hazard; a nucleus ends the step). A nucleus's charge is owed and paid by the next faradaic events.

A ``hold`` keeps V fixed (``solve_held``): potentiostatic solves, the faradaic events at the current
the faces carry, the double layer charged at once by the jump to the held V.
"""
from __future__ import annotations

import math
import time
from typing import NamedTuple

import numpy as np

from kmc import field, pores
from kmc.kernels import battery_arrays as ka
from kmc.kernels import battery_loop as kloop
from kmc.kernels import contact as kc
from kmc.kernels import faradaic as kf
from kmc.kernels import moves as km
from kmc.kernels.capillary import STENCIL_SIZE
from kmc.kernels.cell import GAP, NA
from kmc.kernels.deposit_stress import deposit_terrain, gap_height_um, rated_stress, squeeze_strain_rate
from kmc.kernels.gap_distance import N_SEARCH
from kmc.kernels.interface import (
    COLUMN_NA_SUPPORT,
    COLUMN_THINNED,
    FACE_AU,
    FACE_NA,
    column_support,
    contact_faces,
    layer_contents,
    na_stress_mpa,
)
from kmc.kernels.lattice import N_NEIGHBORS
from kmc.kernels.solver import STOP_NO_EVENTS, STOP_TIME, tree_build_range, tree_clear_outside, tree_zero_leaves
from kmc.battery.classes import ClusterClasses
from kmc.battery import alloy
from kmc.battery.losses import Losses, MetalSurface, take_from_metal
from kmc.errors import KmcError


class FaceTable(NamedTuple):
    """The band's contact faces at a solve (``interface.contact_faces``: site order, each site's in
    direction order) and their kinetics (``faradaic.face_table``): the solve's faces, and the faradaic
    leaves' weights from the same numbers (``faradaic.fill_face_weights``)."""

    n: int
    conductor: np.ndarray
    electrolyte: np.ndarray
    kind: np.ndarray  #: ``interface.FACE_*``
    kinetic_kind: np.ndarray  #: ``faradaic.KIND_*``
    j0_a_cm2: np.ndarray  #: χ included
    u_v: np.ndarray
    area_factor: np.ndarray  #: in units of a² (``faradaic.face_area_factor``)


class Driver:
    """Solves and batches of one battery model (its ``Params`` and flattened protocol steps)."""

    #: A double-layer step's stop code when the cell shorted in it (beyond the kernels' codes).
    STOP_SHORT = 99
    #: A batch's stop code when the collector collapsed onto the electrolyte under the refill law.
    STOP_COLLAPSE = kloop.STOP_COLLAPSE

    def __init__(self, params, steps, classes=None):
        self.p = params
        self.steps = steps
        self.losses = Losses(params)
        # The clusters' classification with the lattice it came from (shared with the observer).
        self.classes = ClusterClasses() if classes is None else classes
        # Wall time by part of the work (benchmarks/battery.py reports it); not part of the state.
        self.timing = {"solve_s": 0.0, "kernel_s": 0.0, "observe_s": 0.0, "solves": 0, "batches": 0}
        self._scratch = None  # the event loop's scratch arrays (zero between calls), kept across batches
        self._gap_free_at = None  # (lattice, events counter) when the last solve found no GAP in it
        self._face_capacity = 0  # the contact-face lists' length (``_face_geometry``)
        self._outlook = None  # the flaws' outlook of the batch under way (``batch_end``)

    # -- the solve: each sub-step a function ---------------------------------------------------------
    def solve(self, run, current_a: float, voltage_v: float | None = None) -> None:
        """Field solve (galvanostatic, or potentiostatic at ``voltage_v``) and the propensities from it."""
        t_start = time.perf_counter()
        guess = self._set_direction(run, current_a, voltage_v)
        if self.p.alloy_phases:
            alloy.spread(run, self.p)  # E3: the lateral front (before the faces are built from col_state)
        self._pay_debts(run)
        run.site_class[:] = self.classes.of(run.lattice, self.p.nx, self.p.ny, self.p.nz)[0]
        n_cc, n_na = self._load_columns(run)
        if self.p.face_state:
            self._press(run)
        face_band, move_band = self.classes.derived("bands", lambda: bands(run.lattice, self.p))  # (of() above)
        # No GAP layer at all (no move band): the next batch of this run may skip the search for an
        # insertion site, as long as no event has run since (the events counter tells).
        self._gap_free_at = (run.lattice, run.count("events")) if move_band[1] == 0 else None
        plating = run.direction > 0 and (current_a != 0 or voltage_v is not None)
        if self.p.least_stress and plating:
            sol, faces, table = self._coupled_stress_solve(run, n_na, face_band, current_a, voltage_v, guess)
        else:
            if self.p.least_stress:
                self._load_share_stress(run)
            faces, table, sol = self._plain_solve(run, face_band, current_a, voltage_v, guess)
        carried = self._store_solution(run, sol, faces, table.kind, current_a, voltage_v)
        self._rebuild_trees(run, face_band, move_band, table)
        run.set_counts(table.n, n_na, n_cc)
        run.sealed = 0.0  # the lattice may have changed: search again
        capacity = float(run.plate_tree[-1] + run.alloy_tree[-1])
        run.freeze_limits(table.n, n_na, self.p.resolve_fraction, 0.0 if carried else 1.0, self.p.n_cols,
                          capacity)
        run.need_solve = 0.0
        self.timing["solve_s"] += time.perf_counter() - t_start
        self.timing["solves"] += 1

    def _plain_solve(self, run, band, current_a, voltage_v, guess):
        """The field solve at fixed stresses. Under ``model.alloy = "phases"`` while the cell strips, the
        alloy facing the electrolyte de-alloys only above its potential (PHYSICS §5 E3): the faces are
        solved without it first, and when that needs V + U_CE above ``dealloying_potential_v`` (or the
        faces cannot carry the current) again with it, at that local potential. With the alloy's faces
        the solved V + U_CE stays above the threshold (below it they would reduce, not oxidize, so the
        Na faces alone would need even more), so the switch is consistent with the solve it gives."""
        p = self.p
        run.kinetics[kf.P_DEALLOY_ON] = 0.0
        faces, table = self._faces(run, band)
        sol = self._field_solve(faces, current_a, voltage_v, guess)
        if p.alloy_phases and run.direction < 0 and (current_a != 0 or voltage_v is not None):
            if voltage_v is not None:
                above = voltage_v + p.u_ce_v > p.dealloying_potential_v
            else:
                above = (not getattr(sol, "carried", True)) or sol.voltage_v + p.u_ce_v > p.dealloying_potential_v
            if above and (alloy.steps_by_column(run.col_state) > 0).any():
                run.kinetics[kf.P_DEALLOY_ON] = 1.0
                faces, table = self._faces(run, band)
                sol = self._field_solve(faces, current_a, voltage_v, guess)
        return faces, table, sol

    def _set_direction(self, run, current_a, voltage_v):
        """The current's direction for the kinetics, and the warm start (None after a reversal: the old
        pattern is no guide)."""
        if voltage_v is None or current_a != 0.0:
            run.direction = -1.0 if current_a < 0 else 1.0
        else:  # a hold: plating below the counter electrode's potential, stripping above
            run.direction = -1.0 if voltage_v + self.p.u_ce_v > 0 else 1.0
        return self._warm_guess(run) if run.i_far_a * run.direction > 0 else None

    def _pay_debts(self, run) -> None:
        """Whether loaded flow may still take volume, and E7/E8's debts taken from the metal."""
        run.loaded_flow = 1.0 if self._collector_can_settle(run) else 0.0
        surface = MetalSurface()  # the metal at the electrolyte, found once for both payments
        self.losses.pay_sei_debt(run, surface)
        if self.losses.sync_flaw_debt(run):
            surface.forget()  # Na given back to the metal: the lattice changed outside the payments
        run.flaw_paid_voxels += take_from_metal(run, self.p, run.flaw_debt, GAP, surface)

    def _load_columns(self, run):
        """Na under the collector, the load-bearing columns and the stress of the Na supports; returns
        (CC-contact columns, Na-support columns)."""
        p = self.p
        lat2 = run.lattice.reshape(p.nz, p.n_cols)
        b = run.cc_bottom
        run.under_cc_voxels = float((lat2[np.maximum(b - 1, 0), np.arange(p.n_cols)] == NA)[b > 0].sum())
        support, n_cc, n_na = self.classes.derived(("column_support", p.refill_law),  # classified just before
                                                   lambda: support_of_columns(run.lattice, p, p.refill_law))
        run.col_support[:] = support
        if p.refill_law:
            # The refill law's bearing stress (E4): the load over the supports and the columns it thinned by
            # one voxel at their collector side (sub-voxel, they still bear; ``interface.COLUMN_THINNED``).
            # While stripping the supports' σ_Na shares the load over them too, or the last whole supports
            # would carry P·A alone before the collector settles (σ_Na without bound, read by the face
            # potentials and the flaws). While plating the same pattern is a column growing towards the
            # collector, not yet bearing (v3's rule).
            n_thinned = int((run.col_support == COLUMN_THINNED).sum()) if run.direction < 0 else 0
            run.bearing_stress_mpa = na_stress_mpa(p.pressure_mpa, p.hardness_mpa, n_cc, n_na + n_thinned, p.n_cols)
            run.na_stress_mpa = run.bearing_stress_mpa if n_na else 0.0
        else:
            run.na_stress_mpa = na_stress_mpa(p.pressure_mpa, p.hardness_mpa, n_cc, n_na, p.n_cols)
        run.moves_na_stress_mpa = run.na_stress_mpa
        # E9: how deep the loaded Na may be extruded into the collector's pores (none without pores).
        run.pore_depth_voxels = (p.nz if p.pore_entry_mpa is None else
                                 pores.depth_voxels(run.na_stress_mpa, p.pore_entry_mpa, p.pore_um_per_mpa, p.voxel_um))
        return n_cc, n_na

    #: The coupled stress–field iteration (``_coupled_stress_solve``): at most this many field solves, the
    #: rate factor moved all the way to the solved one (in its logarithm) while the iteration contracts, by
    #: half as much again each time the currents' change grows (at small overpotential a face's stress term
    #: is as large as its overpotential and the plain iteration overshoots), and converged once no pixel's
    #: Na-face plating current moves by more than ``STRESS_CURRENT_RTOL`` of the largest. The test is on
    #: the currents, not on σ, because σ acts through them (and through where the volume goes): a deposit
    #: pixel that plates almost nothing has a strain rate set by solver round-off, so its rate factor (and
    #: σ by a few MPa, up to σ_lift) can wander without changing any current or any event.
    STRESS_MAX_SOLVES = 16
    STRESS_MIN_RELAXATION = 1.0 / 16.0
    STRESS_CURRENT_RTOL = 1e-3

    def _load_share_stress(self, run) -> None:
        """PHYSICS §5 M at rest and while stripping: a deposit carries its share of the stack load (σ_Na of
        the supports)."""
        support = run.col_support == COLUMN_NA_SUPPORT
        run.deposit_stress_mpa[:] = np.where(support, run.na_stress_mpa, np.nan)
        run.deposit_columns = float(support.sum())
        run.least_stress = 1.0

    def _coupled_stress_solve(self, run, n_na, band, current_a, voltage_v, guess):
        """PHYSICS §5 M while plating, solved with the field: each deposit pixel's stress and where its
        plated volume goes (``kmc.kernels.deposit_stress``), σ_lift = P·A/A_deposits, at least the deposits'
        share of the stack load σ_Na (a choice: PHYSICS M caps σ but sets no floor, yet the Na between
        electrolyte and collector bears the load the contacts do not, plating or not — without it a sealed
        layer with a few open pixels sat at its squeeze-flow cost, 0.5 MPa under 5.6 MPa, and its faces'
        stress term read as 1.3 mV of resistance at T3's probe), at the flow stress's
        rate factor (ε̇/ε̇_ref)^(1/n) from the squeeze flow's strain rate — which follows from the plating
        current the field puts on the deposits, which follows from the stress through the faces' local
        potential U = −V_m(σ − P)/F. Fixed-point iteration: paths at the current rate factor, field solve,
        strain rate from that solve's Na-face currents, rate factor moved towards it; until the currents
        stop moving (``STRESS_CURRENT_RTOL``). The solution returned is the last solve's, made at the last σ, so the
        frozen σ and φ are one state, not one lagged behind the other. A solve that reaches
        ``STRESS_MAX_SOLVES`` is counted (``stress_unconverged``), never silent. Returns the solution,
        the faces and their ``FaceTable``."""
        p = self.p
        h_um = np.empty(p.n_cols)
        gap_height_um(run.cc_bottom, run.se_surface_um, p.voxel_um, h_um)
        edge = np.where(run.au_column > 0, p.edge_tension_au_n_m, p.edge_tension_n_m)
        sigma_lift = p.pressure_mpa * p.n_cols / n_na if n_na else np.inf
        # The volume one Na face's current density (A/cm²) plates per second (µm³/s): j a² / q_v voxels of a³.
        um3_per_a_cm2 = p.face_area_cm2 / p.q_v_c * p.voxel_um ** 3
        terrain = np.empty(p.n_cols)
        parent = np.empty(p.n_cols, dtype=np.int64)
        parent_um = np.empty(p.n_cols)
        settled = np.empty(p.n_cols, dtype=np.int64)  # the pixels in their paths' order, for rated_stress
        run.deposit_columns = deposit_terrain(run.col_support, h_um, edge, p.nx, p.ny, p.voxel_um,
                                              p.creep_sigma_ref_mpa, p.size_effect_strength_mpa,
                                              p.size_effect_exponent, terrain, run.insertion_target, parent, parent_um,
                                              settled)
        targets = run.insertion_target.copy()  # the terrain's; each pass caps at σ_lift anew
        rate_factor = np.ones(p.n_cols)
        path = np.empty(p.n_cols)
        strain_rate = np.empty(p.n_cols)
        previous = None
        weight, last_change = 1.0, np.inf
        run.least_stress = 1.0
        geometry = self._face_geometry(run, band)  # the faces stay; their local potentials follow σ
        deposit = run.col_support == COLUMN_NA_SUPPORT
        for k in range(self.STRESS_MAX_SOLVES):
            run.flow_rate_factor[:] = rate_factor
            run.insertion_target[:] = targets
            rated_stress(run.col_support, terrain, parent, parent_um, settled, h_um, rate_factor, p.nx, p.ny,
                         p.creep_sigma_ref_mpa, p.size_effect_strength_mpa, p.size_effect_exponent, sigma_lift,
                         run.deposit_stress_mpa, run.insertion_target, path)
            # The deposits carry their share of the stack load while plating too (σ_Na, 0 when the
            # collector's contacts carry it all): pushing volume out adds to it where the path costs more.
            np.maximum(run.deposit_stress_mpa, run.na_stress_mpa, out=run.deposit_stress_mpa)
            faces, table = self._faces(run, band, geometry)
            sol = self._field_solve(faces, current_a, voltage_v, guess)
            run.stress_iterations += 1
            if not n_na:
                break
            na_j = self._face_current(sol, faces, table.kind == FACE_NA)
            if previous is not None:
                change = np.abs(na_j - previous).max()
                if change <= self.STRESS_CURRENT_RTOL * np.abs(na_j).max():
                    break
                if change > last_change:
                    weight = max(0.5 * weight, self.STRESS_MIN_RELAXATION)
                last_change = change
            if k == self.STRESS_MAX_SOLVES - 1:
                run.stress_unconverged += 1
                break
            previous = na_j
            squeeze_strain_rate(run.col_support, terrain, np.maximum(na_j, 0.0) * um3_per_a_cm2, h_um, p.nx, p.ny,
                                p.voxel_um, strain_rate)
            solved = np.where(deposit, (strain_rate / p.creep_rate_ref_s) ** (1.0 / p.creep_n), 1.0)
            rate_factor = rate_factor ** (1.0 - weight) * solved ** weight
            guess = sol if getattr(sol, "carried", True) else guess
        return sol, faces, table

    def _face_current(self, sol, faces, which):
        """What each pixel's faces selected by the mask ``which`` carry in a solution (A/cm² of pixel,
        reduction positive): each face's current density times its area over the pixel's (a side face
        under ``model.face_area = "true_area"`` has less than the pixel's area)."""
        face_j = np.asarray(sol.face_current_density_a_cm2)
        if not face_j.size:
            return np.zeros(self.p.n_cols)
        share = np.broadcast_to(faces.area_cm2, face_j.shape) / self.p.face_area_cm2
        return np.bincount(faces.pixel[which], weights=face_j[which] * share[which], minlength=self.p.n_cols)

    def _press(self, run) -> None:
        """PHYSICS §4: the Na of each column that bears on the collector loaded at σ ≥ σ_χ is in atomic
        contact from now on, σ the deposit's stress where the run computes one (``model.insertion =
        "least_stress"``), else σ_Na on a Na support and, while the cell strips under ``model.refill =
        "critical_current"``, the bearing stress on a column that law thinned (sub-voxel, it still bears:
        ``interface.COLUMN_THINNED``); sites that hold no Na are cleared (``kmc.kernels.contact.press_and_clear``). Done
        before the solve, so σ is the one frozen at the last solve: the stress the Na was under through
        the batches since (the new solve's σ is found together with its field, and a press inside that
        iteration would make an irreversible flag depend on its intermediate steps)."""
        p = self.p
        sigma = np.full(p.n_cols, float(run.na_stress_mpa))
        if p.least_stress:
            sigma = np.where(np.isnan(run.deposit_stress_mpa), sigma, run.deposit_stress_mpa)
        if p.refill_law:
            # A column the refill law thinned at its collector side bears on the collector while the cell
            # strips, at the bearing stress (``_load_columns``), and so presses its Na; while plating it is
            # a column growing towards the collector, bearing nothing.
            sigma = np.where(run.col_support == COLUMN_THINNED,
                             float(run.bearing_stress_mpa) if run.direction < 0 else 0.0, sigma)
        kc.press_and_clear(run.lattice, run.col_support, sigma, float(run.kinetics[kf.P_SIGMA_CHI]), p.n_cols,
                           run.na_contact)

    def _faces(self, run, band, geometry=None):
        """The contact faces of the band: a ``field.Faces`` and their ``FaceTable``; the faces' geometry
        (``_face_geometry``) may be passed in when only their kinetics changed."""
        p = self.p
        n, cond, elec, pix, kind = self._face_geometry(run, band) if geometry is None else geometry
        fk = np.empty(n, dtype=np.int64)
        j0 = np.empty(n)
        u = np.empty(n)
        area = np.empty(n)  # in units of a²: a side face of the relief at its true area (kf.face_area_factor)
        kf.face_table(cond, elec, n, run.lattice, run.col_state, run.col_support, run.deposit_stress_mpa, run.na_contact,
                      run.side_face_weight, run.kinetics, p.nx, p.ny, fk, j0, u, area)
        is_na = kind == FACE_NA
        run.na_faces_col[:] = np.bincount(pix[is_na], weights=area[is_na], minlength=p.n_cols)
        faces = field.Faces(pix, p.face_area_cm2 * area, j0, p.kinetics[kf.P_ALPHA], u)
        return faces, FaceTable(n, cond, elec, kind, fk, j0, u, area)

    #: Room the face lists are allocated with beyond the count of the solve that last outgrew them: the
    #: contact faces change by a few per cent between solves, so the next solves fill them in one pass.
    FACE_ROOM = 1.125

    def _face_geometry(self, run, band):
        """The band's contact faces: their number, conductor and electrolyte sites, pixel and kind.
        The lists are allocated at the last count (with ``FACE_ROOM``) and listed again, larger, only
        when the faces have outgrown them (``contact_faces`` counts past its arrays' end)."""
        p = self.p
        alloyed = (run.col_state == kf.CC_AU_ALLOYED).astype(np.uint8)
        while True:
            cond, elec, pix, kind = (np.empty(self._face_capacity, dtype=np.int64) for _ in range(4))
            n = contact_faces(run.lattice, run.site_class, run.au_column, alloyed, p.nx, p.ny, p.nz, cond, elec, pix,
                              kind, *band)
            if n <= self._face_capacity:
                return n, cond[:n], elec[:n], pix[:n], kind[:n]
            self._face_capacity = int(n * self.FACE_ROOM) + 64

    def _field_solve(self, faces, current_a, voltage_v, guess):
        p = self.p
        if voltage_v is None:
            return field.solve_galvanostatic(p.plane, faces, current_a, p.u_ce_v, p.temperature_k,
                                             rtol=p.solver_rtol, guess=guess, voltage_bound_v=p.voltage_bound_v)
        return field.solve_potentiostatic(p.plane, faces, voltage_v, p.u_ce_v, p.temperature_k,
                                          rtol=p.solver_rtol, guess=guess)

    def _store_solution(self, run, sol, faces, face_kind, current_a, voltage_v) -> bool:
        """V, φ, the pixel currents and what the Na faces carry; returns whether the faces carry I."""
        p = self.p
        carried = bool(getattr(sol, "carried", True)) and voltage_v is None
        if voltage_v is None and carried:
            self.set_voltage(run, sol.voltage_v)
        run.phi[:] = np.asarray(sol.phi_v).ravel()
        run.pixel_current[:] = np.asarray(sol.pixel_current_density_a_cm2).ravel()
        # E8's v3 law fills flaws from what the pixel's Na faces carry, not from the collector's own (Au,
        # bare) faces, which cover their flaws' mouths; the slot law fills them from every face at Na's
        # activity, so it needs the share of the faces still alloying (``Losses.plating_pixels``).
        run.na_current[:] = self._face_current(sol, faces, face_kind == FACE_NA)
        run.alloy_current[:] = self._face_current(sol, faces, face_kind == FACE_AU)
        i_far = float(run.pixel_current.sum() * p.face_area_cm2)
        run.i_far_a = i_far if (voltage_v is not None or carried) else 0.0
        run.carried = 1.0 if carried else 0.0
        if carried and current_a != 0:
            run.r_int_ohm_cm2 = field.interfacial_resistance_ohm_cm2(sol, p.plane, current_a, p.u_ce_v)
        elif voltage_v is None:
            run.r_int_ohm_cm2 = math.nan  # at rest, or the faces cannot carry the current: undefined
        run.vt_v = run.voltage_v + p.u_ce_v
        return carried

    def _rebuild_trees(self, run, face_band, move_band, table) -> None:
        """Every event class's propensities at the frozen fields, and the sum trees over them; the
        faradaic ones from the solve's ``FaceTable`` (the faces of ``face_band`` at this lattice, classes
        and stresses: their kinetics are not computed again).

        Only the leaves of the bands are written, and only the few leaves outside them that are not
        zero (found from the trees themselves) are cleared; then only the nodes above those leaves are
        recomputed. The trees come out with the bits of writing every leaf and rebuilding every node
        (each node is an exact function of its leaves), at the cost of the bands rather than the lattice."""
        p = self.p
        offsets = run.state.tree_offsets
        bands_of_trees = (face_band, face_band, face_band, move_band)
        spans = [tree_clear_outside(tree, offsets, *band) for tree, band in zip(run.trees, bands_of_trees)]
        for tree, band in zip(run.trees, bands_of_trees):
            tree_zero_leaves(tree, offsets, *band)  # the fills below write the band's non-zero leaves only
        kf.fill_face_weights(table.conductor, table.electrolyte, table.n, table.kinetic_kind, table.j0_a_cm2, table.u_v,
                             table.area_factor, run.phi, run.kinetics, p.n_cols, run.plate_tree, run.alloy_tree,
                             run.nucleate_tree)
        km.fill_move_band(run.move_tree, run.lattice, run.au_column, run.col_support, run.cc_bottom,
                          int(run.pore_depth_voxels), p.nx, p.ny, p.nz, p.eps, run.moves, *move_band)
        for tree, span in zip(run.trees, spans):
            tree_build_range(tree, offsets, *span)

    def solve_held(self, run, voltage_v: float) -> None:
        """A hold's solve: V jumps to the held value (the double layer on the contact area charging at
        once, ΔQ = −C_dl A_c ΔV), then the potentiostatic solve; the cell current is what the faces carry."""
        v_before = run.voltage_v
        self.set_voltage(run, voltage_v)
        self.solve(run, 0.0, voltage_v=voltage_v)
        if v_before != voltage_v:
            area_c = run.faces * self.p.face_area_cm2
            dq = -self.p.c_dl_f_cm2 * area_c * (voltage_v - v_before)
            run.dl_charge_c += dq
            self.pass_charge(run, dq)
        run.current_a = run.i_far_a

    def _collector_can_settle(self, run) -> bool:
        """False once a whole layer's volume has flowed into gaps (pending ≤ −nx·ny) and the collector
        cannot descend (it rests on the electrolyte somewhere): loaded flow then has no volume to
        give, and stops until the lattice changes."""
        p = self.p
        if run.pending_voxels > -p.n_cols:
            return True
        lat = run.lattice.reshape(p.nz, p.n_cols)
        b = run.cc_bottom
        if (b <= 0).any():
            return False
        under = lat[b - 1, np.arange(p.n_cols)]
        return bool(((under == NA) | (under == GAP)).all())

    def _warm_guess(self, run):
        """The last solve's V and pixel currents as a warm start, rebuilt from the state (so a run
        resumed from a checkpoint warm-starts exactly as the uninterrupted run did)."""
        p = self.p
        if not run.carried or not run.pixel_current.any():
            return None
        return field.Solution(float(run.voltage_v), np.empty(0), run.pixel_current.reshape(p.ny, p.nx),
                              run.phi.reshape(p.ny, p.nx), 0, 0, True, True, float(run.i_far_a))

    # -- batches -----------------------------------------------------------------------------------
    def batch(self, run, i_far: float, t_end: float) -> int:
        """Events at the frozen fields until ``t_end`` or a stop; the kernel's stop code."""
        t_start = time.perf_counter()
        try:
            at = self._gap_free_at
            gap_free = at is not None and at[0] is run.lattice and at[1] == run.count("events")
            return kloop.run_batch(self._cell(run), run.state.rng, abs(i_far), self.p.q_v_c, self.p.c_au,
                                   self.p.events_per_batch, t_end, self.p.capacity_drift_factor, gap_free)
        finally:
            self.timing["kernel_s"] += time.perf_counter() - t_start
            self.timing["batches"] += 1

    def _cell(self, run):
        """The kernels' named tuple of the run's arrays, with the scratch kept across batches."""
        p, state = self.p, run.state
        if self._scratch is None or self._scratch[0].size != state.n_sites:
            self._scratch = (np.empty(state.n_sites, dtype=np.int64), np.zeros(state.n_sites, dtype=np.uint8),
                             np.zeros(state.n_sites, dtype=np.uint8), np.zeros(state.tree.size, dtype=np.uint8),
                             np.empty(N_NEIGHBORS, dtype=np.int64), np.empty(N_NEIGHBORS, dtype=np.int64),
                             np.empty(STENCIL_SIZE, dtype=np.int64), np.empty(max(STENCIL_SIZE, p.nz), dtype=np.int64),
                             np.empty(p.nz, dtype=np.int64), np.empty((4, max(STENCIL_SIZE, p.nz)), dtype=np.int64),
                             np.zeros(state.n_sites, dtype=np.uint16),
                             np.zeros(N_SEARCH, dtype=np.int64), np.ones(p.n_cols, dtype=np.uint8))
        return ka.Cell(run.lattice, run.site_class, run.na_contact, run.col_state, run.col_support, run.cc_bottom, run.au_column,
                       run.phi, run.kinetics, p.eps, run.moves, *run.trees, state.tree_offsets, state.clock,
                       state.counters, run.tally, run.limits, run.state_counts, *self._scratch,
                       run.deposit_stress_mpa, run.insertion_target, run.side_face_weight, p.nx, p.ny, p.nz)

    def batch_end(self, run, t_end: float) -> float:
        """Where a batch must stop: ``t_end``, or earlier when the cell would short (E8: wherever Na
        plates, whatever the cell current). The flaws' outlook to ``t_end`` is kept for the booking."""
        t_short, self._outlook = self.losses.outlook(run, t_end)
        return min(t_end, t_short)

    def book_batch(self, run, t0: float, charge_c: float) -> bool:
        """After a batch that began at ``t0``: the charge it passed (C), and the SEI and flaws over its
        time; True if a flaw cracked (the cell has shorted). A batch that ran from the outlook's ``t0`` to
        its ``t_end`` (the fields stay frozen in a batch) books the flaws from it."""
        outlook, self._outlook = self._outlook, None
        if outlook is not None and not (outlook.t0 == t0 and outlook.t_end == run.time_s):
            outlook = None
        self.pass_charge(run, charge_c)
        self.losses.grow_sei(run, run.time_s - t0)
        return self._flaws(run, run.time_s - t0, outlook)

    def _flaws(self, run, dt: float, outlook=None) -> bool:
        if self.losses.advance_flaws(run, dt, outlook):
            self.short(run)
            return True
        return False

    def short(self, run) -> None:
        """A filament crosses the electrolyte: record it, the voltage collapses, the run ends."""
        run.shorted = 1.0
        run.short_time_s = run.time_s
        run.short_charge_mah_cm2 = run.charge_c / self.p.area_cm2 / 3.6
        run.ccd_ma_cm2 = self.steps[int(run.step)].ccd_ma_cm2
        run.ccd_failure = 1.0
        self.set_voltage(run, 0.0)
        run.ended = 1.0

    def strip_not_carried(self, run, ccd_ma_cm2: float) -> None:
        """A ccd level's strip the interface cannot carry (voids have cut the contact and the voltage
        has reached its bound): the run ends there, its CCD that level's current density."""
        run.ccd_ma_cm2 = ccd_ma_cm2
        run.ccd_failure = 2.0
        run.ended = 1.0

    def follow_stop(self, run, code: int, after_fresh_solve: bool, t_stop: float) -> None:
        """What a batch's stop code calls for: an error (no room), time passing (nothing could happen
        even just after a solve), or a new solve."""
        if code == kloop.STOP_FULL:
            raise KmcError(f"lattice.nz = {self.p.nz} is too small: the plated Na has filled the domain "
                           f"(at {run.charge_c / self.p.area_cm2 / 3.6:.3g} mAh/cm²)")
        if code == STOP_NO_EVENTS and after_fresh_solve:
            run.state.clock[0] = t_stop
        elif code in (kloop.STOP_RESOLVE, kloop.STOP_COLLAPSE, STOP_NO_EVENTS):
            run.need_solve = 1.0

    def double_layer_step(self, run, current: float, t_end: float) -> int:
        """One double-layer step: V moves by at most resolve_dv; nucleation acts at the frozen V."""
        p = self.p
        v = run.voltage_v
        self.solve(run, current, voltage_v=v)
        # The faces carry what they can in the current's direction (none against it).
        i_far = math.copysign(min(abs(current), max(0.0, run.i_far_a * math.copysign(1.0, current))), current)
        area_c = max(1.0, run.faces) * p.face_area_cm2
        dvdt = -(current - i_far) / (p.c_dl_f_cm2 * area_c)
        dt = min(t_end - run.time_s, p.resolve_dv_v / abs(dvdt)) if dvdt != 0 else t_end - run.time_s
        t0 = run.time_s
        t_stop = min(t0 + dt, self.losses.short_time_s(run, t0 + dt))  # E8 at this V, as in a batch
        run.stop_on_nucleus = 1.0
        nuclei0 = run.count("nucleate")
        code = self.batch(run, i_far, t_stop)
        if code == STOP_NO_EVENTS:  # nothing can happen at this V (zero hazard): the step still passes
            run.state.clock[0] = t_stop
        elapsed = run.time_s - t0
        # A nucleus's voxel needs a q_v the double layer does not hold (C_dl A_c ΔV ~ 1e-4 q_v): it is
        # owed, and the next faradaic events of the current pay it (kmc.kernels.battery_loop).
        run.nucleus_debt_voxels += run.count("nucleate") - nuclei0
        dq_dl = (current - i_far) * elapsed
        run.dl_charge_c += dq_dl
        self.pass_charge(run, current * elapsed)
        self.losses.grow_sei(run, elapsed)
        run.need_solve = 1.0
        if self._flaws(run, elapsed):  # at the step's V, as it was predicted (the voltage collapses)
            return self.STOP_SHORT
        self.set_voltage(run, v - dq_dl / (p.c_dl_f_cm2 * area_c))
        return code if code != STOP_TIME else kloop.STOP_RESOLVE

    # -- charge and voltage --------------------------------------------------------------------------
    @staticmethod
    def pass_charge(run, dq: float) -> None:
        """Charge dq (C, reduction positive) through the external circuit."""
        run.charge_c += dq
        if dq > 0:
            run.cycle_plated_c += dq
        else:
            run.cycle_stripped_c -= dq

    @staticmethod
    def set_voltage(run, v: float) -> None:
        run.voltage_v = v
        run.voltage_min_v = min(run.voltage_min_v, v)
        run.voltage_max_v = max(run.voltage_max_v, v)


def support_of_columns(lattice, p, thinned: bool):
    """(kind of every column, CC-contact columns, Na-support columns): ``kmc.kernels.interface.column_support``."""
    support = np.empty(p.n_cols, dtype=np.int64)
    n_cc, n_na = column_support(lattice, p.nx, p.ny, p.nz, support, thinned)
    return support, n_cc, n_na


def bands(lattice, p):
    """Site ranges of the layers that can hold contact faces (conductors at most one layer above
    the highest electrolyte voxel) and Na moves (Na within one layer of a gap)."""
    nxy = p.n_cols
    has_el, has_gap = np.empty(p.nz, dtype=np.uint8), np.empty(p.nz, dtype=np.uint8)
    layer_contents(lattice, nxy, p.nz, has_el, has_gap)  # one pass, no lattice-sized masks
    el = np.flatnonzero(has_el)
    faces = (0, min(p.nz, int(el[-1]) + 2) * nxy if el.size else 0)
    gaps = np.flatnonzero(has_gap)
    moves = (max(0, int(gaps[0]) - 1) * nxy, min(p.nz, int(gaps[-1]) + 2) * nxy) if gaps.size else (0, 0)
    return faces, moves
