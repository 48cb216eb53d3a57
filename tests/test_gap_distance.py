"""E1 rule 3's guided search (``kmc.kernels.gap_distance``) returns the plain breadth-first search's site.

The guided search prunes with distance labels that go stale as plating fills gaps and as moves open
new ones; it must give the very site the plain search gives, tie-breaking included (the battery's
golden trajectories depend on it). Checked on random lattices against
``plating._nearest_gap_through_na``, with the labels fresh, stale after fills, and with gaps opened
since; and the labels themselves against a breadth-first recount by SciPy.
"""
import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import shortest_path

from kmc.kernels import gap_distance as gd
from kmc.kernels.capillary import EPS_SIZE
from kmc.kernels.cell import CC, GAP, NA, SE
from kmc.kernels.lattice import N_NEIGHBORS, neighbors6
from kmc.kernels.plating import (
    _nearest_gap_through_na,
    admissible,
    insertion_site,
    mark_gap_columns,
    nearest_interface_gap,
)


def _random_cell(seed, nx=11, ny=9, nz=8, gap_fraction=0.12):
    """Electrolyte below, a collector above at a random lower face, and between them Na with gaps
    scattered through it (``gap_fraction``), some in pores of the collector body."""
    rng = np.random.default_rng(seed)
    lat = np.empty((nz, ny, nx), dtype=np.uint8)
    cc_bottom = rng.integers(nz - 3, nz, size=(ny, nx))
    se_top = rng.integers(0, 2, size=(ny, nx))
    for z in range(nz):
        lat[z] = np.where(z <= se_top, SE, np.where(z >= cc_bottom, CC, NA))
    between = (lat == NA) & (rng.random(lat.shape) < gap_fraction)
    lat[between] = GAP
    pores = (lat == CC) & (rng.random(lat.shape) < 0.15)
    lat[pores] = GAP
    return lat.ravel(), nx, ny, nz, cc_bottom.ravel().astype(np.int64)


def _recount(lat, nx, ny, nz, cc_bottom, pore_depth):
    """Each Na voxel's steps through Na to the nearest admissible gap, by SciPy's BFS on the graph
    built from the lattice (Na–Na and Na–gap bonds, laterally periodic); inf where none."""
    n = lat.size
    nbr = np.empty(N_NEIGHBORS, dtype=np.int64)
    gaps = [g for g in range(n) if lat[g] == GAP and admissible(g, cc_bottom, nx * ny, pore_depth)]
    rows, cols = [], []
    for v in range(n):
        if lat[v] != NA:
            continue
        neighbors6(v, nx, ny, nz, False, nbr)
        for k in nbr:
            if k >= 0 and (lat[k] == NA or k in gaps):
                rows.append(v)
                cols.append(k)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)).tocsr()
    if not gaps:
        return np.full(n, np.inf)
    return shortest_path(graph, unweighted=True, directed=False, indices=gaps).min(axis=0)


