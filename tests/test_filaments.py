"""Filament initiation and shorts (PHYSICS.md §3 flaws, §5 E8; §6 ccd), through the production driver.

- The E8 formulas against hand-computed values (1 mV ≈ 4 MPa, p_flow, Griffith–Inglis, fill time).
- Flaws of one depth c under a uniform plating current: the cell shorts after the fill time E8 gives,
  and only above the current where 1.12 p √(πc) reaches K_IC.
- The weakest link over the cell's flaws: with Weibull depths under a uniform current, the expected
  number of cracked flaws at the short, computed by hand from the Weibull law and the criterion,
  is Exp(1) over replicas (the cell's survival is exp(−Λ)), and Λ scales with the cell area.
- No flaws: no short at any current, through a whole ccd protocol.
- A short ends the run cleanly: everything sampled before it is kept, the store marks it.
- Short charge falls as the current rises (bare Al foil, replicas).
- The slot law (``model.flaw_law = "slot"``, PHYSICS v4 E8): its formulas; flaws of one depth short at
  the slot fill time; a flaw under a collector face fills and cracks (not under the v3 law); no crack
  during a strip or a rest, and no pressure kept across them (a strip empties the flaws: flaw Na strips
  first, ``test_flaw_strip.py``); the Pareto depth weights.
"""
import math
from pathlib import Path

import numpy as np
import pytest
from battery_runs import advance_all, cell_scenario

import kmc
from kmc import flaws, units
from kmc.battery import BatteryModel, Run
from kmc.kernels import faradaic as kf

_ROOT = Path(__file__).resolve().parents[1]

# No interphase in these cells: E8 is tested on Na layers whose faces stay as plated. The interphase at
# NASICON's calibrated rate (T4: 10 mA/cm², a µm-thick reduced layer) takes Na from the interface as it
# grows, which the hand-computed hazards (a uniform layer at constant pixel currents) do not follow.
FLAWS = """
[materials.nasicon]
flaw_density_cm2 = {density}
flaw_scale_um = {scale}
flaw_shape = {shape}
sei_rate_ma_cm2 = 0.0
"""


def scenario(tmp_path, protocol, every, n=12, nz=36, na_um=2.0, density=0.0, scale=5.0, shape=1.0, name="f",
             area_cm2=None, law="metal_front"):
    """A bare Al foil over a Na layer of ``na_um`` on a thin (100 µm) NASICON with the given flaws
    (a cell of ``area_cm2``, the default 1 cm² if None), under ``model.flaw_law = law`` (for "slot",
    ``shape`` is the strength Weibull modulus m_σ of the depth tail)."""
    materials = FLAWS.format(density=density, scale=scale, shape=shape)
    if law == "slot":
        materials += f"strength_weibull_modulus = {shape}\n"
    sc = cell_scenario(tmp_path / f"{name}.toml", protocol, every, n=n, nz=nz, initial_na_um=na_um,
                       thickness_um=100.0, materials=materials)
    overrides = {"model.flaw_law": law}
    if area_cm2 is not None:
        overrides["conditions.cell_area_cm2"] = area_cm2
    return sc.with_overrides(overrides)


def plate(j, q):
    return f'[[protocol]]\nkind = "plate"\ncurrent_ma_cm2 = {j}\ncapacity_mah_cm2 = {q}'


def test_e8_formulas_against_hand_values():
    vm = 23.78
    assert flaws.overpotential_pressure_mpa(1e-3, vm) == pytest.approx(96485.33 * 1e-3 / 23.78e-6 * 1e-6, rel=1e-6)
    assert flaws.overpotential_pressure_mpa(1e-3, vm) == pytest.approx(4.06, abs=0.01)  # 1 mV ≈ 4 MPa
    # p_flow at c = 20 µm, j = 10 mA/cm², δ_c = 0.1 µm, Na's creep point (0.235 MPa, 1e-3 /s), n = 5:
    v = 100.0 * 23.78e-6 / 96485.33 * (1 + 400)  # m/s
    expected = 400 * 0.235 / math.sqrt(3) * ((2 * v / 1e-7) / 1e-3) ** 0.2
    assert flaws.extrusion_pressure_mpa(20.0, 1e-2, 0.1, 0.235, 1e-3, 5.0, vm) == pytest.approx(expected, rel=1e-7)
    assert flaws.stress_intensity_mpa_m05(100.0, 10.0) == pytest.approx(1.12 * 100 * math.sqrt(math.pi * 1e-5))
    q_v = units.voxel_charge_c(0.5, vm)
    assert flaws.fill_time_s(10.0, 0.5, q_v, 1e-2) == pytest.approx(20 * q_v / (1e-2 * 0.25e-8))


def _critical_current(model, depth_um):
    """Plating current density (A/cm²) at which a full flaw of depth c under uniform Na reaches K_IC, with
    the Na pressure E8 gives at the local overpotential of linear-ish Butler–Volmer at full contact."""
    p_needed = model.params.k_ic_mpa_m05 / (1.12 * math.sqrt(math.pi * depth_um * 1e-6))
    eta = p_needed / flaws.overpotential_pressure_mpa(1.0, model.params.molar_volume_cm3_mol)  # V
    j0 = model.params.kinetics[kf.P_J0_NA]  # A/cm²
    f = model.params.kinetics[kf.P_F]
    return 2 * j0 * math.sinh(0.5 * f * eta)  # BV with α = 1/2 at η


def _run_one_depth(model, depth, j_ma_cm2, shorts):
    """Run a cell whose flaws all have one depth. Not shorting: checks the flaws are full (yet below
    K_IC) and returns None. Shorting: returns (run, samples, the largest pixel current at the last
    solve, A/cm²) — constant under a uniform Na layer, though not the mean (each pixel's share of the
    rough surface's faces sets it); the pixel carrying most fills first."""
    state = model.new_state(1)
    out = advance_all(model, state)
    run = Run(state)
    if not shorts:
        assert not run.shorted
        assert out[-1]["filament_depth"] > 1.5 * depth  # full, yet below K_IC
        assert out[-1]["short_probability"] == 0.0
        return None
    assert run.shorted
    j_pixel = run.pixel_current.max()
    assert 0.5 * j_ma_cm2 * 1e-3 < j_pixel < 3 * j_ma_cm2 * 1e-3
    return run, out, j_pixel


