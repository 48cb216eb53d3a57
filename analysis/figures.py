"""The standard figures of a trajectory store, as PNG files (``kmc plot``, ``ds.kmc.figures``).

Each figure is drawn only when the store has the variables it needs; ``write_figures`` returns
the files it wrote and the figures it left out. Matplotlib is used through its object interface
on the Agg canvas (no pyplot), so drawing never opens a window nor changes a notebook's backend.

- ``voltage_vs_charge.png``: cell voltage vs charge passed, replicas thin and the mean per sweep
  point thick; plating (j > 0, reduction) solid, stripping (j < 0) dashed, rest dotted.
- ``contact_void_vs_charge.png``: contact fraction and interface void fraction vs charge.
- ``thickness_map_run<R>.png``, ``current_map_run<R>.png``: maps at chosen frames of one run;
  ``stress_map_run<R>.png`` too when the run computed its deposits' stress (``model.insertion``).
- ``lattice_cut_run<R>.png``: vertical (x–z) cuts through lattice snapshots of one run, through
  the middle row of y, coloured by state code with the legend from the variable's
  ``flag_values``/``flag_meanings``.
- ``ce_vs_cycle.png``: Coulombic efficiency per cycle; ``ccd_histogram.png``: critical current
  densities across runs; ``short_survival.png``: Kaplan–Meier survival against shorting.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from kmc.analysis.runs import done_mask, point_label, points
from kmc.errors import KmcError

#: Colours of known lattice states (by flag meaning); others get the tab10 cycle.
STATE_COLOURS = {"gap": "#ffffff", "empty": "#ffffff", "electrolyte": "#9ecae1", "sodium": "#f2b134",
                 "collector": "#636363", "interphase": "#8e5ea2", "occupied": "#3182bd"}
#: Line style of a protocol segment by the sign of the applied current density.
DIRECTION_STYLE = {1: ("-", "plating (j > 0)"), -1: ("--", "stripping (j < 0)"), 0: (":", "rest (j = 0)")}
#: Axis labels of variables whose long_name is too long for an axis.
SHORT_NAMES = {"contact_fraction": "contact fraction", "void_fraction": "interface void fraction"}
#: At most this many sweep points get their own legend entry.
MAX_LEGEND_POINTS = 10
DPI = 120


@dataclass
class Written:
    """What ``write_figures`` did: the files written and, per figure left out, why."""

    files: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


# -- labels ----------------------------------------------------------------------------------------
def pretty_units(units: str) -> str:
    """UDUNITS to mathtext: ``mA h cm-2`` → ``mA h cm$^{-2}$``, ``ohm cm2`` → ``Ω cm$^{2}$``."""
    units = re.sub(r"\bohm\b", "Ω", units)
    units = re.sub(r"\bum(?=-?\d|\b)", "µm", units).replace("degC", "°C")
    return re.sub(r"([A-Za-zµΩ])(-?\d+)\b", r"\1$^{\2}$", units)


def label(da: xr.DataArray, name: str | None = None) -> str:
    """Axis label from a variable's ``long_name`` and ``units`` (no unit for dimensionless "1")."""
    text = name or da.attrs.get("long_name", str(da.name))
    units = da.attrs.get("units", "")
    return text if units in ("", "1") else f"{text} [{pretty_units(units)}]"


def _title(ds: xr.Dataset) -> str:
    """`` — <scenario name>`` from the store's title, or nothing."""
    name = str(ds.attrs.get("title", "")).replace("kmc trajectories: ", "")
    return f" — {name}" if name else ""


def _new_figure(width: float = 7.0, height: float = 4.5) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path, written: Written) -> None:
    fig.savefig(path, dpi=DPI)
    written.files.append(path)


def _has(ds: xr.Dataset, *names: str) -> bool:
    return all(n in ds and bool(np.isfinite(np.asarray(ds[n].values, dtype=float)).any()) for n in names)


