"""A run's expected wall time, from the scenario's sizes and a benchmark of the machine (``kmc run --dry-run``).

The run time of a model is a sum of costs, each a measured coefficient times a measure of the work a
scenario asks for, read from the model built for the dry run (no lattice):

- battery model (``python benchmarks/battery.py --record``, which runs T2 at two lateral sizes and two
  capacities):

  - ``s_per_column``: a fixed cost per column (nx·ny) — building the geometry and the State, and the
    field solves of the first minutes, whose number barely grows with the charge;
  - ``s_per_column_mah_cm2``: per column per mAh/cm² of charge the protocol moves (plated plus
    stripped: each galvanostatic step's current times its time bound) — the events and the solves
    the growing metal asks for;
  - ``s_per_site_sample``: per site (nx·ny·nz) per stored sample — the observables, recounted from
    the lattice at every sample.

  The benchmark times the observables apart (``observe_s``), so ``s_per_site_sample`` is measured on
  its own and the other two are a least-squares line through the rest, per column, against the charge.
  Left out: rests and holds (no charge counted, although their events and solves take time), the
  extra levels of a ``ccd`` and the steps a short or a cut-off ends early (counted in full, so a run
  that ends early takes less), the writes of the store (``benchmarks/store.py``), and how the cost
  changes with the materials, the current density or the roughness away from T2's.
- hop model (``kmc bench``'s measurement, ``kmc.bench.bench_hop``, recorded by the same command):
  ``s_per_event`` times the expected events, duration × the initial total rate, 6·N·f·(1−f) hops per
  second times the mean rate multiplier. For ``hop-random`` the total rate falls as particles settle
  on slow sites, so the estimate is an upper bound.

Checked against whole runs on the machine that recorded the shipped benchmark (2026-12-07, T2 at 128²
and 256²): T2 (2 mAh/cm², in memory) at 128² estimated 6 s, measured 5.5–7 s; at 256² 24 vs 22–30 s; at
512² 97 vs 130–167 s (116–128 s after the solves' speed-ups of the same day) — before the layer seals,
rule 3's searches carry each plated voxel farther through the Na the larger the domain, so the cost per
column grows with it (~1.3–1.5× from 256² to 512²), which a cost per column measured at 128² and 256² does
not see; T6 at 128² (`kmc run`, store and start-up
included) 30 vs 35 s; D4 at 128² 5 vs 10 s — a bare collector nucleates and its contact changes more,
655 field solves against T2's 214, and the solves are most of its time. The estimate gives the order,
not more.

A model with no coefficients in the benchmark gets no estimate (``seconds_per_run`` returns None).

The benchmark is a small JSON file with the date and the CPU it was measured on. The first found is
read: the file named by the environment variable ``KMC_RUNTIME_BENCHMARK``; else the user's own,
written by ``python benchmarks/battery.py --record`` (``user_path()``: the user data directory of
``platformdirs``, e.g. ``~/.local/share/kmc/runtime_benchmark.json`` on Linux); else the one shipped in
the package, measured by the developers. A file that cannot be read or lacks what the model needs
gives no estimate, never an error: the estimate is advice.
"""
from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import dataclass
from pathlib import Path

#: The file name of a recorded benchmark (in the user data directory, and shipped in the package).
FILE_NAME = "runtime_benchmark.json"
#: Environment variable naming a benchmark file to read instead of the user's or the shipped one.
ENV_VAR = "KMC_RUNTIME_BENCHMARK"
#: Every coefficient a model's cost needs, by ``[model] kind`` (and the hop model's variant).
COEFFICIENTS = {
    "battery": ("s_per_column", "s_per_column_mah_cm2", "s_per_site_sample"),
    "hop": ("s_per_event",),
    "hop-random": ("s_per_event",),
}


@dataclass(frozen=True)
class Benchmark:
    """A recorded benchmark: when and where it was measured, and the coefficients by model."""

    date: str  #: ISO date of the measurement
    cpu: str  #: the CPU's name, as the operating system gives it
    costs: dict[str, dict[str, float]]  #: model -> coefficient name -> seconds per unit
    path: str = ""  #: the file it was read from
    #: the most columns (nx·ny) of the battery runs the coefficients were fitted on (0: not recorded)
    battery_columns_max: int = 0

    def source(self) -> str:
        """``benchmark of 2026-11-24 on Intel(R) Xeon(R) Processor``."""
        return f"benchmark of {self.date} on {self.cpu}"


# -- the work a scenario asks for ------------------------------------------------------------------------------

def battery_work(model) -> dict[str, float]:
    """The battery model's work measures: columns, mAh/cm² moved (plated plus stripped, each galvanostatic
    step at its time bound), and sites × stored samples."""
    p = model.params
    charge_mah_cm2 = sum(abs(s.current_a) * s.duration_s / 3.6 for s in model.steps
                         if s.kind in ("plate", "strip")) / p.area_cm2
    return {"columns": p.nx * p.ny, "charge_mah_cm2": charge_mah_cm2,
            "site_samples": p.nx * p.ny * p.nz * model.n_samples}


def hop_events(model) -> float:
    """Expected events of a hop-model run: duration × the initial total rate, 6·N·f·(1−f) hops per second
    (random placement) times the mean of the rate multipliers, log-uniform over ``rate_decades``."""
    d = model.rate_decades
    mean_multiplier = -math.expm1(-d * math.log(10.0)) / (d * math.log(10.0)) if d > 0 else 1.0
    return model.duration_s * 6.0 * model.size**3 * model.fraction * (1.0 - model.fraction) * mean_multiplier


