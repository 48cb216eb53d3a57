"""Named views over a battery run's State: the only place that knows which slot of which array holds what.

A battery State keeps its small numbers in flat float arrays so that a checkpoint is just arrays:
the driver's ``scalars`` (this module's ``S_*``), and the arrays it shares with the kernels —
``tally``, ``limits``, ``state_counts``, ``counters`` (``kmc.kernels.battery_arrays``), the face
kinetics ``params`` (``kmc.kernels.faradaic.P_*``) and the move rates ``move_params``
(``kmc.kernels.moves.M_*``). ``Run`` gives every one of them a name; the rest of the battery
package, its tests and its benchmarks read and write a run through these names only.
"""
from __future__ import annotations

import numpy as np

from kmc.kernels import battery_arrays as ka
from kmc.kernels import contact as kc
from kmc.kernels import faradaic as kf
from kmc.kernels import moves as km
from kmc.kernels.cell import NA, SEI
from kmc.kernels.solver import tree_offsets
from kmc.state import ArraySpec, State, allocate

# Slots of the driver's float64 "scalars" field.
S_VOLTAGE = 0
S_DL_CHARGE = 1
S_CHARGE = 2
S_NEED_SOLVE = 3
S_CARRIED = 4
S_I_FAR = 5
S_R_INT = 6
S_STEP = 7
S_STEP_START = 8
S_ENDED = 9
S_NA0 = 10
S_VMIN = 11
S_VMAX = 12
S_CURRENT = 13
S_HOLD_ABOVE = 14
S_CYCLE = 15
S_CYCLE_PLATED = 16
S_CYCLE_STRIPPED = 17
S_CYCLES_REPORTED = 18
S_SEI0 = 19
S_END_OBSERVED = 20
S_SEI_PAID = 21
S_SHORTED = 22
S_SHORT_TIME = 23
S_SHORT_CHARGE = 24
S_CCD = 25
S_FLAW_PAID = 26
S_SHORT_REPORTED = 27
S_FLAW_HAZARD = 28
S_SHORT_DRAW = 29
S_CCD_FAILURE = 30
S_FAILURE_REPORTED = 31
S_STRESS_ITERATIONS = 32
S_STRESS_UNCONVERGED = 33
N_SCALARS = 34

#: Event counters by name, in the order of ``kmc.kernels.battery_arrays.C_*``.
COUNTERS = ("events", "plate", "alloy", "nucleate", "lifts", "chem_alloy", "moves", "settles", "strip", "refill",
            "lowers")


def _slot(array: str, index: int, doc: str) -> property:
    def get(self):
        return getattr(self, array)[index]

    def put(self, value):
        getattr(self, array)[index] = value

    return property(get, put, doc=doc)


def _field(name: str, doc: str) -> property:
    return property(lambda self: self.state.fields[name], doc=doc)


