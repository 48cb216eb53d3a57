"""The store contract of SCHEMA.md, through the installed ``kmc`` and plain ``xarray.open_zarr``.

- the schema round trip: every name the hop scenario defines, its dims, dtype, units, legend, fill;
- bad input: exit code 2, one line on stderr naming the key (or file), nothing written;
- the same data however a sweep is run (Dask workers, array tasks, one ``kmc run`` per run);
- a run's seed reproduces it alone; ``kmc.simulate`` equals the store; same seed, same store.

Every store here is written by the production CLI in a subprocess, from a temporary directory.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import kmc
from kmc.config import Scenario, load_scenario, seed_for_replica
from kmc.store import RUN_VARS, WALL_CLOCK_AND_PROVENANCE
from kmc.sweep import load_sweep

ROOT = Path(__file__).resolve().parents[1]
HOP = ROOT / "scenarios" / "hop.toml"
HOP_SWEEP = ROOT / "scenarios" / "sweeps" / "hop_sweep.toml"


def _find_kmc():
    # The console script of the Python running the tests (a venv's bin/ need not be on PATH).
    beside = Path(sys.executable).with_name("kmc")
    return str(beside) if beside.is_file() else shutil.which("kmc")


KMC = _find_kmc()
pytestmark = pytest.mark.skipif(KMC is None, reason="the kmc console script is not installed")

ENV = dict(os.environ, KMC_NO_PROGRESS="1")
ENV.pop("SLURM_ARRAY_TASK_ID", None)  # a test run inside a job array must not turn into an array task


def kmc_cli(*args, cwd, check=True):
    out = subprocess.run([KMC, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=ENV, timeout=600)
    if check:
        assert out.returncode == 0, f"kmc {' '.join(map(str, args))} exited {out.returncode}:\n{out.stderr}"
    return out


def kmc_many(arg_lists, cwd, jobs=2):
    """Run several ``kmc`` commands, ``jobs`` at a time (separate processes, as on a cluster)."""
    pending, running = list(arg_lists), []
    while pending or running:
        while pending and len(running) < jobs:
            args = [str(a) for a in pending.pop(0)]
            running.append((args, subprocess.Popen([KMC, *args], cwd=cwd, env=ENV, stdout=subprocess.PIPE,
                                                   stderr=subprocess.PIPE, text=True)))
        args, proc = running.pop(0)
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"kmc {' '.join(args)} exited {proc.returncode}:\n{err}"


def open_store(path) -> xr.Dataset:
    return xr.open_zarr(path).load()


def data_names(ds) -> list[str]:
    """Data variables that depend only on the scenario and the seed."""
    return sorted(set(ds.data_vars) - set(WALL_CLOCK_AND_PROVENANCE))


def assert_same_data(a: xr.Dataset, b: xr.Dataset, what: str, coords=("seed", "replica")) -> None:
    """Every data variable except wall-clock/provenance identical (NaN equal to NaN); same ``coords``."""
    assert sorted(a.data_vars) == sorted(b.data_vars), what
    assert a.sizes == b.sizes, what
    for name in data_names(a):
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=f"{what}: {name} differs")
    for name in coords:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=f"{what}: {name} differs")


def assert_all_done(ds: xr.Dataset, what: str) -> None:
    """Equal stores prove nothing if every run failed alike: each run ran to its end."""
    assert (ds.status.values == 2).all(), f"{what}: status {ds.status.values}, errors {ds.error.values}"
    assert (ds.samples_written.values == ds.sizes["sample"]).all(), what
    assert np.isfinite(ds.time.values).all() and (ds.events.values > 0).all(), what


def tree_bytes(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its content (None for a directory)."""
    return {str(p.relative_to(folder)): (None if p.is_dir() else p.read_bytes())
            for p in sorted(folder.rglob("*"))}


# ------------------------------------------------------------------------------------------------
# Stores shared by the tests (each written once per test session by the CLI)
# ------------------------------------------------------------------------------------------------

SINGLE_SEED = 11


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("stores")


@pytest.fixture(scope="module")
def single_stores(work):
    """The hop scenario with one seed, run twice into two stores (in parallel)."""
    kmc_many([["run", HOP, "-o", name, "--seed", SINGLE_SEED] for name in ("one.zarr", "two.zarr")], cwd=work)
    return work / "one.zarr", work / "two.zarr"


