"""The ``ds.kmc`` accessor against hand-computed values on a small synthetic store-like Dataset.

The Dataset follows SCHEMA.md's layout: 7 runs = a swept stack pressure of 2 and 5 MPa × 3
replicas, plus one failed run at 2 MPa whose absurd values (100 V, a short at 0.1 mAh/cm²) would
show if it were not left out; two runs end early (NaN padding).
"""
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
from scipy import stats as sps

import kmc  # noqa: F401 - registers the ds.kmc accessor
from kmc.errors import KmcError

P = "conditions.stack_pressure_mpa"
NAN = np.nan
VOLTAGE = [[-0.10, -0.20, -0.15, -0.12, -0.11],
           [-0.12, -0.26, -0.17, -0.13, NAN],    # ended early
           [-0.08, -0.23, -0.16, -0.10, -0.09],
           [-0.05, -0.15, -0.10, -0.08, -0.07],
           [-0.06, -0.18, -0.11, NAN, NAN],      # ended early
           [-0.04, -0.12, -0.09, -0.07, -0.06],
           [100.0] * 5]                           # failed


def synthetic() -> xr.Dataset:
    runs = np.arange(7)
    charge = np.tile([0.0, 0.25, 0.5, 0.75, 1.0], (7, 1))
    charge[np.isnan(VOLTAGE)] = NAN
    contact = np.tile([0.1, 0.4, 0.7, 0.9, 1.0], (7, 1))
    contact[np.isnan(VOLTAGE)] = NAN
    rs = np.tile([NAN, 50.0, 20.0, 10.0, 5.0], (7, 1))  # undefined at the first sample, as in real stores
    rs[np.isnan(VOLTAGE)] = NAN

    def var(dims, values, units, long_name, **extra):
        return dims, np.asarray(values), {"units": units, "long_name": long_name, **extra}

    s = ("run", "sample")
    return xr.Dataset(
        {
            "status": var(("run",), np.array([2, 2, 2, 2, 2, 2, 3], dtype=np.int8), "1", "run status",
                          flag_values=[0, 1, 2, 3], flag_meanings="pending running done failed"),
            "time": var(s, charge * 7200.0, "s", "simulated time"),
            "charge": var(s, charge, "mA h cm-2", "charge passed (reduction positive)"),
            "current_density": var(s, np.where(np.isnan(charge), NAN, 0.5), "mA cm-2", "applied current density"),
            "voltage": var(s, VOLTAGE, "V", "cell voltage"),
            "contact_fraction": var(s, contact, "1", "contact fraction"),
            "interfacial_resistance": var(s, rs, "ohm cm2", "interfacial resistance"),
            "step": var(s, np.where(np.isnan(charge), -1, 0), "1", "protocol step index"),
            "shorted": var(("run",), np.array([0, 0, 0, 1, 0, 1, 1], dtype=np.int8), "1", "the run shorted"),
            "short_charge": var(("run",), [NAN, NAN, NAN, 0.4, NAN, 0.8, 0.1], "mA h cm-2", "charge at the short"),
            "coulombic_efficiency": var(("run", "cycle"), [[0.9, 0.95], [0.8, 0.9], [0.85, 1.0], [0.99, 0.98],
                                                           [0.97, NAN], [0.95, 0.96], [0.1, 0.1]],
                                        "1", "Coulombic efficiency"),
        },
        coords={
            "run": ("run", runs, {"units": "1", "long_name": "run index"}),
            "seed": ("run", 100 + runs, {"units": "1", "long_name": "seed of the run's random generator"}),
            "replica": ("run", [0, 1, 2, 0, 1, 2, 3], {"units": "1", "long_name": "replica index"}),
            P: ("run", [2.0, 2.0, 2.0, 5.0, 5.0, 5.0, 2.0], {"units": "MPa", "long_name": P}),
        },
    )


@pytest.fixture
def ds():
    return synthetic()


def assert_attrs(result: xr.Dataset):
    for name, v in result.variables.items():
        assert v.attrs.get("units") is not None and v.attrs.get("long_name"), name


