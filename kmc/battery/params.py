"""Materials + scenario -> the battery model's parameters: the one place where units are converted.

Everything the driver, the losses and the observables need is computed here once, from the resolved
scenario (in the units of its keys) and the material table, into a frozen ``Params``: lengths of the
field solve in cm, currents in A, charges in C, potentials in V, stresses in MPa, times in s; each
field's name carries its unit. The kernels' own parameter arrays (face kinetics ``faradaic.P_*``,
moves ``moves.M_*``, pair energies) are built here too, and copied into every new State.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kmc import field, flaws, pores, units
from kmc.battery import alloy
from kmc.geometry import check_foil_pressure, collector_hardness_mpa
from kmc.kernels import faradaic as kf
from kmc.kernels import moves as km
from kmc.kernels.capillary import EPS_AU, EPS_SIZE
from kmc.kernels.cell import CC, GAP, NA, SE, SEI


@dataclass(frozen=True)
class Params:
    """The battery model's parameters (units in the names; arrays are copied into each State)."""

    # lattice and cell
    nx: int
    ny: int
    nz: int
    voxel_um: float
    n_cols: int
    area_cm2: float  #: projected area of the domain
    face_area_cm2: float  #: a² (one voxel face)
    temperature_k: float
    pressure_mpa: float  #: stack pressure P
    hardness_mpa: float  #: collector hardness H (by form)
    u_ce_v: float  #: counter electrode potential vs Na/Na⁺
    molar_volume_cm3_mol: float  #: Na
    q_v_c: float  #: charge of one Na voxel, F a³/V_m
    voxel_mah_cm2: float  #: capacity of one voxel layer over the whole area
    plane: field.Plane  #: the interface plane over the electrolyte slab (field solve)
    c_dl_f_cm2: float  #: double-layer capacitance
    c_au: float  #: a column's Au inventory, in Na voxels
    # E3 under model.alloy = "phases" (kmc.battery.alloy): NaAu2 → NaAu → Na2Au, a lateral front, de-alloying
    alloy_phases: bool
    alloy_front_s_per_column: float  #: a/v: time for the alloy front to cross one column (s); inf without spreading
    dealloying_potential_v: float  #: V + U_CE above which the alloy facing the electrolyte gives back its Na
    alloy_layer_nm: np.ndarray  #: thickness of a column's Au layer after k of ALLOY_STEPS steps (nm), k = 0..4
    kinetics: np.ndarray  #: face kinetics, ``faradaic.P_*`` (copied into State.fields["params"])
    eps: np.ndarray  #: capillary pair energies by state, in units of the energy scale
    moves: np.ndarray  #: move rates, ``moves.M_*`` (copied into State.fields["move_params"])
    nu_cap_uncapped_s: float  #: capillary attempt rate before the time-scale cap (1/s)
    # E7: the interphase
    sei_nm_per_s: float  #: k = k_sei V_m/F
    sei_limit_nm: float  #: δ0 of the self-limiting law
    sei_continuous: bool
    voxel_nm: float
    # E8: the cell's flaw population (kmc.flaws)
    flaws_per_pixel: float  #: n_flaw a²
    cell_flaws: float  #: n_flaw A_cell
    crack_opening_um: float
    k_ic_mpa_m05: float
    creep_sigma_ref_mpa: float
    creep_rate_ref_s: float  #: Na's creep rate at σ_ref and T (1/s)
    creep_n: float
    depth_grid: flaws.DepthGrid
    crack_need_mpa: np.ndarray  #: per depth bin: K_IC/(1.12 √(π c))
    crack_flow_mpa: np.ndarray  #: per depth bin: extrusion pressure at 1 A/cm²
    mpa_per_volt: float  #: F/V_m: the flaw pressure per volt of overpotential
    fill_um_per_c_cm2: float  #: depth Na reaches into a plating pixel's flaws per C/cm²: V_m/F (v3 law)
    slot_law: bool  #: model.flaw_law = "slot" (PHYSICS v4 E8): flaws fill as slots from any plating face
    flaw_fill_c_cm2: np.ndarray  #: slot law, per depth bin: the charge at the mouth that fills it, Q(c_b); empty (v3)
    slot_opening_per_sqrt_um: float  #: slot law: k of δ_c = k √c (√µm); NaN under the v3 law
    flaw_trace: bool  #: model.flaw_mouth = "trace": flaws deeper than their pixel's plating patch vent (kmc.flaws)
    # E9: pores of a porous collector (kmc.pores); None without pores
    pore_entry_mpa: float | None
    pore_um_per_mpa: float | None
    # E1 inside deposits (PHYSICS §5 M; kmc.kernels.deposit_stress)
    least_stress: bool  #: model.insertion = "least_stress"
    refill_law: bool  #: model.refill = "critical_current" (E4 refill of interface voids, ``moves``)
    face_state: bool  #: model.contact_quality = "face_state" (PHYSICS §4: χ a state of each face, ``contact``)
    true_face_area: bool  #: model.face_area = "true_area" (side faces at the relief's true area, ``geometry``)
    size_effect_strength_mpa: float  #: σ_s of σ_f(h) = σ_ref + σ_s (h/1 µm)^(−β)
    size_effect_exponent: float  #: β
    edge_tension_n_m: float  #: −γ(cos θ_CC + cos θ_SE) at the bare collector (N/m; σ_edge = this / h)
    edge_tension_au_n_m: float  #: the same where the collector carries Au
    # numerics
    resolve_fraction: float
    resolve_dv_v: float
    solver_rtol: float
    voltage_bound_v: float  #: |V| the faces may need to carry the current; beyond, the double layer
    capacity_drift_factor: float
    events_per_batch: int


