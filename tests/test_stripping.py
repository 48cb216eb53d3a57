"""Stripping, voids, losses and cycling (PHYSICS.md §5 E6, E4 refill, E7; §6 protocols; §7
Coulombic efficiency), through the production driver (``kmc.battery.BatteryModel``).

- A wetted, loaded interface stripped slowly gives back everything but the alloy and the SEI.
- Interface voids: the refill law (the critical stripping current j_r = k_r σ_c of Na) bounds the
  void fraction below j_r and loses the contact above it, at two voxel sizes; the volume of a refill
  comes from the Na near the void, at its collector side.
- The charge bookkeeping holds through plate, rest, strip, hold and cycles (checked in the run at
  every sample; a violation fails the run), and the per-cycle charges add up to the charge passed.
- Quick versions of T4, D1 (pellet above foil) and D3; the voxel-size convergence of CE is ``slow``.
"""

import numpy as np
import pytest
from battery_runs import accepted, advance_all, cell_scenario, run, validation

import kmc
from kmc import units
from kmc.battery import BatteryModel, Run
from kmc.kernels.cell import CC, GAP, NA, SE


def cell(tmp_path, protocol, every, n=16, nz=24, form="foil", p=5.6, au_nm=0.0, initial_na_um=0.0, snaps=None,
         thickness_um=1000.0, name="cell", materials=""):
    return cell_scenario(tmp_path / f"{name}.toml", protocol, every, n=n, nz=nz, form=form, au_nm=au_nm,
                         initial_na_um=initial_na_um, pressure_mpa=p, thickness_um=thickness_um, snapshot_every=snaps,
                         materials=materials)


def ce_of(state):
    return float(Run(state).cycle_table[0])


# -- a wetted interface gives everything back ------------------------------------------------------

@pytest.mark.xfail(strict=True, reason="open defect of the v4 refill (issue 15): seed 1 strips 0.250 of 0.395 mAh/cm² "
                                        "before the cut-off at 0.1 mA/cm², far below j_r = 5.6 mA/cm²; 893 Na voxels "
                                        "are left hanging over interface voids. On the pellet's relief the columns "
                                        "the refill thins at the collector side are not all thinned by one voxel "
                                        "(capillary moves open more gaps there), so the rigid collector never finds "
                                        "a gap to close in every column and cannot settle, and σ_c falls to 0")
def test_slow_strip_of_a_wetted_loaded_interface_returns_all_but_alloy_and_sei(tmp_path):
    """Au–Al pellet (no gaps) on NASICON at 20 MPa, 0.4 mAh/cm² plated and stripped at 0.1 mA/cm²:
    nothing is left in the lattice (no voids, dead or trapped Na) and CE = 1 − (alloy + SEI)/plated
    (the alloy's Na is not recovered, the SEI's consumed) — up to the Poisson noise of a galvanostatic
    KMC run, whose N events carry the charge I·t with a relative spread 1/√N."""
    protocol = """
[[protocol]]
kind = "plate"
current_ma_cm2 = 0.1
capacity_mah_cm2 = 0.4
[[protocol]]
kind = "strip"
current_ma_cm2 = 0.1
cutoff_v = 1.0
capacity_mah_cm2 = 0.4
"""
    sc = cell(tmp_path, protocol, 600.0, n=24, form="pellet", p=20.0, au_nm=96.0)
    state, out = run(BatteryModel(sc))
    end = out[-1]
    assert end["voltage"] >= 1.0  # stripped to the cut-off
    assert (state.lattice == NA).sum() == 0  # recounted: no Na left anywhere
    assert abs(Run(state).pending_voxels) < 1.0  # and none held as a sealed layer's pending volume
    assert end["alloy_na"] > 0.02 and end["sei_na"] > 0  # the Au took its share; NASICON's thin SEI
    plated = Run(state).cycle_table[1]
    expected = 1.0 - (end["alloy_na"] + end["sei_na"]) / plated
    n_events = Run(state).count("plate") + Run(state).count("strip")  # plating and stripping events
    assert ce_of(state) == pytest.approx(expected, abs=4.0 / np.sqrt(n_events))


# -- voids: the refill law (E4) ---------------------------------------------------------------------

STRIP_FLAT = """
[[protocol]]
kind = "strip"
current_ma_cm2 = {j}
cutoff_v = 5.0
capacity_mah_cm2 = {capacity}
"""
FLAT = "[materials.nasicon]\nroughness_um = 0.0\n"  # a flat electrolyte: every void is an interface void
P_REFILL_MPA = 5.6


