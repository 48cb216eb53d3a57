"""Capillary moves (E4b): the local ΔE against a global energy, and detailed balance of the
production move rates (``kmc.kernels.moves``, no load) on a droplet of a few voxels in a closed box."""
import itertools

import numpy as np
import pytest
from scipy import stats

from kmc.kernels.capillary import EPS_AU, EPS_SIZE, move_energy
from kmc.kernels.cell import CC, GAP, NA, SE
from kmc.kernels.moves import M_NU_CAP, N_MOVE_PARAMS, fill_move_leaves, run_moves
from kmc.kernels.solver import tree_build, tree_new

NX, NY, NZ = 3, 2, 4  # interior z = 1, 2; SE floor, CC ceiling; ny = 2 doubles the y faces


def _eps():
    eps = np.zeros(EPS_SIZE)
    eps[NA], eps[GAP], eps[SE], eps[CC], eps[EPS_AU] = -0.6, 0.6, -0.2, 0.3, -0.6
    return eps


def _au_column():
    au = np.zeros(NX * NY, dtype=np.uint8)
    au[[0, 4]] = 1
    return au


def global_energy(lattice, au, eps):
    """E/E_eff = ½ Σ_sites Σ_neighbours w(a, b), with w from ε (w(GAP, wall) = 0 sets the zero)."""
    lat = lattice.reshape(NZ, NY, NX)
    kind = lat.astype(np.int64).copy()
    kind[(lat == CC) & au.reshape(NY, NX)[None].astype(bool)] = EPS_AU

    def w(a, b):
        na_a, na_b = lat_a == NA, lat_b == NA
        out = np.zeros(a.shape)
        out += np.where(na_a & na_b, eps[NA] + eps[GAP], 0.0)
        out += np.where(na_a & ~na_b, eps[b], 0.0)
        out += np.where(~na_a & na_b, eps[a], 0.0)
        return out

    total = 0.0
    for axis, periodic in ((2, True), (1, True), (0, False)):
        for shift in (1, -1):
            if periodic:
                lat_a, lat_b = lat, np.roll(lat, shift, axis)
                a, b = kind, np.roll(kind, shift, axis)
            else:
                sl_a = slice(0, NZ - 1) if shift == -1 else slice(1, NZ)
                sl_b = slice(1, NZ) if shift == -1 else slice(0, NZ - 1)
                lat_a, lat_b, a, b = lat[sl_a], lat[sl_b], kind[sl_a], kind[sl_b]
            total += w(a, b).sum()
    return 0.5 * total


def _box(na_sites):
    lat = np.full((NZ, NY, NX), GAP, dtype=np.uint8)
    lat[0], lat[-1] = SE, CC
    flat = lat.ravel()
    flat[list(na_sites)] = NA
    return flat


