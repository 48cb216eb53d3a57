"""Convergence of a validation row in voxel size and domain size (``kmc converge``).

VALIDATION.md: every row converges — halving the voxel and doubling the domain each move its median
by less than the replicas' interquartile range — and the size each row runs at is written in its
scenario file with the convergence run that justifies it. ``converge`` runs a row's scenarios in three
variants, with the same replica seeds:

- ``base``: the scenario as written (with the ``--set`` overrides);
- ``half_voxel``: ``voxel_um`` halved at the same physical domain, so ``nx``, ``ny`` and ``nz`` double
  (``nz`` is the anode region's height in voxels: the same height in µm takes twice as many);
- ``double_domain``: ``nx`` and ``ny`` doubled at the same voxel (the lateral domain doubles; the
  height, ``nz`` voxels, is the same).

The runs, their stores and the row's observables are ``kmc validate``'s: the stores are planned and
run by ``kmc.validate`` (reused and resumed the same way), and each observable is the row's ``Metric``
of ``kmc.validation`` summarised from the stores. Only the statistics and the verdict are this
module's.

**The statistics.** A quantity's value per run is the Metric's (a run without a value, e.g. the CE of
a run that shorted before stripping, is left out; a short charge or CCD of a run that did not short is
+inf, "no short"). Its *median* is the median over the runs, and its *spread* the interquartile range
IQR = Q75 − Q25 of the runs' values, quantiles interpolated linearly between order statistics (numpy's
default, Hyndman–Fan type 7). A quantity that is a share of replicas (shorted or not) is judged by the
share p = k/n itself, as ``kmc validate`` does; the IQR of n values that are each 0 or 1 says nothing
(it is 0 or 1), so its spread is the IQR of the share another n replicas would give: the quartiles of
Binomial(n, p̃)/n, with p̃ = (k + ½)/(n + 1) so that 0 of 8 and 8 of 8 still carry the uncertainty of 8
replicas (IQR 1/8 rather than 0).

**The verdict.** A variant's *move* is |median(variant) − median(base)| (0 when both are the same,
including both "no short"; +inf when only one is). The row converges when, for every quantity, both
moves are below the **base's** IQR — the scatter between replicas at the size the row runs at, which is
the size being judged; the variants' IQRs are shown but not used (the larger domain averages over more
of the interface and has the smaller IQR, which would judge the base by a scatter it does not have). A
move of exactly 0 passes even when that IQR is 0 (replicas that all agree, and variants that agree with
them). A quantity without a value in a variant cannot be judged: the row does not converge; nor can a
move against an unbounded IQR (a short charge or CCD whose base runs do not short in a quarter or more
of the replicas: Q75 is "no short"), which only a move of 0 passes. A protocol cut-off every run stops at
(``Metric.cutoff``: T4's final voltage) is judged by whether its median reaches the accepted range in the
variant as in the base: its scatter is the last batch's overshoot past the cut-off (T4: 0.05 mV), and its
moves (0.1–0.25 mV) said "not converged" of runs that all ended at the cut-off.
"""
from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from kmc.config import Scenario, ScenarioError, load_scenario, parse_assignment
from kmc.errors import KmcError, printable
from kmc.validation import CASES, ROW_IDS, ROWS, Case, Metric, Row, load_case, metric_values

#: Replicas per variant: VALIDATION.md asks the median and spread over at least 8.
REPLICAS = 8
#: The variants, in the order they are shown; the stores are ``<case>_<variant>.zarr``.
VARIANTS = ("base", "half_voxel", "double_domain")
VARIANT_TITLES = {"base": "base", "half_voxel": "half voxel", "double_domain": "double domain"}
#: Voxels of each variant relative to the base (the order the runs start in: the largest first).
VOXELS_RELATIVE = {"base": 1, "half_voxel": 8, "double_domain": 4}
#: File of the comment block, written beside the stores.
BLOCK_FILE = "convergence.toml"


# ---------------------------------------------------------------------------------------------
# The variants
# ---------------------------------------------------------------------------------------------

