"""E8 under the slot law (``model.flaw_law = "slot"``, PHYSICS v4 §5 E6, E8), through the production code.

- A full flaw cracks when the present pressure min(F|η0|/V_m, p_flow) crosses Griffith–Inglis,
  1.12 p √(πc) ≥ K_IC, and not before: on the overpotential's branch and on the extrusion's.
- Flaw Na strips first: a stripping pixel's flaws lose the charge it strips, in voxels, down to empty,
  where its mouth carries anodic current and nowhere else; the charge at the mouth falls back along
  the fill law.
- Flaw Na strips before layer Na, through the driver: a strip smaller than the flaws' Na leaves the
  layer as it was (the flaws' Na goes back to the metal), a larger one empties the flaws and takes
  only the rest from the layer; the observer's charge recount closes at every sample.
- Where the Na goes back: the most owed column's interface void beside connected Na; the depth that
  holds a given mean fill (the inverse the strip needs).

No crack during a strip or a rest and no pressure kept across a reversal (the flaws crack on the next
plating as fresh ones would): ``test_filaments.py``.
"""
import math

import numpy as np
import pytest
from battery_runs import cell_scenario

from kmc import flaws
from kmc.battery import BatteryModel, Run
from kmc.kernels.cell import NA

DEPTH_UM = 20.0  # every flaw this deep: a Pareto tail of m_σ = 2000 puts all but 1e-10 of them in c0's bin


def slot_scenario(tmp_path, protocol, every, *, n=6, nz=36, density=1e5, name="s", na_um=2.0):
    """A bare Al foil over ``na_um`` of Na on a thin (100 µm) NASICON whose flaws (``density`` per cm²) are
    all 20 µm deep, under the slot law."""
    materials = (f"[materials.nasicon]\nflaw_density_cm2 = {density}\nflaw_scale_um = {DEPTH_UM}\n"
                 "strength_weibull_modulus = 2000.0\n")
    sc = cell_scenario(tmp_path / f"{name}.toml", protocol, every, n=n, nz=nz, initial_na_um=na_um,
                       thickness_um=100.0, materials=materials)
    return sc.with_overrides({"model.flaw_law": "slot"})


def fields(run, current_a, pixel_j, eta0_v):
    """Frozen fields of a last solve: the cell current, every pixel's current (all on Na faces) and
    η0 = V + U_CE − φ (Na counter: U_CE = 0)."""
    run.current_a = current_a
    run.pixel_current[:] = pixel_j
    run.na_current[:] = pixel_j
    run.voltage_v = eta0_v
    run.phi[:] = 0.0


def fresh_cell(tmp_path, name):
    model = BatteryModel(slot_scenario(tmp_path, '[[protocol]]\nkind = "plate"\ncurrent_ma_cm2 = 1.0\n'
                                       'capacity_mah_cm2 = 0.1', 10.0, name=name))
    return model, Run(model.new_state(1))


def griffith_pressure_mpa(p):
    """K_IC/(1.12 √(πc)) (MPa): the pressure at which a 20 µm flaw cracks, by hand."""
    return p.k_ic_mpa_m05 / (1.12 * math.sqrt(math.pi * DEPTH_UM * 1e-6))


