"""The refill law of interface voids (PHYSICS.md §5 E4, ``model.refill = "critical_current"``), through the
production driver (``kmc.battery.BatteryModel``).

- Below the critical stripping current j_r = k_r σ_c the void fraction stays bounded; above it the
  voids take the interface over — at 1 and 0.25 µm voxels (the threshold does not depend on the voxel).
- The volume of a refill comes from the Na near the void, at its collector side.
- A ccd whose strip exceeds j_r ends as a CCD by stripping (``ccd_failure`` = 2) at the first level
  above j_r (within one level); under the default law the same ccd runs every level, as before.
- A collector nothing bears comes down through the voids under its Na only when no thinned column
  bears either (E5), and that collapse is told apart.
"""
import numpy as np
import pytest
from battery_runs import advance_all, cell_scenario, run

import kmc
from kmc import units
from kmc.battery import BatteryModel, Run
from kmc.kernels.cell import CC, GAP, NA, SE

OPTION = {"model.refill": "critical_current"}
STRIP_FLAT = """
[[protocol]]
kind = "strip"
current_ma_cm2 = {j}
cutoff_v = 5.0
capacity_mah_cm2 = {capacity}
"""
FLAT = "[materials.nasicon]\nroughness_um = 0.0\n"  # a flat electrolyte: every void is an interface void
P_REFILL_MPA = 5.6


def critical_stripping_current_ma_cm2(pressure_mpa=P_REFILL_MPA):
    """j_r = k_r P at 25 °C (``kmc.units``, the shipped constants): σ_c = P under a layer carrying the load."""
    return units.refill_current_density_ma_cm2(pressure_mpa, units.load_materials()["na"],
                                               units.celsius_to_kelvin(25.0))


def flat_na_cell(tmp_path, j, voxel_um, n, name, initial_na_um=8.0, strip_um=4.0):
    """8 µm of Na loaded at 5.6 MPa between a flat NASICON (20 µm thin, far from the cut-off while in
    contact) and a foil, 4 µm of it stripped at j (mA/cm²), under the refill law."""
    capacity = units.thickness_to_capacity_mah_cm2(strip_um, 23.78)
    nz = int(round((initial_na_um + 3.0) / voxel_um)) + 4
    path = tmp_path / f"{name}.toml"
    nz_written = int(round((initial_na_um + 3.0) / 0.5)) + 4  # the helper writes 0.5 µm voxels
    cell_scenario(path, STRIP_FLAT.format(j=j, capacity=capacity), capacity / j * 3600 / 20, n=n, nz=nz_written,
                  initial_na_um=initial_na_um, pressure_mpa=P_REFILL_MPA, thickness_um=20.0, materials=FLAT)
    return kmc.load_scenario(path, overrides={"lattice.voxel_um": voxel_um, "lattice.nz": nz, **OPTION})


