"""Stress in Na deposits while plating, and where E1 puts the plated volume (PHYSICS.md §5 M, E1).

A *deposit pixel* is a column where Na bridges the electrolyte and the collector without a gap
(``interface.COLUMN_NA_SUPPORT``); an *open* pixel still has a gap (free space: a deposit's free
edge, or an enclosed pocket, which PHYSICS M counts as free space too); a CC–SE *contact* pixel has
no gap at all, and Na cannot flow through it.

Stress while plating. Volume reduced inside a deposit must be pushed out through the gap to free
space. For a thin layer of height h flowing plastically between walls it sticks to (the friction
hill of plastic squeeze flow), the force balance on a slab ds of the layer gives h dσ = 2 τ_f ds:
both walls resist the flow with the shear flow stress τ_f = σ_f/√3 (von Mises). So the stress at a
deposit pixel x is what the cheapest way out costs,

    σ(x) = min over open pixels f of [ σ_edge(f) + ∫ from x to f of 2 τ_f(h)/h ds ],

with Na's size-dependent, rate-sensitive flow stress σ_f(ε̇, h) = [σ_ref + σ_s (h/1 µm)^(−β)] (ε̇/ε̇_ref)^(1/n)
(PHYSICS M: Na's power-law creep, ε̇ = A σⁿ, written about its measured point (σ_ref, ε̇_ref), made
size-dependent; so the stress relaxes when the flux stops) and the meniscus pressure at the free
edge, σ_edge = −γ (cos θ_CC + cos θ_SE)/h (negative, Na drawn in, where it wets the collector; γ in
J/m² over h in µm is MPa). The path runs through deposit pixels only; h is each pixel's sub-voxel gap
height (the collector's lower face above the continuous electrolyte surface).

Strain rate. The squeeze flow's ε̇ ≈ q/h², q the lateral flux of plated volume per unit width through
the point, follows from where the field solve puts the plating current and from the paths
(``squeeze_strain_rate``), while the paths' cost follows from ε̇ (``rated_stress``, along paths whose
geometry the reference rate decides — ``deposit_terrain`` says why): the driver iterates the two with the
field solve to their fixed point (``kmc.battery.driver.Driver``), so nothing is lagged. For a disk
deposit of radius R plating uniformly at ṡ (µm/s), q = ṡ r/2 and the friction hill becomes
σ(0) − σ(R) = [2σ_f0/(√3 h)] (ṡ/(2h²ε̇_ref))^(1/n) R^(1+1/n)/(1 + 1/n) (a test checks it).

The minimum is a weighted shortest path over pixels, solved once per field solve by Dijkstra's
algorithm from every open pixel at once (O(N log N) in the number of columns, N), and frozen until
the next solve, like φ. Steps go to the 16 neighbours of a pixel (the 8 adjacent and the 8 knight's
moves), whose shortest paths follow straight lines within 2.7 % of the Euclidean length (8
neighbours would be up to 8 % long); a knight's move passes only between two pixels that are not
contacts. Each deposit pixel keeps the open pixel its cheapest path ends at (``target``): E1 puts a
voxel plated there into that pixel's gap — O(nz) per event instead of a search through the Na.

Lift (PHYSICS M's cap): when pushing the volume out costs more than ``σ_lift = P·A/A_deposits`` —
the stress at which the deposits alone carry the stack load, so that the collector lifts off its
contacts — the volume lifts the collector instead (``LIFT``): the battery loop holds it until the
deposits' columns each have a voxel's worth and then raises the collector one voxel, growing every
deposit column by one (``lift_deposits``).
"""
import numpy as np
from numba import njit

from kmc.kernels.cell import GAP, NA
from kmc.kernels.interface import COLUMN_CC_CONTACT, COLUMN_NA_SUPPORT, column_kind, lift_collector

LIFT = -2  #: target of a deposit pixel whose volume lifts the collector (σ would exceed σ_lift)
NO_PATH = -1  #: a contact pixel, or a deposit with no way out

# The 16 steps (dx, dy) of the stencil (their lengths in pixels below); for a knight's move the two
# pixels it passes between are checked where it is taken.
_STEPS = np.array([(1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1),
                   (2, 1), (2, -1), (-2, 1), (-2, -1), (1, 2), (1, -2), (-1, 2), (-1, -2)], dtype=np.int64)
