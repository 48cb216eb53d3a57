"""What the metal loses between batches: the interphase (E7) and the cell's flaws (E8).

Both act on the frozen fields of the last solve, over the time a batch took. E7 grows an interphase
on every column's Na faces; E8 follows the cell's flaw population (``kmc.flaws``) and decides when a
filament shorts the cell. What each takes from the metal is first a per-column debt (far below a
voxel per column), paid in whole voxels from the lattice at the next solve (``take_from_metal``).
Under E8's slot law flaw Na strips first (``Losses.strip_flaws``): what the flaws give back is a debt
below zero, returned to the metal in whole voxels at the next solve (``give_to_metal``).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from kmc.flaws import covered_radius_um, deepest_sealed_bin, slot_fill_charge_c_cm2, slot_full_depth_um
from kmc.kernels import debt as kdebt
from kmc.kernels import flaws as kfl
from kmc.kernels import interphase as kint
from kmc.kernels.cell import GAP, NA, SEI


class Losses:
    """E7 and E8 of one battery model (its ``Params``)."""

    def __init__(self, params):
        self.p = params

    # -- E7: the interphase ----------------------------------------------------------------------
    def grow_sei(self, run, dt: float) -> None:
        """E7 over dt (s) on the Na faces of the last solve: per column, the interphase thickness δ
        (nm of Na consumed per face) grows by dδ/dt = k/(1 + δ/δ0) — integrated exactly:
        (δ0 + δ)² grows by 2 δ0 k dt — or by k dt when continuous; the Na it consumes (faces × Δδ)
        becomes debt, taken from the lattice at the next solve."""
        p = self.p
        if dt <= 0 or p.sei_nm_per_s <= 0:
            return
        # one compiled pass over the columns (``kmc.kernels.interphase``); none with Na faces: nothing grows
        if not kint.grow_sei_columns(run.na_faces_col, run.sei_nm, run.sei_debt, p.sei_nm_per_s * dt, p.sei_limit_nm,
                                     p.sei_continuous, p.voxel_nm):
            return
        owed = np.floor(run.sei_debt.sum())
        if owed >= 1:
            if not p.sei_continuous and run.sealed and run.pending_voxels >= owed:
                # A sealed layer's pending volume pays, as for the alloy: the layer is thinner, evenly.
                run.pending_voxels -= owed
                run.sei_paid_voxels += owed
                clear_debt(run.sei_debt, owed)
            else:
                run.need_solve = 1.0  # the next solve takes it from the metal

    def pay_sei_debt(self, run, surface=None) -> None:
        """Take whole voxels of E7 debt from the metal, so the Na the interphase consumed is not left to
        strip. A continuous interphase (Na3PS4 → Na3P, Na2S) grows µm thick: the voxel becomes SEI,
        the reduced electrolyte growing into the metal. A self-limiting one stays nm thin (``sei_nm``,
        per column), far below a voxel: the voxel becomes a gap — the metal it consumed is gone, and
        loaded Na flows in as into any interface void — rather than a 0.5 µm block of interphase.

        The interphase grows on the faces of the last solve for the time a batch took, so near the end of
        a strip it can owe more than the metal still holds; it cannot consume Na that is not there, and
        what the metal cannot pay is not owed (``cap_to_metal``). ``surface``: a ``MetalSurface`` kept
        for the payments of the solve."""
        cap_to_metal(run, run.sei_debt)
        run.sei_paid_voxels += take_from_metal(run, self.p, run.sei_debt, SEI if self.p.sei_continuous else GAP,
                                               surface)

    # -- E8: flaws and shorts ----------------------------------------------------------------------
    def plating_pixels(self, run):
        """The pixels whose flaws fill now, the rate their fill clock advances, their |η| and j, and the
        stress at their flaws' mouths that the extrusion pressure adds to (PHYSICS E8 v4: the deposit's σ
        under ``model.insertion = "least_stress"``, P off deposits; 0 under the v3 pressure, the
        overpotential's or the extrusion's alone).

        v3 law (``model.flaw_law = "metal_front"``): the pixels whose Na faces plate (their current j > 0),
        the clock the depth Na has reached, advancing at j V_m/F (µm/s). Slot law: while the cell plates,
        the pixels whose faces at Na's activity carry cathodic current (j: the pixel's Na, alloyed-Au and
        nucleated-collector faces; not its faces of Au still alloying) below Na's potential (η0 = V + U_CE −
        φ < 0); the clock the charge passed at the mouth, advancing at j (C/cm² per s): ``kmc.flaws``. A
        face of Au still alloying fills no flaw at any η0: the Na it reduces goes into the alloy, and Na
        metal in the slot would touch that Au and alloy with it — Na metal can sit in the flaw only once
        the Au at its mouth is Na2Au (or where Na covers it); above Na's potential (η0 > 0) no face
        presses Na metal. No pixel fills or cracks during a strip or a rest, and nothing of a pressure is
        kept across them: the pressure is the present state's. Last, per pixel, the deepest bin whose flaws
        hold pressure: all of them, or under ``model.flaw_mouth = "trace"`` those no deeper than the plating
        patch's radius about the pixel (``kmc.flaws.covered_radius_um``)."""
        p = self.p
        eta0 = run.voltage_v + p.u_ce_v - run.phi  # per pixel, the overpotential without U_f
        if p.slot_law:
            na_activity = run.pixel_current - run.alloy_current
            if run.current_a > 0:
                cols = np.flatnonzero((na_activity > 0) & (eta0 < 0))
            else:
                cols = np.empty(0, dtype=np.int64)
            j = na_activity[cols]
            rate = j
        else:
            cols = np.flatnonzero(run.na_current > 0)
            j = run.na_current[cols]
            rate = j * p.fill_um_per_c_cm2
        eta = np.abs(eta0[cols])
        if p.least_stress:
            sigma = run.deposit_stress_mpa[cols]
            mouth = np.where(np.isfinite(sigma), sigma, p.pressure_mpa)
        else:
            mouth = np.zeros(cols.size)
        if p.flaw_trace:  # flaws deeper than the plating patch around their pixel vent (kmc.flaws)
            plating = np.zeros(p.n_cols, dtype=bool)
            plating[cols] = True
            radius = covered_radius_um(plating.reshape(p.ny, p.nx), p.voxel_um).ravel()[cols]
            sealed = deepest_sealed_bin(p.depth_grid, radius)
        else:
            sealed = np.full(cols.size, p.depth_grid.n_bins - 1, dtype=np.int64)
        return cols, rate, eta, j, mouth, sealed

    def crack(self, run, dt: float, commit: bool, plating=None, outlook=None, cracking=None) -> tuple[float, int]:
        """Rise of Σ_i P_i (kmc.flaws) over ``dt`` at the frozen fields, and how many pixels crack; written to
        the state if ``commit`` (under the slot law, with each pixel's full depth d_i = Q⁻¹(Q_i) in
        ``flaw_front_um``). ``plating``: ``plating_pixels`` of these fields, when the caller has it
        already; ``cracking``: room for the positions of the pixels that crack. ``outlook``: a
        ``CrackOutlook`` of this very advance (same fields, state and ``dt``), whose plating pixels and
        cracking pixels are used instead of finding them again."""
        p = self.p
        if outlook is not None:
            plating, cracking, n_known = outlook.plating, outlook.cracking, outlook.n_cracking
        else:
            n_known = -1
            if plating is None:
                plating = self.plating_pixels(run)
            if cracking is None:
                cracking = np.empty(0, dtype=np.int64)
        cols, rate, eta, j, mouth, sealed = plating
        if cols.size == 0:
            return 0.0, 0
        g = p.depth_grid
        block = run.flaw_block
        clock = run.flaw_charge_c_cm2 if p.slot_law else run.flaw_front_um
        # PHYSICS E8 v4 (deposit stress): p = min(P + F|η0|/V_m, σ_mouth + p_flow); v3: min(F|η|/V_m, p_flow).
        base_eta = p.pressure_mpa if p.least_stress else 0.0
        rise, n_cracking = kfl.crack_population(cols, rate, dt, eta, j, p.mpa_per_volt, p.crack_need_mpa,
                                                p.crack_flow_mpa, 1.0 / p.creep_n, g.weights, g.first_um, g.log_ratio,
                                                clock, run.flaw_cracked, block[:p.n_cols], block[p.n_cols:], commit,
                                                base_eta, mouth, p.flaw_fill_c_cm2, sealed, cracking, n_known)
        if commit and p.slot_law:
            run.flaw_front_um[cols] = slot_full_depth_um(run.flaw_charge_c_cm2[cols], p.slot_opening_per_sqrt_um,
                                                         p.molar_volume_cm3_mol)
        return rise, n_cracking

    def expected_cracks(self, run, rise: float = 0.0) -> float:
        """Λ: the expected number of cracked flaws in the cell (n_flaw A_cell ⟨P_i⟩)."""
        return self.p.cell_flaws * (run.flaw_hazard + rise) / self.p.n_cols

    def short_time_s(self, run, t_end: float) -> float:
        """The time, up to ``t_end`` at the frozen fields, at which Λ reaches the cell's draw (inf if it
        does not): ``outlook``'s first."""
        return self.outlook(run, t_end)[0]

    def outlook(self, run, t_end: float):
        """(t, outlook): the time, up to ``t_end`` at the frozen fields, at which Λ reaches the cell's draw
        (inf if it does not), and when it does not, the ``CrackOutlook`` of the advance to ``t_end`` (else
        None), which a batch that ran to ``t_end`` books with (``advance_flaws``). Bisected on the batch's
        stop time itself, with the rise evaluated at ``t − t0``, the very expression the batch books
        afterwards: so stopping there shorts (at a large clock, t0 + dt would not round-trip to dt). A cell
        without flaws goes through the same arithmetic: its Λ stays 0, below any Exp(1) draw."""
        t0 = run.time_s
        plating = self.plating_pixels(run)  # frozen over the batch: once, not at every bisection step

        def reached(t):
            return self.expected_cracks(run, self.crack(run, t - t0, False, plating)[0]) >= run.short_draw

        cracking = np.empty(plating[0].size, dtype=np.int64)
        rise, n_cracking = self.crack(run, t_end - t0, False, plating, cracking=cracking)
        if self.expected_cracks(run, rise) < run.short_draw:  # not reached(t_end)
            return math.inf, CrackOutlook(t0, t_end, plating, cracking, n_cracking)
        if reached(t0):
            return t0, None
        lo, hi = t0, t_end  # not reached at lo, reached at hi: Λ only grows with time
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if mid <= lo or mid >= hi:
                break  # adjacent floats
            if reached(mid):
                hi = mid
            else:
                lo = mid
        return hi, None

    def flaw_na_voxels(self, run):
        """Expected Na in each pixel's flaws (voxels): n_flaw a² ∫₀^{d_i} (1 − F) dc / a, d_i the depth of the
        deepest full flaw (v3: the front; slot law: Q⁻¹(Q_i)). Each flaw is booked as a column of the
        pixel's cross-section a² filled to min(c, d_i) — v3's volume, kept under the slot law (not the
        slot's own δ_c·c per unit length of its mouth); a slot deeper than d_i, partly filled, counts as
        filled to d_i. Under the slot law it falls when the pixel strips (``strip_flaws``)."""
        p = self.p
        return p.flaws_per_pixel * p.depth_grid.mean_fill_um(run.flaw_front_um) / p.voxel_um

    def strip_flaws(self, run, dt: float) -> bool:
        """Slot law (PHYSICS v4 E6, E8): flaw Na strips first where it is connected — pressed, its chemical
        potential is above the layer's. While the cell strips, a pixel whose mouth carries anodic current
        (only faces of Na connected to the collector strip) empties its flaws first with the charge it
        strips over ``dt`` at the frozen fields, |j| dt a²/q_v voxels, and its layer gives only the rest:
        the flaws' expected Na falls by that much (to 0 at most), the depth of the deepest full flaw falls
        to the one holding what is left (``ParetoDepthGrid.depth_of_mean_fill_um``), and the charge at the
        mouth falls back along the fill law to Q(d): a later plating refills them from there.

        The events of the batch took that volume from the layer's interface voxels; the flaws' Na goes back
        to the metal as a debt below zero, returned in whole voxels at the next solve into the interface
        voids the strip left (``sync_flaw_debt``, ``give_to_metal``): so over a solve interval the layer
        loses only what the flaws could not give. Done per batch on the pixels' frozen currents, as the fill
        is (no per-event work in the event loop, whose strip picks faces by their Butler–Volmer share):
        the return is exact in volume and off by the batch's Poisson noise in place. A pixel with no Na at
        its mouth strips nothing, so flaws under dead or collector-capped Na keep theirs. Returns whether it
        emptied any."""
        p = self.p
        if not p.slot_law or dt <= 0 or run.current_a >= 0:
            return False
        cols = np.flatnonzero((run.pixel_current < 0) & (run.flaw_front_um > 0))
        if cols.size == 0:
            return False
        stripped_voxels = -run.pixel_current[cols] * dt * p.face_area_cm2 / p.q_v_c
        g = p.depth_grid
        held_um = g.mean_fill_um(run.flaw_front_um[cols])  # per flaw
        if p.flaws_per_pixel > 0:
            left_um = np.maximum(held_um - stripped_voxels * p.voxel_um / p.flaws_per_pixel, 0.0)
        else:  # no flaw holds anything: the clock empties at the first strip
            left_um = np.zeros(cols.size)
        depth = g.depth_of_mean_fill_um(left_um)
        run.flaw_front_um[cols] = depth
        charge = np.zeros(cols.size)
        on = depth > 0
        charge[on] = slot_fill_charge_c_cm2(depth[on], p.slot_opening_per_sqrt_um * np.sqrt(depth[on]),
                                            p.molar_volume_cm3_mol)
        run.flaw_charge_c_cm2[cols] = charge
        if float((run.flaw_fill - self.flaw_na_voxels(run)).sum() - run.flaw_debt.sum()) >= 1.0:
            run.need_solve = 1.0  # a voxel or more to give back: the next solve returns it to the metal
        return True

    def sync_flaw_debt(self, run) -> bool:
        """What the flaws took since the last sync becomes a debt of the metal (paid at the next solve);
        what they gave back (slot law: ``strip_flaws``) a debt below zero, returned to the metal here in
        whole voxels once the columns are owed one in all (``give_to_metal``). Returns whether it gave
        any back (the lattice may have changed)."""
        now = self.flaw_na_voxels(run)
        run.flaw_debt[:] += now - run.flaw_fill
        run.flaw_fill[:] = now
        given = give_to_metal(run, self.p, run.flaw_debt) if self.p.slot_law else 0
        run.flaw_paid_voxels -= given
        return given > 0

    def advance_flaws(self, run, dt: float, outlook=None) -> bool:
        """The flaw population over a batch of ``dt`` at the frozen fields; True if the cell has shorted
        (the caller records the short). Under the slot law a strip empties the flaws first (``strip_flaws``).
        ``outlook``: the ``CrackOutlook`` of this batch's advance (``outlook``), when the batch ran to its
        ``t_end`` from its ``t0`` at the fields it was made at."""
        if self.strip_flaws(run, dt):
            outlook = None  # the flaws' clocks moved since it was made
        run.flaw_hazard += self.crack(run, dt, True, outlook=outlook)[0]
        return self.expected_cracks(run) >= run.short_draw