@pytest.fixture(scope="module")
def dask_sweep(work):
    """(a) the hop sweep on a 2-worker LocalCluster."""
    kmc_cli("sweep", HOP_SWEEP, "-o", "dask.zarr", "--workers", 2, cwd=work)
    return work / "dask.zarr"


@pytest.fixture(scope="module")
def array_sweep(work):
    """(b) the hop sweep as array tasks: --init, task 0, a copy of the half-done store, the other tasks.

    Returns (the finished store, the copy taken after task 0 only, the number of tasks).
    """
    out = kmc_cli("sweep", HOP_SWEEP, "-o", "array.zarr", "--init", "--runs-per-task", 5, cwd=work)
    line = next(x for x in out.stdout.splitlines() if x.startswith("--array=0-"))
    n_tasks = int(line.removeprefix("--array=0-")) + 1
    kmc_cli("sweep", HOP_SWEEP, "-o", "array.zarr", "--task-id", 0, cwd=work)
    shutil.copytree(work / "array.zarr", work / "array_task0.zarr")
    # The remaining tasks side by side, as a job array runs them: each writes only its own runs.
    kmc_many([["sweep", HOP_SWEEP, "-o", "array.zarr", "--task-id", i] for i in range(1, n_tasks)], cwd=work)
    return work / "array.zarr", work / "array_task0.zarr", n_tasks


# ------------------------------------------------------------------------------------------------
# 1. The schema, round trip
# ------------------------------------------------------------------------------------------------

#: name → (dims, dtype kind or dtype, units or None for "any") of what the hop scenario writes.
HOP_SCHEMA = {
    "time": (("run", "sample"), "float64", "s"),
    "event_count": (("run", "sample"), "int64", "1"),
    "total_rate": (("run", "sample"), "float64", "s-1"),
    "lattice": (("run", "snap", "z", "y", "x"), "uint8", "1"),
    "snap_time": (("run", "snap"), "float64", "s"),
    "status": (("run",), "int8", "1"),
    "events": (("run",), "int64", "1"),
    "wall_seconds": (("run",), "float64", "s"),
    "samples_written": (("run",), "int64", "1"),
    "heartbeat": (("run",), "float64", None),
    "error": (("run",), "str", "1"),
    "code_version": (("run",), "str", "1"),
    "git_hash": (("run",), "str", "1"),
    "host": (("run",), "str", "1"),
    "array_task": (("run",), "int64", "1"),
}
HOP_COORDS = {"run": ("run",), "seed": ("run",), "replica": ("run",), "x": ("x",), "y": ("y",), "z": ("z",)}
RUN_VARS_NAMES = [v.name for v in RUN_VARS]
GLOBAL_ATTRS = ("title", "source", "history", "Conventions", "schema_version", "scenario", "materials", "sweep")


def _units(var) -> str | None:
    # CF decoding moves the units of a time variable (heartbeat) from attrs to encoding.
    return var.attrs.get("units", var.encoding.get("units"))


