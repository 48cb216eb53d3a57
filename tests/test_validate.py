"""``kmc validate``: the rows' predicates on synthetic summaries, the process pool it runs on, and
``kmc validate --quick`` through the installed console script (the CI run of VALIDATION.md's directions).
"""
import csv
import math
import re
import shutil
import subprocess

import numpy as np
import pytest
import xarray as xr

import kmc
from kmc import validation as val
from kmc.api import plan_replicas
from kmc.errors import KmcError
from kmc.executors import run_processes, run_serial
from kmc.run_status import run_statuses
from kmc.validate import TABLE_CSV, TABLE_MD

KMC = shutil.which("kmc")


def summary(n, *, ce=None, **final):
    """A run summary like ``ds.kmc.summary()`` of ``n`` finished runs: ``shorted``, ``short_charge``,
    ``ccd`` and ``final_<name>`` from the keywords (per-run lists), ``ce`` a per-run list of per-cycle lists."""
    ds = xr.Dataset(coords={"run": np.arange(n)})
    ds["status"] = ("run", np.full(n, 2, dtype=np.int8))
    for name, values in final.items():
        key = name if name in ("shorted", "short_charge", "ccd") else f"final_{name}"
        ds[key] = ("run", np.asarray(values, dtype=np.int8 if name == "shorted" else float))
    if "shorted" not in ds:
        ds["shorted"] = ("run", np.zeros(n, dtype=np.int8))
    if ce is not None:
        ds["coulombic_efficiency"] = (("run", "cycle"), np.asarray(ce, dtype=float))
    return ds


def synthetic():
    nan = math.nan
    return {
        # 3 of 4 shorted; the fourth's short charge is censored (+inf): median of 0.02, 0.05, 0.3, inf.
        "T1": summary(4, shorted=[1, 1, 1, 0], short_charge=[0.02, 0.05, 0.3, nan]),
        "T1_fast": summary(4, shorted=[1, 1, 1, 1], short_charge=[0.01, 0.02, 0.03, 0.04]),
        "T2": summary(3, shorted=[0, 0, 1], contact_fraction=[0.95, 0.7, 1.0], thickness_mean=[17.3, 17.5, 21.0],
                      charge=[2.0, 2.0, 2.0]),
        "T3": summary(2, interfacial_resistance=[7.1, 15.0]),
        "T4": summary(3, ce=[[0.9], [0.96], [nan]], voltage=[1.5, 1.5, 0.0], shorted=[0, 0, 1]),
        "T5": summary(3, shorted=[1, 1, 0], ccd=[1.5, 2.0, nan]),
        "T6": summary(2, ce=[[0.99] * 9 + [0.94], [0.99] * 9 + [0.95]]),
        "D1_foil": summary(2, ce=[[0.60], [0.70]]),
        "D1_pellet": summary(2, ce=[[0.90], [0.95]]),
        "D2": summary(3, shorted=[0, 0, 0], ccd=[nan, nan, nan]),
        "D3": summary(2, ce=[[0.04], [0.05]]),
        "D4": summary(2, contact_fraction=[1.0, 0.95], thickness_cv=[0.01, 0.3]),
    }


def by_quantity(results):
    return {(r.row.id, r.metric.quantity): r for r in results}


def test_row_predicates_on_a_synthetic_summary():
    results = by_quantity(val.evaluate(val.ROWS, synthetic()))
    assert len(results) == sum(len(row.metrics) for row in val.ROWS) == 17

    def check(row, quantity, statistic, within, n=None):
        r = results[row, next(q for (i, q) in results if i == row and q.startswith(quantity))]
        assert r.statistic == pytest.approx(statistic), (row, quantity)
        assert r.within is within, (row, quantity)
        if n is not None:
            assert r.n == n
        return r

    check("T1", "replicas shorted", 0.75, True)                 # ≥ 75 %, inclusive
    check("T1", "short charge", (0.05 + 0.3) / 2, True)          # the unshorted run counts as +inf
    check("T2", "replicas not shorted", 2 / 3, False)           # < 90 %
    check("T2", "final contact", 0.95, True)
    check("T2", "thickness", 8.75, True)                         # 17.5 / 2.0, within 8.87 ± 15 %
    check("T3", "interfacial", (7.1 + 15.0) / 2, True)
    check("T4", "first-cycle CE", 93.0, True, n="2/3 (1 shorted)")  # the run without a CE is left out, and counted
    check("T4", "final voltage", 1.5, True)                      # the median run reached the cut-off
    check("T5", "CCD", 2.0, True)                                # 1.5, 2.0, no short
    check("T6", "CE at cycle 10", 94.5, True)
    check("D1", "foil CE", 65.0, True)
    check("D1", "pellet CE", 92.5, True)
    check("D1", "pellet − foil", 27.5, True, n="2×2 pairs")     # 30, 35, 20, 25
    check("D2", "CCD", math.inf, False)                          # nothing shorted: no CCD
    check("D3", "first-cycle CE", 4.5, True)
    check("D4", "final contact", 0.975, True)
    check("D4", "final thickness CV", 0.155, True)


