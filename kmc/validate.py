"""``kmc validate``'s work, without its printing: plan the cases' stores (reusing finished runs,
resuming interrupted ones), run them on worker processes, judge the rows and the directions
(``kmc.validation``) from the stores, write the table beside them, and decide the exit code.

``validate`` does it all and returns an ``Outcome``; the CLI parses the options, passes a ``report``
callback for the messages of the run (stores reused, runs left alone, runs finished when there is no
progress bar), prints the table and the closing messages from the Outcome, and exits with its code.
"""
from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from kmc.errors import KmcError
from kmc.validation import (
    COLUMNS,
    ROW_IDS,
    ROWS,
    Case,
    DirectionResult,
    Result,
    cases_of,
    check_directions,
    evaluate,
    load_case,
)

if TYPE_CHECKING:
    from kmc.api import Plan
    from kmc.config import Scenario

#: Replicas per scenario: VALIDATION.md wants the median and spread over at least 8.
REPLICAS = 8
#: Replicas per scenario at the quick size (CI: directions, not values).
QUICK_REPLICAS = 3
#: File names of the table written beside the stores.
TABLE_CSV, TABLE_MD = "validation.csv", "validation.md"


# ---------------------------------------------------------------------------------------------
# Stores: plan, reuse, create
# ---------------------------------------------------------------------------------------------

@dataclass
class CaseStore:
    """A case's store: where it is, the plan it was (or will be) created from, runs still to do."""

    case: Case
    path: Path
    plan: Plan
    todo: list[int] = field(default_factory=list)
    busy: list[int] = field(default_factory=list)     # running in another process (fresh heartbeat)
    failed: list[int] = field(default_factory=list)
    create: bool = False

    @property
    def n_runs(self) -> int:
        return self.plan.n_runs

    @cached_property
    def n_samples(self) -> int:
        return int(self.plan.layout().sizes.get("sample", 1))


def _normal(value):
    return json.loads(json.dumps(value))


def _first_difference(a, b, path: str = "") -> str | None:
    """The first dotted key where two JSON-like values differ, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            where = f"{path}.{k}" if path else str(k)
            if k not in a or k not in b:
                return where
            d = _first_difference(a[k], b[k], where)
            if d is not None:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            d = _first_difference(x, y, f"{path}.{i}" if path else str(i))
            if d is not None:
                return d
        return None
    return None if a == b else (path or "the value")


def _store_mismatch(path: Path, plan) -> str | None:
    """Why an existing store is not this plan's (another scenario, constants or seeds), or None."""
    from kmc import store as st

    group = st.open_group(path, mode="r")
    try:
        stored = json.loads(group.attrs["scenario"])
    except (KeyError, ValueError):
        return "it has no scenario"
    here = _normal(plan.base.to_dict())
    for part, prefix in (("data", ""), ("materials", "materials.")):
        where = _first_difference(stored.get(part), here[part])
        if where is not None:
            return f"its scenario differs at {prefix}{where}"
    seeds = [int(s) for s in np.asarray(group["seed"][:])]
    if seeds != list(plan.seeds):
        return f"it has {len(seeds)} runs of other seeds or count (this command: {plan.n_runs} replicas)"
    return None


