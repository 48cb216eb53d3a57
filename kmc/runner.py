"""Running one run of a store: from a fresh State or its last checkpoint to the end, or a stop.

The same function runs a run whether it is called by ``kmc run``, a Dask worker, an array task or
``kmc resume``; it reads the run's scenario and seed from the store (not from files that may have
been edited since), so all of them produce the same data.

Reproducibility rules kept here (DESIGN.md): checkpoints only at sample boundaries, after the
samples before them are written; wall time decides *whether* to checkpoint, never *where*.
"""
from __future__ import annotations

import json
import math
import threading
import time

import numpy as np

from kmc import store as st
from kmc.model import model_for  # noqa: F401  (the runner's models; re-exported for callers)

#: Buffered samples are written at least this often (wall-clock seconds) ...
FLUSH_EVERY_S = 5.0
#: ... and whenever this many are buffered.
FLUSH_EVERY_SAMPLES = st.SAMPLE_CHUNK

DONE, FAILED, INTERRUPTED = "done", "failed", "interrupted"




def scenario_of_run(location, run: int):
    """(scenario, seed) of a run, from the store's attrs and run coordinates."""
    from kmc.config import Scenario

    group = st.open_group(location, mode="r")
    attrs = group.attrs
    base = Scenario.from_dict(json.loads(attrs["scenario"]))
    point = {}
    for key in json.loads(attrs.get("swept_keys", "[]")):
        value = group[key][run]
        point[key] = value.item() if hasattr(value, "item") else value
    scenario = base.with_overrides(point) if point else base
    return scenario, int(group["seed"][run])


class _Heartbeat(threading.Thread):
    """Writes the run's heartbeat every HEARTBEAT_EVERY_S while the run is alive."""

    def __init__(self, writer: st.RunWriter):
        super().__init__(daemon=True, name=f"kmc-heartbeat-{writer.run}")
        self.writer = writer
        self.halt = threading.Event()

    def run(self):
        while not self.halt.wait(st.HEARTBEAT_EVERY_S):
            try:
                self.writer.heartbeat()
            except Exception:  # the main thread reports failures; a missed beat only ages
                pass


def execute_run(location, run: int, *, resume: bool = True, array_task: int = -1,
                stop: threading.Event | None = None, progress=None, checkpoint_every_s: float | None = None) -> str:
    """Run ``run`` of the store at ``location`` to its end; returns ``"done"``, ``"failed"`` or ``"interrupted"``.

    ``resume``: continue from the run's last checkpoint if it has one (else start afresh).
    ``stop``: when set (SIGTERM/SIGINT), the run finishes its current sample, writes its samples
    and a checkpoint, and returns ``"interrupted"``.
    ``progress``: called with the number of samples done after each sample.
    A failure is recorded in the run's ``status`` and ``error``; other runs are not touched.
    """
    writer = st.RunWriter(location, run)
    beat = None
    state = None
    ended = False  # the run's end (done, failed, interrupted) is recorded
    wall0 = time.perf_counter()
    prior_wall = 0.0
    try:
        scenario, seed = scenario_of_run(location, run)
        model = model_for(scenario)
        if checkpoint_every_s is None:
            checkpoint_every_s = float(scenario.data.get("output", {}).get("checkpoint_every_s", 300.0))
        loaded = writer.load_checkpoint() if resume else None
        if loaded is not None:
            state, k0 = loaded
            prior = float(writer.array("wall_seconds")[run])
            prior_wall = prior if math.isfinite(prior) else 0.0
        else:
            writer.clear_checkpoint()
            state, k0 = model.new_state(seed), 0
        writer.mark_running(array_task)
        beat = _Heartbeat(writer)
        beat.start()

        def wall():
            return prior_wall + time.perf_counter() - wall0

        buffer: dict[str, list] = {}
        buffer_start = k0
        last_flush = last_ckpt = time.perf_counter()

        def flush():
            nonlocal buffer, buffer_start, last_flush
            if buffer:
                data = {name: np.asarray(values) for name, values in buffer.items()}
                writer.write_samples(buffer_start, data)
                buffer_start += len(next(iter(buffer.values())))
                buffer = {}
            writer.set(events=state.events, wall_seconds=wall())
            last_flush = time.perf_counter()

        if progress is not None and k0:
            progress(k0)
        for k in range(k0, model.n_samples):
            observed = model.advance_sample(state, k)
            if observed is None:  # the protocol ended before the store's last sample (NaN after)
                break
            for name, value in observed.items():
                buffer.setdefault(name, []).append(value)
            for name, index, values in model.records(state, k):
                if index is None:  # a per-run value
                    writer.set(**{name: values})
                else:
                    writer.write_at(name, index, values)
            if progress is not None:
                progress(k + 1)
            now = time.perf_counter()
            stopping = stop is not None and stop.is_set()
            due_ckpt = now - last_ckpt >= checkpoint_every_s
            if stopping or due_ckpt or now - last_flush >= FLUSH_EVERY_S \
                    or k + 1 - buffer_start >= FLUSH_EVERY_SAMPLES:
                flush()
                if (stopping or due_ckpt) and k + 1 < model.n_samples:
                    writer.save_checkpoint(state, k + 1)
                    last_ckpt = time.perf_counter()
                if stopping and k + 1 < model.n_samples:
                    # Stop the heartbeat thread before marking the run not alive, or a beat in
                    # flight could overwrite the NaN and hide the run from `kmc resume` for a minute.
                    beat.halt.set()
                    beat.join()
                    writer.heartbeat(alive=False)  # not alive: resumable at once
                    ended = True
                    return INTERRUPTED
        flush()
        beat.halt.set()
        writer.set(status=st.STATUS_DONE)
        writer.heartbeat()
        ended = True
        return DONE
    except Exception as err:  # a failed run is recorded, never allowed to take others down
        if beat is not None:
            beat.halt.set()
        message = f"{type(err).__name__}: {err}".replace("\n", " ")
        try:
            writer.set(status=st.STATUS_FAILED, error=message, wall_seconds=prior_wall + time.perf_counter() - wall0)
            writer.heartbeat()
            ended = True
        except Exception:
            pass
        return FAILED
    finally:
        if beat is not None:
            beat.halt.set()
            beat.join(timeout=5)
        if beat is not None and not ended:
            # Left by a KeyboardInterrupt or the like, in a process that may live on (a notebook's
            # kernel): say the run is not alive, or `kmc resume` would wait for that process to end.
            try:
                writer.heartbeat(alive=False)
            except Exception:
                pass