def _fresh(n_sites):
    """Labels and bookkeeping that label at the first search."""
    dist = np.zeros(n_sites, dtype=np.uint16)
    search = np.zeros(gd.N_SEARCH, dtype=np.int64)
    search[gd.S_WORK] = 1 << 40  # label at the first search
    return dist, search


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("pore_depth", [1, 3, 99])
def test_labels_match_a_breadth_first_recount(seed, pore_depth):
    lat, nx, ny, nz, cc_bottom = _random_cell(seed)
    dist = np.zeros(lat.size, dtype=np.uint16)
    labelled = gd.gap_distance(lat, nx, ny, nz, cc_bottom, pore_depth, dist, np.empty(lat.size, dtype=np.int64))
    truth = _recount(lat, nx, ny, nz, cc_bottom, pore_depth)
    na = lat == NA
    finite = na & np.isfinite(truth)
    assert labelled == finite.sum()
    assert np.array_equal(dist[finite], truth[finite].astype(np.uint16))
    assert (dist[na & ~finite] == gd.UNREACHABLE).all()


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("pore_depth", [2, 99])
def test_guided_search_gives_the_plain_search_site_through_fills_and_openings(seed, pore_depth):
    """Plate 300 times from random Na voxels, filling the site found (the labels go stale), every tenth
    time open a gap where a Na voxel was (a move), and relabel once half-way (the gaps opened before
    keep the labels they had as Na): the guided site equals the plain one each time, and the labels
    (with the opened gaps) stay lower bounds of the recounted distances."""
    lat, nx, ny, nz, cc_bottom = _random_cell(100 + seed)
    rng = np.random.default_rng(seed)
    n = lat.size
    queue = np.empty(n, dtype=np.int64)
    visited = np.zeros(n, dtype=np.uint8)
    nbr = np.empty(N_NEIGHBORS, dtype=np.int64)
    dist, search = _fresh(lat.size)
    found = 0
    for step in range(300):
        na = np.flatnonzero(lat == NA)
        if na.size == 0:
            break
        c = int(rng.choice(na))
        plain = _nearest_gap_through_na(c, lat, nx, ny, nz, queue, visited, nbr, cc_bottom, pore_depth)
        guided = gd.nearest_gap_guided(c, lat, nx, ny, nz, queue, visited, nbr, cc_bottom, pore_depth, dist, search)
        assert guided == plain, step
        assert not visited.any()
        if step in (0, 150):
            search[gd.S_COST] = 1 << 40  # no relabelling: the labels only go staler from here
        if step == 149:
            search[gd.S_WORK] = 1 << 41  # relabel once: gaps opened before keep their old labels
        if plain >= 0:
            found += 1
            lat[plain] = NA
            gd.gap_filled(plain, dist)
        if step % 10 == 5 and search[gd.S_OPENED] < gd.MAX_OPENED:
            s = int(rng.choice(np.flatnonzero(lat == NA)))
            lat[s] = GAP
            gd.gap_opened(s, nx, ny, search)
        if step % 50 == 49:
            truth = _recount(lat, nx, ny, nz, cc_bottom, pore_depth)
            na = np.flatnonzero(lat == NA)
            bound = np.array([min(int(dist[v]), gd._opened_distance(v, search, nx, ny)) for v in na])
            assert (bound <= truth[na]).all()
    assert search[gd.S_LABELLINGS] == 2 and found > 50


def test_guided_insertion_site_is_the_plain_one():
    """``gap_distance.insertion_site_guided`` (rules 1–3 and the confined case) against ``insertion_site`` from every
    collector and Na face of a random cell, labels fresh."""
    lat, nx, ny, nz, cc_bottom = _random_cell(7)
    n = lat.size
    queue = np.empty(n, dtype=np.int64)
    visited = np.zeros(n, dtype=np.uint8)
    eps = np.zeros(EPS_SIZE)
    au = np.zeros(nx * ny, dtype=np.uint8)
    dist, search = _fresh(lat.size)
    nbr = np.empty(N_NEIGHBORS, dtype=np.int64)
    faces = 0
    for c in range(n):
        if lat[c] not in (NA, CC):
            continue
        neighbors6(c, nx, ny, nz, False, nbr)
        for e in nbr:
            if e >= 0 and lat[e] == SE:
                a = insertion_site(c, e, lat, au, nx, ny, nz, eps, queue, visited, cc_bottom, 99)
                b = gd.insertion_site_guided(c, e, lat, au, nx, ny, nz, eps, queue, visited, cc_bottom, 99, dist, search,
                                             np.ones(nx * ny, dtype=np.uint8))
                assert a == b
                faces += 1
    assert faces > 50