_LENGTHS = np.sqrt((_STEPS ** 2).sum(axis=1).astype(np.float64))


@njit(cache=True, inline="always")
def _wrap(v, n):
    """v modulo n (periodic in x and y), the division only off the edges: a stencil step is at most two
    pixels, and an integer division per coordinate per step was most of a pass over every pixel's 16
    neighbours."""
    if 0 <= v < n:
        return v
    return v % n


@njit(cache=True, inline="always")
def _knight_passes(x, y, dx, dy, nx, ny, col_support):
    """Whether the knight's move (dx, dy) from pixel (x, y) is open: it passes between two pixels, and
    neither may be a CC–SE contact."""
    sx = dx // 2 if abs(dx) == 2 else 0
    sy = dy // 2 if abs(dy) == 2 else 0
    a1 = _wrap(x + sx, nx) + nx * _wrap(y + sy, ny)
    a2 = _wrap(x + dx - sx, nx) + nx * _wrap(y + dy - sy, ny)
    return col_support[a1] != COLUMN_CC_CONTACT and col_support[a2] != COLUMN_CC_CONTACT


@njit(cache=True, inline="always")
def flow_cost_mpa_per_um(h_um, sigma_ref_mpa, size_strength_mpa, size_exponent):
    """2 τ_f(h)/h (MPa per µm of path): the squeeze-flow stress gradient of a layer of height h."""
    sigma_f = sigma_ref_mpa + size_strength_mpa * h_um ** (-size_exponent)
    return 2.0 * sigma_f / (np.sqrt(3.0) * h_um)


@njit(cache=True)
def gap_height_um(cc_bottom, se_surface_um, voxel_um, out):
    """Per column, the sub-voxel gap height h (µm): the collector's lower face (on a voxel boundary)
    above the continuous electrolyte surface, at least half a voxel (a column that holds Na holds at
    least one voxel, whose centre is above the surface)."""
    for col in range(cc_bottom.size):
        out[col] = max(cc_bottom[col] * voxel_um - se_surface_um[col], 0.5 * voxel_um)


@njit(cache=True)
def cap_at_lift(col_support, path_mpa, sigma_lift_mpa, stress_mpa, target):
    """σ of the deposit pixels from their path cost, capped at σ_lift, where ``target`` becomes ``LIFT``
    (NaN off deposits)."""
    for col in range(col_support.size):
        if col_support[col] != COLUMN_NA_SUPPORT:
            stress_mpa[col] = np.nan
        elif path_mpa[col] > sigma_lift_mpa:
            stress_mpa[col] = sigma_lift_mpa
            target[col] = LIFT
        else:
            stress_mpa[col] = path_mpa[col]


@njit(cache=True, inline="always")
def _cheaper(dist, a, b):
    """Whether pixel a comes off the terrain's queue before b: by cost, then by index (as Python compares
    the tuples (cost, pixel)), so the pops are in one total order whatever the heap's layout."""
    return dist[a] < dist[b] or (dist[a] == dist[b] and a < b)


@njit(cache=True)
def _queue_up(heap, pos, i, dist):
    """Move heap[i] up to its place (its cost fell, or it was just added)."""
    col = heap[i]
    while i > 0:
        up = (i - 1) // 2
        if not _cheaper(dist, col, heap[up]):
            break
        heap[i] = heap[up]
        pos[heap[i]] = i
        i = up
    heap[i] = col
    pos[col] = i


@njit(cache=True)
def _queue_pop(heap, pos, m, dist):
    """Take the cheapest pixel off a queue of m; returns it (the queue then holds m − 1)."""
    top = heap[0]
    pos[top] = -1
    m -= 1
    if m == 0:
        return top
    col = heap[m]
    i = 0
    while True:
        first = 2 * i + 1
        if first >= m:
            break
        if first + 1 < m and _cheaper(dist, heap[first + 1], heap[first]):
            first += 1
        if not _cheaper(dist, heap[first], col):
            break
        heap[i] = heap[first]
        pos[heap[i]] = i
        i = first
    heap[i] = col
    pos[col] = i
    return top