def variant_overrides(lattice: Mapping) -> dict[str, dict]:
    """The lattice overrides of each variant of a scenario whose ``[lattice]`` is ``lattice``.

    ``half_voxel``: ``voxel_um`` (µm) halved, ``nx``, ``ny`` and ``nz`` (voxels) doubled — the same
    domain in µm; ``double_domain``: ``nx`` and ``ny`` doubled — twice the lateral domain, the same voxel
    and height."""
    nx, ny, nz, voxel_um = (lattice[k] for k in ("nx", "ny", "nz", "voxel_um"))
    return {
        "base": {},
        "half_voxel": {"lattice.voxel_um": voxel_um / 2, "lattice.nx": 2 * nx, "lattice.ny": 2 * ny,
                       "lattice.nz": 2 * nz},
        "double_domain": {"lattice.nx": 2 * nx, "lattice.ny": 2 * ny},
    }


def lattice_text(lattice: Mapping) -> str:
    """``128x128x48 of 0.5 um``: columns × columns × height in voxels, and the voxel edge."""
    return f"{lattice['nx']}x{lattice['ny']}x{lattice['nz']} of {lattice['voxel_um']:g} um"


# ---------------------------------------------------------------------------------------------
# What to converge: a row, one of its scenarios, or a scenario file
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """A study's subject: the row (its quantities restricted to the scenarios studied), its cases, and
    each case's base scenario (overrides applied) by case name. ``label`` is the argument as given."""

    label: str
    row: Row
    cases: tuple[Case, ...]
    base: Mapping[str, Scenario]


def _row(row_id: str) -> Row:
    return next(r for r in ROWS if r.id == row_id)


def _only(row: Row, case: str) -> Row:
    """The row with the quantities of the single case ``case`` (not those comparing two cases)."""
    return replace(row, metrics=tuple(m for m in row.metrics if m.cases == (case,)))


def parse_sets(sets: Sequence[str]) -> dict:
    """``--set KEY=VALUE`` texts as a mapping of dotted keys to TOML values (ScenarioError if malformed)."""
    return dict(parse_assignment(text) for text in sets)


def resolve(target: str, sets: Mapping | None = None) -> Target:
    """The row, validation scenario or scenario file ``target`` names, with ``sets`` applied to every
    scenario. A row id (``T3``, ``D1``) studies all its scenarios; a scenario's name (``D1_foil``) or a
    scenario file studies that scenario with its row's quantities of it; a file's row is the validation
    scenario of its ``[scenario] name``. Raises KmcError (nothing written) for anything else."""
    sets = dict(sets or {})
    by_name = {name.upper(): name for name in CASES}
    key = target.strip().upper()
    if key in ROW_IDS:
        cases = tuple(c for c in CASES.values() if c.row == key)
        row = _row(key)
        base = {c.name: load_case(replace(c, overrides={**c.overrides, **sets})) for c in cases}
        return Target(target, row, cases, base)
    if key in by_name:
        case = CASES[by_name[key]]
        return Target(target, _only(_row(case.row), case.name), (case,),
                      {case.name: load_case(replace(case, overrides={**case.overrides, **sets}))})
    path = Path(target)
    if path.suffix == ".toml" or path.exists():
        scenario = load_scenario(path, overrides=sets)
        if scenario.name not in CASES:
            raise KmcError(f"scenario.name = {scenario.name!r} (in {str(path)!r}) is not allowed for kmc converge: "
                           f"expected the name of a validation scenario ({', '.join(CASES)}), which says which "
                           f"row's quantities to converge")
        case = CASES[scenario.name]
        row = _only(_row(case.row), case.name)
        return Target(target, row, (case,), {case.name: scenario})
    raise KmcError(f"ROW_OR_SCENARIO = {target!r} is not allowed: expected a row id ({', '.join(ROW_IDS)}), "
                   f"a validation scenario ({', '.join(CASES)}) or a scenario file (.toml)")


def variant_scenarios(target: Target) -> dict[tuple[str, str], Scenario]:
    """Every (case name, variant)'s checked scenario. Raises KmcError naming the variant when a
    variant's lattice is not allowed (e.g. a halved voxel below the smallest voxel_um)."""
    out = {}
    for case in target.cases:
        base = target.base[case.name]
        for variant, overrides in variant_overrides(base.data["lattice"]).items():
            try:
                out[case.name, variant] = base.with_overrides(overrides)
            except ScenarioError as err:
                raise KmcError(f"{err} (the {VARIANT_TITLES[variant]} variant of {case.name}'s "
                               f"{lattice_text(base.data['lattice'])}: choose another base lattice)") from None
    return out


