"""Plating physics with a known answer or a required direction (PHYSICS.md §§3–5, VALIDATION.md
T2, T3, D4), run through the production driver (``kmc.battery.BatteryModel``) and its kernels.

- Nucleation (E2): the waiting time of the first nucleus on a uniform bare-Al contact held at V
  follows the hazard Σ_faces a² J0 exp(−B/η²) (faces recounted from the lattice, constants from
  materials.toml); nucleus density rises steeply with the plating current; Au-coated collectors
  plate with no nucleation barrier, bare Al only after a nucleation overpotential.
- Bare Al under T2's conditions: few nuclei, the current focused on them.
- The capillary rate cap (PHYSICS §5, time-scale separation): T2's observables converge as it rises.
- Quick versions of T2, T3 (the j0 calibration) and D4 on small lattices; the full-size runs are
  ``slow``.
"""
import math

import numpy as np
import pytest
from battery_runs import accepted, cell_scenario, run, validation

from kmc.analysis.lattice import mean_na_height_um
from kmc.battery import BatteryModel, Run
from kmc.kernels.cell import CC, SE
from kmc.kernels.faradaic import CC_NUCLEATED
from kmc.kernels.moves import M_NU_CAP


def uniform_contact(tmp_path, n, protocol, every, au_nm=0.0, nz=24):
    """A collector pellet conforming to the electrolyte: contact everywhere. ``protocol`` is the body of
    one ``[[protocol]]`` table."""
    path = tmp_path / f"uniform-{n}-{abs(hash(protocol))}-{au_nm}.toml"
    return cell_scenario(path, "[[protocol]]\n" + protocol, every, n=n, nz=nz, form="pellet", au_nm=au_nm)


def nuclei(state):
    """Collector columns where a nucleus formed (the collector's own per-column state)."""
    return int((Run(state).col_state == CC_NUCLEATED).sum())


def collector_faces(lattice, nx, ny, nz):
    """Electrolyte–collector faces, recounted from the lattice (x, y periodic; z walled)."""
    lat = lattice.reshape(nz, ny, nx)
    se, cc = lat == SE, lat == CC
    n = sum(int((se & np.roll(cc, s, axis)).sum()) for axis in (1, 2) for s in (1, -1))
    return n + int((se[:-1] & cc[1:]).sum()) + int((se[1:] & cc[:-1]).sum())


# -- nucleation ------------------------------------------------------------------------------------

@pytest.mark.parametrize("voltage_v", [-0.27, -0.28])
def test_first_nucleus_waits_as_the_hazard_says(tmp_path, voltage_v):
    """Held at V on bare Al in uniform contact (no current before a nucleus: φ = 0, η = V + U_CE),
    the chance of no nucleus by T is exp(−k T), k = N_faces a² J0 exp(−B/η²). The count of such
    replicas is compared with its Poisson-binomial expectation (z-score)."""
    hold_s = 1.0
    sc = uniform_contact(tmp_path, 8, f'kind = "hold"\nvoltage_v = {voltage_v}\nmax_duration_s = {hold_s}', hold_s,
                         nz=16)
    model = BatteryModel(sc)
    al = sc.materials["al"]
    a2 = (sc.get("lattice.voxel_um") * 1e-4) ** 2
    eta = voltage_v + 0.0  # Na counter: U_CE = 0
    per_face = a2 * al["nucleation_prefactor_cm2_s"] * math.exp(-al["nucleation_barrier_v2"] / eta**2)
    survived, expected, variance = 0, 0.0, 0.0
    for seed in range(300):
        state = model.new_state(seed)
        p = math.exp(-collector_faces(state.lattice, 8, 8, 16) * per_face * hold_s)
        expected += p
        variance += p * (1 - p)
        model.advance_sample(state, 0)
        model.advance_sample(state, 1)
        survived += nuclei(state) == 0
    z = (survived - expected) / math.sqrt(variance)
    assert 0.1 * 300 < expected < 0.95 * 300  # the test is sensitive at these voltages
    assert abs(z) < 4.0, (survived, expected, z)


