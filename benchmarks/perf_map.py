"""Run a battery scenario for Linux ``perf``, naming the compiled kernels in its report.

    perf record -F 999 -o perf.data python benchmarks/perf_map.py [--scenario T2.toml] [--size 256]
    perf report -i perf.data --no-children --sort sym

Numba's kernels live in memory that ``perf`` cannot name: its report lists them as hex addresses under
``[JIT]``. At the end of the run this script writes ``/tmp/perf-<pid>.map`` (the format ``perf`` reads
for code generated at run time: start, size and name of each function, hex), from every function
compiled in the run, the kernels' callees not inlined among them (``_pruned_search``,
``refresh_near``, ...). Names are LLVM's mangled ones, readable enough (``...gap_distance14_pruned_search...``).

Numba's cache gives back machine code without the LLVM module the names come from, so the script
points ``NUMBA_CACHE_DIR`` at a fresh temporary directory before Numba loads: every kernel is compiled
in the run (a minute or two before the run proper, which ``perf`` samples too; the scenario's run then
shows as the functions named here).
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def compiled_functions():
    """(address, name) of every function defined in the LLVM modules of every compiled kernel."""
    from numba.core.registry import CPUDispatcher

    found, names = {}, set()
    for obj in gc.get_objects():
        if not isinstance(obj, CPUDispatcher):
            continue
        for cres in obj.overloads.values():
            libraries = [cres.library, *getattr(cres.library, "_linking_libraries", ())]
            for library in libraries:
                module = getattr(library, "_final_module", None)
                if module is None:
                    continue
                for fn in module.functions:
                    if fn.is_declaration or fn.name in names:
                        continue
                    address = library.get_pointer_to_function(fn.name)
                    if address:
                        found[address] = fn.name
                        names.add(fn.name)
    return sorted(found.items())


def write_map(path, functions):
    """``perf``'s map: a function's size is taken up to the next one's start (at most 1 MiB)."""
    with open(path, "w", encoding="utf-8") as fh:
        for i, (address, name) in enumerate(functions):
            gap = functions[i + 1][0] - address if i + 1 < len(functions) else 4096
            fh.write(f"{address:x} {gap if 0 < gap < 1 << 20 else 4096:x} {name}\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default=str(ROOT / "scenarios" / "validation" / "T2.toml"))
    ap.add_argument("--size", type=int, default=256, help="columns per side")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kmc-numba-cache-") as cache:
        os.environ["NUMBA_CACHE_DIR"] = cache  # before Numba is imported: compile everything, keep the modules
        sys.path.insert(0, str(ROOT / "benchmarks"))
        import battery

        _, _, wall, _ = battery.run_once(args.scenario, args.size, args.seed)
        functions = compiled_functions()
        path = Path(f"/tmp/perf-{os.getpid()}.map")
        write_map(path, functions)
        print(f"perf_map size={args.size} wall_s={wall:.2f} functions={len(functions)} map={path}", flush=True)


if __name__ == "__main__":
    main()
