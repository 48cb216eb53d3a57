"""Executing a store's runs: one by one in this process, or on Dask — twins over ``execute_run``.

Parallelism is across runs, never inside one: Dask workers are processes with one thread each and
``NUMBA_NUM_THREADS=1``; each worker loads the compiled kernels from Numba's cache once and keeps them.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager

from kmc.runner import DONE, FAILED, INTERRUPTED, execute_run

#: Environment of worker processes: one thread for every numerical library.
WORKER_ENV = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "MKL_NUM_THREADS": "1"}


@contextmanager
def stop_on_signals():
    """SIGTERM and SIGINT set the yielded event instead of killing the process (main thread only).

    A second SIGINT while stopping raises KeyboardInterrupt as usual, for the impatient.
    """
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _progress_bar(enabled: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), disable=not enabled, transient=False)


def show_progress() -> bool:
    """Progress bars on a terminal, quiet in batch jobs and pipes."""
    return sys.stderr.isatty() and not os.environ.get("KMC_NO_PROGRESS")


def run_serial(location, runs, *, resume: bool = True, array_task: int = -1, stop=None, n_samples=None,
               progress: bool | None = None) -> dict[int, str]:
    """Run ``runs`` one after another in this process; stops early (``interrupted``) if ``stop`` is set."""
    outcomes = {}
    progress = show_progress() if progress is None else progress
    with _progress_bar(progress) as bar:
        for run in runs:
            task = bar.add_task(f"run {run}", total=n_samples)
            outcome = execute_run(location, run, resume=resume, array_task=array_task, stop=stop,
                                  progress=lambda k, t=task: bar.update(t, completed=k))
            outcomes[run] = outcome
            if outcome == INTERRUPTED:
                break
    return outcomes


def _dask_task(location, run, resume):
    # Runs in a worker process: no signal handling here (Dask owns the worker's signals).
    return run, execute_run(location, run, resume=resume)


def run_dask(location, runs, *, resume: bool = True, workers: int | None = None, scheduler: str | None = None,
             client=None, progress: bool | None = None) -> dict[int, str]:
    """Run ``runs`` on Dask: ``client`` if given, else a scheduler address, else a LocalCluster."""
    from dask.distributed import Client, LocalCluster, as_completed

    location = os.path.abspath(location)
    own_cluster = own_client = None
    if client is None:
        if scheduler:
            client = own_client = Client(scheduler)
        else:
            own_cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                                       processes=True, env=WORKER_ENV, dashboard_address=None)
            client = own_client = Client(own_cluster)
    outcomes = {}
    progress = show_progress() if progress is None else progress
    try:
        futures = client.map(_dask_task, [location] * len(runs), list(runs), [resume] * len(runs), pure=False)
        run_of = {future.key: run for future, run in zip(futures, runs)}
        with _progress_bar(progress) as bar:
            task = bar.add_task("runs", total=len(futures))
            for future in as_completed(futures):
                try:
                    run, outcome = future.result()
                except Exception:  # a worker died under the run; its status says what is known
                    run, outcome = run_of[future.key], FAILED
                outcomes[run] = outcome
                bar.advance(task)
    finally:
        if own_client is not None:
            own_client.close()
        if own_cluster is not None:
            own_cluster.close()
    return outcomes


def summarize(outcomes: dict[int, str]) -> int:
    """Exit code for a set of outcomes: 3 if interrupted, 1 if any failed, else 0."""
    values = set(outcomes.values())
    if INTERRUPTED in values:
        return 3
    if FAILED in values:
        return 1
    return 0 if values <= {DONE} else 1
