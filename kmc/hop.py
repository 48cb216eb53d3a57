"""The hop benchmark model, Python side: building its State and advancing it.

The engine benchmark of lattice KMC codes: a periodic L³ simple-cubic lattice, a fraction f of the
sites occupied at random, each particle hopping to each empty first neighbour at rate 1 (s⁻¹). The
``hop-random`` variant gives each site a rate multiplier drawn log-uniformly over ``rate_decades``
decades (between 10^−decades and 1), so the benchmark shows that the speed does not rely on equal
rates. The kernels are in ``kmc.kernels.hop``.
"""
from __future__ import annotations

import math

import numpy as np

from kmc.errors import ScenarioError
from kmc.kernels import hop as hop_kernels
from kmc.kernels.lattice import N_NEIGHBORS
from kmc.kernels.solver import STOP_EVENTS, STOP_NO_EVENTS, tree_build, tree_offsets
from kmc.state import ArraySpec, State, allocate, spec_nbytes

MODELS = ("hop", "hop-random")


def new_state(size: int, fraction: float = 0.5, seed: int = 0, rate_decades: float = 0.0,
              shape: tuple[int, int, int] | None = None, z_periodic: bool = True) -> State:
    """A fresh hop-model State.

    Parameters
    ----------
    size : edge L of the periodic L³ lattice, in sites (ignored when ``shape`` is given).
    fraction : fraction of sites occupied, 0 < f < 1; exactly ``round(f·N)`` sites are filled.
    seed : seed of the run's PCG64 generator (placement, multipliers and events all draw from it).
    rate_decades : 0 for the plain hop model (every rate 1 s⁻¹); > 0 for ``hop-random``, whose
        per-site multipliers are log-uniform on [10^−rate_decades, 1].
    shape : ``(nx, ny, nz)`` for a non-cubic lattice.
    z_periodic : False puts walls at z = 0 and z = nz − 1.
    """
    nx, ny, nz = shape if shape is not None else (size, size, size)
    for key, n in (("nx", nx), ("ny", ny), ("nz", nz)):
        if not isinstance(n, (int, np.integer)) or n < 2:
            raise ScenarioError(f"hop.{key}", n, "an integer of at least 2 sites")
    if not 0.0 < fraction < 1.0:
        raise ScenarioError("hop.fraction", fraction, "a number strictly between 0 and 1")
    if not (0.0 <= rate_decades <= 15.0) or math.isnan(rate_decades):
        raise ScenarioError("hop.rate_decades", rate_decades, "a number from 0 to 15")
    n_sites = nx * ny * nz
    rng = np.random.default_rng(seed)
    arrays = allocate(state_spec((nx, ny, nz)))
    lattice, rate_mult, empty_count = arrays["lattice"], arrays["field.rate_mult"], arrays["field.empty_count"]
    lattice[rng.choice(n_sites, size=round(fraction * n_sites), replace=False)] = hop_kernels.OCCUPIED
    if rate_decades > 0.0:
        rate_mult[:] = 10.0 ** rng.uniform(-rate_decades, 0.0, size=n_sites)
    else:
        rate_mult[:] = 1.0
    hop_kernels.count_empty_neighbors(lattice, nx, ny, nz, z_periodic, empty_count,
                                      np.empty(N_NEIGHBORS, dtype=np.int64))
    tree, offsets = arrays["tree"], arrays["tree_offsets"]
    offsets[:] = tree_offsets(n_sites)
    hop_kernels.fill_leaves(tree, lattice, empty_count, rate_mult)
    tree_build(tree, offsets)
    return State.from_arrays("hop-random" if rate_decades > 0.0 else "hop", (nx, ny, nz), z_periodic, arrays, rng,
                             {"fraction": float(fraction), "rate_decades": float(rate_decades), "seed": int(seed)})


def state_spec(shape: tuple[int, int, int]) -> ArraySpec:
    """Every array of a hop-model State, name -> (shape, dtype), from the lattice shape alone."""
    n_sites = math.prod(int(n) for n in shape)
    offsets = tree_offsets(n_sites)
    return {
        "lattice": ((n_sites,), np.dtype(np.uint8)), "tree": ((int(offsets[-1]),), np.dtype(np.float64)),
        "tree_offsets": (offsets.shape, np.dtype(np.int64)), "clock": ((1,), np.dtype(np.float64)),
        "counters": ((1,), np.dtype(np.int64)),
        "field.empty_count": ((n_sites,), np.dtype(np.uint8)), "field.rate_mult": ((n_sites,), np.dtype(np.float32)),
    }


def advance(state: State, max_events: int | None = None, until_time_s: float | None = None) -> int:
    """Run events until ``max_events`` more have run or the clock would pass ``until_time_s``.

    At least one bound must be given. Returns the kernel's stop code (``kmc.kernels.solver.STOP_*``).
    """
    if state.model not in MODELS:
        raise ValueError(f"state of model {state.model!r} is not a hop-model state")
    if max_events is None and until_time_s is None:
        raise ValueError("advance needs max_events or until_time_s")
    n = np.iinfo(np.int64).max if max_events is None else int(max_events)
    t_end = math.inf if until_time_s is None else float(until_time_s)
    if n < 0:
        raise ValueError(f"max_events must be >= 0, got {n}")
    nx, ny, nz = state.shape
    work = np.empty(4 * hop_kernels.STENCIL_SIZE, dtype=np.int64)
    return hop_kernels.run_batch(
        state.lattice, state.fields["empty_count"], state.fields["rate_mult"], state.tree,
        state.tree_offsets, nx, ny, nz, state.z_periodic, state.clock, state.counters, state.rng,
        n, t_end, work,
    )