def test_nucleus_density_rises_steeply_with_current(tmp_path):
    """On a uniform bare-Al contact the double layer charges until nuclei form: the faster it is
    charged, the higher the overpotential reached and the more nuclei (B/η² in the exponent)."""
    counts, v_min = [], []
    for j in (1.0, 10.0, 100.0):
        q = 0.01
        sc = uniform_contact(tmp_path, 24, f'kind = "plate"\ncurrent_ma_cm2 = {j}\ncapacity_mah_cm2 = {q}',
                             q / j * 3600 / 5)
        model = BatteryModel(sc)
        n, v = 0, []
        for seed in (1, 2):
            state, out = run(model, seed)
            n += nuclei(state)
            v.append(min(o["voltage_min"] for o in out))
        counts.append(n)
        v_min.append(np.mean(v))
    assert v_min[0] > v_min[1] > v_min[2], v_min
    assert counts[0] >= 1 and counts[1] >= 2 * counts[0] and counts[2] >= 3 * counts[1], counts


def test_au_plates_at_a_lower_overpotential_than_bare_al(tmp_path):
    """Au alloys at once (no barrier) and the alloyed faces plate; bare Al waits for a nucleus."""
    protocol = 'kind = "plate"\ncurrent_ma_cm2 = 0.5\ncapacity_mah_cm2 = 0.01'
    v_min = {}
    for au_nm in (0.0, 96.0):
        sc = uniform_contact(tmp_path, 16, protocol, 10.0, au_nm=au_nm)
        state, out = run(BatteryModel(sc), 1)
        v_min[au_nm] = min(o["voltage_min"] for o in out)
        if au_nm:
            assert nuclei(state) == 0
    assert v_min[0.0] < -0.2  # bare Al: B = 1.7 V² needs η ~ 0.3 V for a nucleus in seconds
    assert v_min[96.0] > v_min[0.0] + 0.15, v_min


def test_bare_al_foil_under_t2_nucleates_sparsely_and_focuses_current():
    """T2's conditions without Au: a few nuclei per (16 µm)², and while they carry the current
    the largest local current density is many times the mean."""
    sc = validation("T2", **{"lattice.nx": 32, "lattice.ny": 32, "collector.seed_layer": "none",
                             "collector.seed_layer_nm": 0.0, "protocol.0.capacity_mah_cm2": 0.02,
                             "output.sample_every_s": 6.0})
    for seed in (1, 2):
        state, out = run(BatteryModel(sc), seed)
        assert 1 <= nuclei(state) <= 3
        early = [o for o in out if 0 < o["charge"] <= 0.01]
        assert early and all(o["max_current_density"] > 20 * o["current_density"] for o in early)
        assert out[-1]["na_contact_fraction"] < 0.5


# -- time-scale separation -------------------------------------------------------------------------

def _t2_observables(ratio, seeds, n, capacity):
    """Per seed: mean V over the run, charge at which the contact fraction reaches 0.5, final
    thickness CV; and the model (for its capillary rate)."""
    res = []
    sc = validation("T2", **{"lattice.nx": n, "lattice.ny": n, "protocol.0.capacity_mah_cm2": capacity,
                             "output.sample_every_s": 10.0, "numerics.max_capillary_rate_ratio": ratio})
    model = BatteryModel(sc)
    for seed in seeds:
        _, out = run(model, seed)
        v = np.array([o["voltage"] for o in out[1:]])
        q = np.array([o["charge"] for o in out])
        c = np.array([o["contact_fraction"] for o in out])
        res.append((v.mean(), q[np.argmax(c >= 0.5)], out[-1]["thickness_cv"]))
    return np.array(res), model