def plan_stores(cases: Sequence[Case], out_dir, *, quick: bool, replicas: int, overwrite: bool,
                command: str = "kmc validate", load: Callable[[Case, bool], Scenario] = load_case) -> list[CaseStore]:
    """Each case's store in ``out_dir`` and the runs left to do (``jobs`` creates the stores and lists
    the runs). Raises KmcError, before anything is written, when a scenario is invalid, or a store
    exists for another scenario, other material constants or another replica count and ``overwrite``
    is not given. A store of the same plan is reused: done runs are kept, pending and interrupted
    ones are (re)started from their checkpoints, failed ones are reported, not rerun. ``load(case,
    quick)`` gives a case's scenario (``kmc converge`` passes its variants of a row's scenarios).
    """
    from kmc import store as st
    from kmc.run_status import run_statuses
    from kmc.api import plan_replicas

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise KmcError(f"-o {str(out_dir)!r} is not allowed: it is a file; expected a directory")
    planned = []
    for case in cases:
        plan = plan_replicas(load(case, quick), replicas, command=command)
        cs = CaseStore(case, out_dir / f"{case.name}.zarr", plan)
        if cs.path.exists() and not st.is_kmc_store(cs.path):
            raise KmcError(f"{str(cs.path)!r} exists and is not a kmc store: move it away or choose another -o DIR")
        if overwrite or not cs.path.exists():
            cs.create, cs.todo = True, list(range(plan.n_runs))
        else:
            why = _store_mismatch(cs.path, plan)
            if why is not None:
                raise KmcError(f"{str(cs.path)!r} exists but is not this command's store ({why}): pass "
                               f"--overwrite to recompute it, or choose another -o DIR")
            for s in run_statuses(cs.path):
                {"pending": cs.todo, "interrupted": cs.todo, "running": cs.busy, "failed": cs.failed}.get(
                    s.status, []).append(s.run)
        planned.append(cs)
    return planned


def jobs(planned: Sequence[CaseStore]):
    """Every planned store's runs to do as ``(store, run)``, creating each new (or replaced) store just
    before its runs — lazily, so runs already submitted start while the later stores are created."""
    for cs in planned:
        if cs.create:
            cs.path.parent.mkdir(parents=True, exist_ok=True)
            cs.plan.create(str(cs.path), overwrite=True)
        yield from ((str(cs.path), run) for run in cs.todo)


# ---------------------------------------------------------------------------------------------
# Evaluation and the table
# ---------------------------------------------------------------------------------------------

def summaries(planned: Sequence[CaseStore]) -> dict[str, xr.Dataset]:
    """Each case's run summary (finished runs only), with its lattice and first current as attrs."""
    from kmc import store as st
    from kmc.api import open as open_store

    out = {}
    for cs in planned:
        ds = open_store(str(cs.path))
        done = np.asarray(ds["status"].values) == st.STATUS_DONE
        # summary() of no finished runs would reduce over an empty run dimension: take every run's, then none.
        s = ds.kmc.summary() if done.any() else ds.kmc.summary(only_done=False).isel(run=slice(0, 0))
        data = cs.plan.base.data
        lat = data["lattice"]
        step = data["protocol"][0]
        columns = f"{lat['nx']}²" if lat["nx"] == lat["ny"] else f"{lat['nx']}×{lat['ny']}"
        s.attrs.update(lattice=f"{columns} × {lat['voxel_um']:g} µm",
                       current_ma_cm2=step.get("current_ma_cm2", step.get("start_ma_cm2", math.nan)))
        out[cs.case.name] = s
    return out


def evaluate_all(planned: Sequence[CaseStore]) -> tuple[list[Result], list[DirectionResult]]:
    """The table's lines for every row whose cases were planned, and the directions, from the stores."""
    s = summaries(planned)
    rows = [row for row in ROWS if all(c in s for m in row.metrics for c in m.cases)]
    return evaluate(rows, s), check_directions(s)


def table_title(quick: bool, replicas: int) -> str:
    if quick:
        return (f"kmc validate --quick: directions only — small lattices, {replicas} replicas; the values "
                f"are not expected in the accepted ranges")
    return f"kmc validate: model vs experiment (VALIDATION.md), {replicas} replicas per scenario"


