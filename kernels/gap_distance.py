"""E1 rule 3's search for the nearest gap, guided by a distance field (the same answer, fewer voxels).

Rule 3 (``kmc.kernels.plating``) carries a plated voxel through the Na connected to its face to the
first admissible GAP of a breadth-first search. Before a layer seals, the last gaps sit in a few
patches whose spacing grows with the domain, and the search crosses the sealed Na between them: its
cost per event grows with the area (README, "The battery model").

This module gives the same site at a fraction of the cost. ``gap_distance`` labels every Na voxel
with D(v), the number of steps through Na from v to the nearest admissible GAP (1 beside one), by
one breadth-first pass from all gaps at once. The search from c then keeps, of the Na voxels it
meets at level k, only those with k + D(v) ≤ d, d = D(c): those lying on a shortest path from c to a
nearest gap. That pruning returns the plain search's site, tie-breaking included:

- every voxel on a shortest path from c to a gap at level d has k + D ≤ d, and so does every
  neighbour at level k − 1 of such a voxel (D changes by at most 1 per step); so each kept useful
  voxel's first discoverer in the plain search is kept, and the useful voxels enter the queue in the
  same order;
- the plain search finds its gap while expanding a voxel at level d − 1 whose D is 1: a useful one.

Plating only turns admissible gaps into Na between two labellings, and that can only lengthen the
paths to the gaps left: a D computed earlier stays a lower bound. With a lower bound the pruning is
still exact for any d at least the true distance, and a gap found at a level ≤ d proves d was large
enough; otherwise the search is repeated with a larger d (``nearest_gap_guided``). A gap opened since
(a Na voxel moved away or removed: ``gap_opened``) can shorten paths; the bound then also takes the
lattice distance to it (a path through Na is at least that long), for up to ``MAX_OPENED`` of them.
Anything else that changes the lattice (the collector moved, more gaps opened) makes the labels
invalid: the caller clears ``search[S_VALID]`` (``battery_loop`` at each batch) and the next search
that needs them relabels.

A search that finds no gap ends as soon as it can say so: when a round whose bound turned no Na voxel away
finds none (that round was the plain search, through all the Na connected to c), and, once a long search
has read the lattice eight voxels at a time and found no GAP in it at all, at once (``SCAN_FRACTION``). A
sealed layer under which a payment opened gaps has none once plating has filled them, and the search that
found so crossed the whole layer, up to a dozen times as its bound grew (2 s batches at 512²).

Relabelling costs a pass over the lattice and the Na; it is done once the searches since the last
labelling have visited as many voxels as the last labelling cost (a voxel passed over costs ~1/16 of
one searched; the first time, a pass's worth), so it never costs more than the searches it serves, and stale labels (whose
pruning loosens as gaps fill) are renewed as often as the searches can afford.
"""
import numpy as np
from numba import njit

from kmc.kernels.cell import GAP, NA, holds_state, lattice_words
from kmc.kernels.lattice import N_NEIGHBORS, neighbors6, next_site_xyz, site_xyz, walled_neighbor
from kmc.kernels.plating import admissible, local_insertion_site, nearest_interface_gap

# The searches' and the labelling's neighbours, inlined rather than a call per voxel visited (a saved T2 batch at
# 512²: 377 -> 355 ms).
_neighbors6 = njit(cache=True, inline="always")(neighbors6.py_func)

#: D of a Na voxel from which no admissible gap is reachable through Na.
UNREACHABLE = 65535
#: Longer paths are stored as this: still a lower bound of the true distance.
SATURATED = 65534

#: A bound no search reaches: the plain, unpruned search (every label passes it).
UNPRUNED = 1 << 62
#: A search that has queued 1/SCAN_FRACTION of the lattice's sites reads the lattice for any GAP (eight voxels
#: at a time, ``cell.holds_state``) before it goes on, and answers −1 at once if there is none. The read costs
#: about what searching 1/200 of the sites does (at 512² × 48: 1.8 ms, against ~28 ns a voxel searched), so
#: the search has spent about as much as the read when it reads.
SCAN_FRACTION = 256

