"""The ``kmc`` command line.

Every error a user can cause (a ``KmcError``) is printed as one line naming the key and what is
allowed, and exits with code 2.
"""
from __future__ import annotations

import math
import sys

import click

from kmc import __version__
from kmc.config import MAX_RUNS
from kmc.errors import KmcError, printable


class _Group(click.Group):
    """Turns KmcError into a one-line message and exit code 2, whatever the subcommand."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KmcError as err:
            click.echo(f"kmc: error: {err}", err=True)
            sys.exit(err.exit_code)
        except click.UsageError as err:
            # Bad options of a subcommand (`--replicas 0`, a directory as SCENARIO.toml) are bad input
            # too: SCHEMA.md wants one line naming the option, not click's usage block (exit code 2 as before).
            message = " ".join(err.format_message().split())
            command = err.ctx.command_path if err.ctx is not None else "kmc"
            click.echo(f"kmc: error: {message} (see `{command} --help`)", err=True)
            sys.exit(err.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="kmc")
def main():
    """Kinetic Monte Carlo of anode-free sodium solid-state batteries.

    Na is plated in situ between a current collector and a solid electrolyte; the simulator follows
    nucleation, growth, contact under stack pressure, filaments and voids on a 3D voxel lattice in
    physical units, and writes trajectories to Zarr stores for xarray. The model it implements is
    described in docs/model.md of the repository (`mkdocs serve` there shows all of docs/).

    \b
    Commands:
      run       run a scenario (with replicas) into a Zarr store
      sweep     run a parameter sweep on Dask, or as a cluster job array
      status    what each run of a store is doing, and why failed runs failed
      resume    continue a store's interrupted and unstarted runs from their checkpoints
      plot      the standard figures of a store, as PNG files
      export    a run's lattice snapshots and maps as VTK files for ParaView
      validate  run the validation experiments (docs/validation.md), model against paper
      converge  is a validation row converged? halve its voxel, double its domain, compare medians
      bench     the engine benchmark (events per second on the hop model)

    \b
    A first session:
      kmc run scenarios/validation/T2.toml -o T2.zarr --replicas 4   # Au-Al on NASICON, 2 mAh/cm2
      kmc status T2.zarr
      kmc plot T2.zarr -o T2_figures
      python -c "import kmc; print(kmc.open('T2.zarr').kmc.summary())"

    Run `kmc COMMAND --help` for the options of a command. Exit codes: 0 success, 1 a run failed,
    2 bad input or a run that would not fit in memory (nothing written), 3 stopped by a signal after a
    checkpoint.
    """


def _parse_sizes(ctx, param, value):
    try:
        sizes = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected comma-separated integers, e.g. 22,46,100")
    if any(s < 2 for s in sizes):
        raise click.BadParameter(f"{value!r}: every size must be at least 2")
    return sizes


@main.command()
@click.option("--sizes", default="22,46,100", show_default=True, callback=_parse_sizes,
              help="Lattice edges L (comma-separated); each run is a periodic L×L×L lattice.")
@click.option("--fraction", default=0.5, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Fraction of sites occupied.")
@click.option("--seconds", "min_seconds", default=2.0, show_default=True, type=click.FloatRange(min=0.0),
              help="Minimum wall time of timed events per run, after warm-up.")
@click.option("--model", "models", type=click.Choice(["hop", "hop-random"]), multiple=True,
              help="Model(s) to run; default both. hop-random draws per-site rate multipliers "
                   "log-uniformly over 3 decades.")
@click.option("--seed", default=1, show_default=True, type=int, help="Seed of each run's generator.")
def bench(sizes, fraction, min_seconds, models, seed):
    """The engine benchmark: events per second of the hop model.

    The hop model is the common benchmark of lattice KMC engines: a periodic L³ simple-cubic
    lattice, a fraction of sites occupied at random, each particle hopping to each empty first
    neighbour at rate 1. It runs through the same solver as the battery model. One line per run:

    \b
      hop L=<L> sites=<n> events=<n> seconds=<s> events_per_s=<r> state_bytes_per_site=<b> peak_rss_mb=<m>

    (`hop-random` for the variant). peak_rss_mb is the process's peak so far, compiler included.
    """
    from kmc.bench import run_benchmarks

    run_benchmarks(sizes, fraction, min_seconds, models or ("hop", "hop-random"), seed)


def _report_runs(command: str, failed: list[str], busy: list[str]) -> None:
    """One line each for the runs of a study that failed and those another process is running."""
    if failed:
        _echo_err(f"{command}: {len(failed)} run(s) failed: {', '.join(failed[:20])}; `kmc status` shows why")
    if busy:
        _echo_err(f"{command}: not finished (running elsewhere): {', '.join(busy[:20])}")


def _echo_err(message: str) -> None:
    click.echo(f"kmc: {message}", err=True)


def _finish(outcomes: dict) -> None:
    from kmc.executors import summarize

    code = summarize(outcomes)
    if code == 3:
        _echo_err("stopped by a signal after writing a checkpoint; `kmc resume` continues")
    elif code == 1:
        failed = [r for r, o in outcomes.items() if o != "done"]
        _echo_err(f"{len(failed)} run(s) failed: {failed[:20]}; `kmc status` shows why")
    sys.exit(code)


_MAX_MEMORY_HELP = ("Refuse a run whose estimated peak memory exceeds SIZE (e.g. 8G, 500M, 1.5GiB; K/M/G/T are "
                    "powers of 1024, as SLURM's --mem). Default: the memory this machine has available now "
                    "(MemAvailable, or less under a cgroup limit such as a job's --mem).")


@main.command()
@click.argument("scenario_file", metavar="SCENARIO.toml", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "out", metavar="OUT.zarr", type=click.Path(),
              help="Store to write (default: <scenario name>.zarr in the working directory).")
@click.option("--seed", type=int, help="Seed of replica 0 (default: [scenario] seed). Each run's `seed` "
              "coordinate reproduces that run alone with `kmc run --seed <seed>`.")
@click.option("--replicas", default=1, show_default=True, type=click.IntRange(min=1, max=MAX_RUNS),
              help="Independent stochastic replicas of the scenario.")
@click.option("--set", "overrides", metavar="KEY=VALUE", multiple=True,
              help="Override a scenario key, dotted, array entries by index; the value is a TOML value. "
                   "E.g. --set conditions.stack_pressure_mpa=5 --set protocol.0.current_ma_cm2=0.2")
@click.option("--overwrite", is_flag=True, help="Replace an existing store.")
@click.option("--max-memory", metavar="SIZE", help=_MAX_MEMORY_HELP)
@click.option("--dry-run", is_flag=True,
              help="Validate, print the resolved scenario, the store size, the memory estimate and the expected run "
                   "time (from the machine's benchmark, `python benchmarks/battery.py --record`); write nothing. "
                   "Exit code 0 if the run would start, 2 (with the refusal's line) if it would be refused "
                   "for memory.")
def run(scenario_file, out, seed, replicas, overrides, overwrite, max_memory, dry_run):
    """Run a scenario into a Zarr store.

    The scenario file is validated first (unknown keys, wrong types and unphysical values are
    refused with exit code 2 and nothing written); then the store's template is created, and each
    replica runs in turn, writing its samples as it goes and checkpointing every
    `output.checkpoint_every_s` of wall time. A progress bar shows on a terminal.

    SIGTERM or SIGINT (Ctrl-C) stops after the current sample with a checkpoint (exit code 3);
    `kmc resume OUT.zarr` then continues exactly where it stopped.

    Before anything is allocated or written, each run's peak memory is estimated from the scenario's
    sizes (the State, the phases' temporaries, the interpreter); a run whose estimate exceeds
    --max-memory, or by default the memory this machine has available, is refused (exit code 2, one
    line with the lattice keys, the estimate and the limit). --dry-run prints the estimate, and the
    expected run time where a benchmark of the model exists (kmc.runtime_estimate).
    """
    from kmc import memory
    from kmc.api import plan_replicas
    from kmc.config import load_scenario
    from kmc.executors import run_serial, stop_on_signals

    scenario = load_scenario(scenario_file, overrides=list(overrides))
    plan = plan_replicas(scenario, replicas, seed, command=" ".join(["kmc"] + sys.argv[1:]))
    out = out or f"{scenario.name}.zarr"
    estimate = plan.memory()
    if dry_run:
        # Everything is estimated before anything is printed: a scenario refused on the way prints
        # nothing on stdout.
        store_mb = plan.estimated_bytes() / 1e6
        memory.check(estimate, max_memory)  # a run that would be refused: its one line, exit 2, nothing printed
        click.echo(scenario.dumps_toml())
        click.echo(f"# runs: {plan.n_runs}, seeds: {plan.seeds[:8]}{' ...' if plan.n_runs > 8 else ''}")
        click.echo(f"# store: {printable(out)}, at most {store_mb:.1f} MB uncompressed")
        click.echo(f"# memory: {estimate.describe()}; limit: {memory.limit_bytes(max_memory)[1]}")
        # Only here: the normal run path neither reads the benchmark nor builds a second model.
        from kmc.model import model_for
        from kmc.runtime_estimate import describe

        runtime = describe(model_for(scenario), plan.n_runs)
        if runtime is not None:
            click.echo(f"# {runtime}")
        return
    memory.check(estimate, max_memory)
    # Signals are caught from before the store exists: a SIGTERM during creation then stops the runs
    # at their first sample with a checkpoint (exit 3) instead of killing a half-made store.
    with stop_on_signals() as stop:
        plan.create(out, overwrite=overwrite)
        outcomes = run_serial(out, range(plan.n_runs), stop=stop, n_samples=plan.layout().sizes.get("sample"))
    _finish(outcomes)


@main.command()
@click.argument("sweep_file", metavar="[SWEEP.toml]", type=click.Path(dir_okay=False), required=False)
@click.option("-o", "--output", "out", metavar="OUT.zarr", required=True, type=click.Path(), help="Store to write.")
@click.option("--workers", type=click.IntRange(min=1), help="Dask LocalCluster worker processes (default: CPU count).")
@click.option("--scheduler", metavar="ADDRESS", help="Use a running Dask scheduler (e.g. started by dask-jobqueue).")
@click.option("--init", "init", is_flag=True, help="Only create the store for a job array and print the --array range.")
@click.option("--runs-per-task", default=1, show_default=True, type=click.IntRange(min=1),
              help="With --init: runs per array task.")
@click.option("--task-id", type=int, metavar="I",
              help="Run array task I (0-based; default $SLURM_ARRAY_TASK_ID): runs I*K ... I*K+K-1.")
@click.option("--rerun-failed", is_flag=True,
              help="Redo the store's failed runs and resume its interrupted ones (writer gone; not runs alive "
                   "elsewhere).")
@click.option("--overwrite", is_flag=True, help="Replace an existing store.")
@click.option("--max-memory", metavar="SIZE",
              help=_MAX_MEMORY_HELP + " Per run: on a LocalCluster the default is shared by its workers; with "
                   "--scheduler only SIZE is checked; for --init give the array nodes' memory per run.")
def sweep(sweep_file, out, workers, scheduler, init, runs_per_task, task_id, rerun_failed, overwrite, max_memory):
    """Run a parameter sweep: every point of [vary] times `replicas`.

    \b
    Three ways to run it:
      kmc sweep S.toml -o OUT.zarr                 on a Dask LocalCluster (or --scheduler ADDRESS)
      kmc sweep S.toml -o OUT.zarr --init --runs-per-task 4
                                                   create the store for a job array; prints --array=0-N
      kmc sweep S.toml -o OUT.zarr --task-id I     one array task (default $SLURM_ARRAY_TASK_ID)

    A SLURM array script runs `kmc sweep S.toml -o OUT.zarr` with no --task-id. --task-id and
    --rerun-failed read everything from the store (its sweep definition), so SWEEP.toml may be
    left out for them. Each run's seed
    derives from the sweep seed, the point's values and the replica, so adding points never
    reseeds existing runs. Sweeping a key that changes array shapes (lattice.*) is refused.
    `--rerun-failed` redoes failed runs and resumes interrupted ones (their process gone, judged as by
    `kmc resume`); `kmc status OUT.zarr` shows which.

    Every way refuses, before anything is written, runs whose estimated peak memory (the largest
    point's) exceeds --max-memory or the memory available here (exit code 2); --init prints the
    estimate, to size the array's jobs (e.g. sbatch --mem).
    """
    import os

    from kmc.api import check_memory, local_workers, plan_sweep, store_plan
    from kmc.executors import run_dask, run_serial, stop_on_signals
    from kmc.run_status import run_statuses
    from kmc.store import root_attrs

    command = " ".join(["kmc"] + sys.argv[1:])
    env_task = os.environ.get("SLURM_ARRAY_TASK_ID")
    if task_id is None and env_task is not None and not init and not rerun_failed:
        try:
            task_id = int(env_task)
        except ValueError:
            raise KmcError(f"SLURM_ARRAY_TASK_ID = {env_task!r} is not allowed: expected an integer")
    if rerun_failed or task_id is not None:
        attrs = root_attrs(out)
        n_runs = len(run_statuses(out))
        if rerun_failed:
            # A failed run starts afresh; an interrupted one (its process died) continues from its checkpoint.
            statuses = run_statuses(out)
            _report_left_alone((s for s in statuses if s.status == "running"), out)
            redo = [r.run for r in statuses if r.status in ("failed", "interrupted")]
            if redo:
                check_memory(store_plan(out).memory(), max_memory,
                             None if scheduler else local_workers(workers, len(redo)) if workers else 1)
            outcomes = {}
            for kind, resume_it in (("failed", False), ("interrupted", True)):
                runs = [s.run for s in statuses if s.status == kind]
                if not runs:
                    continue
                _echo_err(f"{'redoing' if kind == 'failed' else 'resuming'} {len(runs)} {kind} run(s): {runs[:20]}")
                if workers or scheduler:
                    outcomes.update(run_dask(out, runs, resume=resume_it, workers=workers, scheduler=scheduler))
                else:
                    with stop_on_signals() as stop:
                        outcomes.update(run_serial(out, runs, resume=resume_it, stop=stop))
            _finish(outcomes)
        k = int(attrs.get("runs_per_task", 0))
        if k < 1:
            raise KmcError(f"--task-id: store {out!r} was not created with --init (no runs_per_task)")
        n_tasks = -(-n_runs // k)
        if not 0 <= task_id < n_tasks:
            raise KmcError(f"--task-id = {task_id} is not allowed: expected 0 to {n_tasks - 1} for this store")
        runs = list(range(task_id * k, min(n_runs, task_id * k + k)))
        check_memory(store_plan(out).memory(), max_memory)  # this node's memory (its cgroup: the job's --mem)
        with stop_on_signals() as stop:
            outcomes = run_serial(out, runs, array_task=task_id, stop=stop)
        _finish(outcomes)
    if sweep_file is None:
        raise KmcError("SWEEP.toml is needed to create a sweep store (only --task-id and --rerun-failed "
                       "work from the store alone)")
    plan = plan_sweep(sweep_file, runs_per_task=runs_per_task if init else 0, command=command)
    # An array task runs its runs one by one; a LocalCluster holds one run per worker at once.
    check_memory(plan.memory(), max_memory, 1 if init else None if scheduler else local_workers(workers, plan.n_runs))
    plan.create(out, overwrite=overwrite)
    if init:
        n_tasks = -(-plan.n_runs // runs_per_task)
        click.echo(f"created {out}: {plan.n_runs} runs, {runs_per_task} per task; memory: {plan.memory().describe()}")
        click.echo(f"--array=0-{n_tasks - 1}")
        return
    _finish(run_dask(out, list(range(plan.n_runs)), workers=workers, scheduler=scheduler))


@main.command()
@click.argument("store", metavar="OUT.zarr", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(store, as_json):
    """Show how many runs are pending, running, interrupted, done and failed, why runs failed, and
    where running runs run.

    A run marked running is judged by its writer, recorded with each heartbeat: on this host, by
    whether that process is still alive (interrupted at once when it is gone); on another host, by
    the heartbeat's age (interrupted once it is older than a minute; KMC_STALE_AFTER_S=SECONDS
    changes that, for a lost node). Each running or interrupted run gets a line saying which process
    wrote it (host, process id) and why it is judged so. `kmc resume` continues interrupted runs
    from their last checkpoint.
    """
    import json

    from kmc.run_status import run_statuses

    statuses = run_statuses(store)
    counts = {k: 0 for k in ("pending", "running", "interrupted", "done", "failed")}
    for s in statuses:
        counts[s.status] = counts.get(s.status, 0) + 1
    failures = [{"run": s.run, "error": s.error} for s in statuses if s.status == "failed"]
    writers = {kind: [{"run": s.run, "host": s.host, "pid": s.pid,
                       "heartbeat_age_s": s.heartbeat_age_s if math.isfinite(s.heartbeat_age_s) else None,
                       "why": s.why} for s in statuses if s.status == kind] for kind in ("running", "interrupted")}
    if as_json:
        click.echo(json.dumps({"runs": len(statuses), **counts, "failures": failures,
                               "by_run": [s.status for s in statuses],
                               "running_runs": writers["running"], "interrupted_runs": writers["interrupted"]}))
        return
    click.echo(f"{store}: {len(statuses)} runs: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    for kind, hint in (("running", ""), ("interrupted", "; `kmc resume` continues it")):
        shown = writers[kind][:_RUN_LINES]
        for w in shown:
            click.echo(f"  run {w['run']} {kind}: {w['why']}{hint}")
        if len(writers[kind]) > len(shown):
            click.echo(f"  ... and {len(writers[kind]) - len(shown)} more {kind} (--json lists every one)")
    for f in failures:
        click.echo(f"  run {f['run']} failed: {f['error']}")


#: `kmc status` lists at most this many running (and as many interrupted) runs, one line each.
_RUN_LINES = 20


def _report_left_alone(statuses, store: str = "OUT.zarr") -> int:
    """One line on stderr per run not resumed (running, failed), saying why; returns how many."""
    n = 0
    for s in statuses:
        if s.status == "running":
            why = s.why
        elif s.status == "failed":
            why = f"failed (`kmc status {store}` shows why; `kmc sweep -o {store} --rerun-failed` redoes it)"
        else:
            why = s.status
        _echo_err(f"run {s.run} left alone: {why}")
        n += 1
    return n


@main.command()
@click.argument("store", metavar="OUT.zarr", type=click.Path())
@click.option("--workers", type=click.IntRange(min=1), help="Resume on a Dask LocalCluster of this many workers.")
@click.option("--scheduler", metavar="ADDRESS", help="Resume on a running Dask scheduler.")
@click.option("--max-memory", metavar="SIZE", help=_MAX_MEMORY_HELP)
def resume(store, workers, scheduler, max_memory):
    """Continue a store's interrupted runs from their last checkpoint, and start its pending runs.

    A run marked running is resumed at once when the process that wrote it, on this host, is gone
    (killed, crashed, its machine rebooted); it is left alone while that process is alive, and when
    it runs on another host whose heartbeat is fresh (under a minute old: KMC_STALE_AFTER_S=SECONDS
    changes that, for a lost node). Failed runs are left alone too (`kmc sweep -o OUT.zarr
    --rerun-failed` redoes them). Each run left alone gets a line on stderr saying why. A resumed run
    ends with exactly the data it would have had without the interruption.

    Runs whose estimated peak memory exceeds --max-memory, or the memory available here, are refused
    first (exit code 2, nothing written).

    Exit codes: 0 every run is done, or the runs that could be resumed were resumed to completion;
    1 runs remain unfinished and none could be resumed (or a resumed run failed); 3 stopped by a
    signal after a checkpoint.
    """
    from kmc.api import check_memory, local_workers, store_plan
    from kmc.executors import run_dask, run_serial, stop_on_signals
    from kmc.run_status import run_statuses

    statuses = run_statuses(store)
    runs = [s.run for s in statuses if s.status in ("interrupted", "pending")]
    left_alone = _report_left_alone((s for s in statuses if s.status not in ("interrupted", "pending", "done")),
                                    store)
    if not runs:
        click.echo(f"{store}: nothing to resume")
        if left_alone:
            _echo_err(f"{left_alone} run(s) not finished and none could be resumed")
            sys.exit(1)
        return
    check_memory(store_plan(store).memory(), max_memory,
                 None if scheduler else local_workers(workers, len(runs)) if workers else 1)
    _echo_err(f"resuming {len(runs)} run(s): {runs[:20]}")
    if workers or scheduler:
        _finish(run_dask(store, runs, workers=workers, scheduler=scheduler))
    with stop_on_signals() as stop:
        _finish(run_serial(store, runs, stop=stop))


def _parse_indices(ctx, param, value):
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected comma-separated integers, e.g. 0,5,-1")


@main.command()
@click.argument("store", metavar="OUT.zarr", type=click.Path())
@click.option("-o", "--output", "out_dir", metavar="DIR", type=click.Path(file_okay=False),
              help="Directory for the PNG files (default: <store name>_figures in the working directory).")
@click.option("--run", "run_index", default=0, show_default=True, type=int,
              help="Run whose maps and lattice cuts are drawn.")
@click.option("--frames", callback=_parse_indices, metavar="I,J,...",
              help="Map frames to draw (default: first, middle and last written; negative: from the last).")
@click.option("--snaps", callback=_parse_indices, metavar="I,J,...",
              help="Lattice snapshots to cut (default: first, middle and last written; negative: from the last).")
@click.option("--all-runs", is_flag=True, help="Draw unfinished runs (running, failed) too, not only finished ones.")
def plot(store, out_dir, run_index, frames, snaps, all_runs):
    """Draw the standard figures of a store as PNG files, and list the files written.

    \b
    voltage_vs_charge.png       cell voltage vs charge, replicas thin, mean per sweep point thick;
                                plating solid, stripping dashed, rest dotted
    contact_void_vs_charge.png  contact fraction and interface void fraction vs charge
    thickness_map_runR.png      Na thickness per column at the chosen frames of run R
    current_map_runR.png        current density per pixel at the same frames
    stress_map_runR.png         stress of the Na deposits per pixel at the same frames (runs with
                                model.insertion = "least_stress")
    lattice_cut_runR.png        vertical x-z cuts through lattice snapshots of run R, by state
    ce_vs_cycle.png             Coulombic efficiency per cycle
    ccd_histogram.png           critical current densities across runs
    short_survival.png          Kaplan-Meier probability of no short vs charge

    A figure is drawn only when the store has its variables (the hop benchmark model has only
    lattice snapshots). Curves use finished runs unless --all-runs is given. The same figures from
    Python: `kmc.open(store).kmc.figures(DIR)`.
    """
    from pathlib import Path

    from kmc.analysis.figures import write_figures
    from kmc.api import open as open_store

    ds = open_store(store)
    out_dir = Path(out_dir) if out_dir else Path(Path(store).name.removesuffix(".zarr") + "_figures")
    result = write_figures(ds, out_dir, run=run_index, frames=frames, snaps=snaps, only_done=not all_runs)
    for path in result.files:
        click.echo(f"wrote {path}")
    curves = ("voltage_vs_charge", "contact_void_vs_charge", "ce_vs_cycle", "ccd_histogram", "short_survival")
    reasons = {result.skipped.get(name) for name in curves}
    model = ds.attrs.get("model", "unknown")
    if all(name in result.skipped for name in curves):
        if any(r and r.startswith("no finished runs") for r in reasons):
            click.echo(f"{store}: no curves: no finished runs (`kmc status {store}`; --all-runs draws unfinished ones)")
        else:
            click.echo(f"{store}: no voltage, contact, CE, CCD or short figures: the store (model {model!r}) "
                       f"has none of their variables")
    if not result.files:
        click.echo(f"{store}: no figure applies; nothing written")


@main.command()
@click.argument("store", metavar="OUT.zarr", type=click.Path())
@click.option("--vtk", "vtk_dir", metavar="DIR", required=True, type=click.Path(),
              help="Directory for the VTK files (created if missing; files of the same names are replaced).")
@click.option("--run", "run_index", default=0, show_default=True, type=int,
              help="Run to export (0-based index along the store's run dimension).")
def export(store, vtk_dir, run_index):
    """Write a run's lattice snapshots and maps as VTK image data, to look at in ParaView.

    \b
    DIR/lattice_runR_NNNN.vti   each 3D snapshot NNNN of run R: cell data "state" (the store's
                                uint8 state codes), one cell per voxel, spacing the voxel size
                                (µm; site indices for the hop model)
    DIR/lattice_runR.pvd        the snapshots with their simulated times (s): open this one
                                in ParaView to play them in time
    DIR/maps_runR_NNNN.vti      each map frame NNNN as a 2D image, one cell per column: cell data
                                thickness_map [µm], contact_map, current_map [mA/cm2] (and
                                stress_map [MPa] when the store has it)
    DIR/maps_runR.pvd           the frames with their simulated times
    DIR/legend.json             state code -> meaning, spacing and units, the maps' units

    The state legend (for the battery model 0 gap, 1 electrolyte, 2 sodium, 3 collector,
    4 interphase; for the hop model 0 empty, 1 occupied) is in every snapshot file too, as the
    field arrays state_code and state_meaning; each file also has its time as the field array
    TimeValue. In ParaView, color by "state" and tick "Interpret Values As Categories"; a Threshold
    on state = 2 shows the sodium.

    Snapshot and frame slots past the run's end (a run that shorted or stopped early, or one still
    running) are skipped. Bad input — OUT.zarr not a kmc store, --run out of range, DIR a file, a
    run with nothing written yet — gives one line on stderr, exit code 2, and nothing written.
    """
    from kmc.export import export_vtk

    done = export_vtk(store, vtk_dir, run=run_index)
    if done.snapshots:
        click.echo(f"wrote {len(done.snapshots)} lattice snapshot(s) of run {run_index}: "
                   f"{done.collections[0]} (+ {done.snapshots[0].name} ...)")
    if done.frames:
        click.echo(f"wrote {len(done.frames)} map frame(s) of run {run_index}: "
                   f"{done.collections[-1]} (+ {done.frames[0].name} ...)")
    click.echo(f"wrote {done.legend}")
    skipped = [f"{len(s)} {what}" for s, what in ((done.skipped_snaps, "snapshot(s)"), (done.skipped_frames, "frame(s)"))
               if s]
    if skipped:
        click.echo(f"skipped {' and '.join(skipped)} past the run's end (fill values)")


def _parse_rows(ctx, param, value):
    if value is None:
        return None
    rows = tuple(dict.fromkeys(v.strip().upper() for v in value.split(",") if v.strip()))
    if not rows:
        raise click.BadParameter(f"{value!r}: expected comma-separated row ids, e.g. T2,T3")
    return rows


@main.command()
@click.option("--quick", is_flag=True,
              help="Small lattices (16²–32² columns, same voxels), 3 replicas: assert the directions, not the values (CI).")
@click.option("-o", "--output", "out_dir", metavar="DIR", type=click.Path(),
              help="Directory of the stores (<case>.zarr) and of the table (validation.csv, validation.md); "
                   "default: validation/, or validation-quick/ with --quick.")
@click.option("--rows", callback=_parse_rows, metavar="ID,ID,...",
              help="Rows to run and tabulate, by VALIDATION.md id (default: all): T1,T2,T3,T4,T5,T6,D1,D2,D3,D4.")
@click.option("--replicas", type=click.IntRange(min=1),
              help="Replicas of each scenario (default: 8, the least VALIDATION.md allows; 3 with --quick).")
@click.option("--workers", type=click.IntRange(min=1),
              help="Worker processes, one run each (default: the CPU count).")
@click.option("--overwrite", is_flag=True, help="Recompute the selected rows from scratch (replace their stores).")
def validate(quick, out_dir, rows, replicas, workers, overwrite):
    """Run the VALIDATION.md experiments and print model against paper.

    Every row of VALIDATION.md runs its scenarios (scenarios/validation/<id>.toml; D1 has a foil
    and a pellet one) with replicas,
    each scenario into its own store DIR/<name>.zarr. Then one table, a line per quantity: the
    row's id and role (calibrates a constant, or predicts), the condition and lattice, the paper's
    value, the accepted range, the model's median over the finished replicas and their spread
    (min–max), the number of runs, and whether the median is within the range. Shares of replicas
    (shorted, not shorted) are judged as shares. A run that did not short has its short charge or
    CCD counted as "no short", above every value, so when fewer than half the replicas short the
    median is "no short" too. The table is also written to DIR/validation.csv and
    DIR/validation.md (to paste into a README).

    \b
    Below the table, the directions VALIDATION.md asks of the quick run:
      the pellet's CE above the foil's           median CE, D1_pellet vs D1_foil
      Au-Al does not short where bare Al does    share of replicas shorted, T2 vs T1
      the sulfide's CE below half the NBH foil's median CE, D3 vs half of D1_foil's

    A full validate takes hours on 2 cores (T6 cycles ten times): runs go to --workers processes,
    longest first, with a progress bar per scenario on a terminal (a line per finished run
    otherwise). The stores are kept: the same command again reuses finished runs and resumes
    interrupted ones from their checkpoints; Ctrl-C or SIGTERM checkpoints every running run
    (exit code 3). A store made for another scenario, other material constants or another replica
    count is refused (exit 2, nothing written) unless --overwrite; failed runs are reported, not
    rerun (--overwrite reruns their rows).

    --quick is for CI: 16²–32² columns of the same voxels, 3 replicas, the ccd rows in coarser
    current steps and the stripping rows with coarser field re-solves (the rows of the directions
    as they are). It asserts the directions; the table is printed too, titled "quick: directions
    only", since values on small lattices are not expected in the accepted ranges.

    Exit codes: 0 every run finished (and, with --quick, every direction holds; rows outside their
    range do not change it: the table says), 1 a run failed or, with --quick, a direction fails
    (named on stderr), 2 bad input, 3 stopped by a signal after writing checkpoints.
    """
    from kmc.executors import show_progress
    from kmc.validate import validate as run_validation

    outcome = run_validation(rows, quick=quick, out_dir=out_dir, replicas=replicas, workers=workers,
                             overwrite=overwrite, command=" ".join(["kmc"] + sys.argv[1:]),
                             progress=show_progress(), report=lambda message: _echo_err(f"validate: {message}"))
    if outcome.stopped:
        _echo_err("validate: stopped by a signal after writing checkpoints; the same command continues")
        sys.exit(outcome.exit_code)
    _print_validation(outcome)
    for path in outcome.tables:
        _echo_err(f"validate: wrote {path}")
    _report_runs("validate", outcome.failed_runs, outcome.busy)
    if quick:
        for d in outcome.failed_directions:
            _echo_err(f"validate --quick: direction fails: {d.direction.name}: {d.detail}")
    sys.exit(outcome.exit_code)


def _print_validation(outcome) -> None:
    """The table of a validate's Outcome on stdout, and below it the directions."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from kmc import validation as val

    results, directions, quick = outcome.results, outcome.directions, outcome.quick
    console = Console(width=None if sys.stdout.isatty() else 200)
    table = Table(title=outcome.title, caption="median over finished replicas; spread: min–max",
                  show_lines=False)
    for name in val.COLUMNS:
        table.add_column(name, overflow="fold",
                         justify="right" if name in ("model", "spread (min–max)", "n") else "left")
    for i, r in enumerate(results):
        cells = r.cells()
        if i and results[i - 1].row is r.row:  # a row's id, role and condition once, on its first quantity
            cells.update(id="", role="", condition="")
        last = i + 1 == len(results) or results[i + 1].row is not r.row
        style = "dim" if quick else ("green" if r.within else "red" if r.within is False else "")
        table.add_row(*(Text(cells[name], style=style if name == "within range" else "") for name in val.COLUMNS),
                      end_section=last)
    console.print(table)
    shown = [d for d in directions if d.holds is not None]
    if shown:
        console.print("Directions (VALIDATION.md):" + (" asserted" if quick else " not asserted without --quick"))
        for d in shown:
            mark = "[green]holds[/]" if d.holds else "[red]FAILS[/]"
            console.print(Text.from_markup(f"  {mark}  ").append(f"{d.direction.name}: {d.detail}"))


