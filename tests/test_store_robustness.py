"""The store under abuse: SIGKILL at random moments, SIGTERM/SIGINT, concurrent array tasks, a failing run.

Every test drives the installed ``kmc`` command in subprocesses (production code, no doubles) and
compares the decoded store (``kmc.open``, every data variable and coordinate except the wall-clock and
provenance ones) with an uninterrupted reference run of the same scenario: a killed and resumed run
must end with exactly the data it would have had (DESIGN.md "Reproducibility", SCHEMA.md
"Checkpoints").

A SIGKILLed run's heartbeat stays fresh for a minute, but it names its writer (host, process id,
process start): ``kmc resume`` / ``kmc status`` / ``--rerun-failed`` right after the kill, with no
setting, see that the process is gone and resume the run at once. Section 5 checks the other side:
runs alive in another process, or on another host with a fresh heartbeat, are left alone.

The fast set takes about 110 s of CPU (each ``kmc run`` costs ~2.5 s of imports and store creation),
about a minute of wall time on 2 idle cores; ``-m slow`` adds a long kill/resume campaign (60 trials).
"""
from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import pytest

import kmc
from kmc.run_status import run_statuses
from kmc.store import STATUS_DONE, STATUS_FAILED, STATUS_RUNNING, WALL_CLOCK_AND_PROVENANCE

# A hop-model scenario whose run spends about half its wall time writing checkpoints: a checkpoint
# at (nearly) every sample boundary, snapshots every 4 samples, 41 samples, ~0.4 s per replica.
SCENARIO = """
[scenario]
name = "robust"
seed = 11

[model]
kind = "hop"

[hop]
size = 12
fraction = 0.5
rate_decades = 1.0
duration_s = 10.0

[output]
sample_every_s = 0.25
snapshot_every_samples = 4
checkpoint_every_s = 0.001
"""
N_SAMPLES = 41
N_SNAPS = 11

SWEEP = """
base = "robust.toml"
mode = "product"
replicas = 2
seed = 77

[vary]
"hop.fraction" = [0.3, 0.6]
"hop.rate_decades" = [0, 2]
"""
N_SWEEP_RUNS = 8

TIMEOUT_S = 180


def _kmc_executable() -> str:
    beside = Path(sys.executable).with_name("kmc")
    found = str(beside) if beside.is_file() else shutil.which("kmc")
    assert found, "the kmc console script is not installed"
    return found


KMC = _kmc_executable()


def _env(**extra) -> dict:
    env = dict(os.environ)
    env.pop("KMC_STALE_AFTER_S", None)
    env.pop("SLURM_ARRAY_TASK_ID", None)
    env.update(KMC_NO_PROGRESS="1", NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start(*args, cwd=None, **env) -> subprocess.Popen:
    return subprocess.Popen([KMC, *map(str, args)], cwd=cwd, env=_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def kmc_cli(*args, cwd=None, expect: int | None = 0, **env) -> subprocess.CompletedProcess:
    out = subprocess.run([KMC, *map(str, args)], cwd=cwd, env=_env(**env), capture_output=True, text=True,
                         timeout=TIMEOUT_S)
    if expect is not None:
        assert out.returncode == expect, (f"kmc {' '.join(map(str, args))} exited {out.returncode}, expected "
                                          f"{expect}\nstdout: {out.stdout}\nstderr: {out.stderr}")
    return out


def finish(proc: subprocess.Popen, timeout: float = TIMEOUT_S) -> tuple[int, str, str]:
    stdout, stderr = proc.communicate(timeout=timeout)
    return proc.returncode, stdout, stderr


def status_json(store, **env) -> dict:
    return json.loads(kmc_cli("status", store, "--json", **env).stdout)


def wait_until(predicate, proc: subprocess.Popen | None = None, timeout: float = 60.0, poll_s: float = 0.002,
               what: str = "condition"):
    """Poll ``predicate`` until true; fail if ``proc`` exits first or after ``timeout``."""
    t_end = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"process exited ({proc.returncode}) before {what}\nstdout: {out}\nstderr: {err}")
        if time.monotonic() > t_end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(poll_s)


def metadata(store: Path) -> dict[str, bytes]:
    """Every metadata document of a store, by path: written once at creation, never again."""
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("zarr.json"))}


def read_run_var(store: Path, name: str) -> np.ndarray:
    import zarr

    return np.asarray(zarr.open_group(str(store), mode="r")[name][:])


def pointer(store: Path) -> np.ndarray:
    import zarr

    return np.asarray(zarr.open_group(str(store), mode="r")["checkpoint/pointer"][:])