def test_medians_with_censored_runs_and_the_cells_shown():
    s = synthetic()
    s["T1"] = summary(3, shorted=[1, 0, 0], short_charge=[0.05, math.nan, math.nan])
    results = by_quantity(val.evaluate(val.ROWS[:1], s))
    charge = results["T1", "short charge [mAh/cm²]"]
    assert math.isinf(charge.statistic) and charge.within is False  # fewer than half shorted: no median charge
    cells = charge.cells()
    assert cells["model"] == "no short" and cells["spread (min–max)"] == "0.050 – no short"
    assert cells["within range"] == "no" and cells["n"] == "3"
    share = results["T1", "replicas shorted"].cells()
    assert share["model"] == "33 %" and share["spread (min–max)"] == "—"
    assert share["condition"] == val.ROWS[0].condition  # no lattice known (a store's summary has it)
    assert list(cells) == list(val.COLUMNS)


def test_a_row_without_values_is_not_judged():
    s = synthetic()
    s["T6"] = summary(2, ce=[[0.99] * 5, [0.98] * 5])  # fewer cycles than the tenth
    s["D4"] = summary(0, contact_fraction=[], thickness_cv=[])
    results = by_quantity(val.evaluate(val.ROWS, s))
    for key in (("T6", "CE at cycle 10 [%]"), ("D4", "final contact fraction")):
        assert results[key].within is None and results[key].cells()["model"] == "—"
    assert results["T6", "CE at cycle 10 [%]"].n == "0/2"


def test_accepted_ranges_are_inclusive_and_nan_fails():
    metric = next(m for row in val.ROWS if row.id == "T3" for m in row.metrics)
    assert metric.accepts(3.5) and metric.accepts(14.0) and metric.accepts(7.0)
    assert not metric.accepts(3.49) and not metric.accepts(14.01) and not metric.accepts(math.nan)


def test_directions_on_synthetic_summaries():
    s = synthetic()
    holds = {d.direction.name: d for d in val.check_directions(s)}
    assert [d.holds for d in holds.values()] == [True, True, True], [d.detail for d in holds.values()]
    # T2 shorts as often as T1; the fast T1 shorts later; the foil's CE above the pellet's.
    s["T2"] = summary(4, shorted=[1, 1, 1, 0])
    s["T1_fast"] = summary(4, shorted=[1, 1, 0, 0], short_charge=[0.4, 0.45, math.nan, math.nan])
    s["D1_foil"], s["D1_pellet"] = s["D1_pellet"], s["D1_foil"]
    out = val.check_directions(s)
    assert [d.holds for d in out] == [False, False, False]
    assert "3/4" in out[1].detail and "no short" in out[2].detail
    # Nothing shorts at either current: the direction cannot hold.
    s["T1"] = summary(2, shorted=[0, 0])
    s["T1_fast"] = summary(2, shorted=[0, 0])
    assert val.check_directions(s)[2].holds is False
    # Rows not run are not judged; rows without finished runs fail.
    del s["T1_fast"]
    s["D1_foil"] = summary(0)
    out = val.check_directions(s)
    assert out[2].holds is None and out[0].holds is False and "no finished runs" in out[0].detail


def test_rows_select_cases_longest_first():
    assert [c.name for c in val.cases_of(["T1"])] == ["T1", "T1_fast"]
    assert {c.name for c in val.cases_of(["D1", "T2"])} == {"D1_foil", "D1_pellet", "T2"}
    everything = val.cases_of(val.ROW_IDS)
    assert {c.name for c in everything} == set(val.CASES)
    assert [c.cost_s for c in everything] == sorted((c.cost_s for c in everything), reverse=True)
    with pytest.raises(KmcError, match="T9.*T1,T2"):
        val.cases_of(["T9"])


def test_every_case_loads_at_both_sizes_with_the_shipped_scenarios():
    for case in val.CASES.values():
        full, quick = val.load_case(case), val.load_case(case, quick=True)
        assert full.get("lattice.voxel_um") == quick.get("lattice.voxel_um")
        assert quick.get("lattice.nx") <= 32 < full.get("lattice.nx")
    fast = val.load_case(val.CASES["T1_fast"])
    assert fast.get("protocol.0.current_ma_cm2") > val.load_case(val.CASES["T1"]).get("protocol.0.current_ma_cm2")