class Run:
    """A battery State seen by name. Reading a slot gives the array's element (a NumPy scalar, so
    arithmetic is exactly that of indexing); assigning writes it."""

    __slots__ = ("state", "_scalars", "_tally", "_limits", "_counts", "_counters", "_kinetics", "_moves")

    def __init__(self, state: State):
        f = state.fields
        self.state = state
        self._scalars, self._tally, self._limits = f["scalars"], f["tally"], f["limits"]
        self._counts, self._counters = f["state_counts"], state.counters
        self._kinetics, self._moves = f["params"], f["move_params"]

    # -- the driver's scalars ---------------------------------------------------------------------
    voltage_v = _slot("_scalars", S_VOLTAGE, "cell voltage V (V)")
    dl_charge_c = _slot("_scalars", S_DL_CHARGE, "charge on the double layer (C)")
    charge_c = _slot("_scalars", S_CHARGE, "charge passed since the start (C, reduction positive)")
    need_solve = _slot("_scalars", S_NEED_SOLVE, "1 if the next batch needs a new field solve")
    carried = _slot("_scalars", S_CARRIED, "1 if the faces carried I at the last solve (else the double layer)")
    i_far_a = _slot("_scalars", S_I_FAR, "faradaic current at the last solve (A)")
    r_int_ohm_cm2 = _slot("_scalars", S_R_INT, "interfacial resistance at the last solve (Ω·cm²)")
    step = _slot("_scalars", S_STEP, "index of the current step in the flattened protocol")
    step_start_s = _slot("_scalars", S_STEP_START, "time the step started (s)")
    ended = _slot("_scalars", S_ENDED, "1 when the protocol has ended")
    na0_voxels = _slot("_scalars", S_NA0, "Na voxels at the start")
    voltage_min_v = _slot("_scalars", S_VMIN, "lowest V since the last sample (V)")
    voltage_max_v = _slot("_scalars", S_VMAX, "highest V since the last sample (V)")
    current_a = _slot("_scalars", S_CURRENT, "cell current (A, reduction positive): the step's, or a hold's faradaic")
    hold_above = _slot("_scalars", S_HOLD_ABOVE, "1 once a hold's current has reached its min_current")
    cycles_done = _slot("_scalars", S_CYCLE, "cycles completed")
    cycle_plated_c = _slot("_scalars", S_CYCLE_PLATED, "reduction charge passed in the current cycle (C)")
    cycle_stripped_c = _slot("_scalars", S_CYCLE_STRIPPED, "oxidation charge passed in the current cycle (C)")
    cycles_reported = _slot("_scalars", S_CYCLES_REPORTED, "cycles already handed to the store")
    sei0_voxels = _slot("_scalars", S_SEI0, "SEI voxels at the start")
    end_observed = _slot("_scalars", S_END_OBSERVED, "1 once the state where the protocol ended was observed")
    sei_paid_voxels = _slot("_scalars", S_SEI_PAID, "Na voxels taken from the metal by E7 (SEI voxels or gaps)")
    shorted = _slot("_scalars", S_SHORTED, "1 once a filament has shorted the cell (E8)")
    short_time_s = _slot("_scalars", S_SHORT_TIME, "time of the short (s)")
    short_charge_mah_cm2 = _slot("_scalars", S_SHORT_CHARGE, "charge passed at the short (mAh/cm²)")
    ccd_ma_cm2 = _slot("_scalars", S_CCD, "current density of the ccd level that ended the run (mA/cm²)")
    ccd_failure = _slot("_scalars", S_CCD_FAILURE,
                        "how the run failed: 0 not, 1 a short on plating, 2 voids on stripping (a ccd level's strip "
                        "not carried, under model.refill = critical_current)")
    failure_reported = _slot("_scalars", S_FAILURE_REPORTED, "1 once a failure by voids has been handed to the store")
    stress_iterations = _slot("_scalars", S_STRESS_ITERATIONS,
                              "field solves spent iterating deposit stress and plating to their fixed point (PHYSICS M)")
    stress_unconverged = _slot("_scalars", S_STRESS_UNCONVERGED,
                               "plating solves whose stress-field iteration stopped at its cap, unconverged")
    flaw_paid_voxels = _slot("_scalars", S_FLAW_PAID, "Na voxels taken from the metal into flaws (E8)")
    short_reported = _slot("_scalars", S_SHORT_REPORTED, "1 once the short has been handed to the store")
    flaw_hazard = _slot("_scalars", S_FLAW_HAZARD, "Σ over pixels of the probability that a flaw has cracked (E8)")
    short_draw = _slot("_scalars", S_SHORT_DRAW, "the cell shorts when its expected cracked flaws reach this Exp(1)")

    # -- what the kernels keep ----------------------------------------------------------------------
    na_debt_voxels = _slot("_tally", ka.T_NA_DEBT, "Na owed to chemical alloying, not yet removed from the lattice")
    pending_voxels = _slot("_tally", ka.T_PENDING, "Na plated into a sealed interface, not yet laid down as a layer")
    sealed = _slot("_tally", ka.T_SEALED, "1 once a search found no gap reachable from a plating face")
    under_cc_voxels = _slot("_tally", ka.T_UNDER_CC, "Na voxels right under the collector")
    nucleus_debt_voxels = _slot("_tally", ka.T_NUC_DEBT, "nuclei formed on the double layer, not yet paid by it")
    stop_on_nucleus = _slot("_limits", ka.L_STOP_ON_NUCLEUS, "1: a nucleus ends the batch")
    faces = _slot("_counts", ka.N_FACES, "contact faces (kept up to date by the kernels)")
    na_supports = _slot("_counts", ka.N_NA_SUPPORTS, "Na-support columns")
    cc_contacts = _slot("_counts", ka.N_CC_CONTACTS, "collector-electrolyte contact columns")
    direction = _slot("_kinetics", kf.P_DIRECTION, "+1 while the cell current plates, -1 while it strips")
    vt_v = _slot("_kinetics", kf.P_VT, "V + U_CE frozen for the batch (V)")
    na_stress_mpa = _slot("_kinetics", kf.P_SIGMA_NA, "σ_Na of the Na supports frozen for the batch (MPa)")
    moves_na_stress_mpa = _slot("_moves", km.M_SIGMA_NA, "σ_Na as the moves see it (MPa)")
    loaded_flow = _slot("_moves", km.M_LOADED_FLOW, "1 if loaded flow may take volume from the layer")
    bearing_stress_mpa = _slot("_moves", km.M_SIGMA_BEARING,
                               "the load over Na supports and thinned columns (MPa; the refill law's σ_c)")

    pore_depth_voxels = _slot("_limits", ka.L_PORE_DEPTH, "collector pore layers Na may fill (E9)")
    least_stress = _slot("_limits", ka.L_LEAST_STRESS, "1: E1 inside deposits by the per-solve stress map")
    deposit_columns = _slot("_limits", ka.L_DEPOSIT_COLS, "deposit pixels at the last solve")

    def freeze_limits(self, faces, supports, fraction, stop_on_nucleus, floor, capacity_a) -> None:
        """What a solve freezes for the batches after it (``kmc.kernels.battery_arrays.L_*``; the pore
        depth is set with the stress, ``Driver._load_columns``)."""
        self._limits[:ka.L_PORE_DEPTH] = (faces, supports, fraction, stop_on_nucleus, floor, capacity_a)

    def set_counts(self, faces, na_supports, cc_contacts) -> None:
        self._counts[:] = (faces, na_supports, cc_contacts)

    # -- event counters -------------------------------------------------------------------------------
    def count(self, name: str) -> int:
        """Events of one kind so far (``COUNTERS``)."""
        return self._counters[COUNTERS.index(name)]

    def add_count(self, name: str, n: int) -> None:
        """Count ``n`` events of one kind done outside the kernels (``COUNTERS``)."""
        self._counters[COUNTERS.index(name)] += n

    def counts(self) -> dict[str, int]:
        """Every event counter by name."""
        return {name: int(self._counters[i]) for i, name in enumerate(COUNTERS)}

    # -- arrays -----------------------------------------------------------------------------------------
    lattice = property(lambda self: self.state.lattice, doc="uint8 voxel states, flat, x fastest")
    site_class = _field("site_class", "cluster class per site (kernels' array, redone at solves)")
    na_contact = _field("na_contact", "contact state of each Na voxel's faces (uint8, kmc.kernels.contact; "
                        "kept under model.contact_quality = face_state, all 0 otherwise)")
    col_state = _field("col_state", "state of the collector's lower face per column (faradaic.CC_*)")
    col_support = _field("col_support", "load-bearing kind per column (interface.COLUMN_*)")
    cc_bottom = _field("cc_bottom", "z of the collector's lowest voxel per column")
    au_column = _field("au_column", "1 where the collector carries Au")
    alloy_time_s = _field("alloy_time_s", "when each column's Au became Na2Au (s; NaN: not Na2Au), the lateral "
                          "front's clock (model.alloy = phases, kmc.battery.alloy)")
    dealloy_steps = _slot("_tally", ka.T_DEALLOY, "de-alloying steps so far (model.alloy = phases)")
    se_surface_um = _field("se_surface_um", "the electrolyte's continuous surface per column (µm above z = 0)")
    side_face_weight = _field("side_face_weight", "area of a side face of each electrolyte column / a² (1 under "
                              "model.face_area = staircase; geometry.side_face_weight)")
    phi = _field("phi", "electrolyte potential per pixel at the last solve (V)")
    pixel_current = _field("pixel_current", "current density per pixel at the last solve (A/cm²)")
    na_current = _field("na_current", "current density the pixel's Na faces carry (A/cm²)")
    alloy_current = _field("alloy_current", "current density the pixel's unalloyed-Au faces carry into the alloy "
                           "(A/cm²; E3)")
    na_faces_col = _field("na_faces_col", "Na-electrolyte faces per column at the last solve")
    sei_nm = _field("sei_nm", "E7 interphase per column (nm of Na consumed per face)")
    sei_debt = _field("sei_debt", "Na consumed by E7 not yet taken from the lattice (voxels)")
    flaw_front_um = _field("flaw_front_um", "depth Na has reached in each pixel's flaws (µm)")
    flaw_charge_c_cm2 = _field("flaw_charge_c_cm2", "slot law: cathodic charge passed at each pixel's flaw mouths "
                               "while the cell plates (C/cm²; 0 under the v3 law)")
    flaw_cracked = _field("flaw_cracked", "cracked depth bins per pixel (uint8, pixel-major)")
    flaw_block = _field("flaw_block", "per pixel the lowest and highest cracked bin runs (two halves)")
    flaw_fill = _field("flaw_fill", "expected Na in each pixel's flaws at the last sync (voxels)")
    flaw_debt = _field("flaw_debt", "Na pressed into flaws not yet taken from the lattice (voxels)")
    deposit_stress_mpa = _field("deposit_stress_mpa", "σ of each deposit pixel at the last solve (MPa; inf: none)")
    insertion_target = _field("insertion_target", "where each deposit pixel's plated volume goes (deposit_stress)")
    flow_rate_factor = _field("flow_rate_factor",
                              "the flow stress's rate factor (ε̇/ε̇_ref)^(1/n) per pixel at the last plating solve")
    cycle_table = _field("cycle_table", "CE, plated, stripped (mAh/cm²) of cycle i at [3i, 3i + 3)")
    kinetics = _field("params", "face kinetics of the kernels (faradaic.P_*)")
    moves = _field("move_params", "move rates of the kernels (moves.M_*)")
    tally = _field("tally", "the kernels' tally (battery_arrays.T_*)")
    limits = _field("limits", "what the last solve froze (battery_arrays.L_*)")
    state_counts = _field("state_counts", "faces and columns kept by the kernels (battery_arrays.N_*)")
    plate_tree = property(lambda self: self.state.tree, doc="sum tree of E1/E6")
    alloy_tree = _field("tree_alloy", "sum tree of E3")
    nucleate_tree = _field("tree_nucleate", "sum tree of E2")
    move_tree = _field("tree_moves", "sum tree of E4")

    @property
    def trees(self) -> tuple:
        """Every event class's sum tree (the tree list of ``kmc.kernels.battery_update.refresh``)."""
        return self.state.tree, self.alloy_tree, self.nucleate_tree, self.move_tree

    @property
    def time_s(self) -> float:
        return self.state.time_s