def check_schema(path: Path, n_runs: int) -> xr.Dataset:
    ds = xr.open_zarr(path)  # plain xarray: no kmc code on the reading side
    raw = xr.open_zarr(path, decode_times=False)
    for name, dims in HOP_COORDS.items():
        assert name in ds.coords, f"coordinate {name} missing"
        assert ds[name].dims == dims, name
    assert ds.seed.dtype == np.int64 and ds.replica.dtype.kind == "i"
    assert ds.sizes["run"] == n_runs
    np.testing.assert_array_equal(ds.run.values, np.arange(n_runs))
    L = load_scenario(HOP).get("hop.size")
    assert (ds.sizes["x"], ds.sizes["y"], ds.sizes["z"]) == (L, L, L)
    assert ds.sizes["snap"] >= 1, "the hop scenario's default output takes snapshots"

    for name, (dims, dtype, units) in HOP_SCHEMA.items():
        assert name in ds.data_vars, f"{name} missing"
        var = raw[name]
        assert var.dims == dims, f"{name}: dims {var.dims}"
        if dtype == "str":
            assert var.dtype.kind in "UOT", f"{name}: dtype {var.dtype}"
        else:
            assert var.dtype == np.dtype(dtype), f"{name}: dtype {var.dtype}"
        if units is not None:
            assert var.attrs.get("units") == units, f"{name}: units {var.attrs.get('units')!r}"
    # heartbeat is a CF time (seconds since the epoch): plain xarray decodes it to datetimes
    assert raw.heartbeat.attrs["units"].startswith("seconds since 1970-01-01")
    assert np.issubdtype(ds.heartbeat.dtype, np.datetime64)

    # every variable the store has, SCHEMA.md's or a model's own, has units and long_name
    for name, var in ds.data_vars.items():
        assert _units(var), f"{name} has no units"
        assert var.attrs.get("long_name"), f"{name} has no long_name"

    status = ds.status
    assert list(status.attrs["flag_values"]) == [0, 1, 2, 3]
    assert status.attrs["flag_meanings"] == "pending running done failed"
    assert status.encoding.get("fill_value", status.encoding.get("_FillValue")) == 0
    lattice = ds.lattice
    assert len(lattice.attrs["flag_values"]) == len(lattice.attrs["flag_meanings"].split()) >= 2
    assert set(RUN_VARS_NAMES) <= set(ds.data_vars)

    for key in GLOBAL_ATTRS:
        assert key in ds.attrs, f"global attr {key} missing"
    assert ds.attrs["schema_version"] and ds.attrs["Conventions"].startswith("CF-")
    assert ds.attrs["source"].startswith("kmc") and kmc.__version__ in ds.attrs["source"]
    assert "kmc " in ds.attrs["history"]
    # the resolved scenario and materials, so that a resume depends on no file
    stored = Scenario.from_dict(json.loads(ds.attrs["scenario"]))
    assert stored.data == load_scenario(HOP).data
    assert json.loads(ds.attrs["materials"]) == load_scenario(HOP).materials
    return ds



def test_schema_round_trip_of_a_run(single_stores):
    ds = check_schema(single_stores[0], n_runs=1)
    assert_all_done(ds.load(), "kmc run")
    assert int(ds.seed[0]) == SINGLE_SEED and int(ds.replica[0]) == 0
    assert ds.attrs["sweep"] in ("", None, "null") or json.loads(ds.attrs["sweep"]) in ({}, None)
    # the snapshot is the lattice at its time: half filled, codes from the legend
    lattice = ds.lattice.values[0, 0]
    assert set(np.unique(lattice)) <= set(ds.lattice.attrs["flag_values"])
    assert lattice.sum() == round(load_scenario(HOP).get("hop.fraction") * lattice.size)
    assert float(ds.snap_time[0, 0]) == 0.0
    np.testing.assert_allclose(ds.time.values[0], np.arange(ds.sizes["sample"]) * 0.5)
    # provenance of the run: which code ran it, where, in no array task
    assert str(ds.code_version.values[0]) == kmc.__version__
    assert str(ds.host.values[0]) and int(ds.array_task[0]) == -1 and str(ds.error.values[0]) == ""
    assert float(ds.wall_seconds[0]) > 0 and not np.isnat(ds.heartbeat.values[0])


def test_schema_round_trip_of_a_sweep(dask_sweep):
    sweep = load_sweep(HOP_SWEEP)
    ds = check_schema(dask_sweep, n_runs=len(sweep.runs))
    # swept parameters are coordinates along run, by their dotted key
    for key in sweep.varied_keys:
        assert key in ds.coords and ds[key].dims == ("run",), key
        np.testing.assert_array_equal(ds[key].values, [r.point[key] for r in sweep.runs])
    np.testing.assert_array_equal(ds.seed.values, [r.seed for r in sweep.runs])
    np.testing.assert_array_equal(ds.replica.values, [r.replica for r in sweep.runs])
    # the sweep definition, resolved: it expands to the same runs without reading any file
    stored = load_sweep(json.loads(ds.attrs["sweep"]))
    assert [(r.seed, r.point) for r in stored.runs] == [(r.seed, r.point) for r in sweep.runs]
    assert_all_done(ds.load(), "kmc sweep")


