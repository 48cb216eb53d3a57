"""The engine benchmark: the hop model and its random-rate variant through the production solver.

One line per run, machine-readable (``key=value`` fields):

    hop L=46 sites=97336 events=3905000 seconds=2.003 events_per_s=1949576 state_bytes_per_site=15.14 peak_rss_mb=171.2

- ``events_per_s``: events executed divided by the wall time of the timed batches, after a warm-up
  batch that compiles (or loads from cache) the kernels and warms the caches.
- ``state_bytes_per_site``: bytes of every array in the run's State (lattice, per-site model fields,
  sum tree, clock, counters) divided by the number of sites.
- ``peak_rss_mb``: the benchmark process's peak resident memory so far (Linux ``ru_maxrss``), which
  includes Python, NumPy and Numba's compiler, not only the State.
"""
from __future__ import annotations

import resource
import sys
import time

from kmc import hop

DEFAULT_SIZES = (22, 46, 100)
RANDOM_RATE_DECADES = 3.0


def bench_hop(size: int, fraction: float = 0.5, rate_decades: float = 0.0, min_seconds: float = 2.0,
              seed: int = 1, batch_events: int = 100_000) -> dict:
    """Time the hop model on an L³ lattice for at least ``min_seconds`` of events after warm-up."""
    state = hop.new_state(size, fraction, seed=seed, rate_decades=rate_decades)
    hop.advance(state, max_events=10_000)
    events0 = state.events
    t0 = time.perf_counter()
    while True:
        hop.advance(state, max_events=batch_events)
        seconds = time.perf_counter() - t0
        if seconds >= min_seconds:
            break
    events = state.events - events0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "model": state.model,
        "L": size,
        "sites": state.n_sites,
        "events": events,
        "seconds": seconds,
        "events_per_s": events / seconds,
        "state_bytes_per_site": state.nbytes() / state.n_sites,
        "peak_rss_mb": peak_kb / 1024.0 if sys.platform != "darwin" else peak_kb / 2**20,
    }


def format_result(r: dict) -> str:
    return (
        f"{r['model']} L={r['L']} sites={r['sites']} events={r['events']} seconds={r['seconds']:.3f} "
        f"events_per_s={r['events_per_s']:.0f} state_bytes_per_site={r['state_bytes_per_site']:.2f} "
        f"peak_rss_mb={r['peak_rss_mb']:.1f}"
    )


def run_benchmarks(sizes=DEFAULT_SIZES, fraction: float = 0.5, min_seconds: float = 2.0,
                   models=("hop", "hop-random"), seed: int = 1, out=None):
    """Run every (model, size), printing one line each as it finishes; returns the results."""
    out = out or sys.stdout
    results = []
    for model in models:
        decades = RANDOM_RATE_DECADES if model == "hop-random" else 0.0
        for size in sizes:
            r = bench_hop(size, fraction, decades, min_seconds, seed)
            print(format_result(r), file=out, flush=True)
            results.append(r)
    return results