@pytest.mark.parametrize("factor,shorts", [(0.6, False), (1.6, True)])
def test_flaws_of_one_depth_short_after_their_fill_time_above_the_griffith_current(tmp_path, factor, shorts):
    """A Weibull law of shape 1000 puts every flaw within 0.3 % of c = 10 µm, and a 1 cm² cell holds 1e5 of
    them (~700 per pixel's share: too few to reach the law's shallow tail, 1e-9 below 0.98 c): the first
    pixel whose flaws are full and meet the criterion shorts the cell at once."""
    depth = 10.0
    probe = BatteryModel(scenario(tmp_path, plate(1.0, 0.1), 10.0, name="probe"))
    j_crit = _critical_current(probe, depth)  # A/cm²
    j = factor * j_crit * 1e3  # mA/cm²
    t_fill_nominal = flaws.fill_time_s(depth, 0.5, probe.params.q_v_c, j * 1e-3)
    capacity = 2.0 * t_fill_nominal * j / 3600
    model = BatteryModel(scenario(tmp_path, plate(j, capacity), t_fill_nominal / 20, nz=int(16 + 4 * capacity / 0.056),
                                  density=1e5, scale=depth, shape=1000.0, name=f"one-{factor}"))
    outcome = _run_one_depth(model, depth, j, shorts)
    if outcome is None:
        return
    run, out, j_pixel = outcome
    assert run.short_time_s == pytest.approx(flaws.fill_time_s(depth, 0.5, model.params.q_v_c, j_pixel), rel=0.02)
    assert out[-1]["voltage"] == 0.0  # collapsed
    assert out[-1]["time"] == pytest.approx(run.short_time_s)
    assert out[-1]["short_probability"] == 1.0


def test_no_flaws_no_short_through_a_ccd(tmp_path):
    """No flaws (n_flaw = 0): the flaw fronts advance and the cracking probabilities grow as in any cell,
    but Λ = n_flaw A_cell ⟨P_i⟩ stays 0, below the cell's Exp(1) draw, through a ccd up to 50 mA/cm² —
    by the same arithmetic as a flawed cell, no shortcut. Planted fault: Λ computed with the cell's
    flaw count floored at 1e5 (a flawless cell treated as a flawed one) shorts it and fails this."""
    protocol = ('[[protocol]]\nkind = "ccd"\nstart_ma_cm2 = 2.0\nstep_ma_cm2 = 8.0\nmax_ma_cm2 = 50.0\n'
                'capacity_mah_cm2 = 0.3')
    model = BatteryModel(scenario(tmp_path, protocol, 2.0, density=0.0))
    assert model.params.cell_flaws == 0.0
    state = model.new_state(1)
    out = advance_all(model, state)
    run = Run(state)
    assert not run.shorted
    assert model.n_cycles == 7 and int(run.cycles_done) == 7  # every level plated and stripped
    assert max(o["current_density"] for o in out) == pytest.approx(50.0)
    # E8 ran: Na went down the (absent) flaws, which would have cracked in a flawed cell.
    assert out[-1]["filament_depth"] > 0 and run.flaw_hazard > 0
    assert all(o["short_probability"] == 0.0 for o in out)


def test_a_short_ends_the_run_cleanly_and_the_store_marks_it(tmp_path):
    """Flaws of ≈ 10 µm under a few pixels (7 expected) and a ccd whose levels go from half to 3.5 times
    the Griffith current of a full 9 µm flaw: a level after the first shorts. The store keeps the samples before the short, marks the run, and records the ccd."""
    probe = BatteryModel(scenario(tmp_path, plate(1.0, 0.1), 10.0, name="probe"))
    j2 = 2.0 * _critical_current(probe, 9.0) * 1e3
    protocol = (f'[[protocol]]\nkind = "ccd"\nstart_ma_cm2 = {j2 / 4}\nstep_ma_cm2 = {3 * j2 / 4}\n'
                f'max_ma_cm2 = {j2 * 2}\ncapacity_mah_cm2 = 0.3')
    sc = scenario(tmp_path, protocol, 20.0, density=2e7, scale=10.0, shape=30.0, nz=40, name="store")
    ds = kmc.simulate(sc, seed=2).isel(run=0)
    assert int(ds.status) == 2 and int(ds.shorted) == 1 and int(ds.ccd_failure) == 1  # a short on plating
    n = int(ds.samples_written)
    assert n < ds.sizes["sample"]  # ended early ...
    assert np.isnan(ds.time.values[n:]).all()  # ... with nothing after the short
    assert float(ds.time.values[n - 1]) == pytest.approx(float(ds.short_time))
    assert float(ds.voltage.values[n - 1]) == 0.0
    levels = [j2 / 4, j2, 7 * j2 / 4]  # flaws fill over the levels (a filled flaw stays filled)
    assert min(abs(float(ds.ccd) - level) for level in levels) < 1e-9
    assert float(ds.ccd) > levels[0]  # below half the Griffith current no flaw cracks
    assert float(ds.short_charge) == pytest.approx(float(ds.charge.values[n - 1]))
    assert (ds.voltage.values[1:n - 1] != 0).all()


def test_short_charge_falls_as_current_rises(tmp_path):
    """Bare Al foil on a thin NASICON with flaws of the calibrated order (1e5 /cm², Weibull scale 15 µm,
    m = 1), 3 replicas per current: at 1 mA/cm² no run shorts by 1 mAh/cm²; at 10 mA/cm² the Na
    spreading from the first nuclei carries a higher current at a higher overpotential, and the cells
    short before the bound (median short charge, runs that do not short counted at the bound; measured
    0.67–0.73 mAh/cm² with the faces at their true area, 0.26–0.29 when every face counted a²)."""
    protocol = """
[[protocol]]
kind = "plate"
current_ma_cm2 = {j}
capacity_mah_cm2 = 1.0
"""
    charges = {}
    for j in (1.0, 10.0):
        model = BatteryModel(scenario(tmp_path, protocol.format(j=j), 1.0 / j * 3600 / 50, n=24, nz=40, na_um=0.0,
                                      density=1e5, scale=15.0, shape=1.0, name=f"t1-{j}"))
        q = []
        for seed in range(1, 4):
            state = model.new_state(seed)
            advance_all(model, state)
            run = Run(state)
            q.append(run.short_charge_mah_cm2 if run.shorted else 1.0)  # unshorted runs: censored at the bound
        charges[j] = np.median(q)
    assert charges[10.0] < 0.8 * charges[1.0], charges