@main.command()
@click.argument("target", metavar="ROW_OR_SCENARIO")
@click.option("--replicas", default=8, show_default=True, type=click.IntRange(min=2),
              help="Replicas of each variant, the same seeds in all three (8 is the least VALIDATION.md allows; "
                   "fewer make a trial, not the study).")
@click.option("--workers", type=click.IntRange(min=1), help="Worker processes, one run each (default: the CPU count).")
@click.option("-o", "--output", "out_dir", metavar="DIR", type=click.Path(),
              help="Directory of the stores (<scenario>_<variant>.zarr) and of the comment block "
                   "(convergence.toml); default: convergence-<ROW_OR_SCENARIO>/.")
@click.option("--set", "overrides", metavar="KEY=VALUE", multiple=True,
              help="Override a key of the base scenario (repeatable), as in `kmc run`; the variants are made "
                   "from the base after it, e.g. --set lattice.nx=64 --set lattice.ny=64 studies 64² columns.")
@click.option("--overwrite", is_flag=True, help="Recompute every variant from scratch (replace their stores).")
def converge(target, replicas, workers, out_dir, overrides, overwrite):
    """Is a validation row converged in voxel size and domain size?

    VALIDATION.md asks of every row: halving the voxel and doubling the domain each move its median
    by less than the replicas' interquartile range (IQR), and the size the row runs at is written in
    its scenario file with the study that justifies it. This command runs that study.

    ROW_OR_SCENARIO is a row id (T1 ... T6, D1 ... D4: every scenario of the row and all its
    quantities), one scenario of a row (D1_foil: its quantities only), or a scenario file whose
    [scenario] name is a validation scenario (a copy of scenarios/validation/T3.toml being tuned).
    Each scenario runs in three variants, with the same replica seeds:

    \b
      base           the scenario as written (after --set)
      half voxel     voxel_um halved; nx, ny and nz doubled (nz counts voxels: the same height in µm)
      double domain  nx and ny doubled at the same voxel (twice the lateral domain, same height)

    Each quantity is the row's, as `kmc validate` measures it, over the finished replicas: its
    median, and its IQR = Q75 - Q25 (quartiles interpolated linearly between the runs' values). A
    share of replicas (T1's "replicas shorted") is judged by the share k/n, and its IQR is that of
    the share another n replicas would give, Binomial(n, (k + 1/2)/(n + 1))/n: a 0/1 value per run
    has no useful IQR of its own. A short charge or CCD of a run that did not short counts as "no
    short", above every value.

    Verdict: converged when, for every quantity, |median(half voxel) - median(base)| and
    |median(double domain) - median(base)| are both below the IQR of the BASE: the replicas' scatter
    at the size being judged (the variants' IQRs are shown but not used). A move of exactly 0
    passes (all "no short" in every variant, say); a quantity without a value in a variant does not.

    Printed: a table per variant (lattice, median, quartiles, IQR, runs, move, pass), then a TOML
    comment block to paste into the scenario file above its [lattice] table, also written to
    DIR/convergence.toml. A trial run of T3 on 32² columns printed:

    \b
      # convergence (kmc converge T3 --replicas 4 --set lattice.nx=32 --set lattice.ny=32, 2026-12-03): ...
      #   interfacial resistance [Ω·cm²]
      #     base 32x32x48 of 0.5 um: 6.69 (IQR 0.19, n 4)
      #     half voxel 64x64x96 of 0.25 um: 6.60 (IQR 0.16, n 4), moved 0.09 < 0.19
      #     double domain 64x64x48 of 0.5 um: 6.83 (IQR 0.29, n 4), moved 0.14 < 0.19
      #   converged: halving the voxel and doubling the domain each move the median by less than ...

    The halved voxel has 8 times the voxels of the base and the doubled domain 4 times, so a study
    costs about 13 times its base alone: try it small first (--set lattice.nx=32 --set lattice.ny=32
    --replicas 4). Runs go to --workers processes, the largest first; progress goes to stderr. As
    with `kmc validate`, the stores are kept and the same command again reuses finished runs and
    resumes interrupted ones; Ctrl-C or SIGTERM checkpoints them (exit code 3).

    Exit codes: 0 every run finished (whatever the verdict: the output says it), 1 a run failed or
    is not finished, 2 bad input — an unknown row or key, a variant whose lattice is not allowed (a
    halved voxel_um below its least), a store of another study in DIR without --overwrite, or a
    variant that would not fit in memory: one line naming it, nothing written — 3 stopped by a
    signal after writing checkpoints.
    """
    from kmc.convergence import REPLICAS
    from kmc.convergence import converge as run_study
    from kmc.executors import show_progress

    if replicas < REPLICAS:
        _echo_err(f"converge: {replicas} replicas: a trial; VALIDATION.md asks for at least {REPLICAS}")
    study = run_study(target, replicas=replicas, workers=workers, out_dir=out_dir, sets=overrides,
                      overwrite=overwrite, progress=show_progress(),
                      report=lambda message: _echo_err(f"converge: {message}"))
    if study.stopped:
        _echo_err("converge: stopped by a signal after writing checkpoints; the same command continues")
        sys.exit(study.exit_code)
    _print_convergence(study)
    _echo_err(f"converge: wrote {study.block_path}")
    _report_runs("converge", study.failed_runs, study.busy)
    sys.exit(study.exit_code)


