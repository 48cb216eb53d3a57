"""A run's peak memory, estimated from the scenario's sizes before anything the size of the lattice is
allocated, and the refusal of a run that would not fit.

The peak of a run's process is the interpreter's **baseline** — Python, NumPy, SciPy, Numba with the
kernels loaded from its cache, Zarr, xarray and Dask — plus the largest, over the **phases** of a run, of
what the phase holds at once: the State (sizes and dtypes from the model's ``state_spec``, never a built
State) and the phase's temporaries, which each model lists in its ``memory_phases`` (the battery's in
``kmc.battery.memory``: geometry, the fresh State, field solves, the event loop's scratch, the
observables, checkpoint and snapshot writes, a resume's checkpoint read). Everything is counted as
allocated, even zeroed pages a short run never touches, so the estimate is what a run may come to, not
what its first seconds use.

A run is refused (a ``KmcError``: exit code 2, one line, nothing written) when its estimate exceeds the
limit: ``--max-memory SIZE`` when given, else the memory this machine has available now
(``available_bytes``: the kernel's MemAvailable, lowered to the room left under a cgroup's limit — a
container, a SLURM job's ``--mem``). MemAvailable is read from /proc/meminfo rather than through
psutil: it is the same figure psutil reports on Linux, and one file does not warrant a dependency.
Where neither is known (not Linux), only ``--max-memory`` is checked.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field

from kmc.errors import KmcError

#: RSS of a run's process before its lattice (MiB → bytes): the interpreter with NumPy, SciPy, Numba,
#: Zarr, xarray, Dask and rich imported and the kernels loaded from Numba's cache (a run on an 8 × 8 × 48
#: lattice, `benchmarks/memory.py`, 2026-11-24: 81 MiB). The first run after an install also compiles
#: the kernels, ~200 MiB more for a minute; that is not counted.
BASELINE_BYTES = 250 * 2**20

#: Zarr (3.1, zstd) writing one chunk holds the codec pipeline's copies beside the array: measured
#: twice the chunk's bytes, and at least 6 bytes per element (uint8 chunks) ...
ZARR_WRITE_COPIES = 2.0
ZARR_WRITE_MIN_BYTES_PER_ELEMENT = 6.0
#: ... and reading one back once to 2.5 times its bytes (the decoded chunk; a slice of it, the compressed
#: chunk): the larger counted.
ZARR_READ_COPIES = 2.5

_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


@dataclass(frozen=True)
class Estimate:
    """A run's estimated peak: the baseline plus what the peak phase holds, by part (bytes)."""

    size_keys: dict[str, int]  #: the scenario keys that set the lattice's size, with their values
    phase: str  #: the phase at which the run peaks
    parts: dict[str, int]  #: what that phase holds beyond the baseline, by part
    baseline_bytes: int = BASELINE_BYTES
    phases: dict[str, int] = field(default_factory=dict, compare=False)  #: every phase's total, beyond the baseline

    @property
    def peak_bytes(self) -> int:
        return self.baseline_bytes + sum(self.parts.values())

    def lattice(self) -> str:
        """``lattice.nx × lattice.ny × lattice.nz = 128 × 128 × 48``."""
        return " × ".join(self.size_keys) + " = " + " × ".join(str(v) for v in self.size_keys.values())

    def describe(self) -> str:
        """The estimate with its largest parts, for a dry run."""
        parts = sorted(self.parts.items(), key=lambda kv: -kv[1])
        shown = ", ".join(f"{name} {format_bytes(b)}" for name, b in parts[:4] if b > 0)
        return (f"about {format_bytes(self.peak_bytes)} per run, at its peak {self.phase} ({shown}; "
                f"interpreter {format_bytes(self.baseline_bytes)})")


def estimate(model, in_memory_store: tuple[int, int] | None = None) -> Estimate:
    """The peak of one run of ``model`` (a ``kmc.model.Model``): the baseline plus its largest phase.

    ``in_memory_store``: (store bytes, Dataset bytes) for ``kmc.simulate``, whose store is in memory
    through the whole run (bounded by its uncompressed size: zstd never grows data by more than a few
    bytes) and which then loads the Dataset from it, once the run's State is gone."""
    phases = {name: dict(parts) for name, parts in model.memory_phases().items()}
    if in_memory_store is not None:
        store, dataset = (int(b) for b in in_memory_store)
        for parts in phases.values():
            parts["store in memory"] = store
        phases["loading the Dataset"] = {"store in memory": store, "dataset": dataset}
    totals = {name: sum(parts.values()) for name, parts in phases.items()}
    peak = max(totals, key=totals.get)
    return Estimate(dict(model.size_keys), peak, phases[peak], phases=totals)


def zarr_write_bytes(size: int, itemsize: int) -> int:
    """Bytes Zarr holds beyond the array while it writes one chunk of ``size`` elements."""
    return int(max(ZARR_WRITE_COPIES * size * itemsize, ZARR_WRITE_MIN_BYTES_PER_ELEMENT * size))


def checkpoint_write_bytes(spec) -> int:
    """A checkpoint writes the State's arrays one chunk each, one after another: the largest one's copies."""
    import numpy as np

    return max((zarr_write_bytes(math.prod(shape), np.dtype(dtype).itemsize) for shape, dtype in spec.values()),
               default=0)