def _check_cap_convergence(ratios, seeds, **kw):
    """Capped runs agree with uncapped ones within their replica noise (4 standard errors of the
    difference of means, plus a floor: 0.5 mV, 0.002 mAh/cm², 0.01)."""
    ref, model = _t2_observables(1e9, seeds, **kw)
    assert model.params.moves[M_NU_CAP] == pytest.approx(model.params.nu_cap_uncapped_s)
    floor = np.array([5e-4, 2e-3, 1e-2])
    for ratio in ratios:
        obs, model = _t2_observables(ratio, seeds, **kw)
        assert model.params.moves[M_NU_CAP] < model.params.nu_cap_uncapped_s  # the cap binds at these ratios
        diff = np.abs(obs.mean(axis=0) - ref.mean(axis=0))
        se = np.sqrt((obs.var(axis=0, ddof=1) + ref.var(axis=0, ddof=1)) / len(seeds))
        assert (diff <= 4 * se + floor).all(), (ratio, obs.mean(axis=0), ref.mean(axis=0), se)


def test_capillary_cap_converges_on_t2_observables_quick():
    _check_cap_convergence((0.3, 3.0), seeds=range(1, 7), n=16, capacity=0.1)


@pytest.mark.slow
def test_capillary_cap_converges_on_t2_observables():
    _check_cap_convergence((0.1, 0.3, 1.0, 3.0), seeds=range(1, 17), n=32, capacity=0.2)


# -- validation rows, small: judged by the rows' own accepted ranges (kmc.validation) ---------------------

def _t2_checks(state, out, model):
    """VALIDATION.md T2 on one run: no short, final contact fraction ≥ 0.8, thickness within 15 % of
    8.87 µm per mAh/cm² — the height of the Na top above the electrolyte (a void or porous Na would
    raise it; a count of Na voxels could not see them) over the charge passed, as the row measures it;
    and what the paper shows without a number: the voltage minimum within the first sample (60 s), then
    a steady plateau, uniform Na."""
    p = model.params
    v = np.array([o["voltage"] for o in out])
    v_min = np.array([o["voltage_min"] for o in out])
    end = out[-1]
    assert end["charge"] == pytest.approx(2.0, rel=1e-3)
    assert not Run(state).shorted
    assert (v[1:] < 0).all()  # plating
    assert v_min.argmin() <= 1  # the minimum comes within the first sample interval (60 s)
    late = v[len(v) // 2:]
    assert late.max() - late.min() < 2e-3  # then a steady plateau
    assert accepted("T2", "final contact").accepts(end["contact_fraction"]), end["contact_fraction"]
    height = mean_na_height_um(state.lattice.reshape(p.nz, p.ny, p.nx), p.voxel_um)
    assert accepted("T2", "thickness").accepts(height / end["charge"]), height / end["charge"]
    assert end["thickness_cv"] < 0.15  # uniform


def test_t2_small():
    """T2 at 32² columns. Planted fault: a voxel's charge 20 % too small (1 mAh/cm² of Na = 10.6 µm)
    fails it (the thickness leaves the row's 8.87 µm ± 15 % per mAh/cm²)."""
    sc = validation("T2", **{"lattice.nx": 32, "lattice.ny": 32})
    model = BatteryModel(sc)
    state, out = run(model, 1)
    _t2_checks(state, out, model)


def test_t3_small_interfacial_resistance_in_the_accepted_range():
    sc = validation("T3", **{"lattice.nx": 32, "lattice.ny": 32})
    _, out = run(BatteryModel(sc), 1)
    assert out[-1]["current_density"] == pytest.approx(0.02)
    r_int = out[-1]["interfacial_resistance"]
    assert accepted("T3", "interfacial resistance").accepts(r_int), r_int


def test_d4_small_uniform_na_on_an_al_pellet():
    sc = validation("D4", **{"lattice.nx": 32, "lattice.ny": 32})
    _, out = run(BatteryModel(sc), 1)
    end = out[-1]
    assert end["charge"] == pytest.approx(1.0, rel=1e-3)
    assert accepted("D4", "final contact").accepts(end["contact_fraction"]), end["contact_fraction"]
    assert accepted("D4", "final thickness CV").accepts(end["thickness_cv"]), end["thickness_cv"]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_t2_full_size(seed):
    sc = validation("T2")
    model = BatteryModel(sc)
    state, out = run(model, seed)
    _t2_checks(state, out, model)
