"""The State of a run: every array the engine needs, and its checkpoint.

Nothing a run needs lives outside its State, so a checkpoint is the State written out and a resume is
the State read back. That includes the selection structure itself (not rebuilt on restore) and the
random generator's state, so a restored run continues bit for bit.
"""
from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Version of the checkpoint layout; bumped when a field is added or its meaning changes.
CHECKPOINT_VERSION = 1

#: Every array of a State by its flat name (as ``State.arrays``: fields prefixed ``field.``) -> (shape,
#: dtype). A model's ``state_spec`` gives it from the scenario's sizes alone; its ``new_state`` allocates
#: from the same table (``allocate``), so the checkpoint slots and the memory estimate, which read the
#: table, cannot drift from the State a run builds.
ArraySpec = dict[str, tuple[tuple[int, ...], np.dtype]]


def allocate(spec: ArraySpec) -> dict[str, np.ndarray]:
    """Zeroed arrays of the spec's shapes and dtypes, by name."""
    return {name: np.zeros(shape, dtype=dtype) for name, (shape, dtype) in spec.items()}


def spec_nbytes(spec: ArraySpec) -> int:
    """Bytes the spec's arrays hold."""
    return sum(math.prod(shape) * np.dtype(dtype).itemsize for shape, dtype in spec.values())


@dataclass
class State:
    """Everything one run needs.

    Attributes
    ----------
    model : name of the model whose kernels act on this state (``"hop"``, ``"hop-random"``, …).
    shape : lattice size ``(nx, ny, nz)`` in voxels.
    z_periodic : whether z wraps around (x and y always do).
    lattice : uint8 state code per voxel, flat, x fastest.
    tree, tree_offsets : the event-selection sum tree (``kmc.kernels.solver``).
    clock : float64[1], simulated time in s.
    counters : int64 event counters; ``counters[0]`` is the total number of events.
    fields : model arrays by name (per-site or per-column), e.g. ``empty_count``.
    params : the model's scalar parameters (JSON-serialisable).
    rng : the run's random generator (PCG64); its state is part of the checkpoint.
    """

    model: str
    shape: tuple[int, int, int]
    z_periodic: bool
    lattice: np.ndarray
    tree: np.ndarray
    tree_offsets: np.ndarray
    clock: np.ndarray
    counters: np.ndarray
    rng: np.random.Generator
    fields: dict[str, np.ndarray] = field(default_factory=dict)
    params: dict = field(default_factory=dict)

    @property
    def n_sites(self) -> int:
        return int(self.lattice.size)

    @property
    def time_s(self) -> float:
        return float(self.clock[0])

    @property
    def events(self) -> int:
        return int(self.counters[0])

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array of the state by a flat name (fields prefixed ``field.``)."""
        out = {
            "lattice": self.lattice,
            "tree": self.tree,
            "tree_offsets": self.tree_offsets,
            "clock": self.clock,
            "counters": self.counters,
        }
        out.update({f"field.{k}": v for k, v in self.fields.items()})
        return out

    def spec(self) -> ArraySpec:
        """Every array's shape and dtype by name (what a model's ``state_spec`` predicts)."""
        return {name: (a.shape, a.dtype) for name, a in self.arrays().items()}

    @classmethod
    def from_arrays(cls, model: str, shape, z_periodic: bool, arrays: dict[str, np.ndarray],
                    rng: np.random.Generator, params: dict) -> State:
        """A State over arrays named as ``arrays()`` gives them (e.g. ``allocate(spec)``, then filled)."""
        return cls(model=model, shape=tuple(int(n) for n in shape), z_periodic=bool(z_periodic),
                   lattice=arrays["lattice"], tree=arrays["tree"], tree_offsets=arrays["tree_offsets"],
                   clock=arrays["clock"], counters=arrays["counters"], rng=rng,
                   fields={k.removeprefix("field."): v for k, v in arrays.items() if k.startswith("field.")},
                   params=params)

    def nbytes(self) -> int:
        """Bytes held by the state's arrays (what the engine keeps per run)."""
        return sum(a.nbytes for a in self.arrays().values())

    def meta(self) -> dict:
        """Everything but the arrays, as JSON-serialisable values."""
        return {
            "checkpoint_version": CHECKPOINT_VERSION,
            "model": self.model,
            "shape": list(self.shape),
            "z_periodic": self.z_periodic,
            "params": self.params,
            "rng_state": self.rng.bit_generator.state,
        }

    @classmethod
    def from_parts(cls, meta: dict, arrays: dict[str, np.ndarray]) -> State:
        """Rebuild a State from ``meta()`` and ``arrays()`` (the inverse of both)."""
        if meta.get("checkpoint_version") != CHECKPOINT_VERSION:
            raise ValueError(
                f"checkpoint version {meta.get('checkpoint_version')!r} is not "
                f"{CHECKPOINT_VERSION}, the one this version of kmc reads"
            )
        rng_state = meta["rng_state"]
        bit_generator = getattr(np.random, rng_state["bit_generator"])()
        bit_generator.state = rng_state
        return cls(
            model=meta["model"],
            shape=tuple(int(n) for n in meta["shape"]),
            z_periodic=bool(meta["z_periodic"]),
            lattice=arrays["lattice"],
            tree=arrays["tree"],
            tree_offsets=arrays["tree_offsets"],
            clock=arrays["clock"],
            counters=arrays["counters"],
            rng=np.random.Generator(bit_generator),
            fields={k.removeprefix("field."): v for k, v in arrays.items() if k.startswith("field.")},
            params=dict(meta["params"]),
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write a checkpoint file atomically (temporary file, then rename)."""
        path = Path(path)
        buf = io.BytesIO()
        meta = np.frombuffer(json.dumps(self.meta()).encode(), dtype=np.uint8)
        np.savez(buf, __meta__=meta, **self.arrays())
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(buf.getbuffer())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> State:
        """Read a checkpoint written by ``save``."""
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k].copy() for k in data.files if k != "__meta__"}
            meta = json.loads(data["__meta__"].tobytes().decode())
        return cls.from_parts(meta, arrays)

    def differences(self, other: State) -> list[str]:
        """Names of everything that differs from ``other`` bit for bit (empty if identical)."""
        diffs = [k for k in ("model", "shape", "z_periodic", "params") if getattr(self, k) != getattr(other, k)]
        if self.rng.bit_generator.state != other.rng.bit_generator.state:
            diffs.append("rng")
        mine, theirs = self.arrays(), other.arrays()
        for k in sorted(set(mine) | set(theirs)):
            a, b = mine.get(k), theirs.get(k)
            if a is None or b is None or a.dtype != b.dtype or a.shape != b.shape or a.tobytes() != b.tobytes():
                diffs.append(k)
        return diffs
