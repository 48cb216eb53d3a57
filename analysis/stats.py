"""Replica statistics: median, mean, spread and a confidence interval of the median, per sweep point.

The interval of the median is the distribution-free order-statistic (binomial) interval: for ``n``
finite values sorted as x(0) ≤ … ≤ x(n−1) and α = 1 − confidence, it is [x(l), x(h)] with
l = B⁻¹(α/2) − 1 and h = B̄⁻¹(α/2), B ~ Binomial(n, ½) — the same interval as
``scipy.stats.quantile_test(x, p=0.5).confidence_interval(confidence)`` where that has both
bounds (here both are NaN when either is missing). Its coverage is at least
the confidence level whatever the distribution, and it needs no random resampling, so it is
reproducible. With few replicas it may not exist (for 95 %, n ≥ 6); its bounds are then NaN.
"""
from __future__ import annotations

import warnings

import numpy as np
import xarray as xr
from scipy import stats as sps

from kmc.analysis.runs import clock_dim, done_mask, last_valid, points
from kmc.errors import KmcError

CI_METHOD = "order-statistic (binomial) interval of the median, as scipy.stats.quantile_test"


def median_ci_indices(n, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """0-based indices (low, high) of the order statistics bounding the median's interval.

    ``n``: numbers of finite values (array). Where no interval reaches ``confidence``, low is −1 or
    high is ≥ n.
    """
    n = np.asarray(n, dtype=np.int64)
    tail = (1.0 - confidence) / 2.0
    low = np.where(n > 0, sps.binom.ppf(tail, n, 0.5), 0).astype(np.int64) - 1
    high = np.where(n > 0, sps.binom.isf(tail, n, 0.5), 0).astype(np.int64)
    return low, high


def _order_statistic(sorted_values: np.ndarray, index: np.ndarray, n: np.ndarray) -> np.ndarray:
    ok = (index >= 0) & (index < n)
    picked = np.take_along_axis(sorted_values, np.clip(index, 0, sorted_values.shape[0] - 1)[None], axis=0)[0]
    return np.where(ok, picked, np.nan)


def _reduce(values: np.ndarray, confidence: float) -> dict[str, np.ndarray]:
    """Statistics over axis 0 (the replicas) of ``values``, NaN ignored."""
    finite = np.isfinite(values)
    n = finite.sum(axis=0)
    if values.shape[0] == 0:  # a point none of whose runs finished
        nan = np.full(values.shape[1:], np.nan)
        return {"median": nan, "mean": nan, "std": nan, "n": n, "median_low": nan, "median_high": nan}
    with warnings.catch_warnings():
        # All-NaN slices (a sample no replica reached) give NaN, which is what is wanted.
        warnings.simplefilter("ignore", RuntimeWarning)
        median = np.nanmedian(values, axis=0)
        mean = np.nanmean(values, axis=0)
        std = np.where(n >= 2, np.nanstd(values, axis=0, ddof=1), np.nan)
    low_i, high_i = median_ci_indices(n, confidence)
    ordered = np.sort(np.where(finite, values, np.inf), axis=0)  # non-finite values last
    both = (low_i >= 0) & (high_i < n)  # an interval needs both bounds
    low = np.where(both, _order_statistic(ordered, low_i, n), np.nan)
    high = np.where(both, _order_statistic(ordered, high_i, n), np.nan)
    return {"median": median, "mean": mean, "std": std, "n": n, "median_low": low, "median_high": high}


def replica_stats(ds: xr.Dataset, da: xr.DataArray, confidence: float = 0.95, at: str = "sample",
                  only_done: bool = True) -> xr.Dataset:
    """Statistics of ``da`` over the replicas of each sweep point (see the module docstring).

    ``da`` has dimension ``run`` (aligned with ``ds``'s runs) and perhaps a clock (sample, cycle,
    frame, snap) and more. ``at="sample"``: statistics at every element (a mean voltage per sample);
    ``at="final"``: at each run's last non-NaN element along its clock first. Runs that did not
    finish are left out unless ``only_done`` is false.

    Returns a Dataset along ``point`` (one per combination of swept values, with those values as
    coordinates) and the remaining dimensions of ``da``: ``median``, ``mean``, ``std`` (sample
    standard deviation, ddof 1), ``n`` (finite values used) and ``median_low``/``median_high``, each
    named after the variable (``voltage_median``, …, so that the statistics of several variables
    merge into one Dataset, and no name hides a Dataset method such as ``.median``). For
    per-sample statistics the replicas' mean ``charge`` and ``time`` at each sample, when the dataset
    has them, are coordinates (to plot a mean curve against them).
    """
    if not 0.0 < confidence < 1.0:
        raise KmcError(f"confidence = {confidence!r} is not allowed: expected a number between 0 and 1")
    if at not in ("sample", "final"):
        raise KmcError(f"at = {at!r} is not allowed: expected 'sample' or 'final'")
    if "run" not in da.dims:
        raise KmcError(f"stats: {da.name!r} has no run dimension (dims {da.dims}): expected a per-run variable")
    units, long_name = da.attrs.get("units", "1"), da.attrs.get("long_name", str(da.name))
    clock = clock_dim(da)
    if at == "final" and clock is not None:
        da = last_valid(da, clock)
        long_name = f"final {long_name}"
    if "run" in da.coords and not np.array_equal(da["run"].values, ds["run"].values):
        da = da.reindex(run=ds["run"].values)  # e.g. a summary of the finished runs only: NaN elsewhere
    da = da.transpose("run", ...).compute()
    run_point, point_coords = points(ds)
    use = done_mask(ds) if only_done else np.ones(ds.sizes["run"], dtype=bool)
    n_points = int(run_point.max()) + 1 if run_point.size else 0
    rest_dims = da.dims[1:]
    values = np.asarray(da.values, dtype=np.float64)
    per_point = [_reduce(values[(run_point == p) & use], confidence) for p in range(n_points)]

    prefix = str(da.name) if da.name is not None else "value"
    what = f"{long_name} over replicas"
    attrs = {
        "median": {"units": units, "long_name": f"median of {what}"},
        "mean": {"units": units, "long_name": f"mean of {what}"},
        "std": {"units": units, "long_name": f"standard deviation (ddof 1) of {what}"},
        "n": {"units": "1", "long_name": f"number of replicas with a finite {long_name}"},
        "median_low": {"units": units, "long_name": f"lower bound of the {confidence:.0%} interval of the median, "
                                                    f"{CI_METHOD} (NaN: too few replicas)"},
        "median_high": {"units": units, "long_name": f"upper bound of the {confidence:.0%} interval of the median, "
                                                     f"{CI_METHOD} (NaN: too few replicas)"},
    }
    dims = ("point",) + rest_dims
    shape = (n_points,) + values.shape[1:]
    data_vars = {}
    for name, a in attrs.items():
        stacked = np.stack([s[name] for s in per_point]) if per_point else np.empty(shape)
        data_vars[f"{prefix}_{name}"] = (dims, stacked.astype(np.int64 if name == "n" else np.float64), a)
    out = xr.Dataset(data_vars, coords=point_coords if n_points else None,
                     attrs={"variable": prefix, "confidence": confidence, "ci_method": CI_METHOD,
                            "at": at, "only_done": int(only_done)})
    keep = [d for d in rest_dims if d in da.coords]
    out = out.assign_coords({d: da.coords[d] for d in keep})
    if "sample" in rest_dims:
        for name in ("charge", "time"):
            if name in ds and ds[name].dims == ("run", "sample"):
                v = np.asarray(ds[name].transpose("run", "sample").values, dtype=np.float64)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    mean = np.stack([np.nanmean(v[(run_point == p) & use], axis=0) for p in range(n_points)]) \
                        if n_points else np.empty((0, v.shape[1]))
                out = out.assign_coords({name: (("point", "sample"), mean, {
                    "units": ds[name].attrs.get("units", "1"),
                    "long_name": f"mean {ds[name].attrs.get('long_name', name)} over replicas"})})
    return out
