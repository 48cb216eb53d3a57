"""The battery model as a scenario (``[model] kind = "battery"``): PHYSICS.md §§2–7.

Protocol steps: ``plate`` and ``strip`` (galvanostatic), ``rest``, ``hold`` (potentiostatic), and the
``cycle`` and ``ccd`` protocols flattened into them.

What one run does, per sample interval:

1. **Field solve** (``kmc.field``) on the contact faces (``kmc.kernels.interface``) with their kinds,
   contact quality and local potentials (``kmc.kernels.faradaic.face_kinetics``): the cell voltage V
   and the SE potential φ per pixel, for the step's current I (galvanostatic).
2. **Events** — faradaic (E1–E3) and Na moves (E4, with E5 settling) — at that frozen V, φ and
   σ_Na (``kmc.kernels.battery.run_batch``) until the faces
   or the load-bearing columns have changed by more than ``numerics.resolve_area_fraction``, the CC
   was lifted, or the sample time is reached; then back to 1.
3. **Nucleation-limited start**: while the faces cannot carry I (|V| would exceed the solver's
   bound), the excess charges the double layer on the contact area, ``dV/dt = −(I − I_far(V))/(C_dl A_c)``,
   in steps of at most ``numerics.resolve_dv_mv``; in each step the nucleation hazard of the bare CC
   faces acts at the step's V (a piecewise-constant hazard; a nucleus ends the step).

Observables are recounted from the lattice at every sample, and the charge bookkeeping identity of
``kmc.kernels.battery`` is checked there (a violation fails the run).

A ``hold`` keeps V fixed: potentiostatic solves, the faradaic events at the current the faces carry,
the double layer charged at once by the jump to the held V; a nucleus's charge is booked beside the
faces' current. Under galvanostatic control a nucleus's charge comes out of the applied current.

The sealed-layer approximation (``kmc.kernels.battery``): once plating faces reach no gap, Na is
loaded everywhere and creeps ~1e6 times faster than it is plated, so new volume is laid down in
uniform layers as the collector rises. On a collector in full contact from the start (a pellet), the
first nucleus already seals the interface: its Na joins the pending layer, and until a whole layer
(nx·ny voxels) is pending the current flows through the nucleated collector faces only.

Stripping (E6) with refill by loaded flow, the interphase (E7) and the cell's flaw population (E8,
``kmc.flaws``: a short ends the run) act between batches on the same frozen fields.
"""
from __future__ import annotations

import math
import time

import numpy as np

from kmc import field, flaws, units
from kmc.config import ccd_currents_ma_cm2
from kmc.errors import KmcError
from kmc.geometry import collector_hardness_mpa, from_scenario
from kmc.kernels import battery_arrays as kb
from kmc.kernels import battery_loop as kloop
from kmc.kernels import faradaic as kf
from kmc.kernels import flaws as kfl
from kmc.kernels import moves as km
from kmc.kernels.capillary import EPS_AU, EPS_SIZE
from kmc.kernels.cell import CC, FLAG_MEANINGS, FLAG_VALUES, GAP, NA, SE, SEI
from kmc.kernels.clusters import CLUSTER_ACTIVE, CLUSTER_DEAD, CLUSTER_TRAPPED, classify_na, label_na_clusters
from kmc.kernels.interface import (
    COLUMN_CC_CONTACT,
    COLUMN_NA_SUPPORT,
    FACE_NA,
    column_support,
    contact_faces,
    count_contact_faces,
    electrolyte_face_counts,
    na_stress_mpa,
)
from kmc.kernels.solver import STOP_NO_EVENTS, STOP_TIME, tree_build, tree_new
from kmc.state import State

#: A double-layer step's stop code when the cell shorted in it (beyond the kernels' codes).
STOP_SHORT = 99

# Indices of the driver's float64 "scalars" field.
S_VOLTAGE = 0  #: cell voltage V (V)
S_DL_CHARGE = 1  #: charge on the double layer (C)
S_CHARGE = 2  #: charge passed since the start (C, reduction positive)
S_NEED_SOLVE = 3  #: 1 if the next batch needs a new field solve
S_CARRIED = 4  #: 1 if the faces carry I at the last solve (else the double layer takes the excess)
S_I_FAR = 5  #: faradaic current at the last solve (A)
S_R_INT = 6  #: interfacial resistance at the last solve (Ω·cm²)
S_STEP = 7  #: index of the current step in the flattened protocol
S_STEP_START = 8  #: time the step started (s)
S_ENDED = 9  #: 1 when the protocol has ended
S_NA0 = 10  #: Na voxels at the start
S_VMIN = 11  #: lowest V since the last sample (V)
S_VMAX = 12  #: highest V since the last sample (V)
S_CURRENT = 13  #: cell current (A, reduction positive): the step's, or the faradaic current of a hold
S_HOLD_ABOVE = 14  #: 1 once a hold's current has reached its min_current (it may then end)
S_CYCLE = 15  #: cycles completed
S_CYCLE_PLATED = 16  #: reduction charge passed in the current cycle (C)
S_CYCLE_STRIPPED = 17  #: oxidation charge passed in the current cycle (C)
S_CYCLES_REPORTED = 18  #: cycles already handed to the store (``records``)
S_SEI0 = 19  #: SEI voxels at the start
S_END_OBSERVED = 20  #: 1 once the state where the protocol ended early has been observed
S_SEI_PAID = 21  #: Na voxels taken from the metal by E7 (as SEI voxels, or gaps for a thin interphase)
S_SHORTED = 22  #: 1 once a filament has shorted the cell (E8)
S_SHORT_TIME = 23  #: time of the short (s)
S_SHORT_CHARGE = 24  #: charge passed at the short (mAh/cm²)
S_CCD = 25  #: current density of the ccd level that shorted (mA/cm²)
S_FLAW_PAID = 26  #: Na voxels taken from the metal into flaws (E8)
S_SHORT_REPORTED = 27  #: 1 once the short has been handed to the store
S_FLAW_HAZARD = 28  #: Σ over pixels of the probability that a flaw under the pixel has cracked (E8)
S_SHORT_DRAW = 29  #: the cell shorts when its expected number of cracked flaws reaches this Exp(1) draw
N_SCALARS = 32