def test_a_full_flaw_cracks_when_the_present_pressure_crosses_griffith_inglis(tmp_path):
    """Full 20 µm flaws (plated to 1.01 Q(c)) crack at once when the present pressure reaches K_IC/(1.12
    √(πc)) (141 MPa on NASICON, computed here by hand) and not below it: on the overpotential's branch
    (|η0| at 0.99 and 1.01 of F|η0|/V_m = p*, at 10 mA/cm², where p_flow is far above p*), and on the
    extrusion's (at |η0| = 0.2 V, p_η ≈ 800 MPa, and j at 0.97 and 1.03 of the current whose p_flow,
    computed by hand, is p*). Planted faults: the criterion without Inglis' 1.12 (it then needs 12 % more
    pressure: no crack at 1.01 p*, fails); the pressure as the larger of the two branches instead of the
    smaller (cracks at 0.97 of the flow's current, fails)."""
    model, _ = fresh_cell(tmp_path, "probe")
    p = model.params
    vm = p.molar_volume_cm3_mol
    p_star = griffith_pressure_mpa(p)
    eta_star = p_star / flaws.overpotential_pressure_mpa(1.0, vm)
    opening = flaws.slot_opening_um(DEPTH_UM, p.k_ic_mpa_m05, 77.0)

    def p_flow(j):
        return flaws.extrusion_pressure_mpa(DEPTH_UM, j, opening, p.creep_sigma_ref_mpa, p.creep_rate_ref_s,
                                            p.creep_n, vm)

    j_high = 1e-2  # A/cm²
    assert p_flow(j_high) > 1.2 * p_star
    # p_flow ∝ j^(1/n) once 2c/δ_c ≫ 1 (1 + 2c/δ_c is j-free): the flow branch's critical current.
    j_star = j_high * (p_star / p_flow(j_high)) ** p.creep_n
    assert p_flow(j_star) == pytest.approx(p_star, rel=1e-9)
    cases = [(0.99 * eta_star, j_high, False), (1.01 * eta_star, j_high, True),
             (0.2, 0.97 * j_star, False), (0.2, 1.03 * j_star, True)]
    for k, (eta, j, cracks) in enumerate(cases):
        m, run = fresh_cell(tmp_path, f"c{k}")
        t_fill = flaws.slot_fill_time_s(DEPTH_UM, p.k_ic_mpa_m05, 77.0, j, vm)
        fields(run, 1e-3, j, -eta)
        # Just full: deeper bins (weight < 1e-10, and cracking more easily) stay empty.
        assert m.driver.losses.advance_flaws(run, 1.01 * t_fill) == cracks, (eta, j)
        assert run.flaw_front_um.min() > DEPTH_UM
        assert run.flaw_hazard == (pytest.approx(p.n_cols, rel=1e-9) if cracks else 0.0)  # every pixel's flaws


def test_flaw_na_strips_first_and_only_where_its_mouth_strips(tmp_path):
    """Full flaws, then a strip at 1 mA/cm² on the even pixels only (the odd ones carry no current: no Na
    connected at their mouth). Each stripping pixel's flaws lose |j| dt a²/q_v voxels (by hand) — a
    third of what they hold in the first strip, so the charge at the mouth falls back to Q(d) of the depth
    d whose flaws hold what is left — then all of it (empty: Q = 0, d = 0); the odd pixels keep theirs.
    Planted faults: flaws keeping their Na on a strip (fails at once); flaws emptied wherever the cell
    strips, the mouth's current ignored (fails on the odd pixels); the volume taken per flaw instead of per
    pixel (a factor n_flaw a² off: empty after the first strip, fails)."""
    model, run = fresh_cell(tmp_path, "strip")
    losses, p = model.driver.losses, model.params
    vm = p.molar_volume_cm3_mol
    t_fill = flaws.slot_fill_time_s(DEPTH_UM, p.k_ic_mpa_m05, 77.0, 1e-3, vm)
    fields(run, 1e-3, 1e-3, -1e-3)  # plate far below K_IC: full, no crack
    assert not losses.advance_flaws(run, 2 * t_fill)
    held = losses.flaw_na_voxels(run).copy()
    # full 20 µm columns (the Pareto mean c0 s/(s − 1))
    assert held == pytest.approx(p.flaws_per_pixel * DEPTH_UM / p.voxel_um, rel=2e-3)
    charge = run.flaw_charge_c_cm2.copy()
    even = np.arange(p.n_cols) % 2 == 0
    j_strip = np.where(even, -1e-3, 0.0)
    per_second = 1e-3 * p.face_area_cm2 / p.q_v_c  # voxels a pixel strips per second at 1 mA/cm²
    dt = held[0] / 3 / per_second
    fields(run, -1e-3 * even.mean(), j_strip, +1e-3)
    assert not losses.advance_flaws(run, dt)
    now = losses.flaw_na_voxels(run)
    assert now[even] == pytest.approx(held[even] * 2 / 3, rel=1e-9)
    assert (now[~even] == held[~even]).all() and (run.flaw_charge_c_cm2[~even] == charge[~even]).all()
    d = run.flaw_front_um[even]
    assert p.depth_grid.mean_fill_um(d) * p.flaws_per_pixel / p.voxel_um == pytest.approx(now[even], rel=1e-9)
    assert run.flaw_charge_c_cm2[even] == pytest.approx(
        flaws.slot_fill_charge_c_cm2(d, flaws.slot_opening_um(d, p.k_ic_mpa_m05, 77.0), vm), rel=1e-9)
    assert (run.flaw_charge_c_cm2[even] < charge[even]).all()
    assert not losses.advance_flaws(run, dt)  # two thirds
    assert losses.flaw_na_voxels(run)[even] == pytest.approx(held[even] / 3, rel=1e-9)
    assert not losses.advance_flaws(run, 2 * dt)  # more than they hold: empty, the layer gives the rest
    assert (run.flaw_charge_c_cm2[even] == 0).all() and (run.flaw_front_um[even] == 0).all()
    assert (losses.flaw_na_voxels(run)[~even] == held[~even]).all()
    assert run.flaw_hazard == 0.0


