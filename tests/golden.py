"""Golden trajectories: fixed-seed runs whose every bit is checked in (``tests/golden/reference.json``).

A refactor must leave these runs bit-identical: event counts by kind, the final lattice (a hash),
and every variable the run hands to the store (each one's bytes hashed, its last value kept in the
clear so a failure says what moved). A commit that changes behaviour on purpose regenerates the
reference with

    python tests/golden.py --update

and says why in its message. The runs go through the production model exactly as the runner drives
it (``advance_sample`` then ``records`` at every sample), in memory.

The reference must hold on any x86-64 machine, so the cases run in a child process with NumPy's
AVX-512 loops switched off (``pinned_env``). On a CPU with AVX-512, NumPy's vectorized exp, log, tanh,
power and the like differ from the other paths in the last bits (numpy/numpy#23523, "We accept
differences of up to 4 ULP"): the trajectories stay the same, but the stored voltages, resistances and
thicknesses do not, bit for bit. With those loops off, every machine takes the AVX2 or the baseline
loops, which agree (switching AVX2 off too leaves every case as it is).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REFERENCE = os.path.join(HERE, "golden", "reference.json")
SCENARIOS = os.path.join(HERE, "..", "scenarios")

#: Each case: a shipped scenario, overrides (small lattices, short protocols), the seed.
CASES = {
    "T2_64": ("validation/T2.toml", {"lattice.nx": 64, "lattice.ny": 64}, 11),
    "T4_32": ("validation/T4.toml", {"lattice.nx": 32, "lattice.ny": 32}, 12),
    "T1_32": ("validation/T1.toml", {"lattice.nx": 32, "lattice.ny": 32}, 13),
    "D1_foil_24": ("validation/D1_foil.toml", {"lattice.nx": 24, "lattice.ny": 24}, 14),
    "T5_16": ("validation/T5.toml", {"lattice.nx": 16, "lattice.ny": 16}, 15),
    # A porous Cu pellet (21 %): E9 bounds what plating and the moves put into its pores.
    "D1_pellet_cu_16": ("validation/D1_pellet.toml", {"lattice.nx": 16, "lattice.ny": 16, "collector.material": "cu",
                                                      "collector.porosity": 0.21}, 18),
    # E1 inside deposits by the stress map (PHYSICS §5 M), plating then stripping.
    "T4_24_least_stress": ("validation/T4.toml", {"lattice.nx": 24, "lattice.ny": 24,
                                                   "model.insertion": "least_stress"}, 17),
    # E8 by the slot law (PHYSICS v4) with the deposit stress: a ccd, plating and stripping until a short.
    "T5_16_slot": ("validation/T5.toml", {"lattice.nx": 16, "lattice.ny": 16, "model.insertion": "least_stress",
                                          "model.flaw_law": "slot"}, 18),
    # E4 refill of interface voids at Na's critical stripping current (model.refill = "critical_current").
    "T4_16_refill": ("validation/T4.toml", {"lattice.nx": 16, "lattice.ny": 16, "output.sample_every_s": 300.0,
                                             "model.refill": "critical_current"}, 19),
    # Contact quality as a state of each Na face (model.contact_quality = "face_state"), plating then stripping
    # (sampled every 5 min: the case stays a few seconds).
    "T4_16_face_state": ("validation/T4.toml", {"lattice.nx": 16, "lattice.ny": 16, "output.sample_every_s": 300.0,
                                                 "model.contact_quality": "face_state"}, 20),
    # E3 by phases (model.alloy = "phases"): Au alloyed in steps, the lateral front, de-alloying on the strip
    # above its potential (sampled every 5 min: the case stays a few seconds).
    "T4_16_alloy_phases": ("validation/T4.toml", {"lattice.nx": 16, "lattice.ny": 16, "output.sample_every_s": 300.0,
                                                   "model.alloy": "phases"}, 21),
    # The v4 options at once but the slot law, plating then stripping: their interplay (the refill law's
    # thinned columns pressed under face state, the deposits' stress pressing faces) is covered by no
    # single-option case. The slot law is left out: at T4's flaw constants (c0 not yet recalibrated for
    # it) the cell shorts within seconds (T5_16_slot covers it).
    "T4_12_v4": ("validation/T4.toml", {"lattice.nx": 12, "lattice.ny": 12, "output.sample_every_s": 600.0,
                                         "electrolyte.relief": "self_affine", "model.insertion": "least_stress",
                                         "model.contact_quality": "face_state",
                                         "model.refill": "critical_current", "model.alloy": "phases"}, 22),
    "hop": ("hop.toml", {"output.snapshot_every_samples": 10}, 16),
}


def _digest(values) -> str:
    """sha256 of a value's bytes (arrays as float64/int64/uint8 in C order; NaN with one bit pattern)."""
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        arr = np.where(np.isnan(arr), np.nan, arr).astype(np.float64)
    elif arr.dtype.kind in "iub":
        arr = arr.astype(np.int64) if arr.dtype != np.uint8 else arr
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()[:16]