class BatteryModel:
    """Runs a battery scenario (see the module docstring); the runner's model interface."""

    kind = "battery"
    EVENTS_PER_CALL = 200_000

    def __init__(self, scenario):
        self.scenario = scenario
        d, m = scenario.data, scenario.materials
        lat = d["lattice"]
        self.nx, self.ny, self.nz = int(lat["nx"]), int(lat["ny"]), int(lat["nz"])
        self.voxel_um = float(lat["voxel_um"])
        self.n_cols = self.nx * self.ny
        self.area_cm2 = self.n_cols * (self.voxel_um * 1e-4) ** 2
        el_name = d["electrolyte"]["material"]
        el, na = m[el_name], m["na"]
        col = d["collector"]
        self.temperature_k = units.celsius_to_kelvin(float(d["conditions"]["temperature_c"]))
        self.pressure_mpa = float(d["conditions"]["stack_pressure_mpa"])
        self.hardness_mpa = collector_hardness_mpa(m, col["material"], col["form"])
        counter = d["counter"]["material"]
        self.u_ce_v = float(m["na_counter" if counter == "na" else counter]["potential_v"])
        vm = float(na["molar_volume_cm3_mol"])
        self.q_v_c = units.voxel_charge_c(self.voxel_um, vm)
        self.voxel_mah_cm2 = units.thickness_to_capacity_mah_cm2(self.voxel_um, vm)
        self.sigma_s_cm = units.conductivity_s_cm(el, self.temperature_k)
        self.plane = field.Plane(self.nx, self.ny, self.voxel_um * 1e-4, float(d["electrolyte"]["thickness_um"]) * 1e-4,
                                 self.sigma_s_cm)
        self.c_dl_f_cm2 = float(el["double_layer_capacitance_uf_cm2"]) * 1e-6
        au_nm = float(col.get("seed_layer_nm", 0.0)) if col.get("seed_layer") == "au" else 0.0
        au_mah = float(m["au"]["alloy_capacity_mah_cm2_per_100nm"]) * au_nm / 100.0
        self.c_au = au_mah / self.voxel_mah_cm2  # alloy inventory of one column, in Na voxels
        self.steps = self._flatten(d["protocol"])
        metal = m[col["material"]]
        p = np.zeros(kf.N_PARAMS)
        p[kf.P_F] = units.F / (units.R * self.temperature_k)
        p[kf.P_J0_NA] = float(el["j0_ma_cm2"]) * 1e-3
        p[kf.P_J0_AU] = float(m["au"]["j0_ma_cm2"]) * 1e-3
        p[kf.P_ALPHA] = float(el["transfer_coefficient"])
        p[kf.P_U_ALLOY] = float(m["au"]["alloying_potential_v"])
        p[kf.P_SIGMA_CHI] = float(el["contact_stress_mpa"])
        p[kf.P_CHI_FLOOR] = float(el["unloaded_contact_quality"])
        p[kf.P_STRESS_V_PER_MPA] = units.mpa_to_mv(1.0, vm) * 1e-3
        p[kf.P_PRESSURE] = self.pressure_mpa
        p[kf.P_FACE_AREA] = (self.voxel_um * 1e-4) ** 2
        p[kf.P_J0_NUC] = float(metal["nucleation_prefactor_cm2_s"])
        p[kf.P_B_NUC] = float(metal["nucleation_barrier_v2"])
        p[kf.P_DIRECTION] = 1.0
        p[kf.P_SEI_J0_RATIO] = float(el["sei_exchange_ratio"])
        # E7: the interphase on a Na face grows as dδ/dt = k/(1 + δ/δ0) (self-limiting) or k
        # (continuous), δ the thickness of Na consumed, k = k_sei V_m/F.
        self.sei_nm_per_s = float(el["sei_rate_ma_cm2"]) * 1e-3 * vm / units.F * 1e7
        self.sei_limit_nm = float(el["sei_limit_nm"])
        self.sei_continuous = el["sei_kind"] == "continuous"
        self.voxel_nm = self.voxel_um * 1e3
        # E8 (kmc.flaws): the cell's population of sub-grid surface flaws, on the patch's pixels.
        self.flaws_per_pixel = float(el["flaw_density_cm2"]) * (self.voxel_um * 1e-4) ** 2
        self.cell_flaws = float(el["flaw_density_cm2"]) * float(d["conditions"]["cell_area_cm2"])
        self.crack_opening_um = float(el["crack_opening_um"])
        self.k_ic = float(el["k_ic_mpa_m05"])
        self.molar_volume = vm
        self.creep_sigma_ref = float(na["creep_flow_stress_mpa"])
        self.creep_rate_ref = units.creep_strain_rate_s(self.creep_sigma_ref, na, self.temperature_k)
        self.creep_n = float(na["creep_stress_exponent"])
        self.depth_grid = flaws.DepthGrid(float(el["flaw_scale_um"]), float(el["flaw_shape"]))
        self.crack_need_mpa, self.crack_flow_mpa = flaws.crack_criterion_tables(
            self.depth_grid, self.k_ic, self.crack_opening_um, self.creep_sigma_ref, self.creep_rate_ref,
            self.creep_n, vm)
        self.mpa_per_volt = flaws.overpotential_pressure_mpa(1.0, vm)
        # Na reaches into a plating pixel's flaws as fast as its metal thickens: V_m/F per coulomb.
        self.fill_um_per_c_cm2 = vm / units.F * 1e4
        self.params0 = p
        scale = float(na["capillary_energy_scale_j_m2"])
        eps = np.zeros(EPS_SIZE)
        eps[GAP] = float(na["pair_energy_na_gap_j_m2"]) / scale
        eps[NA] = float(na["pair_energy_na_na_j_m2"]) / scale
        eps[SE] = eps[SEI] = float(na["pair_energy_na_se_j_m2"]) / scale
        eps[CC] = float(na[f"pair_energy_na_{col['material']}_j_m2"]) / scale
        eps[EPS_AU] = float(na["pair_energy_na_au_j_m2"]) / scale
        self.eps = eps
        # Moves (kmc.kernels.moves): creep constant at T, capillary rate, stress scale, diffusion.
        k_l = float(na["creep_geometric_factor"])
        sigma_ref = float(na["creep_flow_stress_mpa"])
        a_m = self.voxel_um * 1e-6
        capillary_stress_mpa = float(na["surface_energy_j_m2"]) / a_m * 1e-6
        nu_cap = k_l * units.creep_strain_rate_s(capillary_stress_mpa, na, self.temperature_k)
        # Time-scale separation: capillary attempts capped at a multiple of the faradaic event rate
        # per column (at the protocol's largest current; at rest the same cap applies).
        i_max = max((s["current_a"] for s in self.steps), default=0.0)
        faradaic_per_column = i_max / self.q_v_c / self.n_cols
        cap = float(d["numerics"]["max_capillary_rate_ratio"]) * faradaic_per_column
        mp = np.zeros(km.N_MOVE_PARAMS)
        mp[km.M_NU_CAP] = min(nu_cap, cap) if cap > 0 else nu_cap
        mp[km.M_CREEP_K] = k_l * units.creep_strain_rate_s(sigma_ref, na, self.temperature_k)
        mp[km.M_SIGMA_REF] = sigma_ref
        mp[km.M_CREEP_N] = float(na["creep_stress_exponent"])
        mp[km.M_STRESS_PER_E] = scale / a_m * 1e-6
        mp[km.M_DIFF_PER_MPA] = units.diffusion_hop_rate_s(1.0, na, self.temperature_k, self.voxel_um)
        self.move_params0 = mp
        self.nu_cap_uncapped = nu_cap
        num = d["numerics"]
        self.resolve_fraction = float(num["resolve_area_fraction"])
        self.resolve_dv_v = float(num["resolve_dv_mv"]) * 1e-3
        self.solver_rtol = float(num["solver_rtol"])
        self.duration_s = sum(s["duration_s"] for s in self.steps)
        self.n_cycles = sum(1 for s in self.steps if s["ends_cycle"])
        out = d["output"]
        self.sample_every_s = float(out.get("sample_every_s") or self.duration_s / 500.0)
        if out.get("sample_every_mah_cm2") and not out.get("sample_every_s"):
            # Sampling in charge on a clock in time: the time to pass that charge at the protocol's
            # largest current density, so every step is sampled at least that densely in charge.
            j_max_ma_cm2 = max((abs(st["current_a"]) for st in self.steps), default=0.0) / self.area_cm2 * 1e3
            if j_max_ma_cm2 > 0:
                self.sample_every_s = float(out["sample_every_mah_cm2"]) * 3600.0 / j_max_ma_cm2
        # Samples at 0, Δt, 2Δt, ... up to the first at or past the protocol's end (whose state the
        # last sample then holds: ``advance_sample``).
        self.n_samples = int(math.ceil(self.duration_s / self.sample_every_s * (1 - 1e-12))) + 1
        self.map_every = int(out.get("map_every_samples") or 0)
        self.snapshot_every = int(out.get("snapshot_every_samples") or 0)
        self.n_frames = -(-self.n_samples // self.map_every) if self.map_every else 0
        self.n_snaps = -(-self.n_samples // self.snapshot_every) if self.snapshot_every else 0
        # Wall time by part of the work (benchmarks/battery.py reports it); not part of the state.
        self.timing = {"solve_s": 0.0, "kernel_s": 0.0, "observe_s": 0.0, "solves": 0, "batches": 0}
        self._scratch = None  # the event loop's scratch arrays (zero between calls), kept across batches

    # -- protocol ---------------------------------------------------------------------------------
    def _flatten(self, steps):
        """The protocol as a flat list of steps (a ``cycle`` repeated out), each with its signed
        current (A, reduction positive), its time bound (s), its cut-off, the top-level protocol
        index it comes from, and whether it ends a cycle (every strip step does: the Coulombic
        efficiency of a cycle is the charge stripped over the charge plated since the last one)."""
        flat = []
        for i, step in enumerate(steps):
            kind = step["kind"]
            if kind == "cycle":
                for _ in range(int(step["count"])):
                    for sub in step["steps"]:
                        flat.append(self._flat_step(sub, i, f"protocol.{i}.steps"))
            elif kind == "ccd":
                # Rising current levels, each plated then stripped at its capacity, until a short.
                for level in ccd_currents_ma_cm2(step):
                    for verb in ("plate", "strip"):
                        flat_step = self._flat_step({"kind": verb, "current_ma_cm2": level,
                                                     "capacity_mah_cm2": step["capacity_mah_cm2"]},
                                                    i, f"protocol.{i}")
                        flat_step["ccd_ma_cm2"] = level
                        flat.append(flat_step)
            else:
                flat.append(self._flat_step(step, i, f"protocol.{i}"))
        return flat

    def _flat_step(self, step, index, path):
        kind = step["kind"]
        out = {"kind": kind, "protocol_index": index, "current_a": 0.0, "cutoff_v": None, "ends_cycle": False}
        if kind in ("plate", "strip"):
            i_ma = float(step["current_ma_cm2"])
            bounds = [float(step["max_duration_s"])] if step.get("max_duration_s") else []
            if step.get("capacity_mah_cm2"):
                bounds.append(float(step["capacity_mah_cm2"]) / i_ma * 3600.0)
            sign = 1.0 if kind == "plate" else -1.0
            out.update(current_a=sign * i_ma * 1e-3 * self.area_cm2, duration_s=min(bounds),
                       cutoff_v=step.get("cutoff_v"), ends_cycle=kind == "strip")
        elif kind == "hold":
            i_min = step.get("min_current_ma_cm2")
            out.update(duration_s=float(step["max_duration_s"]), voltage_v=float(step["voltage_v"]),
                       min_current_a=None if i_min is None else float(i_min) * 1e-3 * self.area_cm2)
        elif kind == "rest":
            out.update(duration_s=float(step["duration_s"]))
        else:
            raise KmcError(f"{path}.kind = {kind!r} is not modelled by the battery model")
        return out

    # -- store layout -----------------------------------------------------------------------------
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
        ("nucleation_density", "float64", "cm-2", "Na clusters touching the electrolyte per area"),
        ("thickness_mean", "float64", "um", "mean Na thickness"),
        ("thickness_cv", "float64", "1", "coefficient of variation of the Na thickness over columns"),
        ("max_current_density", "float64", "mA cm-2", "largest local (pixel) current density, in magnitude"),
        ("interfacial_resistance", "float64", "ohm cm2", "interfacial resistance (|V+U_CE| - |j| L/sigma)/|j|"),
        ("plated", "float64", "mA h cm-2", "charge of Na plated (metal and alloy)"),
        ("stripped", "float64", "mA h cm-2", "charge of Na stripped"),
        ("dead_na", "float64", "mA h cm-2", "Na not connected to the collector"),
        ("trapped_na", "float64", "mA h cm-2", "Na connected to the collector with no electrolyte contact"),
        ("alloy_na", "float64", "mA h cm-2", "Na held in the Au alloy"),
        ("sei_na", "float64", "mA h cm-2", "Na consumed by the solid-electrolyte interphase"),
        ("flaw_na", "float64", "mA h cm-2", "Na pressed into surface flaws of the electrolyte"),
        ("filament_depth", "float64", "um", "depth Na has reached in the surface flaws (deepest over pixels)"),
        ("short_probability", "float64", "1",
         "probability that the cell has shorted by now: 1 - exp(-expected cracked flaws over the cell area)"),
    )

    def layout(self):
        from kmc.store import Layout, Var

        v = [Var(name, ("run", "sample"), dtype, u, ln) for name, dtype, u, ln in self.SAMPLE_VARS]
        v.append(Var("step", ("run", "sample"), "int64", "1", "protocol step index", -1))
        v += [Var("shorted", ("run",), "int8", "1", "1 if a filament shorted the cell", 0,
                  {"flag_values": [0, 1], "flag_meanings": "no_short shorted"}),
              Var("short_time", ("run",), "float64", "s", "simulated time of the short"),
              Var("short_charge", ("run",), "float64", "mA h cm-2", "charge passed at the short"),
              Var("ccd", ("run",), "float64", "mA cm-2", "critical current density: the ccd level that shorted")]
        sizes = {"sample": self.n_samples, "x": self.nx, "y": self.ny}
        a = self.voxel_um
        coords = {"x": (("x",), (np.arange(self.nx) + 0.5) * a, {"units": "um", "long_name": "x"}),
                  "y": (("y",), (np.arange(self.ny) + 0.5) * a, {"units": "um", "long_name": "y"})}
        if self.n_cycles:
            sizes["cycle"] = self.n_cycles
            v += [Var("coulombic_efficiency", ("run", "cycle"), "float64", "1",
                      "Coulombic efficiency: charge stripped / charge plated in the cycle"),
                  Var("charge_plated", ("run", "cycle"), "float64", "mA h cm-2", "charge plated in the cycle"),
                  Var("charge_stripped", ("run", "cycle"), "float64", "mA h cm-2", "charge stripped in the cycle")]
        if self.n_frames:
            sizes["frame"] = self.n_frames
            v += [Var("thickness_map", ("run", "frame", "y", "x"), "float32", "um", "Na thickness per column"),
                  Var("contact_map", ("run", "frame", "y", "x"), "float32", "1", "conductor contact per pixel (0/1)"),
                  Var("current_map", ("run", "frame", "y", "x"), "float32", "mA cm-2", "current density per pixel"),
                  Var("frame_time", ("run", "frame"), "float64", "s", "simulated time of the frame")]
        if self.n_snaps:
            sizes.update(snap=self.n_snaps, z=self.nz)
            coords["z"] = (("z",), (np.arange(self.nz) + 0.5) * a, {"units": "um", "long_name": "height above the domain bottom"})
            v += [Var("lattice", ("run", "snap", "z", "y", "x"), "uint8", "1", "voxel state", 255,
                      {"flag_values": FLAG_VALUES, "flag_meanings": FLAG_MEANINGS}),
                  Var("snap_time", ("run", "snap"), "float64", "s", "simulated time of the snapshot")]
        return Layout(sizes, v, coords)

    # -- state ------------------------------------------------------------------------------------
    def new_state(self, seed: int) -> State:
        rng = np.random.default_rng(seed)
        geo = from_scenario(self.scenario, rng)
        lattice = geo.lattice.ravel().copy()
        n = lattice.size
        plate, offsets = tree_new(n)
        col_state = np.full(self.n_cols, kf.CC_AU if self.c_au > 0 else kf.CC_BARE, dtype=np.uint8)
        scalars = np.zeros(N_SCALARS)
        scalars[S_VOLTAGE] = scalars[S_VMIN] = scalars[S_VMAX] = -self.u_ce_v  # at rest: V + U_CE = 0
        scalars[S_NEED_SOLVE] = 1.0
        scalars[S_NA0] = float((lattice == NA).sum())
        scalars[S_SEI0] = float((lattice == SEI).sum())
        scalars[S_SHORT_DRAW] = rng.exponential()  # E8: the cell's weakest link (kmc.flaws)
        fields = {
            "tree_alloy": np.zeros_like(plate), "tree_nucleate": np.zeros_like(plate), "tree_moves": np.zeros_like(plate),
            "move_params": self.move_params0.copy(),
            "site_class": np.full(n, -1, dtype=np.int64), "col_state": col_state,
            "col_support": np.zeros(self.n_cols, dtype=np.int64),
            "cc_bottom": (geo.cc_offset + geo.cc_shape).ravel().astype(np.int64),
            "au_column": (geo.au_nm.ravel() > 0).astype(np.uint8),
            "phi": np.zeros(self.n_cols), "pixel_current": np.zeros(self.n_cols), "params": self.params0.copy(),
            "tally": np.zeros(kb.N_TALLY), "limits": np.zeros(6), "state_counts": np.zeros(3),
            # CE, plated, stripped (mAh/cm²) of cycle i at [3i, 3i + 3): flat, as checkpoints store arrays
            "cycle_table": np.full(3 * max(self.n_cycles, 1), np.nan),
            "sei_nm": np.zeros(self.n_cols),  # E7: interphase (Na consumed) on each column's Na faces, nm
            "sei_debt": np.zeros(self.n_cols),  # Na consumed by E7 not yet taken from the lattice, voxels
            "na_faces_col": np.zeros(self.n_cols),  # Na-electrolyte faces per column at the last solve
            "na_current": np.zeros(self.n_cols),  # current density the column's Na faces carry (A/cm²)
            # E8 (kmc.flaws, kmc.kernels.flaws): the depth Na has reached in each pixel's flaws (µm), the
            # depth bins that have cracked there, and the highest run of them.
            "flaw_front_um": np.zeros(self.n_cols),
            "flaw_cracked": np.zeros(self.n_cols * self.depth_grid.n_bins, dtype=np.uint8),
            "flaw_block": np.stack([np.zeros(self.n_cols, dtype=np.int64), np.full(self.n_cols, -1, dtype=np.int64)]).ravel(),
            "flaw_fill": np.zeros(self.n_cols),  # expected Na in each pixel's flaws at the last sync, voxels
            "flaw_debt": np.zeros(self.n_cols),  # Na pressed into flaws not yet taken from the lattice, voxels
            "scalars": scalars,
        }
        return State(model="battery", shape=(self.nx, self.ny, self.nz), z_periodic=False, lattice=lattice,
                     tree=plate, tree_offsets=offsets, clock=np.zeros(1), counters=np.zeros(kb.N_COUNTERS, dtype=np.int64),
                     rng=rng, fields=fields, params={"seed": int(seed)})

    # -- the solve --------------------------------------------------------------------------------
    def _classify(self, state, site_class=None):
        """Classify every Na voxel's cluster into ``site_class`` (the kernel's own array by default);
        returns the counts per class."""
        site_class = state.fields["site_class"] if site_class is None else site_class
        parent = np.empty(state.n_sites, dtype=np.int64)
        label_na_clusters(state.lattice, self.nx, self.ny, self.nz, parent)
        counts = np.zeros(4, dtype=np.int64)
        classify_na(state.lattice, self.nx, self.ny, self.nz, parent, site_class, counts)
        return counts

    def _bands(self, lattice):
        """Site ranges of the layers that can hold contact faces (conductors at most one layer above
        the highest electrolyte voxel) and Na moves (Na within one layer of a gap)."""
        nxy = self.n_cols
        lat = lattice.reshape(self.nz, nxy)
        el = np.flatnonzero(((lat == SE) | (lat == SEI)).any(axis=1))
        faces = (0, min(self.nz, int(el[-1]) + 2) * nxy if el.size else 0)
        gaps = np.flatnonzero((lat == GAP).any(axis=1))
        moves = (max(0, int(gaps[0]) - 1) * nxy, min(self.nz, int(gaps[-1]) + 2) * nxy) if gaps.size else (0, 0)
        return faces, moves

    def _faces(self, state, band):
        f = state.fields
        n = count_contact_faces(state.lattice, f["site_class"], self.nx, self.ny, self.nz, *band)
        cond, elec, pix, kind = (np.empty(n, dtype=np.int64) for _ in range(4))
        contact_faces(state.lattice, f["site_class"], f["au_column"], (f["col_state"] == kf.CC_AU_ALLOYED).astype(np.uint8),
                      self.nx, self.ny, self.nz, cond, elec, pix, kind, *band)
        fk = np.empty(n, dtype=np.int64)
        j0 = np.empty(n)
        u = np.empty(n)
        kf.face_table(cond, elec, n, state.lattice, f["col_state"], f["col_support"], f["params"], self.nx, self.ny,
                      fk, j0, u)
        is_na = kind == FACE_NA
        f["na_faces_col"][:] = np.bincount(pix[is_na], minlength=self.n_cols)
        return field.Faces(pix, self.params0[kf.P_FACE_AREA], j0, self.params0[kf.P_ALPHA], u), n, is_na

    def _grow_sei(self, state, dt):
        """E7 over dt (s) on the Na faces of the last solve: per column, the interphase thickness δ
        (nm of Na consumed per face) grows by dδ/dt = k/(1 + δ/δ0) — integrated exactly:
        (δ0 + δ)² grows by 2 δ0 k dt — or by k dt when continuous; the Na it consumes (faces × Δδ)
        becomes debt, taken from the lattice at the next solve."""
        if dt <= 0 or self.sei_nm_per_s <= 0:
            return
        f = state.fields
        n = f["na_faces_col"]
        on = n > 0
        if not on.any():
            return
        d0 = f["sei_nm"][on]
        k_dt = self.sei_nm_per_s * dt
        if self.sei_continuous:
            d1 = d0 + k_dt
        else:
            lim = self.sei_limit_nm
            d1 = np.sqrt((lim + d0) ** 2 + 2.0 * lim * k_dt) - lim
        f["sei_nm"][on] = d1
        f["sei_debt"][on] += n[on] * (d1 - d0) / self.voxel_nm
        owed = np.floor(f["sei_debt"].sum())
        if owed >= 1:
            tally = f["tally"]
            if not self.sei_continuous and tally[kb.T_SEALED] and tally[kb.T_PENDING] >= owed:
                # A sealed layer's pending volume pays, as for the alloy: the layer is thinner, evenly.
                tally[kb.T_PENDING] -= owed
                f["scalars"][S_SEI_PAID] += owed
                self._clear_debt(f["sei_debt"], owed)
            else:
                f["scalars"][S_NEED_SOLVE] = 1.0  # the next solve takes it from the metal

    def _pay_sei_debt(self, state):
        """Take whole voxels of E7 debt from the metal, so the Na the interphase consumed is not left to
        strip (``_take_from_metal``). A continuous interphase (Na3PS4 → Na3P, Na2S) grows µm thick: the
        voxel becomes SEI, the reduced electrolyte growing into the metal. A self-limiting one stays nm
        thin (``sei_nm``, per column), far below a voxel: the voxel becomes a gap — the metal it
        consumed is gone, and loaded Na flows in as into any interface void — rather than a 0.5 µm
        block of interphase."""
        sc = state.fields["scalars"]
        sc[S_SEI_PAID] += self._take_from_metal(state, state.fields["sei_debt"], SEI if self.sei_continuous else GAP)

    def _take_from_metal(self, state, debt, becomes):
        """Pay whole voxels of a per-column debt (voxels of Na owed by the metal) from the lattice;
        returns how many. The debt is summed over columns (it may be far below a voxel per column);
        each whole voxel takes the Na voxel touching the electrolyte lowest in the column owing most
        (it ``becomes`` GAP or SEI), and clears that much debt from the most indebted columns first."""
        if debt.sum() < 1.0:
            return 0
        lat3 = state.lattice.reshape(self.nz, self.ny, self.nx)
        el = (lat3 == SE) | (lat3 == SEI)
        na = lat3 == NA
        touching = np.zeros_like(na)  # Na with an electrolyte face
        touching[1:] |= el[:-1]
        touching[:-1] |= el[1:]
        for axis in (1, 2):
            for shift in (1, -1):
                touching |= np.roll(el, shift, axis)
        touching &= na
        touching = touching.reshape(self.nz, self.n_cols)
        lat = state.lattice.reshape(self.nz, self.n_cols)
        paid = 0
        while debt.sum() >= 1.0:
            cols = np.flatnonzero(touching.any(axis=0))
            if cols.size == 0:
                break  # no metal touches the electrolyte: the debt waits
            col = int(cols[np.argmax(debt[cols])])
            z = int(np.flatnonzero(touching[:, col])[0])
            lat[z, col] = becomes
            paid += 1
            touching[z, col] = False
            if becomes == SEI:  # new electrolyte: the metal around it now touches it (a gap does not)
                x, y = col % self.nx, col // self.nx
                for zz, cc in ((z + 1, col), (z - 1, col), (z, (x + 1) % self.nx + self.nx * y),
                               (z, (x - 1) % self.nx + self.nx * y), (z, x + self.nx * ((y + 1) % self.ny)),
                               (z, x + self.nx * ((y - 1) % self.ny))):
                    if 0 <= zz < self.nz and lat[zz, cc] == NA:
                        touching[zz, cc] = True
            self._clear_debt(debt, 1.0)
        if paid:
            state.fields["tally"][kb.T_SEALED] = 0.0
        return paid

    @staticmethod
    def _clear_debt(debt, amount):
        """Clear ``amount`` voxels of a per-column debt, from the most indebted columns first."""
        for c in np.argsort(-debt, kind="stable"):
            take = min(debt[c], amount)
            debt[c] -= take
            amount -= take
            if amount <= 0:
                break

    # -- E8: flaws and shorts ----------------------------------------------------------------------
    def _plating_pixels(self, state):
        """The pixels whose Na plates now (their Na faces' current j > 0), the rate Na goes deeper into
        their flaws (µm/s: as fast as that current thickens the metal), their |η| and j."""
        f = state.fields
        cols = np.flatnonzero(f["na_current"] > 0)
        j = f["na_current"][cols]
        eta = np.abs(f["scalars"][S_VOLTAGE] + self.u_ce_v - f["phi"][cols])
        return cols, j * self.fill_um_per_c_cm2, eta, j

    def _crack(self, state, dt, commit, plating=None):
        """Rise of Σ_i P_i (kmc.flaws) over ``dt`` at the frozen fields; written to the state if ``commit``.
        ``plating``: ``_plating_pixels`` of these fields, when the caller has it already."""
        f = state.fields
        cols, rate, eta, j = self._plating_pixels(state) if plating is None else plating
        if cols.size == 0:
            return 0.0
        g = self.depth_grid
        block = f["flaw_block"]
        return kfl.crack_population(cols, rate, dt, eta, j, self.mpa_per_volt, self.crack_need_mpa,
                                    self.crack_flow_mpa, 1.0 / self.creep_n, g.weights, g.first_um, g.log_ratio,
                                    f["flaw_front_um"], f["flaw_cracked"], block[:self.n_cols], block[self.n_cols:],
                                    commit)

    def _expected_cracks(self, sc, rise=0.0):
        """Λ: the expected number of cracked flaws in the cell (n_flaw A_cell ⟨P_i⟩)."""
        return self.cell_flaws * (sc[S_FLAW_HAZARD] + rise) / self.n_cols

    def _short_time_s(self, state, t_end):
        """The time, up to ``t_end`` at the frozen fields, at which Λ reaches the cell's draw (inf if it
        does not). Bisected on the batch's stop time itself, with the rise evaluated at ``t − t0``, the
        very expression the batch books afterwards: so stopping there shorts (at a large clock, t0 + dt
        would not round-trip to dt)."""
        sc = state.fields["scalars"]
        t0 = state.time_s
        if self.cell_flaws == 0.0:
            return math.inf
        plating = self._plating_pixels(state)  # frozen over the batch: once, not at every bisection step

        def reached(t):
            return self._expected_cracks(sc, self._crack(state, t - t0, False, plating)) >= sc[S_SHORT_DRAW]

        if not reached(t_end):
            return math.inf
        if reached(t0):
            return t0
        lo, hi = t0, t_end  # not reached at lo, reached at hi: Λ only grows with time
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if mid <= lo or mid >= hi:
                break  # adjacent floats
            if reached(mid):
                hi = mid
            else:
                lo = mid
        return hi

    def _flaw_na_vox(self, state):
        """Expected Na in each pixel's flaws (voxels): n_flaw a² ∫₀^{d_i} (1 − F) dc / a."""
        return self.flaws_per_pixel * self.depth_grid.mean_fill_um(state.fields["flaw_front_um"]) / self.voxel_um

    def _sync_flaw_debt(self, state):
        """What the flaws took since the last sync becomes a debt of the metal (paid at the next solve)."""
        f = state.fields
        now = self._flaw_na_vox(state)
        f["flaw_debt"] += now - f["flaw_fill"]
        f["flaw_fill"][:] = now

    def _advance_flaws(self, state, dt):
        """The flaw population over a batch of ``dt`` at the frozen fields; True if the cell has shorted."""
        sc = state.fields["scalars"]
        sc[S_FLAW_HAZARD] += self._crack(state, dt, True)
        if self.cell_flaws > 0.0 and self._expected_cracks(sc) >= sc[S_SHORT_DRAW]:
            self._short(state)
            return True
        return False

    def _short(self, state):
        """A filament crosses the electrolyte: record it, the voltage collapses, the run ends."""
        sc = state.fields["scalars"]
        sc[S_SHORTED] = 1.0
        sc[S_SHORT_TIME] = state.time_s
        sc[S_SHORT_CHARGE] = sc[S_CHARGE] / self.area_cm2 / 3.6
        step = self.steps[int(sc[S_STEP])]
        sc[S_CCD] = step.get("ccd_ma_cm2", math.nan)
        self._set_voltage(sc, 0.0)
        sc[S_ENDED] = 1.0

    def _collector_can_settle(self, state):
        """False once a whole layer's volume has flowed into gaps (pending ≤ −nx·ny) and the collector
        cannot descend (it rests on the electrolyte somewhere): loaded flow then has no volume to
        give, and stops until the lattice changes."""
        if state.fields["tally"][kb.T_PENDING] > -self.n_cols:
            return True
        lat = state.lattice.reshape(self.nz, self.n_cols)
        b = state.fields["cc_bottom"]
        if (b <= 0).any():
            return False
        under = lat[b - 1, np.arange(self.n_cols)]
        return bool(((under == NA) | (under == GAP)).all())

    def _warm_guess(self, state):
        """The last solve's V and pixel currents as a warm start, rebuilt from the state (so a run
        resumed from a checkpoint warm-starts exactly as the uninterrupted run did)."""
        f = state.fields
        if not f["scalars"][S_CARRIED] or not f["pixel_current"].any():
            return None
        return field.Solution(float(f["scalars"][S_VOLTAGE]), np.empty(0), f["pixel_current"].reshape(self.ny, self.nx),
                              f["phi"].reshape(self.ny, self.nx), 0, 0, True, True, float(f["scalars"][S_I_FAR]))

    def _solve(self, state, current_a, voltage_v=None):
        """Field solve (galvanostatic, or potentiostatic at ``voltage_v``) and the weights from it."""
        t_start = time.perf_counter()
        f = state.fields
        sc = f["scalars"]
        if voltage_v is None or current_a != 0.0:
            f["params"][kf.P_DIRECTION] = -1.0 if current_a < 0 else 1.0
        else:  # a hold: plating below the counter electrode's potential, stripping above
            f["params"][kf.P_DIRECTION] = -1.0 if voltage_v + self.u_ce_v > 0 else 1.0
        # Warm start from the last solve, unless the current has reversed (its pattern is no guide).
        guess = self._warm_guess(state) if sc[S_I_FAR] * f["params"][kf.P_DIRECTION] > 0 else None
        f["move_params"][km.M_LOADED_FLOW] = 1.0 if self._collector_can_settle(state) else 0.0
        self._pay_sei_debt(state)
        self._sync_flaw_debt(state)
        f["scalars"][S_FLAW_PAID] += self._take_from_metal(state, f["flaw_debt"], GAP)
        self._classify(state)
        lat2 = state.lattice.reshape(self.nz, self.n_cols)
        b = f["cc_bottom"]
        f["tally"][kb.T_UNDER_CC] = float((lat2[np.maximum(b - 1, 0), np.arange(self.n_cols)] == NA)[b > 0].sum())
        n_cc, n_na = column_support(state.lattice, self.nx, self.ny, self.nz, f["col_support"])
        params = f["params"]
        params[kf.P_SIGMA_NA] = na_stress_mpa(self.pressure_mpa, self.hardness_mpa, n_cc, n_na, self.n_cols)
        f["move_params"][km.M_SIGMA_NA] = params[kf.P_SIGMA_NA]
        face_band, move_band = self._bands(state.lattice)
        faces, n_faces, na_face = self._faces(state, face_band)
        if voltage_v is None:
            sol = field.solve_galvanostatic(self.plane, faces, current_a, self.u_ce_v, self.temperature_k,
                                            rtol=self.solver_rtol, guess=guess)
        else:
            sol = field.solve_potentiostatic(self.plane, faces, voltage_v, self.u_ce_v, self.temperature_k,
                                             rtol=self.solver_rtol, guess=guess)
        carried = bool(getattr(sol, "carried", True)) and voltage_v is None
        if voltage_v is None and carried:
            self._set_voltage(sc, sol.voltage_v)
        f["phi"][:] = np.asarray(sol.phi_v).ravel()
        f["pixel_current"][:] = np.asarray(sol.pixel_current_density_a_cm2).ravel()
        # What the pixel's Na faces carry (A/cm² of pixel: a face has the pixel's area): E8 fills flaws
        # from it, not from the collector's own (Au, bare) faces, which cover their flaws' mouths.
        face_j = np.asarray(sol.face_current_density_a_cm2)
        f["na_current"][:] = (np.bincount(faces.pixel[na_face], weights=face_j[na_face], minlength=self.n_cols)
                              if face_j.size else 0.0)
        i_far = float(f["pixel_current"].sum() * self.params0[kf.P_FACE_AREA])
        sc[S_I_FAR] = i_far if (voltage_v is not None or carried) else 0.0
        sc[S_CARRIED] = 1.0 if carried else 0.0
        if carried and current_a != 0:
            sc[S_R_INT] = field.interfacial_resistance_ohm_cm2(sol, self.plane, current_a, self.u_ce_v)
        elif voltage_v is None:
            sc[S_R_INT] = math.nan  # at rest, or the faces cannot carry the current: undefined
        params[kf.P_VT] = sc[S_VOLTAGE] + self.u_ce_v
        kf.fill_weights(state.lattice, f["site_class"], f["col_state"], f["col_support"], f["phi"], params,
                        self.nx, self.ny, self.nz, state.tree, f["tree_alloy"], f["tree_nucleate"], *face_band)
        km.fill_move_leaves(f["tree_moves"], state.lattice, f["au_column"], f["col_support"], self.nx, self.ny, self.nz,
                            self.eps, f["move_params"], *move_band)
        for tree in (state.tree, f["tree_alloy"], f["tree_nucleate"], f["tree_moves"]):
            tree[state.n_sites:] = 0.0
            tree_build(tree, state.tree_offsets)
        f["state_counts"][:] = (n_faces, n_na, n_cc)
        f["tally"][kb.T_SEALED] = 0.0  # the lattice may have changed: search again
        capacity = float(state.tree[-1] + f["tree_alloy"][-1])
        f["limits"][:] = (n_faces, n_na, self.resolve_fraction, 0.0 if carried else 1.0, self.n_cols, capacity)
        sc[S_NEED_SOLVE] = 0.0
        self.timing["solve_s"] += time.perf_counter() - t_start
        self.timing["solves"] += 1

    # -- advancing --------------------------------------------------------------------------------
    def _batch(self, state, i_far, t_end):
        t_start = time.perf_counter()
        try:
            return self._run_batch(state, i_far, t_end)
        finally:
            self.timing["kernel_s"] += time.perf_counter() - t_start
            self.timing["batches"] += 1

    def _run_batch(self, state, i_far, t_end):
        f = state.fields
        if self._scratch is None or self._scratch[0].size != state.n_sites:
            self._scratch = (np.empty(state.n_sites, dtype=np.int64), np.zeros(state.n_sites, dtype=np.uint8),
                             np.zeros(state.n_sites, dtype=np.uint8), np.zeros(state.tree.size, dtype=np.uint8))
        from kmc.kernels.capillary import STENCIL_SIZE
        from kmc.kernels.lattice import N_NEIGHBORS
        cell = kb.Cell(state.lattice, f["site_class"], f["col_state"], f["col_support"], f["cc_bottom"], f["au_column"],
                       f["phi"], f["params"], self.eps, f["move_params"], state.tree, f["tree_alloy"],
                       f["tree_nucleate"], f["tree_moves"], state.tree_offsets, state.clock, state.counters, f["tally"],
                       f["limits"], f["state_counts"], *self._scratch, np.empty(N_NEIGHBORS, dtype=np.int64),
                       np.empty(N_NEIGHBORS, dtype=np.int64), np.empty(STENCIL_SIZE, dtype=np.int64),
                       np.empty(max(STENCIL_SIZE, self.nz), dtype=np.int64), np.empty(self.nz, dtype=np.int64),
                       self.nx, self.ny, self.nz)
        return kloop.run_batch(cell, state.rng, abs(i_far), self.q_v_c, self.c_au, self.EVENTS_PER_CALL, t_end, 2.0)

    @staticmethod
    def _pass_charge(sc, dq):
        """Charge dq (C, reduction positive) through the external circuit."""
        sc[S_CHARGE] += dq
        if dq > 0:
            sc[S_CYCLE_PLATED] += dq
        else:
            sc[S_CYCLE_STRIPPED] -= dq

    @staticmethod
    def _set_voltage(sc, v):
        sc[S_VOLTAGE] = v
        sc[S_VMIN] = min(sc[S_VMIN], v)
        sc[S_VMAX] = max(sc[S_VMAX], v)

    def _advance_step(self, state, step, t_end):
        """Advance within one step until ``t_end`` (s); True if the step ended early (cut-off)."""
        if step["kind"] == "hold":
            return self._advance_hold(state, step, t_end)
        f = state.fields
        sc = f["scalars"]
        current = step["current_a"]
        sc[S_CURRENT] = current
        while state.time_s < t_end:
            t0 = state.time_s
            fresh = bool(sc[S_NEED_SOLVE])
            if fresh:
                self._solve(state, current)
            t_stop = self._batch_end(state, t_end, current)
            if sc[S_CARRIED]:
                code = self._batch(state, current, t_stop)
                if self._book_batch(state, t0, current * (state.time_s - t0)):
                    return True
            elif (current < 0 and not f["na_faces_col"].any()) or f["state_counts"][0] == 0:
                # Nothing can ever carry the current: stripping with no Na left at the electrolyte, or
                # no conductor touching it at all. The double layer on the contact area (C_dl A_c ~ 1e-4
                # of a voxel's charge per volt) takes the voltage to the cut-off at once — or to the
                # solver's bound, which ends the step.
                cutoff = step["cutoff_v"]
                bound = math.copysign(field.VOLTAGE_BOUND_V, -current)
                self._set_voltage(sc, float(cutoff) if cutoff is not None else bound)
                return True
            else:
                code = self._double_layer_step(state, current, t_end)
                if code == STOP_SHORT:
                    return True
            self._follow_stop(state, code, fresh and sc[S_CARRIED], t_stop)
            cutoff = step["cutoff_v"]
            if cutoff is not None and (sc[S_VOLTAGE] - float(cutoff)) * current < 0:  # past it, either way
                return True
        return False

    def _advance_hold(self, state, step, t_end):
        """A potentiostatic hold at the step's V until ``t_end``; True once the current, having reached
        ``min_current``, falls below it.

        The faradaic events run at the current the faces carry at V (re-solved as the faces change);
        the double layer on the contact area charges at once when V jumps to the held value
        (ΔQ = −C_dl A_c ΔV, reduction positive). With no face carrying current (bare CC) only
        nucleation happens, at its hazard at V, until the first nucleus gives a face."""
        f = state.fields
        sc = f["scalars"]
        v_hold = step["voltage_v"]
        while state.time_s < t_end:
            t0 = state.time_s
            fresh = bool(sc[S_NEED_SOLVE])
            if fresh:
                v_before = sc[S_VOLTAGE]
                self._set_voltage(sc, v_hold)
                self._solve(state, 0.0, voltage_v=v_hold)
                if v_before != v_hold:
                    area_c = f["state_counts"][0] * self.params0[kf.P_FACE_AREA]
                    dq = -self.c_dl_f_cm2 * area_c * (v_hold - v_before)
                    sc[S_DL_CHARGE] += dq
                    self._pass_charge(sc, dq)
                sc[S_CURRENT] = sc[S_I_FAR]
                i_min = step["min_current_a"]
                if i_min is not None:
                    if abs(sc[S_I_FAR]) >= i_min:
                        sc[S_HOLD_ABOVE] = 1.0
                    elif sc[S_HOLD_ABOVE]:
                        sc[S_HOLD_ABOVE] = 0.0
                        return True
            i_far = sc[S_I_FAR]
            nuclei0 = state.counters[kb.C_NUCLEATE]
            t_stop = self._batch_end(state, t_end, i_far)
            code = self._batch(state, i_far, t_stop)
            # At a held V a nucleus's charge is current beyond the faces' (which the events share).
            if self._book_batch(state, t0, i_far * (state.time_s - t0)
                                + (state.counters[kb.C_NUCLEATE] - nuclei0) * self.q_v_c):
                return True
            self._follow_stop(state, code, fresh, t_stop)
        return False

    def _batch_end(self, state, t_end, current):
        """Where a batch must stop: ``t_end``, or earlier when the cell would short (E8: wherever Na
        plates, whatever the cell current)."""
        return min(t_end, self._short_time_s(state, t_end))

    def _book_batch(self, state, t0, charge_c):
        """After a batch that began at ``t0``: the charge it passed (C), and the SEI and flaws over its
        time; True if a flaw cracked (the cell has shorted)."""
        self._pass_charge(state.fields["scalars"], charge_c)
        self._grow_sei(state, state.time_s - t0)
        return self._advance_flaws(state, state.time_s - t0)

    def _follow_stop(self, state, code, after_fresh_solve, t_stop):
        """What a batch's stop code calls for: an error (no room), time passing (nothing could happen
        even just after a solve), or a new solve."""
        sc = state.fields["scalars"]
        if code == kloop.STOP_FULL:
            raise KmcError(f"lattice.nz = {self.nz} is too small: the plated Na has filled the domain "
                           f"(at {sc[S_CHARGE] / self.area_cm2 / 3.6:.3g} mAh/cm²)")
        if code == STOP_NO_EVENTS and after_fresh_solve:
            state.clock[0] = t_stop
        elif code in (kloop.STOP_RESOLVE, STOP_NO_EVENTS):
            sc[S_NEED_SOLVE] = 1.0

    def _double_layer_step(self, state, current, t_end):
        """One double-layer step: V moves by at most resolve_dv; nucleation acts at the frozen V."""
        f = state.fields
        sc = f["scalars"]
        v = sc[S_VOLTAGE]
        self._solve(state, current, voltage_v=v)
        # The faces carry what they can in the current's direction (none against it).
        i_far = math.copysign(min(abs(current), max(0.0, sc[S_I_FAR] * math.copysign(1.0, current))), current)
        n_faces = max(1.0, f["state_counts"][0])
        area_c = n_faces * self.params0[kf.P_FACE_AREA]
        dvdt = -(current - i_far) / (self.c_dl_f_cm2 * area_c)
        dt = min(t_end - state.time_s, self.resolve_dv_v / abs(dvdt)) if dvdt != 0 else t_end - state.time_s
        t0 = state.time_s
        t_stop = min(t0 + dt, self._short_time_s(state, t0 + dt))  # E8 at this V, as in a batch
        f["limits"][3] = 1.0
        nuclei0 = state.counters[kb.C_NUCLEATE]
        code = self._batch(state, i_far, t_stop)
        if code == STOP_NO_EVENTS:  # nothing can happen at this V (zero hazard): the step still passes
            state.clock[0] = t_stop
        elapsed = state.time_s - t0
        # A nucleus's voxel needs a q_v the double layer does not hold (C_dl A_c ΔV ~ 1e-4 q_v): it is
        # owed, and the next faradaic events of the current pay it (kmc.kernels.battery).
        state.fields["tally"][kb.T_NUC_DEBT] += state.counters[kb.C_NUCLEATE] - nuclei0
        dq_dl = (current - i_far) * elapsed
        sc[S_DL_CHARGE] += dq_dl
        self._pass_charge(sc, current * elapsed)
        self._grow_sei(state, elapsed)
        sc[S_NEED_SOLVE] = 1.0
        if self._advance_flaws(state, elapsed):  # at the step's V, as it was predicted (the voltage collapses)
            return STOP_SHORT
        self._set_voltage(sc, v - dq_dl / (self.c_dl_f_cm2 * area_c))
        return code if code != STOP_TIME else kloop.STOP_RESOLVE

    def advance_sample(self, state: State, k: int) -> dict | None:
        """Advance to sample k's time; its observables, or None once the protocol has ended."""
        sc = state.fields["scalars"]
        t_k = k * self.sample_every_s
        while not sc[S_ENDED] and state.time_s < t_k:
            i = int(sc[S_STEP])
            step = self.steps[i]
            step_end = sc[S_STEP_START] + step["duration_s"]
            cut = self._advance_step(state, step, min(t_k, step_end))
            if sc[S_SHORTED]:
                break  # the run ends at the short (``_short``)
            if cut or state.time_s >= step_end:
                if step["ends_cycle"]:
                    self._end_cycle(state)
                if i + 1 >= len(self.steps):
                    sc[S_ENDED] = 1.0
                else:
                    sc[S_STEP] = i + 1
                    sc[S_STEP_START] = state.time_s
                    sc[S_NEED_SOLVE] = 1.0
                    sc[S_HOLD_ABOVE] = 0.0
        if sc[S_ENDED]:
            # The protocol has ended (at a sample, or between samples: a cut-off, a short): one last
            # sample of the end state (the voltage at the cut-off), then the run is over.
            if sc[S_END_OBSERVED]:
                return None
            sc[S_END_OBSERVED] = 1.0
        return self.observe(state)

    def _end_cycle(self, state):
        """Close a cycle: its Coulombic efficiency = charge stripped / charge plated since the last."""
        sc = state.fields["scalars"]
        i = int(sc[S_CYCLE])
        per = 1.0 / self.area_cm2 / 3.6  # C -> mAh/cm²
        plated, stripped = sc[S_CYCLE_PLATED] * per, sc[S_CYCLE_STRIPPED] * per
        state.fields["cycle_table"][3 * i:3 * i + 3] = (stripped / plated if plated > 0 else math.nan, plated, stripped)
        sc[S_CYCLE] = i + 1
        sc[S_CYCLE_PLATED] = sc[S_CYCLE_STRIPPED] = 0.0

    # -- observables ------------------------------------------------------------------------------
    def recount(self, state) -> dict:
        """Inventories recounted from the lattice and the per-column Au state (voxels).

        The classification goes to a scratch array (``site_class`` in the result): the kernel's own
        array is left as the kernel maintains it between solves, so observing never changes a run."""
        f = state.fields
        site_class = np.empty(state.n_sites, dtype=np.int64)
        counts = self._classify(state, site_class)
        na = int((state.lattice == NA).sum())
        alloyed = int(np.isin(f["col_state"], (kf.CC_AU_ALLOYED,)).sum()) if self.c_au > 0 else 0
        # E7 inventory: the Na taken from the metal (voxels) plus the debt not yet taken. A thick
        # interphase took it as SEI voxels, which the lattice recounts; a thin one as gaps.
        paid = f["scalars"][S_SEI_PAID]
        if self.sei_continuous and (state.lattice == SEI).sum() - f["scalars"][S_SEI0] != paid:
            raise RuntimeError(f"SEI bookkeeping broken: {paid:.0f} voxels taken, "
                               f"{(state.lattice == SEI).sum() - f['scalars'][S_SEI0]} SEI voxels in the lattice")
        sei = float(paid + f["sei_debt"].sum())
        flaw_now = self._flaw_na_vox(state)
        flaw = float(flaw_now.sum())
        flaw_owed = float(f["flaw_debt"].sum() + (flaw_now - f["flaw_fill"]).sum())  # synced at the next solve
        if abs(f["flaw_fill"].sum() - f["scalars"][S_FLAW_PAID] - f["flaw_debt"].sum()) > 1e-6 * max(1.0, flaw):
            raise RuntimeError(f"flaw bookkeeping broken: {f['flaw_fill'].sum()} voxels in flaws, "
                               f"{f['scalars'][S_FLAW_PAID]} taken + {f['flaw_debt'].sum()} owed")
        return {"na": na, "active": int(counts[CLUSTER_ACTIVE]), "trapped": int(counts[CLUSTER_TRAPPED]),
                "dead": int(counts[CLUSTER_DEAD]), "clusters_on_electrolyte": int(counts[3]), "alloyed_columns": alloyed,
                "site_class": site_class, "sei": sei, "flaw": flaw, "flaw_owed": flaw_owed}

    def check_bookkeeping(self, state, rc) -> None:
        """Charge by events vs charge by lattice recount, and charge passed vs faradaic + double layer."""
        c = state.counters
        sc = state.fields["scalars"]
        by_events = c[kb.C_PLATE] + c[kb.C_NUCLEATE] + self.c_au * c[kb.C_ALLOY] - c[kb.C_STRIP]
        tally = state.fields["tally"]
        by_lattice = (rc["na"] - sc[S_NA0] - tally[kb.T_NA_DEBT] + tally[kb.T_PENDING]
                      + self.c_au * rc["alloyed_columns"]
                      + rc["sei"] - state.fields["sei_debt"].sum()  # E7 debt is still Na in the lattice
                      + rc["flaw"] - rc["flaw_owed"])  # as is E8's
        if abs(by_events - by_lattice) > 1e-6 * max(1.0, by_events):
            raise RuntimeError(f"charge bookkeeping broken: {by_events} voxels by events, {by_lattice} by the lattice")
        passed = sc[S_CHARGE] / self.q_v_c
        faradaic_dl = by_events - tally[kb.T_NUC_DEBT] + sc[S_DL_CHARGE] / self.q_v_c
        # Galvanostatic events are drawn at rate I/q_v: their count matches the charge passed up to
        # Poisson noise; the double layer is exact.
        drawn = c[kb.C_PLATE] + c[kb.C_NUCLEATE] + c[kb.C_ALLOY] + c[kb.C_STRIP]
        if abs(passed - faradaic_dl) > 6.0 * math.sqrt(max(drawn, 1.0)) + 2.0:
            raise RuntimeError(f"charge bookkeeping broken: {passed:.1f} voxels passed, {faradaic_dl:.1f} accounted")

    def observe(self, state) -> dict:
        t_start = time.perf_counter()
        try:
            obs = self._observe(state)
            sc = state.fields["scalars"]
            sc[S_VMIN] = sc[S_VMAX] = sc[S_VOLTAGE]  # the next sample's extremes start here
            # Cycles closed since the last sample go to the store with this sample's records.
            self._new_cycles = range(int(sc[S_CYCLES_REPORTED]), int(sc[S_CYCLE]))
            sc[S_CYCLES_REPORTED] = sc[S_CYCLE]
            self._new_short = bool(sc[S_SHORTED] and not sc[S_SHORT_REPORTED])
            sc[S_SHORT_REPORTED] = sc[S_SHORTED]
            return obs
        finally:
            self.timing["observe_s"] += time.perf_counter() - t_start

    def _observe(self, state) -> dict:
        f = state.fields
        sc = f["scalars"]
        lat3 = state.lattice.reshape(self.nz, self.ny, self.nx)
        rc = self.recount(state)
        self.check_bookkeeping(state, rc)
        counts = np.zeros(4, dtype=np.int64)
        electrolyte_face_counts(state.lattice, rc["site_class"], self.nx, self.ny, self.nz,
                                *self._bands(state.lattice)[0], counts)
        surface, contact, na_contact, void = (int(c) for c in counts)
        surface = max(surface, 1)
        support = np.empty(self.n_cols, dtype=np.int64)
        column_support(state.lattice, self.nx, self.ny, self.nz, support)
        # Pending volume of a sealed layer is spread evenly (it is laid down as a uniform layer).
        thickness = ((lat3 == NA).sum(axis=0) + f["tally"][kb.T_PENDING] / self.n_cols) * self.voxel_um
        mean_t = float(thickness.mean())
        i_a = sc[S_CURRENT]
        vox = self.voxel_mah_cm2 / self.n_cols
        plated = (state.counters[kb.C_PLATE] + state.counters[kb.C_NUCLEATE]
                  + self.c_au * state.counters[kb.C_ALLOY]) * vox
        return {
            "time": state.time_s,
            "charge": sc[S_CHARGE] / self.area_cm2 / 3.6,
            "current_density": i_a / self.area_cm2 * 1e3,
            "voltage": float(sc[S_VOLTAGE]),
            "voltage_min": float(sc[S_VMIN]),
            "voltage_max": float(sc[S_VMAX]),
            "contact_fraction": contact / surface,
            "na_contact_fraction": na_contact / surface,
            "load_fraction": float(np.isin(support, (COLUMN_CC_CONTACT, COLUMN_NA_SUPPORT)).mean()),
            "void_fraction": void / surface,
            "nucleation_density": rc["clusters_on_electrolyte"] / self.area_cm2,
            "thickness_mean": mean_t,
            "thickness_cv": float(thickness.std() / mean_t) if mean_t > 0 else math.nan,
            "max_current_density": float(np.abs(f["pixel_current"]).max()) * 1e3,
            "interfacial_resistance": float(sc[S_R_INT]) if sc[S_R_INT] else math.nan,
            "plated": plated,
            "stripped": state.counters[kb.C_STRIP] * vox,
            "dead_na": rc["dead"] * vox,
            "trapped_na": rc["trapped"] * vox,
            "alloy_na": self.c_au * rc["alloyed_columns"] * vox,
            "sei_na": rc["sei"] * vox,
            "flaw_na": rc["flaw"] * vox,
            "filament_depth": float(f["flaw_front_um"].max()) if self.n_cols else 0.0,
            "short_probability": -math.expm1(-self._expected_cracks(sc)),
            "step": self.steps[int(sc[S_STEP])]["protocol_index"],
        }

    def records(self, state, k):
        """Cycles closed, frames and snapshots due at sample k: (variable, index, value) triples."""
        out = []
        table = state.fields["cycle_table"]
        if getattr(self, "_new_short", False):  # per-run values (index None)
            sc = state.fields["scalars"]
            out += [("shorted", None, 1), ("short_time", None, float(sc[S_SHORT_TIME])),
                    ("short_charge", None, float(sc[S_SHORT_CHARGE])), ("ccd", None, float(sc[S_CCD]))]
        for i in getattr(self, "_new_cycles", ()):
            out += [("coulombic_efficiency", i, float(table[3 * i])), ("charge_plated", i, float(table[3 * i + 1])),
                    ("charge_stripped", i, float(table[3 * i + 2]))]
        # A run that ended early (a short, a cut-off) also keeps its final state: in the next slot of
        # each clock, whose frame_time / snap_time say when it was taken.
        last = bool(state.fields["scalars"][S_ENDED])
        if self.map_every and (k % self.map_every == 0 or (last and -(-k // self.map_every) < self.n_frames)):
            i = -(-k // self.map_every)
            lat3 = state.lattice.reshape(self.nz, self.ny, self.nx)
            f = state.fields
            pending = f["tally"][kb.T_PENDING] / self.n_cols  # a sealed layer's volume, spread evenly
            out += [("thickness_map", i, (((lat3 == NA).sum(axis=0) + pending) * self.voxel_um).astype(np.float32)),
                    ("contact_map", i, (f["pixel_current"].reshape(self.ny, self.nx) > 0).astype(np.float32)),
                    ("current_map", i, (f["pixel_current"].reshape(self.ny, self.nx) * 1e3).astype(np.float32)),
                    ("frame_time", i, state.time_s)]
        if self.snapshot_every and (k % self.snapshot_every == 0
                                    or (last and -(-k // self.snapshot_every) < self.n_snaps)):
            i = -(-k // self.snapshot_every)
            out += [("lattice", i, state.lattice.reshape(self.nz, self.ny, self.nx)), ("snap_time", i, state.time_s)]
        return out
