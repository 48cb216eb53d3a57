"""The rows of VALIDATION.md as data: what each row runs, what it measures, what it accepts.

``CASES`` are the scenarios a validation runs, one store each (``scenarios/validation/<id>.toml``,
with overrides for the quick size); ``ROWS`` are the VALIDATION.md rows, each with its role, its
condition and the quantities it judges (``Metric``: a value per run from the run's summary
(``ds.kmc.summary()``), the paper's value and the accepted range as VALIDATION.md quotes them);
``DIRECTIONS`` are the checks ``kmc validate --quick`` asserts on small lattices: the ones
VALIDATION.md lists, which the papers state. ``evaluate`` and ``check_directions`` judge them on the
cases' run summaries. Running the cases into their stores and writing the table is ``kmc.validate``'s
work; printing it, the CLI's.

Statistics: a quantity is judged by its median over the finished replicas (the spread shown is the
minimum–maximum); a share of replicas (shorted or not) by the share itself. Runs without a value
(a CE of a run that shorted before stripping) are left out and counted (n). A short charge or a
CCD of a run that did not short is +inf: it did not short within the protocol's bound, so a median
over runs of which fewer than half shorted is "no short" too, and out of any accepted range.
"""
from __future__ import annotations

import importlib.resources
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from kmc.errors import KmcError

#: Na thickness per plated charge, µm per mAh/cm² (VALIDATION.md: 1 mAh/cm² of Na = 8.87 µm).
UM_PER_MAH_CM2 = 8.87


# ---------------------------------------------------------------------------------------------
# The scenarios
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One scenario of a validation, run with replicas into ``<name>.zarr``.

    ``row``: the VALIDATION.md row that runs it; ``scenario``: the file
    ``scenarios/validation/<scenario>.toml``; ``overrides``: dotted keys set at both sizes; ``quick``:
    set on top for ``--quick`` (small lattices, same voxel size). ``cost_s``: rough wall time of one
    run at full size on one core, only to start long runs first.
    """

    name: str
    row: str
    scenario: str
    overrides: Mapping = field(default_factory=dict)
    quick: Mapping = field(default_factory=dict)
    cost_s: float = 60.0


def _columns(n: int) -> dict:
    return {"lattice.nx": n, "lattice.ny": n}


#: Quick runs of stripping rows re-solve the field when the contact area changed by 5 % rather than
#: 1 %: on 16² columns 1 % is 2–3 faces, and a strip would re-solve after nearly every event
#: (~1 800 solves per strip of T6); 5 % there is ~13 faces, what 1 % is on 36² columns.
QUICK_STRIP_NUMERICS = {"numerics.resolve_area_fraction": 0.05}

CASES: dict[str, Case] = {c.name: c for c in (
    # Quick sizes: 32² columns of 0.5 µm where a short or its absence is judged (a 16 µm patch, a
    # few contact spacings of a bare foil), 16²–24² elsewhere; T5 and D2 keep their 1 µm voxels. The
    # rows of the directions (T1, T2, D1; D3 coarser re-solves, as the stripping rows) keep their
    # protocols.
    Case("T1", "T1", "T1", quick=_columns(32), cost_s=60),
    Case("T2", "T2", "T2", quick=_columns(32), cost_s=15),
    Case("T3", "T3", "T3", quick=_columns(16), cost_s=15),
    Case("T4", "T4", "T4", quick={**_columns(16), **QUICK_STRIP_NUMERICS}, cost_s=60),
    # The two ccd rows step their current 4 and 3 times as coarsely when quick (10 and 5 levels); T5 samples
    # every 0.1 mAh/cm² rather than every 0.02.
    Case("T5", "T5", "T5", quick={**_columns(16), **QUICK_STRIP_NUMERICS, "protocol.0.step_ma_cm2": 0.4,
                                  "output.sample_every_s": 300.0}, cost_s=120),
    Case("T6", "T6", "T6", quick={**_columns(16), **QUICK_STRIP_NUMERICS}, cost_s=600),
    Case("D1_foil", "D1", "D1_foil", quick=_columns(24), cost_s=45),
    Case("D1_pellet", "D1", "D1_pellet", quick=_columns(24), cost_s=45),
    Case("D2", "D2", "D2", quick={**_columns(16), **QUICK_STRIP_NUMERICS, "protocol.0.step_ma_cm2": 0.6}, cost_s=30),
    Case("D3", "D3", "D3", quick={**_columns(16), **QUICK_STRIP_NUMERICS}, cost_s=45),
    Case("D4", "D4", "D4", quick=_columns(16), cost_s=15),
)}


def scenario_file(name: str) -> Path:
    """The shipped ``scenarios/validation/<name>.toml`` (read through ``importlib.resources``)."""
    return Path(str(importlib.resources.files("kmc.scenarios") / "validation" / f"{name}.toml"))


def load_case(case: Case, quick: bool = False):
    """The case's Scenario: its file with its overrides (and the quick ones with ``quick``)."""
    from kmc.config import load_scenario

    overrides = {**case.overrides, **(case.quick if quick else {})}
    return load_scenario(scenario_file(case.scenario), overrides=overrides)


