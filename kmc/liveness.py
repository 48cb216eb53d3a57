"""Is the process that wrote a run's heartbeat still alive? Host, process id and process start time.

A run's writer records, with each heartbeat, the host it runs on, its process id and the time its
process started (``heartbeat_host``, ``heartbeat_pid``, ``heartbeat_process_start``). A reader on the
same host can then tell at once that the writer is gone — no process has that id any more, or it is a
zombie, or the id now belongs to a process that started at another time (the kernel reuses ids) —
instead of waiting for the heartbeat to age. A writer on another host cannot be checked from here:
for it only the heartbeat's age counts (kmc.run_status.run_statuses).

The start time comes from psutil (Linux, macOS, Windows; dask.distributed depends on it already).
Comparing start times, not only ids, is what makes a reused id harmless: for a dead writer's id to
pass, a new process would have to get the same id and start within START_TOLERANCE_S of the dead one.
"""
from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass

import psutil

#: Two readings of one process's start time (seconds) agree to this much. psutil gives the start as
#: the boot time (whole seconds on Linux) plus the ticks since boot (0.01 s): readings differ only if
#: the system clock is stepped in between, and the writer restates its start at every heartbeat.
START_TOLERANCE_S = 1.0


@dataclass(frozen=True)
class Writer:
    """A process that writes runs: its host name, process id and start time (s since the epoch, NaN: unknown)."""

    host: str
    pid: int
    started_s: float

    def same_as(self, other: Writer) -> bool:
        return (self.host, self.pid) == (other.host, other.pid) and (
            self.started_s == other.started_s or (math.isnan(self.started_s) and math.isnan(other.started_s)))


def this_host() -> str:
    return socket.gethostname()


def this_process() -> Writer:
    """The calling process as a Writer (its start time read anew: it follows clock steps)."""
    pid = os.getpid()
    try:
        started_s = float(psutil.Process(pid).create_time())
    except psutil.Error:
        started_s = math.nan
    return Writer(this_host(), pid, started_s)


def why_gone(pid: int, started_s: float) -> str | None:
    """Why process ``pid`` of this host, started at ``started_s`` (NaN: not recorded), is gone; None if alive.

    A process that exists but whose start time cannot be read (another user's, on some systems) counts
    as alive: when in doubt a run is left alone, since resuming a live run would make two writers.
    """
    if pid <= 0 or not psutil.pid_exists(pid):
        return "is gone"
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:  # ended, only not yet reaped by its parent
            return "is gone (a zombie)"
        if math.isfinite(started_s) and abs(proc.create_time() - started_s) > START_TOLERANCE_S:
            return "is gone (its id now belongs to another process)"
    except psutil.NoSuchProcess:  # ended between the two looks
        return "is gone"
    except psutil.AccessDenied:
        return None
    return None