def write_tables(results: Sequence[Result], directions: Sequence[DirectionResult], out_dir, *, quick: bool,
                 replicas: int) -> list[Path]:
    """``validation.csv`` and ``validation.md`` (to paste in a README) in ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    rows = [r.cells() for r in results]
    csv_path, md_path = out_dir / TABLE_CSV, out_dir / TABLE_MD
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=("mode", *COLUMNS))
        writer.writeheader()
        for cells in rows:
            writer.writerow({"mode": "quick" if quick else "full", **cells})
    lines = [f"{table_title(quick, replicas)}. Median over finished runs; spread: min–max.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(c[k].replace("|", "\\|") for k in COLUMNS) + " |" for c in rows]
    shown = [d for d in directions if d.holds is not None]
    if shown:
        lines += ["", f"Directions ({'asserted' if quick else 'not asserted without --quick'}):", ""]
        lines += [f"- {'holds' if d.holds else 'FAILS'}: {d.direction.name} — {d.detail}" for d in shown]
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [csv_path, md_path]


# ---------------------------------------------------------------------------------------------
# Running a validation
# ---------------------------------------------------------------------------------------------

Report = Callable[[str], None]


@dataclass
class Outcome:
    """What ``validate`` did.

    ``results`` and ``directions``: the table's lines and the directions (empty when ``stopped`` by a
    signal: then nothing is evaluated or written); ``tables``: the files written; ``failed_runs`` and
    ``busy``: ``"<case> run <r>"`` of the runs that failed (earlier or now) and of those left to
    another process. ``exit_code``: 3 when stopped; 1 when a run failed or is not finished, or (quick)
    a direction fails; else 0 (rows outside their range do not change it).
    """

    quick: bool
    replicas: int
    out_dir: Path
    planned: list[CaseStore] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    directions: list[DirectionResult] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)
    failed_runs: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    stopped: bool = False

    @property
    def title(self) -> str:
        return table_title(self.quick, self.replicas)

    @property
    def failed_directions(self) -> list[DirectionResult]:
        return [d for d in self.directions if d.holds is False]

    @property
    def exit_code(self) -> int:
        if self.stopped:
            return 3
        return 1 if self.failed_runs or self.busy or (self.quick and self.failed_directions) else 0


def validate(rows: Sequence[str] | None = None, *, quick: bool = False, out_dir=None, replicas: int | None = None,
             workers: int | None = None, overwrite: bool = False, command: str = "kmc validate",
             progress: bool = False, report: Report | None = None) -> Outcome:
    """Run the rows' cases (default: every row) into ``out_dir`` and judge them (``kmc validate``).

    ``out_dir`` defaults to ``validation/`` (``validation-quick/`` with ``quick``), ``replicas`` to
    REPLICAS (QUICK_REPLICAS), ``workers`` to the CPU count; ``command`` is recorded in new stores.
    ``progress`` shows a bar per scenario; ``report(message)`` gets the messages of the run. Raises
    KmcError, before anything is written, on bad input (see ``plan_stores``). SIGINT and SIGTERM
    stop every running run at a checkpoint (the Outcome is then ``stopped``).
    """
    report = report or (lambda message: None)
    replicas = replicas or (QUICK_REPLICAS if quick else REPLICAS)
    out_dir = Path(out_dir or ("validation-quick" if quick else "validation"))
    planned = plan_stores(cases_of(rows or ROW_IDS), out_dir, quick=quick, replicas=replicas,
                          overwrite=overwrite, command=command)
    outcomes, stopped = run_plan(planned, workers, progress, report)
    outcome = Outcome(quick, replicas, out_dir, planned)
    if stopped:
        outcome.stopped = True
        return outcome
    outcome.results, outcome.directions = evaluate_all(planned)
    outcome.tables = write_tables(outcome.results, outcome.directions, out_dir, quick=quick, replicas=replicas)
    outcome.failed_runs, outcome.busy = unfinished_runs(planned, outcomes)
    return outcome


def run_plan(planned: Sequence[CaseStore], workers: int | None, progress: bool, report: Report) -> tuple[dict, bool]:
    """Run what the planned stores still need (after saying which stores are reused), on ``workers``
    processes (default: the CPU count); returns the runs' outcomes and whether a signal stopped them."""
    from kmc.executors import summarize

    for cs in planned:
        _report_reuse(cs, report)
    outcomes = _run_planned(planned, workers or os.cpu_count() or 1, progress, report)
    return outcomes, (summarize(outcomes) if outcomes else 0) == 3


