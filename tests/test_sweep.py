"""Sweep files (kmc.sweep): expansion order, seeds that survive added points, refusals naming the key."""
from __future__ import annotations

import copy
import hashlib
import importlib.resources
import json

import numpy as np
import pytest
from battery_runs import cell_scenario

import kmc
from kmc import api, config
from kmc.battery import Run
from kmc.config import load_scenario
from kmc.errors import KmcError, ScenarioError
from kmc.runner import execute_run, model_for
from kmc.store import RUN_LENGTH_DIMS, WALL_CLOCK_AND_PROVENANCE
from kmc.sweep import load_sweep

SHIPPED_MATERIALS = config.shipped_materials  # for the battery runs (the fixture below hides it)

HOP = """
[model]
kind = "hop"

[hop]
size = 8
duration_s = 10
"""

BATTERY = """
[[protocol]]
kind = "plate"
current_ma_cm2 = 0.5
capacity_mah_cm2 = 1.0
"""


@pytest.fixture(autouse=True)
def no_materials(monkeypatch):
    monkeypatch.setattr(config, "shipped_materials", dict)


@pytest.fixture
def base_dir(tmp_path):
    (tmp_path / "hop.toml").write_text(HOP)
    (tmp_path / "cell.toml").write_text(BATTERY)
    return tmp_path


def sweep(base_dir, vary, **settings):
    return load_sweep({"base": "hop.toml", "seed": 7, **settings, "vary": vary}, base_dir=base_dir)


def test_shipped_hop_sweep():
    path = importlib.resources.files("kmc.scenarios") / "sweeps" / "hop_sweep.toml"
    sw = load_sweep(path)
    assert sw.varied_keys == ("hop.fraction", "hop.rate_decades")
    assert (sw.mode, sw.replicas, sw.n_points, len(sw.runs)) == ("product", 2, 6, 12)
    assert sw.base.name == "hop"
    # product order, last key fastest, replicas innermost
    assert [(r.point["hop.fraction"], r.point["hop.rate_decades"], r.replica) for r in sw.runs[:6]] == [
        (0.25, 0.0, 0), (0.25, 0.0, 1), (0.25, 3.0, 0), (0.25, 3.0, 1), (0.5, 0.0, 0), (0.5, 0.0, 1)]
    assert [r.index for r in sw.runs] == list(range(12))
    for r in sw.runs:
        assert r.scenario.seed == r.seed
        assert r.scenario.get("hop.fraction") == r.point["hop.fraction"]
        assert r.scenario.get("hop.rate_decades") == r.point["hop.rate_decades"]
        assert r.scenario.get("hop.size") == 22
    assert len({r.seed for r in sw.runs}) == 12


def test_zip_mode_pairs_the_lists(base_dir):
    sw = sweep(base_dir, {"hop.fraction": [0.2, 0.4, 0.6], "hop.rate_decades": [1, 2, 3]}, mode="zip")
    assert [r.point for r in sw.runs] == [{"hop.fraction": 0.2, "hop.rate_decades": 1.0},
                                          {"hop.fraction": 0.4, "hop.rate_decades": 2.0},
                                          {"hop.fraction": 0.6, "hop.rate_decades": 3.0}]


def test_seed_is_the_documented_hash(base_dir):
    sw = sweep(base_dir, {"hop.fraction": [0.3]}, replicas=2)
    canonical = json.dumps(["kmc.sweep", 7, {"hop.fraction": 0.3}, 1], sort_keys=True, separators=(",", ":"))
    expected = int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:8], "big") >> 1
    assert sw.runs[1].seed == expected
    assert all(0 <= r.seed < 2**63 for r in sw.runs)


def test_adding_values_never_reseeds_existing_runs(base_dir):
    before = sweep(base_dir, {"hop.fraction": [0.25, 0.5], "hop.rate_decades": [0, 3]}, replicas=3)
    after = sweep(base_dir, {"hop.fraction": [0.1, 0.25, 0.5], "hop.rate_decades": [0, 1, 3]}, replicas=4)
    seeds_after = {(json.dumps(r.point, sort_keys=True), r.replica): r.seed for r in after.runs}
    assert len(after.runs) == 36
    for r in before.runs:
        assert seeds_after[(json.dumps(r.point, sort_keys=True), r.replica)] == r.seed
    # ... and the run indices did move, so the seeds do not come from positions
    assert before.runs[0].point != after.runs[0].point