# slots of the int64 ``search`` array
S_VALID = 0  #: 1 while ``dist`` is a lower bound of every Na voxel's distance (see module docstring)
S_WORK = 1  #: voxels the searches have visited since the last labelling (or since it became invalid)
S_COST = 2  #: the last labelling's cost in searched voxels (the lattice pass, ~1/16 of one each, + Na labelled)
S_LABELLINGS = 3  #: labellings done (diagnostics)
S_OPENED = 4  #: gaps opened since the labelling (a Na voxel moved or removed): x, y, z from S_FIRST_OPENED
#: 1 once a search has read the lattice for any GAP and found one (cleared with S_VALID at each batch): no
#: search reads it again until then (``_pruned_search``'s ``scan_at``)
S_GAPS_SEEN = 5
S_FIRST_OPENED = 6
#: Gaps opened since the labelling that the bound tracks before it gives the labels up.
MAX_OPENED = 1024
N_SEARCH = S_FIRST_OPENED + 3 * MAX_OPENED


@njit(cache=True, inline="always")
def gap_opened(g, nx, ny, search):
    """The voxel g has just become a GAP: tracked by the bound, or the labels given up."""
    k = search[S_OPENED]
    if k < MAX_OPENED:
        nxy = nx * ny
        z, r = divmod(g, nxy)
        y, x = divmod(r, nx)
        j = S_FIRST_OPENED + 3 * k
        search[j] = x
        search[j + 1] = y
        search[j + 2] = z
        search[S_OPENED] = k + 1
    else:
        search[S_VALID] = 0


@njit(cache=True, inline="always")
def gap_filled(g, dist):
    """The GAP g has just become Na: 0 bounds its distance to a gap (its label is from before)."""
    dist[g] = 0


@njit(cache=True)
def _opened_within(c, bound, search, nx, ny):
    """The gaps opened since the labelling whose lattice distance to c is at most ``bound`` (x, y, z
    rows), and their number: only these can bound a voxel within ``bound`` of c's search."""
    near = np.empty((search[S_OPENED], 3), dtype=np.int64)
    m = 0
    nxy = nx * ny
    z, r = divmod(c, nxy)
    y, x = divmod(r, nx)
    for i in range(search[S_OPENED]):
        j = S_FIRST_OPENED + 3 * i
        dx = abs(x - search[j])
        dy = abs(y - search[j + 1])
        if min(dx, nx - dx) + min(dy, ny - dy) + abs(z - search[j + 2]) <= bound:
            near[m, 0] = search[j]
            near[m, 1] = search[j + 1]
            near[m, 2] = search[j + 2]
            m += 1
    return near, m


@njit(cache=True, inline="always")
def _near_distance(v, near, m, nx, ny):
    """The lattice distance from v to the nearest of the first m rows of ``near``, or ``UNREACHABLE``."""
    d = np.int64(UNREACHABLE)
    nxy = nx * ny
    z, r = divmod(v, nxy)
    y, x = divmod(r, nx)
    for i in range(m):
        dx = abs(x - near[i, 0])
        dy = abs(y - near[i, 1])
        d = min(d, min(dx, nx - dx) + min(dy, ny - dy) + abs(z - near[i, 2]))
    return d


@njit(cache=True)
def _opened_distance(v, search, nx, ny):
    """The lattice distance (laterally periodic) from v to the nearest gap opened since the labelling,
    or ``UNREACHABLE``: no path through Na to it is shorter."""
    near, m = _opened_within(v, UNREACHABLE, search, nx, ny)
    return _near_distance(v, near, m, nx, ny)


@njit(cache=True, inline="always")
def _seed_layer(lattice, lo, hi, nx, ny, nz, cc_bottom, pore_depth, dist, queue, tail):
    """``gap_distance``'s first pass over the sites lo..hi−1: each Na voxel UNREACHABLE, or 1 and queued
    if it touches an admissible gap. Returns the queue's new length."""
    nxy = nx * ny
    x, y, z = site_xyz(lo, nx, ny)  # the neighbours from the loop's coordinates, not decoded per voxel
    for v in range(lo, hi):
        if lattice[v] == NA:
            dist[v] = UNREACHABLE
            for d in range(N_NEIGHBORS):
                k = walled_neighbor(v, d, x, y, z, nx, ny, nz)
                if k >= 0 and lattice[k] == GAP and admissible(k, cc_bottom, nxy, pore_depth):
                    dist[v] = 1
                    queue[tail] = v
                    tail += 1
                    break
        x, y, z = next_site_xyz(x, y, z, nx, ny)
    return tail


