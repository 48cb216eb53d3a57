"""End-to-end battery benchmark: a plating scenario (T2 by default) at several lateral sizes.

    python benchmarks/battery.py [--scenario scenarios/validation/T2.toml] [--sizes 64,128,256,512] [--seed 1]
    python benchmarks/battery.py --record [PATH]

For each size, runs the whole protocol in memory (no store: ``benchmarks/store.py`` measures the
store) after a warm-up run that compiles the kernels, and prints one machine-readable line:

    battery size=128 wall_s=.. us_per_column=.. kernel_s=.. solve_s=.. observe_s=.. other_s=.. solves=..
        events=.. events_per_s=.. plate=.. alloy=.. nucleate=.. moves=.. lifts=.. contact=.. thickness_um=.. v_end=..

``kernel_s`` is the time in the event loop (``kmc.kernels.battery_loop.run_batch``), ``solve_s`` the field
solves with the classification and weight rebuilds around them, ``observe_s`` the observables with
their recount from the lattice, ``other_s`` the rest (E7 and E8 between batches, the protocol).
``us_per_column`` is the wall time per column (µs): flat in the size when the cost grows with the area
only. ``events_per_s`` is all KMC events over the kernel time. A 512 × 512 T2 run takes about two minutes
(2026-12-07, a machine ~1.5× slower than the last, another run on the second core: wall 116–128 s, kernel
58–66 s, solves 46–48 s, observables 6–7 s; 256²: 23–25 s; 128²: 4.8–6.0 s).

``--record`` instead measures the costs ``kmc run --dry-run`` estimates run times from
(``kmc.runtime_estimate``): the scenario at two sizes and two capacities (``record_costs``) and the hop
model as ``kmc bench`` runs it, and writes them with the date and the CPU to PATH (default: the user's
file, ``kmc.runtime_estimate.user_path()``). The file shipped in the package is re-recorded with
``--record kmc/runtime_benchmark.json``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from kmc.battery import BatteryModel, Run
from kmc.config import load_scenario

ROOT = Path(__file__).resolve().parent.parent


def run_once(path, n, seed, capacity=None, extra=()):
    """(model, state, wall seconds, last observables) of one run at n × n columns; ``extra``: more
    ``KEY=VALUE`` overrides (as ``kmc run --set``)."""
    overrides = [f"lattice.nx={n}", f"lattice.ny={n}", *extra]
    if capacity is not None:
        overrides.append(f"protocol.0.capacity_mah_cm2={capacity}")
    model = BatteryModel(load_scenario(path, overrides=overrides))
    t0 = time.perf_counter()
    state = model.new_state(seed)
    obs, k = None, 0
    while True:
        out = model.advance_sample(state, k)
        if out is None:
            break
        obs, k = out, k + 1
    return model, state, time.perf_counter() - t0, obs


#: ``--record``: lateral sizes (columns per side) and plated capacities (mAh/cm²) of the runs it fits.
RECORD_SIZES = (128, 256)
RECORD_CAPACITIES_MAH_CM2 = (0.5, 1.0)


def record_costs(path, seed, record_to=None):
    """Measure the run-time coefficients (``kmc.runtime_estimate``) and write them to ``record_to``.

    Each battery run is timed whole (geometry, State, solves, events, observables; no store); one line
    per run, then the fitted coefficients and each run's time as they predict it (how linear the cost is)."""
    from kmc.bench import bench_hop
    from kmc.runtime_estimate import battery_work, fit_battery, record

    points = []
    for n in RECORD_SIZES:
        for capacity in RECORD_CAPACITIES_MAH_CM2:
            model, _, wall, _ = run_once(path, n, seed, capacity=capacity)
            points.append({"size": n, "capacity_mah_cm2": capacity, **battery_work(model), "wall_s": wall,
                           "observe_s": model.timing["observe_s"]})
            print(f"record battery size={n} capacity_mah_cm2={capacity} wall_s={wall:.2f} "
                  f"observe_s={model.timing['observe_s']:.2f}", flush=True)
    battery = fit_battery(points)
    for pt in points:
        predicted = (pt["columns"] * (battery["s_per_column"] + battery["s_per_column_mah_cm2"] * pt["charge_mah_cm2"])
                     + battery["s_per_site_sample"] * pt["site_samples"])
        print(f"record battery size={pt['size']} capacity_mah_cm2={pt['capacity_mah_cm2']} "
              f"predicted_s={predicted:.2f} measured_s={pt['wall_s']:.2f}", flush=True)
    costs = {"battery": battery}
    for kind, decades in (("hop", 0.0), ("hop-random", 3.0)):
        r = bench_hop(46, rate_decades=decades, seed=seed)
        costs[kind] = {"s_per_event": 1.0 / r["events_per_s"]}
    out = record(costs, record_to, {"battery_scenario": Path(path).name, "battery_runs": points})
    print("record " + " ".join(f"{kind}.{k}={v:.4g}" for kind, c in costs.items() for k, v in c.items())
          + f" file={out}", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default=str(ROOT / "scenarios" / "validation" / "T2.toml"))
    ap.add_argument("--sizes", default="64,128,256", help="lateral sizes (columns per side), comma-separated")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a scenario key, as kmc run --set (repeatable), e.g. model.insertion='\"least_stress\"'")
    ap.add_argument("--record", nargs="?", const="", metavar="PATH",
                    help="measure the costs of run-time estimates and write them to PATH (default: the user's file)")
    args = ap.parse_args(argv)
    run_once(args.scenario, 16, args.seed, capacity=0.05, extra=args.set)  # compile
    if args.record is not None:
        return record_costs(args.scenario, args.seed, args.record or None)
    for n in (int(s) for s in args.sizes.split(",")):
        model, state, wall, obs = run_once(args.scenario, n, args.seed, extra=args.set)
        c, t = Run(state).counts(), model.timing
        other = wall - t["kernel_s"] - t["solve_s"] - t["observe_s"]
        print(f"battery size={n} wall_s={wall:.2f} us_per_column={wall / (n * n) * 1e6:.0f} "
              f"kernel_s={t['kernel_s']:.2f} solve_s={t['solve_s']:.2f} observe_s={t['observe_s']:.2f} "
              f"other_s={other:.2f} solves={t['solves']} events={c['events']} "
              f"events_per_s={c['events'] / max(t['kernel_s'], 1e-9):.3g} plate={c['plate']} "
              f"alloy={c['alloy']} nucleate={c['nucleate']} moves={c['moves']} lifts={c['lifts']} "
              f"contact={obs['contact_fraction']:.3f} thickness_um={obs['thickness_mean']:.2f} "
              f"v_end={obs['voltage']:.4f}", flush=True)

if __name__ == "__main__":
    main()