def test_seed_depends_on_sweep_seed_not_on_spelling(base_dir):
    a = sweep(base_dir, {"hop.rate_decades": [0, 3]})
    b = sweep(base_dir, {"hop.rate_decades": [0.0, 3.0]})
    c = sweep(base_dir, {"hop.rate_decades": [0, 3]}, seed=8)
    assert [r.seed for r in a.runs] == [r.seed for r in b.runs]
    assert not {r.seed for r in a.runs} & {r.seed for r in c.runs}


def test_nested_vary_table_is_flattened(base_dir):
    sw = sweep(base_dir, {"hop": {"fraction": [0.3, 0.7]}})
    assert sw.varied_keys == ("hop.fraction",)
    assert [r.point["hop.fraction"] for r in sw.runs] == [0.3, 0.7]


def test_no_vary_gives_replicas_of_the_base(base_dir):
    sw = load_sweep({"base": "hop.toml", "replicas": 3}, base_dir=base_dir)
    assert sw.varied_keys == () and sw.seed == 0
    assert [r.point for r in sw.runs] == [{}, {}, {}]
    assert len({r.seed for r in sw.runs}) == 3


def test_run_reproduces_alone(base_dir):
    run = sweep(base_dir, {"hop.fraction": [0.3, 0.7]}, replicas=2).runs[3]
    alone = load_scenario(base_dir / "hop.toml", {**run.point, "scenario.seed": run.seed})
    assert alone.data == run.scenario.data


def test_to_dict_round_trip_without_files(base_dir):
    sw = load_sweep({"base": "cell.toml", "seed": 3, "replicas": 2,
                     "vary": {"conditions.stack_pressure_mpa": [2, 5], "protocol.0.current_ma_cm2": [0.5, 1]}},
                    base_dir=base_dir)
    d = json.loads(json.dumps(sw.to_dict()))
    (base_dir / "cell.toml").unlink()
    again = load_sweep(d)
    assert again.varied_keys == sw.varied_keys
    assert [(r.index, r.point, r.replica, r.seed) for r in again.runs] == [
        (r.index, r.point, r.replica, r.seed) for r in sw.runs]
    assert all(a.scenario.data == b.scenario.data for a, b in zip(again.runs, sw.runs))
    assert sw.runs[5].point == {"conditions.stack_pressure_mpa": 5.0, "protocol.0.current_ma_cm2": 0.5}


def test_sweep_file_with_relative_base(tmp_path):
    (tmp_path / "scen").mkdir()
    (tmp_path / "scen" / "hop.toml").write_text(HOP)
    (tmp_path / "sweeps").mkdir()
    path = tmp_path / "sweeps" / "s.toml"
    path.write_text('base = "../scen/hop.toml"\nreplicas = 2\nseed = 5\n[vary]\n"hop.fraction" = [0.5]\n')
    sw = load_sweep(path)
    assert sw.base.get("hop.size") == 8 and len(sw.runs) == 2 and sw.source_path == path


# (id, sweep mapping, the dotted key the message must name)
BAD = [
    ("lattice key", {"base": "cell.toml", "vary": {"lattice.nx": [32, 64]}}, "lattice.nx"),
    ("lattice voxel", {"base": "cell.toml", "vary": {"lattice.voxel_um": [0.5, 1.0]}}, "lattice.voxel_um"),
    ("hop size", {"base": "hop.toml", "vary": {"hop.size": [8, 16]}}, "hop.size"),
    ("model kind", {"base": "hop.toml", "vary": {"model.kind": ["hop"]}}, "model.kind"),
    ("scenario seed", {"base": "hop.toml", "vary": {"scenario.seed": [1, 2]}}, "scenario.seed"),
    ("zip length mismatch", {"base": "hop.toml", "mode": "zip",
                             "vary": {"hop.fraction": [0.2, 0.4], "hop.rate_decades": [0, 1, 2]}},
     "hop.rate_decades"),
    ("empty list", {"base": "hop.toml", "vary": {"hop.fraction": []}}, "hop.fraction"),
    ("not a list", {"base": "hop.toml", "vary": {"hop.fraction": 0.5}}, "hop.fraction"),
    ("bad value in list", {"base": "hop.toml", "vary": {"hop.fraction": [0.5, 1.5]}}, "hop.fraction"),
    ("unknown varied key", {"base": "hop.toml", "vary": {"hop.fractoin": [0.5]}}, "hop.fractoin"),
    ("repeated value", {"base": "hop.toml", "vary": {"hop.rate_decades": [1, 1.0]}}, "hop.rate_decades"),
    ("unknown sweep key", {"base": "hop.toml", "replica": 2}, "replica"),
    ("zero replicas", {"base": "hop.toml", "replicas": 0}, "replicas"),
    ("negative seed", {"base": "hop.toml", "seed": -1}, "seed"),
    ("bad mode", {"base": "hop.toml", "mode": "grid"}, "mode"),
    ("missing base", {"vary": {"hop.fraction": [0.5]}}, "base"),
    ("base not a path", {"base": 3}, "base"),
    ("bad value in base", {"base": "hop.toml", "vary": {"hop.duration_s": [-1.0]}}, "hop.duration_s"),
]