def _hand_expected_cracks(model, state, t_s, cell_flaws, scale_um, shape):
    """Λ(t) by hand for a uniform Na layer plating at constant pixel currents since t = 0: under pixel
    i, Na has gone d_i = j_i t V_m/F into every flaw, and the flaws that crack at the pixel's |η| and j_i
    are those deeper than c*_i, the root of 1.12 min(F|η|/V_m, p_flow(c, j_i)) √(πc) = K_IC; so
    Λ = N Σ_i [F(d_i) − F(c*_i)]⁺ / n_pixels with the Weibull F (no depth grid)."""
    from scipy.optimize import brentq

    run = Run(state)
    vm = model.params.molar_volume_cm3_mol
    j = run.pixel_current
    eta = np.abs(run.voltage_v + model.params.u_ce_v - run.phi)
    weibull = lambda c: -np.expm1(-(c / scale_um) ** shape)  # noqa: E731

    def excess_k(c, eta_i, j_i):
        p = min(flaws.overpotential_pressure_mpa(eta_i, vm),
                flaws.extrusion_pressure_mpa(c, j_i, model.params.crack_opening_um, model.params.creep_sigma_ref_mpa,
                                             model.params.creep_rate_ref_s, model.params.creep_n, vm))
        return flaws.stress_intensity_mpa_m05(p, c) - model.params.k_ic_mpa_m05

    total = 0.0
    for eta_i, j_i in zip(eta, j):
        c_star = brentq(excess_k, 1e-4, 1e4, args=(eta_i, j_i), xtol=1e-9)
        d = j_i * t_s * vm / units.F * 1e4
        total += max(0.0, weibull(d) - weibull(c_star))
    return cell_flaws * total / j.size


def test_the_cell_shorts_at_its_weakest_link(tmp_path):
    """Uniform Na layer, 30 mA/cm², Weibull flaws (c0 = 10 µm, m = 2) of which the cell holds 10 per cm²:
    over 60 replicas the hand-computed Λ at each short must be Exp(1) distributed — the cell's survival
    is exp(−Λ) — and a three times larger cell (Λ ∝ A) shorts earlier."""
    from scipy import stats

    cap = 6.0  # mAh/cm²: Λ(bound) ≈ 10 (1 − F(c*)) ≫ 1, so every run shorts
    median_time = {}
    for area_cm2 in (1.0, 3.0):
        model = BatteryModel(scenario(tmp_path, plate(30.0, cap), cap / 30.0 * 3600 / 4, n=6,
                                      nz=int(12 + 2 * cap / 0.0564 * 1.1), density=10.0, scale=10.0, shape=2.0,
                                      area_cm2=area_cm2, name=f"wl-{area_cm2}"))
        u, times = [], []
        for seed in range(60):
            state = model.new_state(100 + seed)
            advance_all(model, state)
            run = Run(state)
            assert run.shorted, "Λ(bound) ≈ 10: a run that does not short has a chance of e^-10"
            times.append(run.short_time_s)
            u.append(_hand_expected_cracks(model, state, run.short_time_s, 10.0 * area_cm2, 10.0, 2.0))
        ks = stats.kstest(u, "expon")
        assert ks.pvalue > 1e-3, (area_cm2, ks, np.round(sorted(u), 3))
        median_time[area_cm2] = np.median(times)
    assert median_time[3.0] < 0.9 * median_time[1.0], median_time


def test_state_shapes_do_not_depend_on_the_flaw_law(tmp_path):
    """A sweep over flaw statistics shares one store layout: every state array keeps its shape."""
    shapes = []
    for scale, shape in ((0.1, 1.0), (30.0, 0.5), (10.0, 1000.0)):
        model = BatteryModel(scenario(tmp_path, plate(1.0, 0.1), 10.0, density=1e5, scale=scale, shape=shape,
                                      name=f"s{scale}"))
        state = model.new_state(1)
        shapes.append({k: np.shape(v) for k, v in state.fields.items()})
        assert model.params.depth_grid.weights.sum() == pytest.approx(1.0, abs=1e-12)
        assert model.params.depth_grid.centres_um.min() <= 1e-3 * 1.05 and model.params.depth_grid.centres_um.max() >= 1e4 * 0.95
    assert shapes[0] == shapes[1] == shapes[2]