def build(scenario, max_current_a: float) -> Params:
    """The parameters of a battery scenario. ``max_current_a``: the protocol's largest |current| (A),
    which caps the capillary attempt rate (time-scale separation, ``numerics.max_capillary_rate_ratio``)."""
    d, m = scenario.data, scenario.materials
    lat, col, num = d["lattice"], d["collector"], d["numerics"]
    nx, ny, nz = int(lat["nx"]), int(lat["ny"]), int(lat["nz"])
    voxel_um = float(lat["voxel_um"])
    n_cols = nx * ny
    el, na = m[d["electrolyte"]["material"]], m["na"]
    temperature_k = units.celsius_to_kelvin(float(d["conditions"]["temperature_c"]))
    pressure_mpa = float(d["conditions"]["stack_pressure_mpa"])
    counter = d["counter"]["material"]
    vm = float(na["molar_volume_cm3_mol"])
    q_v_c = units.voxel_charge_c(voxel_um, vm)
    voxel_mah_cm2 = units.thickness_to_capacity_mah_cm2(voxel_um, vm)
    sigma_s_cm = units.conductivity_s_cm(el, temperature_k)
    au_nm = float(col.get("seed_layer_nm", 0.0)) if col.get("seed_layer") == "au" else 0.0
    alloy_phases = d["model"].get("alloy", "v3") == "phases"
    if alloy_phases:  # the inventory from the Au's moles: Na2Au holds 2 Na per Au (kmc.battery.alloy)
        au_mah = alloy.capacity_mah_cm2(au_nm, float(m["au"]["au_molar_volume_cm3_mol"]))
    else:
        au_mah = float(m["au"]["alloy_capacity_mah_cm2_per_100nm"]) * au_nm / 100.0
    creep_sigma_ref = float(na["creep_flow_stress_mpa"])
    creep_rate_ref = units.creep_strain_rate_s(creep_sigma_ref, na, temperature_k)
    # The v4 options of the model (each default keeps v3).
    slot_law = d["model"].get("flaw_law", "metal_front") == "slot"
    flaw_trace = slot_law and d["model"].get("flaw_mouth", "pixel") == "trace"
    least_stress = d["model"].get("insertion", "nearest_gap") == "least_stress"
    refill_law = d["model"].get("refill", "loaded_flow") == "critical_current"
    face_state = d["model"].get("contact_quality", "floor") == "face_state"
    true_face_area = d["model"].get("face_area", "true_area") == "true_area"
    k_ic = float(el["k_ic_mpa_m05"])
    if slot_law:  # PHYSICS v4 E8: Pareto depths of the strength modulus, δ_c(c) = k √c per depth bin
        depth_grid = flaws.ParetoDepthGrid(float(el["flaw_scale_um"]), float(el["strength_weibull_modulus"]))
        slot_k = flaws.slot_opening_per_sqrt_um(k_ic, float(el["youngs_modulus_gpa"]))
        opening = slot_k * np.sqrt(depth_grid.centres_um)
        fill_thresholds = flaws.slot_fill_charge_c_cm2(depth_grid.centres_um, opening, vm)
    else:
        depth_grid = flaws.DepthGrid(float(el["flaw_scale_um"]), float(el["flaw_shape"]))
        slot_k, opening, fill_thresholds = math.nan, float(el["crack_opening_um"]), np.empty(0)
    crack_need, crack_flow = flaws.crack_criterion_tables(
        depth_grid, k_ic, opening, creep_sigma_ref, creep_rate_ref, float(na["creep_stress_exponent"]), vm)
    hardness_mpa = collector_hardness_mpa(m, col["material"], col["form"])
    if col["form"] == "foil" and not col.get("initial_na_um"):
        check_foil_pressure(pressure_mpa, hardness_mpa)  # before anything is built or printed
    moves, nu_cap = _move_params(d, na, voxel_um, temperature_k, max_current_a / q_v_c / n_cols, refill_law)
    pore_entry = pore_rate = None
    if col["form"] == "pellet" and float(col.get("porosity", 0.0)) > 0.0:
        r_p = float(m[col["material"]]["pore_radius_um"])
        pore_entry = pores.entry_pressure_mpa(float(na["surface_energy_j_m2"]),
                                              float(na[f"pair_energy_na_{col['material']}_j_m2"]), r_p)
        pore_rate = pores.extrusion_um_per_mpa(r_p, creep_sigma_ref, float(na["size_effect_strength_mpa"]),
                                               float(na["size_effect_exponent"]))
    return Params(
        nx=nx, ny=ny, nz=nz, voxel_um=voxel_um, n_cols=n_cols, area_cm2=n_cols * (voxel_um * 1e-4) ** 2,
        face_area_cm2=(voxel_um * 1e-4) ** 2, temperature_k=temperature_k, pressure_mpa=pressure_mpa,
        hardness_mpa=hardness_mpa,
        u_ce_v=float(m["na_counter" if counter == "na" else counter]["potential_v"]), molar_volume_cm3_mol=vm,
        q_v_c=q_v_c, voxel_mah_cm2=voxel_mah_cm2,
        plane=field.Plane(nx, ny, voxel_um * 1e-4, float(d["electrolyte"]["thickness_um"]) * 1e-4, sigma_s_cm),
        c_dl_f_cm2=float(el["double_layer_capacitance_uf_cm2"]) * 1e-6, c_au=au_mah / voxel_mah_cm2,
        alloy_phases=alloy_phases,
        alloy_front_s_per_column=alloy.front_s_per_column(voxel_um, float(m["au"]["alloy_spread_rate_um_s"])),
        dealloying_potential_v=float(m["au"]["dealloying_potential_v"]),
        alloy_layer_nm=alloy.layer_nm_by_step(au_nm, m["au"]),
        kinetics=_kinetics(m, el, col, vm, voxel_um, temperature_k, pressure_mpa, least_stress, face_state,
                           alloy_phases),
        eps=_pair_energies(na, col["material"]), moves=moves, nu_cap_uncapped_s=nu_cap,
        # E7: the interphase on a Na face grows as dδ/dt = k/(1 + δ/δ0) (self-limiting) or k
        # (continuous), δ the thickness of Na consumed, k = k_sei V_m/F.
        sei_nm_per_s=float(el["sei_rate_ma_cm2"]) * 1e-3 * vm / units.F * 1e7,
        sei_limit_nm=float(el["sei_limit_nm"]), sei_continuous=el["sei_kind"] == "continuous",
        voxel_nm=voxel_um * 1e3,
        flaws_per_pixel=float(el["flaw_density_cm2"]) * (voxel_um * 1e-4) ** 2,
        cell_flaws=float(el["flaw_density_cm2"]) * float(d["conditions"]["cell_area_cm2"]),
        crack_opening_um=float(el["crack_opening_um"]), k_ic_mpa_m05=float(el["k_ic_mpa_m05"]),
        creep_sigma_ref_mpa=creep_sigma_ref, creep_rate_ref_s=creep_rate_ref,
        creep_n=float(na["creep_stress_exponent"]), depth_grid=depth_grid, crack_need_mpa=crack_need,
        crack_flow_mpa=crack_flow, mpa_per_volt=flaws.overpotential_pressure_mpa(1.0, vm),
        # Na reaches into a plating pixel's flaws as fast as its metal thickens: V_m/F per coulomb.
        fill_um_per_c_cm2=vm / units.F * 1e4,
        slot_law=slot_law, flaw_fill_c_cm2=fill_thresholds, slot_opening_per_sqrt_um=slot_k, flaw_trace=flaw_trace,
        pore_entry_mpa=pore_entry, pore_um_per_mpa=pore_rate,
        least_stress=least_stress, refill_law=refill_law, face_state=face_state, true_face_area=true_face_area,
        size_effect_strength_mpa=float(na["size_effect_strength_mpa"]),
        size_effect_exponent=float(na["size_effect_exponent"]),
        edge_tension_n_m=_edge_tension_n_m(na, col["material"]), edge_tension_au_n_m=_edge_tension_n_m(na, "au"),
        resolve_fraction=float(num["resolve_area_fraction"]), resolve_dv_v=float(num["resolve_dv_mv"]) * 1e-3,
        solver_rtol=float(num["solver_rtol"]), voltage_bound_v=float(num["voltage_bound_v"]),
        capacity_drift_factor=float(num["capacity_drift_factor"]), events_per_batch=int(num["events_per_batch"]),
    )