def cap_to_metal(run, debt) -> None:
    """Clear the part of a per-column debt (voxels of Na owed by the metal) beyond the metal there is.
    While loaded flow has lent the layer's volume (``pending_voxels`` < 0: Na that flowed into gaps, to
    be taken from right under the collector when it descends), the lattice's Na voxels overstate the
    metal by that much: the metal is their count plus the pending volume. Paying past it would leave the
    layer owing Na it never had (a metal of negative volume once the collector has come down). The
    count is a pass over the lattice, made only while a debt of a voxel or more meets lent volume."""
    owed = debt.sum()
    if owed < 1.0 or run.pending_voxels >= 0.0:
        return
    metal = float(np.count_nonzero(run.lattice == NA)) + run.pending_voxels
    if owed > metal:
        clear_debt(debt, owed - max(metal, 0.0))


class CrackOutlook(NamedTuple):
    """What a batch's flaws do if it runs from ``t0`` to ``t_end`` at the frozen fields without a short
    (``Losses.outlook``): the plating pixels (``plating_pixels``), and the positions among them of the
    ones that crack (``cracking[:n_cracking]``). Booking that very advance (``advance_flaws``) reads them
    instead of finding them again (for every pixel, its deepest full bin and its critical bin)."""

    t0: float
    t_end: float
    plating: tuple
    cracking: np.ndarray
    n_cracking: int