@pytest.mark.parametrize("law", ["metal_front", "slot"])
def test_cracked_depths_are_the_union_of_the_intervals_over_time(law):
    """The kernel's per-pixel bookkeeping (runs of cracked depth bins) against a brute-force set: after
    random states (|η|, j, fill rate) the cracked bins of each pixel are exactly ∪_t [c*(t), d(t)] on the
    grid, and the returned rises sum to the probability of that union. Half the states use
    the v4 pressure of the deposit-stress law, min(P + F|η0|/V_m, σ_mouth + p_flow) (fails if the
    kernel drops σ_mouth). Under the slot law the fill clock is the charge at the mouth, a bin full once
    it reaches the bin's Q(c_b), and δ_c is per bin (fails if the kernel reads the charge as a depth).
    Half the pixels' flaws hold pressure only up to a random depth bin, the rest vent (``model.flaw_mouth =
    "trace"``; fails if the kernel ignores the cap). Each advance is booked knowing its cracking pixels
    from the prediction (as a batch books its outlook), bit for bit as without (fails if the clocks of the
    other pixels are not advanced, or if a cracking pixel is skipped)."""
    from kmc.kernels import flaws as kfl

    rng = np.random.default_rng(7)
    if law == "slot":
        grid = flaws.ParetoDepthGrid(1.0, 2.0)
        opening = flaws.slot_opening_um(grid.centres_um, 1.25, 77.0)
        thresholds = flaws.slot_fill_charge_c_cm2(grid.centres_um, opening, 23.78)
        assert (np.diff(thresholds) > 0).all()
        rate_decades = (-5, -2)  # A/cm²: up to ≈ Q(20 µm) per step, as the v3 law's 20 µm
    else:
        grid = flaws.DepthGrid(5.0, 1.0)
        opening, thresholds, rate_decades = 0.1, np.empty(0), (-3, 0)  # µm/s
    need, flow = flaws.crack_criterion_tables(grid, 1.25, opening, 0.235, 1e-3, 5.0, 23.78)
    p_per_volt = flaws.overpotential_pressure_mpa(1.0, 23.78)
    n_pix, n_bins = 5, grid.n_bins
    fill = np.zeros(n_pix)
    cracked = np.zeros(n_pix * n_bins, dtype=np.uint8)
    lo, hi = np.zeros(n_pix, dtype=np.int64), np.full(n_pix, -1, dtype=np.int64)
    expected = [set() for _ in range(n_pix)]
    total = 0.0
    for _ in range(400):
        pixels = np.sort(rng.choice(n_pix, size=rng.integers(1, n_pix + 1), replace=False))
        eta = 10 ** rng.uniform(-2.5, -0.3, pixels.size)  # 3 mV – 0.5 V
        j = 10 ** rng.uniform(-4, 0, pixels.size)  # 0.1 mA/cm² – 1 A/cm²
        rate = np.where(rng.random(pixels.size) < 0.8, 10 ** rng.uniform(*rate_decades, pixels.size), 0.0)
        dt = rng.uniform(0, 20)
        # The v3 pressure (no base), or v4's P + F|η0|/V_m against σ_mouth + p_flow.
        v4 = rng.random() < 0.5
        base_eta = 5.6 if v4 else 0.0
        mouth = rng.uniform(0.0, 40.0, pixels.size) if v4 else np.zeros(pixels.size)
        # Flaws deeper than a pixel's plating patch vent (model.flaw_mouth = "trace"): half the pixels
        # hold every bin, the others up to a random bin (−1: none).
        sealed = np.where(rng.random(pixels.size) < 0.5, n_bins - 1, rng.integers(-1, n_bins, pixels.size))
        cracking = np.empty(pixels.size, dtype=np.int64)
        predicted, n_cracking = kfl.crack_population(pixels, rate, dt, eta, j, p_per_volt, need, flow, 0.2,
                                                     grid.weights, grid.first_um, grid.log_ratio, fill.copy(),
                                                     cracked.copy(), lo.copy(), hi.copy(), False, base_eta, mouth,
                                                     thresholds, sealed, cracking, -1)
        # Booked as a batch books its outlook (the cracking pixels known) and as without it: the same bits.
        plain = [a.copy() for a in (fill, cracked, lo, hi)]
        rise_plain, _ = kfl.crack_population(pixels, rate, dt, eta, j, p_per_volt, need, flow, 0.2, grid.weights,
                                             grid.first_um, grid.log_ratio, *plain, True, base_eta, mouth, thresholds,
                                             sealed, np.empty(0, dtype=np.int64), -1)
        rise, n = kfl.crack_population(pixels, rate, dt, eta, j, p_per_volt, need, flow, 0.2, grid.weights,
                                       grid.first_um, grid.log_ratio, fill, cracked, lo, hi, True, base_eta, mouth,
                                       thresholds, sealed, cracking, n_cracking)
        assert rise == pytest.approx(predicted, abs=1e-15)
        assert rise == rise_plain and n == n_cracking
        assert all(a.tobytes() == b.tobytes() for a, b in zip((fill, cracked, lo, hi), plain))
        total += rise
        for k, i in enumerate(pixels):  # brute force: bins with centre in [c*, d] crack now
            crit = 1.12 * np.minimum(base_eta + p_per_volt * eta[k], mouth[k] + flow * j[k] ** 0.2) \
                * np.sqrt(np.pi * grid.centres_um * 1e-6)
            full = thresholds <= fill[i] if law == "slot" else grid.centres_um <= fill[i] * (1 + 1e-9)
            held = np.arange(n_bins) <= sealed[k]
            expected[i] |= set(np.flatnonzero(full & held & (crit >= 1.25 * (1 - 1e-12))).tolist())
    for i in range(n_pix):
        assert set(np.flatnonzero(cracked[i * n_bins:(i + 1) * n_bins]).tolist()) == expected[i]
    assert total == pytest.approx(sum(grid.weights[list(e)].sum() for e in expected), rel=1e-12)
    assert total > 0.1 and any(len(e) for e in expected)


def test_a_predicted_short_is_not_missed_late_in_a_long_run(tmp_path):
    """A batch stops where the short was predicted; at a large clock, t0 + dt does not round-trip to dt,
    and a prediction made on dt once missed its short and repeated zero-length batches for ever. After a
    1e5 s rest, bare Al plated at 10 mA/cm² (seeds that spun) must short, within a time limit."""
    import signal

    protocol = '[[protocol]]\nkind = "rest"\nduration_s = 100000.0\n' + plate(10.0, 1.0)
    model = BatteryModel(scenario(tmp_path, protocol, 3.6 * 50, n=24, nz=40, na_um=0.0, density=1e5, scale=15.0,
                                  shape=1.0, name="late"))

    def stuck(signum, frame):
        raise AssertionError("the run did not end: zero-length batches at a missed short")

    previous = signal.signal(signal.SIGALRM, stuck)
    signal.alarm(240)
    try:
        for seed in (2, 3):
            state = model.new_state(seed)
            advance_all(model, state)
            assert Run(state).shorted
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# -- the slot law (model.flaw_law = "slot", PHYSICS v4 E8) ---------------------------------------------


