"""One row per run: the final state of the interface, the voltage minimum, shorts, CCD and CE."""
from __future__ import annotations

import numpy as np
import xarray as xr

from kmc.analysis.lattice import mean_na_height_um
from kmc.analysis.runs import last_valid, runs_to_use

#: Per-sample variables whose final value (last non-NaN sample) the summary reports, as ``final_<name>``.
FINAL = ("charge", "time", "voltage", "contact_fraction", "void_fraction", "thickness_mean", "thickness_cv",
         "interfacial_resistance", "short_probability", "plated", "stranded_na", "dead_na", "unloaded_na")
#: Per-run and per-cycle variables copied as they are.
COPIED = ("status", "shorted", "short_time", "short_charge", "ccd", "ccd_failure", "coulombic_efficiency")


def summary(ds: xr.Dataset, only_done: bool = True) -> xr.Dataset:
    """A Dataset along ``run`` (with ``cycle`` for the Coulombic efficiency) summarizing each run.

    ``final_<name>`` is the last non-NaN sample of each per-sample variable in ``FINAL`` the store has
    (in its units); ``min_voltage`` the lowest cell voltage of the run (V, the nucleation overpotential
    peak when plating, since plating voltages are negative; from ``voltage_min``, the lowest between
    samples, when the store has it); ``status``, ``shorted``, ``short_time``
    [s], ``short_charge`` [mA h cm-2], ``ccd`` [mA cm-2], ``ccd_failure`` and ``coulombic_efficiency`` per cycle are
    copied when present; ``final_na_height`` [µm] is the mean height of the Na top above the
    electrolyte surface over the columns with Na (``kmc.analysis.lattice``) in the run's final state,
    when its last snapshot is of that state (NaN otherwise). Only finished runs unless ``only_done``
    is false. The run coordinates (seed, replica, swept parameters) come along.
    """
    ds = runs_to_use(ds, only_done)
    out = xr.Dataset(coords={name: c for name, c in ds.coords.items() if c.dims == ("run",)})
    for name in FINAL:
        if name in ds and "sample" in ds[name].dims:
            src = ds[name]
            out[f"final_{name}"] = last_valid(src, "sample").assign_attrs(
                units=src.attrs.get("units", "1"),
                long_name=f"final {src.attrs.get('long_name', name)} (last sample the run defined)")
    # The lowest voltage between samples when the store has it (a nucleation minimum lasts seconds).
    low = "voltage_min" if "voltage_min" in ds else "voltage"
    if low in ds and "sample" in ds[low].dims and ds.sizes.get("run", 1) and ds.sizes.get("sample", 1):
        out["min_voltage"] = ds[low].min("sample", skipna=True).compute().assign_attrs(
            units=ds[low].attrs.get("units", "V"), long_name="lowest cell voltage of the run")
    if all(name in ds for name in ("lattice", "snap_time", "time")) and ds.sizes.get("run", 0):
        out["final_na_height"] = final_na_height(ds)
    for name in COPIED:
        if name in ds:
            src = ds[name].compute()
            out[name] = src.assign_attrs(units=src.attrs.get("units", "1"), long_name=src.attrs.get("long_name", name))
    return out.compute()


def final_na_height(ds: xr.Dataset) -> xr.DataArray:
    """Per run, the mean height of the Na top above the electrolyte surface (µm) in the last snapshot,
    if it was taken at the run's last sample (the final state); NaN otherwise."""
    z = np.asarray(ds["z"].values, dtype=float)
    voxel_um = float(z[1] - z[0]) if z.size > 1 else 2.0 * float(z[0])  # z: voxel centres
    snap_time = np.asarray(ds["snap_time"].values, dtype=float)
    final_time = np.asarray(last_valid(ds["time"], "sample").values, dtype=float)
    heights = np.full(ds.sizes["run"], np.nan)
    for r in range(ds.sizes["run"]):
        written = np.flatnonzero(np.isfinite(snap_time[r]))
        if written.size and snap_time[r, written[-1]] == final_time[r]:
            surface = ds["surface_height"].isel(run=r).values if "surface_height" in ds else None
            heights[r] = mean_na_height_um(ds["lattice"].isel(run=r, snap=int(written[-1])).values, voxel_um, surface)
    return xr.DataArray(heights, dims=("run",), attrs={
        "units": "um", "long_name": "final mean height of the Na top above the electrolyte surface "
                                    "(columns with Na, from the snapshot of the final state)"})
