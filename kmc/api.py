"""The Python API (SCHEMA.md): load_scenario, simulate, run, sweep, open.

A store is created once from a plan — the base scenario, the runs (seed, replica, swept values) and
the model's layout — and every run is then executed by ``kmc.runner.execute_run`` wherever it runs.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
from dataclasses import dataclass, field

import numpy as np

from kmc import memory
from kmc import store as st
from kmc.config import MAX_RUNS, Scenario, load_scenario, seed_for_replica
from kmc.errors import KmcError
from kmc.executors import run_dask, run_serial
from kmc.runner import DONE, model_for

__all__ = ["load_scenario", "simulate", "run", "sweep", "open", "Plan"]


@dataclass
class Plan:
    """Everything needed to create a store: the base scenario and one entry per run."""

    base: Scenario
    seeds: list[int]
    replicas: list[int]
    points: list[dict] = field(default_factory=list)  # swept values per run (empty for kmc run)
    swept_keys: tuple[str, ...] = ()
    sweep_definition: dict | None = None
    runs_per_task: int = 0
    command: str = "kmc"
    # Computed once from the points (layout, State spec, memory estimate), not arguments.
    _layout: st.Layout | None = field(default=None, init=False, repr=False, compare=False)
    _spec: dict | None = field(default=None, init=False, repr=False, compare=False)
    _memory: memory.Estimate | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def n_runs(self) -> int:
        return len(self.seeds)

    def scenario(self, run: int) -> Scenario:
        return self.base.with_overrides(self.points[run]) if self.swept_keys else self.base

    def _survey(self) -> None:
        """Build each distinct point's model (the protocol and the materials, no lattice: about a
        millisecond) for the store's layout, the checkpoint slots and the peak memory of its runs."""
        points = list({json.dumps(p, sort_keys=True, default=str): p for p in self.points}.values()) \
            if self.swept_keys else [{}]
        models = [model_for(self.base.with_overrides(point) if point else self.base) for point in points]
        self._layout = st.merge_layouts([m.layout() for m in models])
        self._spec = _largest_spec(m.state_spec() for m in models)
        self._memory = max((memory.estimate(m) for m in models), key=lambda e: e.peak_bytes)

    def layout(self) -> st.Layout:
        """The store's layout: sample, frame, snap and cycle as long as the longest run's (SCHEMA.md)."""
        if self._layout is None:
            self._survey()
        return self._layout

    def state_spec(self) -> dict:
        """Every State array at its largest over the runs, name -> (shape, dtype): the checkpoint slots,
        from the sizes alone (creating a store allocates nothing the size of the lattice)."""
        if self._spec is None:
            self._survey()
        return self._spec

    def memory(self) -> memory.Estimate:
        """The estimated peak memory of the run that needs most (``kmc.memory``)."""
        if self._memory is None:
            self._survey()
        return self._memory

    def estimated_bytes(self) -> int:
        return st.estimate_bytes(self.layout(), self.n_runs, self.state_spec())

    def attrs(self) -> dict:
        from kmc import __version__

        now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "title": f"kmc trajectories: {self.base.name}",
            "source": f"kmc-anodefree {__version__}",
            "history": f"{now} created by: {self.command}",
            "Conventions": "CF-1.10",
            "schema_version": st.SCHEMA_VERSION,
            "model": self.base.kind,
            "scenario": json.dumps(self.base.to_dict()),
            "materials": json.dumps(self.base.materials),
            "sweep": json.dumps(self.sweep_definition) if self.sweep_definition else "",
            "swept_keys": json.dumps(list(self.swept_keys)),
            "runs_per_task": int(self.runs_per_task),
        }

    def run_coords(self) -> dict:
        coords = {"seed": np.array(self.seeds, dtype=np.int64),
                  "replica": np.array(self.replicas, dtype=np.int64)}
        for key in self.swept_keys:
            coords[key] = np.array([p[key] for p in self.points])
        return coords

    def create(self, location, overwrite: bool = False) -> None:
        # Validate every run's scenario before anything is written.
        for r in range(self.n_runs):
            self.scenario(r)
        st.create(location, self.layout(), self.run_coords(), self.attrs(), self.state_spec(),
                  overwrite=overwrite)


def _largest_spec(specs) -> dict:
    """One spec holding every array of ``specs`` at its largest (runs of a sweep differ in their cycles)."""
    out = {}
    for spec in specs:
        for name, (shape, dtype) in spec.items():
            if name not in out or math.prod(shape) > math.prod(out[name][0]):
                out[name] = (shape, dtype)
    return out


def plan_replicas(scenario: Scenario, replicas: int = 1, seed: int | None = None, command: str = "kmc") -> Plan:
    if not isinstance(replicas, int) or isinstance(replicas, bool) or not 1 <= replicas <= MAX_RUNS:
        raise KmcError(f"replicas = {replicas!r} is not allowed: expected an integer from 1 to {MAX_RUNS} "
                       f"(the runs of one store)")
    base_seed = scenario.seed if seed is None else int(seed)
    if not 0 <= base_seed < 2**63:
        raise KmcError(f"seed = {base_seed!r} is not allowed: expected an integer from 0 to 2**63-1")
    return Plan(scenario, [seed_for_replica(base_seed, r) for r in range(replicas)], list(range(replicas)),
                command=command)