def test_slot_formulas_against_hand_values():
    """δ_c = (8 K_IC/E)√(c/2π), Q(c) = (δ_c F/2V_m) ln(1 + 2c/δ_c), t_fill = Q/j, the inverse d(Q), by hand
    (NASICON: K_IC 1.25 MPa√m, E 77 GPa; c = 10 µm), and PHYSICS' ln(2c/δ_c) form within 1 % at c ≥ 1 µm."""
    vm, F = 23.78, units.F
    delta = 8 * 1.25e6 / 77e9 * math.sqrt(10e-6 / (2 * math.pi)) * 1e6  # µm
    assert flaws.slot_opening_um(10.0, 1.25, 77.0) == pytest.approx(delta, rel=1e-12)
    assert delta == pytest.approx(0.1638, abs=1e-4)
    q = delta * 1e-4 * F / (2 * vm) * math.log(1 + 2 * 10.0 / delta)  # C/cm²
    assert flaws.slot_fill_charge_c_cm2(10.0, delta, vm) == pytest.approx(q, rel=1e-12)
    assert flaws.slot_fill_time_s(10.0, 1.25, 77.0, 1e-2, vm) == pytest.approx(q / 1e-2, rel=1e-12)
    for c in (1.0, 10.0, 100.0):  # PHYSICS' t_fill = (δ_c F/(2 j V_m)) ln(2c/δ_c)
        d = flaws.slot_opening_um(c, 1.25, 77.0)
        physics = d * 1e-4 * F / (2 * 1e-2 * vm) * math.log(2 * c / d)
        assert flaws.slot_fill_time_s(c, 1.25, 77.0, 1e-2, vm) == pytest.approx(physics, rel=0.01)
    k = flaws.slot_opening_per_sqrt_um(1.25, 77.0)
    depths = np.array([1e-3, 0.3, 10.0, 2e3])
    charges = flaws.slot_fill_charge_c_cm2(depths, k * np.sqrt(depths), vm)
    assert flaws.slot_full_depth_um(charges, k, vm) == pytest.approx(depths, rel=1e-10)
    assert flaws.slot_full_depth_um(np.array([0.0]), k, vm)[0] == 0.0


def test_pareto_depth_weights_give_the_strength_law_tail():
    """Slot law depths: P(c > x) = (x/c0)^(−m_σ/2) above c0. The grid's weights sum to 1, none below the
    bin of c0, and the weight beyond each of three bin edges is the tail at that edge (m_σ = 9, c0 = 15 µm:
    NASICON's); the mean filled depth ∫₀^d P(c > x) dx against quadrature. Planted fault: a tail
    exponent m_σ instead of m_σ/2 fails."""
    from scipy.integrate import quad

    c0, m = 15.0, 9.0
    grid = flaws.ParetoDepthGrid(c0, m)
    assert grid.weights.sum() == pytest.approx(1.0, abs=1e-12)
    anchor = int(np.argmin(np.abs(grid.centres_um - c0)))
    assert grid.centres_um[anchor] == pytest.approx(c0, rel=1e-12)
    assert (grid.weights[:anchor] == 0).all() and grid.weights[anchor] > 0
    lower_edges = grid.centres_um * math.exp(-0.5 * grid.log_ratio)
    for b in (anchor + 1, anchor + 30, anchor + 100):  # x = 1.02 c0, 2.1 c0, 12 c0
        x = lower_edges[b]
        assert grid.weights[b:].sum() == pytest.approx((x / c0) ** (-m / 2), rel=1e-9), x
    def tail(x):
        return 1.0 if x <= c0 else (x / c0) ** (-m / 2)

    for d in (5.0, 15.0, 40.0, 400.0):
        assert grid.mean_fill_um(np.array([d]))[0] == pytest.approx(quad(tail, 0, d, points=[c0])[0], rel=1e-9)
    # s = m/2 = 1 has its own closed form: c0 (1 + ln(d/c0)).
    assert flaws.ParetoDepthGrid(c0, 2.0).mean_fill_um(np.array([40.0]))[0] == pytest.approx(
        c0 * (1 + math.log(40 / c0)), rel=1e-12)


@pytest.mark.parametrize("shape", [1.0, 0.7, 3.0])
def test_mean_fill_of_the_weibull_law_is_the_integral_of_its_survival(shape):
    """``DepthGrid.mean_fill_um`` (the v3 law, P(c > x) = exp(−(x/c0)^m)) against ∫₀^d P(c > x) dx by
    quadrature, at depths from far below to far beyond c0, for m = 1 (its closed form c0 (1 − e^(−d/c0)))
    and two other shapes (the incomplete gamma function); and m = 1's closed form against the incomplete
    gamma function's value to 1e-14. Planted fault: the closed form without its scale
    (1 − e^(−d/c0)) fails here."""
    from scipy.integrate import quad
    from scipy.special import gammainc

    c0 = 15.0
    grid = flaws.DepthGrid(c0, shape)
    depths = np.array([0.0, 1e-9, 0.3, 5.0, 15.0, 40.0, 400.0, np.inf])
    got = grid.mean_fill_um(depths)
    for d, g in zip(depths, got):
        want = quad(lambda x: math.exp(-((x / c0) ** shape)), 0, d, limit=200)[0]
        assert g == pytest.approx(want, rel=1e-9, abs=1e-12), d
    if shape == 1.0:
        x = np.geomspace(1e-12, 1e3, 400)
        np.testing.assert_allclose(grid.mean_fill_um(c0 * x), c0 * gammainc(1.0, x), rtol=1e-14)