# ---------------------------------------------------------------------------------------------
# Statistics and the verdict
# ---------------------------------------------------------------------------------------------

def quantile(values: np.ndarray, q: float) -> float:
    """The ``q`` quantile of ``values``, interpolated linearly between order statistics (numpy's default,
    Hyndman–Fan type 7), safe with +inf values (between two +inf it is +inf, not NaN). NaN if empty."""
    x = np.sort(np.asarray(values, dtype=float))
    if x.size == 0:
        return math.nan
    h = (x.size - 1) * q
    lo, hi = math.floor(h), math.ceil(h)
    if x[lo] == x[hi]:
        return float(x[lo])
    return float(x[lo] + (h - lo) * (x[hi] - x[lo]))


def _binomial_quantile(n: int, p: float, q: float) -> int:
    """The smallest k with P(K ≤ k) ≥ q for K ~ Binomial(n, p)."""
    cdf = 0.0
    for k in range(n + 1):
        cdf += math.comb(n, k) * p**k * (1 - p) ** (n - k)
        if cdf >= q - 1e-12:
            return k
    return n


@dataclass(frozen=True)
class Spread:
    """A quantity over one variant's runs: ``statistic`` (the median, or the share for a share of
    replicas), its quartiles ``q25`` and ``q75`` (for a share, those of the share over n replicas), and
    ``n`` the runs with a value."""

    statistic: float
    q25: float
    q75: float
    n: int
    share: bool = False
    k: int = 0          # replicas counted, for a share

    @property
    def iqr(self) -> float:
        return 0.0 if self.q25 == self.q75 else self.q75 - self.q25


def spread_of(values: np.ndarray, share: bool = False) -> Spread:
    """The median and quartiles of ``values`` (a run's value each; NaN already left out), or, with
    ``share``, the share of values equal to 1 and the quartiles of Binomial(n, p̃)/n, p̃ = (k + ½)/(n + 1)."""
    values = np.asarray(values, dtype=float)
    n = values.size
    if n == 0:
        return Spread(math.nan, math.nan, math.nan, 0, share)
    if share:
        k = int((values == 1).sum())
        p = (k + 0.5) / (n + 1)
        return Spread(k / n, _binomial_quantile(n, p, 0.25) / n, _binomial_quantile(n, p, 0.75) / n, n, True, k)
    return Spread(quantile(values, 0.5), quantile(values, 0.25), quantile(values, 0.75), n)


def move(variant: float, base: float) -> float:
    """|variant − base|: 0 when equal (both +inf, "no short", included), +inf when only one is infinite,
    NaN when either is missing."""
    if math.isnan(variant) or math.isnan(base):
        return math.nan
    return 0.0 if variant == base else abs(variant - base)


def within(moved: float, iqr: float) -> bool:
    """A move passes when below the IQR, or exactly 0 (variants that agree with replicas that agree). An
    unbounded IQR (a quarter or more of the base's runs did not short, Q75 "no short") judges nothing:
    any finite move would pass it, so only a move of 0 does."""
    if math.isnan(moved) or math.isnan(iqr):
        return False
    if math.isinf(iqr):
        return moved == 0.0
    return moved == 0.0 or moved < iqr


