"""Sweep files: a base scenario, the keys to vary, replicas and seeds (SCHEMA.md, "A sweep file").

``load_sweep`` expands a sweep into its runs and checks every point's scenario at load time, so a bad
value in a ``[vary]`` list is reported with its key before anything runs.

Order of the runs (``Sweep.runs``, the store's ``run`` dimension): points in product order (the
varied keys in file order, the last key fastest, like ``itertools.product``) or in list order for
``mode = "zip"``; the replicas of a point are consecutive (innermost). Run ``index`` is
``point_index * replicas + replica``.

Seeds: each run's seed is hashed from (the sweep seed, the point's parameters as canonical JSON,
the replica index) into [0, 2**63). It does not depend on the point's position, so adding values or
points never reseeds existing runs, and ``kmc run --seed <seed>`` with the point's parameters
reproduces a run alone.
"""
from __future__ import annotations

import copy
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from kmc.config import (
    MAX_RUNS,
    MISSING,
    SEED_LIMIT,
    Key,
    Scenario,
    _brief,
    _check_table,
    _reject_unknown,
    derive_seed,
    load_scenario,
    read_toml,
)
from kmc.errors import ScenarioError

__all__ = ["RunSpec", "Sweep", "load_sweep", "SWEEP_KEYS", "UNSWEEPABLE"]

#: The sweep file's settings besides ``base`` (a path; from Python also a Scenario or a scenario
#: mapping) and ``[vary]``.
SWEEP_KEYS: dict[str, Key] = {
    "mode": Key("str", "product: every combination of the lists; zip: the lists side by side",
                "product", choices=("product", "zip")),
    "replicas": Key("int", "runs per point, each with its own seed", 1, ge=1, le=MAX_RUNS),
    "seed": Key("int", "the sweep seed every run's seed is derived from", 0, ge=0, lt=SEED_LIMIT),
}

#: Keys (and key prefixes) a sweep may not vary, with the reason. Runs of one store share the
#: lattice's x, y, z coordinates, so nothing that changes the lattice's shape can vary.
UNSWEEPABLE: dict[str, str] = {
    "lattice": "a key that does not change array shapes (lattice.* sets the lattice of the whole store: "
               "run one sweep per lattice)",
    "hop.size": "a key that does not change array shapes (hop.size sets the lattice of the whole store: "
                "run one sweep per size)",
    "model": "a key other than model.* (model.kind decides the store's variables: one sweep per model)",
    "scenario.seed": "a key other than scenario.seed (run seeds derive from the sweep's seed and replicas)",
}


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep.

    index : position along the store's ``run`` dimension.
    point : the varied keys' values of this run, resolved (dotted key → value).
    replica : replica index within the point, 0 … replicas − 1.
    seed : the run's seed; ``scenario.seed`` equals it.
    scenario : the checked scenario of the run.
    """

    index: int
    point: dict[str, Any]
    replica: int
    seed: int
    scenario: Scenario


@dataclass(frozen=True)
class Sweep:
    """A checked sweep: the base scenario, the varied keys and values, and every run."""

    base: Scenario
    mode: str
    replicas: int
    seed: int
    vary: dict[str, list]
    runs: list[RunSpec]
    source_path: Path | None = None

    @property
    def varied_keys(self) -> tuple[str, ...]:
        """The varied dotted keys, in file order."""
        return tuple(self.vary)

    @property
    def n_points(self) -> int:
        return len(self.runs) // self.replicas

    def to_dict(self) -> dict:
        """A JSON-serialisable dict for the store's attrs; ``load_sweep`` of it gives the same runs
        without reading any file (the base scenario is stored resolved)."""
        return {"base": self.base.to_dict(), "mode": self.mode, "replicas": self.replicas,
                "seed": self.seed, "vary": copy.deepcopy(self.vary)}


def _refused(key: str) -> str | None:
    return next((why for prefix, why in UNSWEEPABLE.items()
                 if key == prefix or key.startswith(prefix + ".")), None)


def _flatten_vary(table, prefix: str = "") -> dict[str, list]:
    """``[vary]`` as dotted key → list; unquoted dotted keys (nested tables) are flattened."""
    if not isinstance(table, dict):
        raise ScenarioError(prefix or "vary", _brief(table), 'a table of dotted keys and lists, e.g. '
                                                             '"conditions.stack_pressure_mpa" = [2, 5]')
    out = {}
    for k, v in table.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.update(_flatten_vary(v, key))
        elif (not isinstance(v, list) or not v
              or not all(isinstance(x, (bool, int, float, str)) for x in v)):
            raise ScenarioError(key, _brief(v), "a non-empty list of values (numbers, strings or booleans)")
        else:
            out[key] = v
    return out


def _canonical(value) -> str:
    """Values that resolve alike compare alike (2 and 2.0 are the same stack pressure)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    return json.dumps(value, sort_keys=True)