@njit(cache=True)
def gap_distance(lattice, nx, ny, nz, cc_bottom, pore_depth, dist, queue):
    """Label ``dist`` (uint16 per site): for each Na voxel the steps through Na to the nearest
    admissible GAP (6 neighbours, laterally periodic, as the search), ``UNREACHABLE`` if none. Other
    voxels keep whatever they hold: a voxel that becomes Na later gets 0 then (``gap_filled``).
    Returns the Na voxels labelled."""
    nxy = nx * ny
    nbr = np.empty(N_NEIGHBORS, dtype=np.int64)
    words = lattice_words(lattice)
    tail = 0
    for z in range(nz):
        # Only the layers that hold Na, found eight voxels at a time: before a layer seals, Na is in a
        # few layers of many (at 512² columns of T2's shape a labelling took 46–65 ms, and 40–57 after).
        if holds_state(lattice, words, z * nxy, (z + 1) * nxy, NA):
            tail = _seed_layer(lattice, z * nxy, (z + 1) * nxy, nx, ny, nz, cc_bottom, pore_depth, dist, queue, tail)
    head = 0
    while head < tail:
        s = queue[head]
        head += 1
        ds = min(np.int64(dist[s]) + 1, SATURATED)
        _neighbors6(s, nx, ny, nz, False, nbr)
        for d in range(N_NEIGHBORS):
            k = nbr[d]
            if k >= 0 and lattice[k] == NA and dist[k] == UNREACHABLE:
                dist[k] = ds
                queue[tail] = k
                tail += 1
    return tail


@njit(cache=True)
def _pruned_search(c, bound, lattice, nx, ny, nz, queue, visited, nbr, cc_bottom, pore_depth, dist, search, scan_at):
    """The plain breadth-first search from the Na voxel c (``plating._nearest_gap_through_na``), keeping
    only the Na voxels v met at level k with k + (a lower bound of v's distance) ≤ bound: its label, or
    its lattice distance to a gap opened since (``_opened_distance``). Returns (gap, its level, voxels
    queued, whether the bound turned a Na voxel away, scan); gap −1 if none was met.

    Once ``scan_at`` voxels are queued the lattice is read for any GAP (``scan``: 0 not read, 1 a GAP
    found, the search goes on; 2 none, the search stops with gap −1, the plain search's answer). A
    sealed layer whose last gaps a payment's voxels were has none left once plating has filled them,
    and the search that finds so would cross all its Na: 8 M voxels at 512²."""
    nxy = nx * ny
    scan = 0
    head = 0
    tail = 1
    queue[0] = c
    visited[c] = 1
    level = 0
    level_end = 1
    found = -1
    pruned = False
    # A voxel k met at level L is at most L steps from c, so L + (k's distance to an opened gap) is at
    # least c's distance to it: only the opened gaps within the bound of c can keep anyone.
    if bound < UNPRUNED:
        near, m = _opened_within(c, bound, search, nx, ny)
    else:  # every voxel is kept by its label: the opened gaps are not needed
        near, m = np.empty((0, 3), dtype=np.int64), 0
    while head < tail and found < 0 and scan != 2:
        if tail >= scan_at and scan == 0:
            scan = 1 if holds_state(lattice, lattice_words(lattice), 0, lattice.size, GAP) else 2
            continue
        if head == level_end:
            level += 1
            level_end = tail
        s = queue[head]
        head += 1
        _neighbors6(s, nx, ny, nz, False, nbr)
        for d in range(N_NEIGHBORS):
            k = nbr[d]
            if k < 0 or visited[k]:
                continue
            st = lattice[k]
            if st == GAP and admissible(k, cc_bottom, nxy, pore_depth):
                found = k
                break
            if st == NA:
                if (level + 1 + np.int64(dist[k]) <= bound
                        or (m > 0 and level + 1 + _near_distance(k, near, m, nx, ny) <= bound)):
                    visited[k] = 1
                    queue[tail] = k
                    tail += 1
                else:
                    pruned = True
    for i in range(tail):
        visited[queue[i]] = 0
    return found, level + 1, tail, pruned, scan


