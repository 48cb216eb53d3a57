"""Which runs to analyse: finished runs, swept parameters, sweep points, selection by value.

A store's runs carry their swept parameters as coordinates along ``run`` (by dotted key, e.g.
``conditions.stack_pressure_mpa``), beside ``seed`` and ``replica``. A *point* is one combination of
swept values; its runs are the replicas. Runs that did not finish (``status`` other than 2: pending,
running, failed) are left out of statistics by default, since their trajectories stop early or
never started.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr

from kmc.errors import KmcError

#: ``status`` of a finished run (SCHEMA.md: 0 pending, 1 running, 2 done, 3 failed).
STATUS_DONE = 2
#: Coordinates along ``run`` that identify a run rather than a swept parameter.
RUN_IDENTITY = ("run", "seed", "replica")
#: Per-run clocks, in the order a variable's "last value" is looked for.
CLOCK_DIMS = ("sample", "cycle", "frame", "snap")


def parameters(ds: xr.Dataset) -> list[str]:
    """Names of the swept parameters: coordinates along ``run`` other than run, seed and replica."""
    return [name for name, c in ds.coords.items() if c.dims == ("run",) and name not in RUN_IDENTITY]


def done_mask(ds: xr.Dataset) -> np.ndarray:
    """Boolean per run: finished (``status == 2``). A dataset without ``status`` counts every run as done."""
    if "status" not in ds:
        return np.ones(ds.sizes["run"], dtype=bool)
    return np.asarray(ds["status"].values) == STATUS_DONE


def runs_to_use(ds: xr.Dataset, only_done: bool = True) -> xr.Dataset:
    """``ds`` restricted to finished runs (or all runs when ``only_done`` is false)."""
    return ds.isel(run=np.flatnonzero(done_mask(ds))) if only_done else ds


def _matches(values: np.ndarray, wanted, rtol: float, atol: float) -> np.ndarray:
    wanted = np.atleast_1d(np.asarray(wanted))
    mask = np.zeros(values.shape, dtype=bool)
    for w in wanted:
        if np.issubdtype(values.dtype, np.number) and np.issubdtype(np.asarray(w).dtype, np.number):
            # Swept values come from TOML (5 vs 5.0, 0.1+0.2 vs 0.3): compare numbers with a tolerance.
            mask |= np.isclose(values.astype(float), float(w), rtol=rtol, atol=atol)
        else:
            mask |= values == w
    return mask


def select(ds: xr.Dataset, values: Mapping | None = None, rtol: float = 1e-9, atol: float = 1e-12,
           **kw) -> xr.Dataset:
    """The runs whose run coordinates equal the given values (numbers within ``rtol``/``atol``).

    ``values`` maps coordinate names along ``run`` (swept keys, ``seed``, ``replica``) to a value or
    a list of accepted values; ``**kw`` adds more (``**{"conditions.stack_pressure_mpa": 5}``).
    A name that is not a run coordinate, or values no run has, raise ``KmcError``.
    """
    wanted = {**dict(values or {}), **kw}
    mask = np.ones(ds.sizes["run"], dtype=bool)
    for key, value in wanted.items():
        if key not in ds.coords or ds.coords[key].dims != ("run",):
            allowed = [k for k, c in ds.coords.items() if c.dims == ("run",) and k != "run"]
            raise KmcError(f"select: {key!r} is not a run coordinate: expected one of {allowed}")
        have = np.asarray(ds.coords[key].values)
        hit = _matches(have, value, rtol, atol)
        if not hit.any():
            raise KmcError(f"select: no run has {key} = {value!r}: its values are {sorted(set(have.tolist()))}")
        mask &= hit
    if not mask.any():
        raise KmcError(f"select: no run has all of {wanted}")
    return ds.isel(run=np.flatnonzero(mask))


def points(ds: xr.Dataset) -> tuple[np.ndarray, xr.Coordinates]:
    """Group runs by their swept values.

    Returns the point index of every run (sorted by parameter values) and the coordinates of the
    points: one coordinate along dimension ``point`` per swept parameter, with its attrs. Without
    swept parameters every run belongs to point 0.
    """
    import pandas as pd

    names = parameters(ds)
    if not names:
        return np.zeros(ds.sizes["run"], dtype=np.int64), xr.Coordinates({})
    table = pd.DataFrame({name: np.asarray(ds.coords[name].values) for name in names})
    index = table.groupby(names, sort=True, dropna=False).ngroup().to_numpy()
    first = [int(np.flatnonzero(index == p)[0]) for p in range(index.max() + 1)]
    coords = {name: ("point", table[name].to_numpy()[first], dict(ds.coords[name].attrs)) for name in names}
    return index.astype(np.int64), xr.Coordinates(coords)


def point_label(coords: xr.Coordinates, p: int) -> str:
    """``"conditions.stack_pressure_mpa=5, ..."`` for point ``p`` (empty without swept parameters)."""
    return ", ".join(f"{name}={coords[name].values[p]:g}" if np.issubdtype(coords[name].dtype, np.number)
                     else f"{name}={coords[name].values[p]}" for name in coords)


def clock_dim(da: xr.DataArray) -> str | None:
    """The per-run clock a variable runs along (sample, cycle, frame or snap), if any."""
    return next((d for d in CLOCK_DIMS if d in da.dims), None)


def last_valid(da: xr.DataArray, dim: str) -> xr.DataArray:
    """The last non-NaN value along ``dim`` (NaN where there is none): a run's final value.

    Floats past a run's end are NaN (SCHEMA.md), and so are values a run leaves undefined at some
    samples (e.g. a resistance at zero current), so "final" means the last value the run defined.
    """
    da = da.compute()
    valid = da.notnull()
    position = xr.DataArray(np.arange(da.sizes[dim]), dims=dim)
    last = xr.where(valid, position, -1).max(dim)
    return da.isel({dim: last.clip(min=0)}).where(last >= 0)