def layer_na(run):
    """The metal's Na (voxels): the lattice's, and a sealed layer's pending volume (plated but not yet laid
    down, it strips first: ``kmc.kernels.battery_loop``)."""
    return int((run.lattice == NA).sum()) + float(run.pending_voxels)


def test_flaw_na_strips_before_layer_na_through_the_driver(tmp_path):
    """Through the driver (8 × 8 columns of 0.5 µm, 5e6 flaws/cm² of 20 µm: full flaws hold 0.25 µm of Na
    per pixel, 0.0282 mAh/cm²): plate 0.2 mAh/cm² at 1 mA/cm² (every pixel's flaws fill past Q(c), below
    K_IC), strip 0.01 mAh/cm² (no pixel strips twice the mean: none empties), rest, strip 0.04, rest
    (each rest starts with a solve, which returns the flaws' Na). The first strip takes all its charge
    from the flaws: their Na falls by the charge stripped, and the layer's Na voxels (recounted from the
    lattice, with a sealed layer's pending volume) are those before it but for the Poisson mismatch
    between the strip events and the charge and under a voxel not yet returned; the second empties the
    flaws (0 Na, every front 0) and the layer gives only what they could not. The observer recounts the
    charge every sample (it raises on a mismatch). Planted faults: flaws keeping their Na on a strip
    (fails on the flaws' Na); the flaws' Na not given back to the metal (the layer loses every stripped
    voxel: fails on the layer); the flaws emptied without their Na going anywhere (the recount raises)."""
    protocol = ('[[protocol]]\nkind = "plate"\ncurrent_ma_cm2 = 1.0\ncapacity_mah_cm2 = 0.2\n'
                '[[protocol]]\nkind = "strip"\ncurrent_ma_cm2 = 1.0\ncapacity_mah_cm2 = 0.01\n'
                '[[protocol]]\nkind = "rest"\nduration_s = 6.0\n'
                '[[protocol]]\nkind = "strip"\ncurrent_ma_cm2 = 1.0\ncapacity_mah_cm2 = 0.04\n'
                '[[protocol]]\nkind = "rest"\nduration_s = 6.0')
    # No interphase: its growth takes Na from the layer during the strips too (about a voxel per strip at
    # NASICON's calibrated rate), which the layer's recount below would read as the flaws' doing.
    sc = slot_scenario(tmp_path, protocol, 6.0, n=8, density=5e6, name="driver")
    model = BatteryModel(sc.with_overrides({"materials.nasicon.sei_rate_ma_cm2": 0.0}))
    p = model.params
    vox = p.voxel_mah_cm2 / p.n_cols  # mAh/cm² per voxel of the patch
    # n_flaw a² flaws per pixel, each a column of a² filled 20 µm: 0.25 µm of Na, at 8.873 µm per mAh/cm².
    full_mah = 5e6 * (0.5e-4) ** 2 * DEPTH_UM / 8.873
    assert p.flaws_per_pixel * DEPTH_UM / p.voxel_um * p.n_cols * vox == pytest.approx(full_mah, rel=1e-3)
    state = model.new_state(3)
    run = Run(state)
    samples = []  # (flaw Na, layer Na, strip events, charge) at every sample
    k = 0
    while (obs := model.advance_sample(state, k)) is not None:
        k += 1
        samples.append((obs["flaw_na"], layer_na(run), run.count("strip"), obs["charge"]))
    assert not run.shorted

    def at(charge_mah_cm2):  # the sample at the end of a step: the last at the step's charge (within 1e-9)
        return [m for m in samples if abs(m[3] - charge_mah_cm2) < 1e-9][-1]

    (f0, na0, s0, q0), (f1, na1, s1, q1), (f2, na2, s2, q2) = at(0.2), at(0.19), at(0.15)
    assert f0 == pytest.approx(full_mah, rel=2e-3)  # full (the Pareto mean: c0 s/(s − 1))
    stripped1 = q0 - q1
    assert stripped1 == pytest.approx(0.01, rel=1e-3)
    assert f1 == pytest.approx(f0 - stripped1, abs=0.02 * stripped1)  # the flaws gave the strip's charge
    events1 = s1 - s0
    mismatch = abs(events1 - stripped1 / vox)  # Poisson: strip events vs the charge they stand for
    assert abs(na1 - na0) <= mismatch + 1.0  # the layer kept its Na
    assert events1 > 0.5 * stripped1 / vox  # ... while the strip took its voxels from it (14): given back
    assert f2 == 0.0 and (run.flaw_front_um == 0).all() and (run.flaw_charge_c_cm2 == 0).all()
    stripped2 = q1 - q2
    events2 = s2 - s1
    layer2 = (stripped2 - f1) / vox  # voxels the layer gives: the strip's charge beyond the flaws' Na
    mismatch2 = abs(events2 - stripped2 / vox)
    assert na1 - na2 == pytest.approx(layer2, abs=mismatch2 + 1.0)