@dataclass
class QuantityResult:
    """One quantity of the row in every variant: its spreads, the lattice of each, the moves and verdict."""

    metric: Metric
    spreads: dict[str, Spread]
    lattices: dict[str, str]

    def moved(self, variant: str) -> float:
        return move(self.spreads[variant].statistic, self.spreads["base"].statistic)

    def passes(self, variant: str) -> bool:
        if self.metric.cutoff:  # reached in the variant as in the base (both medians accepted, or neither)
            base, other = self.spreads["base"].statistic, self.spreads[variant].statistic
            if math.isnan(base) or math.isnan(other):
                return False
            return self.metric.accepts(base) == self.metric.accepts(other)
        return within(self.moved(variant), self.spreads["base"].iqr)

    @property
    def converged(self) -> bool:
        return all(self.passes(v) for v in VARIANTS if v != "base")

    def fmt(self, x: float) -> str:
        if math.isnan(x):
            return "none"
        if math.isinf(x):
            return self.metric.censored if x > 0 else "-inf"
        digits = self.metric.digits
        # A spread or move below the row's last digit keeps two significant ones rather than reading 0.00.
        return f"{x:.2g}" if 0 < abs(x) < 10 ** -digits else f"{x:.{digits}f}"

    def value_text(self, variant: str) -> str:
        s = self.spreads[variant]
        if s.n == 0:
            return "no value"
        if s.share:
            return f"{s.k}/{s.n} = {s.statistic:.3f} (IQR {s.iqr:.3f})"
        return f"{self.fmt(s.statistic)} (IQR {self.fmt(s.iqr)}, n {s.n})"

    def move_text(self, variant: str) -> str:
        moved, iqr = self.moved(variant), self.spreads["base"].iqr
        if math.isnan(moved):
            return "moved: none (no value)"
        fmt = (lambda x: f"{x:.3f}") if self.metric.share else self.fmt
        if moved == 0:
            return "moved 0"
        if self.metric.cutoff:
            reached = "reaches" if self.metric.accepts(self.spreads[variant].statistic) else "does not reach"
            return (f"moved {fmt(moved)}, a cut-off: the median {reached} it"
                    f"{' as in the base' if self.passes(variant) else ', unlike the base'} (the IQR, the "
                    f"overshoot past it, is not the measure)")
        if math.isinf(iqr):
            return f"moved {fmt(moved)}, not judged: the base's IQR is unbounded ({fmt(iqr)})"
        return f"moved {fmt(moved)} {'<' if moved < iqr else '>='} {fmt(iqr)}"


def judge(row: Row, summaries: Mapping[str, Mapping]) -> list[QuantityResult]:
    """Each quantity of ``row`` in each variant from ``summaries[variant]``: the run summaries of the
    row's cases by case name (as ``kmc.validate.summaries`` gives, with the lattice in
    ``attrs["lattice_text"]``)."""
    out = []
    for metric in row.metrics:
        spreads, lattices = {}, {}
        for variant in VARIANTS:
            values, _ = metric_values(metric, summaries[variant])
            spreads[variant] = spread_of(values, metric.share)
            lattices[variant] = summaries[variant][metric.cases[0]].attrs.get("lattice_text", "")
        out.append(QuantityResult(metric, spreads, lattices))
    return out


# ---------------------------------------------------------------------------------------------
# The study
# ---------------------------------------------------------------------------------------------

def command_line(target: str, replicas: int, sets: Sequence[str] = ()) -> str:
    """The command that reproduces a study (the output directory and workers do not change its numbers)."""
    parts = ["kmc converge", target, f"--replicas {replicas}"] + [f"--set {s}" for s in sets]
    return " ".join(parts)


@dataclass
class Study:
    """What ``converge`` did: the quantities in every variant (empty when ``stopped``), the runs that
    failed, the stores' directory. ``exit_code``: 3 stopped by a signal, 1 a run failed or is not
    finished, else 0 (whether the row converged is the verdict, not the exit code)."""

    target: Target
    replicas: int
    command: str
    out_dir: Path
    quantities: list[QuantityResult] = field(default_factory=list)
    failed_runs: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    stopped: bool = False
    block_path: Path | None = None

    @property
    def converged(self) -> bool:
        return bool(self.quantities) and all(q.converged for q in self.quantities)

    @property
    def exit_code(self) -> int:
        if self.stopped:
            return 3
        return 1 if self.failed_runs or self.busy else 0

    def block(self, date: _dt.date | None = None) -> str:
        """The TOML comment block to paste into the scenario file: the command, the date, each variant's
        lattice, median and IQR per quantity, the moves against the base's IQR, and the verdict."""
        date = date or _dt.date.today()
        lines = [f"# convergence ({self.command}, {date.isoformat()}): median (IQR) over the replicas"]
        for q in self.quantities:
            lines.append(f"#   {q.metric.quantity}" + (" (share of replicas; IQR of the share)" if q.metric.share
                                                          else ""))
            for variant in VARIANTS:
                text = f"#     {VARIANT_TITLES[variant]} {q.lattices[variant]}: {q.value_text(variant)}"
                if variant != "base":
                    text += f", {q.move_text(variant)}"
                lines.append(text)
        verdict = "converged" if self.converged else "NOT converged"
        failing = [f"{q.metric.quantity} ({', '.join(VARIANT_TITLES[v] for v in VARIANTS[1:] if not q.passes(v))})"
                   for q in self.quantities if not q.converged]
        lines.append(f"#   {verdict}: " + (f"moved by the base's IQR or more: {'; '.join(failing)}" if failing else
                                            "halving the voxel and doubling the domain each move the median "
                                            "by less than the base's IQR"))
        # Every line one comment line: a newline in a --set value quoted in the command is escaped.
        return "\n".join(printable(line) for line in lines)