class MetalSurface:
    """The Na voxels touching the electrolyte (``debt.touching_electrolyte``: a flag per site of the
    layers, a count per column), found when a payment first wants them and kept through a solve's
    payments: a payment keeps them exact as it takes voxels (``debt.pay_voxels``), so E8's payment
    after E7's in the same solve reads what E7's left instead of a pass over the lattice's layers
    again. Whoever changes the lattice otherwise in between calls ``forget``."""

    def __init__(self):
        self._arrays = None

    def arrays(self, run, p):
        """(touching, count) of ``run.lattice``."""
        if self._arrays is None:
            touching = np.empty((p.nz, p.n_cols), dtype=np.uint8)
            count = np.empty(p.n_cols, dtype=np.int64)
            kdebt.touching_electrolyte(run.lattice, p.nx, p.ny, p.nz, touching, count)
            self._arrays = touching, count
        return self._arrays

    def forget(self) -> None:
        self._arrays = None


def take_from_metal(run, p, debt, becomes, surface=None) -> int:
    """Pay whole voxels of a per-column debt (voxels of Na owed by the metal) from the lattice;
    returns how many. The debt is summed over columns (it may be far below a voxel per column);
    each whole voxel takes the Na voxel touching the electrolyte lowest in the column owing most
    (it ``becomes`` GAP or SEI), and clears that much debt from the most indebted columns first
    (``kmc.kernels.debt``). ``surface``: the ``MetalSurface`` of the lattice as it is, when the caller
    keeps one across payments."""
    if debt.sum() < 1.0:
        return 0
    touching, count = (MetalSurface() if surface is None else surface).arrays(run, p)
    # The payment's queue of columns (``kmc.kernels.debt``): sorted once, not once per voxel.
    order = kdebt.order_by_debt(debt)
    heap = np.empty(p.n_cols, dtype=np.int64)
    sizes = np.zeros(2, dtype=np.int64)
    # All but the last voxels in one kernel call: while the debt is two voxels or more above what has been
    # paid, NumPy's sum is surely ≥ 1 (each voxel clears 1.0, and the sum's rounding is ~1e-16 of it),
    # so the loop below would not have stopped there. The last ones keep its test exactly.
    total = float(debt.sum())
    paid = kdebt.pay_voxels(run.lattice, p.nx, p.ny, p.nz, touching, count, debt, order, heap, sizes, becomes,
                            max(0, math.floor(total) - 2))
    while debt.sum() >= 1.0:  # NumPy's sum, as before: when to stop is part of the trajectory
        if not kdebt.pay_one_voxel(run.lattice, p.nx, p.ny, p.nz, touching, count, debt, order, heap, sizes,
                                   becomes):
            break  # no metal touches the electrolyte: the debt waits
        paid += 1
    if paid:
        run.sealed = 0.0
    return paid


