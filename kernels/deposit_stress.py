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

with Na's size-dependent flow stress σ_f(h) = σ_ref + σ_s (h/1 µm)^(−β) (PHYSICS M; the rate factor
(ε̇/ε̇_ref)^(1/n) is taken as 1 here — see ``deposit_paths``) and the meniscus pressure at the free
edge, σ_edge = −γ (cos θ_CC + cos θ_SE)/h (negative, Na drawn in, where it wets the collector; γ in
J/m² over h in µm is MPa). The path runs through deposit pixels only; h is each pixel's sub-voxel gap
height (the collector's lower face above the continuous electrolyte surface).

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
import heapq

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
def deposit_paths(col_support, h_um, edge_tension_n_m, nx, ny, voxel_um, sigma_ref_mpa, size_strength_mpa,
                  size_exponent, sigma_lift_mpa, stress_mpa, target):
    """Each deposit pixel's σ (MPa, at most ``sigma_lift_mpa``) into ``stress_mpa`` (NaN off deposits)
    and where its plated volume goes into ``target``: the open pixel its cheapest path ends at, or
    ``LIFT`` where that path would cost more than σ_lift (and for a deposit enclosed by contacts, which
    has no way out but up); open pixels target themselves; contacts ``NO_PATH`` (as is a deposit with
    no way out while σ_lift is infinite). ``edge_tension_n_m`` per column is −γ(cos θ_CC + cos θ_SE)
    (N/m): an open pixel's meniscus pressure is that over its gap height.

    The flow stress is taken at Na's reference strain rate (rate factor 1): the strain rate of the
    squeeze flow, ε̇ ≈ q/h² with q the lateral flux through the point, needs the solved plating
    distribution along the paths, which this pass does not yet carry (at 0.5 mA/cm², a 10 µm deposit
    in a 0.5 µm gap flows at ε̇ ~ 5e-2 1/s, where the factor would be (50)^(1/5) ≈ 2.2).
    Returns the number of deposit pixels."""
    n = nx * ny
    heap = [(0.0, 0) for _ in range(0)]  # (σ so far, pixel): a typed list for heapq
    dist = np.empty(n)
    grad = np.empty(n)  # 2 τ_f(h)/h per pixel, once (a power per pixel, not two per step)
    for col in range(n):
        grad[col] = flow_cost_mpa_per_um(h_um[col], sigma_ref_mpa, size_strength_mpa, size_exponent)
    done = np.zeros(n, dtype=np.uint8)
    n_dep = 0
    for col in range(n):
        kind = col_support[col]
        dist[col] = np.inf
        target[col] = NO_PATH
        if kind == COLUMN_NA_SUPPORT:
            n_dep += 1
        elif kind == COLUMN_CC_CONTACT:
            done[col] = 1
        else:
            dist[col] = edge_tension_n_m[col] / h_um[col]
            target[col] = col
            heapq.heappush(heap, (dist[col], col))
    while len(heap) > 0:
        key, col = heapq.heappop(heap)
        if done[col] or key > dist[col]:
            continue
        done[col] = 1
        y = col // nx
        x = col - y * nx
        g_here = grad[col]
        for k in range(_STEPS.shape[0]):
            dx = _STEPS[k, 0]
            dy = _STEPS[k, 1]
            nb = (x + dx) % nx + nx * ((y + dy) % ny)
            if done[nb] or col_support[nb] != COLUMN_NA_SUPPORT:
                continue
            if k >= 8:  # a knight's move passes between two pixels: neither may be a contact
                sx = dx // 2 if abs(dx) == 2 else 0
                sy = dy // 2 if abs(dy) == 2 else 0
                a1 = (x + sx) % nx + nx * ((y + sy) % ny)
                a2 = (x + dx - sx) % nx + nx * ((y + dy - sy) % ny)
                if col_support[a1] == COLUMN_CC_CONTACT or col_support[a2] == COLUMN_CC_CONTACT:
                    continue
            length_um = voxel_um * _LENGTHS[k]
            cost = key + 0.5 * (g_here + grad[nb]) * length_um
            if cost < dist[nb]:
                dist[nb] = cost
                target[nb] = target[col]
                heapq.heappush(heap, (cost, nb))
    for col in range(n):
        if col_support[col] != COLUMN_NA_SUPPORT:
            stress_mpa[col] = np.nan
        elif dist[col] > sigma_lift_mpa:
            stress_mpa[col] = sigma_lift_mpa
            target[col] = LIFT
        else:
            stress_mpa[col] = dist[col]
    return n_dep


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