def assert_same_data(store: Path, reference: Path, runs=None):
    """Every decoded data variable and coordinate of ``store`` equals ``reference``'s (NaN == NaN),
    except the wall-clock and provenance variables; ``runs`` selects runs of both."""
    with kmc.open(store) as a, kmc.open(reference) as b:
        if runs is not None:
            a, b = a.isel(run=list(runs)), b.isel(run=list(runs))
        names = set(a.variables) - set(WALL_CLOCK_AND_PROVENANCE)
        assert names == set(b.variables) - set(WALL_CLOCK_AND_PROVENANCE)
        assert set(a.data_vars) & names == set(b.data_vars) & names and set(a.coords) == set(b.coords)
        mismatches = []
        for name in sorted(names):
            va, vb = a[name], b[name]
            if va.dims != vb.dims or va.attrs != vb.attrs:
                mismatches.append(f"{name}: dims/attrs {va.dims} {va.attrs} != {vb.dims} {vb.attrs}")
                continue
            x, y = va.values, vb.values
            if x.shape != y.shape or x.dtype != y.dtype:
                mismatches.append(f"{name}: {x.shape} {x.dtype} != {y.shape} {y.dtype}")
                continue
            same = np.array_equal(x, y, equal_nan=True) if x.dtype.kind in "fc" else np.array_equal(x, y)
            if not same:
                if x.dtype.kind in "fc":
                    diff = ~((x == y) | (np.isnan(x) & np.isnan(y)))
                else:
                    diff = x != y
                where = np.argwhere(diff)
                first = tuple(int(i) for i in where[0]) if where.size else ()
                mismatches.append(f"{name}: {int(diff.sum())} elements differ, first at {first}: "
                                  f"{x[first] if first else x!r} != {y[first] if first else y!r}")
        assert not mismatches, f"{store} differs from {reference}:\n" + "\n".join(mismatches)


def assert_all_done(store: Path, n_runs: int, cli: bool = True):
    with kmc.open(store) as ds:
        assert ds.sizes["run"] == n_runs
        assert ds["status"].values.tolist() == [STATUS_DONE] * n_runs
        assert ds["samples_written"].values.tolist() == [ds.sizes["sample"]] * n_runs
        assert ds["error"].values.tolist() == [""] * n_runs
    if cli:
        s = status_json(store)
        assert (s["runs"], s["done"]) == (n_runs, n_runs), s
    else:  # what `kmc status` reads, without a process per call
        assert [r.status for r in run_statuses(store)] == ["done"] * n_runs


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scenario") / "robust.toml"
    path.write_text(SCENARIO)
    return path


@pytest.fixture(scope="module")
def reference(scenario, tmp_path_factory) -> Path:
    """The uninterrupted reference: 3 replicas, no checkpoint at all (checkpoints must not matter)."""
    out = tmp_path_factory.mktemp("reference") / "ref.zarr"
    kmc_cli("run", scenario, "-o", out, "--replicas", 3, "--set", "output.checkpoint_every_s=1000")
    with kmc.open(out) as ds:
        assert (ds.sizes["sample"], ds.sizes["snap"]) == (N_SAMPLES, N_SNAPS)
        # The data are not trivial (the comparison could not pass by chance).
        assert len(np.unique(ds["event_count"].values[:, -1])) == 3
        assert np.all(ds["event_count"].values[:, -1] > 1_000)
    assert_all_done(out, 3)
    return out


# ------------------------------------------------------------------------------------------------
# 1. SIGKILL at random moments, then resume
# ------------------------------------------------------------------------------------------------

def _checkpoint_paths(store: Path, run: int) -> tuple[list[Path], Path]:
    """(The chunk files and chunk directories of ``run``'s two checkpoint slots, its pointer chunk).

    Chunk keys: ``checkpoint/<array>/c/<run>/<slot>/0`` (state arrays), ``checkpoint/meta/c/<run>/<slot>``;
    a directory's mtime changes when a chunk's temporary ``.partial`` file is created or renamed in it.
    """
    paths = []
    ckpt = store / "checkpoint"
    for arr in sorted(ckpt.iterdir()) if ckpt.is_dir() else ():
        if arr.is_dir() and arr.name != "pointer":
            base = arr / "c" / str(run)
            paths += [base, base / "0", base / "1", base / "0" / "0", base / "1" / "0"]
    return paths, ckpt / "pointer" / "c" / str(run) / "0"


def _mtime(p: Path) -> int:
    try:
        return p.stat().st_mtime_ns
    except OSError:  # not there (yet), or a chunk file where the path expects a directory
        return -1