@pytest.mark.parametrize("definition, key", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_sweep_names_the_key(base_dir, definition, key):
    with pytest.raises(ScenarioError) as info:
        load_sweep(copy.deepcopy(definition), base_dir=base_dir)
    assert info.value.key == key
    assert key in str(info.value)


def test_missing_base_file_names_the_file(base_dir):
    with pytest.raises(KmcError, match=r"cannot read scenario file .*gone\.toml"):
        load_sweep({"base": "gone.toml"}, base_dir=base_dir)


def test_bad_sweep_toml_names_file_and_line(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('base = "hop.toml"\n[vary]\n"hop.fraction" = [0.5,\n')
    with pytest.raises(KmcError, match=r"s\.toml.*line 3"):
        load_sweep(path)


def test_kmc_sweep_is_the_api_function():
    # SCHEMA.md's kmc.sweep(sweep, store, client=None): importing the submodule kmc.sweep (as this file
    # does) bound the name kmc.sweep to the module.
    assert kmc.sweep is api.sweep
    assert kmc.load_sweep is load_sweep


def test_scenario_object_as_base(base_dir):
    """A notebook passes the Scenario it has (kmc.load_scenario, with_overrides) as the base."""
    scenario = load_scenario(base_dir / "hop.toml", {"hop.duration_s": 20.0})
    vary = {"hop.fraction": [0.3, 0.7]}
    by_object = load_sweep({"base": scenario, "seed": 7, "replicas": 2, "vary": vary})
    by_dict = load_sweep({"base": scenario.to_dict(), "seed": 7, "replicas": 2, "vary": vary})
    assert by_object.base is scenario
    assert [(r.point, r.replica, r.seed) for r in by_object.runs] == [
        (r.point, r.replica, r.seed) for r in by_dict.runs]
    assert all(a.scenario.data == b.scenario.data for a, b in zip(by_object.runs, by_dict.runs))
    assert by_object.runs[0].scenario.get("hop.duration_s") == 20.0
    # the stored definition is plain JSON and expands to the same runs
    again = load_sweep(json.loads(json.dumps(by_object.to_dict())))
    assert [r.seed for r in again.runs] == [r.seed for r in by_object.runs]
    plan = api.plan_sweep({"base": scenario, "vary": vary})
    assert plan.n_runs == 2 and plan.base is scenario


# -- a sweep whose points differ in length ---------------------------------------------------------------

PLATE_STRIP = """
[[protocol]]
kind = "plate"
current_ma_cm2 = 1.0
capacity_mah_cm2 = 0.02
[[protocol]]
kind = "strip"
current_ma_cm2 = 1.0
capacity_mah_cm2 = 0.02
"""

CYCLES = """
[[protocol]]
kind = "cycle"
count = 1
steps = [{kind = "plate", current_ma_cm2 = 1.0, capacity_mah_cm2 = 0.01},
         {kind = "strip", current_ma_cm2 = 1.0, capacity_mah_cm2 = 0.01}]
"""


def assert_run_is_alone(ds, run, alone, what):
    """Run ``run`` of the sweep store ``ds`` holds the trajectory of ``alone`` (kmc.simulate of its
    scenario and seed), and fill past its end along sample, frame, snap and cycle."""
    assert (int(ds.status[run]), int(alone.status[0])) == (2, 2), (what, ds.error.values, alone.error.values)
    assert int(ds.samples_written[run]) == int(alone.samples_written[0]), what
    fills = {v.name: v.fill_value() for v in model_for(load_scenario_of(alone)).layout().all_vars()}
    for name in sorted(set(alone.data_vars) - set(WALL_CLOCK_AND_PROVENANCE)):
        mine, theirs = ds[name].isel(run=run), alone[name].isel(run=0)
        own = {d: slice(0, alone.sizes[d]) for d in theirs.dims if d in RUN_LENGTH_DIMS}
        np.testing.assert_array_equal(mine.isel(own).values, theirs.values, err_msg=f"{what}: {name}")
        for d in own:
            past = mine.isel({d: slice(alone.sizes[d], None)}).values
            if np.issubdtype(past.dtype, np.floating):
                assert np.isnan(past).all(), f"{what}: {name} past the run's {d}"
            else:
                assert (past == fills[name]).all(), f"{what}: {name} past the run's {d}"


def load_scenario_of(ds):
    return config.Scenario.from_dict(json.loads(ds.attrs["scenario"]))


def test_sweep_store_holds_points_longer_than_the_base(tmp_path, monkeypatch):
    """A lower plating current at the same capacity takes longer: more samples, frames and snapshots
    than the base's. The store is sized for the longest point and holds every point's whole trajectory."""
    distributed = pytest.importorskip("distributed")
    monkeypatch.setattr(config, "shipped_materials", SHIPPED_MATERIALS)
    base = cell_scenario(tmp_path / "cell.toml", PLATE_STRIP, 6.0, n=8, nz=16, snapshot_every=4)
    definition = {"base": str(tmp_path / "cell.toml"), "seed": 3, "vary": {"protocol.0.current_ma_cm2": [1.0, 0.5]}}
    base_sizes = model_for(base).layout().sizes
    long_sizes = model_for(base.with_overrides({"protocol.0.current_ma_cm2": 0.5})).layout().sizes
    assert all(long_sizes[d] > base_sizes[d] for d in ("sample", "frame", "snap")), (base_sizes, long_sizes)

    plan = api.plan_sweep(definition)
    assert plan.layout().sizes == long_sizes  # the base (run 0) is the shorter point
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0") as client:
        ds = kmc.sweep(definition, tmp_path / "sweep.zarr", client=client).load()
    assert dict(ds.sizes) == {**long_sizes, "run": 2}
    sw = load_sweep(definition)
    for run in sw.runs:
        alone = kmc.simulate(run.scenario)  # the run's own seed (scenario.seed)
        assert alone.sizes["sample"] == model_for(run.scenario).layout().sizes["sample"]
        assert_run_is_alone(ds, run.index, alone, f"point {run.point}")
    assert int(ds.samples_written[0]) < int(ds.samples_written[1])


def test_sweep_over_cycle_count_checkpoints_and_resumes(tmp_path, monkeypatch):
    """More cycles than the base's: the cycle dimension and each run's checkpoint (its State holds a
    cycle table per cycle) take the longest point's size; a run resumed from its last checkpoint ends
    with the same data."""
    monkeypatch.setattr(config, "shipped_materials", SHIPPED_MATERIALS)
    base = cell_scenario(tmp_path / "cyc.toml", CYCLES, 6.0, n=8, nz=16).with_overrides(
        {"output.checkpoint_every_s": 1e-6})  # a checkpoint at every sample
    definition = {"base": base, "seed": 4, "vary": {"protocol.0.count": [1, 2]}}
    plan = api.plan_sweep(definition)
    store = tmp_path / "cycles.zarr"
    plan.create(store)
    assert plan.layout().sizes["cycle"] == 2
    assert plan.state_spec()["field.cycle_table"][0] == (6,)
    for run in range(plan.n_runs):
        assert execute_run(store, run) == "done"
    ds = kmc.open(store).load()
    for run in load_sweep(definition).runs:
        alone = kmc.simulate(run.scenario)
        assert_run_is_alone(ds, run.index, alone, f"point {run.point}")
    np.testing.assert_array_equal(np.isfinite(ds.charge_plated.values), [[True, False], [True, True]])
    # Both runs left their last checkpoint (the shorter one in the start of a longer slot): resuming
    # each from it redoes its last samples to the same values.
    for run in range(plan.n_runs):
        writer = kmc.store.RunWriter(store, run)
        state, samples = writer.load_checkpoint()
        assert Run(state).cycle_table.size == 3 * (run + 1) and 0 < samples
        assert execute_run(store, run, resume=True) == "done"
    again = kmc.open(store).load()
    for name in sorted(set(ds.data_vars) - set(WALL_CLOCK_AND_PROVENANCE)):
        np.testing.assert_array_equal(again[name].values, ds[name].values, err_msg=name)
