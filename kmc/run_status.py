"""A store's runs as judged now: pending, running, interrupted, done or failed, and why.

A run marked running is ``interrupted`` when its writer is taken for dead: its heartbeat is NaN (it
stopped after a checkpoint, or never beat); else, if its writer ran on this host, that process is gone
(``kmc.liveness``); else (another host, or a store that records no writer) its heartbeat is older than
``stale_after_s()``. ``kmc status``, ``kmc resume``, ``--rerun-failed`` and ``kmc validate`` all judge
by this one rule.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import numpy as np

from kmc import liveness
from kmc.errors import KmcError
from kmc.store import STALE_AFTER_ENV, STALE_AFTER_S, STATUS_NAMES, WRITER_VARS, open_group


@dataclass
class RunStatus:
    """A run's status as judged now; for a running or interrupted run, its writer and why so."""

    run: int
    status: str  # pending | running | interrupted | done | failed
    samples_written: int
    heartbeat_age_s: float  # inf: never beat, or stopped (NaN heartbeat)
    error: str
    host: str = ""  # the heartbeat's writer ("" and -1: not recorded)
    pid: int = -1
    why: str = ""  # one line, for running and interrupted runs


def stale_after_s() -> float:
    """Heartbeat age (s) beyond which a running run is taken for dead: ``$KMC_STALE_AFTER_S`` or STALE_AFTER_S."""
    text = os.environ.get(STALE_AFTER_ENV, "").strip()
    if not text:
        return STALE_AFTER_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value >= 0.0:  # also refuses NaN
        raise KmcError(f"{STALE_AFTER_ENV} = {text!r} is not allowed: expected a number of seconds >= 0")
    return value


def run_statuses(location, now: float | None = None) -> list[RunStatus]:
    """Every run's status; a run marked running is ``interrupted`` when its writer is taken for dead.

    Dead: its heartbeat is NaN (it stopped after a checkpoint, or never beat); else, if its writer
    ran on this host, that process is gone (kmc.liveness: no such id, a zombie, or the id reused by a
    process started at another time) — a live one keeps the run ``running`` however old its beat;
    else (another host, or a store that records no writer) its heartbeat is older than
    ``stale_after_s()`` (STALE_AFTER_S, or the environment variable KMC_STALE_AFTER_S).
    """
    g = open_group(location, mode="r")
    now = time.time() if now is None else now
    stale_after = stale_after_s()
    status = np.asarray(g["status"][:])
    beat = np.asarray(g["heartbeat"][:])
    written = np.asarray(g["samples_written"][:])
    errors = np.asarray(g["error"][:])
    n = status.size
    recorded = all(name in g for name in WRITER_VARS)
    if recorded:
        hosts = np.asarray(g["heartbeat_host"][:])
        pids = np.asarray(g["heartbeat_pid"][:])
        starts = np.asarray(g["heartbeat_process_start"][:])
    else:  # a store made before the writer was recorded
        hosts, pids, starts = np.full(n, "", dtype=object), np.full(n, -1), np.full(n, math.nan)
    here = liveness.this_host()
    out = []
    for r in range(n):
        age = now - beat[r] if np.isfinite(beat[r]) else math.inf
        name = STATUS_NAMES.get(int(status[r]), "unknown")
        host, pid = str(hosts[r]), int(pids[r])
        why = ""
        if name == "running":
            name, why = _judge_running(age, host, pid, float(starts[r]), here, stale_after, recorded)
        out.append(RunStatus(r, name, int(written[r]), float(age), str(errors[r]), host, pid, why))
    return out


def _judge_running(age_s: float, host: str, pid: int, started_s: float, here: str, stale_after: float,
                   recorded: bool) -> tuple[str, str]:
    """(``running`` or ``interrupted``, why) for a run marked running (see run_statuses).
    ``recorded``: the store has the writer variables."""
    if pid >= 0 and host:
        writer = f"process {pid} on {host}"
    else:
        writer = "its process" + (" (not recorded)" if recorded else " (the store records no process id)")
    if not math.isfinite(age_s):
        return "interrupted", f"{writer}: stopped after a checkpoint, or ended before its first heartbeat"
    if pid >= 0 and host == here:
        gone = liveness.why_gone(pid, started_s)
        if gone is not None:
            return "interrupted", f"{writer} {gone}"
        why = f"{writer} is alive (heartbeat {max(age_s, 0.0):.0f} s ago)"
        if age_s > stale_after:
            why += f"; no heartbeat for {age_s:.0f} s: stopped or hung? end that process to resume the run"
        return "running", why
    if age_s > stale_after:
        return "interrupted", f"no heartbeat for {age_s:.0f} s from {writer}"
    where = "another host" if pid >= 0 and host else "which cannot be checked"
    return "running", (f"heartbeat {max(age_s, 0.0):.0f} s ago from {writer}, {where}: taken for dead after "
                       f"{stale_after:g} s without one ({STALE_AFTER_ENV} sets it)")