def _edge_tension_n_m(na, collector: str) -> float:
    """−γ(cos θ_CC + cos θ_SE) (N/m), the meniscus term of a deposit's free edge (PHYSICS §5 M), with
    Young–Dupré's cos θ_X = W_adh/γ − 1 and W_adh = −pair_energy_na_X: = pair_CC + pair_SE + 2γ."""
    gamma = float(na["surface_energy_j_m2"])
    return float(na[f"pair_energy_na_{collector}_j_m2"]) + float(na["pair_energy_na_se_j_m2"]) + 2.0 * gamma


def _kinetics(m, el, col, vm, voxel_um, temperature_k, pressure_mpa, deposit_stress: bool,
              face_state: bool, alloy_phases: bool) -> np.ndarray:
    """The face-kinetics array of the kernels (``faradaic.P_*``; P_VT and P_SIGMA_NA are set at solves)."""
    metal = m[col["material"]]
    p = np.zeros(kf.N_PARAMS)
    p[kf.P_F] = units.F / (units.R * temperature_k)
    p[kf.P_J0_NA] = float(el["j0_ma_cm2"]) * 1e-3
    p[kf.P_J0_AU] = float(m["au"]["j0_ma_cm2"]) * 1e-3
    p[kf.P_ALPHA] = float(el["transfer_coefficient"])
    p[kf.P_U_ALLOY] = float(m["au"]["alloying_potential_v"])
    p[kf.P_SIGMA_CHI] = float(el["contact_stress_mpa"])
    p[kf.P_CHI_FLOOR] = float(el["unloaded_contact_quality"])
    p[kf.P_STRESS_V_PER_MPA] = units.mpa_to_mv(1.0, vm) * 1e-3
    p[kf.P_PRESSURE] = pressure_mpa
    p[kf.P_FACE_AREA] = (voxel_um * 1e-4) ** 2
    p[kf.P_J0_NUC] = float(metal["nucleation_prefactor_cm2_s"])
    p[kf.P_B_NUC] = float(metal["nucleation_barrier_v2"])
    p[kf.P_DIRECTION] = 1.0
    p[kf.P_SEI_J0_RATIO] = float(el["sei_exchange_ratio"])
    p[kf.P_DEPOSIT_STRESS] = 1.0 if deposit_stress else 0.0
    # χ a state of each Na face, with no floor (the floor is the default model's, "floor")
    p[kf.P_FACE_STATE] = 1.0 if face_state else 0.0
    # E3 by phases: Na–Au steps, and de-alloying above its potential (switched on at solves: P_DEALLOY_ON)
    p[kf.P_ALLOY_PHASES] = 1.0 if alloy_phases else 0.0
    p[kf.P_U_DEALLOY] = float(m["au"]["dealloying_potential_v"])
    return p


