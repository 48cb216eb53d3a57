"""The run-time estimate of ``kmc run --dry-run`` (``kmc.runtime_estimate``), with known answers.

- the battery estimate is the recorded coefficients times columns, charge moved and site-samples: twice
  nx·ny (either way) doubles it, twice the charge doubles its charge term;
- the charge counts plated and stripped steps at their bounds, not rests; the hop model's events are
  duration × 6·N·f·(1−f) × the mean multiplier;
- the coefficients fitted from benchmark runs are the ones that made them;
- a recorded file reads back; a missing, corrupt or incomplete one gives no estimate and no error;
- the dry run prints the line (or none), and still writes nothing; for a battery domain larger than the
  benchmark's runs it says the run is likely longer.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

import kmc
from kmc import runtime_estimate as rt
from kmc.cli import main
from kmc.model import model_for

ROOT = Path(__file__).resolve().parents[1]
T2 = ROOT / "scenarios" / "validation" / "T2.toml"
HOP = ROOT / "scenarios" / "hop.toml"

#: Coefficients of a made-up machine: 1 ms per column, 2 ms per column per mAh/cm², 10 ns per site-sample.
COSTS = {"battery": {"s_per_column": 1e-3, "s_per_column_mah_cm2": 2e-3, "s_per_site_sample": 1e-8},
         "hop": {"s_per_event": 1e-6}, "hop-random": {"s_per_event": 2e-6}}
BENCH = rt.Benchmark("2026-01-02", "Test CPU 9000", COSTS)


def t2_model(nx=32, ny=32, capacity=0.5, **overrides):
    """T2 (0.5 mA/cm², a sample every 60 s, nz = 48) at nx × ny to ``capacity`` mAh/cm²."""
    scenario = kmc.load_scenario(T2, lattice__nx=nx, lattice__ny=ny)
    return model_for(scenario.with_overrides({"protocol.0.capacity_mah_cm2": capacity, **overrides}))


def test_battery_estimate_is_the_coefficients_times_columns_charge_and_site_samples():
    """32 × 32 columns plated with 0.5 mAh/cm² at 0.5 mA/cm² (3600 s, 61 samples of 32·32·48 sites):
    1024 · (1e-3 + 2e-3 · 0.5) + 1e-8 · 1024 · 48 · 61 s.

    Planted fault: the charge not divided by the domain's area: fails."""
    expected = 1024 * (1e-3 + 2e-3 * 0.5) + 1e-8 * 1024 * 48 * 61
    assert rt.seconds_per_run(t2_model(), BENCH) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("nx, ny", [(64, 32), (32, 64)])
def test_twice_the_columns_doubles_the_estimate(nx, ny):
    """Twice nx·ny, by nx or by ny, doubles every term (all are per column or per site).

    Planted fault: columns counted as nx·nx (ny ignored): the (32, 64) case fails."""
    base = rt.seconds_per_run(t2_model(), BENCH)
    assert rt.seconds_per_run(t2_model(nx, ny), BENCH) == pytest.approx(2 * base, rel=1e-9)


def test_twice_the_charge_doubles_its_term():
    """With only the per-charge coefficient, 1 mAh/cm² costs twice 0.5 mAh/cm²: 1024 · 2e-3 · Q.

    Planted fault: the charge computed from the step's duration without its current: fails."""
    only_charge = rt.Benchmark("d", "c", {"battery": {"s_per_column": 0.0, "s_per_column_mah_cm2": 2e-3,
                                                      "s_per_site_sample": 0.0}})
    assert rt.seconds_per_run(t2_model(capacity=0.5), only_charge) == pytest.approx(1024 * 2e-3 * 0.5, rel=1e-9)
    assert rt.seconds_per_run(t2_model(capacity=1.0), only_charge) == pytest.approx(1024 * 2e-3 * 1.0, rel=1e-9)


def test_charge_counts_plated_and_stripped_steps_not_rests():
    """Two cycles of plate 0.3 / rest / strip 0.2 mAh/cm² move 2 · (0.3 + 0.2) = 1.0 mAh/cm².

    Planted fault: only plate steps counted (0.6): fails."""
    cycle = {"kind": "cycle", "count": 2, "steps": [
        {"kind": "plate", "current_ma_cm2": 0.5, "capacity_mah_cm2": 0.3},
        {"kind": "rest", "duration_s": 600.0},
        {"kind": "strip", "current_ma_cm2": 1.0, "capacity_mah_cm2": 0.2}]}
    scenario = kmc.load_scenario(T2, lattice__nx=16, lattice__ny=16).with_overrides({"protocol": [cycle]})
    work = rt.battery_work(model_for(scenario))
    assert work["charge_mah_cm2"] == pytest.approx(1.0, rel=1e-9)
    assert work["columns"] == 256


