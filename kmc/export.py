"""A store's snapshots and maps as VTK image data for ParaView (``kmc export OUT.zarr --vtk DIR``).

For one run of a store, into DIR:

- ``lattice_run<R>_<snap>.vti``: each written 3D snapshot, cell data ``state`` (the store's uint8
  codes), one cell per voxel (x fastest, as in VTK), spacing the voxel size in the units of the
  store's ``x``/``y``/``z`` coordinates (µm for the battery model, sites for the hop model);
  ``lattice_run<R>.pvd`` lists them with their simulated times (s) so ParaView plays them in time.
- ``maps_run<R>_<frame>.vti``: each written frame's maps (every ``(run, frame, y, x)`` variable:
  ``thickness_map`` [µm], ``contact_map``, ``current_map`` [mA cm-2], ``stress_map`` [MPa] when the
  store has it) as cell data of a one-voxel-thick image; ``maps_run<R>.pvd`` lists them in time.
- ``legend.json``: the state legend (code -> meaning, from the lattice's CF ``flag_values`` and
  ``flag_meanings``), the spacing and its units, and the maps' units.

Every file carries its simulated time as the field array ``TimeValue`` (ParaView reads it when a file
is opened alone); the snapshot files carry the legend too, as the field arrays ``state_code`` and
``state_meaning``. Slots past a run's end (all fill values) are skipped.

The files are written with pyevtk (XML VTK, raw binary appended data; numpy only, no VTK install).
Field data is written at the dataset level by hand: VTK's XML readers ignore field data inside a
``Piece``, which is where ``pyevtk.hl.imageToVTK`` puts it.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kmc.errors import KmcError

#: Dimensions of a map variable and of the lattice snapshots in the store (SCHEMA.md).
MAP_DIMS = ("run", "frame", "y", "x")
LATTICE_DIMS = ("run", "snap", "z", "y", "x")
LEGEND_FILE = "legend.json"


@dataclass
class Exported:
    """What ``export_vtk`` wrote: the files, and the store slots it skipped (past the run's end)."""

    out_dir: Path
    snapshots: list[Path] = field(default_factory=list)
    frames: list[Path] = field(default_factory=list)
    collections: list[Path] = field(default_factory=list)  # the .pvd files
    legend: Path | None = None
    skipped_snaps: list[int] = field(default_factory=list)
    skipped_frames: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Grid:
    """The store's voxel grid: spacing and origin (corner of the first voxel) per axis x, y, z."""

    shape_xyz: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    units: str


def state_legend(attrs: dict) -> dict[int, str]:
    """Code -> meaning from CF ``flag_values`` and blank-separated ``flag_meanings`` attrs."""
    values = [int(v) for v in np.atleast_1d(attrs.get("flag_values", []))]
    meanings = str(attrs.get("flag_meanings", "")).split()
    if len(values) != len(meanings):
        raise KmcError(f"lattice attrs flag_values = {values} and flag_meanings = {meanings} do not pair up: "
                       f"expected one meaning per value (CF conventions)")
    return dict(zip(values, meanings))


def export_vtk(store, out_dir, run: int = 0) -> Exported:
    """Write run ``run`` of ``store`` (a kmc store's path) as VTK image data into ``out_dir``.

    Bad input (not a kmc store, ``run`` out of range, ``out_dir`` a file, a run with nothing written
    yet) raises ``KmcError`` before anything is written. ``out_dir`` is created if missing; files
    of the same names in it are replaced.
    """
    from kmc.api import open as open_store
    from kmc.store import is_kmc_store

    store, out_dir = Path(store), Path(out_dir)
    if not is_kmc_store(store):
        raise KmcError(f"OUT.zarr = {str(store)!r} is not allowed: expected a kmc store "
                       f"(a directory written by `kmc run` or `kmc sweep`)")
    ds = open_store(store)
    n_runs = ds.sizes["run"]
    if isinstance(run, bool) or not isinstance(run, (int, np.integer)) or not 0 <= run < n_runs:
        raise KmcError(f"--run = {run!r} is not allowed: expected a run index from 0 to {n_runs - 1} "
                       f"(the store has {n_runs} run{'s' if n_runs != 1 else ''})")
    run = int(run)
    if out_dir.exists() and not out_dir.is_dir():
        raise KmcError(f"--vtk = {str(out_dir)!r} is not allowed: it is a file; expected a directory "
                       f"(created if missing)")
    map_names = [name for name, v in ds.data_vars.items() if v.dims == MAP_DIMS]
    has_lattice = "lattice" in ds.data_vars and ds["lattice"].dims == LATTICE_DIMS
    if not has_lattice and not map_names:
        raise KmcError(f"OUT.zarr = {str(store)!r} has no lattice snapshots and no maps to export: expected a "
                       f"store made with output.snapshot_every_samples or output.map_every_samples set")

    # Find the written slots before writing anything, so that a run with none is refused cleanly.
    grid = _grid(ds)
    snaps, skipped_snaps = _written_snapshots(ds, run) if has_lattice else ([], [])
    frames, skipped_frames = _written_frames(ds, run, map_names) if map_names else ([], [])
    if not snaps and not frames:
        raise KmcError(f"--run = {run} is not allowed: run {run} has no snapshot or map written yet "
                       f"(`kmc status {store}` says where it is)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise KmcError(f"--vtk = {str(out_dir)!r} is not allowed: cannot create the directory ({err.strerror})")

    done = Exported(out_dir, skipped_snaps=skipped_snaps, skipped_frames=skipped_frames)
    legend = state_legend(ds["lattice"].attrs) if has_lattice else {}
    if snaps:
        width = max(4, len(str(ds.sizes["snap"] - 1)))
        series = []
        for k, time_s in snaps:
            path = out_dir / f"lattice_run{run}_{k:0{width}d}.vti"
            _write_image(path, {"state": ds["lattice"].isel(run=run, snap=k).values}, grid, time_s, legend)
            series.append((path, time_s))
            done.snapshots.append(path)
        done.collections.append(_write_collection(out_dir / f"lattice_run{run}.pvd", series))
    if frames:
        width = max(4, len(str(ds.sizes["frame"] - 1)))
        series = []
        for k, time_s in frames:
            path = out_dir / f"maps_run{run}_{k:0{width}d}.vti"
            maps = {name: ds[name].isel(run=run, frame=k).values[np.newaxis] for name in map_names}
            _write_image(path, maps, grid, time_s, {}, flat=True)
            series.append((path, time_s))
            done.frames.append(path)
        done.collections.append(_write_collection(out_dir / f"maps_run{run}.pvd", series))
    done.legend = _write_legend(out_dir / LEGEND_FILE, ds, legend, grid, map_names)
    return done


def _grid(ds) -> Grid:
    """Voxel size and origin from the cell-centred ``x``/``y``/``z`` coordinates (µm, or site indices).

    An axis of one voxel (or without a coordinate: a store with maps only has no ``z``) takes the
    spacing of the first axis that has one: voxels are cubes in both models.
    """
    coords = {a: np.asarray(ds[a].values, dtype=np.float64) for a in "xyz" if a in ds.coords}
    spacing = {}
    for axis, c in coords.items():
        if c.size > 1:
            step = np.diff(c)
            if not np.allclose(step, step[0], rtol=1e-9, atol=0.0) or step[0] <= 0:
                raise KmcError(f"coordinate {axis} = {c[:4]}... is not allowed: expected evenly spaced, "
                               f"increasing voxel centres")
            spacing[axis] = float(step[0])
    cube = next(iter(spacing.values()), 1.0)
    sizes = tuple(int(ds.sizes.get(a, 1)) for a in "xyz")
    step = tuple(spacing.get(a, cube) for a in "xyz")
    # A voxel's centre is its coordinate, so the image starts half a voxel before the first centre.
    origin = tuple(float(coords[a][0]) - s / 2 if a in coords else 0.0 for a, s in zip("xyz", step))
    units = str(ds["x"].attrs.get("units", "1")) if "x" in ds.coords else "1"
    return Grid(sizes, step, origin, units)


def _written_snapshots(ds, run: int) -> tuple[list[tuple[int, float]], list[int]]:
    """[(snap index, time s)] of the run's written snapshots, and the indices skipped.

    A slot past the run's end is all fill (no chunk was written); a written one has a finite time.
    Each snapshot is read here and again when written, so that a long run never sits in memory whole.
    """
    lattice = ds["lattice"]
    fill = lattice.encoding.get("fill_value", 255)
    times = np.asarray(ds["snap_time"].isel(run=run).values, dtype=np.float64)
    written, skipped = [], []
    for k in range(ds.sizes["snap"]):
        if np.isfinite(times[k]) and not np.all(lattice.isel(run=run, snap=k).values == fill):
            written.append((k, float(times[k])))
        else:
            skipped.append(k)
    return written, skipped


def _written_frames(ds, run: int, map_names: list[str]) -> tuple[list[tuple[int, float]], list[int]]:
    """[(frame index, time s)] of the run's written frames (some map value not NaN), and those skipped."""
    times = np.asarray(ds["frame_time"].isel(run=run).values, dtype=np.float64)
    written, skipped = [], []
    for k in range(ds.sizes["frame"]):
        if np.isfinite(times[k]) and not all(np.isnan(ds[name].isel(run=run, frame=k).values).all()
                                             for name in map_names):
            written.append((k, float(times[k])))
        else:
            skipped.append(k)
    return written, skipped


def _write_image(path: Path, cells_zyx: dict[str, np.ndarray], grid: Grid, time_s: float,
                 legend: dict[int, str], flat: bool = False) -> None:
    """One .vti file: cell arrays given as the store's (z, y, x) arrays, field data time and legend.

    ``flat``: the arrays are maps, (1, y, x), written as a 2D image (one layer of points in z, so
    its cells are the pixels) at the grid's bottom.
    """
    from pyevtk.vtk import VtkFile, VtkImageData

    # VTK numbers cells x fastest: the transpose of a C-ordered (z, y, x) array is (x, y, z) in
    # Fortran order, which is how pyevtk writes a 3D array.
    cells = {name: np.ascontiguousarray(a).T for name, a in cells_zyx.items()}
    shape = next(iter(cells.values())).shape
    expected = (*grid.shape_xyz[:2], 1) if flat else grid.shape_xyz
    if shape != expected:
        raise ValueError(f"cell arrays of shape (x, y, z) {shape} on a grid of {expected}")
    end = (shape[0], shape[1], 0) if flat else shape
    start = (0, 0, 0)
    vti = VtkFile(str(path.with_suffix("")), VtkImageData)
    vti.openGrid(start=start, end=end, origin=grid.origin, spacing=grid.spacing)
    vti.openElement("FieldData")
    _ascii_array(vti.xml, "Float64", "TimeValue", [repr(float(time_s))])
    if legend:
        _ascii_array(vti.xml, "UInt8", "state_code", [str(code) for code in legend])
        _ascii_array(vti.xml, "String", "state_meaning", [_vtk_string(m) for m in legend.values()])
    vti.closeElement("FieldData")
    vti.openPiece(start=start, end=end)
    vti.openData("Cell", scalars=next(iter(cells)))
    for name, a in cells.items():
        vti.addData(name, a)
    vti.closeData("Cell")
    vti.closePiece()
    vti.closeGrid()
    for a in cells.values():
        vti.appendData(a)
    vti.save()


def _ascii_array(xml, vtk_type: str, name: str, values: list[str]) -> None:
    """A small field array written inline; strings are ``Array`` elements in VTK's XML format."""
    xml.openElement("Array" if vtk_type == "String" else "DataArray")
    xml.addAttributes(type=vtk_type, Name=name, NumberOfTuples=len(values), format="ascii")
    xml.addText(" ".join(values))
    xml.closeElement("Array" if vtk_type == "String" else "DataArray")


def _vtk_string(text: str) -> str:
    """A string in an ASCII VTK XML array: its byte values, then 0 as the terminator."""
    return " ".join(str(b) for b in text.encode("utf-8")) + " 0"


def _write_collection(path: Path, series: list[tuple[Path, float]]) -> Path:
    """A ParaView collection (.pvd) of the files with their simulated times (s)."""
    from pyevtk.vtk import VtkGroup

    group = VtkGroup(str(path.with_suffix("")))
    for file, time_s in series:
        group.addFile(filepath=str(file), sim_time=repr(float(time_s)))
    group.save()
    return path


def _write_legend(path: Path, ds, legend: dict[int, str], grid: Grid, map_names: list[str]) -> Path:
    info = {
        "model": ds.attrs.get("model", ""),
        "state": {str(code): meaning for code, meaning in legend.items()},
        "state_variable": "lattice (cell data 'state' of lattice_run*.vti)" if legend else "",
        "spacing": dict(zip("xyz", grid.spacing)),
        "origin": dict(zip("xyz", grid.origin)),
        "length_units": grid.units,
        "time_units": "s",
        "maps": {name: {"units": str(ds[name].attrs.get("units", "")),
                        "long_name": str(ds[name].attrs.get("long_name", ""))} for name in map_names},
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