def flat_na_cell(tmp_path, j, voxel_um, n, name, initial_na_um=8.0, strip_um=4.0):
    """8 µm of Na loaded at 5.6 MPa between a flat NASICON (20 µm thin, far from the cut-off while in
    contact) and a foil, 4 µm of it stripped at j (mA/cm²)."""
    capacity = units.thickness_to_capacity_mah_cm2(strip_um, 23.78)
    nz = int(round((initial_na_um + 3.0) / voxel_um)) + 4
    path = tmp_path / f"{name}.toml"
    nz_written = int(round((initial_na_um + 3.0) / 0.5)) + 4  # the helper writes 0.5 µm voxels
    cell_scenario(path, STRIP_FLAT.format(j=j, capacity=capacity), capacity / j * 3600 / 20, n=n, nz=nz_written,
                  initial_na_um=initial_na_um, pressure_mpa=P_REFILL_MPA, thickness_um=20.0, materials=FLAT)
    return kmc.load_scenario(path, overrides={"lattice.voxel_um": voxel_um, "lattice.nz": nz})


def critical_stripping_current_ma_cm2():
    """j_r = k_r P at 25 °C (``kmc.units``, the shipped constants): σ_c = P under a layer carrying the load."""
    return units.refill_current_density_ma_cm2(P_REFILL_MPA, units.load_materials()["na"], units.celsius_to_kelvin(25.0))