# ---------------------------------------------------------------------------------------------
# Per-run values, from a run summary (kmc.analysis.summary)
# ---------------------------------------------------------------------------------------------

Values = Callable[[xr.Dataset], np.ndarray]


def _var(s: xr.Dataset, name: str) -> np.ndarray:
    if name not in s:
        return np.full(s.sizes.get("run", 0), np.nan)
    return np.asarray(s[name].values, dtype=float)


def shorted(s: xr.Dataset) -> np.ndarray:
    """1 for a run that shorted, 0 for one that did not."""
    return (_var(s, "shorted") == 1).astype(float)


def not_shorted(s: xr.Dataset) -> np.ndarray:
    return 1.0 - shorted(s)


def short_charge(s: xr.Dataset) -> np.ndarray:
    """Charge passed at the short (mAh/cm²); +inf for a run that did not short (censored)."""
    return np.where(shorted(s) == 1, _var(s, "short_charge"), np.inf)


def ccd(s: xr.Dataset) -> np.ndarray:
    """The ccd level at which the run failed (mA/cm²): the one that shorted, or — under
    ``model.refill = "critical_current"`` — the one whose strip voids out (``ccd_failure`` 2); +inf
    for a run that went through every level."""
    values = _var(s, "ccd")
    return np.where(np.isfinite(values), values, np.inf)


def final(name: str) -> Values:
    """The run's last sample of a per-sample variable (``final_<name>`` of the summary)."""
    def values(s: xr.Dataset) -> np.ndarray:
        return _var(s, f"final_{name}")
    values.__name__ = f"final_{name}"
    return values