@pytest.mark.parametrize("factor,shorts", [(0.6, False), (1.6, True)])
def test_slot_flaws_of_one_depth_short_at_the_slot_fill_time(tmp_path, factor, shorts):
    """Slot law, flaws of one depth c = 20 µm (a Pareto tail of m_σ = 2000 puts all but 1e-10 of them in
    the bin of c0) under a uniform Na layer at constant current: the cell shorts when the charge passed at
    the most loaded pixel reaches Q(c) = (δ_c F/2V_m) ln(1 + 2c/δ_c), δ_c = (8K_IC/E)√(c/2π), i.e. at
    t_fill = Q(c)/j within 2 % (33 times sooner than the v3 law's linear fill), and not below the Griffith
    current. Planted fault: the slot filled linearly in charge as under the v3 law (threshold c F/V_m):
    no short by 2 t_fill, fails."""
    depth = 20.0
    probe = BatteryModel(scenario(tmp_path, plate(1.0, 0.1), 10.0, name="probe", law="slot"))
    j = factor * _critical_current(probe, depth) * 1e3  # mA/cm²
    p = probe.params
    # At 1.6 times the overpotential's Griffith current the slot's extrusion pressure is above K_IC's too.
    need = p.k_ic_mpa_m05 / (1.12 * math.sqrt(math.pi * depth * 1e-6))
    opening = flaws.slot_opening_um(depth, p.k_ic_mpa_m05, 77.0)
    assert flaws.extrusion_pressure_mpa(depth, 1.6 / factor * j * 1e-3, opening, p.creep_sigma_ref_mpa,
                                        p.creep_rate_ref_s, p.creep_n, p.molar_volume_cm3_mol) > 1.2 * need
    t_fill_nominal = flaws.slot_fill_time_s(depth, p.k_ic_mpa_m05, 77.0, j * 1e-3, p.molar_volume_cm3_mol)
    capacity = 2.0 * t_fill_nominal * j / 3600
    model = BatteryModel(scenario(tmp_path, plate(j, capacity), t_fill_nominal / 20,
                                  nz=int(16 + 4 * capacity / 0.056), density=1e5, scale=depth, shape=2000.0,
                                  name=f"slot-{factor}", law="slot"))
    assert model.params.depth_grid.weights.max() > 1 - 1e-9
    outcome = _run_one_depth(model, depth, j, shorts)
    if outcome is None:
        return
    run, out, j_pixel = outcome
    t_fill = flaws.slot_fill_time_s(depth, p.k_ic_mpa_m05, 77.0, j_pixel, p.molar_volume_cm3_mol)
    assert run.short_time_s == pytest.approx(t_fill, rel=0.02)
    assert out[-2]["short_probability"] == 0.0  # not before
    assert out[-1]["short_probability"] == 1.0


def _slot_cell(tmp_path, law, name):
    """A model with flaws of one depth (20 µm, 1e5 /cm²) and a Run of its fresh state whose fields the test
    sets by hand (the flaws act on the frozen fields of the last solve: ``Losses``)."""
    model = BatteryModel(scenario(tmp_path, plate(1.0, 0.1), 10.0, density=1e5, scale=20.0, shape=2000.0,
                                  name=name, law=law))
    return model, Run(model.new_state(1))


def _set_fields(run, current_a, pixel_j, na_j, eta0_v):
    """Frozen fields: the cell current, every pixel's current and its Na faces' share, and η0 = V + U_CE − φ
    (Na counter: U_CE = 0)."""
    run.current_a = current_a
    run.pixel_current[:] = pixel_j
    run.na_current[:] = na_j
    run.voltage_v = eta0_v
    run.phi[:] = 0.0


J_SLOT = 1e-2  # A/cm²: the extrusion pressure of a 20 µm slot is above K_IC's (181 MPa at 7.5 mA/cm²)
ETA_CRACK, ETA_BELOW = 0.060, 0.020  # V: F|η0|/V_m = 244 and 81 MPa around the 141 MPa K_IC needs at 20 µm


def test_a_flaw_under_a_collector_face_fills_and_cracks_under_the_slot_law_only(tmp_path):
    """A pixel whose only plating face is the collector's (no Na: its Na faces carry nothing) while the
    cell plates: under the slot law its flaws fill from that current and crack once the charge reaches
    Q(c) (not at 0.98 of it, at 1.02 of it), with the pressure of the present |η0|; under the v3 law
    they never fill. A collector face above Na's potential (Au alloying, η0 > 0) fills nothing.
    Planted faults: the slot law filling from Na faces only (v3's source), and filling above Na's
    potential, each fail."""
    depth = 20.0
    for law in ("slot", "metal_front"):
        model, run = _slot_cell(tmp_path, law, f"cc-{law}")
        losses, p = model.driver.losses, model.params
        t_fill = flaws.slot_fill_time_s(depth, p.k_ic_mpa_m05, 77.0, J_SLOT, p.molar_volume_cm3_mol)
        _set_fields(run, 1e-3, J_SLOT, 0.0, -ETA_CRACK)
        assert not losses.advance_flaws(run, 0.98 * t_fill)
        assert run.flaw_hazard == 0.0
        shorted = losses.advance_flaws(run, 0.04 * t_fill)
        if law == "slot":
            assert run.flaw_charge_c_cm2 == pytest.approx(np.full(p.n_cols, 1.02 * t_fill * J_SLOT), rel=1e-12)
            assert run.flaw_front_um == pytest.approx(np.full(p.n_cols, depth), rel=0.05)
            assert shorted and run.flaw_hazard == pytest.approx(p.n_cols, rel=1e-9)  # every pixel's flaws
        else:
            assert not shorted and run.flaw_hazard == 0.0
            assert (run.flaw_front_um == 0).all() and (run.flaw_charge_c_cm2 == 0).all()
    model, run = _slot_cell(tmp_path, "slot", "cc-alloying")
    _set_fields(run, 1e-3, J_SLOT, 0.0, +ETA_CRACK)  # cathodic current above Na's potential: the alloy takes it
    assert not model.driver.losses.advance_flaws(run, 10 * t_fill)
    assert (run.flaw_charge_c_cm2 == 0).all() and run.flaw_hazard == 0.0


def test_slot_flaws_fill_only_from_faces_at_na_activity_not_from_au_still_alloying(tmp_path):
    """Slot law, cell plating below Na's potential (η0 < 0, at the |η0| that cracks a full flaw). A pixel
    whose cathodic current all goes into Au still alloying fills nothing and never cracks (Na metal in the
    slot would alloy with the Au at its mouth); a pixel whose current is half alloying, half on faces at
    Na's activity fills at half the pixel's current: after t the charge at its mouth is exactly J t / 2,
    so it is full at 2 t_fill, not t_fill (not at 1.98 t_fill, cracked by 2.02). Planted fault: the old
    rule, every cathodic current below Na's potential filling (the alloying share included), fails each
    part (Q = J t, cracked at t_fill)."""
    depth = 20.0
    model, run = _slot_cell(tmp_path, "slot", "au-alloying")
    losses, p = model.driver.losses, model.params
    t_fill = flaws.slot_fill_time_s(depth, p.k_ic_mpa_m05, 77.0, J_SLOT, p.molar_volume_cm3_mol)
    _set_fields(run, 1e-3, J_SLOT, 0.0, -ETA_CRACK)
    run.alloy_current[:] = J_SLOT  # all of it into the alloy
    assert not losses.advance_flaws(run, 10 * t_fill)
    assert (run.flaw_charge_c_cm2 == 0).all() and run.flaw_hazard == 0.0
    model, run = _slot_cell(tmp_path, "slot", "au-half")
    losses = model.driver.losses
    _set_fields(run, 1e-3, J_SLOT, 0.0, -ETA_CRACK)
    run.alloy_current[:] = 0.5 * J_SLOT  # the other half on alloyed Au (no Na faces here)
    assert not losses.advance_flaws(run, 1.98 * t_fill)
    assert run.flaw_charge_c_cm2 == pytest.approx(np.full(p.n_cols, 0.99 * t_fill * J_SLOT), rel=1e-12)
    assert run.flaw_hazard == 0.0
    assert losses.advance_flaws(run, 0.04 * t_fill)