HOP = """
[scenario]
name = "{name}"
[model]
kind = "hop"
[hop]
size = 6
duration_s = {duration}
[output]
sample_every_s = 0.5
"""


def hop_store(tmp_path, name, runs=2, duration=2.0):
    path = tmp_path / f"{name}.toml"
    path.write_text(HOP.format(name=name, duration=duration))
    store = str(tmp_path / f"{name}.zarr")
    plan_replicas(kmc.load_scenario(path), runs).create(store)
    return store


def test_process_pool_runs_several_stores_stops_and_resumes(tmp_path):
    """Two stores' runs on 2 worker processes: stopped at once (as by SIGINT), every run comes back
    interrupted and resumable; run again, they finish with the trajectories of the serial runner."""
    import threading

    pooled = [hop_store(tmp_path, name) for name in ("a", "b")]
    jobs = [(s, r) for s in pooled for r in (0, 1)]
    stop = threading.Event()
    stop.set()
    assert set(run_processes(jobs, workers=2, stop=stop).values()) == {"interrupted"}
    assert all(s.status in ("pending", "interrupted") for store in pooled for s in run_statuses(store))
    done = []
    outcomes = run_processes(jobs, workers=2, on_done=lambda job, outcome: done.append(job))
    assert set(outcomes.values()) == {"done"} and sorted(done) == sorted(jobs)
    serial = hop_store(tmp_path, "c")
    run_serial(serial, [0, 1], progress=False)
    reference = kmc.open(serial)
    for store in pooled:
        assert [s.status for s in run_statuses(store)] == ["done", "done"]
        # Same scenario and seeds (the name aside): the same trajectories as in this process.
        np.testing.assert_array_equal(kmc.open(store).lattice.values, reference.lattice.values)


@pytest.mark.skipif(KMC is None, reason="the kmc console script is not installed")
def test_quick_validate_prints_every_row_and_exits_by_the_directions(tmp_path):
    """`kmc validate --quick` (VALIDATION.md: in CI) from the installed script: the table with every
    row and quantity, the three directions, exit code 0 exactly when they all hold (1 naming those
    that fail); the table beside the stores; run again, it reuses the stores; bad input exits 2."""
    out = tmp_path / "quick"

    def validate(*args):
        return subprocess.run([KMC, "validate", "--quick", "-o", str(out), *args], capture_output=True, text=True,
                              cwd=tmp_path, timeout=900, check=False)

    first = validate()
    assert first.returncode in (0, 1), first.stderr
    table = first.stdout
    assert "quick: directions only" in table
    for row in val.ROWS:
        assert re.search(rf"^│ {row.id} +│", table, re.MULTILINE), (row.id, table)
        for metric in row.metrics:
            assert metric.quantity.split(" [")[0] in table, metric.quantity
    verdicts = re.findall(r"^  (holds|FAILS)  (.+?):", table, re.MULTILINE)
    assert [name for _, name in verdicts] == [d.name for d in val.DIRECTIONS]
    failing = [name for verdict, name in verdicts if verdict == "FAILS"]
    assert first.returncode == (1 if failing else 0), (first.stdout, first.stderr)
    for name in failing:
        assert f"direction fails: {name}" in first.stderr
    assert "run(s) failed" not in first.stderr, first.stderr
    assert {p.name for p in out.iterdir()} == {f"{c}.zarr" for c in val.CASES} | {TABLE_CSV, TABLE_MD}
    with (out / TABLE_CSV).open(encoding="utf-8") as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == 17 and {line["mode"] for line in lines} == {"quick"}
    assert [line["id"] for line in lines] == [row.id for row in val.ROWS for _ in row.metrics]

    again = validate()
    assert again.returncode == first.returncode
    assert again.stdout == first.stdout  # from the same stores
    assert again.stderr.count("reusing 3 finished run(s)") == len(val.CASES)

    csv_before = (out / TABLE_CSV).read_text(encoding="utf-8")
    bad = validate("--replicas", "2")  # the stores hold 3 replicas
    assert bad.returncode == 2 and bad.stdout == ""
    assert len(bad.stderr.strip().splitlines()) == 1 and "--overwrite" in bad.stderr
    assert (out / TABLE_CSV).read_text(encoding="utf-8") == csv_before
    unknown = validate("--rows", "T1,X7")
    assert unknown.returncode == 2 and "X7" in unknown.stderr and len(unknown.stderr.strip().splitlines()) == 1
