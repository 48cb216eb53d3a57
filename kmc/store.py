"""The trajectory store: one Zarr v3 group per ``kmc run`` or ``kmc sweep`` (SCHEMA.md).

Write discipline, so that runs in separate processes never damage each other:

- The template — every variable's metadata, coordinates, and the global attrs — is written once, by
  ``create``, into a temporary directory that is renamed into place; consolidated metadata is
  written then too and stays valid, because nothing writes metadata or attrs afterwards.
  Variables start as missing chunks, which read as their fill value, so the template is tiny.
- Every variable has chunk 1 along ``run``: a run's writer touches only its own chunks, and Zarr's
  local store writes each chunk to a temporary file and renames it, so a killed writer leaves whole
  chunks, old or new.
- A run records its progress after the data it covers: samples first, then ``samples_written``;
  a checkpoint's arrays into the slot not in use, then the one-chunk pointer naming that slot.

Checkpoints (every array of the run's State plus its metadata and generator state) live in the
``checkpoint`` subgroup, which ``xarray.open_zarr`` does not show.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kmc import liveness
from kmc.errors import KmcError
from kmc.state import State, spec_nbytes

SCHEMA_VERSION = "1"

STATUS_PENDING, STATUS_RUNNING, STATUS_DONE, STATUS_FAILED = 0, 1, 2, 3
STATUS_NAMES = {STATUS_PENDING: "pending", STATUS_RUNNING: "running", STATUS_DONE: "done",
                STATUS_FAILED: "failed"}

#: A live run writes its heartbeat this often (wall-clock seconds), with the host, process id and
#: process start time of its writer (kmc.liveness).
HEARTBEAT_EVERY_S = 10.0
#: A running run whose writer is on this host is judged by that process: gone, the run is
#: interrupted at once; alive, it is running, whatever its heartbeat's age. A run whose writer is on
#: another host (or whose store records no writer, made by an older kmc) is taken for dead once its
#: heartbeat is older than this (seconds). The environment variable ``KMC_STALE_AFTER_S`` (a number
#: >= 0) overrides it wherever run statuses are read (``kmc status``, ``kmc resume``, ``kmc sweep
#: --rerun-failed``, ``kmc validate``): set it low when you know that other host's job is gone (a lost
#: node) and want to resume its runs without waiting a minute. Below HEARTBEAT_EVERY_S it takes live
#: runs of other hosts for dead too, so resuming then may start a second writer of a run that is still
#: alive there: only lower it when no process of the store runs on another host.
STALE_AFTER_S = 60.0
STALE_AFTER_ENV = "KMC_STALE_AFTER_S"

#: Samples per chunk along ``sample`` (a run rewrites at most one partial chunk per flush).
SAMPLE_CHUNK = 1024


@dataclass(frozen=True)
class Var:
    """One variable of the store: name, dimensions, dtype, CF ``units`` and ``long_name``.

    ``fill`` is what a never-written element reads as: NaN for floats (past a run's end), a
    documented value otherwise. ``attrs`` are extra attributes (e.g. a state-code legend).
    """

    name: str
    dims: tuple[str, ...]
    dtype: str
    units: str
    long_name: str
    fill: Any = None
    attrs: dict = field(default_factory=dict)

    def fill_value(self):
        if self.fill is not None:
            return self.fill
        kind = np.dtype(self.dtype).kind if self.dtype != "str" else "U"
        return math.nan if kind == "f" else ("" if kind == "U" else 0)


#: Per-run bookkeeping every store has, whatever the model.
RUN_VARS = (
    Var("status", ("run",), "int8", "1", "run status", STATUS_PENDING,
        {"flag_values": [0, 1, 2, 3], "flag_meanings": "pending running done failed"}),
    Var("events", ("run",), "int64", "1", "KMC events executed"),
    Var("wall_seconds", ("run",), "float64", "s", "wall-clock time spent running"),
    Var("samples_written", ("run",), "int64", "1", "samples written so far"),
    Var("heartbeat", ("run",), "float64", "seconds since 1970-01-01T00:00:00Z",
        "wall-clock time the run was last seen alive"),
    Var("heartbeat_host", ("run",), "str", "1", "host of the process that wrote the heartbeat"),
    Var("heartbeat_pid", ("run",), "int64", "1", "id of the process that wrote the heartbeat (-1: none)", -1),
    Var("heartbeat_process_start", ("run",), "float64", "seconds since 1970-01-01T00:00:00Z",
        "start time of the process that wrote the heartbeat (tells a reused process id apart)"),
    Var("error", ("run",), "str", "1", "message of a failed run"),
    Var("code_version", ("run",), "str", "1", "kmc version that ran the run"),
    Var("git_hash", ("run",), "str", "1", "git commit of the code that ran the run, if known"),
    Var("host", ("run",), "str", "1", "host that ran the run"),
    Var("array_task", ("run",), "int64", "1", "job-array task that ran the run (-1: none)", -1),
)

#: Variables that depend on when and where a run ran, not on the scenario and seed.
WALL_CLOCK_AND_PROVENANCE = ("wall_seconds", "heartbeat", "heartbeat_host", "heartbeat_pid", "heartbeat_process_start",
                             "code_version", "git_hash", "host", "array_task")

#: The heartbeat's writer variables (absent from stores made before they existed: such stores' runs
#: are judged by their heartbeat's age alone).
WRITER_VARS = ("heartbeat_host", "heartbeat_pid", "heartbeat_process_start")


@dataclass
class Layout:
    """What a model writes: dimension sizes, its variables, and the x/y/z coordinates."""

    sizes: dict[str, int]
    variables: list[Var]
    coords: dict[str, tuple[tuple[str, ...], np.ndarray, dict]] = field(default_factory=dict)

    def all_vars(self) -> list[Var]:
        return list(RUN_VARS) + list(self.variables)


#: Dimensions whose length is a run's own (the protocol's bounds): runs of one store may differ
#: along them, and the store is as long as the longest run, a shorter run reading as fill past its end.
RUN_LENGTH_DIMS = ("sample", "frame", "snap", "cycle")


def merge_layouts(layouts: list[Layout]) -> Layout:
    """One layout holding every run of ``layouts`` (the layouts of a store's runs, e.g. sweep points).

    Each of RUN_LENGTH_DIMS takes its largest size; every other dimension (x, y, z), every variable and
    every coordinate must agree between the layouts that have it. A variable or dimension only some
    runs have (cycles, maps, snapshots of some points only) is kept, and reads as fill for the others.
    """
    sizes: dict[str, int] = {}
    variables: dict[str, Var] = {}
    coords: dict[str, tuple] = {}
    for layout in layouts:
        for dim, n in layout.sizes.items():
            if dim in RUN_LENGTH_DIMS:
                sizes[dim] = max(sizes.get(dim, 0), int(n))
            elif sizes.setdefault(dim, int(n)) != n:
                raise KmcError(f"runs of one store must share dimension {dim}: sizes {sizes[dim]} and {n} "
                               f"(sweep only keys that do not change the lattice's shape)")
        for v in layout.variables:
            if variables.setdefault(v.name, v) != v:
                raise KmcError(f"runs of one store must share variable {v.name!r}: {variables[v.name]} and {v}")
        for name, (dims, values, attrs) in layout.coords.items():
            seen = coords.setdefault(name, (dims, values, attrs))
            if seen[0] != dims or not np.array_equal(seen[1], values):
                raise KmcError(f"runs of one store must share coordinate {name!r} "
                               f"(sweep only keys that do not change the lattice's shape)")
    return Layout(sizes, list(variables.values()), coords)


RUN_COORD_NAMES = {"seed": "seed of the run's random generator", "replica": "replica index"}

#: UDUNITS strings for the unit suffixes of scenario keys (a swept key's coordinate gets its units).
_KEY_UNITS = (("_mah_cm2", "mA h cm-2"), ("_ma_cm2", "mA cm-2"), ("_mpa", "MPa"), ("_um", "um"), ("_nm", "nm"),
              ("_mv", "mV"), ("_v", "V"), ("_c", "degC"), ("_s", "s"))


def units_of_key(key: str) -> str:
    """UDUNITS units of a scenario key from its suffix (``conditions.stack_pressure_mpa`` → MPa); else "1"."""
    for suffix, units in _KEY_UNITS:
        if key.endswith(suffix):
            return units
    return "1"


def _chunks(var: Var, sizes: dict[str, int]) -> tuple[int, ...]:
    chunks = []
    for d in var.dims:
        if d == "run":
            chunks.append(1)
        elif d == "sample":
            chunks.append(max(1, min(sizes[d], SAMPLE_CHUNK)))
        elif d in ("frame", "snap"):
            chunks.append(1)
        else:
            chunks.append(max(1, sizes[d]))
    return tuple(chunks)


def estimate_bytes(layout: Layout, n_runs: int, state_spec: dict) -> int:
    """Uncompressed size of a full store: every variable plus two checkpoint slots per run
    (``state_spec``: the runs' State arrays, name -> (shape, dtype), ``kmc.state.ArraySpec``)."""
    sizes = dict(layout.sizes, run=n_runs)
    total = 0
    for v in layout.all_vars():
        itemsize = 64 if v.dtype == "str" else np.dtype(v.dtype).itemsize
        total += itemsize * math.prod(sizes[d] for d in v.dims)
    return total + 2 * n_runs * spec_nbytes(state_spec)


def create(location, layout: Layout, run_coords: dict[str, np.ndarray], attrs: dict,
           state_spec: dict, overwrite: bool = False):
    """Write a store's template. ``location``: a directory path, or a Zarr store object (in memory).

    ``run_coords``: coordinates along ``run`` (``seed``, ``replica``, swept keys), equal lengths.
    ``state_spec``: the runs' State arrays, name -> (shape, dtype) (``kmc.state.ArraySpec``), to size
    the checkpoint slots; nothing of that size is allocated. An existing directory is refused unless ``overwrite``; it is replaced only once
    the new template is complete, and nothing is left behind if creation fails.
    """
    import dask.array as da
    import xarray as xr

    n_runs = len(next(iter(run_coords.values())))
    sizes = dict(layout.sizes, run=n_runs)
    data_vars, encoding = {}, {}
    for v in layout.all_vars():
        shape = tuple(sizes[d] for d in v.dims)
        chunks = _chunks(v, sizes)
        fill = v.fill_value()
        if v.dtype == "str":
            arr = da.full(shape, "", dtype=object, chunks=chunks)
        else:
            arr = da.full(shape, fill, dtype=v.dtype, chunks=chunks)
        data_vars[v.name] = xr.Variable(v.dims, arr, {"units": v.units, "long_name": v.long_name, **v.attrs})
        enc = {"chunks": chunks}
        if v.dtype != "str":
            enc["_FillValue" if np.dtype(v.dtype).kind == "f" else "fill_value"] = fill
        encoding[v.name] = enc
    coords = {"run": ("run", np.arange(n_runs, dtype=np.int64), {"units": "1", "long_name": "run index"})}
    for name, values in run_coords.items():
        coords[name] = ("run", np.asarray(values),
                        {"units": units_of_key(name), "long_name": RUN_COORD_NAMES.get(name, name)})
    coords.update({k: (dims, vals, a) for k, (dims, vals, a) in layout.coords.items()})
    ds = xr.Dataset(data_vars, coords=coords, attrs=attrs)

    is_path = isinstance(location, (str, os.PathLike))
    if is_path:
        final = Path(location)
        if final.is_symlink():
            raise KmcError(f"output store {str(final)!r} is a symbolic link: give the store's real path")
        if final.exists() and not overwrite:
            raise KmcError(f"output store {str(final)!r} exists: pass --overwrite to replace it")
        # --overwrite deletes what is there: only ever a kmc store, never a user's folder or file.
        if final.exists() and not is_kmc_store(final):
            raise KmcError(f"output store {str(final)!r} exists and is not a kmc store: --overwrite "
                           f"replaces only a kmc store (choose another output path)")
        target = final.with_name(f".{final.name}.creating-{os.getpid()}")
        shutil.rmtree(target, ignore_errors=True)
        _remove_abandoned_templates(final)
    else:
        target = location
    try:
        import zarr

        with warnings.catch_warnings():
            # Consolidated metadata is not in the v3 spec yet; written once at creation it stays
            # valid (nothing writes metadata later) and saves readers a listing.
            warnings.simplefilter("ignore", category=UserWarning)
            # The string variables' template is n_runs empty strings; xarray computes them to infer
            # the dtype (and warns about it), but with compute=False writes no chunk.
            warnings.simplefilter("ignore", category=xr.SerializationWarning)
            ds.to_zarr(target, compute=False, encoding=encoding, zarr_format=3, consolidated=False,
                       mode="w")
            root = zarr.open_group(target, mode="r+")
            ckpt = root.create_group("checkpoint")
            for name, (shape, dtype) in state_spec.items():
                size = math.prod(shape)
                ckpt.create_array(name, shape=(n_runs, 2, size), chunks=(1, 1, max(1, size)), dtype=dtype,
                                  fill_value=0)
            ckpt.create_array("meta", shape=(n_runs, 2), chunks=(1, 1), dtype=str, fill_value="")
            # [slot in use (-1: none), samples covered]: one chunk per run, so it changes atomically.
            ckpt.create_array("pointer", shape=(n_runs, 2), chunks=(1, 2), dtype="int64", fill_value=-1)
            zarr.consolidate_metadata(target)
        if is_path:
            if final.exists():
                shutil.rmtree(final)
            os.replace(target, final)
    except BaseException:
        if is_path:
            shutil.rmtree(target, ignore_errors=True)
        raise


def _remove_abandoned_templates(final: Path) -> None:
    """Delete half-written templates of ``final`` left by creators that were killed (their PID is gone)."""
    for stale in final.parent.glob(f".{final.name}.creating-*"):
        try:
            pid = int(stale.name.rsplit("-", 1)[1])
            os.kill(pid, 0)
        except ValueError:
            continue
        except ProcessLookupError:
            shutil.rmtree(stale, ignore_errors=True)
        except PermissionError:  # alive, owned by someone else
            continue


def is_kmc_store(path) -> bool:
    """A directory holding a Zarr group whose attrs carry a kmc ``schema_version``."""
    try:
        meta = json.loads(Path(path, "zarr.json").read_text(encoding="utf-8"))
        return isinstance(meta, dict) and "schema_version" in meta.get("attributes", {})
    except (OSError, ValueError, AttributeError):
        return False


def open_group(location, mode: str = "r+"):
    import zarr

    if isinstance(location, (str, os.PathLike)) and not Path(location, "zarr.json").is_file():
        raise KmcError(f"{str(location)!r} is not a kmc store (no zarr.json)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        return zarr.open_group(location, mode=mode, use_consolidated=True)


def root_attrs(location) -> dict:
    return dict(open_group(location, mode="r").attrs)


def _git_hash() -> str:
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


class RunWriter:
    """Writes one run's region of a store: samples, snapshots, run variables, checkpoints."""

    def __init__(self, location, run: int):
        self.location = location
        self.run = int(run)
        self.group = open_group(location, mode="r+")
        self._arrays = {}
        self._records_writer = all(name in self.group for name in WRITER_VARS)
        self._writer_written: liveness.Writer | None = None

    def array(self, name):
        if name not in self._arrays:
            self._arrays[name] = self.group[name]
        return self._arrays[name]

    # -- data ------------------------------------------------------------------------------------
    def write_samples(self, start: int, data: dict[str, np.ndarray]) -> None:
        """Write samples ``start … start+n−1`` of each variable, then ``samples_written``."""
        n = 0
        for name, values in data.items():
            values = np.asarray(values)
            n = values.shape[0]
            self.array(name)[self.run, start:start + n] = values
        self.set(samples_written=start + n)

    def write_at(self, name: str, index: int, values) -> None:
        """Write element ``index`` along the variable's second dimension (a frame, a snapshot)."""
        self.array(name)[self.run, index] = values

    def set(self, **values) -> None:
        """Write per-run variables."""
        for name, value in values.items():
            self.array(name)[self.run] = value

    def heartbeat(self, alive: bool = True) -> None:
        """Record the run alive now, with this process as its writer; or not alive (NaN: resumable at once).

        The writer's host, id and start time go first and only when they change (the first beat, a
        clock step), so that a fresh beat always names the process that wrote it.
        """
        if alive and self._records_writer:
            me = liveness.this_process()
            if self._writer_written is None or not me.same_as(self._writer_written):
                self.set(heartbeat_host=me.host, heartbeat_pid=me.pid, heartbeat_process_start=me.started_s)
                self._writer_written = me
        self.set(heartbeat=time.time() if alive else math.nan)

    def mark_running(self, array_task: int = -1) -> None:
        from kmc import __version__

        self.set(status=STATUS_RUNNING, error="", code_version=__version__, git_hash=_git_hash(),
                 host=liveness.this_host(), array_task=array_task)
        self.heartbeat()

    # -- checkpoints -----------------------------------------------------------------------------
    def pointer(self) -> tuple[int, int]:
        slot, samples = (int(v) for v in self.group["checkpoint/pointer"][self.run])
        return slot, samples

    def save_checkpoint(self, state: State, samples_done: int) -> None:
        """Write the State into the free slot, then point to it (the pointer chunk last).

        A slot is as long as the longest run's array (runs of a sweep differ, e.g. in their number of
        cycles); an array fills the start of its slot and the meta records its length.
        """
        slot, _ = self.pointer()
        new = 1 - slot if slot in (0, 1) else 0
        lengths = {}
        for name, arr in state.arrays().items():
            flat, target = arr.ravel(), self.group[f"checkpoint/{name}"]
            if flat.size > target.shape[2]:
                raise KmcError(f"checkpoint array {name!r} of run {self.run} has {flat.size} elements, more "
                               f"than the store's slot of {target.shape[2]}")
            target[self.run, new, :flat.size] = flat
            lengths[name] = int(flat.size)
        self.group["checkpoint/meta"][self.run, new] = json.dumps({**state.meta(), "array_lengths": lengths})
        self.group["checkpoint/pointer"][self.run] = np.array([new, samples_done], dtype=np.int64)

    def load_checkpoint(self) -> tuple[State, int] | None:
        """The last complete checkpoint and the number of samples it covers, or None."""
        slot, samples = self.pointer()
        if slot not in (0, 1):
            return None
        meta = json.loads(str(self.group["checkpoint/meta"][self.run, slot]))
        lengths = meta.pop("array_lengths", {})  # absent in stores whose slots are exactly one State long
        arrays = {}
        for name in self.group["checkpoint"].array_keys():
            if name not in ("meta", "pointer"):
                ckpt = self.group[f"checkpoint/{name}"]
                n = lengths.get(name, ckpt.shape[2])
                arrays[name] = np.asarray(ckpt[self.run, slot, :n])
        return State.from_parts(meta, arrays), samples

    def clear_checkpoint(self) -> None:
        self.group["checkpoint/pointer"][self.run] = np.array([-1, 0], dtype=np.int64)