def test_the_solve_stores_what_au_still_alloying_carries(tmp_path):
    """Au (96 nm) on Al, no Na: at the first solve every contact face is Au still alloying, so the alloying
    faces carry every pixel's current (alloy_current equals pixel_current, and the cell's current I is
    their sum), and no Na face carries any. Planted fault: the alloyed-Au faces' share stored instead
    (none here: zero) fails."""
    sc = kmc.load_scenario(_ROOT / "scenarios" / "validation" / "T2.toml", lattice__nx=16, lattice__ny=16,
                           lattice__nz=12)
    model = BatteryModel(sc)
    run = Run(model.new_state(1))
    model.driver.solve(run, model.steps[0].current_a)
    assert run.carried == 1.0 and (run.pixel_current > 0).sum() >= 2
    assert run.alloy_current == pytest.approx(run.pixel_current, rel=1e-12, abs=1e-15)
    assert run.alloy_current.sum() * model.params.face_area_cm2 == pytest.approx(model.steps[0].current_a, rel=1e-6)
    assert (run.na_current == 0).all()


def test_slot_flaws_do_not_crack_on_a_strip_or_rest_and_keep_no_pressure(tmp_path):
    """Slot law. Full flaws (plated past Q(c) below the Griffith pressure) see a strip and a rest at the
    |η0| that cracks them while plating: no crack; the strip empties them (flaw Na strips first: the
    charge at the mouth falls back to 0), the rest changes nothing. Plated again below the Griffith
    pressure until full, they do not crack (no pressure kept across the reversal); plated at the cracking
    |η0| they crack at once, exactly as a fresh flaw does the moment it is full. Planted faults: a pressure
    (the largest |η0|) kept across the reversal fails at the second low plating; flaws filling and cracking
    on any pixel current, the cell's direction ignored, fails on the strip; flaws keeping their Na on a
    strip (the refill not needed) fails on the charge after the strip."""
    depth = 20.0
    model, run = _slot_cell(tmp_path, "slot", "reversal")
    losses, p = model.driver.losses, model.params
    t_fill = flaws.slot_fill_time_s(depth, p.k_ic_mpa_m05, 77.0, J_SLOT, p.molar_volume_cm3_mol)
    _set_fields(run, 1e-3, J_SLOT, J_SLOT, -ETA_BELOW)  # plate: full, below K_IC
    assert not losses.advance_flaws(run, 2 * t_fill)
    assert (run.flaw_charge_c_cm2 >= 2 * t_fill * J_SLOT * (1 - 1e-12)).all() and run.flaw_hazard == 0.0
    cracked_before = run.flaw_cracked.copy()  # bins far deeper than every flaw (weight 0) met the criterion
    _set_fields(run, -1e-3, -J_SLOT, -J_SLOT, +ETA_CRACK)  # strip at the cracking |η0|: the flaws empty
    assert not losses.advance_flaws(run, 10 * t_fill)
    assert (run.flaw_charge_c_cm2 == 0).all() and (run.flaw_front_um == 0).all()
    _set_fields(run, 0.0, 0.0, 0.0, -ETA_CRACK)  # rest (a held |η0|, no current)
    assert not losses.advance_flaws(run, 10 * t_fill)
    assert run.flaw_hazard == 0.0 and (run.flaw_charge_c_cm2 == 0).all()
    _set_fields(run, 1e-3, J_SLOT, J_SLOT, -ETA_BELOW)  # plate again, below K_IC, until full again
    assert not losses.advance_flaws(run, 1.001 * t_fill)
    assert run.flaw_hazard == 0.0
    _set_fields(run, 1e-3, J_SLOT, J_SLOT, -ETA_CRACK)  # plate at the cracking |η0|: at once
    assert losses.advance_flaws(run, 1e-9 * t_fill)
    fresh_model, fresh = _slot_cell(tmp_path, "slot", "fresh")
    _set_fields(fresh, 1e-3, J_SLOT, J_SLOT, -ETA_CRACK)
    assert not fresh_model.driver.losses.advance_flaws(fresh, 0.999 * t_fill)
    assert fresh_model.driver.losses.advance_flaws(fresh, 0.002 * t_fill)  # the moment it is full
    # The same depths cracked now as a fresh flaw plated at that |η0| to the same charge.
    fresh_model.driver.losses.advance_flaws(fresh, 1e-9 * t_fill)
    assert fresh.flaw_charge_c_cm2 == pytest.approx(run.flaw_charge_c_cm2, rel=1e-12)
    assert (fresh.flaw_cracked == run.flaw_cracked - cracked_before).all()
    assert run.flaw_hazard == pytest.approx(fresh.flaw_hazard, rel=1e-12)


