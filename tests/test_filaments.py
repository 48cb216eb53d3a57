"""Filament initiation and shorts (PHYSICS.md §3 flaws, §5 E8; §6 ccd), through the production driver.

- The E8 formulas against hand-computed values (1 mV ≈ 4 MPa, p_flow, Griffith–Inglis, fill time).
- One flaw of depth c under a uniform plating current: the cell shorts after the fill time E8 gives,
  and only above the current where 1.12 p √(πc) reaches K_IC.
- No flaws: no short at any current, through a whole ccd protocol.
- A short ends the run cleanly: everything sampled before it is kept, the store marks it.
- Short charge falls as the current rises (bare Al foil, replicas).
"""
import math

import numpy as np
import pytest
from battery_runs import advance_all, cell_scenario

import kmc
from kmc import flaws, units
from kmc.battery import S_SHORT_CHARGE, S_SHORT_TIME, S_SHORTED, BatteryModel
from kmc.kernels import faradaic as kf

FLAWS = """
[materials.nasicon]
flaw_density_cm2 = {density}
flaw_scale_um = {scale}
flaw_shape = {shape}
"""


def scenario(tmp_path, protocol, every, n=12, nz=36, na_um=2.0, density=0.0, scale=5.0, shape=1.0, name="f"):
    """A bare Al foil over a Na layer of ``na_um`` on a thin (100 µm) NASICON with the given flaws."""
    return cell_scenario(tmp_path / f"{name}.toml", protocol, every, n=n, nz=nz, initial_na_um=na_um,
                         thickness_um=100.0, materials=FLAWS.format(density=density, scale=scale, shape=shape))


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
    p_needed = model.k_ic / (1.12 * math.sqrt(math.pi * depth_um * 1e-6))
    eta = p_needed / flaws.overpotential_pressure_mpa(1.0, model.molar_volume)  # V
    j0 = model.params0[kf.P_J0_NA]  # A/cm²
    f = model.params0[kf.P_F]
    return 2 * j0 * math.sinh(0.5 * f * eta)  # BV with α = 1/2 at η


@pytest.mark.parametrize("factor,shorts", [(0.6, False), (1.6, True)])
def test_one_flaw_shorts_after_its_fill_time_above_the_griffith_current(tmp_path, factor, shorts):
    depth = 10.0
    probe = BatteryModel(scenario(tmp_path, plate(1.0, 0.1), 10.0, name="probe"))
    j_crit = _critical_current(probe, depth)  # A/cm²
    j = factor * j_crit * 1e3  # mA/cm²
    t_fill_nominal = flaws.fill_time_s(depth, 0.5, probe.q_v_c, j * 1e-3)
    capacity = 2.0 * t_fill_nominal * j / 3600
    model = BatteryModel(scenario(tmp_path, plate(j, capacity), t_fill_nominal / 20, nz=int(16 + 4 * capacity / 0.056),
                                  name=f"one-{factor}"))
    state = model.new_state(1)
    col = 5 + 12 * 6
    state.fields["flaw_depth_um"][:] = 0.0
    state.fields["flaw_depth_um"][col] = depth
    out = advance_all(model, state)
    sc = state.fields["scalars"]
    if not shorts:
        assert not sc[S_SHORTED]
        assert out[-1]["filament_depth"] == pytest.approx(depth)  # full, yet below K_IC
        return
    assert sc[S_SHORTED]
    # The pixel's current at the last solve: constant under a uniform Na layer, though not the mean
    # (the pixel's share of the rough surface's faces sets it).
    j_pixel = state.fields["pixel_current"][col]
    assert 0.5 * j * 1e-3 < j_pixel < 2 * j * 1e-3
    assert sc[S_SHORT_TIME] == pytest.approx(flaws.fill_time_s(depth, 0.5, model.q_v_c, j_pixel), rel=0.02)
    assert out[-1]["voltage"] == 0.0  # collapsed
    assert out[-1]["time"] == pytest.approx(sc[S_SHORT_TIME])


def test_no_flaws_no_short_through_a_ccd(tmp_path):
    protocol = ('[[protocol]]\nkind = "ccd"\nstart_ma_cm2 = 2.0\nstep_ma_cm2 = 8.0\nmax_ma_cm2 = 50.0\n'
                'capacity_mah_cm2 = 0.05')
    model = BatteryModel(scenario(tmp_path, protocol, 2.0, density=0.0))
    state = model.new_state(1)
    out = advance_all(model, state)
    assert not state.fields["scalars"][S_SHORTED]
    assert model.n_cycles == 7 and int(state.fields["scalars"][15]) == 7  # every level plated and stripped
    assert max(o["current_density"] for o in out) == pytest.approx(50.0)


def test_a_short_ends_the_run_cleanly_and_the_store_marks_it(tmp_path):
    """Flaws of ≈ 10 µm under a few pixels (7 expected) and a ccd whose levels go from half to 3.5 times
    the Griffith current of a full 9 µm flaw: a level after the first shorts. The store keeps the samples before the short, marks the run, and records the ccd."""
    probe = BatteryModel(scenario(tmp_path, plate(1.0, 0.1), 10.0, name="probe"))
    j2 = 2.0 * _critical_current(probe, 9.0) * 1e3
    protocol = (f'[[protocol]]\nkind = "ccd"\nstart_ma_cm2 = {j2 / 4}\nstep_ma_cm2 = {3 * j2 / 4}\n'
                f'max_ma_cm2 = {j2 * 2}\ncapacity_mah_cm2 = 0.3')
    sc = scenario(tmp_path, protocol, 20.0, density=2e7, scale=10.0, shape=30.0, nz=40, name="store")
    ds = kmc.simulate(sc, seed=2).isel(run=0)
    assert int(ds.status) == 2 and int(ds.shorted) == 1
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
    """Bare Al foil on NASICON (T1's cell) with deep flaws (Weibull scale 20 µm, 0.08 per pixel), 4
    replicas per current: the faster the plating, the higher the local overpotential and the pressure
    in a filled flaw, the earlier the short (median short charge, runs that do not short counted at
    the bound, 0.5 mAh/cm²)."""
    protocol = """
[[protocol]]
kind = "plate"
current_ma_cm2 = {j}
capacity_mah_cm2 = 0.5
"""
    charges = {}
    for j in (1.0, 10.0):
        model = BatteryModel(scenario(tmp_path, protocol.format(j=j), 0.5 / j * 3600 / 50, n=24, nz=24, na_um=0.0,
                                      density=3e7, scale=20.0, shape=3.0, name=f"t1-{j}"))
        q = []
        for seed in range(1, 5):
            state = model.new_state(seed)
            advance_all(model, state)
            sc = state.fields["scalars"]
            q.append(sc[S_SHORT_CHARGE] if sc[S_SHORTED] else 0.5)  # unshorted runs: censored at the bound
        charges[j] = np.median(q)
    assert charges[10.0] < charges[1.0], charges