def give_to_metal(run, p, debt) -> int:
    """Return whole voxels of Na the metal is owed (a per-column debt below zero) to the lattice; returns
    how many. While the columns are owed a voxel in all, the column owed most that has one gets Na in its
    lowest interface void beside connected Na (``kmc.kernels.debt.give_one_voxel``: where a strip left a
    void), and that much is cleared from the columns owed most. With no such void (a sealed layer strips
    its pending volume first and leaves none; loaded flow may have refilled them) the rest joins the
    pending volume: the loaded layer thickens evenly, as it does by plating while sealed."""
    if -debt.sum() < 1.0:
        return 0
    owed = -debt
    gap = np.empty((p.nz, p.n_cols), dtype=np.uint8)
    count = np.empty(p.n_cols, dtype=np.int64)
    kdebt.returnable_gaps(run.lattice, run.site_class, p.nx, p.ny, p.nz, gap, count)
    given = 0
    while owed.sum() >= 1.0:
        if not kdebt.give_one_voxel(run.lattice, run.site_class, p.nx, p.ny, p.nz, gap, count, owed):
            pending = math.floor(owed.sum())  # no interface void beside connected Na left
            run.pending_voxels += pending
            clear_debt(owed, pending)
            given += pending
            break
        given += 1
    debt[:] = -owed
    if given:
        run.sealed = 0.0
    return given


def clear_debt(debt, amount) -> None:
    """Clear ``amount`` voxels of a per-column debt, from the most indebted columns first."""
    kdebt.clear_debt_in_order(debt, kdebt.order_by_debt(debt), float(amount))
