"""``benchmarks/perf_map.py`` names compiled functions for ``perf``: the functions of a kernel compiled in the
process are found at their addresses, and the map has perf's format (hex start, hex size, name)."""
import importlib.util
from pathlib import Path

import numpy as np
from numba import njit

ROOT = Path(__file__).resolve().parent.parent


def _perf_map():
    spec = importlib.util.spec_from_file_location("perf_map", ROOT / "benchmarks" / "perf_map.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@njit(cache=False)
def _a_kernel_to_find(x):
    return np.sum(x * 2.0)


def test_compiled_functions_are_named_at_their_addresses(tmp_path):
    pm = _perf_map()
    assert _a_kernel_to_find(np.arange(4.0)) == 12.0
    functions = pm.compiled_functions()
    names = [name for _, name in functions if "_a_kernel_to_find" in name]
    assert names, "the kernel compiled here is not among the functions found"
    addresses = [a for a, _ in functions]
    assert addresses == sorted(addresses) and len(set(addresses)) == len(addresses)
    path = tmp_path / "perf.map"
    pm.write_map(path, functions)
    lines = path.read_text().splitlines()
    assert len(lines) == len(functions)
    start, size, name = lines[0].split(" ", 2)
    assert int(start, 16) == functions[0][0] and int(size, 16) > 0 and name == functions[0][1]