def state_spec(p, n_cycles: int) -> ArraySpec:
    """Every array of a battery State, name -> (shape, dtype), from the sizes alone (nothing allocated):
    ``new_state`` allocates from it; the store's checkpoint slots and the memory estimate read it."""
    n = p.nx * p.ny * p.nz
    offsets = tree_offsets(n)
    f64, i64, i8, u8 = np.dtype(np.float64), np.dtype(np.int64), np.dtype(np.int8), np.dtype(np.uint8)
    tree = ((int(offsets[-1]),), f64)
    cols = (p.n_cols,)
    return {
        "lattice": ((n,), u8), "tree": tree, "tree_offsets": (offsets.shape, i64), "clock": ((1,), f64),
        "counters": ((ka.N_COUNTERS,), i64),
        "field.tree_alloy": tree, "field.tree_nucleate": tree, "field.tree_moves": tree,
        "field.move_params": (p.moves.shape, f64),
        "field.site_class": ((n,), i8), "field.na_contact": ((n,), u8), "field.col_state": (cols, u8),
        "field.col_support": (cols, i64),
        "field.cc_bottom": (cols, i64), "field.au_column": (cols, u8), "field.alloy_time_s": (cols, f64),
        "field.se_surface_um": (cols, f64), "field.side_face_weight": (cols, f64),
        "field.phi": (cols, f64), "field.pixel_current": (cols, f64), "field.params": (p.kinetics.shape, f64),
        "field.tally": ((ka.N_TALLY,), f64), "field.limits": ((ka.N_LIMITS,), f64), "field.state_counts": ((3,), f64),
        # CE, plated, stripped (mAh/cm²) of cycle i at [3i, 3i + 3): flat, as checkpoints store arrays
        "field.cycle_table": ((3 * max(n_cycles, 1),), f64),
        "field.sei_nm": (cols, f64), "field.sei_debt": (cols, f64),
        "field.na_faces_col": (cols, f64), "field.na_current": (cols, f64),
        "field.alloy_current": (cols, f64),
        "field.flaw_front_um": (cols, f64), "field.flaw_charge_c_cm2": (cols, f64),
        "field.flaw_cracked": ((p.n_cols * p.depth_grid.n_bins,), u8),
        "field.flaw_block": ((2 * p.n_cols,), i64),  # per pixel the lowest cracked bin run, then the highest
        "field.flaw_fill": (cols, f64), "field.flaw_debt": (cols, f64),
        "field.deposit_stress_mpa": (cols, f64), "field.insertion_target": (cols, i64),
        "field.flow_rate_factor": (cols, f64),
        "field.scalars": ((N_SCALARS,), f64),
    }