def _print_convergence(study) -> None:
    """A convergence study's table per variant on stdout, its verdict, and the comment block to paste."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from kmc.convergence import VARIANT_TITLES, VARIANTS

    console = Console(width=None if sys.stdout.isatty() else 200)
    table = Table(title=f"{study.command}: row {study.target.row.id}, median and IQR per variant",
                  caption="pass: |median - base median| < IQR of the base (or 0)")
    for name in ("quantity", "variant", "lattice", "median", "Q25 – Q75", "IQR", "n", "moved", "pass"):
        table.add_column(name, overflow="fold", justify="right" if name in ("median", "IQR", "n", "moved") else "left")
    for q in study.quantities:
        for i, variant in enumerate(VARIANTS):
            s = q.spreads[variant]
            fmt = (lambda x: f"{x:.3f}") if s.share else q.fmt
            median = f"{s.k}/{s.n} = {s.statistic:.3f}" if s.share and s.n else fmt(s.statistic)
            moved, ok = ("", "") if variant == "base" else (fmt(q.moved(variant)), "yes" if q.passes(variant) else "no")
            table.add_row(q.metric.quantity if i == 0 else "", VARIANT_TITLES[variant], q.lattices[variant], median,
                          f"{fmt(s.q25)} – {fmt(s.q75)}", fmt(s.iqr), str(s.n), moved,
                          Text(ok, style="green" if ok == "yes" else "red"), end_section=variant == VARIANTS[-1])
    console.print(table)
    console.print(Text("converged" if study.converged else "NOT converged",
                       style="green" if study.converged else "red"))
    click.echo("")
    click.echo(study.block())