def _last(values):
    """The last value of a record, readable in the JSON (a map or lattice: its sum)."""
    arr = np.asarray(values[-1] if isinstance(values, list) else values, dtype=np.float64)
    v = float(arr.sum()) if arr.ndim else float(arr)
    return None if math.isnan(v) else v


def counters_by_kind(state) -> dict:
    """Event counters by name (the model's own names when it has them)."""
    if state.model == "battery":
        from kmc.battery import Run

        return Run(state).counts()
    return {"events": state.events}


def run_case(name: str) -> dict:
    """Run one golden case; its fingerprint (what ``reference.json`` holds for it)."""
    import kmc
    from kmc.model import model_for

    path, overrides, seed = CASES[name]
    scenario = kmc.load_scenario(os.path.join(SCENARIOS, path), overrides=overrides)
    model = model_for(scenario)
    state = model.new_state(seed)
    samples: dict[str, list] = {}
    records: dict[str, list] = {}
    k = 0
    for k in range(model.n_samples):
        observed = model.advance_sample(state, k)
        if observed is None:
            break
        for var, value in observed.items():
            samples.setdefault(var, []).append(value)
        for var, index, value in model.records(state, k):
            records.setdefault(var, []).append((-1 if index is None else int(index), np.asarray(value)))
    out = {"samples": len(samples.get("time", [])), "counters": counters_by_kind(state),
           "lattice": _digest(state.lattice), "time_s": float(state.time_s), "variables": {}}
    for var, values in sorted(samples.items()):
        out["variables"][var] = {"sha": _digest(values), "last": _last(values)}
    for var, items in sorted(records.items()):
        index = [i for i, _ in items]
        values = [v for _, v in items]
        out["variables"][var] = {"sha": _digest(np.concatenate([np.ravel(v).astype(np.float64) for v in values])),
                                 "index": index, "last": _last(values)}
    return out


def _avx512_loops() -> str:
    """NumPy's dispatched AVX-512 targets, as ``NPY_DISABLE_CPU_FEATURES`` names them (they differ
    between NumPy versions: ``AVX512F``, ``AVX512_SKX``, … before 2.4, ``X86_V4``, ``AVX512_ICL``, … since)."""
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:  # NumPy 1.26
        from numpy.core import _multiarray_umath as umath
    return " ".join(f for f in umath.__cpu_dispatch__ if f.startswith("AVX512") or f == "X86_V4")


def pinned_env() -> dict:
    """The environment the cases run in: NumPy's AVX-512 loops off (module docstring)."""
    return {**os.environ, "NPY_DISABLE_CPU_FEATURES": _avx512_loops()}


def _pinned() -> bool:
    return os.environ.get("NPY_DISABLE_CPU_FEATURES") == _avx512_loops()


def run_pinned(names) -> dict:
    """Fingerprints of the cases ``names``, each run in one child process with the pinned environment;
    a case that raises is ``{"error": its traceback}``."""
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--json", *names], env=pinned_env(),
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"golden cases {names} failed to run:\n{out.stderr}")
    return json.loads(out.stdout.splitlines()[-1])


def load_reference() -> dict:
    with open(REFERENCE) as fh:
        return json.load(fh)


def main(argv):
    names = [a for a in argv if not a.startswith("-")] or list(CASES)
    if not _pinned():  # NumPy reads the variable when it is imported: start again with it set
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *argv], pinned_env())
    if "--json" in argv:  # run_pinned: every case's fingerprint, on one line
        import traceback

        got = {}
        for name in names:
            try:
                got[name] = run_case(name)
            except Exception:  # noqa: BLE001 — reported by the test of that case
                got[name] = {"error": traceback.format_exc()}
        print(json.dumps(got))
    elif "--update" in argv:
        ref = load_reference() if os.path.exists(REFERENCE) else {}
        for name in names:
            ref[name] = run_case(name)
            print(name, ref[name]["counters"], ref[name]["lattice"], flush=True)
        os.makedirs(os.path.dirname(REFERENCE), exist_ok=True)
        with open(REFERENCE, "w") as fh:
            json.dump(ref, fh, indent=1, sort_keys=True)
            fh.write("\n")
    else:
        for name in names:
            print(name, json.dumps(run_case(name)["counters"]), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
