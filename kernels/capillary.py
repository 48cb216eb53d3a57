"""The bond-counting capillary energy of Na (PHYSICS.md §5, E4b) and the stencil of a move.

Energy by bond counting: every face between two voxels has an energy ``w(state_a, state_b)`` (per
face, in units of the declared prior ``E_eff``). Moving a Na voxel from s into an adjacent GAP t
changes only the faces of s and t other than the s–t face itself:

    ΔE = Σ_{n ∈ N(t), n ≠ s} ε(n) − Σ_{n ∈ N(s), n ≠ t} ε(n),     ε(X) = w(Na, X) − w(GAP, X),

so only ε per neighbour kind is needed: ε(Na) = −γ a² (a Na–Na bond replaces a Na surface),
ε(GAP) = +γ a², and for a wall X with Young–Dupré adhesion ε(X) = γ a² − W_adh(Na/X)·a² =
−γ a² cos θ_X. The CC counts as Au (wetting, θ ≈ 0) in columns with a seed layer and as its own
metal (Al non-wetting) elsewhere: ``eps`` has one entry per state code plus ``EPS_AU``.

The rates built on this energy are in ``kmc.kernels.moves`` (Metropolis ``ν min(1, exp(−ΔE/E_eff))``
for capillary moves: the reverse move has ΔE of the opposite sign, so without load they obey
detailed balance with weights ``exp(−E/E_eff)``).

Stencil: a move changes the states of s and t; the propensity of a Na voxel u depends on the states
of u's neighbours and of their neighbours, so every site within two steps of s or t is recomputed
(``stencil_two_steps``; ``stencil_near_first`` lists the same sites with those within one step first,
for leaves that depend on a site's own neighbours only).
"""
from numba import njit

from kmc.kernels.cell import CC
from kmc.kernels.lattice import N_NEIGHBORS, neighbors6
from kmc.kernels.leaf import leaf

#: Index of the Au-covered collector in the ``eps`` table (after the five state codes).
EPS_AU = 5
EPS_SIZE = 6

#: Sites recomputed after one move: s, t and everything within two steps of either.
STENCIL_SIZE = 2 * (1 + N_NEIGHBORS + N_NEIGHBORS * N_NEIGHBORS)


@leaf
def _eps_of(site, lattice, au_column, nxy, eps):
    st = lattice[site]
    if st == CC and au_column[site % nxy]:
        return eps[EPS_AU]
    return eps[st]


@leaf
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


@leaf
def _add_once(site, stencil, n, seen):
    if seen[site] == 0:
        seen[site] = 1
        stencil[n] = site
        return n + 1
    return n


@leaf
def stencil_near_first(s, t, nx, ny, nz, stencil, nbr_a, nbr_b, seen):
    """s, t and every site within two steps of either, each once, into ``stencil``, those within one step
    first; returns (how many are within one step, how many in all). ``seen`` (uint8 per site, zero on
    entry) marks sites already listed; the caller clears it."""
    n = 0
    for c in (s, t):
        n = _add_once(c, stencil, n, seen)
        neighbors6(c, nx, ny, nz, False, nbr_a)
        for d in range(N_NEIGHBORS):
            if nbr_a[d] >= 0:
                n = _add_once(nbr_a[d], stencil, n, seen)
    n_near = n
    for i in range(n_near):
        neighbors6(stencil[i], nx, ny, nz, False, nbr_b)
        for e in range(N_NEIGHBORS):
            if nbr_b[e] >= 0:
                n = _add_once(nbr_b[e], stencil, n, seen)
    return n_near, n


@leaf
def stencil_two_steps(s, t, nx, ny, nz, stencil, nbr_a, nbr_b, seen):
    """s, t and every site within two steps of either, each once, into ``stencil``; returns the count.

    ``seen`` (uint8 per site, zero on entry) marks sites already listed; the caller clears it. The
    sites of ``stencil_near_first``, whose split into one and two steps the caller does not need.
    """
    return stencil_near_first(s, t, nx, ny, nz, stencil, nbr_a, nbr_b, seen)[1]