def test_every_coordinate_has_units_and_long_name(dask_sweep):
    ds = xr.open_zarr(dask_sweep)
    for name, var in ds.coords.items():
        assert var.attrs.get("long_name"), f"coordinate {name} has no long_name"
        assert _units(var), f"coordinate {name} has no units"


def test_never_started_runs_read_as_fill(array_sweep):
    """In an --init store after task 0 only: runs 5… read NaN floats, status 0 and documented fills."""
    _, partial, _ = array_sweep
    ds = open_store(partial)
    done, pending = ds.isel(run=slice(0, 5)), ds.isel(run=slice(5, None))
    assert_all_done(done, "task 0")
    assert (pending.status.values == 0).all()
    for name in ("time", "total_rate", "snap_time", "wall_seconds"):
        assert np.isnan(pending[name].values).all(), name
    assert np.isnat(pending.heartbeat.values).all()
    assert (pending.samples_written.values == 0).all() and (pending.events.values == 0).all()
    assert (pending.event_count.values == -1).all() and (pending.lattice.values == 255).all()
    assert (pending.array_task.values == -1).all() and (pending.error.values == "").all()
    assert (done.array_task.values == 0).all()
    status = json.loads(kmc_cli("status", partial, "--json", cwd=partial.parent).stdout)
    assert status["by_run"] == ["done"] * 5 + ["pending"] * (ds.sizes["run"] - 5)


# The battery model's names, as SCHEMA.md gives them (units: UDUNITS strings; "1" where SCHEMA.md gives
# none): name → (dims, dtype, units, fill a never-written element reads as).
S, F, SNAP, C, R = ("run", "sample"), ("run", "frame", "y", "x"), ("run", "snap", "z", "y", "x"), ("run", "cycle"), ("run",)
NAN = float("nan")
BATTERY_SCHEMA = {
    # per sample
    "time": (S, "float64", "s", NAN), "charge": (S, "float64", "mA h cm-2", NAN),
    "current_density": (S, "float64", "mA cm-2", NAN), "voltage": (S, "float64", "V", NAN),
    "voltage_min": (S, "float64", "V", NAN), "voltage_max": (S, "float64", "V", NAN),
    "contact_fraction": (S, "float64", "1", NAN), "na_contact_fraction": (S, "float64", "1", NAN),
    "load_fraction": (S, "float64", "1", NAN), "void_fraction": (S, "float64", "1", NAN),
    "nucleation_density": (S, "float64", "cm-2", NAN), "thickness_mean": (S, "float64", "um", NAN),
    "thickness_cv": (S, "float64", "1", NAN), "max_current_density": (S, "float64", "mA cm-2", NAN),
    "interfacial_resistance": (S, "float64", "ohm cm2", NAN), "plated": (S, "float64", "mA h cm-2", NAN),
    "stripped": (S, "float64", "mA h cm-2", NAN), "dead_na": (S, "float64", "mA h cm-2", NAN),
    "trapped_na": (S, "float64", "mA h cm-2", NAN), "stranded_na": (S, "float64", "mA h cm-2", NAN),
    "unloaded_na": (S, "float64", "mA h cm-2", NAN), "alloy_na": (S, "float64", "mA h cm-2", NAN),
    "sei_na": (S, "float64", "mA h cm-2", NAN), "flaw_na": (S, "float64", "mA h cm-2", NAN),
    "filament_depth": (S, "float64", "um", NAN), "short_probability": (S, "float64", "1", NAN),
    "step": (S, "int64", "1", -1),
    # per frame
    "thickness_map": (F, "float32", "um", NAN), "contact_map": (F, "float32", "1", NAN),
    "current_map": (F, "float32", "mA cm-2", NAN), "frame_time": (("run", "frame"), "float64", "s", NAN),
    # per snapshot
    "lattice": (SNAP, "uint8", "1", 255), "snap_time": (("run", "snap"), "float64", "s", NAN),
    # per cycle
    "coulombic_efficiency": (C, "float64", "1", NAN), "charge_plated": (C, "float64", "mA h cm-2", NAN),
    "charge_stripped": (C, "float64", "mA h cm-2", NAN),
    # per run
    "shorted": (R, "int8", "1", 0), "short_time": (R, "float64", "s", NAN),
    "short_charge": (R, "float64", "mA h cm-2", NAN), "ccd": (R, "float64", "mA cm-2", NAN),
    "ccd_failure": (R, "int8", "1", 0),
    "surface_height": (("run", "y", "x"), "float64", "um", NAN),
}
#: Names SCHEMA.md (v4) adds that the battery model does not define yet.
BATTERY_SCHEMA_V4 = ("max_deposit_stress", "stress_map")
T4 = ROOT / "scenarios" / "validation" / "T4.toml"


