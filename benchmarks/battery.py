"""End-to-end battery benchmark: a plating scenario (T2 by default) at several lateral sizes.

    python benchmarks/battery.py [--scenario scenarios/validation/T2.toml] [--sizes 64,128,256] [--seed 1]

For each size, runs the whole protocol in memory (no store: ``benchmarks/store.py`` measures the
store) after a warm-up run that compiles the kernels, and prints one machine-readable line:

    battery size=128 wall_s=.. kernel_s=.. solve_s=.. observe_s=.. solves=.. events=.. events_per_s=..
        plate=.. alloy=.. nucleate=.. moves=.. lifts=.. contact=.. thickness_um=.. v_end=..

``kernel_s`` is the time in the event loop (``kmc.kernels.battery_loop.run_batch``), ``solve_s`` the field
solves with the classification and weight rebuilds around them, ``observe_s`` the observables with
their recount from the lattice. ``events_per_s`` is all KMC events over the kernel time.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from kmc.battery import BatteryModel, Run
from kmc.config import load_scenario

ROOT = Path(__file__).resolve().parent.parent


def run_once(path, n, seed, capacity=None):
    """(model, state, wall seconds, last observables) of one run at n × n columns."""
    overrides = [f"lattice.nx={n}", f"lattice.ny={n}"]
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default=str(ROOT / "scenarios" / "validation" / "T2.toml"))
    ap.add_argument("--sizes", default="64,128,256", help="lateral sizes (columns per side), comma-separated")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    run_once(args.scenario, 16, args.seed, capacity=0.05)  # compile
    for n in (int(s) for s in args.sizes.split(",")):
        model, state, wall, obs = run_once(args.scenario, n, args.seed)
        c, t = Run(state).counts(), model.timing
        print(f"battery size={n} wall_s={wall:.2f} kernel_s={t['kernel_s']:.2f} solve_s={t['solve_s']:.2f} "
              f"observe_s={t['observe_s']:.2f} solves={t['solves']} events={c['events']} "
              f"events_per_s={c['events'] / max(t['kernel_s'], 1e-9):.3g} plate={c['plate']} "
              f"alloy={c['alloy']} nucleate={c['nucleate']} moves={c['moves']} lifts={c['lifts']} "
              f"contact={obs['contact_fraction']:.3f} thickness_um={obs['thickness_mean']:.2f} "
              f"v_end={obs['voltage']:.4f}", flush=True)

if __name__ == "__main__":
    main()