@pytest.mark.parametrize("voxel_um", [1.0, 0.25])
def test_interface_voids_stay_bounded_below_the_critical_current_and_take_over_above_it(tmp_path, voxel_um):
    """E4 refill: a void pixel refills at r = j_r a²/q_v, a contact pixel strips at j a²/q_v per contact
    fraction, so (mean field) the void fraction obeys df/dt ∝ j − f j_r: it settles at f = j/j_r below
    the critical current j_r = k_r P and runs to 1 (the bearing contact lost) above it. At 0.5 j_r the
    whole 4 µm strips at a low voltage, the void fraction stays near 0.5 and never nears 1; at 2 j_r the
    voids take the interface over (f > 0.9). Once they have cut every bearing contact, nothing holds the
    collector up and it comes down with its Na onto the electrolyte (E5, ``interface.settle_unborne``),
    so the strip goes on at a sawtoothing voltage (a ccd judges that as its failure, next test). The same
    at 1 µm and at 0.25 µm voxels: the threshold does not depend on the voxel size.
    Planted fault: the refill rate scaled by (1 µm/a) — a per-voxel law like v3's one-voxel transport —
    moves the 0.25 µm threshold to 4 j_r: the void fraction at 0.5 j_r falls to 0.14 there (fails), and at
    2 j_r it stays bounded (fails)."""
    j_r = critical_stripping_current_ma_cm2()
    n = 16
    below = run(BatteryModel(flat_na_cell(tmp_path, 0.5 * j_r, voxel_um, n, "below")))[1]
    above = run(BatteryModel(flat_na_cell(tmp_path, 2.0 * j_r, voxel_um, n, "above")))[1]
    capacity = units.thickness_to_capacity_mah_cm2(4.0, 23.78)
    assert below[-1]["stripped"] > 0.97 * capacity and below[-1]["voltage"] < 1.0  # no cut-off
    f_below = [o["void_fraction"] for o in below[len(below) // 4:]]
    assert 0.3 < np.mean(f_below) < 0.7, np.mean(f_below)  # ≈ j/j_r = 0.5
    assert max(f_below) < 0.8, max(f_below)
    f_above = [o["void_fraction"] for o in above]
    assert max(f_above) > 0.9, max(f_above)  # the voids take over (each collapse resets them: no mean)


def test_the_na_around_a_persisting_void_thins_from_the_collector_and_only_there(tmp_path):
    """E4 refill's source: the voxel that refills a void is taken at the collector side of the thickest
    Na column within one local Na thickness h of it. A disc of interface voids (radius 3 voxels) planted
    under 2 µm of loaded Na (h = 3 voxels above the voids) on a flat electrolyte, left at rest for about
    one refill time per pixel: every refill leaves a gap under the collector (a thinned column), most
    within h + 3 voxels of the disc's centre (capillary moves carry a few voids off the disc); the Na
    is conserved (the voids' volume came out of those columns). No interphase here: NASICON's
    calibrated one would take its Na as interface gaps all over the cell (E7), voids of its own.
    Planted fault: the v3 rule, the refill taken from the whole layer's pending volume (the column
    stays whole): no column thins (fails)."""
    protocol = """
[[protocol]]
kind = "rest"
duration_s = 120.0
"""
    path = tmp_path / "void.toml"
    cell_scenario(path, protocol, 30.0, n=32, nz=12, initial_na_um=2.0, pressure_mpa=P_REFILL_MPA,
                  materials=FLAT + "sei_rate_ma_cm2 = 0.0\n")
    model = BatteryModel(kmc.load_scenario(path, overrides=OPTION))
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
    # 1/130 s per pixel at σ_c = P, but σ_c is the mean over the columns within h, the disc's own at 0:
    # its centre refills only once its edge has (6 / 9 / 11 refills in seeds 1–3).
    assert refills >= 5, refills
    bottom = np.asarray(r.cc_bottom).reshape(ny, nx)
    assert (np.take_along_axis(lat, bottom[None], axis=0)[0] == CC).all()
    under_cc = np.take_along_axis(lat, (bottom - 1)[None], axis=0)[0]
    thinned = under_cc == GAP
    assert thinned.sum() >= 0.8 * refills, (thinned.sum(), refills)  # the sources, at the collector side
    # Within h of the voids: of the disc, or (a few) of voids that capillary moves (E4b) carried off it.
    assert (dist[thinned] <= h + 3.0 + 1e-9).mean() >= 0.75, dist[thinned]
    # Volume moved, none made (no pending volume drawn, no interphase).
    assert 0 <= na0 - int((lat == NA).sum()) <= 5
    assert abs(r.pending_voxels) < 1e-9


# -- a ccd under the refill law ------------------------------------------------------------------------

CCD_LEVELS_OF_J_R = (0.55, 0.85, 1.15, 1.45, 1.75, 2.05)


def flat_ccd(tmp_path, name, j_r, law):
    """A flawless ccd on 8 µm of Na loaded at 5.6 MPa on a flat NASICON (20 µm thin): levels at
    ``CCD_LEVELS_OF_J_R`` × j_r, 2.2 µm plated then stripped at each."""
    levels = [round(f * j_r, 6) for f in CCD_LEVELS_OF_J_R]
    step = round(0.3 * j_r, 6)
    capacity = 0.25
    protocol = (f'[[protocol]]\nkind = "ccd"\nstart_ma_cm2 = {levels[0]}\nstep_ma_cm2 = {step}\n'
                f'max_ma_cm2 = {levels[-1] + step / 2}\ncapacity_mah_cm2 = {capacity}')
    path = tmp_path / f"{name}.toml"
    cell_scenario(path, protocol, capacity / levels[0] * 3600 / 10, n=12, nz=30, initial_na_um=8.0,
                  pressure_mpa=P_REFILL_MPA, thickness_um=20.0, materials=FLAT)
    return kmc.load_scenario(path, overrides={"model.refill": law}), levels


def test_a_ccd_stripping_above_the_critical_current_ends_by_voids_at_its_first_level_above_it(tmp_path):
    """Under the refill law a flawless ccd cannot short; its strip half stops being carried once the
    current exceeds j_r = k_r P: the voids cut every bearing contact and the collector comes down with its
    Na (E5, a collapse). The run ends there with ``ccd_failure`` = 2 and ``ccd`` that level's current
    density, at the first level above j_r or the next (a level just above j_r grows its voids at the rate
    j − j_r, which may not cut the whole contact within one level's 2.2 µm). The store records both.
    Measured at this 12² domain: seeds 1, 2, 4–7 end at 0.85 / 1.15 / 1.15 / 1.15 / 1.15 / 1.15 j_r —
    one in six a level early (near f = j/j_r = 0.85, the ~20 contact pixels left fluctuate to none); at
    24², seeds 1–3 all at 1.15 j_r. Under the default law (loaded flow and one-voxel diffusion refill far
    faster) the same ccd runs every level, with no failure and no CCD, as before.
    Planted faults: the failure test dropped (the ccd goes on past the cut contact, as before this
    option: no failure recorded, fails); the failure recorded as a short (1, fails)."""
    j_r = critical_stripping_current_ma_cm2()
    sc, levels = flat_ccd(tmp_path, "ccd-refill", j_r, "critical_current")
    ds = kmc.simulate(sc, seed=3).isel(run=0)
    assert int(ds.status) == 2 and int(ds.shorted) == 0
    assert int(ds.ccd_failure) == 2
    assert list(ds.ccd_failure.attrs["flag_values"]) == [0, 1, 2]
    first_above = next(level for level in levels if level > j_r)
    assert float(ds.ccd) in (pytest.approx(first_above), pytest.approx(levels[levels.index(first_above) + 1]))
    n = int(ds.samples_written)
    assert n < ds.sizes["sample"]  # ended early

    sc, _ = flat_ccd(tmp_path, "ccd-default", j_r, "loaded_flow")
    model = BatteryModel(sc)
    state = model.new_state(3)
    advance_all(model, state)
    r = Run(state)
    assert r.ccd_failure == 0 and not r.shorted
    assert int(r.cycles_done) == len(levels)  # every level plated and stripped


def _hanging_cell(thinned_column: bool):
    """4 × 1 columns, nz = 6: SE at z = 0, an interface void at z = 1 in every column, Na hanging from the
    collector at z = 2–3 (CC from z = 4); with ``thinned_column`` the first column's Na instead stands
    on the electrolyte and stops one gap under the collector (a thinned column, which bears under the
    refill law)."""
    nx, ny, nz = 4, 1, 6
    lat = np.full((nz, ny, nx), GAP, dtype=np.uint8)
    lat[0] = SE
    lat[2:4] = NA
    lat[4:] = CC
    if thinned_column:
        lat[1:4, 0, 0] = (NA, NA, GAP)
    return lat.ravel().copy(), np.full(nx * ny, 4, dtype=np.int64), nx, ny, nz


def test_a_collector_held_by_nothing_settles_into_the_voids_under_its_hanging_na():
    """E5 under the refill law (``interface.settle_unborne``, the loop's own kernel): interface voids under
    continuous Na close only at the refill law's rate while something bears the collector; with no
    support, no contact and no thinned column, the Na hanging over them carries no load, so the collector
    comes down into them — a collapse (it once stayed up for ever: σ_c = 0, no refill — the cycled walk's
    last plating passed no charge). With a thinned column bearing, the voids hold. Under the default law
    the same cell settles as an ordinary step. The columns' kinds come from ``interface.column_support``.
    Planted faults that fail it: voids held whatever bears (no settle); the collapse not told apart."""
    from kmc.kernels.interface import SETTLE_COLLAPSE, SETTLE_NONE, SETTLE_STEP, column_support, settle_unborne

    def settle(thinned_column, refill_law):
        lat, bottom, nx, ny, nz = _hanging_cell(thinned_column)
        kinds = np.zeros(nx * ny, dtype=np.int64)
        n_cc, n_na = column_support(lat, nx, ny, nz, kinds, refill_law)
        assert n_cc == n_na == 0  # nothing else bears
        return settle_unborne(lat, nx, ny, nz, bottom, kinds, refill_law), lat.reshape(nz, nx), bottom

    outcome, lat, bottom = settle(thinned_column=False, refill_law=True)
    assert outcome == SETTLE_COLLAPSE
    assert (bottom == 3).all() and (lat[1:3] == NA).all() and (lat[3:] == CC).all()  # the Na came down onto the SE
    outcome, lat, bottom = settle(thinned_column=True, refill_law=True)
    assert outcome == SETTLE_NONE and (bottom == 4).all()
    outcome, lat, bottom = settle(thinned_column=False, refill_law=False)
    assert outcome == SETTLE_STEP and (bottom == 3).all()