@pytest.mark.parametrize("voxel_um", [1.0, 0.25])
def test_interface_voids_stay_bounded_below_the_critical_current_and_take_over_above_it(tmp_path, voxel_um):
    """E4 refill: a void pixel refills at r = j_r a²/q_v, a contact pixel strips at j a²/q_v per contact
    fraction, so (mean field) the void fraction obeys df/dt ∝ j − f j_r: it settles at f = j/j_r below
    the critical current j_r = k_r P and runs to 1 (contact lost, the voltage to the cut-off) above it.
    At 0.5 j_r the whole 4 µm strips, the void fraction stays near 0.5; at 2 j_r the contact is lost
    and the cut-off reached before half of it. The same at 1 µm and at 0.25 µm voxels: the threshold
    does not depend on the voxel size.
    Planted fault: the refill rate scaled by (1 µm/a) — a per-voxel law like v3's one-voxel transport —
    moves the 0.25 µm threshold to 4 j_r: the void fraction at 0.5 j_r falls to 0.14 there (fails)."""
    j_r = critical_stripping_current_ma_cm2()
    n = 16
    below = run(BatteryModel(flat_na_cell(tmp_path, 0.5 * j_r, voxel_um, n, "below")))[1]
    above = run(BatteryModel(flat_na_cell(tmp_path, 2.0 * j_r, voxel_um, n, "above")))[1]
    capacity = units.thickness_to_capacity_mah_cm2(4.0, 23.78)
    assert below[-1]["stripped"] > 0.97 * capacity and below[-1]["voltage"] < 1.0  # no cut-off
    f_below = np.mean([o["void_fraction"] for o in below[len(below) // 4:]])
    assert 0.3 < f_below < 0.7, f_below  # ≈ j/j_r = 0.5
    assert above[-1]["voltage"] >= 5.0 and above[-1]["stripped"] < 0.5 * capacity, above[-1]  # contact lost
    assert above[-1]["void_fraction"] > 0.95


def test_the_na_around_a_persisting_void_thins_from_the_collector_and_only_there(tmp_path):
    """E4 refill's source: the voxel that refills a void is taken at the collector side of the thickest
    Na column within one local Na thickness h of it. A disc of interface voids (radius 3 voxels) planted
    under 2 µm of loaded Na (h = 3 voxels above the voids) on a flat electrolyte, left at rest for about one refill time
    per pixel: every refill leaves a gap under the collector (a thinned column), most within h + 3
    voxels of the disc's centre (capillary moves carry a few voids off the disc); the Na is conserved (the voids' volume came out of those columns).
    Planted fault: the v3 rule, the refill taken from the whole layer's pending volume (the column
    stays whole): no column thins (fails)."""
    protocol = """
[[protocol]]
kind = "rest"
duration_s = 120.0
"""
    path = tmp_path / "void.toml"
    cell_scenario(path, protocol, 30.0, n=32, nz=12, initial_na_um=2.0, pressure_mpa=P_REFILL_MPA, materials=FLAT)
    model = BatteryModel(kmc.load_scenario(path))
    state = model.new_state(1)
    r = Run(state)
    nx = ny = 32
    lat = state.lattice.reshape(-1, ny, nx)
    se_top = int(np.flatnonzero((lat == SE).any(axis=(1, 2)))[-1])
    yy, xx = np.mgrid[:ny, :nx]
    dist = np.hypot(xx - 16, yy - 16)
    disc = dist <= 3.0
    lat[se_top + 1][disc] = GAP  # the planted interface voids, under continuous Na
    r.na0_voxels = r.na0_voxels - int(disc.sum())  # removed by hand, not by a stripping event
    na0 = int((lat == NA).sum())
    h = int((lat[:, 16, 16] == NA).sum())
    assert h == 3  # 4 voxels of Na, the lowest now the void
    advance_all(model, state)
    lat = state.lattice.reshape(-1, ny, nx)
    refills = r.count("refill")
    assert refills >= 10, refills  # at ~1/130 s per pixel, 37 pixels, 120 s
    bottom = np.asarray(r.cc_bottom).reshape(ny, nx)
    assert (np.take_along_axis(lat, bottom[None], axis=0)[0] == CC).all()
    under_cc = np.take_along_axis(lat, (bottom - 1)[None], axis=0)[0]
    thinned = under_cc == GAP
    assert thinned.sum() >= 0.8 * refills, (thinned.sum(), refills)  # the sources, at the collector side
    # Within h of the voids: of the disc, or (a few) of voids that capillary moves (E4b) carried off it.
    assert (dist[thinned] <= h + 3.0 + 1e-9).mean() >= 0.75, dist[thinned]
    # Volume moved, none made (no pending volume drawn): the Na, up to the few voxels the interphase (E7)
    # took from the metal at rest (the run's own bookkeeping check covers them).
    assert 0 <= na0 - int((lat == NA).sum()) <= 5
    assert abs(r.pending_voxels) < 1e-9


# -- protocols and bookkeeping -------------------------------------------------------------------------

@pytest.mark.xfail(strict=True, reason="open defect with the v4 refill (issue 15), seed 4: the second cycle's strip "
                                        "at 1 mA/cm² (0.64 j_r) reaches the 1 V cut-off after 0.16 of 0.24 mAh/cm², "
                                        "and the last cycle's plate then passes no charge (its CE is NaN); "
                                        "not investigated yet")
def test_bookkeeping_through_plate_rest_strip_hold_and_cycles(tmp_path):
    """The run recounts the charge from the lattice at every sample and fails on a mismatch; this
    protocol walks every kind of step. The per-cycle charges then add up to the charge passed, and
    the Na volume in the final lattice snapshot matches the inventories (within the one layer of
    volume the sealed-layer approximation holds outside the lattice)."""
    protocol = """
[[protocol]]
kind = "plate"
current_ma_cm2 = 0.5
capacity_mah_cm2 = 0.3
[[protocol]]
kind = "rest"
duration_s = 300.0
[[protocol]]
kind = "strip"
current_ma_cm2 = 0.5
cutoff_v = 1.0
capacity_mah_cm2 = 0.2
[[protocol]]
kind = "hold"
voltage_v = -0.05
max_duration_s = 300.0
[[protocol]]
kind = "cycle"
count = 2
steps = [
    { kind = "plate", current_ma_cm2 = 1.0, capacity_mah_cm2 = 0.2 },
    { kind = "strip", current_ma_cm2 = 1.0, cutoff_v = 1.0, capacity_mah_cm2 = 0.3 },
]
"""
    # No flaws: re-plating at 1 mA/cm² onto the voided interface would short the cell (E8) before the
    # cycles this test walks through.
    sc = cell(tmp_path, protocol, 60.0, n=12, au_nm=96.0, snaps=1, materials="[materials.nasicon]\nflaw_density_cm2 = 0.0")
    ds = kmc.simulate(sc, seed=4).isel(run=0)
    assert int(ds.status) == 2, str(ds.error.values)
    n = int(ds.samples_written)
    ce = ds.coulombic_efficiency.values
    # (a cycle may strip Na left over from earlier ones: CE above 1 is possible here)
    assert ce.shape == (3,) and np.all(ce > 0)
    # Every charge passed belongs to a cycle (the hold's to the cycle it falls in), and the protocol
    # ends with a strip, which closes the last cycle.
    net = ds.charge_plated.values.sum() - ds.charge_stripped.values.sum()
    assert net == pytest.approx(float(ds.charge.values[n - 1]), abs=1e-9)
    assert set(np.unique(ds.step.values[:n])) == {0, 1, 2, 3, 4}
    stripped = ds.stripped.values[:n]
    assert np.all(np.diff(stripped) >= 0)
    # Recount the final snapshot's Na against the inventories.
    vm = sc.materials["na"]["molar_volume_cm3_mol"]
    vox = units.thickness_to_capacity_mah_cm2(sc.get("lattice.voxel_um"), vm) / (12 * 12)
    last = int(np.flatnonzero(np.isfinite(ds.snap_time.values))[-1])
    na_mah = float((ds.lattice.values[last] == NA).sum()) * vox
    metal = float(ds.plated.values[n - 1] - ds.stripped.values[n - 1] - ds.alloy_na.values[n - 1]
                  - ds.sei_na.values[n - 1])
    layer = 12 * 12 * vox
    assert abs(na_mah - metal) <= layer + 2 * vox, (na_mah, metal)


@pytest.mark.parametrize("leak", ["na_voxel_removed", "plating_counter_bumped"])
def test_a_planted_leak_fails_the_run_with_the_bookkeeping_error(tmp_path, monkeypatch, leak):
    """The in-run bookkeeping check fires: at the fourth sample a leak is planted just before the model
    observes (a Na voxel removed from the lattice, or one plating event counted that never happened),
    and the run, driven by the runner into a store, fails there: status failed, the error naming the
    charge bookkeeping and both counts. Planted fault: the check turned into a no-op (the run then
    finishes, status done) fails this."""
    import xarray as xr

    from kmc.api import plan_replicas
    from kmc.battery.state import COUNTERS
    from kmc.runner import execute_run
    from kmc.store import STATUS_FAILED

    sc = validation("T2", **{"lattice.nx": 12, "lattice.ny": 12, "protocol.0.capacity_mah_cm2": 0.05,
                             "output.sample_every_s": 30.0})
    observe = BatteryModel.observe
    seen = []

    def leaky_observe(self, state):
        seen.append(state.time_s)
        if len(seen) == 4:
            if leak == "na_voxel_removed":
                na = np.flatnonzero(state.lattice == NA)
                state.lattice[na[-1]] = 0  # the topmost Na voxel becomes a gap
            else:
                state.counters[COUNTERS.index("plate")] += 1
        return observe(self, state)

    monkeypatch.setattr(BatteryModel, "observe", leaky_observe)
    path = str(tmp_path / "leak.zarr")
    plan_replicas(sc, 1, 7).create(path)
    assert execute_run(path, 0) == "failed"
    ds = xr.open_zarr(path)
    assert int(ds.status[0]) == STATUS_FAILED
    error = str(ds.error.values[0])
    assert "charge bookkeeping broken" in error and "by events" in error and "by the lattice" in error, error
    assert len(seen) == 4  # the run stopped at the leak, the samples before it passed the check


# -- validation rows, small ------------------------------------------------------------------------------

@pytest.mark.xfail(strict=True, reason="T4 at 32² (seed 1): CE 96.1 %, above the accepted 80–95 %, with the v4 refill "
                                        "law (j_r = k_r σ_c, 1.57 mA/cm² at 5.6 MPa: three times the stripping "
                                        "current, so the interface stays in contact until the Na runs out); "
                                        "T4 calibrates the NASICON interphase in v4 (issue 15), not done yet")
def test_t4_small_voltage_reaches_the_cutoff_with_ce_in_range():
    """VALIDATION.md T4 at 32² columns, judged by the row's accepted ranges: CE 80–95 %, the voltage at
    the cut-off, stranded + dead Na ≤ 3 % of the plated charge (and some Na left under the re-landed
    foil). Planted fault: half the Au's alloy capacity (CE 95.2 %: passed the old bound of 96 %) fails it."""
    sc = validation("T4", **{"lattice.nx": 32, "lattice.ny": 32})
    state, out = run(BatteryModel(sc))
    end = out[-1]
    assert accepted("T4", "final voltage").accepts(end["voltage"]), end["voltage"]  # the sudden rise at the end
    ce = 100 * ce_of(state)
    assert accepted("T4", "first-cycle CE").accepts(ce), ce
    assert end["stranded_na"] + end["dead_na"] <= 0.03 * end["plated"], (end["stranded_na"], end["dead_na"])
    assert end["stranded_na"] + end["dead_na"] > 0  # Na left behind under the re-landed foil
    assert end["trapped_na"] == 0  # a foil has no pores


@pytest.fixture(scope="module")
def d1_d3_small():
    """First-cycle CE (%) of D1_foil, D1_pellet and D3 at 24² columns, seed 1."""
    ce = {}
    for name in ("D1_foil", "D1_pellet", "D3"):
        sc = validation(name, **{"lattice.nx": 24, "lattice.ny": 24})
        state, _ = run(BatteryModel(sc))
        ce[name] = 100 * ce_of(state)
    return ce


def test_d1_small_foil_ce_in_range(d1_d3_small):
    """D1's foil CE within 50–78 % (76.5 % at 24², seed 1, since the v4 refill law; until then it was a
    strict expected failure at 89.6 %)."""
    assert accepted("D1", "foil CE").accepts(d1_d3_small["D1_foil"]), d1_d3_small


def test_d1_small_pellet_ce_in_range(d1_d3_small):
    """D1's pellet CE within 85–100 % (100.00000000000017 % at 24², seed 1, with the v4 refill law: every
    plated voxel stripped back, above 100 by the rounding the accepted range allows). Planted fault: the
    CE computed as 0.8 × stripped/plated fails it."""
    assert accepted("D1", "pellet CE").accepts(d1_d3_small["D1_pellet"]), d1_d3_small


def test_d1_small_pellet_15_points_above_foil(d1_d3_small):
    """D1: the pellet's CE at least 15 points above the foil's (23.5 points at 24², seed 1, since the v4
    refill law)."""
    assert accepted("D1", "pellet − foil").accepts(d1_d3_small["D1_pellet"] - d1_d3_small["D1_foil"]), d1_d3_small


def test_d3_small_ce_in_range(d1_d3_small):
    """D3: the sulfide's continuous SEI leaves a CE ≤ 15 %. Planted fault: every interphase made
    self-limiting (Na₃PS₄'s as NASICON's) fails it."""
    assert accepted("D3", "first-cycle CE").accepts(d1_d3_small["D3"]), d1_d3_small


@pytest.mark.slow
def test_t4_ce_converges_with_voxel_size():
    """VALIDATION.md: the CE median at the row's voxel size and at half of it differ by ≤ 2 points
    (same 16 µm domain, 8 replicas each)."""
    medians = []
    for voxel, n, nz in ((0.5, 32, 48), (0.25, 64, 96)):
        sc = validation("T4", **{"lattice.voxel_um": voxel, "lattice.nx": n, "lattice.ny": n, "lattice.nz": nz})
        model = BatteryModel(sc)
        medians.append(np.median([ce_of(run(model, seed)[0]) for seed in range(1, 9)]))
    assert abs(medians[0] - medians[1]) <= 0.02, medians


def test_a_cycling_run_stopped_and_resumed_through_the_store_gives_the_same_data(tmp_path):
    """A run is stopped (as by SIGTERM) in the middle of its first strip, checkpointed into the store,
    and resumed by a fresh process-like call: every variable equals an uninterrupted run's."""
    import threading

    import xarray as xr

    from kmc.api import plan_replicas
    from kmc.runner import execute_run

    sc = validation("T4", **{"lattice.nx": 12, "lattice.ny": 12, "protocol.0.capacity_mah_cm2": 0.2,
                             "protocol.1.capacity_mah_cm2": 0.2, "output.sample_every_s": 60.0})
    stores = {}
    for name in ("straight", "resumed"):
        path = tmp_path / f"{name}.zarr"
        plan_replicas(sc, 1, 11).create(str(path))
        if name == "resumed":
            stop = threading.Event()
            n_plate = int(0.2 / 0.5 * 3600 / 60)

            def progress(k, stop=stop, n_plate=n_plate):
                if k == n_plate + 5:  # in the strip
                    stop.set()

            assert execute_run(str(path), 0, stop=stop, progress=progress) == "interrupted"
        assert execute_run(str(path), 0) == "done"
        stores[name] = xr.open_zarr(str(path)).load()
    a, b = stores["straight"], stores["resumed"]
    for var in ("time", "voltage", "charge", "contact_fraction", "stripped", "coulombic_efficiency", "lattice"):
        np.testing.assert_array_equal(a[var].values, b[var].values, err_msg=var)
    assert np.isfinite(a.coulombic_efficiency.values).all()
