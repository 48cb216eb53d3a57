"""Golden trajectories (``tests/golden.py``): fixed-seed runs bit-identical to the checked-in reference.

Every refactor keeps them; a behaviour change regenerates the reference in its own commit, which
says why (``python tests/golden.py --update``).
"""
import pytest

from golden import CASES, load_reference, run_case


@pytest.fixture(scope="module")
def reference():
    return load_reference()


@pytest.mark.parametrize("name", list(CASES))
def test_trajectory_is_bit_identical_to_the_reference(name, reference):
    got, want = run_case(name), reference[name]
    moved = [f"counters: {want['counters']} -> {got['counters']}"] if got["counters"] != want["counters"] else []
    moved += [f"{key}: {want[key]} -> {got[key]}" for key in ("samples", "lattice", "time_s") if got[key] != want[key]]
    names = set(got["variables"]) | set(want["variables"])
    for var in sorted(names):
        g, w = got["variables"].get(var), want["variables"].get(var)
        if g != w:
            moved.append(f"{var}: {w} -> {g}")
    assert not moved, f"{name} moved:\n" + "\n".join(moved)