def test_a_refilled_gap_does_not_keep_the_label_it_had_as_na():
    """A row of Na with one gap at x = 0 (labels = distance along the ring); the voxels at x = 6 and 7
    open (moves), the labels are renewed (x = 6 is a gap then and keeps its old label, 6), and x = 6
    is filled again: beside the gap at x = 7 it is 1 step from a gap, and its bound must say ≤ 1, and
    the search from x = 5 must find x = 7 as the plain search does."""
    nx, ny, nz = 12, 1, 3
    lat = np.full((nz, ny, nx), NA, dtype=np.uint8)
    lat[0] = SE
    lat[2] = CC
    lat[1, 0, 0] = GAP
    lat = lat.ravel()
    cc_bottom = np.full(nx * ny, 2, dtype=np.int64)
    n = lat.size
    queue, visited = np.empty(n, dtype=np.int64), np.zeros(n, dtype=np.uint8)
    nbr = np.empty(N_NEIGHBORS, dtype=np.int64)
    dist, search = _fresh(lat.size)
    row = nx * ny  # the Na row's first site

    def guided(c):
        return gd.nearest_gap_guided(c, lat, nx, ny, nz, queue, visited, nbr, cc_bottom, 99, dist, search)

    assert guided(row + 3) == row  # labels the row
    assert [int(dist[row + x]) for x in range(1, nx)] == [min(x, nx - x) for x in range(1, nx)]
    for x in (6, 7):
        lat[row + x] = GAP
        gd.gap_opened(row + x, nx, ny, search)
    search[gd.S_WORK] = 1 << 41  # renew the labels at the next search
    assert guided(row + 3) == row
    assert search[gd.S_LABELLINGS] == 2 and dist[row + 6] == 6
    lat[row + 6] = NA
    gd.gap_filled(row + 6, dist)
    assert min(int(dist[row + 6]), gd._opened_distance(row + 6, search, nx, ny)) <= 1
    plain = _nearest_gap_through_na(row + 5, lat, nx, ny, nz, queue, visited, nbr, cc_bottom, 99)
    assert plain == row + 7 and guided(row + 5) == plain


def _slab_with_gaps_filled(nx, ny):
    """A slab of Na two voxels thick between electrolyte and a collector two thick, with gaps along its edge at
    x = 0; labelled by a search from the far side (x = nx/2), then every gap filled, so that the
    labels are stale (the far side still says it is nx/2 steps from a gap) and no gap is left.
    Returns (lattice, sizes, collector bottom, the far voxel, a search from it, its bookkeeping)."""
    nz = 5
    lat = np.full((nz, ny, nx), NA, dtype=np.uint8)
    lat[0] = SE
    lat[3:] = CC
    lat[1:3, :, 0] = GAP
    lat = lat.ravel()
    cc_bottom = np.full(nx * ny, 3, dtype=np.int64)
    n = lat.size
    queue, visited = np.empty(n, dtype=np.int64), np.zeros(n, dtype=np.uint8)
    nbr = np.empty(N_NEIGHBORS, dtype=np.int64)
    dist, search = _fresh(n)
    far = nx * ny + nx // 2

    def guided(c):
        return gd.nearest_gap_guided(c, lat, nx, ny, nz, queue, visited, nbr, cc_bottom, 99, dist, search)

    assert guided(far) >= 0 and search[gd.S_LABELLINGS] == 1
    search[gd.S_COST] = 1 << 40  # no relabelling: the labels stay as they are, stale
    for g in np.flatnonzero(lat == GAP):
        lat[g] = NA
        gd.gap_filled(g, dist)
    assert _nearest_gap_through_na(far, lat, nx, ny, nz, queue, visited, nbr, cc_bottom, 99) == -1
    return lat, (nx, ny, nz), cc_bottom, far, guided, search, visited


def test_a_search_with_no_gap_left_stops_after_one_pass_through_the_na():
    """The slab above, the lattice not read for gaps (``S_GAPS_SEEN`` set, as after a read that found
    one). The search from the far side must say −1, as the plain search does. Its bound grows from the
    stale label, doubling its slack, until a search the bound turns no voxel away from: that one was
    the plain search, through all the connected Na, and ends it. The voxels queued are then at most a
    few passes through the slab's Na (recounted from the lattice): the pruned searches before the last
    hold fewer voxels each. Fails if the bound goes on doubling to the lattice's size (~8 passes more),
    or if every search is taken as the plain one (the sites of
    ``test_guided_search_gives_the_plain_search_site_through_fills_and_openings`` then differ)."""
    lat, _, _, far, guided, search, visited = _slab_with_gaps_filled(24, 24)
    search[gd.S_GAPS_SEEN] = 1
    na = int(np.count_nonzero(lat == NA))
    work = search[gd.S_WORK]
    assert guided(far) == -1
    assert na <= search[gd.S_WORK] - work <= 3 * na
    assert not visited.any()