INTERIOR = [s for s in range(NX * NY * NZ) if 0 < s // (NX * NY) < NZ - 1]


def test_local_move_energy_equals_the_global_energy_difference():
    rng = np.random.default_rng(0)
    eps, au = _eps(), _au_column()
    nbr = np.empty(6, dtype=np.int64)
    checked = 0
    for _ in range(300):
        na = rng.choice(INTERIOR, size=rng.integers(1, 6), replace=False)
        lat = _box(na)
        s = int(rng.choice(na))
        for t in set(INTERIOR) - set(na.tolist()):
            after = lat.copy()
            after[s], after[t] = GAP, NA
            de = move_energy(s, t, lat, au, NX, NY, NZ, eps, nbr)
            # only adjacent moves are ever made, but ΔE of the local formula must match for them
            if abs(s - t) in (1, NX - 1, NX, NX * (NY - 1), NX * NY):
                assert de == pytest.approx(global_energy(after, au, eps) - global_energy(lat, au, eps), abs=1e-12)
                checked += 1
    assert checked > 200


def test_droplet_in_a_closed_box_samples_the_boltzmann_weights():
    """Time-averaged state frequencies of the production kernel ∝ exp(−E/E_eff) (chi-square)."""
    eps, au = _eps(), _au_column()
    states = list(itertools.combinations(INTERIOR, 3))
    energy = np.array([global_energy(_box(s), au, eps) for s in states])
    weight = np.exp(-(energy - energy.min()))
    expected_p = weight / weight.sum()
    index = {s: i for i, s in enumerate(states)}

    lattice = _box(states[0])
    tree, offsets = tree_new(lattice.size)
    move_params = np.zeros(N_MOVE_PARAMS)  # no load: σ_Na = 0, so creep and diffusion are off
    move_params[M_NU_CAP] = 1.0
    support = np.zeros(NX * NY, dtype=np.int64)
    cc_bottom, pore_depth = np.full(NX * NY, NZ - 1, dtype=np.int64), NZ  # the lid is solid: no pores (E9)
    fill_move_leaves(tree, lattice, au, support, cc_bottom, pore_depth, NX, NY, NZ, eps, move_params, 0, lattice.size)
    tree_build(tree, offsets)
    clock = np.zeros(1)
    counters = np.zeros(1, dtype=np.int64)
    rng = np.random.default_rng(42)
    run_moves(lattice, au, support, cc_bottom, pore_depth, eps, move_params, tree, offsets, NX, NY, NZ, clock, counters,
              rng, 10_000, np.inf)
    n_samples, dt = 40_000, 4.0  # ~10 events between samples
    counts = np.zeros(len(states))
    t = clock[0]
    for _ in range(n_samples):
        t += dt
        run_moves(lattice, au, support, cc_bottom, pore_depth, eps, move_params, tree, offsets, NX, NY, NZ, clock,
                  counters, rng, 10**9, t)
        counts[index[tuple(np.flatnonzero(lattice == NA))]] += 1
    assert (lattice == NA).sum() == 3 and (lattice == SE).sum() == NX * NY  # volume conserved
    expected = expected_p * n_samples
    big = expected >= 10
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    assert big.sum() > 50 and np.ptp(energy) > 2.0  # the test has teeth: many states, unequal weights
    _, p = stats.chisquare(obs, exp)
    assert p > 1e-4, f"chi-square p = {p:.2g}"


def _within_steps(site, steps, nx, ny, nz):
    """Sites within ``steps`` lattice steps of ``site`` (laterally periodic, walled in z), by recount."""
    z0, r = divmod(site, nx * ny)
    y0, x0 = divmod(r, nx)
    out = set()
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                dx, dy = abs(x - x0), abs(y - y0)
                if min(dx, nx - dx) + min(dy, ny - dy) + abs(z - z0) <= steps:
                    out.add(x + nx * (y + ny * z))
    return out


@pytest.mark.parametrize("pair", [(0, 0), (13, 14), (7, 7 + 30), (44, 59)])
def test_near_first_stencil_lists_the_one_step_sites_first(pair):
    """``stencil_near_first`` lists every site within two steps of s or t once (the set of
    ``stencil_two_steps``), those within one step first: the battery loop refreshes faradaic leaves over
    that first part only, so a site missing from it would leave a stale face weight."""
    from kmc.kernels.capillary import STENCIL_SIZE, stencil_near_first, stencil_two_steps

    nx, ny, nz = 5, 6, 4
    s, t = pair
    seen = np.zeros(nx * ny * nz, dtype=np.uint8)
    a, b = np.empty(6, dtype=np.int64), np.empty(6, dtype=np.int64)
    near_first = np.empty(STENCIL_SIZE, dtype=np.int64)
    n_near, n = stencil_near_first(s, t, nx, ny, nz, near_first, a, b, seen)
    seen[near_first[:n]] = 0
    two = np.empty(STENCIL_SIZE, dtype=np.int64)
    m = stencil_two_steps(s, t, nx, ny, nz, two, a, b, seen)
    seen[two[:m]] = 0
    assert not seen.any()
    assert len(set(near_first[:n].tolist())) == n  # each once
    assert set(near_first[:n].tolist()) == set(two[:m].tolist()) == (_within_steps(s, 2, nx, ny, nz)
                                                                      | _within_steps(t, 2, nx, ny, nz))
    assert set(near_first[:n_near].tolist()) == _within_steps(s, 1, nx, ny, nz) | _within_steps(t, 1, nx, ny, nz)
