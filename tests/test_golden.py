"""Golden trajectories (``tests/golden.py``): fixed-seed runs bit-identical to the checked-in reference.

Every refactor keeps them; a behaviour change regenerates the reference in its own commit, which
says why (``python tests/golden.py --update``). The cases run in one child process with NumPy's AVX-512
loops off, so the reference holds on any x86-64 machine (``golden`` module docstring).
"""
import pytest

from golden import CASES, load_reference, run_pinned


@pytest.fixture(scope="module")
def reference():
    return load_reference()


@pytest.fixture(scope="module")
def fingerprints(request):
    """The selected cases' fingerprints (``-k T1_32`` runs that case only), from one child process."""
    names = [item.callspec.params["name"] for item in request.session.items
             if item.originalname == "test_trajectory_is_bit_identical_to_the_reference"]
    return run_pinned(names)


@pytest.mark.parametrize("name", list(CASES))
def test_trajectory_is_bit_identical_to_the_reference(name, reference, fingerprints):
    got, want = fingerprints[name], reference[name]
    assert "error" not in got, f"{name} raised:\n{got.get('error')}"
    moved = [f"counters: {want['counters']} -> {got['counters']}"] if got["counters"] != want["counters"] else []
    moved += [f"{key}: {want[key]} -> {got[key]}" for key in ("samples", "lattice", "time_s") if got[key] != want[key]]
    names = set(got["variables"]) | set(want["variables"])
    for var in sorted(names):
        g, w = got["variables"].get(var), want["variables"].get(var)
        if g != w:
            moved.append(f"{var}: {w} -> {g}")
    assert not moved, f"{name} moved:\n" + "\n".join(moved)