def seconds_per_run(model, bench: Benchmark | None) -> float | None:
    """Expected wall time (s) of one run of ``model`` on one core, or None without coefficients for it."""
    if bench is None:
        return None
    if model.kind == "battery":
        c = bench.costs.get("battery")
        if c is None:
            return None
        w = battery_work(model)
        return (w["columns"] * (c["s_per_column"] + c["s_per_column_mah_cm2"] * w["charge_mah_cm2"])
                + c["s_per_site_sample"] * w["site_samples"])
    if model.kind == "hop":
        c = bench.costs.get("hop-random" if model.rate_decades > 0 else "hop")
        return None if c is None else c["s_per_event"] * hop_events(model)
    return None


# -- fitting the battery coefficients ---------------------------------------------------------------------------

def fit_battery(points: list[dict]) -> dict[str, float]:
    """The battery coefficients from benchmark runs, each a dict of ``columns``, ``charge_mah_cm2``,
    ``site_samples``, ``wall_s`` and ``observe_s``: the observables' cost per site-sample, then a
    least-squares line of the rest per column against the charge (at least two charges needed)."""
    import numpy as np

    s_obs = sum(pt["observe_s"] for pt in points) / sum(pt["site_samples"] for pt in points)
    q = np.array([pt["charge_mah_cm2"] for pt in points], dtype=float)
    rest = np.array([(pt["wall_s"] - pt["observe_s"]) / pt["columns"] for pt in points], dtype=float)
    if len(set(q.tolist())) < 2:
        raise ValueError("fit_battery needs runs at two charges at least")
    slope, intercept = np.polyfit(q, rest, 1)
    return {"s_per_column": max(float(intercept), 0.0), "s_per_column_mah_cm2": max(float(slope), 0.0),
            "s_per_site_sample": float(s_obs)}


# -- reading and writing -----------------------------------------------------------------------------------------

def user_path() -> Path:
    """Where ``--record`` writes by default and the estimate looks first (after ``KMC_RUNTIME_BENCHMARK``)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("kmc", appauthor=False)) / FILE_NAME


def shipped_path() -> Path:
    """The benchmark shipped in the package (measured by the developers; its file names the CPU)."""
    return Path(__file__).with_name(FILE_NAME)


def benchmark_path() -> Path:
    """The benchmark file the estimate reads: ``KMC_RUNTIME_BENCHMARK`` if set, else the user's if it
    exists, else the shipped one."""
    named = os.environ.get(ENV_VAR)
    if named:
        return Path(named)
    user = user_path()
    return user if user.is_file() else shipped_path()


def load(path=None) -> Benchmark | None:
    """The benchmark at ``path`` (default ``benchmark_path()``), or None if it is missing or unreadable:
    not JSON, no date or CPU, a coefficient not a positive finite number (such a model is left out)."""
    path = Path(path) if path is not None else benchmark_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        date, cpu, models = str(data["date"]), str(data["cpu"]), data["models"]
        costs = {}
        for kind, names in COEFFICIENTS.items():
            coeffs = models.get(kind)
            if not isinstance(coeffs, dict):
                continue
            values = {name: float(coeffs[name]) for name in names if name in coeffs}
            if len(values) == len(names) and all(math.isfinite(v) and v >= 0 for v in values.values()):
                costs[kind] = values
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return Benchmark(date, cpu, costs, str(path), _largest_battery_run(data))


def _largest_battery_run(data) -> int:
    """The most columns of the battery runs a benchmark file lists in its details (``record``), or 0 when
    it lists none it can be read from: the coefficients are good without them."""
    try:
        return max((int(run["columns"]) for run in data["details"]["battery_runs"]), default=0)
    except (KeyError, TypeError, ValueError):
        return 0


def cpu_name() -> str:
    """The CPU's name: /proc/cpuinfo's ``model name`` on Linux, else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def record(costs: dict[str, dict], path=None, details: dict | None = None, date: str | None = None) -> Path:
    """Write a benchmark file (default ``user_path()``) with today's date and this machine's CPU;
    ``details`` (the runs measured) is kept beside the coefficients for whoever reads the file."""
    import datetime as dt

    path = Path(path) if path is not None else user_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"date": date or dt.date.today().isoformat(), "cpu": cpu_name(), "cores": os.cpu_count(),
            "python": platform.python_version(), "models": costs, "details": details or {}}
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return path


# -- the dry run's line --------------------------------------------------------------------------------------

def format_duration(seconds: float) -> str:
    """``under 1 s``, ``40 s``, ``3 min``, ``2.5 h``, ``3.2 d``."""
    if seconds < 0.5:
        return "under 1 s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def describe(model, n_runs: int, bench: Benchmark | None = None) -> str | None:
    """The dry run's line, ``expected run time ≈ 3 min per run (8 runs: 24 min on one core; benchmark of
    <date> on <cpu>)``, or None where no benchmark applies to the model (or none can be read). A battery
    domain larger than the benchmark's largest run is said to be likely longer."""
    bench = load() if bench is None else bench
    seconds = seconds_per_run(model, bench)
    if seconds is None:
        return None
    runs = f"{n_runs} runs: {format_duration(n_runs * seconds)} on one core; " if n_runs > 1 else ""
    beyond = ""
    if model.kind == "battery" and 0 < bench.battery_columns_max < battery_work(model)["columns"]:
        # The cost per column grows with the domain (module docstring: T2 at 512² took 1.2–1.7× the
        # estimate from 128² and 256²), so a larger domain than the benchmark's is said to be so.
        side = math.isqrt(bench.battery_columns_max)
        beyond = (f"; measured up to {side}² columns, and larger domains have cost more per column: "
                  "likely longer")
    return f"expected run time ≈ {format_duration(seconds)} per run ({runs}{bench.source()}{beyond})"
