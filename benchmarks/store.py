"""End-to-end benchmark of the store and of Dask sweeps, on the hop model.

    python benchmarks/store.py [--overhead-seconds 10] [--run-seconds 30] [--runs 4] [--size 22]

Prints machine-readable lines:

    store_overhead run_s=<s> bare_s=<s> overhead_pct=<%> run_cpu_s=<s> bare_cpu_s=<s> overhead_cpu_pct=<%> ...
    dask workers=1 runs=<n> seconds=<s> runs_per_hour=<r> run_s=<s> startup_s=<s>
    dask workers=2 runs=<n> seconds=<s> runs_per_hour=<r> run_s=<s> startup_s=<s>
    speedup=<x>

1. Store overhead: one hop run of at least ``--overhead-seconds`` of wall time at the default sampling
   (500 intervals, snapshots at their default) executed into a store by the production runner, versus
   the same run (same seed, same events) advancing the State sample by sample through the model with
   nothing written. Both after a warm-up, so neither pays for loading the compiled kernels.
2. Dask scaling: ``--runs`` runs of at least ``--run-seconds`` each (the hop scenario's duration sized
   so from a calibration) on a LocalCluster of 1 and of 2 worker processes. ``seconds`` is the wall
   time of ``run_dask`` on a started cluster (each worker loads the kernels from Numba's cache on its
   first run); ``startup_s`` the cluster's start-up; ``run_s`` the mean wall_seconds the runs recorded.

Lines starting with ``#`` are context (load average, calibration), not results.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from kmc.api import plan_replicas
from kmc.config import load_scenario
from kmc.executors import WORKER_ENV, run_dask, run_serial
from kmc.hop import HopModel

SEED = 20261122


def hop_scenario(size: int, duration_s: float, fraction: float = 0.5):
    """The hop scenario (scenarios/hop.toml's model) at the default sampling: 500 intervals."""
    return load_scenario({"scenario": {"name": "hop-bench", "seed": SEED}, "model": {"kind": "hop"},
                          "hop": {"size": size, "fraction": fraction, "duration_s": float(duration_s)}})


def bare_run(scenario, seed: int = SEED) -> tuple[float, int, float]:
    """Wall seconds, events and CPU seconds of a run advanced sample by sample with nothing written."""
    model = HopModel(scenario)
    t0, c0 = time.perf_counter(), time.process_time()
    state = model.new_state(seed)
    for k in range(model.n_samples):
        # What kmc.runner asks of the model at each sample; the values go nowhere.
        if model.advance_sample(state, k) is None:
            break
        model.records(state, k)
    return time.perf_counter() - t0, int(state.events), time.process_time() - c0


def sim_seconds_per_wall_second(size: int, wall_s: float = 2.0) -> float:
    """Calibration: simulated seconds per wall second of the bare model at this size."""
    duration = 2.0
    while True:
        wall, _, _ = bare_run(hop_scenario(size, duration))
        if wall >= wall_s:
            return duration / wall
        duration *= max(2.0, 1.2 * wall_s / max(wall, 1e-3))


def store_run(scenario, folder: Path, name: str, seed: int = SEED) -> tuple[float, int, float]:
    """Wall seconds, events and CPU seconds (this process, all threads) of executing one run into a
    fresh store (template written beforehand, not timed)."""
    import zarr

    location = folder / name
    plan_replicas(scenario, 1, seed, command="benchmarks/store.py").create(str(location))
    t0, c0 = time.perf_counter(), time.process_time()
    outcome = run_serial(str(location), [0], progress=False)[0]
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if outcome != "done":
        raise RuntimeError(f"the benchmark run did not finish: {outcome}")
    return wall, int(zarr.open_group(str(location), mode="r")["events"][0]), cpu


def store_overhead(size: int, min_wall_s: float, folder: Path, repeats: int = 3) -> None:
    rate = sim_seconds_per_wall_second(size)
    duration = round(rate * min_wall_s * 1.15, 1)  # a margin above the minimum wall time
    print(f"# calibration size={size} sim_s_per_wall_s={rate:.2f} -> duration_s={duration}", flush=True)
    scenario = hop_scenario(size, duration)
    model = HopModel(scenario)
    bare_run(hop_scenario(size, 1.0))  # warm-up: kernels loaded, store code imported
    store_run(hop_scenario(size, 1.0), folder, "warmup.zarr")
    # Alternate the two and keep each one's best: the machine may be shared. CPU seconds (of this
    # process) are reported too, as they hardly depend on other processes' load.
    bare, run, bare_cpu, run_cpu, events = [], [], [], [], set()
    for i in range(repeats):
        b, e_bare, bc = bare_run(scenario)
        r, e_store, rc = store_run(scenario, folder, f"overhead{i}.zarr")
        bare.append(b), run.append(r), bare_cpu.append(bc), run_cpu.append(rc)
        events |= {e_bare, e_store}
    if len(events) != 1:
        raise RuntimeError(f"the stored and the bare runs differ: events {sorted(events)}")
    run_s, bare_s = min(run), min(bare)
    print(f"store_overhead run_s={run_s:.3f} bare_s={bare_s:.3f} overhead_pct={100 * (run_s - bare_s) / bare_s:.2f} "
          f"run_cpu_s={min(run_cpu):.3f} bare_cpu_s={min(bare_cpu):.3f} "
          f"overhead_cpu_pct={100 * (min(run_cpu) - min(bare_cpu)) / min(bare_cpu):.2f} "
          f"size={size} duration_s={duration} samples={model.n_samples} snaps={model.n_snaps} "
          f"events={events.pop()} repeats={repeats}", flush=True)


def dask_scaling(size: int, run_wall_s: float, n_runs: int, folder: Path) -> None:
    from dask.distributed import Client, LocalCluster

    rate = sim_seconds_per_wall_second(size)
    duration = round(rate * run_wall_s * 1.15, 1)
    print(f"# calibration size={size} sim_s_per_wall_s={rate:.2f} -> duration_s={duration} for runs of "
          f">= {run_wall_s:g} s", flush=True)
    scenario = hop_scenario(size, duration)
    seconds = {}
    for workers in (1, 2):
        location = folder / f"dask{workers}.zarr"
        plan_replicas(scenario, n_runs, SEED, command="benchmarks/store.py").create(str(location))
        t0 = time.perf_counter()
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, env=WORKER_ENV,
                               dashboard_address=None)
        client = Client(cluster)
        startup = time.perf_counter() - t0
        try:
            t0 = time.perf_counter()
            outcomes = run_dask(str(location), list(range(n_runs)), client=client, progress=False)
            seconds[workers] = time.perf_counter() - t0
        finally:
            client.close()
            cluster.close()
        if set(outcomes.values()) != {"done"}:
            raise RuntimeError(f"dask runs did not all finish: {outcomes}")
        import zarr

        run_s = float(np.mean(zarr.open_group(str(location), mode="r")["wall_seconds"][:]))
        print(f"dask workers={workers} runs={n_runs} seconds={seconds[workers]:.2f} "
              f"runs_per_hour={3600 * n_runs / seconds[workers]:.1f} run_s={run_s:.2f} startup_s={startup:.2f}",
              flush=True)
    print(f"speedup={seconds[1] / seconds[2]:.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=22, help="hop lattice edge L (default 22, as scenarios/hop.toml)")
    parser.add_argument("--overhead-seconds", type=float, default=10.0, help="minimum wall time of the overhead run")
    parser.add_argument("--run-seconds", type=float, default=30.0, help="minimum wall time of each Dask run")
    parser.add_argument("--runs", type=int, default=4, help="runs on each cluster")
    parser.add_argument("--repeats", type=int, default=3, help="alternating bare/store pairs (best kept)")
    parser.add_argument("--skip-dask", action="store_true", help="only the store overhead")
    args = parser.parse_args()
    print(f"# cpus={os.cpu_count()} load_average={' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    folder = Path(tempfile.mkdtemp(prefix="kmc-bench-store-"))
    try:
        store_overhead(args.size, args.overhead_seconds, folder, args.repeats)
        if not args.skip_dask:
            dask_scaling(args.size, args.run_seconds, args.runs, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"# load_average={' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)


if __name__ == "__main__":
    main()