def na_height_per_charge(s: xr.Dataset) -> np.ndarray:
    """Na thickness per charge passed (µm per mAh/cm²) at the end of a plating run: the mean height of
    the Na top above the electrolyte surface over the columns with Na, from the final snapshot
    (``final_na_height``), not a count of Na voxels — a count is fixed by the charge bookkeeping and
    cannot see voids or porous Na; the height can. NaN for a run without a snapshot of its final state."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return _var(s, "final_na_height") / _var(s, "final_charge")


def left_behind_percent(s: xr.Dataset) -> np.ndarray:
    """Na left behind at the run's end, in % of the charge plated: stranded under the re-landed collector,
    dead (cut off from the collector), and unloaded (touching the electrolyte only at faces of contact
    quality 0, which under ``model.contact_quality = "face_state"`` cannot strip until pressed: left as
    surely as stranded Na; always 0 under the floor law, whose every face has χ > 0). From
    ``final_stranded_na``, ``final_dead_na``, ``final_unloaded_na`` and ``final_plated``, inventories
    recounted from the lattice (mAh/cm²); a store written before ``unloaded_na`` existed counts none."""
    unloaded = _var(s, "final_unloaded_na") if "final_unloaded_na" in s else 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return 100.0 * (_var(s, "final_stranded_na") + _var(s, "final_dead_na") + unloaded) / _var(s, "final_plated")


def ce_percent(cycle: int) -> Values:
    """Coulombic efficiency of cycle ``cycle`` (0-based), in %; NaN for a run that never closed it."""
    def values(s: xr.Dataset) -> np.ndarray:
        if "coulombic_efficiency" not in s or s.sizes.get("cycle", 0) <= cycle:
            return np.full(s.sizes.get("run", 0), np.nan)
        return 100.0 * np.asarray(s["coulombic_efficiency"].isel(cycle=cycle).values, dtype=float)
    values.__name__ = f"ce_percent_{cycle}"
    return values


# ---------------------------------------------------------------------------------------------
# Rows and their quantities
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Metric:
    """One judged quantity of a row.

    ``values`` gives a value per finished run of ``cases[0]``; with two cases the quantity is the
    difference ``cases[1] − cases[0]`` over every pair of their runs (replicas are independent, not
    paired). ``share``: the quantity is the share of runs whose value is 1 (shown in %), else their
    median. Accepted: ``low`` ≤ statistic ≤ ``high`` (either may be None), ``accepted`` its wording.
    """

    quantity: str
    cases: tuple[str, ...]
    values: Values
    paper: str
    accepted: str
    low: float | None = None
    high: float | None = None
    share: bool = False
    digits: int = 2
    censored: str = "no short"   # how +inf (a run that did not short) is shown
    #: A protocol cut-off every run that gets there stops at (T4's final voltage): its scatter is the last
    #: batch's overshoot past it, not a physical spread, so ``kmc converge`` judges whether the median
    #: reaches the accepted range in each variant as in the base, not a move against the IQR.
    cutoff: bool = False

    def accepts(self, statistic: float) -> bool:
        """Whether the statistic is within the accepted range, its bounds widened by the rounding of
        floating-point sums (1e-9 of the bound: a CE of every voxel stripped back comes out as
        100.00000000000017 %)."""
        if statistic is None or math.isnan(statistic):
            return False
        low_ok = self.low is None or statistic >= self.low - 1e-9 * abs(self.low)
        return low_ok and (self.high is None or statistic <= self.high + 1e-9 * abs(self.high))


@dataclass(frozen=True)
class Row:
    """A VALIDATION.md row: id, role (``calibrates …`` or ``predicts``), condition, quantities."""

    id: str
    role: str
    condition: str
    metrics: tuple[Metric, ...]


ROWS: tuple[Row, ...] = (
    Row("T1", "predicts", "bare Al foil on NASICON, plate 0.05 mA/cm² to 0.5 mAh/cm², 5.6 MPa", (
        Metric("replicas shorted", ("T1",), shorted, "short", "≥ 75 %", low=0.75, share=True),
        Metric("short charge [mAh/cm²]", ("T1",), short_charge, "≈ 0.05", "0.01–0.25", 0.01, 0.25, digits=3),
    )),
    Row("T2", "predicts", "Au (96 nm) on Al foil, NASICON, plate 0.5 mA/cm² to 2.0 mAh/cm², 5.6 MPa", (
        Metric("replicas not shorted", ("T2",), not_shorted, "no short", "≥ 90 %", low=0.9, share=True),
        Metric("final contact fraction", ("T2",), final("contact_fraction"), "dense, uniform Na", "≥ 0.8", low=0.8),
        Metric("thickness (Na height) [µm per mAh/cm²]", ("T2",), na_height_per_charge, "≈ 8.8",
               f"{UM_PER_MAH_CM2} ± 15 %", 0.85 * UM_PER_MAH_CM2, 1.15 * UM_PER_MAH_CM2),
    )),
    Row("T3", "calibrates j0 (Na/NASICON)", "after T2's plating, 0.02 mA/cm² probe", (
        Metric("interfacial resistance [Ω·cm²]", ("T3",), final("interfacial_resistance"), "≈ 7", "3.5–14",
               3.5, 14.0),
    )),
    Row("T4", "calibrates the NASICON interphase k_sei", "Au–Al, plate 2.0 mAh/cm², strip to 1.5 V, 0.5 mA/cm²", (
        Metric("first-cycle CE [%]", ("T4",), ce_percent(0), "86.5, 88.0", "80–95", 80.0, 95.0, digits=1),
        Metric("final voltage [V]", ("T4",), final("voltage"), "rises to the cut-off", "≥ 1.5 (cut-off)", low=1.5,
               digits=3, cutoff=True),
        Metric("Na left at cut-off [% of plated]", ("T4",), left_behind_percent, "negligible", "≤ 3", high=3.0),
    )),
    Row("T5", "calibrates NASICON flaws", "Na foil electrode, ccd from 0.1 in 0.1 mA/cm² steps, 0.5 mAh/cm²", (
        Metric("CCD [mA/cm²]", ("T5",), ccd, "1.9", "0.95–3.8", 0.95, 3.8, digits=2),
    )),
    Row("T6", "predicts", "Au–Al, 10 cycles of 2.0 mAh/cm² at 0.2 mA/cm², strip to 1.5 V", (
        Metric("CE at cycle 10 [%]", ("T6",), ce_percent(9), "94", "88–99", 88.0, 99.0, digits=1),
    )),
    Row("D1", "predicts", "Al foil vs Al pellet on NBH, 1 mAh/cm² at 1 mA/cm², strip to 1.0 V, 10 MPa", (
        Metric("foil CE [%]", ("D1_foil",), ce_percent(0), "64", "50–78", 50.0, 78.0, digits=1),
        Metric("pellet CE [%]", ("D1_pellet",), ce_percent(0), "93", "85–100", 85.0, 100.0, digits=1),
        Metric("pellet − foil CE [points]", ("D1_foil", "D1_pellet"), ce_percent(0), "29", "≥ 15", low=15.0,
               digits=1),
    )),
    Row("D2", "calibrates NBH flaws", "Al foil on NBH, ccd from 0.2 in 0.2 mA/cm² steps, 4 mAh/cm²", (
        Metric("CCD [mA/cm²]", ("D2",), ccd, "1.2", "0.6–2.4", 0.6, 2.4, digits=2),
    )),
    Row("D3", "calibrates Na₃PS₄ SEI rate", "Al foil on Na₃PS₄, otherwise as D1", (
        Metric("first-cycle CE [%]", ("D3",), ce_percent(0), "4", "≤ 15", high=15.0, digits=1),
    )),
    Row("D4", "predicts", "Al pellet on NBH, plate 1 mAh/cm² at 1 mA/cm², 10 MPa", (
        Metric("final contact fraction", ("D4",), final("contact_fraction"), "Na over the whole CC", "≥ 0.9",
               low=0.9),
        Metric("final thickness CV", ("D4",), final("thickness_cv"), "uniform", "≤ 0.2", high=0.2, digits=3),
    )),
)
ROW_IDS = tuple(r.id for r in ROWS)


def cases_of(rows: Sequence[str]) -> list[Case]:
    """The cases the rows run, longest first."""
    unknown = [r for r in rows if r not in ROW_IDS]
    if unknown:
        raise KmcError(f"--rows = {','.join(unknown)} is not allowed: expected row ids among {','.join(ROW_IDS)}")
    return sorted((c for c in CASES.values() if c.row in rows), key=lambda c: -c.cost_s)


# ---------------------------------------------------------------------------------------------
# Directions (--quick)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Direction:
    """A direction VALIDATION.md asks of the quick validate: ``check(summaries)`` gives (holds, detail)."""

    name: str
    cases: tuple[str, ...]
    check: Callable[[Mapping[str, xr.Dataset]], tuple[bool, str]]


def _share_text(v: np.ndarray) -> str:
    return f"{int(v.sum())}/{v.size}"


def _median(v: np.ndarray) -> float:
    v = v[~np.isnan(v)]
    return float(np.median(v)) if v.size else math.nan


def _ce_text(ce: float, s: Mapping[str, xr.Dataset], case: str) -> str:
    if not math.isnan(ce):
        return f"{ce:.1f} %"
    return f"none (no run closed its first cycle; {_share_text(shorted(s[case]))} shorted)"


def _pellet_above_foil(s: Mapping[str, xr.Dataset]) -> tuple[bool, str]:
    foil, pellet = _median(ce_percent(0)(s["D1_foil"])), _median(ce_percent(0)(s["D1_pellet"]))
    return bool(pellet > foil), (f"median CE: pellet {_ce_text(pellet, s, 'D1_pellet')}, "
                                 f"foil {_ce_text(foil, s, 'D1_foil')}")


def _au_does_not_short_where_al_does(s: Mapping[str, xr.Dataset]) -> tuple[bool, str]:
    al, au = shorted(s["T1"]), shorted(s["T2"])
    holds = al.size > 0 and au.size > 0 and au.mean() < al.mean()
    return bool(holds), f"shorted: bare Al (T1) {_share_text(al)}, Au–Al (T2) {_share_text(au)}"


def _sulfide_below_half_the_borohydride(s: Mapping[str, xr.Dataset]) -> tuple[bool, str]:
    foil, sulfide = _median(ce_percent(0)(s["D1_foil"])), _median(ce_percent(0)(s["D3"]))
    return bool(sulfide < 0.5 * foil), (f"median CE: Na₃PS₄ (D3) {_ce_text(sulfide, s, 'D3')}, "
                                        f"NBH foil (D1_foil) {_ce_text(foil, s, 'D1_foil')}")


DIRECTIONS: tuple[Direction, ...] = (
    Direction("the pellet's CE above the foil's (D1_pellet vs D1_foil)", ("D1_foil", "D1_pellet"),
              _pellet_above_foil),
    Direction("Au–Al does not short where bare Al does (T2 vs T1)", ("T1", "T2"), _au_does_not_short_where_al_does),
    Direction("the sulfide's CE below half the borohydride foil's (D3 vs D1_foil)", ("D1_foil", "D3"),
              _sulfide_below_half_the_borohydride),
)



# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------

@dataclass
class Result:
    """One line of the table."""

    row: Row
    metric: Metric
    statistic: float          # median, or share of runs (0–1)
    low: float                # spread: min over runs (pairs)
    high: float               # spread: max
    n: str                    # runs (or pairs) with a value
    lattice: str
    within: bool | None       # None: no value

    def cells(self) -> dict[str, str]:
        m = self.metric

        def fmt(x):
            if math.isnan(x):
                return "—"
            if math.isinf(x):
                return m.censored if x > 0 else "−inf"
            return f"{x:.{m.digits}f}"

        if m.share:
            model, spread = ("—" if math.isnan(self.statistic) else f"{100 * self.statistic:.0f} %"), "—"
        else:
            model = fmt(self.statistic)
            spread = "—" if math.isnan(self.low) else f"{fmt(self.low)} – {fmt(self.high)}"
        condition = f"{self.row.condition} ({self.lattice})" if self.lattice else self.row.condition
        return {"id": self.row.id, "role": self.row.role, "condition": condition,
                "quantity": m.quantity, "paper": m.paper, "accepted": m.accepted, "model": model,
                "spread (min–max)": spread, "n": self.n,
                "within range": "—" if self.within is None else ("yes" if self.within else "no")}


COLUMNS = ("id", "role", "condition", "quantity", "paper", "accepted", "model", "spread (min–max)", "n",
           "within range")


def metric_values(metric: Metric, s: Mapping[str, xr.Dataset]) -> tuple[np.ndarray, str]:
    """The metric's values over runs (or run pairs) with a value, and how many there are, as text."""
    first = metric.values(s[metric.cases[0]])
    missing = np.isnan(first)
    first = first[~missing]
    if len(metric.cases) == 1:
        if not missing.any():
            return first, f"{first.size}"
        n_shorted = int(shorted(s[metric.cases[0]])[missing].sum())
        return first, f"{first.size}/{missing.size}" + (f" ({n_shorted} shorted)" if n_shorted else "")
    second = metric.values(s[metric.cases[1]])
    second = second[~np.isnan(second)]
    return (second[:, None] - first[None, :]).ravel(), f"{second.size}×{first.size} pairs"