def checkpoint_write_in_progress(store: Path, n_runs: int, since_ns: int, paths=None) -> bool:
    """A checkpoint write started after ``since_ns`` and its pointer is not written yet: something in
    a run's checkpoint slots is newer than the run's pointer chunk."""
    paths = paths or [_checkpoint_paths(store, run) for run in range(n_runs)]
    for slot_paths, ptr in paths:
        t_ptr = max(_mtime(ptr), since_ns)
        if any(_mtime(p) > t_ptr for p in slot_paths):
            return True
    return False


def _run_started(store: Path, n_runs: int, since_ns: int) -> bool:
    """A run was marked running (its heartbeat chunk written) after ``since_ns``."""
    return any(_mtime(store / "heartbeat" / "c" / str(run)) > since_ns for run in range(n_runs))


def _sleep_while_alive(proc: subprocess.Popen, seconds: float) -> None:
    t_end = time.monotonic() + seconds
    while proc.poll() is None and time.monotonic() < t_end:
        time.sleep(0.001)


def _wait_while_alive(proc: subprocess.Popen, predicate, poll_s: float = 0.001, timeout: float = 60) -> None:
    t_end = time.monotonic() + timeout
    while proc.poll() is None and not predicate():
        assert time.monotonic() < t_end, "timed out"
        time.sleep(poll_s)


def _kill_trial(trial: int, scenario: Path, reference: Path, workdir: Path, plan: list[tuple[str, float]]) -> dict:
    """One trial: ``kmc run`` (2 replicas), SIGKILLs per ``plan``, each followed by ``kmc resume``
    (or a new ``kmc run`` if the store never got created); finally a resume to the end and checks.

    Kill modes: ``early`` — ``delay`` after the process started (imports, store creation, first
    samples); ``run`` — ``delay`` after a run of the process started; ``ckpt`` — after that, at the
    next checkpoint write seen under way.
    """
    store = workdir / f"trial{trial}.zarr"
    record = {"trial": trial, "kills": [], "plan": plan}
    meta0 = None
    for mode, delay in plan:
        fresh = not (store / "zarr.json").is_file()
        t0_ns, t0 = time.time_ns(), time.monotonic()
        if fresh:
            proc = start("run", scenario, "-o", store, "--replicas", 2, cwd=workdir)
        else:
            proc = start("resume", store, cwd=workdir)  # at once, no staleness setting
        if mode == "early":
            _sleep_while_alive(proc, delay)
        elif mode in ("run", "ckpt"):
            _wait_while_alive(proc, lambda: _run_started(store, 2, t0_ns))
            _sleep_while_alive(proc, delay)
            if mode == "ckpt":
                paths = [_checkpoint_paths(store, run) for run in range(2)]
                since = time.time_ns()
                _wait_while_alive(proc, lambda: checkpoint_write_in_progress(store, 2, since, paths), 0.0002)
        else:
            raise ValueError(mode)
        killed = proc.poll() is None
        if killed:
            proc.send_signal(signal.SIGKILL)
        code, out, err = finish(proc)
        killed = code == -signal.SIGKILL  # (it may have ended just before the signal)
        if not killed:  # it finished before the kill: fine, but then it must have succeeded
            assert code == 0, (trial, mode, code, out, err)
        if not killed:
            landed = "no kill: the process had ended"
        elif not (store / "zarr.json").is_file():
            landed = "before the store existed"
            # A store is created in a temporary directory and renamed: never a partial store in place.
            assert not store.exists(), f"trial {trial}: a partial store at {store}"
        elif not _run_started(store, 2, t0_ns):
            landed = "before a run started"
        elif checkpoint_write_in_progress(store, 2, t0_ns) or any(
                p.name.endswith(".partial") for p in (store / "checkpoint").rglob("*")):
            landed = "inside a checkpoint write"
        else:
            landed = "between checkpoints (sampling, writing samples or snapshots)"
        if (store / "zarr.json").is_file():
            if meta0 is None:
                meta0 = metadata(store)
            assert STATUS_FAILED not in read_run_var(store, "status").tolist()
            # Right after the kill, no run reads as alive: the killed process was their writer.
            alive = [(s.run, s.why) for s in run_statuses(store) if s.status == "running"]
            assert not alive, f"trial {trial}: runs of a killed process read as running: {alive}"
        record["kills"].append({"mode": mode, "delay": round(delay, 3), "killed": killed, "landed": landed,
                                "after_s": round(time.monotonic() - t0, 3),
                                "samples_written": read_run_var(store, "samples_written").tolist()
                                if (store / "zarr.json").is_file() else None})
    if (store / "zarr.json").is_file():
        kmc_cli("resume", store, cwd=workdir)
    else:
        kmc_cli("run", scenario, "-o", store, "--replicas", 2, cwd=workdir)
        meta0 = metadata(store)
    assert_all_done(store, 2, cli=False)
    assert_same_data(store, reference, runs=[0, 1])
    assert metadata(store) == meta0, f"trial {trial}: metadata changed after creation"
    record["leftover_temporary_dirs"] = sorted(p.name for p in workdir.iterdir() if ".creating-" in p.name)
    record["partial_files"] = sum(1 for p in store.rglob("*.partial"))
    return record


