"""The hop benchmark model: particles hopping to empty first neighbours.

Lattice states: EMPTY (0) and OCCUPIED (1). An occupied site i hops to each empty first neighbour at
rate ``m_i`` (s⁻¹); the plain hop model has every ``m_i = 1``, the random-rate variant draws ``m_i``
log-uniformly over some decades. Both run through this one kernel, so the benchmark compares
selection costs, not two code paths.

Model interface, as the solver expects it:

- propensity of a site: ``m_i · (empty neighbours of i)`` if i is occupied, else 0;
- execution of an event at a site, given the solver's residual: the residual divided by ``m_i`` picks
  which empty neighbour receives the particle;
- stencil of an event i → j: the sites whose propensity can change — i, j, and the other first
  neighbours of both (at most 12). ``empty_count`` (uint8, one per site) is updated for the
  neighbours of i and j so that no propensity needs a second ring of neighbours.
"""
import numpy as np
from numba import njit

from kmc.kernels.lattice import N_NEIGHBORS, neighbors6
from kmc.kernels.solver import EVENT, STOP_EVENTS, next_event, tree_select, tree_total, tree_update

EMPTY = 0
OCCUPIED = 1

#: Largest stencil of one event: i, j and the five other neighbours of each.
STENCIL_SIZE = 2 * N_NEIGHBORS


@njit(cache=True)
def site_propensity(site, lattice, empty_count, rate_mult):
    """Total hop rate out of ``site`` (s⁻¹)."""
    if lattice[site] != OCCUPIED:
        return 0.0
    return np.float64(rate_mult[site]) * empty_count[site]


@njit(cache=True)
def count_empty_neighbors(lattice, nx, ny, nz, z_periodic, empty_count, nbr):
    """Fill ``empty_count`` from the lattice (initialisation and checks)."""
    for s in range(lattice.size):
        neighbors6(s, nx, ny, nz, z_periodic, nbr)
        c = 0
        for d in range(N_NEIGHBORS):
            k = nbr[d]
            if k >= 0 and lattice[k] == EMPTY:
                c += 1
        empty_count[s] = c


@njit(cache=True)
def fill_leaves(tree, lattice, empty_count, rate_mult):
    """Write every site's propensity into the tree's leaves (call ``tree_build`` after)."""
    for s in range(lattice.size):
        tree[s] = site_propensity(s, lattice, empty_count, rate_mult)


@njit(cache=True)
def execute_hop(site, residual, lattice, empty_count, rate_mult, nx, ny, nz, z_periodic,
                nbr_i, nbr_j, stencil):
    """Move the particle at ``site`` to the empty neighbour the residual picks.

    Writes the sites whose propensity may have changed into ``stencil`` and returns their number.
    """
    neighbors6(site, nx, ny, nz, z_periodic, nbr_i)
    pick = int(residual / rate_mult[site])
    if pick >= empty_count[site]:
        pick = empty_count[site] - 1
    j = -1
    for d in range(N_NEIGHBORS):
        k = nbr_i[d]
        if k >= 0 and lattice[k] == EMPTY:
            if pick == 0:
                j = k
                break
            pick -= 1
    lattice[site] = EMPTY
    lattice[j] = OCCUPIED
    neighbors6(j, nx, ny, nz, z_periodic, nbr_j)
    n = 0
    stencil[n] = site
    n += 1
    stencil[n] = j
    n += 1
    for d in range(N_NEIGHBORS):
        k = nbr_i[d]
        if k >= 0:
            empty_count[k] += 1
            if k != j:
                stencil[n] = k
                n += 1
    for d in range(N_NEIGHBORS):
        k = nbr_j[d]
        if k >= 0:
            empty_count[k] -= 1
            if k != site:
                # On a lattice 2 wide a site can be a neighbour of both i and j; listing it twice
                # only recomputes its leaf twice.
                stencil[n] = k
                n += 1
    return n


@njit(cache=True, nogil=True)
def run_batch(lattice, empty_count, rate_mult, tree, offsets, nx, ny, nz, z_periodic,
              clock, counters, rng, max_events, t_end, work):
    """Run hop events until ``max_events`` have run or the next one would pass ``t_end`` (s).

    ``clock[0]`` is the time (s), ``counters[0]`` the number of events; both are advanced in place.
    ``work`` is an int64 scratch buffer of at least ``4 * STENCIL_SIZE`` entries. Returns a
    ``STOP_*`` code of ``kmc.kernels.solver``. Releases the GIL, so a run's heartbeat thread keeps
    beating while a batch runs.
    """
    nbr_i = work[0:N_NEIGHBORS]
    nbr_j = work[N_NEIGHBORS:2 * N_NEIGHBORS]
    stencil = work[STENCIL_SIZE:2 * STENCIL_SIZE]
    scratch = work[2 * STENCIL_SIZE:4 * STENCIL_SIZE]
    done = 0
    while done < max_events:
        code, u = next_event(rng, tree_total(tree), clock, t_end)
        if code != EVENT:
            return code
        site, residual = tree_select(tree, offsets, u)
        n = execute_hop(site, residual, lattice, empty_count, rate_mult, nx, ny, nz, z_periodic,
                        nbr_i, nbr_j, stencil)
        for a in range(n):
            s = stencil[a]
            tree[s] = site_propensity(s, lattice, empty_count, rate_mult)
        tree_update(tree, offsets, stencil, n, scratch)
        counters[0] += 1
        done += 1
    return STOP_EVENTS