@pytest.fixture(scope="module")
def battery_store(work):
    """T4 (plate, then strip to the cut-off) on 8² columns, 0.06 mAh/cm² each way, maps every 2 samples
    and snapshots every 3, by ``kmc run``; and the model that wrote it (for its declared long names)."""
    sets = {"lattice.nx": 8, "lattice.ny": 8, "protocol.0.capacity_mah_cm2": 0.06, "protocol.1.capacity_mah_cm2": 0.06,
            "output.sample_every_s": 60.0, "output.map_every_samples": 2, "output.snapshot_every_samples": 3}
    kmc_cli("run", T4, "-o", "t4.zarr", "--seed", 5, *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")],
            cwd=work)
    from kmc.model import model_for

    return work / "t4.zarr", model_for(load_scenario(T4, overrides=sets))


def test_schema_round_trip_of_a_battery_run(battery_store):
    """Every SCHEMA.md name the battery model defines — per sample, frame, snapshot, cycle and run — read
    back with plain ``xarray.open_zarr``: its dims, dtype, units (SCHEMA.md's), the long_name the model
    declares, and the fill past the run's end. Planted faults: ``thickness_mean`` declared in "m", or
    ``step``'s fill 0 (a real step index), fail it."""
    path, model = battery_store
    ds = xr.open_zarr(path)
    raw = xr.open_zarr(path, decode_times=False, mask_and_scale=False)
    declared = {v.name: v for v in model.layout().variables}
    assert int(ds.status[0]) == 2, str(ds.error.values[0])
    n = int(ds.samples_written[0])
    assert 0 < n < ds.sizes["sample"]  # ended at the cut-off, before the store's last sample
    assert ds.sizes["cycle"] == 1 and ds.sizes["frame"] >= 2 and ds.sizes["snap"] >= 2
    assert (ds.sizes["x"], ds.sizes["y"]) == (8, 8)
    for name in ("x", "y", "z"):
        assert ds[name].dims == (name,) and ds[name].attrs["units"] == "um" and ds[name].attrs["long_name"]
    for name, (dims, dtype, units, fill) in BATTERY_SCHEMA.items():
        assert name in ds.data_vars, f"{name} missing"
        var = raw[name]
        assert var.dims == dims, f"{name}: dims {var.dims}"
        assert var.dtype == np.dtype(dtype), f"{name}: dtype {var.dtype}"
        assert var.attrs.get("units") == units, f"{name}: units {var.attrs.get('units')!r}"
        assert var.attrs.get("long_name") and var.attrs["long_name"] == declared[name].long_name, name
        stored_fill = var.encoding.get("_FillValue", var.encoding.get("fill_value", var.attrs.get("_FillValue")))
        if isinstance(fill, float) and np.isnan(fill):
            assert np.isnan(stored_fill), f"{name}: fill {stored_fill}"
        else:
            assert stored_fill == fill, f"{name}: fill {stored_fill}"
    # past the run's end, the samples read as their fill; before it, as written
    assert np.isnan(ds.voltage.values[0, n:]).all() and np.isfinite(ds.voltage.values[0, :n]).all()
    assert (ds.step.values[0, n:] == -1).all() and set(ds.step.values[0, :n]) == {0, 1}
    assert ds.lattice.attrs["flag_meanings"] == "gap electrolyte sodium collector interphase"
    assert list(ds.lattice.attrs["flag_values"]) == [0, 1, 2, 3, 4]
    assert list(ds.shorted.attrs["flag_values"]) == [0, 1]
    assert list(ds.ccd_failure.attrs["flag_values"]) == [0, 1, 2]
    assert ds.ccd_failure.attrs["flag_meanings"] == "none short_on_plating voids_on_stripping"
    assert 0 < float(ds.coulombic_efficiency[0, 0]) <= 1 and int(ds.shorted[0]) == 0