def _pair_energies(na, collector_material) -> np.ndarray:
    """Capillary pair energies of Na with each state (``capillary``), in units of the energy scale."""
    scale = float(na["capillary_energy_scale_j_m2"])
    eps = np.zeros(EPS_SIZE)
    eps[GAP] = float(na["pair_energy_na_gap_j_m2"]) / scale
    eps[NA] = float(na["pair_energy_na_na_j_m2"]) / scale
    eps[SE] = eps[SEI] = float(na["pair_energy_na_se_j_m2"]) / scale
    eps[CC] = float(na[f"pair_energy_na_{collector_material}_j_m2"]) / scale
    eps[EPS_AU] = float(na["pair_energy_na_au_j_m2"]) / scale
    return eps


def _move_params(d, na, voxel_um, temperature_k, faradaic_per_column_s, refill_law: bool):
    """The moves' array (``moves.M_*``) and the uncapped capillary rate (1/s): creep constant at T,
    capillary rate, stress scale, diffusion (v3) or the refill law's rate per MPa of σ_c
    (``model.refill = "critical_current"``). Capillary attempts are capped at a multiple of the
    faradaic event rate per column at the protocol's largest current (time-scale separation; at rest
    the same cap applies)."""
    k_l = float(na["creep_geometric_factor"])
    sigma_ref = float(na["creep_flow_stress_mpa"])
    a_m = voxel_um * 1e-6
    capillary_stress_mpa = float(na["surface_energy_j_m2"]) / a_m * 1e-6
    nu_cap = k_l * units.creep_strain_rate_s(capillary_stress_mpa, na, temperature_k)
    cap = float(d["numerics"]["max_capillary_rate_ratio"]) * faradaic_per_column_s
    mp = np.zeros(km.N_MOVE_PARAMS)
    mp[km.M_NU_CAP] = min(nu_cap, cap) if cap > 0 else nu_cap
    mp[km.M_CREEP_K] = k_l * units.creep_strain_rate_s(sigma_ref, na, temperature_k)
    mp[km.M_SIGMA_REF] = sigma_ref
    mp[km.M_CREEP_N] = float(na["creep_stress_exponent"])
    mp[km.M_STRESS_PER_E] = float(na["capillary_energy_scale_j_m2"]) / a_m * 1e-6
    if refill_law:
        # E4 refill law: a void pixel refills at r = j_r a²/q_v (``kmc.kernels.moves``), j_r per MPa of
        # σ_c here; E4c one-voxel diffusion is off.
        mp[km.M_REFILL_LAW] = 1.0
        q_v_c = units.voxel_charge_c(voxel_um, float(na["molar_volume_cm3_mol"]))
        j_r_a_cm2_per_mpa = units.refill_current_density_ma_cm2(1.0, na, temperature_k) * 1e-3
        mp[km.M_REFILL_PER_MPA] = j_r_a_cm2_per_mpa * (voxel_um * 1e-4) ** 2 / q_v_c
    else:
        mp[km.M_DIFF_PER_MPA] = units.diffusion_hop_rate_s(1.0, na, temperature_k, voxel_um)
    return mp, nu_cap


def sampling(output: dict, duration_s: float, max_current_density_ma_cm2: float) -> float:
    """The sampling interval (s): ``output.sample_every_s``, or — sampling in charge on a clock in
    time — the time to pass ``output.sample_every_mah_cm2`` at the protocol's largest current density,
    so every step is sampled at least that densely in charge; 500 samples by default."""
    every = float(output.get("sample_every_s") or duration_s / 500.0)
    if output.get("sample_every_mah_cm2") and not output.get("sample_every_s") and max_current_density_ma_cm2 > 0:
        every = float(output["sample_every_mah_cm2"]) * 3600.0 / max_current_density_ma_cm2
    return every


def samples(duration_s: float, every_s: float) -> int:
    """Samples at 0, Δt, 2Δt, ... up to the first at or past the protocol's end."""
    return int(math.ceil(duration_s / every_s * (1 - 1e-12))) + 1
