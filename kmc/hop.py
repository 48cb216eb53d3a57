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
from kmc.kernels.solver import tree_build, tree_new
from kmc.state import State

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
    lattice = np.zeros(n_sites, dtype=np.uint8)
    lattice[rng.choice(n_sites, size=round(fraction * n_sites), replace=False)] = hop_kernels.OCCUPIED
    if rate_decades > 0.0:
        rate_mult = (10.0 ** rng.uniform(-rate_decades, 0.0, size=n_sites)).astype(np.float32)
    else:
        rate_mult = np.ones(n_sites, dtype=np.float32)
    empty_count = np.zeros(n_sites, dtype=np.uint8)
    hop_kernels.count_empty_neighbors(lattice, nx, ny, nz, z_periodic, empty_count,
                                      np.empty(N_NEIGHBORS, dtype=np.int64))
    tree, offsets = tree_new(n_sites)
    hop_kernels.fill_leaves(tree, lattice, empty_count, rate_mult)
    tree_build(tree, offsets)
    return State(
        model="hop-random" if rate_decades > 0.0 else "hop",
        shape=(int(nx), int(ny), int(nz)),
        z_periodic=bool(z_periodic),
        lattice=lattice,
        tree=tree,
        tree_offsets=offsets,
        clock=np.zeros(1, dtype=np.float64),
        counters=np.zeros(1, dtype=np.int64),
        rng=rng,
        fields={"empty_count": empty_count, "rate_mult": rate_mult},
        params={"fraction": float(fraction), "rate_decades": float(rate_decades), "seed": int(seed)},
    )


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