def test_parameters_and_select(ds):
    assert ds.kmc.parameters == [P]
    assert ds.kmc.select(**{P: 5}).run.values.tolist() == [3, 4, 5]
    # Float tolerance, and the mapping form.
    assert ds.kmc.select({P: 2.0 + 1e-12}).run.values.tolist() == [0, 1, 2, 6]
    assert ds.kmc.select({P: [2, 5], "replica": 1}).run.values.tolist() == [1, 4]
    with pytest.raises(KmcError, match="not a run coordinate"):
        ds.kmc.select(**{"conditions.temperature_c": 25})
    with pytest.raises(KmcError, match="no run has"):
        ds.kmc.select(**{P: 7})


def test_summary_takes_the_last_defined_sample_of_finished_runs(ds):
    s = ds.kmc.summary()
    assert s.run.values.tolist() == [0, 1, 2, 3, 4, 5]
    np.testing.assert_allclose(s.final_voltage, [-0.11, -0.13, -0.09, -0.07, -0.11, -0.06])
    np.testing.assert_allclose(s.final_charge, [1.0, 0.75, 1.0, 1.0, 0.5, 1.0])
    np.testing.assert_allclose(s.final_interfacial_resistance, [5.0, 10.0, 5.0, 5.0, 20.0, 5.0])
    np.testing.assert_allclose(s.min_voltage, [-0.20, -0.26, -0.23, -0.15, -0.18, -0.12])
    assert s.coulombic_efficiency.dims == ("run", "cycle")
    assert s[P].values.tolist() == [2, 2, 2, 5, 5, 5]
    assert s.sizes["run"] == 6 and ds.kmc.summary(only_done=False).sizes["run"] == 7
    assert_attrs(s)


def test_stats_per_sample_leave_out_failed_runs_and_nan_padding(ds):
    st = ds.kmc.stats("voltage")
    assert st[P].values.tolist() == [2.0, 5.0]
    assert st.voltage_median.dims == ("point", "sample")
    a = st.sel(point=0)
    np.testing.assert_allclose(a.voltage_median[1], -0.23)
    np.testing.assert_allclose(a.voltage_mean[1], -0.23)
    np.testing.assert_allclose(a.voltage_std[1], 0.03)
    assert int(a.voltage_n[1]) == 3
    # Sample 4: run 1 has ended, so two replicas.
    assert int(a.voltage_n[4]) == 2
    np.testing.assert_allclose([a.voltage_median[4], a.voltage_mean[4], a.voltage_std[4]], [-0.10, -0.10, np.sqrt(2e-4)])
    # The mean charge is a coordinate, to plot the mean curve against.
    np.testing.assert_allclose(st.charge.sel(point=1), [0.0, 0.25, 0.5, 0.75, 1.0])
    assert_attrs(st)
    assert st.voltage_median.attrs["units"] == "V"
    # Taking in the failed run changes the numbers (its voltage is 100 V).
    assert float(ds.kmc.stats("voltage", only_done=False).voltage_median[0, 1]) == pytest.approx(-0.215)


def test_stats_at_the_final_sample_and_the_interval_of_the_median(ds):
    st = ds.kmc.stats("voltage", at="final", confidence=0.7)
    np.testing.assert_allclose(st.voltage_median, [-0.11, -0.07])
    np.testing.assert_allclose(st.voltage_mean, [-0.11, -0.08])
    np.testing.assert_allclose(st.voltage_std, [0.02, np.sqrt(7e-4)])
    assert st.voltage_n.values.tolist() == [3, 3]
    # n = 3: the 70 % interval is [x(1), x(3)] (binomial coverage 1 - 2/8 = 0.75) ...
    np.testing.assert_allclose(st.voltage_median_low, [-0.13, -0.11])
    np.testing.assert_allclose(st.voltage_median_high, [-0.09, -0.06])
    # ... and no interval reaches 95 % with 3 replicas.
    st95 = ds.kmc.stats("voltage", at="final")
    assert np.isnan(st95.voltage_median_low).all() and np.isnan(st95.voltage_median_high).all()
    assert_attrs(st95)
    # A summary quantity by name, and a per-cycle variable.
    np.testing.assert_allclose(ds.kmc.stats("min_voltage").min_voltage_median, [-0.23, -0.15])
    ce = ds.kmc.stats("coulombic_efficiency")
    assert ce.coulombic_efficiency_median.dims == ("point", "cycle")
    np.testing.assert_allclose(ce.coulombic_efficiency_median.sel(point=1), [0.97, 0.97])
    # A point none of whose runs finished is there, with n = 0 and NaN statistics.
    none_done = ds.assign(status=ds.status.where(ds[P] == 2, 3)).kmc.stats("voltage", at="final")
    assert none_done.voltage_n.values.tolist() == [3, 0] and np.isnan(none_done.voltage_median[1])
    with pytest.raises(KmcError):
        ds.kmc.stats("nope")
    with pytest.raises(KmcError):
        ds.kmc.stats("voltage", confidence=1.5)


