"""Capillary moves of Na (PHYSICS.md §5, E4b) and the bond-counting energy behind them.

Energy by bond counting: every face between two voxels has an energy ``w(state_a, state_b)`` (per
face, in units of the declared prior ``E_eff``). Moving a Na voxel from s into an adjacent GAP t
changes only the faces of s and t other than the s–t face itself:

    ΔE = Σ_{n ∈ N(t), n ≠ s} ε(n) − Σ_{n ∈ N(s), n ≠ t} ε(n),     ε(X) = w(Na, X) − w(GAP, X),

so only ε per neighbour kind is needed: ε(Na) = −γ a² (a Na–Na bond replaces a Na surface),
ε(GAP) = +γ a², and for a wall X with Young–Dupré adhesion ε(X) = γ a² − W_adh(Na/X)·a² =
−γ a² cos θ_X. The CC counts as Au (wetting, θ ≈ 0) in columns with a seed layer and as its own
metal (Al non-wetting) elsewhere: ``eps`` has one entry per state code plus ``EPS_AU``.

Rate of the move s → t: ``ν_cap · min(1, exp(−ΔE/E_eff))`` (Metropolis). The reverse move t → s has
ΔE of the opposite sign, so without load the moves obey detailed balance with weights
``exp(−E/E_eff)``; ν_cap (s⁻¹) is the creep rate at the capillary stress (kmc/battery docs).

Stencil: a move changes the states of s and t; the propensity of a Na voxel u depends on the states
of u's neighbours and of their neighbours, so every Na voxel within two steps of s or t is
recomputed.
"""
import numpy as np
from numba import njit

from kmc.kernels.cell import CC, GAP, NA
from kmc.kernels.lattice import N_NEIGHBORS, neighbors6
from kmc.kernels.solver import (
    STOP_EVENTS,
    STOP_NO_EVENTS,
    STOP_TIME,
    tree_select,
    tree_total,
    tree_update_many,
    waiting_time,
)

#: Index of the Au-covered collector in the ``eps`` table (after the five state codes).
EPS_AU = 5
EPS_SIZE = 6

#: Sites recomputed after one move: s, t and everything within two steps of either.
STENCIL_SIZE = 2 * (1 + N_NEIGHBORS + N_NEIGHBORS * N_NEIGHBORS)


@njit(cache=True)
def _eps_of(site, lattice, au_column, nxy, eps):
    st = lattice[site]
    if st == CC and au_column[site % nxy]:
        return eps[EPS_AU]
    return eps[st]


@njit(cache=True)
def move_energy(s, t, lattice, au_column, nx, ny, nz, eps, nbr):
    """ΔE/E_eff of moving the Na voxel at s into the GAP t (lattice before the move)."""
    nxy = nx * ny
    de = 0.0
    neighbors6(t, nx, ny, nz, False, nbr)
    for d in range(N_NEIGHBORS):
        n = nbr[d]
        if n >= 0 and n != s:
            de += _eps_of(n, lattice, au_column, nxy, eps)
    neighbors6(s, nx, ny, nz, False, nbr)
    for d in range(N_NEIGHBORS):
        n = nbr[d]
        if n >= 0 and n != t:
            de -= _eps_of(n, lattice, au_column, nxy, eps)
    return de


@njit(cache=True)
def capillary_propensity(s, lattice, au_column, nx, ny, nz, eps, nu_cap, nbr_s, nbr_tmp):
    """Total capillary rate out of site s (s⁻¹): 0 unless s is Na with a GAP neighbour."""
    if lattice[s] != NA:
        return 0.0
    neighbors6(s, nx, ny, nz, False, nbr_s)
    total = 0.0
    for d in range(N_NEIGHBORS):
        t = nbr_s[d]
        if t >= 0 and lattice[t] == GAP:
            de = move_energy(s, t, lattice, au_column, nx, ny, nz, eps, nbr_tmp)
            total += nu_cap if de <= 0.0 else nu_cap * np.exp(-de)
    return total