def _trial_plans(n_trials: int, seed: int, max_kills: int) -> list[list[tuple[str, float]]]:
    """Seeded kill plans. The first kill of each trial hits the first ``kmc run``, cycling through
    very early (imports, store creation), a random moment of the running phase, and inside a
    checkpoint write; later kills (of the resumes) are drawn from the same modes."""
    first = ["early", "run", "ckpt", "run", "ckpt"]
    plans = []
    for trial in range(n_trials):
        rng = random.Random(seed * 1000 + trial)
        plan = []
        for i in range(rng.randint(1, max_kills)):
            mode = first[trial % len(first)] if i == 0 else rng.choice(["run", "run", "ckpt", "early"])
            if mode == "early":  # half very early (before the store exists), half over the first seconds
                delay = rng.uniform(0.0, 0.5) if rng.random() < 0.5 else rng.uniform(0.5, 2.5)
            else:  # the two replicas run for ~0.8 s
                delay = rng.uniform(0.0, 0.8 if mode == "run" else 0.5)
            plan.append((mode, delay))
        plans.append(plan)
    return plans


def _kill_campaign(n_trials, seed, max_kills, scenario, reference, tmp_path, lanes=2):
    plans = _trial_plans(n_trials, seed, max_kills)
    for t in range(n_trials):
        (tmp_path / f"t{t}").mkdir()
    with ThreadPoolExecutor(max_workers=lanes) as pool:  # two trials at a time (2 cores)
        futures = [pool.submit(_kill_trial, t, scenario, reference, tmp_path / f"t{t}", plans[t])
                   for t in range(n_trials)]
        records = [f.result() for f in futures]
    kills = [k for r in records for k in r["kills"]]
    landed = {}
    for k in kills:
        landed[k["landed"]] = landed.get(k["landed"], 0) + 1
    summary = {"trials": n_trials, "kills": sum(k["killed"] for k in kills), "landed": landed,
               "leftover_temporary_dirs": sum(len(r["leftover_temporary_dirs"]) for r in records),
               "stores_with_partial_files": sum(r["partial_files"] > 0 for r in records)}
    print("kill campaign:", json.dumps(summary))
    for r in records:
        print(json.dumps(r))
    return records, summary


def test_sigkill_at_random_moments_then_resume_gives_the_reference(scenario, reference, tmp_path):
    """10 trials, 1-2 SIGKILLs each (seeded), each kill followed at once by `kmc resume` (no staleness
    setting): every store resumes to exactly the reference's data.

    Planted faults it fails under: the writer's process left unchecked on its own host (the heartbeat's
    age alone decides, as before): the killed runs read as running and `kmc resume` exits 1 with them
    unfinished.
    """
    records, summary = _kill_campaign(10, seed=1, max_kills=2, scenario=scenario, reference=reference,
                                      tmp_path=tmp_path)
    # The campaign did what it claims: kills in each phase, some of them inside checkpoint writes.
    assert summary["kills"] >= 10
    assert summary["landed"].get("inside a checkpoint write", 0) >= 1, summary
    assert summary["landed"].get("before the store existed", 0) >= 1, summary
    assert summary["landed"].get("between checkpoints (sampling, writing samples or snapshots)", 0) >= 1, summary


@pytest.mark.slow
def test_sigkill_campaign_long(scenario, reference, tmp_path):
    """60 trials of up to 5 SIGKILLs each, each followed at once by `kmc resume`."""
    records, summary = _kill_campaign(60, seed=2, max_kills=5, scenario=scenario, reference=reference,
                                      tmp_path=tmp_path)
    assert summary["landed"].get("inside a checkpoint write", 0) >= 10, summary


