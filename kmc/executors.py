"""Executing a store's runs: one by one in this process, or on Dask — twins over ``execute_run``.

Parallelism is across runs, never inside one: Dask workers are processes with one thread each and
``NUMBA_NUM_THREADS=1``; each worker loads the compiled kernels from Numba's cache once and keeps them.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
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
                                       processes=True, env=WORKER_ENV,
                                       # a free port: None still binds 8787 (dask/distributed#8136) and
                                       # warns when another cluster has it
                                       dashboard_address=":0")
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


# -- a local pool of worker processes over the runs of several stores (kmc validate) -------------

_worker_stop = None
_worker_queue = None
#: Worker processes report a run's sample progress at most this often (wall-clock seconds).
PROGRESS_EVERY_S = 0.25


def _init_pool_worker(stop, queue):
    # The parent owns the signals: it sets ``stop`` on SIGINT/SIGTERM, and every worker's run then
    # checkpoints after its current sample. A worker that took Ctrl-C itself would die mid-sample.
    global _worker_stop, _worker_queue
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _worker_stop, _worker_queue = stop, queue


def _pool_task(location, run):
    last = [0.0]

    def progress(k):
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY_S:
            last[0] = now
            _worker_queue.put((location, run, k))

    return execute_run(location, run, resume=True, stop=_worker_stop, progress=progress)


@contextmanager
def _environment(values: dict[str, str]):
    """``os.environ`` with ``values`` set (inherited by processes started inside), restored after."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_processes(jobs, *, workers: int = 1, stop=None, on_sample=None, on_done=None) -> dict[tuple, str]:
    """Run ``jobs`` — ``(location, run)`` pairs, from one store or several — in their order on
    ``workers`` local processes (in this process when ``workers`` is 1); returns each job's outcome.
    ``jobs`` may be a generator: it is consumed as the jobs are submitted, so the first runs start
    while it still prepares later ones (creates their stores).

    Each run continues from its checkpoint if it has one. When ``stop`` is set (``stop_on_signals``)
    every running run finishes its current sample and writes a checkpoint, runs not yet started stay
    pending, and both come back ``"interrupted"``. ``on_sample(job, k)`` is called as runs advance
    (samples done, at most every PROGRESS_EVERY_S from a worker), ``on_done(job, outcome)`` as they end.

    The local twin of ``run_dask`` for one machine: unlike a Dask LocalCluster, whose workers would
    be killed mid-sample on Ctrl-C, its workers checkpoint on the parent's signal, and they report
    sample progress. Workers get WORKER_ENV (one thread each) and load the kernels from Numba's cache.
    """
    on_sample = on_sample or (lambda job, k: None)
    on_done = on_done or (lambda job, outcome: None)
    outcomes: dict[tuple, str] = {}
    if workers <= 1:
        for loc, run in jobs:
            job = (loc, int(run))
            if stop is not None and stop.is_set():
                outcomes[job] = INTERRUPTED
                continue
            outcome = execute_run(job[0], job[1], resume=True, stop=stop, progress=lambda k, j=job: on_sample(j, k))
            outcomes[job] = outcome
            on_done(job, outcome)
        return outcomes

    import multiprocessing
    import queue as queue_module
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("spawn")  # not fork: the parent has threads (progress display)
    shared_stop, progress_queue = ctx.Event(), ctx.Queue()

    def drain():
        while True:
            try:
                loc, run, k = progress_queue.get_nowait()
            except queue_module.Empty:
                return
            on_sample((loc, run), k)

    order = []
    with _environment(WORKER_ENV), ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_pool_worker,
                                                       initargs=(shared_stop, progress_queue)) as pool:
        pending = {}
        for loc, run in jobs:  # workers start with the first submission (one per submission, up to ``workers``)
            order.append((loc, int(run)))
            pending[pool.submit(_pool_task, loc, int(run))] = order[-1]
        while pending:
            if stop is not None and stop.is_set() and not shared_stop.is_set():
                shared_stop.set()
                for future in pending:
                    future.cancel()  # not started yet: they stay pending in their store
            done, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            drain()
            for future in done:
                job = pending.pop(future)
                if future.cancelled():
                    outcome = INTERRUPTED
                else:
                    try:
                        outcome = future.result()
                    except BrokenProcessPool:  # a worker died under the run; its status says what is known
                        outcome = FAILED
                outcomes[job] = outcome
                on_done(job, outcome)
        drain()
    progress_queue.close()
    progress_queue.join_thread()
    return {job: outcomes[job] for job in order}


def summarize(outcomes: dict[int, str]) -> int:
    """Exit code for a set of outcomes: 3 if interrupted, 1 if any failed, else 0."""
    values = set(outcomes.values())
    if INTERRUPTED in values:
        return 3
    if FAILED in values:
        return 1
    return 0 if values <= {DONE} else 1
