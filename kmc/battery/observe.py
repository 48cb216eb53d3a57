"""What a battery run shows: the store layout, the recount and bookkeeping check, observables, records.

Everything here is derived from the State: the inventories are recounted from the lattice (never
read back from the counters the kernels keep), the charge bookkeeping identity is checked against
that recount at every sample (a violation fails the run), and what a sample hands to the store
beyond its observables (closed cycles, the short, maps, snapshots) is marked as handed over in the
State itself, so a resumed run reports exactly what the uninterrupted one would.
"""
from __future__ import annotations

import math

import numpy as np

from kmc.battery import alloy
from kmc.battery.classes import ClusterClasses, parent_dtype
from kmc.battery.driver import bands, support_of_columns
from kmc.kernels import faradaic as kf
from kmc.kernels.cell import CC, FLAG_MEANINGS, FLAG_VALUES, NA, SE, SEI
from kmc.kernels.clusters import (
    CLUSTER_ACTIVE,
    CLUSTER_DEAD,
    CLUSTER_TRAPPED,
    count_trapped_in_pores,
    label_na_clusters,
)
from kmc.kernels.heights import na_height_um
from kmc.kernels.interface import COLUMN_CC_CONTACT, COLUMN_NA_SUPPORT, electrolyte_face_counts

#: Per-sample variables: name, dtype, units, long_name.
SAMPLE_VARS = (
    ("time", "float64", "s", "simulated time"),
    ("charge", "float64", "mA h cm-2", "charge passed (reduction positive)"),
    ("current_density", "float64", "mA cm-2", "applied current density (reduction positive)"),
    ("voltage", "float64", "V", "cell voltage, collector vs counter electrode"),
    ("voltage_min", "float64", "V", "lowest cell voltage since the previous sample"),
    ("voltage_max", "float64", "V", "highest cell voltage since the previous sample"),
    ("contact_fraction", "float64", "1", "conductor-electrolyte contact area / electrolyte surface area"),
    ("na_contact_fraction", "float64", "1", "Na-electrolyte contact area / electrolyte surface area"),
    ("load_fraction", "float64", "1", "fraction of columns bearing load (CC-SE contacts and Na supports)"),
    ("void_fraction", "float64", "1", "electrolyte surface facing a gap / electrolyte surface area"),
    ("nucleation_density", "float64", "cm-2",
     "Na clusters connected to the collector and touching the electrolyte (nuclei) per area"),
    ("thickness_mean", "float64", "um", "mean Na thickness"),
    ("thickness_cv", "float64", "1", "coefficient of variation of the Na thickness over columns"),
    ("max_current_density", "float64", "mA cm-2", "largest local (pixel) current density, in magnitude"),
    ("max_deposit_stress", "float64", "MPa",
     "largest stress in a Na deposit at the last field solve (model.insertion = least_stress; else NaN)"),
    ("interfacial_resistance", "float64", "ohm cm2", "interfacial resistance (|V+U_CE| - |j| L/sigma)/|j|"),
    ("plated", "float64", "mA h cm-2", "charge of Na plated (metal and alloy)"),
    ("stripped", "float64", "mA h cm-2", "charge of Na stripped"),
    ("dead_na", "float64", "mA h cm-2", "Na not connected to the collector"),
    ("trapped_na", "float64", "mA h cm-2",
     "Na in collector pores: connected to the collector, no electrolyte contact, above its lower face"),
    ("stranded_na", "float64", "mA h cm-2",
     "Na stranded in gaps: connected to the collector, no electrolyte contact, below its lower face"),
    ("unloaded_na", "float64", "mA h cm-2",
     "Na connected to the collector and touching the electrolyte only at faces of contact quality 0 (reached by "
     "flow, unloaded): it cannot strip until pressed"),
    ("alloy_na", "float64", "mA h cm-2", "Na held in the Au alloy"),
    ("sei_na", "float64", "mA h cm-2", "Na consumed by the solid-electrolyte interphase"),
    ("flaw_na", "float64", "mA h cm-2", "Na pressed into surface flaws of the electrolyte"),
    ("filament_depth", "float64", "um", "depth Na has reached in the surface flaws (deepest over pixels)"),
    ("short_probability", "float64", "1",
     "probability that the cell has shorted by now: 1 - exp(-expected cracked flaws over the cell area)"),
)


