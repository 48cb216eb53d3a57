"""Kaplan–Meier survival of runs against shorting, per sweep point.

A run that shorted contributes an event at its ``short_charge`` (or ``short_time``); a run that did
not short is right-censored at the last value it reached of the same clock (its final ``charge``, or
``time``): it is known to have survived that far, no further. The estimate and its Greenwood
interval (log-log transformed, so it stays within [0, 1]) are ``scipy.stats.ecdf`` on
``scipy.stats.CensoredData``.
"""
from __future__ import annotations

import warnings

import numpy as np
import xarray as xr
from scipy import stats as sps

from kmc.analysis.runs import done_mask, last_valid, points
from kmc.errors import KmcError

#: The per-sample clock that a shorting variable is measured on (where non-shorted runs are censored).
CENSOR_CLOCK = {"short_charge": "charge", "short_time": "time"}


def _event_and_time(ds: xr.Dataset, var: str, censor: str) -> tuple[np.ndarray, np.ndarray]:
    value = np.asarray(ds[var].values, dtype=np.float64)
    if "shorted" in ds:
        event = np.asarray(ds["shorted"].values).astype(bool)
    else:  # no flag: a run shorted if it has a short value
        event = np.isfinite(value)
    reached = np.asarray(last_valid(ds[censor], "sample").values, dtype=np.float64)
    return event, np.where(event, value, reached)


def survival(ds: xr.Dataset, var: str = "short_charge", censor: str | None = None, confidence: float = 0.95,
             only_done: bool = True) -> xr.Dataset:
    """Kaplan–Meier curve of ``var`` (``short_charge`` or ``short_time``) for each sweep point.

    ``censor``: the per-sample variable whose final value censors runs that did not short (default
    ``charge`` for short_charge, ``time`` for short_time). Returns a Dataset along ``point`` and a
    dimension named ``var``, whose coordinate holds 0 and every distinct event and censoring value
    of all points (in ``var``'s units):

    - ``survival``: probability of not having shorted by that value (a right-continuous step: plot
      with ``drawstyle="steps-post"``); 1 everywhere when no run shorted;
    - ``survival_low`` / ``survival_high``: its Greenwood interval at ``confidence`` (log-log), NaN
      where undefined (before the first short, after the last run);
    - ``at_risk``: runs not yet shorted nor censored just before the value; ``events``: shorts at it;
    - ``n`` and ``n_shorted`` per point.

    Only finished runs unless ``only_done`` is false; runs with no value of their clock are left out.
    """
    if var not in ds:
        raise KmcError(f"survival: the store has no {var!r} variable (this model or version does not "
                       f"record shorts): expected one of {sorted(CENSOR_CLOCK)}")
    censor = censor or CENSOR_CLOCK.get(var)
    if censor not in ds or "sample" not in ds[censor].dims:
        raise KmcError(f"survival: censor = {censor!r} is not allowed: expected a per-sample variable "
                       f"of the store (e.g. {CENSOR_CLOCK.get(var, 'charge')!r})")
    if not 0.0 < confidence < 1.0:
        raise KmcError(f"confidence = {confidence!r} is not allowed: expected a number between 0 and 1")
    event, value = _event_and_time(ds, var, censor)
    run_point, point_coords = points(ds)
    use = np.isfinite(value) & (done_mask(ds) if only_done else True)
    n_points = int(run_point.max()) + 1 if run_point.size else 0
    grid = np.unique(np.concatenate([[0.0], value[use]]))

    shape = (n_points, grid.size)
    surv, low, high = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    at_risk, events = np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.int64)
    n, n_event = np.zeros(n_points, dtype=np.int64), np.zeros(n_points, dtype=np.int64)
    for p in range(n_points):
        mine = use & (run_point == p)
        t, e = value[mine], event[mine]
        n[p], n_event[p] = t.size, e.sum()
        at_risk[p] = (t[None, :] >= grid[:, None]).sum(axis=1)
        events[p] = (e[None, :] & (t[None, :] == grid[:, None])).sum(axis=1)
        if t.size == 0:
            continue
        sf = sps.ecdf(sps.CensoredData(uncensored=t[e], right=t[~e])).sf
        surv[p] = sf.evaluate(grid)
        with warnings.catch_warnings():
            # Greenwood's log-log interval is undefined where the estimate is 0 or 1: NaN there.
            warnings.simplefilter("ignore", RuntimeWarning)
            ci = sf.confidence_interval(confidence, method="log-log")
            low[p], high[p] = ci.low.evaluate(grid), ci.high.evaluate(grid)

    units = ds[var].attrs.get("units", ds[censor].attrs.get("units", "1"))
    dims = ("point", var)
    level = f"{confidence:.0%} Greenwood (log-log) interval"
    return xr.Dataset(
        {
            "survival": (dims, surv, {"units": "1", "long_name": f"Kaplan-Meier probability of no short by {var}"}),
            "survival_low": (dims, low, {"units": "1", "long_name": f"lower bound of the {level} of survival"}),
            "survival_high": (dims, high, {"units": "1", "long_name": f"upper bound of the {level} of survival"}),
            "at_risk": (dims, at_risk, {"units": "1", "long_name": f"runs neither shorted nor censored before {var}"}),
            "events": (dims, events, {"units": "1", "long_name": f"runs shorting at {var}"}),
            "n": ("point", n, {"units": "1", "long_name": "runs in the estimate"}),
            "n_shorted": ("point", n_event, {"units": "1", "long_name": "runs that shorted"}),
        },
        coords={var: (var, grid, {"units": units, "long_name": f"{ds[var].attrs.get('long_name', var)}; "
                                  f"runs without a short censored at their final {censor}"}),
                **dict(point_coords)},
        attrs={"variable": var, "censor": censor, "confidence": confidence, "only_done": int(only_done),
               "method": "Kaplan-Meier (scipy.stats.ecdf on CensoredData)"},
    )