def test_na_given_back_goes_to_the_most_owed_column_beside_connected_na():
    """``kmc.kernels.debt.give_one_voxel`` on a 3 × 1 × 4 cell (electrolyte at z = 0, collector at z = 3):
    column 0 has an interface void under connected Na, column 1 one under dead Na, column 2 none. Owed
    (0.3, 0.9, 0.2) voxels: column 1 is owed most but its void is beside no connected Na, so the voxel
    goes to column 0's void, and one voxel is cleared from the most owed first (column 1's 0.9, then 0.1
    of column 0's). With column 1's Na connected it goes there instead. Planted faults: the void chosen
    without asking whether its Na is connected (fails: column 1); the owed cleared from the least owed
    first (fails on what is left)."""
    from kmc.kernels import debt as kdebt
    from kmc.kernels.cell import CC, GAP, SE
    from kmc.kernels.clusters import CLUSTER_ACTIVE, CLUSTER_DEAD

    def cell(column1_class):
        lat = np.array([[SE, SE, SE], [GAP, GAP, NA], [NA, NA, NA], [CC, CC, CC]], dtype=np.uint8)
        cls = np.full(lat.shape, -1, dtype=np.int8)
        cls[lat == NA] = CLUSTER_ACTIVE
        cls[2, 1] = column1_class
        return lat.ravel(), cls.ravel()

    for column1_class, target in ((CLUSTER_DEAD, 0), (CLUSTER_ACTIVE, 1)):
        lat, cls = cell(column1_class)
        # column 2 at z = 1, beside column 1's void: a void too while column 1's Na is dead, else connected Na
        lat[1 * 3 + 2] = GAP if column1_class == CLUSTER_DEAD else NA
        gap = np.empty((4, 3), dtype=np.uint8)
        count = np.empty(3, dtype=np.int64)
        kdebt.returnable_gaps(lat, cls, 3, 1, 4, gap, count)
        owed = np.array([0.3, 0.9, 0.2])
        assert kdebt.give_one_voxel(lat, cls, 3, 1, 4, gap, count, owed)
        assert lat[3 + target] == NA and cls[3 + target] == CLUSTER_ACTIVE
        assert lat[3 + (1 - target)] == GAP
        assert owed == pytest.approx([0.2, 0.0, 0.2], abs=1e-12)


def test_the_depth_that_holds_a_mean_fill_inverts_the_mean_fill():
    """``ParetoDepthGrid.depth_of_mean_fill_um`` against ``mean_fill_um`` (m_σ = 9, 2, 1.5; c0 = 15 µm) from
    1 nm to 1 mm, below c0 (the identity) and above it."""
    for m in (9.0, 2.0, 1.5):
        g = flaws.ParetoDepthGrid(15.0, m)
        d = np.array([1e-3, 5.0, 15.0, 15.001, 40.0, 400.0, 1e3])
        assert g.depth_of_mean_fill_um(g.mean_fill_um(d)) == pytest.approx(d, rel=1e-9)
    assert flaws.ParetoDepthGrid(15.0, 9.0).depth_of_mean_fill_um(np.array([0.0]))[0] == 0.0