def new_state(p, geo, rng: np.random.Generator, seed: int, n_cycles: int) -> State:
    """A fresh battery State: the geometry's lattice, the parameters' kinetics and moves, every field."""
    arrays = allocate(state_spec(p, n_cycles))  # zeroed; what is not zero at the start is set below
    lattice = arrays["lattice"]
    lattice[:] = geo.lattice.ravel()
    arrays["tree_offsets"][:] = tree_offsets(lattice.size)
    f = {name.removeprefix("field."): a for name, a in arrays.items() if name.startswith("field.")}
    f["move_params"][:] = p.moves
    f["params"][:] = p.kinetics
    f["site_class"][:] = -1
    if p.face_state:
        f["na_contact"][:] = kc.initial_contact(lattice)  # PHYSICS §4: the initial Na is pressed in
    f["col_state"][:] = kf.CC_AU if p.c_au > 0 else kf.CC_BARE
    f["cc_bottom"][:] = (geo.cc_offset + geo.cc_shape).ravel()
    f["au_column"][:] = geo.au_nm.ravel() > 0
    f["alloy_time_s"][:] = np.nan
    f["se_surface_um"][:] = geo.se_surface_um.ravel()
    f["side_face_weight"][:] = geo.side_face_weight.ravel() if p.true_face_area else 1.0
    f["cycle_table"][:] = np.nan
    f["flaw_block"][p.n_cols:] = -1
    scalars = f["scalars"]
    scalars[S_VOLTAGE] = scalars[S_VMIN] = scalars[S_VMAX] = -p.u_ce_v  # at rest: V + U_CE = 0
    scalars[S_NEED_SOLVE] = 1.0
    scalars[S_NA0] = float((lattice == NA).sum())
    scalars[S_SEI0] = float((lattice == SEI).sum())
    scalars[S_SHORT_DRAW] = rng.exponential()  # E8: the cell's weakest link (kmc.flaws)
    return State.from_arrays("battery", (p.nx, p.ny, p.nz), False, arrays, rng, {"seed": int(seed)})