@njit(cache=True)
def deposit_terrain(col_support, h_um, edge_tension_n_m, nx, ny, voxel_um, sigma_ref_mpa, size_strength_mpa,
                    size_exponent, path_mpa, target, parent, parent_um, settled):
    """The cheapest way out of every deposit pixel at Na's reference strain rate: its cost before any cap
    into ``path_mpa`` (MPa; an open pixel's: its meniscus pressure; ∞ at contacts and for a deposit with no
    way out), the open pixel it ends at into ``target`` (open pixels target themselves; ``NO_PATH``
    elsewhere), and the path's first step: the pixel it goes to (``parent``, −1 at open pixels) and its
    length (``parent_um``, µm). ``settled`` gets the pixels of finite cost in the order their cost became
    final (ascending: a path's next pixel always before it), −1 after the last: ``rated_stress`` walks the
    paths in it. ``edge_tension_n_m`` per column is −γ(cos θ_CC + cos θ_SE) (N/m): an open pixel's meniscus
    pressure is that over its gap height. Returns the number of deposit pixels.

    Dijkstra's algorithm from every open pixel at once, on a binary heap of pixels keyed by their cost
    with the position of each kept, so that a cheaper path found moves the pixel up instead of queueing
    it again (a pixel is queued at most once: n entries, not up to 17 n).

    The paths' geometry is taken at the reference rate, and ``rated_stress`` integrates the rate-
    sensitive flow stress along them: with a flux-dependent cost the shortest-path problem would send
    the flow into channels (a cost ∝ q^(1/n) is concave, so merging flows always pays), which a
    continuum squeeze flow, whose flux follows the stress gradient, does not do (a disk's flow stays
    radial at any n)."""
    n = nx * ny
    heap = np.empty(n, dtype=np.int64)
    pos = np.full(n, -1, dtype=np.int64)  # where each queued pixel sits in the heap, −1 if not queued
    m = 0
    dist = path_mpa
    grad = np.empty(n)  # 2 τ_f(h)/h per pixel, once (a power per pixel, not two per step)
    for col in range(n):
        grad[col] = flow_cost_mpa_per_um(h_um[col], sigma_ref_mpa, size_strength_mpa, size_exponent)
    done = np.zeros(n, dtype=np.uint8)
    n_dep = 0
    for col in range(n):
        kind = col_support[col]
        dist[col] = np.inf
        target[col] = NO_PATH
        parent[col] = -1
        parent_um[col] = 0.0
        settled[col] = -1
        if kind == COLUMN_NA_SUPPORT:
            n_dep += 1
        elif kind == COLUMN_CC_CONTACT:
            done[col] = 1
        else:
            dist[col] = edge_tension_n_m[col] / h_um[col]
            target[col] = col
            heap[m] = col
            m += 1
            _queue_up(heap, pos, m - 1, dist)
    n_settled = 0
    while m > 0:
        col = _queue_pop(heap, pos, m, dist)
        m -= 1
        done[col] = 1
        settled[n_settled] = col
        n_settled += 1
        key = dist[col]
        y = col // nx
        x = col - y * nx
        g_here = grad[col]
        for k in range(_STEPS.shape[0]):
            dx = _STEPS[k, 0]
            dy = _STEPS[k, 1]
            nb = _wrap(x + dx, nx) + nx * _wrap(y + dy, ny)
            if done[nb] or col_support[nb] != COLUMN_NA_SUPPORT:
                continue
            if k >= 8 and not _knight_passes(x, y, dx, dy, nx, ny, col_support):
                continue
            length_um = voxel_um * _LENGTHS[k]
            cost = key + 0.5 * (g_here + grad[nb]) * length_um
            if cost < dist[nb]:
                dist[nb] = cost
                target[nb] = target[col]
                parent[nb] = col
                parent_um[nb] = length_um
                if pos[nb] < 0:
                    heap[m] = nb
                    m += 1
                    _queue_up(heap, pos, m - 1, dist)
                else:
                    _queue_up(heap, pos, pos[nb], dist)
    return n_dep


