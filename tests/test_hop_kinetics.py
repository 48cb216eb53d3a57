"""KMC statistics of the production batch loop, checked on the hop model.

Every check here runs ``kmc.hop.advance`` (the production kernel) and recounts what it should have
done independently with NumPy, rather than reading back the kernel's own bookkeeping.
"""
import dataclasses

import numpy as np
import pytest
from scipy import stats

from kmc import hop
from kmc.kernels.solver import BRANCH, STOP_TIME, tree_build, tree_total


def _copy(state, rng):
    return dataclasses.replace(
        state,
        lattice=state.lattice.copy(),
        tree=state.tree.copy(),
        clock=state.clock.copy(),
        counters=state.counters.copy(),
        fields={k: v.copy() for k, v in state.fields.items()},
        rng=rng,
    )


def _empty_neighbor_count(state):
    """Empty first neighbours of every site, by NumPy rolls (z walls when not periodic)."""
    nx, ny, nz = state.shape
    empty = (state.lattice.reshape(nz, ny, nx) == 0).astype(np.int64)
    count = np.zeros_like(empty)
    for axis in (1, 2):
        count += np.roll(empty, 1, axis) + np.roll(empty, -1, axis)
    if state.z_periodic:
        count += np.roll(empty, 1, 0) + np.roll(empty, -1, 0)
    else:
        count[1:] += empty[:-1]
        count[:-1] += empty[1:]
    return count.ravel()


def _hop_rates(state):
    """Every possible event (from, to) and its rate, enumerated from the lattice."""
    nx, ny, nz = state.shape
    mult = state.fields["rate_mult"].astype(np.float64)
    rates = {}
    for s in np.flatnonzero(state.lattice):
        x, y, z = s % nx, (s // nx) % ny, s // (nx * ny)
        for dx, dy, dz in ((-1, 0, 0), (1, 0, 0), (0, -1, 0), (0, 1, 0), (0, 0, -1), (0, 0, 1)):
            zz = z + dz
            if not state.z_periodic and not 0 <= zz < nz:
                continue
            j = (x + dx) % nx + nx * ((y + dy) % ny + ny * (zz % nz))
            if state.lattice[j] == 0:
                rates[(s, j)] = rates.get((s, j), 0.0) + mult[s]
    return rates


def test_events_are_chosen_with_probability_proportional_to_rate():
    base = hop.new_state(0, 0.5, seed=7, rate_decades=1.0, shape=(4, 4, 4))
    rates = _hop_rates(base)
    assert len(set(rates.values())) > 10  # unequal rates, or the test proves nothing
    rng = np.random.default_rng(11)
    trials = 60_000
    counts = dict.fromkeys(rates, 0)
    for _ in range(trials):
        s = _copy(base, rng)
        hop.advance(s, max_events=1)
        moved = s.lattice.astype(np.int8) - base.lattice.astype(np.int8)
        counts[(int(np.flatnonzero(moved == -1)[0]), int(np.flatnonzero(moved == 1)[0]))] += 1
    keys = sorted(rates)
    observed = np.array([counts[k] for k in keys])
    expected = np.array([rates[k] for k in keys])
    expected = expected / expected.sum() * trials
    assert expected.min() > 20
    _, p = stats.chisquare(observed, expected)
    assert p > 1e-3, f"chi-square p = {p:.2g}"


def test_waiting_times_are_exponential_with_mean_one_over_total_rate():
    state = hop.new_state(0, 0.5, seed=3, rate_decades=3.0, shape=(6, 6, 6))
    scaled = []
    for _ in range(20_000):
        rate = tree_total(state.tree)
        t0 = state.time_s
        hop.advance(state, max_events=1)
        scaled.append((state.time_s - t0) * rate)
    scaled = np.array(scaled)
    assert stats.kstest(scaled, "expon").pvalue > 1e-3
    assert abs(scaled.mean() - 1.0) < 4.0 / np.sqrt(scaled.size)


def test_event_rate_per_site_on_a_fresh_random_configuration():
    """At f = 0.5 each site has 6·f·(1−f) = 1.5 hops per unit time, statically and dynamically."""
    state = hop.new_state(46, 0.5, seed=5)
    n = state.n_sites
    m = round(0.5 * n)
    exact = 6.0 * m * (n - m) / (n - 1) / n  # fixed particle number: 1.5 up to 1/N
    sigma = np.sqrt(0.75 * 3 * n) / n  # ~ bond-count fluctuation of R/N
    assert abs(tree_total(state.tree) / n - exact) < 5 * sigma
    events = 1_000_000
    hop.advance(state, max_events=events)
    measured = events / (state.time_s * n)
    assert measured == pytest.approx(1.5, rel=0.01)


@pytest.mark.parametrize("z_periodic", [True, False])
def test_particles_conserved_and_structure_matches_a_recount(z_periodic):
    state = hop.new_state(0, 0.37, seed=9, rate_decades=3.0, shape=(12, 10, 9), z_periodic=z_periodic)
    particles = int(state.lattice.sum())
    hop.advance(state, max_events=200_000)
    assert state.events == 200_000
    assert int(state.lattice.sum()) == particles
    assert set(np.unique(state.lattice)) <= {0, 1}
    count = _empty_neighbor_count(state)
    np.testing.assert_array_equal(state.fields["empty_count"], count)
    leaves = state.fields["rate_mult"].astype(np.float64) * count * (state.lattice == 1)
    np.testing.assert_array_equal(state.tree[: state.n_sites], leaves)
    rebuilt = state.tree.copy()
    rebuilt[state.n_sites:] = 0.0
    tree_build(rebuilt, state.tree_offsets)
    assert rebuilt.tobytes() == state.tree.tobytes()
    assert state.tree_offsets[1] % BRANCH == 0


def test_walls_stop_hops_across_z():
    """With z walls a particle in the top layer never appears in the bottom layer in one hop."""
    state = hop.new_state(0, 0.5, seed=2, shape=(5, 5, 4), z_periodic=False)
    for _ in range(2000):
        before = state.lattice.copy()
        hop.advance(state, max_events=1)
        frm = int(np.flatnonzero(before > state.lattice)[0]) // 25
        to = int(np.flatnonzero(before < state.lattice)[0]) // 25
        assert abs(frm - to) <= 1


def test_time_bound_stops_the_clock_at_the_bound():
    state = hop.new_state(8, 0.5, seed=1)
    code = hop.advance(state, until_time_s=2.5)
    assert code == STOP_TIME
    assert state.time_s == 2.5
    assert state.events > 0