def checkpoint_read_bytes(spec) -> int:
    """Reading a checkpoint back: the largest array's copies while it is decoded."""
    import numpy as np

    return int(max((ZARR_READ_COPIES * math.prod(shape) * np.dtype(dtype).itemsize for shape, dtype in spec.values()),
                   default=0))


# -- sizes -------------------------------------------------------------------------------------------------

def parse_size(text) -> int:
    """Bytes from a size such as ``8G``, ``500M``, ``1.5GiB``, ``2T`` or ``1000000`` (powers of 1024, as
    SLURM's ``--mem``); a KmcError names what is allowed."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMGT]?)(?:I?B)?\s*", str(text), re.IGNORECASE)
        if not m:
            raise KmcError(f"--max-memory = {text!r} is not allowed: expected a size such as 8G, 500M or 1.5GiB "
                           f"(K, M, G, T: powers of 1024; no unit: bytes)")
        value, unit = float(m.group(1)), m.group(2).upper()
    size = value * _UNITS[unit]
    if not (math.isfinite(size) and size >= 1):
        raise KmcError(f"--max-memory = {text!r} is not allowed: expected a size of at least 1 byte")
    return int(size)


def format_bytes(n: float) -> str:
    """``1.5 GiB``, ``340 MiB``."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            value = n / scale
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{int(n)} B"


# -- what is available ---------------------------------------------------------------------------------------

def available_bytes() -> tuple[int | None, str]:
    """The memory a new run may take on this machine now (bytes, or None if unknown) and where the figure
    comes from: MemAvailable of /proc/meminfo (free memory plus the page cache and other memory the
    kernel can reclaim), or less where a cgroup limit (v2 or v1: a container, a SLURM job) leaves less."""
    best, source = None, "unknown"
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    best, source = int(line.split()[1]) * 1024, "available on this machine (MemAvailable)"
                    break
    except (OSError, ValueError, IndexError):
        pass
    room = _cgroup_room_bytes()
    if room is not None and (best is None or room < best):
        best, source = room, "left under this process's cgroup memory limit"
    if best is None:
        try:  # other Unix systems: free pages only
            best = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            source = "free on this machine"
        except (ValueError, OSError, AttributeError):
            pass
    return best, source


def _read_int(path) -> int | None:
    try:
        with open(path, encoding="ascii") as fh:
            text = fh.read().strip()
        return None if text == "max" else int(text)
    except (OSError, ValueError):
        return None


def _stat_value(path, key: str) -> int:
    try:
        with open(path, encoding="ascii") as fh:
            for line in fh:
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _cgroup_room_bytes() -> int | None:
    """Room under the tightest memory limit of this process's cgroup and its ancestors (limit − usage, the
    inactive page cache counted as room, as MemAvailable does), or None without a limit."""
    try:
        with open("/proc/self/cgroup", encoding="ascii") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    rooms = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2
            base, limit_f, usage_f, stat_f, cache_key = ("/sys/fs/cgroup", "memory.max", "memory.current",
                                                         "memory.stat", "inactive_file")
        elif "memory" in controllers.split(","):  # cgroup v1
            base, limit_f, usage_f, stat_f, cache_key = ("/sys/fs/cgroup/memory", "memory.limit_in_bytes",
                                                         "memory.usage_in_bytes", "memory.stat", "total_inactive_file")
        else:
            continue
        parts = [p for p in path.split("/") if p]
        for depth in range(len(parts), -1, -1):
            d = os.path.join(base, *parts[:depth])
            limit = _read_int(os.path.join(d, limit_f))
            usage = _read_int(os.path.join(d, usage_f))
            if limit is None or usage is None or limit >= 2**60:  # no limit (v1 writes a huge number)
                continue
            rooms.append(max(0, limit - usage + _stat_value(os.path.join(d, stat_f), cache_key)))
    return min(rooms) if rooms else None


# -- the refusal -------------------------------------------------------------------------------------------

def limit_bytes(max_memory=None, workers: int = 1) -> tuple[int | None, str]:
    """The memory one run may take, and how it was set: ``max_memory`` (a size, ``parse_size``) if given,
    else what this machine has available (``available_bytes``) shared by ``workers`` runs held at once."""
    if max_memory is not None:
        n = parse_size(max_memory)
        return n, f"--max-memory {format_bytes(n)}"
    n, source = available_bytes()
    if n is None:
        return None, source
    if workers > 1:
        share = n // workers
        return share, f"{format_bytes(share)} per run ({format_bytes(n)} {source}, over {workers} workers)"
    return n, f"{format_bytes(n)} {source}"


def check(est: Estimate, max_memory=None, workers: int = 1) -> None:
    """Refuse (KmcError: one line naming the lattice keys, the estimate and the limit) a run whose
    estimated peak exceeds what one run may take (``limit_bytes``); nothing is checked where the limit
    is unknown and not given."""
    limit, source = limit_bytes(max_memory, workers)
    if limit is None or est.peak_bytes <= limit:
        return
    raise KmcError(f"{est.lattice()} needs about {format_bytes(est.peak_bytes)} of memory per run, more than "
                   f"{'the ' if max_memory is None else ''}{source}: use a smaller lattice"
                   + (" or fewer --workers" if workers > 1 and max_memory is None else "")
                   + ", or run where more memory is free (--max-memory SIZE sets the limit)")