def test_a_long_search_in_a_lattice_without_gaps_stops_when_it_reads_so():
    """The slab above (64² columns: 8192 Na voxels), the lattice read for gaps once a search has queued
    1/256 of the sites (at least 1024): with no GAP anywhere the search must say −1 once a round of it
    (the bound grows from the stale label, doubling its slack) has queued 1024 voxels, not after a pass
    through all the Na; the rounds before hold fewer each, so it queues at most ~3 × 1024 in all. With
    one GAP left where no Na reaches it (in the collector, above the slab) the read finds it: the search
    goes on through all the Na to the same −1, and the lattice is not read again (``S_GAPS_SEEN``) until
    the next batch clears it. And with a gap Na reaches 64 steps
    away, the long search reads the lattice and goes on to the plain search's gap. Fails if the read is
    skipped, or says there is no GAP where there is one."""
    lat, (nx, ny, nz), _, far, guided, search, visited = _slab_with_gaps_filled(64, 64)
    na = int(np.count_nonzero(lat == NA))
    assert na == 8192 and not (lat == GAP).any()
    work = search[gd.S_WORK]
    assert guided(far) == -1
    assert 1024 <= search[gd.S_WORK] - work <= 3 * 1024 + N_NEIGHBORS
    assert search[gd.S_GAPS_SEEN] == 0 and not visited.any()
    lat[4 * nx * ny + 5] = GAP  # in the collector's top layer: no Na voxel touches it
    work = search[gd.S_WORK]
    assert guided(far) == -1
    assert search[gd.S_WORK] - work >= na and search[gd.S_GAPS_SEEN] == 1
    assert not visited.any()
    # A gap Na reaches, 64 steps away: a long search, which reads the lattice and goes on to it.
    search[gd.S_GAPS_SEEN] = 0
    g = nx * ny + nx * (ny // 2)  # (0, ny/2, 1)
    lat[g] = GAP
    queue, nbr = np.empty(lat.size, dtype=np.int64), np.empty(N_NEIGHBORS, dtype=np.int64)
    assert _nearest_gap_through_na(far, lat, nx, ny, nz, queue, visited, nbr, np.full(nx * ny, 3), 99) == g
    work = search[gd.S_WORK]
    assert guided(far) == g and search[gd.S_WORK] - work > 1024 and search[gd.S_GAPS_SEEN] == 1


@pytest.mark.parametrize("seed", range(8))
def test_interface_gap_search_through_marked_columns_gives_the_search_of_every_column(seed):
    """``plating.nearest_interface_gap`` keeping the columns that may hold a gap at the interface (those
    it finds empty are cleared; ``plating.mark_gap_columns`` marks a changed site's column and the four
    beside it, as ``battery_update.changed`` does at every change in a batch) against the search of every
    column: the same gap from random voxels, through 300 random changes (a gap filled with Na, a Na
    voxel opened, a collector or electrolyte voxel turned into a gap or back). Fails when a change marks
    its own column only (a gap beside it that the change makes touch a conductor or the electrolyte is
    missed), and when a column is cleared without being searched."""
    lat, nx, ny, nz, cc_bottom = _random_cell(300 + seed, gap_fraction=0.45)
    rng = np.random.default_rng(seed)
    cols = np.ones(nx * ny, dtype=np.uint8)
    every = np.empty(0, dtype=np.uint8)
    cleared = found = 0
    for step in range(300):
        for c in rng.integers(0, lat.size, size=4):
            want = nearest_interface_gap(int(c), lat, nx, ny, nz, cc_bottom, 99, every)
            assert nearest_interface_gap(int(c), lat, nx, ny, nz, cc_bottom, 99, cols) == want, step
            found += want >= 0
        cleared = max(cleared, int((cols == 0).sum()))
        s = int(rng.integers(0, lat.size))
        if lat[s] == GAP:
            lat[s] = (NA, NA, SE, CC)[rng.integers(0, 4)]
        elif lat[s] in (NA, SE, CC):
            lat[s] = GAP
        mark_gap_columns(s, nx, ny, cols)
    assert found > 200 and cleared > nx * ny // 4  # the searches found gaps, and passed over cleared columns