def plan_sweep(sweep_def, runs_per_task: int = 0, command: str = "kmc") -> Plan:
    from kmc.sweep import load_sweep

    sw = load_sweep(sweep_def)
    return Plan(sw.base, [r.seed for r in sw.runs], [r.replica for r in sw.runs], [dict(r.point) for r in sw.runs],
                tuple(sw.varied_keys), sw.to_dict(), runs_per_task, command)


def _python(value):
    return value.item() if hasattr(value, "item") else value


def _as_scenario(scenario) -> Scenario:
    return scenario if isinstance(scenario, Scenario) else load_scenario(scenario)


def simulate(scenario, seed: int | None = None, max_memory=None):
    """Run one scenario in memory and return its xarray.Dataset (the store's variables, run = 1).

    Refused (KmcError) before anything is allocated if its estimated peak memory — the run, its store
    in memory and the Dataset — exceeds ``max_memory`` (bytes, or a size such as ``"8G"``), by default
    the memory available on this machine (``kmc.memory``)."""
    import xarray as xr
    import zarr

    plan = plan_replicas(_as_scenario(scenario), 1, seed)
    layout = plan.layout()
    in_memory = (plan.estimated_bytes(), st.estimate_bytes(layout, 1, {}))
    memory.check(memory.estimate(model_for(plan.base), in_memory_store=in_memory), max_memory)
    store = zarr.storage.MemoryStore()
    plan.create(store)
    outcome = run_serial(store, [0], progress=False)[0]
    ds = xr.open_zarr(store).load()
    if outcome != DONE:
        raise KmcError(f"the run failed: {ds['error'].values[0]}")
    return ds


def run(scenario, store, replicas: int = 1, seed: int | None = None, overwrite: bool = False, max_memory=None):
    """Run a scenario's replicas one by one into a new store; returns the opened store.

    Refused (KmcError), with nothing written, if a run's estimated peak memory exceeds ``max_memory``
    (bytes, or a size such as ``"8G"``), by default the memory available on this machine."""
    plan = plan_replicas(_as_scenario(scenario), replicas, seed)
    memory.check(plan.memory(), max_memory)
    plan.create(store, overwrite=overwrite)
    run_serial(store, range(plan.n_runs))
    return open(store)


def sweep(sweep_def, store, client=None, workers: int | None = None, overwrite: bool = False, max_memory=None):
    """Run a sweep on Dask (``client``, or a LocalCluster of ``workers``); returns the opened store.

    ``sweep_def``: a sweep TOML file or a mapping with its content (``kmc.load_sweep``); in a mapping,
    ``base`` may be a ``kmc.Scenario`` as well as a file path or ``scenario.to_dict()``. The store's
    ``sample``, ``frame``, ``snap`` and ``cycle`` are as long as the longest point's protocol; a shorter
    run reads as fill past its end (``samples_written`` says how far each run got).

    Refused (KmcError), with nothing written, if the largest point's estimated peak memory exceeds
    ``max_memory`` (bytes or a size such as ``"8G"``, per run); without it, on a LocalCluster, if the
    runs held at once by its workers exceed the memory available on this machine (a ``client``'s
    workers are not checked: their memory is not this machine's).
    """
    plan = plan_sweep(sweep_def)
    check_memory(plan.memory(), max_memory, local_workers(workers, plan.n_runs) if client is None else None)
    plan.create(store, overwrite=overwrite)
    run_dask(store, list(range(plan.n_runs)), client=client, workers=workers)
    return open(store)


def local_workers(workers: int | None, n_runs: int) -> int:
    """Runs a LocalCluster of ``workers`` (default: the CPU count) holds at once."""
    return max(1, min(workers or os.cpu_count() or 1, n_runs))


def check_memory(estimate: memory.Estimate, max_memory=None, workers: int | None = 1) -> None:
    """Refuse a run that would not fit (``kmc.memory.check``): against ``max_memory`` when given, else
    against this machine's available memory shared by ``workers`` runs at once; ``workers`` None: the runs
    go elsewhere (a Dask scheduler), so only ``max_memory`` is checked."""
    if workers is None and max_memory is None:
        return
    memory.check(estimate, max_memory, workers or 1)


def store_plan(location) -> Plan:
    """The plan a store was created from (its scenario and its runs' points, from the store's attrs and
    run coordinates): what its runs need, e.g. ``store_plan(OUT).memory()`` before resuming them."""
    group = st.open_group(location, mode="r")
    attrs = group.attrs
    base = Scenario.from_dict(json.loads(attrs["scenario"]))
    keys = tuple(json.loads(attrs.get("swept_keys", "[]")))
    columns = {key: np.asarray(group[key][:]) for key in keys}
    seeds = [int(s) for s in np.asarray(group["seed"][:])]
    points = [{key: _python(columns[key][r]) for key in keys} for r in range(len(seeds))] if keys else []
    return Plan(base, seeds, [int(r) for r in np.asarray(group["replica"][:])], points, keys)


def open(store):  # noqa: A001 - the public name SCHEMA.md gives
    """Open a store as an xarray.Dataset (lazily, with dask)."""
    import xarray as xr

    if isinstance(store, (str, os.PathLike)):
        st.open_group(store, mode="r")  # a clear error for a path that is not a store
    return xr.open_zarr(store)