def converge(target: str, *, replicas: int = REPLICAS, workers: int | None = None, out_dir=None,
             sets: Sequence[str] = (), overwrite: bool = False, progress: bool = False, report=None) -> Study:
    """Run ``target``'s convergence study (``kmc converge``) into ``out_dir`` and judge it.

    ``target``: a row id, a validation scenario's name or a scenario file (``resolve``); ``sets``: ``KEY=VALUE``
    overrides applied to the base before the variants are made from it; ``out_dir`` defaults to
    ``convergence-<target>/`` (the file's stem for a file); ``workers`` to the CPU count. Raises KmcError,
    before anything is written, on bad input or when the largest variant would not fit in memory with
    ``workers`` runs at once. The stores are reused and resumed as ``kmc validate``'s are (a store of
    another plan is refused unless ``overwrite``, which recomputes every variant).
    """
    from kmc import validate as orchestration
    from kmc.api import check_memory, local_workers

    report = report or (lambda message: None)
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 2:
        raise KmcError(f"--replicas = {replicas!r} is not allowed: expected an integer of at least 2 "
                       f"(an interquartile range needs runs; VALIDATION.md asks for at least {REPLICAS})")
    sets = list(sets)
    subject = resolve(target, parse_sets(sets))
    scenarios = variant_scenarios(subject)
    label = Path(target).stem if Path(target).suffix == ".toml" else target
    out_dir = Path(out_dir or f"convergence-{label}")
    variant_cases = {(c.name, v): replace(c, name=f"{c.name}_{v}") for c in subject.cases for v in VARIANTS}
    by_name = {vc.name: key for key, vc in variant_cases.items()}
    # The most expensive first: the halved voxel has 8 times the voxels, the doubled domain 4 times.
    order = sorted(variant_cases, key=lambda key: -CASES[key[0]].cost_s * VOXELS_RELATIVE[key[1]])
    planned = orchestration.plan_stores([variant_cases[k] for k in order], out_dir, quick=False, replicas=replicas,
                                        overwrite=overwrite, command=command_line(target, replicas, sets),
                                        load=lambda case, quick: scenarios[by_name[case.name]])
    n_jobs = sum(len(cs.todo) for cs in planned)
    if n_jobs:
        largest = max((cs.plan.memory() for cs in planned if cs.todo), key=lambda e: e.peak_bytes)
        check_memory(largest, None, local_workers(workers, n_jobs))
    outcomes, stopped = orchestration.run_plan(planned, workers, progress, report)
    study = Study(subject, replicas, command_line(target, replicas, sets), out_dir)
    if stopped:
        study.stopped = True
        return study
    summaries = orchestration.summaries(planned)
    by_variant: dict[str, dict] = {v: {} for v in VARIANTS}
    for cs in planned:
        case, variant = by_name[cs.case.name]
        s = summaries[cs.case.name]
        s.attrs["lattice_text"] = lattice_text(cs.plan.base.data["lattice"])
        by_variant[variant][case] = s
    study.quantities = judge(subject.row, by_variant)
    study.failed_runs, study.busy = orchestration.unfinished_runs(planned, outcomes)
    study.block_path = out_dir / BLOCK_FILE
    out_dir.mkdir(parents=True, exist_ok=True)
    study.block_path.write_text(study.block() + "\n", encoding="utf-8")
    return study
