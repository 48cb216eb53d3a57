"""Sweep files (kmc.sweep): expansion order, seeds that survive added points, refusals naming the key."""
from __future__ import annotations

import copy
import hashlib
import importlib.resources
import json

import pytest

import kmc
from kmc import api, config
from kmc.config import load_scenario
from kmc.errors import KmcError, ScenarioError
from kmc.sweep import load_sweep

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