@njit(cache=True)
def nearest_gap_guided(c, lattice, nx, ny, nz, queue, visited, nbr, cc_bottom, pore_depth, dist, search):
    """The GAP ``plating._nearest_gap_through_na`` returns for the Na voxel c (the same site), or −1;
    labels ``dist`` first when the searches since the last labelling have cost as much as it."""
    if lattice[c] != NA:
        return -1
    if search[S_WORK] >= max(search[S_COST], lattice.size // 16):
        search[S_COST] = lattice.size // 16 + gap_distance(lattice, nx, ny, nz, cc_bottom, pore_depth, dist, queue)
        search[S_VALID] = 1
        search[S_OPENED] = 0
        search[S_WORK] = 0
        search[S_LABELLINGS] += 1
    # Read the lattice for a GAP in a long search, until one has been seen (module constant SCAN_FRACTION)
    scan_at = UNPRUNED if search[S_GAPS_SEEN] else max(lattice.size // SCAN_FRACTION, 1024)
    if search[S_VALID] == 0:
        g, _, cost, _, scan = _pruned_search(c, UNPRUNED, lattice, nx, ny, nz, queue, visited, nbr, cc_bottom,
                                             pore_depth, dist, search, scan_at)
        search[S_WORK] += cost
        if scan == 1:
            search[S_GAPS_SEEN] = 1
        return g
    d0 = min(np.int64(dist[c]), _opened_distance(c, search, nx, ny))
    if d0 == UNREACHABLE:
        return -1  # no gap was reachable at the labelling, and filling gaps connects nothing new
    bound = d0
    while True:
        g, level, cost, pruned, scan = _pruned_search(c, bound, lattice, nx, ny, nz, queue, visited, nbr, cc_bottom,
                                                      pore_depth, dist, search, scan_at)
        search[S_WORK] += cost
        if scan == 2:
            return -1  # no GAP in the whole lattice
        if scan == 1:
            search[S_GAPS_SEEN] = 1
            scan_at = UNPRUNED
        if g >= 0 and level <= bound:
            dist[c] = min(level, SATURATED)  # exact now, so a lower bound from now on
            return g
        if g < 0 and (bound >= lattice.size or not pruned):
            # Every gap c could reach has been filled since the labelling. A search the bound turned no
            # voxel away from was the plain search, through all the Na connected to c: raising the bound
            # to the lattice's size would repeat it a dozen times (a sealed layer after a payment's
            # gaps are filled: 29 M voxels searched for one answer at 256²).
            return -1
        # The bound was below the true distance (the nearest gaps were filled since the labelling): a
        # gap met deeper bounds it; else double the slack (the searches cost at most ~2× the last one).
        bound = level if g >= 0 else min(bound + (bound - d0) + 1, lattice.size)


@njit(cache=True)
def insertion_site_guided(c, e, lattice, au_column, nx, ny, nz, eps, queue, visited, cc_bottom, pore_depth, dist,
                          search, gap_cols):
    """``plating.insertion_site`` (the same site), its rule 3 searched through the distance labels
    ``dist`` (``search``: their bookkeeping), and the interface's gaps, where c is confined, through the
    columns that may hold one (``gap_cols``: ``plating.nearest_interface_gap``)."""
    nbr = np.empty(N_NEIGHBORS, dtype=np.int64)
    nbr2 = np.empty(N_NEIGHBORS, dtype=np.int64)
    best = local_insertion_site(c, e, lattice, au_column, nx, ny, nz, eps, cc_bottom, pore_depth, nbr, nbr2)
    if best >= 0:
        return best
    g = nearest_gap_guided(c, lattice, nx, ny, nz, queue, visited, nbr, cc_bottom, pore_depth, dist, search)
    if g >= 0:
        return g
    return nearest_interface_gap(c, lattice, nx, ny, nz, cc_bottom, pore_depth, gap_cols)