def _points(vary: dict[str, list], mode: str) -> list[dict[str, Any]]:
    keys = list(vary)
    if mode == "zip" and keys:
        for key in keys[1:]:
            if len(vary[key]) != len(vary[keys[0]]):
                raise ScenarioError(key, _brief(vary[key]), f'a list of {len(vary[keys[0]])} values, as long '
                                                            f'as {keys[0]}\'s (mode = "zip")')
        rows = list(zip(*vary.values()))
        if len({tuple(map(_canonical, row)) for row in rows}) < len(rows):
            raise ScenarioError(", ".join(keys), _brief(rows), "distinct points (a repeated point would "
                                                               "repeat runs with the same seeds)")
    else:
        for key, values in vary.items():
            if len({_canonical(v) for v in values}) < len(values):
                raise ScenarioError(key, _brief(values), "distinct values (a repeated value would repeat "
                                                         "runs with the same seeds)")
        rows = list(itertools.product(*vary.values()))
    return [dict(zip(keys, row)) for row in rows]


def _check_run_count(vary: dict[str, list], mode: str, replicas: int) -> None:
    """Refuse a sweep of more than MAX_RUNS runs before its points are expanded (product mode
    multiplies the lists' lengths)."""
    lengths = [len(v) for v in vary.values()]
    n_points = (min(lengths) if mode == "zip" else math.prod(lengths)) if lengths else 1
    if n_points * replicas > MAX_RUNS:
        key, value = ("replicas", replicas) if n_points <= MAX_RUNS else ("vary", _brief(vary))
        raise ScenarioError(key, value, f"at most {MAX_RUNS} runs in one store: {n_points} points × {replicas} "
                                        f"replicas = {n_points * replicas} (split the sweep into several stores)")


def _load_base(base, base_dir: Path) -> Scenario:
    if isinstance(base, Scenario):
        return base
    if isinstance(base, Mapping):
        # A stored sweep (Sweep.to_dict) holds its base resolved; a notebook may pass the tables inline.
        return Scenario.from_dict(base) if "data" in base and "raw" in base else load_scenario(base)
    if not isinstance(base, str):
        raise ScenarioError("base", _brief(base), "a path to the base scenario file, relative to the sweep file "
                                                  "(or, from Python, a kmc.Scenario or a scenario mapping)")
    return load_scenario(base_dir / base)


def load_sweep(path_or_dict, base_dir=None) -> Sweep:
    """Read and check a sweep and every one of its runs.

    Parameters
    ----------
    path_or_dict : a sweep TOML file, or a mapping with its content (or a ``Sweep.to_dict()``). In a
        mapping, ``base`` may be a path to a scenario file, a ``kmc.Scenario`` (used as it is, e.g.
        ``kmc.load_scenario(...)`` in a notebook), ``scenario.to_dict()``, or scenario tables inline.
    base_dir : the folder a relative ``base`` path is taken from when a mapping is given (default:
        the working directory); for a file, the file's folder.
    """
    if isinstance(path_or_dict, Mapping):
        # A Scenario is immutable (and cannot be deep-copied): it is taken as it is.
        raw = {k: v if isinstance(v, Scenario) else copy.deepcopy(v) for k, v in path_or_dict.items()}
        source = None
        folder = Path(base_dir) if base_dir is not None else Path.cwd()
    else:
        source = Path(path_or_dict).absolute()
        raw, folder = read_toml(source, "sweep"), source.parent
    _reject_unknown(raw, "", ("base", *SWEEP_KEYS, "vary"), "a sweep file")
    if "base" not in raw:
        raise ScenarioError("base", MISSING, "a path to the base scenario file, relative to the sweep file")
    settings = _check_table({k: v for k, v in raw.items() if k in SWEEP_KEYS}, "", SWEEP_KEYS, "a sweep file")
    vary = _flatten_vary(raw.get("vary", {}))
    for key in vary:
        if _refused(key):
            raise ScenarioError(key, _brief(vary[key]), _refused(key))
    base = _load_base(raw["base"], folder)
    replicas, sweep_seed = settings["replicas"], settings["seed"]
    _check_run_count(vary, settings["mode"], replicas)
    runs = []
    for point in _points(vary, settings["mode"]):
        scenario = base.with_overrides(point)
        resolved = {key: scenario.get(key) for key in point}
        for replica in range(replicas):
            seed = derive_seed("kmc.sweep", sweep_seed, resolved, replica)
            runs.append(RunSpec(index=len(runs), point=dict(resolved), replica=replica, seed=seed,
                                scenario=scenario.with_overrides({"scenario.seed": seed})))
    return Sweep(base=base, mode=settings["mode"], replicas=replicas, seed=sweep_seed, vary=vary,
                 runs=runs, source_path=source)