@njit(cache=True)
def rated_stress(col_support, path_mpa, parent, parent_um, settled, h_um, rate_factor, nx, ny, sigma_ref_mpa,
                 size_strength_mpa, size_exponent, sigma_lift_mpa, stress_mpa, target, rated_path_mpa):
    """σ of every deposit pixel along the paths ``deposit_terrain`` found, at the flow stress's rate factor
    (ε̇/ε̇_ref)^(1/n) per pixel (``rate_factor``): from each open pixel's meniscus pressure up the paths,
    σ(x) = σ(next) + ½ (g_x + g_next) ℓ with g = 2 τ_f(ε̇, h)/h, taken in the order the terrain settled
    them (``settled``: a path's next pixel always comes first; sorting the costs again each pass gave the
    same order and cost a sort of every pixel per pass). The uncapped cost goes to ``rated_path_mpa`` (the
    terrain ``squeeze_strain_rate`` lets the volume flow down), σ capped at σ_lift into ``stress_mpa``
    (``target`` becomes ``LIFT`` there; NaN off deposits). ``target`` must be the terrain's (an earlier
    cap's LIFT is not undone here)."""
    n = nx * ny
    grad = np.empty(n)
    for col in range(n):
        grad[col] = flow_cost_mpa_per_um(h_um[col], sigma_ref_mpa, size_strength_mpa, size_exponent) * rate_factor[col]
        rated_path_mpa[col] = path_mpa[col]  # open pixels keep their meniscus pressure; ∞ stays ∞
    for i in range(n):
        col = settled[i]
        if col < 0:  # the rest has no way out (∞)
            break
        nxt = parent[col]
        if nxt >= 0:
            rated_path_mpa[col] = rated_path_mpa[nxt] + 0.5 * (grad[col] + grad[nxt]) * parent_um[col]
    cap_at_lift(col_support, rated_path_mpa, sigma_lift_mpa, stress_mpa, target)


#: ``squeeze_strain_rate``: the smallest squeeze-flow strain rate (1/s) a deposit pixel is given. Na's creep
#: law has no yield stress, so a pixel nothing flows through would cost nothing; the floor only keeps the
#: rate factor's logarithm finite (at n = 5 it is (1e-12/1e-3)^(1/5) ≈ 0.016 of the reference flow stress).
MIN_STRAIN_RATE_S = 1e-12