@pytest.mark.parametrize("decades, multiplier", [(0.0, 1.0), (1.0, 0.9 / math.log(10.0))])
def test_hop_events_are_duration_times_the_initial_rate(decades, multiplier):
    """hop.toml: 22³ sites half filled for 20 s: 20 · 6 · 22³ · 0.25 = 319 440 events (the scenario's
    "about 16 000 events per simulated second"); one decade of multipliers: times (1 − 0.1)/ln 10.

    Planted fault: the multiplier's mean taken as 10^(−decades/2) (the geometric mean): fails."""
    model = model_for(kmc.load_scenario(HOP).with_overrides({"hop.rate_decades": decades}))
    assert rt.hop_events(model) == pytest.approx(319_440 * multiplier, rel=1e-12)
    per_event = 1e-6 if decades == 0 else 2e-6
    assert rt.seconds_per_run(model, BENCH) == pytest.approx(per_event * 319_440 * multiplier, rel=1e-12)


def test_fit_recovers_the_coefficients_that_made_the_runs():
    """Runs timed exactly as the coefficients say (two sizes, two charges) give them back.

    Planted fault: the observables not taken off before the line is fitted: fails."""
    c = COSTS["battery"]
    points = []
    for columns in (4096, 16384):
        for q in (0.5, 1.0):
            site_samples = columns * 48 * int(120 * q + 1)
            observe = c["s_per_site_sample"] * site_samples
            points.append({"columns": columns, "charge_mah_cm2": q, "site_samples": site_samples, "observe_s": observe,
                           "wall_s": columns * (c["s_per_column"] + c["s_per_column_mah_cm2"] * q) + observe})
    assert rt.fit_battery(points) == pytest.approx(c, rel=1e-9)


def test_a_recorded_benchmark_reads_back(tmp_path):
    """``record`` writes the coefficients with the date and this machine's CPU; ``load`` gives them back.

    Planted fault: ``load`` reading the coefficients from the file's top level: fails (None)."""
    path = rt.record(COSTS, tmp_path / "sub" / "bench.json", {"runs": [1, 2]}, date="2026-01-02")
    bench = rt.load(path)
    assert bench == rt.Benchmark("2026-01-02", rt.cpu_name(), COSTS, str(path))
    assert json.loads(path.read_text())["details"] == {"runs": [1, 2]}


@pytest.mark.parametrize("text", ["", "{not json", "[1, 2]", '{"date": "2026-01-02", "cpu": "x"}',
                                  '{"date": "2026-01-02", "cpu": "x", "models": 3}'])
def test_a_missing_or_corrupt_benchmark_gives_no_estimate(tmp_path, text):
    """Empty, not JSON, not an object, no models, models not a table: no benchmark, no error.

    Planted fault: ``load`` catching only OSError: the corrupt files raise."""
    path = tmp_path / "bench.json"
    path.write_text(text)
    assert rt.load(path) is None
    assert rt.load(tmp_path / "missing.json") is None


def test_a_model_with_a_bad_or_missing_coefficient_gets_no_estimate(tmp_path):
    """A negative per-column cost leaves the battery model out (no estimate); the hop model, recorded
    whole, keeps its estimate.

    Planted fault: coefficients read without checking their sign: the battery estimate is given."""
    costs = {"battery": {**COSTS["battery"], "s_per_column": -1.0}, "hop": COSTS["hop"]}
    bench = rt.load(rt.record(costs, tmp_path / "bench.json"))
    assert rt.seconds_per_run(t2_model(), bench) is None
    assert rt.seconds_per_run(model_for(kmc.load_scenario(HOP)), bench) == pytest.approx(0.31944)
    assert rt.describe(t2_model(), 8, bench) is None


def test_the_benchmark_read_is_the_named_then_the_users_then_the_shipped(tmp_path, monkeypatch):
    """KMC_RUNTIME_BENCHMARK first; else the user's file once it exists; else the one in the package.

    Planted fault: the shipped file read before the user's: fails."""
    monkeypatch.delenv(rt.ENV_VAR, raising=False)
    monkeypatch.setattr(rt, "user_path", lambda: tmp_path / "user" / rt.FILE_NAME)
    assert rt.benchmark_path() == rt.shipped_path()
    rt.record(COSTS, tmp_path / "user" / rt.FILE_NAME)
    assert rt.benchmark_path() == tmp_path / "user" / rt.FILE_NAME
    monkeypatch.setenv(rt.ENV_VAR, str(tmp_path / "named.json"))
    assert rt.benchmark_path() == tmp_path / "named.json"


def test_the_shipped_benchmark_has_every_model():
    """The package's benchmark (package data) reads, with a date, a CPU and every model's coefficients."""
    bench = rt.load(rt.shipped_path())
    assert bench is not None and bench.date and bench.cpu
    assert set(bench.costs) == set(rt.COEFFICIENTS)