@pytest.mark.parametrize("n", [6, 7, 10, 25])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_interval_of_the_median_is_scipys_order_statistic_interval(n, confidence):
    x = np.random.default_rng(n).lognormal(size=n)
    one = xr.Dataset(coords={"run": np.arange(n)})
    st = one.kmc.stats(xr.DataArray(x, dims="run", coords={"run": np.arange(n)}, name="x"), confidence=confidence)
    ci = sps.quantile_test(x, q=np.median(x), p=0.5).confidence_interval(confidence)
    if np.isnan(ci.low) or np.isnan(ci.high):
        assert np.isnan(float(st.x_median_low[0])) and np.isnan(float(st.x_median_high[0]))
    else:
        assert (float(st.x_median_low[0]), float(st.x_median_high[0])) == (ci.low, ci.high)
    assert float(st.x_median[0]) == pytest.approx(np.median(x))


def test_survival_is_the_kaplan_meier_estimate(ds):
    km = ds.kmc.survival("short_charge")
    # Values of all points: 0, point 5's short at 0.4, its censoring at 0.5, its short at 0.8,
    # point 2's censorings at 0.75 and 1.0 (none of its finished runs shorted).
    np.testing.assert_allclose(km.short_charge, [0.0, 0.4, 0.5, 0.75, 0.8, 1.0])
    # Point 2 MPa: nothing shorted: 1 throughout.
    np.testing.assert_allclose(km.survival.sel(point=0), 1.0)
    assert km.at_risk.sel(point=0).values.tolist() == [3, 3, 3, 3, 2, 2]
    assert int(km.n_shorted[0]) == 0
    # Point 5 MPa: 3 at risk, a short at 0.4 (S = 2/3), one censored at 0.5, the last one shorts at 0.8.
    np.testing.assert_allclose(km.survival.sel(point=1), [1, 2 / 3, 2 / 3, 2 / 3, 0, 0])
    assert km.at_risk.sel(point=1).values.tolist() == [3, 3, 2, 1, 1, 0]
    assert km.events.sel(point=1).values.tolist() == [0, 1, 0, 0, 1, 0]
    assert km.short_charge.attrs["units"] == "mA h cm-2"
    assert_attrs(km)
    # With the failed run (a short at 0.1) point 2 has 4 runs, one shorting first: S = 3/4.
    all_runs = ds.kmc.survival("short_charge", only_done=False)
    assert float(all_runs.survival.sel(point=0).sel(short_charge=0.1)) == pytest.approx(0.75)


def test_survival_with_no_shorts_and_without_the_variable(ds):
    calm = ds.assign(shorted=ds.shorted * 0, short_charge=ds.short_charge * np.nan)
    km = calm.kmc.survival()
    np.testing.assert_allclose(km.survival, 1.0)
    assert km.n.values.tolist() == [3, 3] and km.n_shorted.values.tolist() == [0, 0]
    with pytest.raises(KmcError, match="no 'short_charge'"):
        ds.drop_vars("short_charge").kmc.survival()