def test_battery_store_has_the_schema_v4_names(battery_store):
    """SCHEMA.md v4's deposit stress names, with units; NaN unless ``model.insertion = "least_stress"``
    (this store's runs use the v3 law, which computes no deposit stress)."""
    ds = xr.open_zarr(battery_store[0])
    assert [name for name in BATTERY_SCHEMA_V4 if name not in ds.data_vars] == []
    assert ds.max_deposit_stress.attrs["units"] == ds.stress_map.attrs["units"] == "MPa"
    assert np.isnan(ds.max_deposit_stress.values).all()


# ------------------------------------------------------------------------------------------------
# 2. Bad input: exit code 2, one line naming the key, nothing written
# ------------------------------------------------------------------------------------------------

HOP_MIN = '[model]\nkind = "hop"\n[hop]\nduration_s = 1.0\n'
PLATE = '[[protocol]]\nkind = "plate"\ncurrent_ma_cm2 = 0.5\ncapacity_mah_cm2 = 1.0\n'


def _sweep_text(vary: str, mode: str = "product", extra: str = "") -> str:
    return f'base = {json.dumps(str(HOP))}\nmode = "{mode}"\nseed = 1\n{extra}[vary]\n{vary}'


# (id, files to put in the directory, arguments, text the one-line message must contain)
# A file's content "STORE" is a copy of a real --init store; "DIR" an ordinary folder with a file in it.
BAD_INPUT = [
    ("unknown-key", {"s.toml": HOP_MIN + "bogus = 3\n"}, ["run", "s.toml"], "hop.bogus"),
    ("unknown-table", {"s.toml": HOP_MIN + "[lattice]\nnx = 4\n"}, ["run", "s.toml"], "lattice"),
    ("wrong-type", {"s.toml": HOP_MIN.replace("1.0", '"long"')}, ["run", "s.toml"], "hop.duration_s"),
    ("negative-size", {"s.toml": HOP_MIN + "size = -3\n"}, ["run", "s.toml"], "hop.size"),
    ("negative-current", {"s.toml": PLATE.replace("0.5", "-0.5")}, ["run", "s.toml"],
     "protocol.0.current_ma_cm2"),
    ("porosity-1", {"s.toml": '[collector]\nform = "pellet"\nporosity = 1.0\n' + PLATE}, ["run", "s.toml"],
     "collector.porosity"),
    ("step-without-bound", {"s.toml": PLATE.replace("capacity_mah_cm2 = 1.0\n", "cutoff_v = -0.5\n")},
     ["run", "s.toml"], "protocol.0"),
    ("missing-file", {}, ["run", "nowhere.toml"], "nowhere.toml"),
    ("directory-as-file", {"d.toml": "DIR"}, ["run", "d.toml"], "d.toml"),
    ("not-utf8", {"s.toml": b"\xff\xfe[hop]\n"}, ["run", "s.toml"], "s.toml"),
    ("toml-syntax", {"s.toml": '[model\nkind = "hop"\n'}, ["run", "s.toml"], "s.toml"),
    ("set-unknown-key", {}, ["run", HOP, "--set", "hop.bogus=1"], "hop.bogus"),
    ("set-bad-toml", {}, ["run", HOP, "--set", "hop.size=abc"], "hop.size"),
    ("set-unphysical", {}, ["run", HOP, "--set", "hop.fraction=1.5"], "hop.fraction"),
    ("set-index-out-of-range", {"s.toml": PLATE}, ["run", "s.toml", "--set", "protocol.3.current_ma_cm2=1"],
     "protocol.3"),
    ("set-no-equals", {}, ["run", HOP, "--set", "hop.size"], "hop.size"),
    ("seed-negative", {}, ["run", HOP, "--seed", "-1"], "seed"),
    ("replicas-0", {}, ["run", HOP, "--replicas", "0"], "--replicas"),
    ("sweep-lattice", {"w.toml": _sweep_text('"lattice.nx" = [4, 8]\n')}, ["sweep", "w.toml", "-o", "w.zarr"],
     "lattice.nx"),
    ("sweep-hop-size", {"w.toml": _sweep_text('"hop.size" = [4, 8]\n')}, ["sweep", "w.toml", "-o", "w.zarr"],
     "hop.size"),
    ("sweep-zip-mismatch", {"w.toml": _sweep_text('"hop.fraction" = [0.2, 0.4]\n"hop.rate_decades" = [1, 2, 3]\n',
                                                  mode="zip")},
     ["sweep", "w.toml", "-o", "w.zarr"], "hop.rate_decades"),
    ("sweep-zip-mismatch-init", {"w.toml": _sweep_text('"hop.fraction" = [0.2]\n"hop.rate_decades" = [1, 2]\n',
                                                       mode="zip")},
     ["sweep", "w.toml", "-o", "w.zarr", "--init"], "hop.rate_decades"),
    ("sweep-unknown-key", {"w.toml": _sweep_text('"hop.fraction" = [0.2]\n', extra="replica = 2\n")},
     ["sweep", "w.toml", "-o", "w.zarr"], "replica"),
    ("sweep-bad-point", {"w.toml": _sweep_text('"hop.fraction" = [0.2, 1.2]\n')},
     ["sweep", "w.toml", "-o", "w.zarr"], "hop.fraction"),
    ("run-existing-store", {"out.zarr": "STORE"}, ["run", HOP, "-o", "out.zarr"], "out.zarr"),
    ("sweep-existing-store", {"out.zarr": "STORE"}, ["sweep", HOP_SWEEP, "-o", "out.zarr"], "out.zarr"),
    ("init-existing-store", {"out.zarr": "STORE"}, ["sweep", HOP_SWEEP, "-o", "out.zarr", "--init"], "out.zarr"),
    ("overwrite-a-folder", {"data": "DIR"}, ["run", HOP, "-o", "data", "--overwrite"], "data"),
    ("overwrite-a-file", {"notes.zarr": "some notes\n"}, ["run", HOP, "-o", "notes.zarr", "--overwrite"],
     "notes.zarr"),
    ("status-non-store", {"data": "DIR"}, ["status", "data"], "data"),
    ("status-missing", {}, ["status", "nothing.zarr"], "nothing.zarr"),
    ("task-id-too-large", {"out.zarr": "STORE"}, ["sweep", HOP_SWEEP, "-o", "out.zarr", "--task-id", "3"],
     "--task-id"),
    ("task-id-negative", {"out.zarr": "STORE"}, ["sweep", HOP_SWEEP, "-o", "out.zarr", "--task-id", "-1"],
     "--task-id"),
    ("task-id-no-store", {}, ["sweep", HOP_SWEEP, "-o", "out.zarr", "--task-id", "0"], "out.zarr"),
]