@pytest.mark.parametrize("seconds, text", [(0.2, "under 1 s"), (40, "40 s"), (180, "3 min"), (1440, "24 min"),
                                           (9000, "2.5 h"), (3 * 86400, "3.0 d")])
def test_durations_read_in_their_unit(seconds, text):
    assert rt.format_duration(seconds) == text


# -- the dry run -------------------------------------------------------------------------------------------------

def dry_run(tmp_path, monkeypatch, bench_text, *args):
    """``kmc run ... --dry-run`` in an empty folder with KMC_RUNTIME_BENCHMARK naming a file of
    ``bench_text`` beside it; the result and what the folder holds after."""
    bench = tmp_path / "bench.json"
    bench.write_text(bench_text)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    result = CliRunner().invoke(main, ["run", *map(str, args), "--dry-run"], env={rt.ENV_VAR: str(bench)})
    return result, sorted(p.name for p in cwd.iterdir())


def test_dry_run_prints_the_expected_run_time_and_writes_nothing(tmp_path, monkeypatch):
    """T2 at 60 × 60 to 0.5 mAh/cm² (3600 columns, nz 48, 61 samples), the cost all per site-sample and
    set to make a run 180 s: the line says 3 min per run and 24 min for 8 replicas; the folder stays empty.

    Planted faults: the total taken as one run's time (no × runs); a file written by the dry run: fail."""
    columns, samples = 60 * 60, 61
    s_site = 180.0 / (columns * 48 * samples)
    costs = {"battery": {"s_per_column": 0.0, "s_per_column_mah_cm2": 0.0, "s_per_site_sample": s_site}}
    text = json.dumps({"date": "2026-01-02", "cpu": "Test CPU 9000", "models": costs})
    result, written = dry_run(tmp_path, monkeypatch, text, T2, "--set", "lattice.nx=60", "--set", "lattice.ny=60",
                              "--set", "protocol.0.capacity_mah_cm2=0.5", "--replicas", "8")
    assert result.exit_code == 0, result.output
    assert ("# expected run time ≈ 3 min per run (8 runs: 24 min on one core; benchmark of 2026-01-02 on "
            "Test CPU 9000)") in result.output.splitlines()
    assert written == []


@pytest.mark.parametrize("text", ["{corrupt", json.dumps({"date": "d", "cpu": "c", "models": {"battery": COSTS["battery"]}})])
def test_dry_run_without_a_benchmark_for_the_model_says_nothing_of_time(tmp_path, monkeypatch, text):
    """A corrupt file, or one with no hop coefficients for the hop model: exit 0, the memory line, no
    time line, no traceback, nothing written.

    Planted fault: ``describe`` returning a line with "unknown" time when there is no estimate: fails."""
    result, written = dry_run(tmp_path, monkeypatch, text, HOP)
    assert result.exit_code == 0 and result.exception is None, result.output
    assert "# memory: " in result.output
    assert "run time" not in result.output
    assert written == []


def test_a_domain_larger_than_the_benchmarks_runs_is_said_to_be_likely_longer(tmp_path, monkeypatch):
    """The benchmark's battery runs went up to 32² columns: T2 at 60² says it was measured up to 32² and is
    likely longer; at 32² and at 16² it says nothing of it. A file without runs, or with runs it cannot
    read, still gives the estimate and says nothing of it.

    Planted faults: the comparison reversed (16² flagged, 60² not); the side taken as the columns: fail."""
    runs = [{"size": 16, "columns": 256}, {"size": 32, "columns": 1024}]
    text = json.dumps({"date": "2026-01-02", "cpu": "Test CPU 9000", "models": COSTS,
                       "details": {"battery_runs": runs}})
    for n, flagged in ((60, True), (32, False), (16, False)):
        (tmp_path / str(n)).mkdir()
        result, _ = dry_run(tmp_path / str(n), monkeypatch, text, T2, "--set", f"lattice.nx={n}", "--set",
                            f"lattice.ny={n}")
        assert result.exit_code == 0, result.output
        line = next(x for x in result.output.splitlines() if x.startswith("# expected run time"))
        assert ("measured up to 32² columns, and larger domains have cost more per column: likely longer)"
                in line) == flagged, line
    for name, details in (("bare", None), ("broken", {"battery_runs": [{"size": 32}]}), ("odd", [1, 2])):
        data = {"date": "2026-01-02", "cpu": "Test CPU 9000", "models": COSTS}
        if details is not None:
            data["details"] = details
        (tmp_path / name).mkdir()
        result, _ = dry_run(tmp_path / name, monkeypatch, json.dumps(data), T2, "--set", "lattice.nx=60", "--set",
                            "lattice.ny=60")
        assert "# expected run time" in result.output and "measured up to" not in result.output, name