# -- curves against charge --------------------------------------------------------------------------
def _segments(direction: np.ndarray, step: np.ndarray | None):
    """(start, stop, direction) of runs of samples with one current sign and one protocol step.

    Each segment starts one sample early, at the end of the previous one, so the curve stays
    connected where the protocol changes.
    """
    key = direction if step is None else direction * 100_003 + step
    breaks = np.flatnonzero(np.diff(key) != 0) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [key.size]])
    return [(max(a - 1, 0), b, int(direction[a])) for a, b in zip(starts, stops)]


def _draw_curve(ax, x, y, current, step, colour, linewidth, alpha, used_styles):
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return
    x, y = x[ok], y[ok]
    direction = np.sign(np.nan_to_num(current[ok])).astype(int) if current is not None else np.ones(x.size, int)
    steps = step[ok] if step is not None else None
    for a, b, d in _segments(direction, steps):
        style = DIRECTION_STYLE[d][0]
        used_styles.add(d)
        ax.plot(x[a:b], y[a:b], style, color=colour, lw=linewidth, alpha=alpha)


class _Runs:
    """The runs a figure shows, their sweep points and colours."""

    def __init__(self, ds: xr.Dataset, only_done: bool):
        run_point, coords = points(ds)
        use = done_mask(ds) if only_done else np.ones(ds.sizes["run"], dtype=bool)
        self.index = np.flatnonzero(use)
        self.run_point = run_point
        self.coords = coords
        self.n_points = int(run_point.max()) + 1 if run_point.size else 0
        cycle = [f"C{i % 10}" for i in range(max(self.n_points, 1))]
        self.colour = {p: cycle[p] for p in range(self.n_points)}

    def of_point(self, p: int) -> np.ndarray:
        return self.index[self.run_point[self.index] == p]

    def legend_handles(self):
        if self.n_points < 2:
            return []
        handles = [Line2D([], [], color=self.colour[p], lw=2, label=point_label(self.coords, p))
                   for p in range(min(self.n_points, MAX_LEGEND_POINTS))]
        if self.n_points > MAX_LEGEND_POINTS:
            handles.append(Line2D([], [], color="none", label=f"... {self.n_points - MAX_LEGEND_POINTS} more points"))
        return handles


def _per_sample(ds: xr.Dataset, name: str) -> np.ndarray | None:
    return np.asarray(ds[name].transpose("run", "sample").values, dtype=float) if name in ds else None