@pytest.fixture(scope="module")
def init_store(tmp_path_factory):
    """A real store to refuse to overwrite: the hop sweep's --init store (12 runs, 5 per task: 3 tasks)."""
    folder = tmp_path_factory.mktemp("init")
    kmc_cli("sweep", HOP_SWEEP, "-o", "out.zarr", "--init", "--runs-per-task", 5, cwd=folder)
    return folder / "out.zarr"


@pytest.mark.parametrize("files,args,names", [case[1:] for case in BAD_INPUT], ids=[c[0] for c in BAD_INPUT])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, request, files, args, names):
    for name, content in files.items():
        if content == "STORE":
            shutil.copytree(request.getfixturevalue("init_store"), tmp_path / name)
        elif content == "DIR":
            (tmp_path / name).mkdir()
            (tmp_path / name / "keep.txt").write_text("a user's file\n")
        elif isinstance(content, bytes):
            (tmp_path / name).write_bytes(content)
        else:
            (tmp_path / name).write_text(content)
    before = tree_bytes(tmp_path)
    out = kmc_cli(*args, cwd=tmp_path, check=False)
    assert out.returncode == 2, f"exit {out.returncode}\nstdout: {out.stdout}\nstderr: {out.stderr}"
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{out.stderr}"
    assert names in lines[0], f"{names!r} not named in: {lines[0]}"
    assert "Traceback" not in out.stderr
    # nothing written: no store, no temporary .creating- directory, existing files byte-identical
    assert tree_bytes(tmp_path) == before


# ------------------------------------------------------------------------------------------------
# 3. The same data, however a sweep is run
# ------------------------------------------------------------------------------------------------

