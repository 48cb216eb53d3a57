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


class _Samples:
    """The samples observed since the last write; written with the run's progress (events, wall time)."""

    def __init__(self, writer: st.RunWriter, state, first: int, wall):
        self.writer, self.state, self.first, self.wall = writer, state, first, wall
        self.buffer: dict[str, list] = {}
        self.last_flush = time.perf_counter()

    def add(self, observed: dict) -> None:
        for name, value in observed.items():
            self.buffer.setdefault(name, []).append(value)

    def due(self, k: int, now: float) -> bool:
        """Whether sample k's buffer is due for writing (by wall time or by count)."""
        return now - self.last_flush >= FLUSH_EVERY_S or k + 1 - self.first >= FLUSH_EVERY_SAMPLES

    def flush(self) -> None:
        if self.buffer:
            data = {name: np.asarray(values) for name, values in self.buffer.items()}
            self.writer.write_samples(self.first, data)
            self.first += len(next(iter(self.buffer.values())))
            self.buffer = {}
        self.writer.set(events=self.state.events, wall_seconds=self.wall())
        self.last_flush = time.perf_counter()


def _write_records(writer: st.RunWriter, records) -> None:
    """A sample's records: per-run values (index None) and entries of the frame, snapshot and cycle clocks."""
    for name, index, values in records:
        if index is None:
            writer.set(**{name: values})
        else:
            writer.write_at(name, index, values)


def _start(writer: st.RunWriter, model, run: int, seed: int, resume: bool):
    """(state, first sample, wall seconds spent before): from the run's last checkpoint when resuming and
    there is one, else a fresh State."""
    loaded = writer.load_checkpoint() if resume else None
    if loaded is None:
        writer.clear_checkpoint()
        return model.new_state(seed), 0, 0.0
    state, k0 = loaded
    prior = float(writer.array("wall_seconds")[run])
    return state, k0, prior if math.isfinite(prior) else 0.0


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
    ended = False  # the run's end (done, failed, interrupted) is recorded
    wall0 = time.perf_counter()
    prior_wall = 0.0
    try:
        scenario, seed = scenario_of_run(location, run)
        model = model_for(scenario)
        if checkpoint_every_s is None:
            checkpoint_every_s = float(scenario.data.get("output", {}).get("checkpoint_every_s", 300.0))
        state, k0, prior_wall = _start(writer, model, run, seed, resume)
        writer.mark_running(array_task)
        beat = _Heartbeat(writer)
        beat.start()
        samples = _Samples(writer, state, k0, lambda: prior_wall + time.perf_counter() - wall0)
        last_ckpt = time.perf_counter()
        if progress is not None and k0:
            progress(k0)
        for k in range(k0, model.n_samples):
            observed = model.advance_sample(state, k)
            if observed is None:  # the protocol ended before the store's last sample (NaN after)
                break
            samples.add(observed)
            _write_records(writer, model.records(state, k))
            if progress is not None:
                progress(k + 1)
            now = time.perf_counter()
            stopping = stop is not None and stop.is_set()
            due_ckpt = now - last_ckpt >= checkpoint_every_s
            if stopping or due_ckpt or samples.due(k, now):
                samples.flush()
                more = k + 1 < model.n_samples
                if (stopping or due_ckpt) and more:
                    writer.save_checkpoint(state, k + 1)
                    last_ckpt = time.perf_counter()
                if stopping and more:
                    # Stop the heartbeat thread before marking the run not alive, or a beat in
                    # flight could overwrite the NaN and hide the run from `kmc resume` for a minute.
                    beat.halt.set()
                    beat.join()
                    writer.heartbeat(alive=False)  # not alive: resumable at once
                    ended = True
                    return INTERRUPTED
        samples.flush()
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