class Observer:
    """Layout, recount, bookkeeping and observables of one battery model."""

    def __init__(self, params, steps, losses, sampling, classes=None):
        self.p = params
        # The clusters' classification with the lattice it came from (``kmc.battery.classes``).
        self.classes = ClusterClasses() if classes is None else classes
        self.steps = steps
        self.losses = losses
        self.n_cycles = sum(1 for s in steps if s.ends_cycle)
        self.n_samples, self.map_every, self.snapshot_every = sampling
        self.n_frames = -(-self.n_samples // self.map_every) if self.map_every else 0
        self.n_snaps = -(-self.n_samples // self.snapshot_every) if self.snapshot_every else 0

    # -- the store's layout ------------------------------------------------------------------------
    def layout(self):
        from kmc.store import Layout, Var

        p = self.p
        v = [Var(name, ("run", "sample"), dtype, u, ln) for name, dtype, u, ln in SAMPLE_VARS]
        v.append(Var("step", ("run", "sample"), "int64", "1", "protocol step index", -1))
        v += [Var("shorted", ("run",), "int8", "1", "1 if a filament shorted the cell", 0,
                  {"flag_values": [0, 1], "flag_meanings": "no_short shorted"}),
              Var("short_time", ("run",), "float64", "s", "simulated time of the short"),
              Var("short_charge", ("run",), "float64", "mA h cm-2", "charge passed at the short"),
              Var("ccd", ("run",), "float64", "mA cm-2", "critical current density: the ccd level that shorted"),
              Var("ccd_failure", ("run",), "int8", "1",
                  "how the run failed: a short on plating, or (model.refill = critical_current) voids that cut the "
                  "contact on a ccd level's strip", 0,
                  {"flag_values": [0, 1, 2], "flag_meanings": "none short_on_plating voids_on_stripping"}),
              Var("surface_height", ("run", "y", "x"), "float64", "um",
                  "electrolyte surface height above the domain bottom (continuous, finer than the voxel)")]
        sizes = {"sample": self.n_samples, "x": p.nx, "y": p.ny}
        a = p.voxel_um
        coords = {"x": (("x",), (np.arange(p.nx) + 0.5) * a, {"units": "um", "long_name": "x"}),
                  "y": (("y",), (np.arange(p.ny) + 0.5) * a, {"units": "um", "long_name": "y"})}
        if self.n_cycles:
            sizes["cycle"] = self.n_cycles
            v += [Var("coulombic_efficiency", ("run", "cycle"), "float64", "1",
                      "Coulombic efficiency: charge stripped / charge plated in the cycle"),
                  Var("charge_plated", ("run", "cycle"), "float64", "mA h cm-2", "charge plated in the cycle"),
                  Var("charge_stripped", ("run", "cycle"), "float64", "mA h cm-2", "charge stripped in the cycle")]
        if self.n_frames:
            sizes["frame"] = self.n_frames
            v += [Var("thickness_map", ("run", "frame", "y", "x"), "float32", "um", "Na thickness per column"),
                  Var("contact_map", ("run", "frame", "y", "x"), "float32", "1",
                      "conductor-electrolyte contact faces per pixel (whatever the current)"),
                  Var("current_map", ("run", "frame", "y", "x"), "float32", "mA cm-2", "current density per pixel"),
                  Var("stress_map", ("run", "frame", "y", "x"), "float32", "MPa",
                      "stress of the Na deposit per pixel at the last field solve (NaN off deposits, and "
                      "unless model.insertion = least_stress)"),
                  Var("frame_time", ("run", "frame"), "float64", "s", "simulated time of the frame")]
        if self.n_snaps:
            sizes.update(snap=self.n_snaps, z=p.nz)
            coords["z"] = (("z",), (np.arange(p.nz) + 0.5) * a, {"units": "um", "long_name": "height above the domain bottom"})
            v += [Var("lattice", ("run", "snap", "z", "y", "x"), "uint8", "1", "voxel state", 255,
                      {"flag_values": FLAG_VALUES, "flag_meanings": FLAG_MEANINGS}),
                  Var("snap_time", ("run", "snap"), "float64", "s", "simulated time of the snapshot")]
        return Layout(sizes, v, coords)

    # -- recount and bookkeeping ---------------------------------------------------------------------
    def recount(self, run) -> dict:
        """Inventories recounted from the lattice and the per-column Au state (voxels).

        The classification is ``kmc.battery.classes``' (``site_class`` in the result): the kernels' own
        array is left as the kernels maintain it between solves, so observing never changes a run.
        ``nuclei``: the active clusters (connected to the collector, touching the electrolyte); an
        island cut off from the collector is dead Na, not a nucleus."""
        p = self.p
        site_class, counts, nuclei = self.classes.of(run.lattice, p.nx, p.ny, p.nz)
        # classify_na visits every site of the lattice: its active, trapped and dead voxels are all
        # the Na there is (a recount, not a pass of its own over a lattice-sized mask)
        na = int(counts[CLUSTER_ACTIVE] + counts[CLUSTER_TRAPPED] + counts[CLUSTER_DEAD])
        alloyed = int(np.isin(run.col_state, (kf.CC_AU_ALLOYED,)).sum()) if p.c_au > 0 else 0
        # The alloy's Na (voxels): whole columns under v3, its steps under model.alloy = "phases"
        alloy_na = (p.c_au * int(alloy.steps_by_column(run.col_state).sum()) / kf.ALLOY_STEPS if p.alloy_phases
                    else p.c_au * alloyed)
        # E7 inventory: the Na taken from the metal (voxels) plus the debt not yet taken. A thick
        # interphase took it as SEI voxels, which the lattice recounts; a thin one as gaps.
        paid = run.sei_paid_voxels
        sei_voxels = (run.lattice == SEI).sum() - run.sei0_voxels if p.sei_continuous else paid
        if sei_voxels != paid:
            raise RuntimeError(f"SEI bookkeeping broken: {paid:.0f} voxels taken, {sei_voxels} SEI voxels in the lattice")
        sei = float(paid + run.sei_debt.sum())
        flaw_now = self.losses.flaw_na_voxels(run)
        flaw = float(flaw_now.sum())
        flaw_owed = float(run.flaw_debt.sum() + (flaw_now - run.flaw_fill).sum())  # synced at the next solve
        if abs(run.flaw_fill.sum() - run.flaw_paid_voxels - run.flaw_debt.sum()) > 1e-6 * max(1.0, flaw):
            raise RuntimeError(f"flaw bookkeeping broken: {run.flaw_fill.sum()} voxels in flaws, "
                               f"{run.flaw_paid_voxels} taken + {run.flaw_debt.sum()} owed")
        # Connected Na with no electrolyte face: in the collector's pores (at or above its lower face in
        # the column) it is trapped; below it, in gaps the collector re-landed on, it is stranded.
        # (a compiled pass, no mask; none when the classification found no trapped Na at all)
        in_pores = count_trapped_in_pores(site_class, run.cc_bottom, p.n_cols) if counts[CLUSTER_TRAPPED] else 0
        return {"na": na, "active": int(counts[CLUSTER_ACTIVE]), "trapped": in_pores,
                "unloaded": self.unloaded_na_voxels(run, site_class),
                "stranded": int(counts[CLUSTER_TRAPPED]) - in_pores,
                "dead": int(counts[CLUSTER_DEAD]), "nuclei": nuclei, "alloyed_columns": alloyed,
                "alloy_na": alloy_na,
                "site_class": site_class, "sei": sei, "flaw": flaw, "flaw_owed": flaw_owed}

    def unloaded_na_voxels(self, run, site_class) -> int:
        """Active Na (connected, touching the electrolyte) none of whose faces has χ > 0 at the last
        solve (``kmc.kernels.faradaic.count_unloaded_na``), cluster by cluster: the clusters' union-find
        parents are labelled here (the kept classification holds no parents: 8 bytes per site). Under
        ``model.contact_quality = "floor"`` with a floor above 0 every face has χ > 0, so there is none,
        and no pass is made. ``site_class``: this lattice's, from ``classes.of`` just before (the bands
        are kept with it)."""
        p = self.p
        if not p.face_state and p.kinetics[kf.P_CHI_FLOOR] > 0.0:
            return 0
        parent = np.empty(run.state.n_sites, dtype=parent_dtype(run.state.n_sites))
        label_na_clusters(run.lattice, p.nx, p.ny, p.nz, parent)
        return int(kf.count_unloaded_na(run.lattice, site_class, parent, run.col_support, run.deposit_stress_mpa,
                                        run.na_contact, run.kinetics, p.nx, p.ny, p.nz, *self._bands(run)[0]))

    def check_bookkeeping(self, run, rc) -> None:
        """Charge by events vs charge by lattice recount, and charge passed vs faradaic + double layer."""
        c_au = self.p.c_au
        plate, nucleate, alloyed, strip = (run.count(k) for k in ("plate", "nucleate", "alloy", "strip"))
        if self.p.alloy_phases:  # an E3 event is one of the steps; de-alloying gives steps back
            by_events = plate + nucleate + c_au * (alloyed - run.dealloy_steps) / kf.ALLOY_STEPS - strip
        else:
            by_events = plate + nucleate + c_au * alloyed - strip
        by_lattice = (rc["na"] - run.na0_voxels - run.na_debt_voxels + run.pending_voxels
                      + rc["alloy_na"]
                      + rc["sei"] - run.sei_debt.sum()  # E7 debt is still Na in the lattice
                      + rc["flaw"] - rc["flaw_owed"])  # as is E8's
        if abs(by_events - by_lattice) > 1e-6 * max(1.0, by_events):
            raise RuntimeError(f"charge bookkeeping broken: {by_events} voxels by events, {by_lattice} by the lattice")
        passed = run.charge_c / self.p.q_v_c
        faradaic_dl = by_events - run.nucleus_debt_voxels + run.dl_charge_c / self.p.q_v_c
        # Galvanostatic events are drawn at rate I/q_v: their count matches the charge passed up to
        # Poisson noise; the double layer is exact.
        drawn = plate + nucleate + alloyed + strip + int(run.dealloy_steps)
        if abs(passed - faradaic_dl) > 6.0 * math.sqrt(max(drawn, 1.0)) + 2.0:
            raise RuntimeError(f"charge bookkeeping broken: {passed:.1f} voxels passed, {faradaic_dl:.1f} accounted")

    # -- observables ---------------------------------------------------------------------------------
    def _electrolyte_faces(self, run, site_class) -> np.ndarray:
        """The electrolyte's faces: all, on a conductor, on Na, on a gap
        (``kmc.kernels.interface.electrolyte_face_counts``)."""
        p = self.p
        counts = np.zeros(4, dtype=np.int64)
        electrolyte_face_counts(run.lattice, site_class, p.nx, p.ny, p.nz, *self._bands(run)[0], counts)
        return counts

    def _bands(self, run):
        """The face and move bands (``kmc.battery.driver.bands``), kept with the classification."""
        p = self.p
        return self.classes.derived("bands", lambda: bands(run.lattice, p))

    def thickness_um(self, run) -> np.ndarray:
        """Na thickness per column (µm): the height of the Na top above the electrolyte's continuous
        surface (``kmc.kernels.heights``), 0 where a column holds no Na; a sealed layer's pending
        volume spread evenly (it is laid down as a uniform layer)."""
        p = self.p
        height = np.empty(p.n_cols)
        na_height_um(run.lattice, p.nx, p.ny, p.nz, run.cc_bottom, run.se_surface_um, p.voxel_um, height)
        return (height + run.pending_voxels / p.n_cols * p.voxel_um).reshape(p.ny, p.nx)

    def observe(self, run) -> dict:
        """The sample's observables (after checking the bookkeeping); the next sample's voltage
        extremes start here."""
        p = self.p
        rc = self.recount(run)
        self.check_bookkeeping(run, rc)
        # Functions of the lattice alone, kept with its classification (recount() has just classified this
        # lattice): a sample right after a solve, or after another sample on the same lattice (a sealed
        # layer thickening), reads them again.
        counts = self.classes.derived("electrolyte_faces", lambda: self._electrolyte_faces(run, rc["site_class"]))
        surface, contact, na_contact, void = (int(c) for c in counts)
        surface = max(surface, 1)
        support = self.classes.derived(("column_support", False), lambda: support_of_columns(run.lattice, p, False))[0]
        thickness = self.thickness_um(run)
        mean_t = float(thickness.mean())
        vox = p.voxel_mah_cm2 / p.n_cols
        c_event = p.c_au / kf.ALLOY_STEPS if p.alloy_phases else p.c_au  # the Na of one E3 event (voxels)
        plated = (run.count("plate") + run.count("nucleate") + c_event * run.count("alloy")) * vox
        obs = {
            "time": run.time_s,
            "charge": run.charge_c / p.area_cm2 / 3.6,
            "current_density": run.current_a / p.area_cm2 * 1e3,
            "voltage": float(run.voltage_v),
            "voltage_min": float(run.voltage_min_v),
            "voltage_max": float(run.voltage_max_v),
            "contact_fraction": contact / surface,
            "na_contact_fraction": na_contact / surface,
            "load_fraction": float(np.isin(support, (COLUMN_CC_CONTACT, COLUMN_NA_SUPPORT)).mean()),
            "void_fraction": void / surface,
            "nucleation_density": rc["nuclei"] / p.area_cm2,
            "thickness_mean": mean_t,
            "thickness_cv": float(thickness.std() / mean_t) if mean_t > 0 else math.nan,
            "max_current_density": float(np.abs(run.pixel_current).max()) * 1e3,
            "max_deposit_stress": self.max_deposit_stress_mpa(run),
            "interfacial_resistance": float(run.r_int_ohm_cm2) if run.r_int_ohm_cm2 else math.nan,
            "plated": plated,
            "stripped": (run.count("strip") + c_event * run.dealloy_steps) * vox,
            "dead_na": rc["dead"] * vox,
            "trapped_na": rc["trapped"] * vox,
            "stranded_na": rc["stranded"] * vox,
            "unloaded_na": rc["unloaded"] * vox,
            "alloy_na": rc["alloy_na"] * vox,
            "sei_na": rc["sei"] * vox,
            "flaw_na": rc["flaw"] * vox,
            "filament_depth": float(run.flaw_front_um.max()) if p.n_cols else 0.0,
            "short_probability": -math.expm1(-self.losses.expected_cracks(run)),
            "step": self.steps[int(run.step)].protocol_index,
        }
        run.voltage_min_v = run.voltage_max_v = run.voltage_v
        return obs

    # -- records -------------------------------------------------------------------------------------
    def records(self, run, k: int) -> list:
        """What sample k hands to the store beyond its observables, as (variable, index, value) triples
        (index None for a per-run value): the short and the cycles closed since the last sample (then
        marked as handed over in the State), and the frames and snapshots due."""
        out = self._new_short(run) + self._new_void_failure(run) + self._new_cycles(run)
        if k == 0:  # the electrolyte's continuous surface: what heights of Na are measured from
            out.append(("surface_height", None, run.se_surface_um.reshape(self.p.ny, self.p.nx)))
        # A run that ended early (a short, a cut-off) also keeps its final state: in the next slot of
        # each clock, whose frame_time / snap_time say when it was taken.
        last = bool(run.ended)
        if self.map_every and (k % self.map_every == 0 or (last and -(-k // self.map_every) < self.n_frames)):
            out += self._maps(run, -(-k // self.map_every))
        if self.snapshot_every and (k % self.snapshot_every == 0
                                    or (last and -(-k // self.snapshot_every) < self.n_snaps)):
            i = -(-k // self.snapshot_every)
            out += [("lattice", i, run.lattice.reshape(self.p.nz, self.p.ny, self.p.nx)), ("snap_time", i, run.time_s)]
        return out

    @staticmethod
    def _new_short(run) -> list:
        if not run.shorted or run.short_reported:
            return []
        run.short_reported = run.shorted
        return [("shorted", None, 1), ("short_time", None, float(run.short_time_s)),
                ("short_charge", None, float(run.short_charge_mah_cm2)), ("ccd", None, float(run.ccd_ma_cm2)),
                ("ccd_failure", None, 1)]

    @staticmethod
    def _new_void_failure(run) -> list:
        """A ccd that ended at a strip the interface could not carry (``Driver.strip_not_carried``)."""
        if run.ccd_failure != 2 or run.failure_reported:
            return []
        run.failure_reported = 1.0
        return [("ccd", None, float(run.ccd_ma_cm2)), ("ccd_failure", None, 2)]

    @staticmethod
    def _new_cycles(run) -> list:
        table = run.cycle_table
        new = range(int(run.cycles_reported), int(run.cycles_done))
        run.cycles_reported = run.cycles_done
        return [rec for i in new for rec in (("coulombic_efficiency", i, float(table[3 * i])),
                                             ("charge_plated", i, float(table[3 * i + 1])),
                                             ("charge_stripped", i, float(table[3 * i + 2])))]

    def contact_faces_map(self, run) -> np.ndarray:
        """Conductor–electrolyte contact faces per pixel, (ny, nx): the faces the field solve sees
        (``kmc.kernels.interface.contact_faces``: an electrolyte voxel facing the CC or Na of an active
        cluster, side faces included), each in the column of its electrolyte voxel. Counted from the
        lattice whatever the current: a contact at rest or while stripping is a contact."""
        p = self.p
        lat3 = run.lattice.reshape(p.nz, p.ny, p.nx)
        site_class, _, _ = self.classes.of(run.lattice, p.nx, p.ny, p.nz)
        active = site_class.reshape(lat3.shape) == CLUSTER_ACTIVE
        conductor = ((lat3 == CC) | ((lat3 == NA) & active)).astype(np.int64)
        electrolyte = (lat3 == SE) | (lat3 == SEI)
        facing = np.zeros(lat3.shape, dtype=np.int64)  # conductor neighbours of each voxel
        for axis in (1, 2):  # x and y periodic
            facing += np.roll(conductor, 1, axis) + np.roll(conductor, -1, axis)
        facing[1:] += conductor[:-1]  # z walled
        facing[:-1] += conductor[1:]
        return (facing * electrolyte).sum(axis=0)

    def stress_map_mpa(self, run) -> np.ndarray:
        """(ny, nx) σ of each deposit pixel at the last solve (PHYSICS §5 M; NaN off deposits), NaN
        everywhere unless the run computes it (``model.insertion = "least_stress"``)."""
        p = self.p
        if not p.least_stress or not run.least_stress:
            return np.full((p.ny, p.nx), np.nan)
        return run.deposit_stress_mpa.reshape(p.ny, p.nx).copy()

    def max_deposit_stress_mpa(self, run) -> float:
        s = self.stress_map_mpa(run)
        return float(np.nanmax(s)) if np.isfinite(s).any() else math.nan

    def _maps(self, run, i: int) -> list:
        p = self.p
        current = run.pixel_current.reshape(p.ny, p.nx)
        return [("thickness_map", i, self.thickness_um(run).astype(np.float32)),
                ("contact_map", i, self.contact_faces_map(run).astype(np.float32)),
                ("current_map", i, (current * 1e3).astype(np.float32)),
                ("stress_map", i, self.stress_map_mpa(run).astype(np.float32)),
                ("frame_time", i, run.time_s)]