# ------------------------------------------------------------------------------------------------
# 2. SIGTERM / SIGINT: checkpoint, exit code 3, resume
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("signum,target", [(signal.SIGTERM, 0), (signal.SIGINT, 1)], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_with_checkpoint_and_resume_gives_the_reference(scenario, reference, tmp_path, signum,
                                                                     target):
    """A signal mid-run: the run flushes, checkpoints and stops (exit 3, `interrupted` at once, later
    runs pending); `kmc resume` then ends with the reference's data."""
    store = tmp_path / "sig.zarr"
    proc = start("run", scenario, "-o", store, "--replicas", 2, cwd=tmp_path)
    # Mid-run of replica `target`: it has written its first checkpoint.
    ptr = store / "checkpoint" / "pointer" / "c" / str(target) / "0"
    wait_until(ptr.is_file, proc, what=f"run {target}'s first checkpoint")
    proc.send_signal(signum)
    code, out, err = finish(proc)
    assert code == 3, (code, out, err)
    assert "kmc resume" in err

    # No staleness override: a run stopped by a signal says so at once (heartbeat NaN).
    s = status_json(store)
    expected = ["done"] * target + ["interrupted"] + ["pending"] * (1 - target)
    assert s["by_run"] == expected, s
    written = read_run_var(store, "samples_written")
    assert 0 < written[target] < N_SAMPLES
    assert np.isnan(read_run_var(store, "heartbeat")[target])
    # The checkpoint covers exactly the samples written (flushed, then checkpointed).
    slot, covered = pointer(store)[target]
    assert slot in (0, 1) and covered == written[target]

    meta0 = metadata(store)
    kmc_cli("resume", store, cwd=tmp_path)
    assert_all_done(store, 2)
    assert_same_data(store, reference, runs=[0, 1])
    assert metadata(store) == meta0
    assert "nothing to resume" in kmc_cli("resume", store).stdout


# ------------------------------------------------------------------------------------------------
# 3. Concurrent array tasks, one of them SIGKILLed
# ------------------------------------------------------------------------------------------------

def test_concurrent_array_tasks_one_killed(scenario, reference, tmp_path):
    """8 array tasks of one store at once, one SIGKILLed mid-run: the other 7 equal a serial run of the
    sweep, no metadata changes, status says 7 done + 1 interrupted (its process, named, is gone), and
    `--rerun-failed` completes the killed run to the reference, with no staleness setting."""
    # (`reference` only so that the kernels are compiled and cached before 9 processes start at once.)
    sweep = tmp_path / "sweep.toml"
    shutil.copy(scenario, tmp_path / "robust.toml")
    sweep.write_text(SWEEP)
    store, ref = tmp_path / "out.zarr", tmp_path / "ref.zarr"

    init = kmc_cli("sweep", sweep, "-o", store, "--init", "--runs-per-task", 1, cwd=tmp_path)
    assert f"--array=0-{N_SWEEP_RUNS - 1}" in init.stdout
    meta0 = metadata(store)
    assert "zarr.json" in meta0
    # The reference: the same sweep in a fresh store (a copy of the new template), every run one
    # after another in one process (`kmc resume` starts a store's pending runs).
    shutil.copytree(store, ref)

    victim = random.Random(3).randrange(N_SWEEP_RUNS)
    ref_proc = start("resume", ref, cwd=tmp_path)
    tasks = [start("sweep", sweep, "-o", store, "--task-id", i, cwd=tmp_path) for i in range(N_SWEEP_RUNS)]

    # Watch samples_written advance while they run; kill the victim once it has flushed 3 times.
    seen = [set() for _ in range(N_SWEEP_RUNS)]
    history = [[] for _ in range(N_SWEEP_RUNS)]
    killed = False
    import zarr

    samples_written = zarr.open_group(str(store), mode="r")["samples_written"]
    t_end = time.monotonic() + TIMEOUT_S
    while any(p.poll() is None for p in tasks) and time.monotonic() < t_end:
        written = np.asarray(samples_written[:])  # read anew each time (zarr caches no chunks)
        for r, w in enumerate(written):
            if w > 0 and w not in seen[r]:
                seen[r].add(int(w))
                history[r].append(int(w))
        if not killed and len(seen[victim]) >= 3:
            assert tasks[victim].poll() is None, "the victim finished before it could be killed"
            tasks[victim].send_signal(signal.SIGKILL)
            killed = True
        time.sleep(0.02)
    assert killed, f"never saw run {victim} flush 3 times: {history[victim]}"
    results = [finish(p) for p in tasks]
    for i, (code, out, err) in enumerate(results):
        assert code == (-signal.SIGKILL if i == victim else 0), (i, code, out, err)
    code, out, err = finish(ref_proc)
    assert code == 0, (out, err)

    others = [r for r in range(N_SWEEP_RUNS) if r != victim]
    # Each run flushed its samples many times while the others wrote beside it (one flush per
    # sample: checkpoint_every_s is 1 ms), and samples_written only ever grew.
    for r in range(N_SWEEP_RUNS):
        assert len(history[r]) >= 3, (r, history[r])
        assert history[r] == sorted(history[r]), (r, history[r])
    written = read_run_var(store, "samples_written")
    assert 0 < written[victim] < N_SAMPLES

    # The killed run's heartbeat is fresh, but it names its writer, which is gone.
    s = status_json(store)
    assert (s["done"], s["interrupted"]) == (7, 1) and s["by_run"][victim] == "interrupted", s
    [where] = s["interrupted_runs"]
    assert (where["run"], where["pid"], where["host"]) == (victim, tasks[victim].pid, socket.gethostname()), s
    assert where["why"] == f"process {tasks[victim].pid} on {socket.gethostname()} is gone", s

    assert_same_data(store, ref, runs=others)
    assert metadata(store) == meta0, "a writer changed the store's metadata"
    # Each task wrote its own run's region: its provenance says so.
    assert read_run_var(store, "array_task")[others].tolist() == others

    res = kmc_cli("sweep", sweep, "-o", store, "--rerun-failed", cwd=tmp_path)
    assert f"resuming 1 interrupted run(s): [{victim}]" in res.stderr
    assert_all_done(store, N_SWEEP_RUNS)
    assert_same_data(store, ref)
    assert metadata(store) == meta0


# ------------------------------------------------------------------------------------------------
# 4. A run that fails
# ------------------------------------------------------------------------------------------------

def test_failed_run_is_recorded_and_others_are_untouched(scenario, reference, tmp_path):
    """Run 1 of 3 fails mid-run on a storage error: a regular file where its snapshot 5 chunks go
    (what a broken disk or a full quota looks like to the writer). Real code throughout."""
    store = tmp_path / "fail.zarr"
    proc = start("run", scenario, "-o", store, "--replicas", 3, cwd=tmp_path)
    wait_until((store / "zarr.json").is_file, proc, what="the store")
    blocker = store / "lattice" / "c" / "1" / "5"  # chunk key lattice/c/<run>/<snap>/<z>/<y>/<x>
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a directory")
    assert read_run_var(store, "samples_written")[1] < 20, "run 1 passed snapshot 5 before the blocker was in place"
    code, out, err = finish(proc)
    assert code == 1, (code, out, err)
    assert "1 run(s) failed: [1]" in err

    with kmc.open(store) as ds:
        assert ds["status"].values.tolist() == [STATUS_DONE, STATUS_FAILED, STATUS_DONE]
        error = str(ds["error"].values[1])
        written = int(ds["samples_written"].values[1])
    assert error.split(":")[0].endswith("Error") and "lattice/c/1/5" in error, error
    assert 0 < written <= 5 * 4  # it failed writing snapshot 5, taken at sample 20, mid-run
    assert_same_data(store, reference, runs=[0, 2])  # the others: done and untouched

    s = status_json(store)
    assert (s["done"], s["failed"]) == (2, 1) and s["failures"] == [{"run": 1, "error": error}], s
    text = kmc_cli("status", store).stdout
    assert f"run 1 failed: {error}" in text
    # `kmc resume` leaves failed runs alone, says so, and exits 1: the store is not finished ...
    res = kmc_cli("resume", store, expect=1)
    assert "nothing to resume" in res.stdout
    assert res.stderr.splitlines()[0].startswith("kmc: run 1 left alone: failed"), res.stderr
    assert read_run_var(store, "status").tolist() == [STATUS_DONE, STATUS_FAILED, STATUS_DONE]
    # ... `--rerun-failed` redoes them, once the cause is gone.
    blocker.unlink()
    res = kmc_cli("sweep", scenario, "-o", store, "--rerun-failed", cwd=tmp_path)
    assert "redoing 1 failed run(s): [1]" in res.stderr
    assert_all_done(store, 3)
    assert_same_data(store, reference)


def test_stale_threshold_from_the_environment_is_checked(reference):
    """KMC_STALE_AFTER_S must be a number of seconds >= 0: anything else is bad input (exit 2, one line)."""
    for bad in ("soon", "-1", "nan"):
        out = kmc_cli("status", reference, expect=2, KMC_STALE_AFTER_S=bad)
        assert out.stderr.startswith("kmc: error: KMC_STALE_AFTER_S = ") and len(out.stderr.splitlines()) == 1
    assert status_json(reference, KMC_STALE_AFTER_S="2.5")["done"] == 3


# ------------------------------------------------------------------------------------------------
# 5. Who is alive: the heartbeat's writer (host, process id, process start)
# ------------------------------------------------------------------------------------------------

def _template(scenario: Path, store: Path, replicas: int, run_vars=None, monkeypatch=None) -> None:
    """A new store of ``replicas`` runs of the scenario, in this process (no run started).
    ``run_vars``: the per-run bookkeeping variables to create it with (an older kmc's)."""
    from kmc import store as st
    from kmc.api import plan_replicas
    from kmc.config import load_scenario

    if run_vars is not None:
        monkeypatch.setattr(st, "RUN_VARS", run_vars)
    plan_replicas(load_scenario(scenario), replicas).create(str(store))


def _mark_running(store: Path, run: int, *, beat_s: float, host: str | None = None, pid: int | None = None,
                  started_s: float = math.nan) -> None:
    """Mark ``run`` running as its writer does (writer's identity first, then the heartbeat)."""
    import zarr

    g = zarr.open_group(str(store), mode="r+")
    if host is not None:
        g["heartbeat_host"][run], g["heartbeat_pid"][run], g["heartbeat_process_start"][run] = host, pid, started_s
    g["status"][run] = STATUS_RUNNING
    g["heartbeat"][run] = beat_s


def _dead_pid() -> int:
    """The id of a process that has ended and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_resume_leaves_a_live_run_alone_and_says_why(scenario, reference, tmp_path):
    """A `kmc run` alive in another process: `kmc resume` leaves its run alone with one line on stderr
    naming the process and host, writes nothing, and exits 1 (unfinished, nothing resumable);
    `kmc status` names the writer. The live run goes on undisturbed (SIGTERM then stops it, exit 3).

    Planted faults it fails under: every process taken for gone (the liveness check returning "is
    gone"): the live run is resumed by a second writer and resume does not exit 1.
    """
    store = tmp_path / "live.zarr"
    # 1000 samples of ~2.6 million events each: minutes, far longer than the test; SIGTERM stops it.
    proc = start("run", scenario, "-o", store, "--set", "hop.duration_s=1000000", "--set", "output.sample_every_s=1000",
                 "--set", "output.checkpoint_every_s=1", cwd=tmp_path)
    try:
        wait_until(lambda: read_run_var(store, "samples_written")[0] > 0 if (store / "zarr.json").is_file()
                   else False, proc, what="the run's first samples")
        host, pid = socket.gethostname(), proc.pid
        res = kmc_cli("resume", store, cwd=tmp_path, expect=1)
        assert "nothing to resume" in res.stdout
        lines = res.stderr.splitlines()
        assert lines[0].startswith(f"kmc: run 0 left alone: process {pid} on {host} is alive (heartbeat "), res.stderr
        assert lines[1:] == ["kmc: 1 run(s) not finished and none could be resumed"], res.stderr

        s = status_json(store)
        assert s["by_run"] == ["running"], s
        [where] = s["running_runs"]
        assert (where["run"], where["host"], where["pid"]) == (0, host, pid), s
        assert f"  run 0 running: process {pid} on {host} is alive" in kmc_cli("status", store).stdout
        assert proc.poll() is None, "the run ended before the checks were done: make it longer"
    finally:
        proc.send_signal(signal.SIGTERM)
        code, out, err = finish(proc)
    assert code == 3, (code, out, err)


def test_another_hosts_run_is_judged_by_its_heartbeat_age(scenario, reference, tmp_path):
    """Writers on another host: run 0's heartbeat is fresh, so it is left alone (its reason printed)
    although its process id is not alive here; run 1's is an hour old, so it is resumed although its
    process id is alive here (this test's). Run 1 then ends with the reference's data.

    Planted faults it fails under: the host ignored (every writer checked as if on this host): run 0
    is resumed and run 1 left alone.
    """
    store = tmp_path / "hosts.zarr"
    _template(scenario, store, 2)
    now, other = time.time(), "elsewhere.invalid"
    dead = _dead_pid()
    me = psutil.Process()
    _mark_running(store, 0, beat_s=now, host=other, pid=dead, started_s=now - 5)
    _mark_running(store, 1, beat_s=now - 3600, host=other, pid=me.pid, started_s=me.create_time())

    s = status_json(store)
    assert s["by_run"] == ["running", "interrupted"], s
    assert [(w["run"], w["host"], w["pid"]) for w in s["running_runs"]] == [(0, other, dead)], s
    res = kmc_cli("resume", store, cwd=tmp_path)
    lines = res.stderr.splitlines()
    assert lines[0].startswith("kmc: run 0 left alone: heartbeat ") and lines[0].endswith(
        f" s ago from process {dead} on {other}, another host: taken for dead after 60 s without one "
        f"(KMC_STALE_AFTER_S sets it)"), res.stderr
    assert lines[1] == "kmc: resuming 1 run(s): [1]", res.stderr
    assert read_run_var(store, "status").tolist() == [STATUS_RUNNING, STATUS_DONE]
    assert read_run_var(store, "samples_written")[0] == 0  # run 0 untouched
    assert read_run_var(store, "heartbeat_host")[1] == socket.gethostname()  # run 1's writer: that resume
    assert_same_data(store, reference, runs=[1])


def test_writer_on_this_host_gone_zombie_or_id_reused(scenario, tmp_path):
    """Writers on this host, judged by their process: this one (alive: running); this one's id with
    another start time (id reused: interrupted); a zombie child (interrupted); a reaped child
    (interrupted). Each gives its reason; heartbeats are all fresh.

    Planted faults it fails under: the start time not compared (run 1 reads as running); zombies not
    told apart (run 2 running); the pid check ignored, the heartbeat's age alone deciding (runs 1-3
    running).
    """
    store = tmp_path / "local.zarr"
    _template(scenario, store, 4)
    host, me, now = socket.gethostname(), psutil.Process(), time.time()
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        wait_until(lambda: psutil.Process(zombie.pid).status() == psutil.STATUS_ZOMBIE, what="a zombie")
        dead = _dead_pid()
        _mark_running(store, 0, beat_s=now, host=host, pid=me.pid, started_s=me.create_time())
        _mark_running(store, 1, beat_s=now, host=host, pid=me.pid, started_s=me.create_time() - 100)
        _mark_running(store, 2, beat_s=now, host=host, pid=zombie.pid,
                      started_s=psutil.Process(zombie.pid).create_time())
        _mark_running(store, 3, beat_s=now, host=host, pid=dead, started_s=now - 5)
        got = [(s.status, s.why) for s in run_statuses(store)]
    finally:
        zombie.wait()
    assert got[0][0] == "running" and got[0][1].startswith(f"process {me.pid} on {host} is alive (heartbeat "), got
    assert got[1:] == [
        ("interrupted", f"process {me.pid} on {host} is gone (its id now belongs to another process)"),
        ("interrupted", f"process {zombie.pid} on {host} is gone (a zombie)"),
        ("interrupted", f"process {dead} on {host} is gone")], got


def test_store_without_writer_variables_falls_back_to_heartbeat_age(scenario, reference, tmp_path, monkeypatch):
    """A store made before the writer was recorded (no heartbeat_host/pid/process_start): a running
    run is judged by its heartbeat's age as before (fresh: running, an hour old: interrupted), and
    `kmc resume` resumes the stale one to the reference without adding the variables.

    Planted faults it fails under: the writer variables read or written unconditionally (KeyError:
    status fails, the resumed run fails).
    """
    from kmc import store as st

    old_vars = tuple(v for v in st.RUN_VARS if v.name not in st.WRITER_VARS)
    store = tmp_path / "old.zarr"
    _template(scenario, store, 2, run_vars=old_vars, monkeypatch=monkeypatch)
    now = time.time()
    _mark_running(store, 0, beat_s=now)
    _mark_running(store, 1, beat_s=now - 3600)
    got = [(s.status, s.host, s.pid) for s in run_statuses(store)]
    assert got == [("running", "", -1), ("interrupted", "", -1)], got

    res = kmc_cli("resume", store, cwd=tmp_path)
    assert res.stderr.splitlines()[0].startswith("kmc: run 0 left alone: heartbeat "), res.stderr
    assert "the store records no process id" in res.stderr.splitlines()[0], res.stderr
    assert read_run_var(store, "status").tolist() == [STATUS_RUNNING, STATUS_DONE]
    assert not (store / "heartbeat_pid").exists()
    assert_same_data(store, reference, runs=[1])


def test_interrupted_in_a_live_process_is_resumable_at_once(scenario, reference, tmp_path):
    """A run left by a KeyboardInterrupt in a process that lives on (a notebook's kernel: here, this
    test's process) reads as interrupted at once, and resumes to the reference.

    Planted faults it fails under: the heartbeat not set to NaN when the run is left unrecorded (the
    run reads as running: its writer, this process, is alive).
    """
    from kmc.runner import DONE, execute_run

    store = tmp_path / "kbd.zarr"
    _template(scenario, store, 1)

    def interrupt(k):
        if k == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execute_run(str(store), 0, progress=interrupt)
    [s] = run_statuses(store)
    assert (s.status, s.pid) == ("interrupted", os.getpid()), s
    assert 0 < s.samples_written < N_SAMPLES
    assert execute_run(str(store), 0) == DONE
    assert_same_data(store, reference, runs=[0])