def test_import_kmc_registers_the_accessor_without_matplotlib():
    code = ("import sys, xarray, kmc; assert 'matplotlib' not in sys.modules, 'matplotlib imported'; "
            "print(xarray.Dataset(coords={'run': [0]}).kmc.parameters)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_summary_of_a_store_with_no_finished_run_is_empty(ds):
    """A store whose runs are all pending or failed (e.g. read while a sweep starts) summarizes to
    zero runs instead of failing on an empty reduction."""
    none_done = ds.isel(run=slice(0, 0))
    s = none_done.kmc.summary()
    assert s.sizes.get("run", 0) == 0


# -- the Na height from a snapshot (kmc.analysis.lattice) ---------------------------------------------------

def layered_cell(nz=14, n=4):
    """A (z, y, x) cell: electrolyte up to z = 3 (one column up to z = 4), dense Na up to z = 8, the
    collector above."""
    from kmc.kernels.cell import CC, NA, SE

    lat = np.full((nz, n, n), CC, dtype=np.uint8)
    lat[:8] = NA
    lat[:3] = SE
    lat[3, 0, 0] = SE
    return lat


def test_na_height_sees_voids_and_pores_a_voxel_count_does_not():
    """The T2 thickness (height of the Na top above the electrolyte surface, per column) equals the Na
    voxel count for a dense layer; a void under part of the Na (the collector lifted by it) or a porous
    column raises it while the count stays the same. Planted fault: the height taken as the count fails."""
    from kmc.analysis.lattice import mean_na_height_um, na_height_um
    from kmc.kernels.cell import CC, GAP, NA

    a = 0.5
    lat = layered_cell()
    count = (lat == NA).sum(axis=0) * a
    np.testing.assert_array_equal(na_height_um(lat, a), count)  # dense: the height is the count
    assert mean_na_height_um(lat, a) == pytest.approx((5 * 15 + 4) / 16 * a)
    voided = lat.copy()
    for y in (0, 1):  # half the columns: a void of 2 voxels under their Na, the collector lifted by it
        for x in range(lat.shape[2]):
            top = 4 if (y, x) == (0, 0) else 3
            voided[top:, y, x] = [GAP, GAP] + [NA] * (8 - top) + [CC] * (lat.shape[0] - 10)
    np.testing.assert_array_equal((voided == NA).sum(axis=0) * a, count)  # the count does not move
    assert mean_na_height_um(voided, a) == pytest.approx(mean_na_height_um(lat, a) + a)  # the height does
    porous = lat.copy()
    porous[3:13, 2, 2] = [NA, GAP] * 5  # the column's 5 Na voxels with a gap above each
    np.testing.assert_array_equal((porous == NA).sum(axis=0) * a, count)
    assert na_height_um(porous, a)[2, 2] == pytest.approx(9 * a)
    empty = np.where(lat == NA, GAP, lat)
    assert np.isnan(na_height_um(empty, a)).all() and np.isnan(mean_na_height_um(empty, a))


def test_summary_takes_the_na_height_from_the_snapshot_of_the_final_state():
    """``final_na_height``: from the last snapshot when it was taken at the run's last sample, else NaN
    (a snapshot of an earlier state is not the final state)."""
    lat = layered_cell()
    nz = lat.shape[0]
    snaps = np.stack([np.stack([lat, lat]), np.stack([lat, np.full_like(lat, 255)])])  # (run, snap, z, y, x)
    ds = xr.Dataset(
        {"lattice": (("run", "snap", "z", "y", "x"), snaps, {"units": "1", "long_name": "voxel state"}),
         "snap_time": (("run", "snap"), [[0.0, 60.0], [0.0, np.nan]], {"units": "s", "long_name": "t"}),
         "time": (("run", "sample"), [[0.0, 30.0, 60.0], [0.0, 30.0, 60.0]], {"units": "s", "long_name": "t"}),
         "status": ("run", np.array([2, 2], dtype=np.int8), {"units": "1", "long_name": "status"})},
        coords={"z": ("z", (np.arange(nz) + 0.5) * 0.5, {"units": "um", "long_name": "z"})})
    s = ds.kmc.summary()
    assert float(s.final_na_height[0]) == pytest.approx((5 * 15 + 4) / 16 * 0.5)
    assert np.isnan(float(s.final_na_height[1]))  # its last snapshot (t = 0) is not its final state
    assert s.final_na_height.attrs["units"] == "um"