@pytest.mark.parametrize("shift", [(0, 0), (20, 33)])
def test_covered_radius_of_a_disc_patch_is_the_distance_to_its_edge(shift):
    """``model.flaw_mouth = "trace"``: the radius of the largest disc inside the plating pixels about each
    pixel, on a disc patch of radius R pixels (the pixels whose centres lie within R of its centre): at
    every pixel, (d − ½)·a with d the distance to the nearest pixel outside, recounted by brute force over
    all pairs; near R − r at a pixel r from the centre; a pixel beside the edge has its own half-width, and
    one that does not plate 0. Shifted so the patch straddles both periodic edges, the same numbers rolled
    (fails without the periodic wrap: the edge then reads as open). Flaws up to ρ hold pressure
    (``deepest_sealed_bin``); a domain that plates everywhere vents nothing."""
    ny, nx, a, radius = 48, 64, 0.5, 10.0
    y, x = np.mgrid[0:ny, 0:nx]
    r = np.hypot(y - ny // 2, x - nx // 2)
    patch = r <= radius
    rho = flaws.covered_radius_um(np.roll(patch, shift, axis=(0, 1)), a)
    rho = np.roll(rho, (-shift[0], -shift[1]), axis=(0, 1))
    assert (rho[~patch] == 0).all()
    inside = np.stack([y[patch], x[patch]], axis=1).astype(float)
    outside = np.stack([y[~patch], x[~patch]], axis=1).astype(float)
    d = np.sqrt(((inside[:, None, :] - outside[None, :, :]) ** 2).sum(axis=2)).min(axis=1)
    assert rho[patch] == pytest.approx((d - 0.5) * a, abs=1e-12)
    assert (np.abs(rho[patch] / a + 0.5 - (radius - r[patch])) <= 1.0 + 1e-9).all()
    beside = patch & ~np.all([np.roll(patch, s, axis=ax) for s in (1, -1) for ax in (0, 1)], axis=0)
    assert beside.any() and rho[beside] == pytest.approx(0.5 * a)
    grid = flaws.ParetoDepthGrid(1.0, 9.0)
    sealed = flaws.deepest_sealed_bin(grid, rho[patch])
    ok = sealed >= 0
    assert (grid.centres_um[sealed[ok]] <= rho[patch][ok]).all()
    assert (grid.centres_um[np.minimum(sealed + 1, grid.n_bins - 1)] > rho[patch]).all()
    assert (sealed[rho[patch] < grid.centres_um[0]] == -1).all()
    assert np.isinf(flaws.covered_radius_um(np.ones((8, 8), dtype=bool), a)).all()


@pytest.mark.parametrize("mouth", ["pixel", "trace"])
def test_flaws_wider_than_the_plating_patch_vent_and_do_not_crack(tmp_path, mouth):
    """Slot law, flaws 20 µm deep, a cell 16 columns along x and 100 along y (0.5 µm) whose pixels plate on a
    band of 90 rows, periodic in x, at the current and |η0| that crack a full 20 µm flaw. Under
    ``model.flaw_mouth = "pixel"`` every plating pixel's flaws crack (Λ sums 90 × 16 pixels); under
    "trace" only those of the pixels at least 20 µm inside the band — d ≥ 41 rows from the nearest row
    that does not plate, rows 45–54: 160 pixels — the others vent. Recounted from the band's geometry, not
    from the kernel's covered radius. Planted fault: the plating mask reshaped (nx, ny) instead of
    (ny, nx) fails."""
    nx, ny = 16, 100
    sc = scenario(tmp_path, plate(1.0, 0.1), 10.0, n=nx, density=1e5, scale=20.0, shape=2000.0,
                  name=f"band-{mouth}", law="slot")
    model = BatteryModel(sc.with_overrides({"lattice.ny": ny, "model.flaw_mouth": mouth}))
    run = Run(model.new_state(1))
    p = model.params
    rows = np.arange(ny)
    band = (rows >= 5) & (rows <= 94)
    pixel_j = np.where(np.repeat(band, nx), J_SLOT, 0.0)  # column index = x + nx·y
    _set_fields(run, 1e-3, pixel_j, 0.0, -ETA_CRACK)
    t_fill = flaws.slot_fill_time_s(20.0, p.k_ic_mpa_m05, 77.0, J_SLOT, p.molar_volume_cm3_mol)
    model.driver.losses.advance_flaws(run, 1.5 * t_fill)
    g = p.depth_grid
    top = np.flatnonzero(p.flaw_fill_c_cm2 <= 1.5 * t_fill * J_SLOT).max()
    cracks = np.flatnonzero(p.crack_need_mpa <= np.minimum(p.mpa_per_volt * ETA_CRACK,
                                                          p.crack_flow_mpa * J_SLOT ** (1 / p.creep_n)))
    per_pixel = g.weights[cracks[cracks <= top]].sum()
    assert per_pixel > 0.99  # the flaws are all ~20 µm deep and all full
    if mouth == "pixel":
        expected = band.sum() * nx * per_pixel
    else:
        d_rows = np.minimum(rows - 4, 95 - rows)  # rows to the nearest row that does not plate
        rho = (d_rows - 0.5) * p.voxel_um
        held = [g.weights[cracks[(cracks <= top) & (g.centres_um[cracks] <= r)]].sum() for r in rho[band]]
        expected = nx * sum(held)
        assert np.flatnonzero(rho >= 20.0).tolist() == list(range(45, 55))
        assert expected == pytest.approx(160 * per_pixel, rel=0.02)
    assert run.flaw_hazard == pytest.approx(expected, rel=1e-9)


def test_a_batch_that_ran_to_its_end_books_its_flaws_from_its_outlook(monkeypatch):
    """A batch that ran to the ``t_end`` its flaws' outlook was made for books them knowing the cracking
    pixels (``crack_population`` with ``n_known ≥ 0``); one that stopped earlier looks at every pixel.
    Fails if the booking never finds its outlook valid (the run stays right, only slower: the golden
    trajectories cannot see it)."""
    from kmc.kernels import flaws as kfl

    scenario = kmc.load_scenario(Path(__file__).resolve().parent.parent / "scenarios/validation/T2.toml",
                                 overrides=["lattice.nx=16", "lattice.ny=16", "protocol.0.capacity_mah_cm2=0.1"])
    model = BatteryModel(scenario)
    known, unknown = [], []
    real = kfl.crack_population

    def spy(*args):
        commit, n_known = args[16], args[-1]
        if commit:
            (known if n_known >= 0 else unknown).append(n_known)
        return real(*args)

    monkeypatch.setattr(kfl, "crack_population", spy)
    state = model.new_state(1)
    advance_all(model, state)
    assert len(known) >= 10 and unknown  # (T2 at 128²: 240 of 429 batches book from their outlook)