def test_sweep_data_is_the_same_on_dask_in_array_tasks_and_run_by_run(work, dask_sweep, array_sweep):
    a = open_store(dask_sweep)
    b = open_store(array_sweep[0])
    assert_all_done(a, "dask")
    assert_all_done(b, "array tasks")
    assert len(np.unique(a.events.values)) == a.sizes["run"], "runs should differ from each other"
    assert_same_data(a, b, "dask vs array tasks")
    sweep = load_sweep(HOP_SWEEP)
    for key in sweep.varied_keys:
        np.testing.assert_array_equal(a[key].values, b[key].values)
    np.testing.assert_array_equal(b.array_task.values, np.arange(b.sizes["run"]) // 5)
    assert array_sweep[2] == -(-b.sizes["run"] // 5)

    # (c) each run alone: kmc run --seed <its seed> --set <its swept values>
    commands = []
    for i in range(a.sizes["run"]):
        sets = [x for key in sweep.varied_keys for x in ("--set", f"{key}={float(a[key].values[i])!r}")]
        commands.append(["run", HOP, "-o", f"alone_{i}.zarr", "--seed", int(a.seed.values[i]), *sets])
    kmc_many(commands, cwd=work)
    for i in range(a.sizes["run"]):
        alone = open_store(work / f"alone_{i}.zarr")
        assert_all_done(alone, f"run {i} alone")
        # (replica is bookkeeping of the sweep: a run alone is replica 0 of its own store)
        assert_same_data(alone, a.isel(run=[i]), f"run {i} alone vs dask", coords=("seed",))


# ------------------------------------------------------------------------------------------------
# 4–6. Seeds reproduce runs; simulate equals the store; same seed, same store
# ------------------------------------------------------------------------------------------------

def test_a_runs_seed_reproduces_it_alone(tmp_path):
    kmc_cli("run", HOP, "-o", "three.zarr", "--replicas", 3, "--seed", 5, cwd=tmp_path)
    three = open_store(tmp_path / "three.zarr")
    assert_all_done(three, "replicas")
    np.testing.assert_array_equal(three.seed.values, [seed_for_replica(5, r) for r in range(3)])
    assert three.seed.values[0] == 5 and len(set(three.seed.values)) == 3
    np.testing.assert_array_equal(three.replica.values, [0, 1, 2])
    seed2 = int(three.seed.values[2])
    kmc_cli("run", HOP, "-o", "alone.zarr", "--seed", seed2, cwd=tmp_path)
    alone = open_store(tmp_path / "alone.zarr")
    assert int(alone.seed[0]) == seed2
    # the replica index is bookkeeping (replica 0 of its own store); the data must be the same
    assert_same_data(alone, three.isel(run=[2]), "run 2 alone vs run 2 of three", coords=("seed",))
    assert not np.array_equal(three.event_count.values[1], three.event_count.values[2])


def test_simulate_equals_the_single_run_store(single_stores):
    ds = kmc.simulate(load_scenario(HOP), seed=SINGLE_SEED)
    store = open_store(single_stores[0])
    assert_all_done(ds, "simulate")
    assert_same_data(ds, store, "kmc.simulate vs kmc run")


def test_dry_run_prints_the_resolved_scenario_and_writes_nothing(tmp_path):
    out = kmc_cli("run", HOP, "--dry-run", "--replicas", 2, cwd=tmp_path)
    resolved = tomllib.loads(out.stdout)  # the printed scenario is TOML (the rest are comments)
    assert resolved == load_scenario(HOP).data
    assert "store" in out.stdout
    out = kmc_cli("run", HOP, "-o", "x.zarr", "--dry-run", cwd=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_same_scenario_and_seed_give_identical_stores(single_stores):
    one, two = (open_store(p) for p in single_stores)
    assert_all_done(one, "first")
    assert_same_data(one, two, "same scenario and seed, two stores")
    # the checkpoints too (taken at the same samples, or none): compare the raw group beside the data
    import zarr

    g1, g2 = (zarr.open_group(p, mode="r") for p in single_stores)
    for name in g1["checkpoint"].array_keys():
        np.testing.assert_array_equal(g1[f"checkpoint/{name}"][:], g2[f"checkpoint/{name}"][:], err_msg=name)