def unfinished_runs(planned: Sequence[CaseStore], outcomes: dict) -> tuple[list[str], list[str]]:
    """``"<case> run <r>"`` of the runs that failed (earlier, or now) and of those another process is
    running."""
    failed = [f"{cs.case.name} run {r}" for cs in planned for r in cs.failed] + \
        [f"{Path(loc).stem} run {r}" for (loc, r), o in outcomes.items() if o != "done"]
    busy = [f"{cs.case.name} run {r}" for cs in planned for r in cs.busy]
    return failed, busy


def _report_reuse(cs: CaseStore, report: Report) -> None:
    """What becomes of an existing store's runs: reused, left to another process, failed earlier."""
    kept = cs.n_runs - len(cs.todo) - len(cs.busy) - len(cs.failed)
    if not cs.create:
        report(f"{cs.path}: reusing {kept} finished run(s)"
               + (f", running or resuming {len(cs.todo)}" if cs.todo else ""))
    if cs.busy:
        report(f"{cs.path}: run(s) {cs.busy} are running in another process; left alone "
               f"(set KMC_STALE_AFTER_S=0 if that process is gone)")
    if cs.failed:
        report(f"{cs.path}: run(s) {cs.failed} failed earlier (`kmc status {cs.path}`); "
               f"--overwrite reruns the row")


def _run_planned(planned: Sequence[CaseStore], workers: int, progress: bool, report: Report) -> dict:
    """Run every planned store's remaining runs, with a progress bar per scenario on a terminal (else a
    report per finished run); returns each ``(store, run)``'s outcome."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from kmc.executors import run_processes, stop_on_signals

    n_jobs = sum(len(cs.todo) for cs in planned)
    if not n_jobs:
        return {}
    by_path = {str(cs.path): cs for cs in planned}
    samples: dict[tuple, int] = {}
    ended: set[tuple] = set()
    finished = {str(cs.path): cs.n_runs - len(cs.todo) for cs in planned}
    bar = Progress(TextColumn("{task.description:<12}"), BarColumn(), TextColumn("{task.fields[runs]}"),
                   TimeElapsedColumn(), TimeRemainingColumn(), disable=not progress, transient=False)
    total = bar.add_task("all", total=n_jobs, runs=f"0/{n_jobs} runs")
    tasks = {path: bar.add_task(cs.case.name, total=cs.n_runs * cs.n_samples,
                                completed=finished[path] * cs.n_samples, runs=f"{finished[path]}/{cs.n_runs} runs")
             for path, cs in by_path.items() if cs.todo}

    def update(path):
        cs = by_path[path]
        done_samples = finished[path] * cs.n_samples + sum(k for (p, _), k in samples.items() if p == path)
        bar.update(tasks[path], completed=done_samples, runs=f"{finished[path]}/{cs.n_runs} runs")

    def on_sample(job, k):
        if job not in ended:  # a worker's last report may arrive after its run ended
            samples[job] = k
            update(job[0])

    def on_done(job, outcome):
        ended.add(job)
        samples.pop(job, None)
        if outcome == "done":
            finished[job[0]] += 1
        bar.advance(total)
        n_done = int(bar.tasks[total].completed)
        bar.update(total, runs=f"{n_done}/{n_jobs} runs")
        update(job[0])
        if not progress:
            report(f"{by_path[job[0]].case.name} run {job[1]}: {outcome} ({n_done}/{n_jobs})")

    with stop_on_signals() as stop, bar:
        return run_processes(jobs(planned), workers=min(workers, n_jobs), stop=stop, on_sample=on_sample,
                             on_done=on_done)