@njit(cache=True)
def squeeze_strain_rate(col_support, path_mpa, source_um3_s, h_um, nx, ny, voxel_um, out_rate_s):
    """The squeeze flow's strain rate ε̇ ≈ q/h² (1/s) per deposit pixel into ``out_rate_s`` (PHYSICS M),
    q the lateral flux of plated volume through the pixel per unit width (µm²/s) and h its gap height (µm).

    The volume plated in a deposit pixel (``source_um3_s``, µm³/s) leaves down the stress the last path
    pass found (``path_mpa``, the uncapped σ of ``rated_stress``): pixels are taken from the most
    to the least stressed, and each passes what it carries (its own volume and what flowed into it) to its
    downhill neighbours of the same 16-step stencil, in proportion to the stress drop per µm (multiple flow
    directions, as water on a terrain model: a disk deposit's flux then spreads radially instead of
    following one pixel-wide path of the Dijkstra tree). Open pixels take what reaches them (the free
    edge). The flux per unit width through a pixel is the flux density there: what it carries, Q (µm³/s),
    over its area a², times the mean displacement d̄ (µm) it moves that volume by, q = Q |d̄|/a² (a pixel
    that passes all it carries one pixel on has q = Q/a; knight's moves carry volume over two rings of
    pixels at once, which the longer displacement counts). The volume is
    conserved: what the open pixels take is the deposits' total source (a test recounts it). A deposit
    with no way out (σ infinite) has no lateral flux. The flux is taken for every deposit pixel, including
    those whose cheapest way out costs more than σ_lift: their cost is what the lateral escape they did not
    take would have cost, at the flux it would have carried. Returns the volume the open pixels take
    (µm³/s)."""
    n = nx * ny
    carried = np.zeros(n)
    key = np.empty(n)
    for col in range(n):
        if col_support[col] == COLUMN_NA_SUPPORT and np.isfinite(path_mpa[col]):
            key[col] = -path_mpa[col]
            carried[col] = max(source_um3_s[col], 0.0)
        else:
            key[col] = np.inf
    order = np.argsort(key)  # the most stressed deposit pixel first; the rest (key inf) last
    drained = 0.0
    weights = np.empty(_STEPS.shape[0])
    for i in range(n):
        col = order[i]
        if key[col] == np.inf:
            break
        y = col // nx
        x = col - y * nx
        here = path_mpa[col]
        total = 0.0
        for k in range(_STEPS.shape[0]):
            weights[k] = 0.0
            dx = _STEPS[k, 0]
            dy = _STEPS[k, 1]
            nb = _wrap(x + dx, nx) + nx * _wrap(y + dy, ny)
            if col_support[nb] == COLUMN_CC_CONTACT or not path_mpa[nb] < here:
                continue
            if k >= 8 and not _knight_passes(x, y, dx, dy, nx, ny, col_support):
                continue
            weights[k] = (here - path_mpa[nb]) / _LENGTHS[k]
            total += weights[k]
        q = carried[col]
        if total <= 0.0:  # no downhill neighbour (cannot happen with positive costs): nothing passes on
            out_rate_s[col] = MIN_STRAIN_RATE_S
            continue
        # The flux density: what the pixel carries over its area times the mean step it moves it by.
        mx = 0.0
        my = 0.0
        for k in range(_STEPS.shape[0]):
            mx += weights[k] * _STEPS[k, 0]
            my += weights[k] * _STEPS[k, 1]
        flux_um2_s = q * np.sqrt(mx * mx + my * my) / total / voxel_um
        out_rate_s[col] = max(flux_um2_s / h_um[col] ** 2, MIN_STRAIN_RATE_S)
        for k in range(_STEPS.shape[0]):
            if weights[k] > 0.0:
                dx = _STEPS[k, 0]
                dy = _STEPS[k, 1]
                nb = _wrap(x + dx, nx) + nx * _wrap(y + dy, ny)
                share = q * weights[k] / total
                if col_support[nb] == COLUMN_NA_SUPPORT:
                    carried[nb] += share
                else:
                    drained += share
    for col in range(n):
        if key[col] == np.inf:
            out_rate_s[col] = MIN_STRAIN_RATE_S if col_support[col] == COLUMN_NA_SUPPORT else np.nan
    return drained


@njit(cache=True)
def receiving_gap(t, lattice, nxy, cc_bottom):
    """The GAP of the open pixel t that a deposit's volume fills: the lowest gap below its collector
    (the meniscus advancing along the electrolyte, or the Na column under the collector pushed up),
    or −1 if the pixel has filled since the solve."""
    for z in range(cc_bottom[t]):
        if lattice[t + z * nxy] == GAP:
            return t + z * nxy
    return -1


LIFTED = 0  #: ``lift_deposits``: the collector rose
WAIT = 1  #: ``lift_deposits``: less volume pending than the deposit columns need; nothing changed
CANNOT_RISE = 2  #: ``lift_deposits``: the collector is at the top (lattice.nz too small)


@njit(cache=True)
def lift_deposits(lattice, nx, ny, nz, cc_bottom, pending_voxels):
    """Raise the collector one voxel and grow every deposit column (Na bridging electrolyte and
    collector, classified now) by one voxel under it: the deposits carry the collector up, and every
    other column's gap widens by a voxel. Only when ``pending_voxels`` covers them, so that no Na is
    laid down before it is plated. Returns (LIFTED, voxels added), (WAIT, deposit columns) or
    (CANNOT_RISE, 0)."""
    nxy = nx * ny
    bridged = np.zeros(nxy, dtype=np.uint8)
    n = 0
    for col in range(nxy):
        if column_kind(col, lattice, nx, ny, nz) == COLUMN_NA_SUPPORT:
            bridged[col] = 1
            n += 1
    if n > pending_voxels:
        return WAIT, n
    if not lift_collector(lattice, nx, ny, nz, cc_bottom):
        return CANNOT_RISE, 0
    for col in range(nxy):
        if bridged[col]:
            lattice[col + (cc_bottom[col] - 1) * nxy] = NA
    return LIFTED, n