def _mean_over(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # samples no replica reached: NaN
        return np.nanmean(values[rows], axis=0)


def _curves_vs_charge(ds, runs: _Runs, names: list[str], path: Path, title: str, written: Written,
                      by_direction: bool) -> None:
    charge = _per_sample(ds, "charge")
    current = _per_sample(ds, "current_density") if by_direction else None
    step = np.asarray(ds["step"].transpose("run", "sample").values) if by_direction and "step" in ds else None
    fig = _new_figure(7.0, 3.2 * len(names) + 0.8)
    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    styles: set[int] = set()
    for ax, name in zip(axes, names):
        values = _per_sample(ds, name)
        for r in runs.index:
            _draw_curve(ax, charge[r], values[r], None if current is None else current[r],
                        None if step is None else step[r], runs.colour[runs.run_point[r]], 0.7, 0.45, styles)
        for p in range(runs.n_points):
            rows = runs.of_point(p)
            if rows.size < 2:  # a mean of one replica is that replica
                continue
            mean_current = None if current is None else _mean_over(current, rows)
            _draw_curve(ax, _mean_over(charge, rows), _mean_over(values, rows), mean_current, None,
                        runs.colour[p], 2.2, 1.0, styles)
        ax.set_ylabel(label(ds[name], SHORT_NAMES.get(name)))
        if name in SHORT_NAMES:  # the axis label is short; the definition goes above the panel
            ax.set_title(ds[name].attrs.get("long_name", name), fontsize="small")
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel(label(ds["charge"], "charge passed"))
    handles = runs.legend_handles()
    if by_direction and len(styles) > 1:
        handles += [Line2D([], [], color="k", ls=DIRECTION_STYLE[d][0], label=DIRECTION_STYLE[d][1]) for d in sorted(styles, reverse=True)]
    if handles:
        axes[0].legend(handles=handles, fontsize="small", loc="best")
    n = runs.index.size
    fig.suptitle(f"{title}{_title(ds)}\n{n} run(s): replicas thin, mean per point thick", fontsize="medium")
    _save(fig, path, written)


# -- maps and lattice cuts ---------------------------------------------------------------------------
def _pick(requested, written_idx: np.ndarray, what: str, run: int) -> list[int]:
    """Indices to draw: first/middle/last written by default; negative ones count from the last written."""
    if written_idx.size == 0:
        return []
    if requested is None:
        chosen = [written_idx[0], written_idx[written_idx.size // 2], written_idx[-1]]
    else:
        chosen = []
        for k in requested:
            k = int(k)
            i = written_idx[-1] + 1 + k if k < 0 else k
            if i not in written_idx:
                raise KmcError(f"{what} {k} of run {run} is not written: expected one of "
                               f"{written_idx[0]}..{written_idx[-1]} (or negative, from the last)")
            chosen.append(i)
    return list(dict.fromkeys(int(i) for i in chosen))


def _written_along(ds_run: xr.Dataset, dim: str, clock: str, var: str) -> np.ndarray:
    if clock in ds_run:
        return np.flatnonzero(np.isfinite(np.asarray(ds_run[clock].values, dtype=float)))
    data = ds_run[var]
    other = [d for d in data.dims if d != dim]
    return np.flatnonzero(np.asarray(data.notnull().any(other).values))


def _clock_text(ds_run: xr.Dataset, t: float) -> str:
    text = f"t = {t:.4g} s"
    if "charge" in ds_run and "time" in ds_run:
        time = np.asarray(ds_run["time"].values, dtype=float)
        charge = np.asarray(ds_run["charge"].values, dtype=float)
        ok = np.isfinite(time) & np.isfinite(charge)
        if ok.any():
            text += f", Q = {np.interp(t, time[ok], charge[ok]):.3g} {pretty_units(ds_run['charge'].attrs.get('units', ''))}"
    return text


def _extent(da: xr.DataArray, xdim: str, ydim: str):
    def edges(dim):
        c = np.asarray(da[dim].values, dtype=float) if dim in da.coords else np.arange(da.sizes[dim], dtype=float)
        step = c[1] - c[0] if c.size > 1 else 1.0
        return c[0] - step / 2, c[-1] + step / 2

    (x0, x1), (y0, y1) = edges(xdim), edges(ydim)
    return x0, x1, y0, y1


def _axis_label(ds: xr.Dataset, dim: str) -> str:
    if dim in ds.coords:
        return label(ds[dim], dim if ds[dim].attrs.get("units", "1") != "1" else None)
    return f"{dim} (index)"


def _map_figure(ds_run: xr.Dataset, name: str, frames: list[int], run: int, path: Path, written: Written,
                cmap: str) -> None:
    da = ds_run[name].isel(frame=frames).compute()
    values = np.asarray(da.values, dtype=float)
    finite = values[np.isfinite(values)]
    vmin, vmax = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    fig = _new_figure(3.2 * len(frames) + 1.2, 3.6)
    axes = fig.subplots(1, len(frames), squeeze=False)[0]
    times = np.asarray(ds_run["frame_time"].values, dtype=float) if "frame_time" in ds_run else None
    image = None
    for ax, k, field2d in zip(axes, frames, values):
        image = ax.imshow(field2d, origin="lower", extent=_extent(da, "x", "y"), cmap=cmap, vmin=vmin, vmax=vmax,
                          interpolation="nearest")
        ax.set_title(f"frame {k}" + (f": {_clock_text(ds_run, times[k])}" if times is not None else ""),
                     fontsize="small")
        ax.set_xlabel(_axis_label(ds_run, "x"))
        ax.set_ylabel(_axis_label(ds_run, "y"))
    fig.colorbar(image, ax=list(axes), label=label(ds_run[name]), shrink=0.9)
    fig.suptitle(f"{ds_run[name].attrs.get('long_name', name)}{_title(ds_run)}, run {run}", fontsize="medium")
    _save(fig, path, written)


def _state_legend(da: xr.DataArray):
    codes = [int(v) for v in np.atleast_1d(da.attrs.get("flag_values", []))]
    meanings = str(da.attrs.get("flag_meanings", "")).split()
    if not codes or len(codes) != len(meanings):
        codes = sorted(int(v) for v in np.unique(da.values) if v != 255)
        meanings = [str(c) for c in codes]
    colours = [STATE_COLOURS.get(m, f"C{i % 10}") for i, m in enumerate(meanings)]
    return codes, meanings, colours


def _trim_uniform_edges(cut: np.ndarray, margin: int = 3) -> slice:
    """z range of ``cut`` (snap, z, x) without the uniform layers at the top and bottom beyond a margin.

    A battery domain is mostly collector slab above and electrolyte below; the interface between
    them is what a cut is for.
    """
    n = cut.shape[1]

    def like_edge(k: int, edge: int) -> bool:  # layer k is the edge layer, and that is one state throughout
        return np.array_equal(cut[:, k], cut[:, edge]) and bool((cut[:, edge] == cut[0, edge, 0]).all())

    lo, hi = 0, n
    while lo < n - 1 and like_edge(lo, 0):
        lo += 1
    while hi > lo + 1 and like_edge(hi - 1, n - 1):
        hi -= 1
    return slice(max(lo - margin, 0), min(hi + margin, n))


def _lattice_figure(ds_run: xr.Dataset, snaps: list[int], run: int, path: Path, written: Written) -> None:
    lattice = ds_run["lattice"]
    y_index = lattice.sizes["y"] // 2
    cut = lattice.isel(snap=snaps, y=y_index).transpose("snap", "z", "x").compute()
    cut = cut.isel(z=_trim_uniform_edges(np.asarray(cut.values)))
    codes, meanings, colours = _state_legend(lattice)
    # A listed colormap over the codes; anything else (the 255 fill of an unwritten snapshot) magenta.
    lookup = np.full(256, -1)
    lookup[codes] = np.arange(len(codes))
    shown = np.ma.masked_less(lookup[np.asarray(cut.values, dtype=np.uint8)], 0)
    cmap = ListedColormap(colours).with_extremes(bad="#ff00ff")
    norm = BoundaryNorm(np.arange(len(codes) + 1) - 0.5, len(codes))
    extent = _extent(cut, "x", "z")
    aspect = (extent[3] - extent[2]) / (extent[1] - extent[0])
    # Wide, flat cuts (a thin anode over a wide domain) stack in rows; tall or square ones sit side by side.
    rows = aspect < 0.6
    width = float(np.clip(cut.sizes["x"] * 0.12, 4.0, 10.0)) if rows else min(4.0, 13.0 / len(snaps))
    height = float(np.clip(width * aspect, 1.0, 6.0))  # inches per panel; clipped: z is stretched
    fig = _new_figure(width + 2.2 if rows else width * len(snaps) + 2.2,
                      (height + 0.8) * len(snaps) + 0.6 if rows else height + 1.4)
    axes = fig.subplots(len(snaps), 1, squeeze=False)[:, 0] if rows else fig.subplots(1, len(snaps), squeeze=False)[0]
    times = np.asarray(ds_run["snap_time"].values, dtype=float) if "snap_time" in ds_run else None
    for ax, k, frame in zip(axes, snaps, shown):
        ax.imshow(frame, origin="lower", extent=extent, cmap=cmap, norm=norm, interpolation="nearest", aspect="auto")
        ax.set_title(f"snapshot {k}" + (f": {_clock_text(ds_run, times[k])}" if times is not None else ""),
                     fontsize="small")
        ax.set_xlabel(_axis_label(ds_run, "x"))
        ax.set_ylabel(_axis_label(ds_run, "z"))
    handles = [Patch(facecolor=c, edgecolor="k", lw=0.5, label=f"{m} ({code})") for code, m, c in zip(codes, meanings, colours)]
    fig.legend(handles=handles, loc="outside right center", fontsize="small", title="state")
    if "y" in ds_run.coords:
        y = ds_run["y"]
        units = y.attrs.get("units", "1")
        y_text = f"y = {float(y.values[y_index]):g}" + (f" {pretty_units(units)}" if units != "1" else "")
    else:
        y_text = f"y index {y_index}"
    stretched = abs(height - width * aspect) > 1e-9
    fig.suptitle(f"Vertical cut (x–z) through the lattice at {y_text}{_title(ds_run)}, run {run}"
                 + ("\n(z stretched for legibility)" if stretched else ""), fontsize="medium")
    _save(fig, path, written)


# -- per cycle, per run ------------------------------------------------------------------------------
def _ce_figure(ds, runs: _Runs, path: Path, written: Written) -> None:
    ce = np.asarray(ds["coulombic_efficiency"].transpose("run", "cycle").values, dtype=float)
    cycle = np.arange(1, ce.shape[1] + 1)
    fig = _new_figure()
    ax = fig.subplots()
    for r in runs.index:
        ax.plot(cycle, ce[r], "o-", ms=2.5, lw=0.7, alpha=0.45, color=runs.colour[runs.run_point[r]])
    for p in range(runs.n_points):
        rows = runs.of_point(p)
        if rows.size:
            ax.plot(cycle, _mean_over(ce, rows), "o-", ms=4, lw=2.2, color=runs.colour[p])
    ax.set_xlabel("cycle number")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(label(ds["coulombic_efficiency"]))
    ax.grid(alpha=0.3)
    if handles := runs.legend_handles():
        ax.legend(handles=handles, fontsize="small")
    fig.suptitle(f"Coulombic efficiency per cycle{_title(ds)}\n{runs.index.size} run(s): replicas thin, "
                 f"mean per point thick", fontsize="medium")
    _save(fig, path, written)


def _ccd_figure(ds, runs: _Runs, path: Path, written: Written) -> None:
    ccd = np.asarray(ds["ccd"].values, dtype=float)
    groups = [ccd[runs.of_point(p)] for p in range(runs.n_points)]
    groups = [g[np.isfinite(g)] for g in groups]
    every = np.concatenate(groups) if groups else np.array([])
    fig = _new_figure()
    ax = fig.subplots()
    bins = np.histogram_bin_edges(every, bins="auto") if np.ptp(every) > 0 else np.array([every[0] - 0.5, every[0] + 0.5])
    labels = [point_label(runs.coords, p) or "runs" for p in range(runs.n_points)]
    ax.hist(groups, bins=bins, stacked=True, color=[runs.colour[p] for p in range(runs.n_points)],
            label=labels, edgecolor="k", lw=0.5)
    ax.set_xlabel(label(ds["ccd"], "critical current density"))
    ax.set_ylabel("runs")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if runs.n_points > 1:
        ax.legend(fontsize="small")
    fig.suptitle(f"Critical current density across runs{_title(ds)} (n = {every.size})", fontsize="medium")
    _save(fig, path, written)


def _survival_figure(ds, runs: _Runs, only_done: bool, path: Path, written: Written) -> None:
    from kmc.analysis.survival import survival

    km = survival(ds, "short_charge", only_done=only_done)
    grid = km["short_charge"].values
    fig = _new_figure()
    ax = fig.subplots()
    for p in range(km.sizes["point"]):
        if int(km["n"][p]) == 0:
            continue
        colour = runs.colour.get(p, "C0")
        ax.plot(grid, km["survival"][p], drawstyle="steps-post", color=colour, lw=2,
                label=f"{point_label(runs.coords, p) or 'runs'} (n = {int(km['n'][p])}, {int(km['n_shorted'][p])} shorted)")
        ax.fill_between(grid, km["survival_low"][p], km["survival_high"][p], step="post", color=colour, alpha=0.2)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(label(km["short_charge"], "charge passed"))
    ax.set_ylabel("probability of no short")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.suptitle(f"Survival against shorting (Kaplan–Meier, {km.attrs['confidence']:.0%} band){_title(ds)}",
                 fontsize="medium")
    _save(fig, path, written)


# -- all of them -------------------------------------------------------------------------------------
def write_figures(ds: xr.Dataset, directory, run: int = 0, frames=None, snaps=None,
                  only_done: bool = True) -> Written:
    """Draw every standard figure whose variables ``ds`` has into ``directory`` (created if needed).

    ``run``: the run whose maps and lattice cuts are drawn (its ``run`` coordinate). ``frames`` /
    ``snaps``: map frames / snapshots to draw (default first, middle and last written; negative
    indices count back from the last written). Curves, CE and CCD use the finished runs only unless
    ``only_done`` is false. Returns the files written and the figures left out with the reason.
    Bad input (no such run, frame or snapshot, an unwritable directory) raises ``KmcError``.
    """
    directory = Path(directory)
    if run not in set(np.asarray(ds["run"].values).tolist()):
        raise KmcError(f"--run = {run!r} is not allowed: expected a run of the store, 0 to {ds.sizes['run'] - 1}")
    needed = {"charge", "current_density", "step", "voltage", "contact_fraction", "void_fraction", "time",
              "coulombic_efficiency", "ccd", "short_charge", "shorted", "status"}
    curves = ds[[n for n in needed if n in ds]].compute()
    runs = _Runs(ds, only_done)
    written = Written()
    one = ds.sel(run=run)

    # Check the requested frames and snapshots before drawing anything.
    frame_vars = [n for n in ("thickness_map", "current_map") if n in ds]
    frame_list = _pick(frames, _written_along(one, "frame", "frame_time", frame_vars[0]), "frame", run) \
        if frame_vars else []
    snap_list = _pick(snaps, _written_along(one, "snap", "snap_time", "lattice"), "snapshot", run) \
        if "lattice" in ds else []

    try:  # only now that the input is known good: bad input writes nothing
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise KmcError(f"-o {str(directory)!r} is not allowed: cannot create the directory ({err.strerror})")

    if runs.index.size == 0:
        reason = "no finished runs (--all-runs draws unfinished ones)"
        for name in ("voltage_vs_charge", "contact_void_vs_charge", "ce_vs_cycle", "ccd_histogram", "short_survival"):
            written.skipped[name] = reason
    else:
        if _has(curves, "charge", "voltage"):
            _curves_vs_charge(curves, runs, ["voltage"], directory / "voltage_vs_charge.png",
                              "Cell voltage vs charge passed", written, by_direction=True)
        else:
            written.skipped["voltage_vs_charge"] = "no voltage and charge"
        fractions = [n for n in ("contact_fraction", "void_fraction") if _has(curves, n)]
        if fractions and _has(curves, "charge"):
            _curves_vs_charge(curves, runs, fractions, directory / "contact_void_vs_charge.png",
                              "Interface contact and void fractions vs charge passed", written, by_direction=True)
        else:
            written.skipped["contact_void_vs_charge"] = "no contact_fraction or void_fraction"
        if _has(curves, "coulombic_efficiency"):
            _ce_figure(curves, runs, directory / "ce_vs_cycle.png", written)
        else:
            written.skipped["ce_vs_cycle"] = "no coulombic_efficiency"
        if "ccd" in curves and np.isfinite(np.asarray(curves["ccd"].values, dtype=float)[runs.index]).any():
            _ccd_figure(curves, runs, directory / "ccd_histogram.png", written)
        else:
            written.skipped["ccd_histogram"] = "no ccd"
        if "short_charge" in curves and "charge" in curves:
            _survival_figure(curves, runs, only_done, directory / "short_survival.png", written)
        else:
            written.skipped["short_survival"] = "no short_charge"

    for name, cmap in (("thickness_map", "cividis"), ("current_map", "viridis"), ("stress_map", "magma")):
        if name in ds and frame_list:
            if name == "stress_map" and not np.isfinite(np.asarray(one[name].isel(frame=frame_list).values)).any():
                # NaN off deposits, and everywhere unless the run computes it (model.insertion)
                written.skipped[f"{name}_run{run}"] = f"no deposit stress in run {run} (model.insertion = least_stress computes it)"
                continue
            _map_figure(one, name, frame_list, run, directory / f"{name}_run{run}.png", written, cmap)
        else:
            written.skipped[f"{name}_run{run}"] = f"no {name} frames in run {run}"
    if snap_list:
        _lattice_figure(one, snap_list, run, directory / f"lattice_cut_run{run}.png", written)
    else:
        written.skipped[f"lattice_cut_run{run}"] = f"no lattice snapshots in run {run}"
    return written