@njit(cache=True)
def _pick_move(s, residual, lattice, au_column, nx, ny, nz, eps, nu_cap, nbr_s, nbr_tmp):
    """The GAP neighbour of s whose move the residual (s⁻¹, within s's propensity) falls on."""
    neighbors6(s, nx, ny, nz, False, nbr_s)
    acc = 0.0
    last = -1
    for d in range(N_NEIGHBORS):
        t = nbr_s[d]
        if t >= 0 and lattice[t] == GAP:
            de = move_energy(s, t, lattice, au_column, nx, ny, nz, eps, nbr_tmp)
            acc += nu_cap if de <= 0.0 else nu_cap * np.exp(-de)
            last = t
            if residual < acc:
                return t
    return last


@njit(cache=True)
def _add_once(site, stencil, n, seen):
    if seen[site] == 0:
        seen[site] = 1
        stencil[n] = site
        return n + 1
    return n


@njit(cache=True)
def _stencil(s, t, nx, ny, nz, stencil, nbr_a, nbr_b, seen):
    """s, t and every site within two steps of either, each once, into ``stencil``; returns the count.

    ``seen`` (uint8 per site, zero on entry) marks sites already listed; the caller clears it.
    """
    n = 0
    for c in (s, t):
        n = _add_once(c, stencil, n, seen)
        neighbors6(c, nx, ny, nz, False, nbr_a)
        for d in range(N_NEIGHBORS):
            k = nbr_a[d]
            if k < 0:
                continue
            n = _add_once(k, stencil, n, seen)
            neighbors6(k, nx, ny, nz, False, nbr_b)
            for e in range(N_NEIGHBORS):
                m = nbr_b[e]
                if m >= 0:
                    n = _add_once(m, stencil, n, seen)
    return n


@njit(cache=True)
def fill_capillary_leaves(tree, lattice, au_column, nx, ny, nz, eps, nu_cap):
    nbr_s = np.empty(N_NEIGHBORS, dtype=np.int64)
    nbr_tmp = np.empty(N_NEIGHBORS, dtype=np.int64)
    for s in range(lattice.size):
        tree[s] = capillary_propensity(s, lattice, au_column, nx, ny, nz, eps, nu_cap, nbr_s, nbr_tmp)


@njit(cache=True, nogil=True)
def run_capillary(lattice, au_column, eps, nu_cap, tree, offsets, nx, ny, nz, clock, counters, rng,
                  max_events, t_end):
    """Capillary moves only (no load, no current) until ``max_events`` or time ``t_end`` (s).

    The relaxation kernel of E4b: used between faradaic events and on its own for the
    detailed-balance check. ``clock[0]`` time (s), ``counters[0]`` events; returns a STOP_* code.
    """
    nbr_s = np.empty(N_NEIGHBORS, dtype=np.int64)
    nbr_tmp = np.empty(N_NEIGHBORS, dtype=np.int64)
    stencil = np.empty(STENCIL_SIZE, dtype=np.int64)
    scratch = np.empty(STENCIL_SIZE, dtype=np.int64)
    seen = np.zeros(lattice.size, dtype=np.uint8)
    mark = np.zeros(tree.size, dtype=np.uint8)
    done = 0
    while done < max_events:
        total = tree_total(tree)
        if total <= 0.0:
            return STOP_NO_EVENTS
        dt = waiting_time(rng, total)
        if clock[0] + dt > t_end:
            clock[0] = t_end
            return STOP_TIME
        s, residual = tree_select(tree, offsets, rng.random() * total)
        t = _pick_move(s, residual, lattice, au_column, nx, ny, nz, eps, nu_cap, nbr_s, nbr_tmp)
        lattice[t] = NA
        lattice[s] = GAP
        n = _stencil(s, t, nx, ny, nz, stencil, nbr_s, nbr_tmp, seen)
        for a in range(n):
            k = stencil[a]
            seen[k] = 0
            tree[k] = capillary_propensity(k, lattice, au_column, nx, ny, nz, eps, nu_cap, nbr_s, nbr_tmp)
        tree_update_many(tree, offsets, stencil, n, scratch, mark)
        clock[0] += dt
        counters[0] += 1
        done += 1
    return STOP_EVENTS