class HopModel:
    """The hop model as a scenario (``[model] kind = "hop"``): what the runner needs of a model.

    Samples are taken every ``output.sample_every_s`` of simulated time from 0 to ``hop.duration_s``
    (default: 500 intervals); each records the time, the number of events so far and the total
    event rate. With ``output.snapshot_every_samples`` the lattice is stored every that many samples.
    """

    kind = "hop"
    #: Events per kernel call while advancing to a sample time: keeps Python's checks (signals,
    #: progress) a fraction of a second apart without changing the trajectory.
    EVENTS_PER_CALL = 500_000

    def __init__(self, scenario):
        self.scenario = scenario
        hop_cfg = scenario.data["hop"]
        out = scenario.data.get("output", {})
        self.size = int(hop_cfg["size"])
        self.fraction = float(hop_cfg["fraction"])
        self.rate_decades = float(hop_cfg["rate_decades"])
        self.duration_s = float(hop_cfg["duration_s"])
        every = out.get("sample_every_s")
        self.sample_every_s = float(every) if every else self.duration_s / 500.0
        self.n_samples = int(math.floor(self.duration_s / self.sample_every_s * (1 + 1e-12))) + 1
        snap_every = out.get("snapshot_every_samples")
        self.snapshot_every = int(snap_every) if snap_every else 0
        self.n_snaps = -(-self.n_samples // self.snapshot_every) if self.snapshot_every else 0

    def layout(self):
        from kmc.store import Layout, Var

        L = self.size
        variables = [
            Var("time", ("run", "sample"), "float64", "s", "simulated time"),
            Var("event_count", ("run", "sample"), "int64", "1", "KMC events executed so far", -1),
            Var("total_rate", ("run", "sample"), "float64", "s-1", "total event rate"),
        ]
        sizes = {"sample": self.n_samples}
        coords = {}
        if self.n_snaps:
            sizes.update(snap=self.n_snaps, z=L, y=L, x=L)
            variables += [
                Var("lattice", ("run", "snap", "z", "y", "x"), "uint8", "1", "site state", 255,
                    {"flag_values": [0, 1], "flag_meanings": "empty occupied"}),
                Var("snap_time", ("run", "snap"), "float64", "s", "simulated time of the snapshot"),
            ]
            for axis in "xyz":
                coords[axis] = ((axis,), np.arange(L, dtype=np.int64),
                                {"units": "1", "long_name": f"site index along {axis}"})
        return Layout(sizes, variables, coords)

    def new_state(self, seed: int) -> State:
        return new_state(self.size, self.fraction, seed=seed, rate_decades=self.rate_decades)

    @property
    def size_keys(self) -> dict:
        """The scenario key that sets the lattice's size (an L³ lattice), with its value."""
        return {"hop.size": self.size}

    def state_spec(self) -> ArraySpec:
        """Every State array, name -> (shape, dtype), without allocating (``new_state`` allocates from it)."""
        return state_spec((self.size,) * 3)

    def memory_phases(self) -> dict:
        """Bytes a run holds at the peak of each phase, by part (``kmc.memory``): placing the particles
        (``Generator.choice`` without replacement: an int64 permutation of the sites), the multipliers of
        hop-random (float64 draws and their power), the run (the State; a snapshot's write), a resume."""
        from kmc import memory

        spec = self.state_spec()
        n = self.size**3
        state = spec_nbytes(spec)
        placement = 8 * n + 8 * round(self.fraction * n)  # the permutation, and the chosen sites
        draws = 16 * n if self.rate_decades > 0 else 0  # the float64 draws and their power, after the placement
        return {
            "building the State": {"state": state, "temporaries": max(placement, draws)},
            "writing a snapshot": {"state": state,
                                   "snapshot write": memory.zarr_write_bytes(n, 1) if self.n_snaps else 0},
            "writing a checkpoint": {"state": state, "checkpoint write": memory.checkpoint_write_bytes(spec)},
            "reading a checkpoint": {"state": state, "checkpoint read": memory.checkpoint_read_bytes(spec)},
        }

    def advance_sample(self, state: State, k: int) -> dict:
        """Advance to sample k's time and return its observables."""
        t_k = k * self.sample_every_s
        code = STOP_EVENTS
        while code == STOP_EVENTS:
            code = advance(state, max_events=self.EVENTS_PER_CALL, until_time_s=t_k)
        if code == STOP_NO_EVENTS:  # a frozen lattice: time passes, nothing happens
            state.clock[0] = t_k
        return {"time": state.time_s, "event_count": state.events, "total_rate": float(state.tree[-1])}

    def records(self, state: State, k: int) -> list:
        """Snapshot variables due at sample k, as (variable, snap index, value) triples."""
        if not self.snapshot_every or k % self.snapshot_every:
            return []
        L = self.size
        i = k // self.snapshot_every
        return [("lattice", i, state.lattice.reshape(L, L, L)), ("snap_time", i, state.time_s)]