def evaluate(rows: Sequence[Row], s: Mapping[str, xr.Dataset]) -> list[Result]:
    """A Result per quantity of ``rows`` from the cases' summaries ``s`` (``summaries``)."""
    results = []
    for row in rows:
        for m in row.metrics:
            values, n = metric_values(m, s)
            if values.size == 0:
                stat = lo = hi = math.nan
            else:
                stat = float(values.mean()) if m.share else float(np.median(values))
                lo, hi = float(values.min()), float(values.max())
            results.append(Result(row, m, stat, lo, hi, n, s[m.cases[0]].attrs.get("lattice", ""),
                                  None if values.size == 0 else m.accepts(stat)))
    return results


@dataclass
class DirectionResult:
    direction: Direction
    holds: bool | None        # None: its rows were not run
    detail: str


def check_directions(s: Mapping[str, xr.Dataset]) -> list[DirectionResult]:
    """Every direction whose cases were run; a case without finished runs makes it fail."""
    out = []
    for d in DIRECTIONS:
        if not all(c in s for c in d.cases):
            out.append(DirectionResult(d, None, "not run (rows not selected)"))
            continue
        empty = [c for c in d.cases if s[c].sizes.get("run", 0) == 0]
        if empty:
            out.append(DirectionResult(d, False, f"no finished runs of {', '.join(empty)}"))
            continue
        holds, detail = d.check(s)
        out.append(DirectionResult(d, holds, detail))
    return out
