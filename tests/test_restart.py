"""Checkpoint/restore across processes, and compiled kernels loaded from Numba's cache."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from kmc import hop
from kmc.state import State


def _python(code, env=None):
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("rate_decades,z_periodic", [(0.0, True), (3.0, False)])
def test_restart_in_a_new_process_is_bit_for_bit(tmp_path, rate_decades, z_periodic):
    """N events, checkpoint, restore in a new process, M more == N + M events in one go."""
    n, m = 123_457, 54_321
    ckpt, final = tmp_path / "n.ckpt", tmp_path / "final.ckpt"
    _python(f"""
        from kmc import hop
        s = hop.new_state(0, 0.45, seed=42, rate_decades={rate_decades}, shape=(14, 11, 9),
                          z_periodic={z_periodic})
        hop.advance(s, max_events={n})
        s.save({str(ckpt)!r})
    """)
    _python(f"""
        from kmc import hop
        from kmc.state import State
        s = State.load({str(ckpt)!r})
        hop.advance(s, max_events={m})
        s.save({str(final)!r})
    """)
    straight = hop.new_state(0, 0.45, seed=42, rate_decades=rate_decades, shape=(14, 11, 9),
                             z_periodic=z_periodic)
    hop.advance(straight, max_events=n + m)
    resumed = State.load(final)
    assert resumed.events == n + m
    assert resumed.differences(straight) == []
    # And the two go on identically: the generator state was carried over, not reseeded.
    hop.advance(straight, max_events=1000)
    hop.advance(resumed, max_events=1000)
    assert resumed.differences(straight) == []


def test_differences_sees_a_single_changed_bit(tmp_path):
    a = hop.new_state(6, 0.5, seed=1)
    a.save(tmp_path / "a.ckpt")
    b = State.load(tmp_path / "a.ckpt")
    assert a.differences(b) == []
    b.clock[0] = float.fromhex(a.clock[0].hex()) + 5e-324
    b.rng.random()
    assert a.differences(b) == ["rng", "clock"]


def test_checkpoint_write_is_atomic(tmp_path):
    """A checkpoint is written to a temporary file and renamed: no partial file under the name."""
    s = hop.new_state(6, 0.5, seed=1)
    s.save(tmp_path / "x.ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.ckpt"]


def test_second_process_loads_kernels_from_cache(tmp_path):
    """A second process loads the hop model's kernels and every kernel of the field solve from the cache,
    and the field kernels are cached in the directory keyed by the digest of the kernel sources.
    Shown to fail with ``cache=True`` taken off ``kernels/field.py``'s ``precondition``, and with
    ``kernels/__init__.py`` not setting Numba's cache directory (the kernels cached outside the digest's)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    code = """
        import json
        from pathlib import Path
        import numpy as np
        from numba.core.registry import CPUDispatcher
        from kmc import hop
        from kmc.field import Faces, Plane, solve_galvanostatic, solve_potentiostatic
        from kmc.kernels import CACHE_DIR, field as kfield, hop as k, solver
        s = hop.new_state(5, 0.5, seed=1)
        hop.advance(s, max_events=100)
        funcs = {"run_batch": k.run_batch, "count_empty_neighbors": k.count_empty_neighbors,
                 "fill_leaves": k.fill_leaves, "tree_build": solver.tree_build}
        # A field solve with spreading resistance (CG iterates) in both modes calls every field kernel.
        plane = Plane(8, 8, 1e-4, 3e-3, 1e-3)
        spots = np.array([0, 1, 8, 9, 36, 37, 44])
        faces = Faces(spots, plane.pixel_area_cm2, 1e-3, 0.5, 0.0)
        solve_galvanostatic(plane, faces, 1e-9, 0.0, 298.15)
        solve_potentiostatic(plane, faces, -0.05, 0.0, 298.15)
        funcs.update({f"field.{n}": f for n, f in vars(kfield).items()
                      if isinstance(f, CPUDispatcher) and not f.targetoptions.get("inline") == "always"})
        counts = {n: [sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values())]
                  for n, f in funcs.items()}
        print(json.dumps({"counts": counts, "field_index_files": len(list(Path(CACHE_DIR).rglob("field.*.nbi")))}))
    """
    first = json.loads(_python(code, env).strip().splitlines()[-1])
    assert len(first["counts"]) == 4 + 11, first  # the hop kernels, and every field kernel (contact_pixels the 11th)
    assert all(misses >= 1 for hits, misses in first["counts"].values()), first  # compiled and written
    assert first["field_index_files"] >= 11, first
    second = json.loads(_python(code, env).strip().splitlines()[-1])
    assert all(hits >= 1 and misses == 0 for hits, misses in second["counts"].values()), second


def test_second_process_loads_the_battery_loop_from_the_cache():
    """The battery's batch loop takes a named tuple of arrays (``kernels.battery_arrays.Cell``): a second
    process loads it, and every kernel it calls, from the on-disk cache instead of compiling it again.
    Shown to fail with ``cache=True`` taken off ``run_batch`` (the second process compiles it again).

    Both processes use the suite's own cache (``NUMBA_CACHE_DIR`` as the suite runs with): the first
    loads or compiles the kernels (run alone on a new cache, it compiles them), the second must load
    them all. A cache of its own would compile every battery kernel once more, a minute of the suite."""
    env = dict(os.environ)
    code = """
        import json
        import kmc
        from kmc.battery import BatteryModel
        from kmc.kernels import battery_loop
        sc = kmc.load_scenario("%s", overrides={"lattice.nx": 4, "lattice.ny": 4, "lattice.nz": 12,
                                                 "protocol.0.capacity_mah_cm2": 0.02})
        model = BatteryModel(sc)
        state = model.new_state(1)
        k = 0
        while model.advance_sample(state, k) is not None:
            k += 1
        f = battery_loop.run_batch
        print(json.dumps([sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values()), state.events]))
    """ % os.path.join(os.path.dirname(__file__), "..", "scenarios", "validation", "T2.toml")
    first = json.loads(_python(code, env).strip().splitlines()[-1])
    assert first[0] + first[1] >= 1 and first[2] > 0, first  # loaded or compiled, and events ran
    second = json.loads(_python(code, env).strip().splitlines()[-1])
    assert second[0] >= 1 and second[1] == 0, second  # loaded, not compiled
    assert second[2] == first[2]  # the same run
