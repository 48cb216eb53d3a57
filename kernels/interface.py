"""The SE–CC interface: contact faces, load-bearing columns, and the rigid collector's moves.

PHYSICS.md §2 and §4. Everything is recomputed from the lattice (and the per-column Au state), so
the same functions serve the engine and the independent recounts of the tests.

Contact faces
-------------
A contact face is shared by an electrolyte voxel (SE or SEI) and a conductor connected to the CC: a
CC voxel, or a Na voxel of an active cluster (``kmc.kernels.clusters``). Side faces count. Kinds:
``FACE_NA`` (plating/stripping), ``FACE_AU`` (unalloyed Au on the CC: electrochemical alloying),
``FACE_AU_ALLOYED`` (sodiophilic: plating, no barrier), ``FACE_BARE`` (Al, Cu, Ti: no faradaic
current until a nucleus forms). A face's pixel is the column of its electrolyte voxel.

Load-bearing columns
--------------------
Scanning a column up from the SE (SE and SEI count as electrolyte): if the first voxel above the
electrolyte is CC, the column is a CC–SE contact; if it is Na and the Na reaches the CC without a
gap, the column is a Na support. The load is shared as
``σ_Na = max(0, P·A − H·A_CC–SE) / A_Na,support`` (PHYSICS §2).

The rigid collector
-------------------
The CC body — CC voxels and whatever its pores hold — moves as one. ``lift_collector`` raises it by
one voxel (PHYSICS E1 rule 4: when no gap is reachable), opening a gap under each column's lowest CC
voxel; the top layer leaves the domain. ``settle_collector`` lowers it by one (E5, when nothing
supports it): in each column the highest gap below the CC closes, and everything above it (the CC
and any Na hanging from it) drops one voxel; the top layer is refilled with solid CC.
``lift_and_fill`` is the growth of a sealed layer (see ``kmc.kernels.battery``).
"""
import numpy as np
from numba import njit

from kmc.kernels.cell import BYTE_ONES, CC, GAP, NA, SE, SEI, lattice_words, zero_bytes
from kmc.kernels.clusters import CLUSTER_ACTIVE
from kmc.kernels.lattice import N_NEIGHBORS, neighbors6, next_site_xyz, site_xyz, walled_neighbor
from kmc.kernels.leaf import leaf

FACE_NA = 0
FACE_AU = 1
FACE_AU_ALLOYED = 2
FACE_BARE = 3

COLUMN_OPEN = 0  #: neither CC nor Na bridges electrolyte and collector
COLUMN_CC_CONTACT = 1  #: the CC rests on the electrolyte
COLUMN_NA_SUPPORT = 2  #: Na bridges electrolyte and collector without a gap
#: Under the refill law (``model.refill = "critical_current"``) only: Na from the electrolyte up to one
#: gap voxel under the collector, a column the refill of interface voids (E4) has thinned at its
#: collector side. Sub-voxel, it still bears on the collector: it shares the load in the refill law's
#: stress (``moves.refill_stress``) and, while stripping, in σ_Na. Under the v3 law the same column is
#: open (a column plated up to one voxel short of the collector is not loaded by E1–E4a).
COLUMN_THINNED = 3


@leaf
def _is_electrolyte(state):
    return state == SE or state == SEI


@njit(cache=True)
def contact_faces(lattice, site_class, au_present, au_alloyed, nx, ny, nz,
                  face_conductor, face_electrolyte, face_pixel, face_kind, site_lo, site_hi):
    """Fill the face arrays with the faces of the sites in [site_lo, site_hi) (pass 0, lattice.size for
    all); returns the number of faces. Arrays shorter than that take the first faces that fit, and the
    count is still the whole one: a caller sizes them from the last call and calls again, with arrays
    of that size, only when they were too short (no counting pass first).

    ``site_class`` comes from ``clusters.classify_na``; ``au_present``/``au_alloyed`` are uint8 per
    column. Faces are listed in site order, directions in ``DIRECTIONS`` order.
    """
    nxy = nx * ny
    capacity = min(face_conductor.size, face_electrolyte.size, face_pixel.size, face_kind.size)
    n = 0
    x, y, z = site_xyz(site_lo, nx, ny)
    for c in range(site_lo, site_hi):
        st = lattice[c]
        kind = -1
        if st == CC:
            col = c % nxy
            if au_present[col]:
                kind = FACE_AU_ALLOYED if au_alloyed[col] else FACE_AU
            else:
                kind = FACE_BARE
        elif st == NA and site_class[c] == CLUSTER_ACTIVE:
            kind = FACE_NA
        if kind >= 0:
            for d in range(N_NEIGHBORS):
                e = walled_neighbor(c, d, x, y, z, nx, ny, nz)
                if e >= 0 and _is_electrolyte(lattice[e]):
                    if n < capacity:
                        face_conductor[n] = c
                        face_electrolyte[n] = e
                        face_pixel[n] = e % nxy
                        face_kind[n] = kind
                    n += 1
        x, y, z = next_site_xyz(x, y, z, nx, ny)
    return n


@leaf
def column_kind(col, lattice, nx, ny, nz, thinned=False):
    """COLUMN_* of one column: scanning up from the electrolyte, CC first is a CC–SE contact; Na that
    reaches the CC without a gap is a Na support; with ``thinned`` (the refill law), Na that stops one
    gap voxel under it is thinned; anything else is open."""
    nxy = nx * ny
    z = 0
    while z < nz and _is_electrolyte(lattice[col + z * nxy]):
        z += 1
    if z >= nz:
        return COLUMN_OPEN
    st = lattice[col + z * nxy]
    if st == CC:
        return COLUMN_CC_CONTACT
    if st == NA:
        while z < nz and lattice[col + z * nxy] == NA:
            z += 1
        if z < nz and lattice[col + z * nxy] == CC:
            return COLUMN_NA_SUPPORT
        if thinned and z + 1 < nz and lattice[col + z * nxy] == GAP and lattice[col + (z + 1) * nxy] == CC:
            return COLUMN_THINNED
    return COLUMN_OPEN


@njit(cache=True)
def column_support(lattice, nx, ny, nz, out, thinned=False):
    """Classify every column (COLUMN_*; ``thinned`` as in ``column_kind``) into ``out`` (per column);
    returns (n_cc_contact, n_na_support)."""
    nxy = nx * ny
    n_cc = 0
    n_na = 0
    for col in range(nxy):
        kind = column_kind(col, lattice, nx, ny, nz, thinned)
        out[col] = kind
        if kind == COLUMN_CC_CONTACT:
            n_cc += 1
        elif kind == COLUMN_NA_SUPPORT:
            n_na += 1
    return n_cc, n_na


def na_stress_mpa(stack_pressure_mpa: float, hardness_mpa: float, n_cc_contact: int, n_na_support: int,
                  n_columns: int) -> float:
    """σ_Na = max(0, P·A − H·A_CC–SE)/A_Na,support in MPa (0 when no Na supports)."""
    if n_na_support == 0:
        return 0.0
    return max(0.0, stack_pressure_mpa * n_columns - hardness_mpa * n_cc_contact) / n_na_support


@njit(cache=True)
def lift_collector(lattice, nx, ny, nz, cc_bottom):
    """Raise the CC body one voxel; ``cc_bottom`` (per column: z of the lowest CC voxel) is updated.

    Returns False (and changes nothing) if some column's CC bottom is already at the top.
    """
    nxy = nx * ny
    for col in range(nxy):
        # The top layer is shifted out of the domain: refuse while it holds Na (in a pore of the
        # collector body), which would otherwise vanish.
        if cc_bottom[col] >= nz - 1 or lattice[col + (nz - 1) * nxy] == NA:
            return False
    # Layer by layer from the top, each from the layer below as it was (not yet shifted): whole layers
    # above every column's bottom are one block copy, and the lattice is read in its memory order (a
    # column's walk up strides a layer at a time: at 512² columns a lift took ~0.1 s that way).
    b_lo = nz
    b_hi = 0
    for col in range(nxy):
        b_lo = min(b_lo, cc_bottom[col])
        b_hi = max(b_hi, cc_bottom[col])
    for z in range(nz - 1, b_lo, -1):
        layer = lattice[z * nxy:(z + 1) * nxy]
        below = lattice[(z - 1) * nxy:z * nxy]
        if z > b_hi:
            layer[:] = below
        else:
            for col in range(nxy):
                if z > cc_bottom[col]:
                    layer[col] = below[col]
    for col in range(nxy):
        lattice[col + cc_bottom[col] * nxy] = GAP
        cc_bottom[col] += 1
    return True


@njit(cache=True)
def _highest_gap_below(col, lattice, nxy, cc_bottom, hold_voids):
    """z of the highest gap between the electrolyte and the CC in a column that the collector may close
    by settling, or −1 if none. With ``hold_voids`` (the refill law), an interface void under
    continuous Na (gaps down to the electrolyte, Na from right above it up to the CC) is not one: it
    closes only at the refill law's rate (E4), so a column whose only gap is such a void holds the
    collector up."""
    hanging = True  # only Na so far, from the CC down
    for z in range(cc_bottom[col] - 1, -1, -1):
        st = lattice[col + z * nxy]
        if st == GAP:
            if not hold_voids or not hanging or z == cc_bottom[col] - 1:
                return z
            for zz in range(z - 1, -1, -1):  # a void under hanging Na: does it reach the electrolyte?
                below = lattice[col + zz * nxy]
                if below == GAP:
                    continue
                if _is_electrolyte(below):
                    return -1
                break
            return z
        if _is_electrolyte(st):
            return -1
        if st != NA:
            hanging = False
    return -1


@njit(cache=True)
def can_settle(lattice, nxy, cc_bottom, hold_voids):
    """Whether ``settle_collector`` would move the body: every column has a gap below its CC that
    settling may close."""
    for col in range(nxy):
        if _highest_gap_below(col, lattice, nxy, cc_bottom, hold_voids) < 0:
            return False
    return True


@njit(cache=True)
def holds_voids(col_support, refill_law):
    """Whether interface voids under continuous Na hold an unborne collector up (E5 under the refill
    law): while a column the law thinned bears (sub-voxel, ``COLUMN_THINNED``), those voids close only
    at the law's rate (E4). With none, the Na hanging over them carries no load — σ_c = 0, the law would
    never refill them — and the stack pressure brings the collector and that Na down onto the
    electrolyte (PHYSICS E5: "settles until supported"). Called only when no support and no contact
    bear the collector, so its scan over the columns is not per event."""
    if not refill_law:
        return False
    for col in range(col_support.size):
        if col_support[col] == COLUMN_THINNED:
            return True
    return False


#: ``settle_unborne``'s outcomes.
SETTLE_NONE = 0  #: the collector stays (some column has no gap it may close)
SETTLE_STEP = 1  #: it settled one voxel, closing gaps (a thinned layer at its side, or an unloaded gap)
SETTLE_COLLAPSE = 2  #: under the refill law, it could settle only through interface voids under its Na


@njit(cache=True)
def settle_unborne(lattice, nx, ny, nz, cc_bottom, col_support, refill_law):
    """E5 for a collector nothing bears (the caller checks: no Na support, no CC contact): settle it one
    voxel under the rule ``holds_voids`` decides; returns SETTLE_*. A settle that only the interface
    voids allow is a collapse: the voids had cut every bearing contact, and the cell's Na lost its
    contact with the electrolyte (the refill law's CCD by voids, ``kmc.battery.protocol``)."""
    hold = holds_voids(col_support, refill_law)
    collapse = refill_law and not hold and not can_settle(lattice, nx * ny, cc_bottom, True)
    if not settle_collector(lattice, nx, ny, nz, cc_bottom, hold):
        return SETTLE_NONE
    return SETTLE_COLLAPSE if collapse else SETTLE_STEP


@njit(cache=True)
def settle_collector(lattice, nx, ny, nz, cc_bottom, hold_voids=False):
    """Lower the CC body one voxel where every column has a gap below its CC that settling may close
    (``_highest_gap_below``; ``hold_voids`` under the refill law); returns whether it moved.

    In each column the highest such gap closes and the voxels above it drop by one (the CC and
    anything hanging from it); the top voxel is refilled with CC.
    """
    nxy = nx * ny
    if not can_settle(lattice, nxy, cc_bottom, hold_voids):
        return False
    for col in range(nxy):
        g = _highest_gap_below(col, lattice, nxy, cc_bottom, hold_voids)
        for z in range(g, nz - 1):
            lattice[col + z * nxy] = lattice[col + (z + 1) * nxy]
        lattice[col + (nz - 1) * nxy] = CC
        cc_bottom[col] -= 1
    return True


@njit(cache=True)
def lift_and_fill(lattice, nx, ny, nz, cc_bottom):
    """Grow a sealed, loaded Na layer by one uniform voxel layer: lift the CC one voxel and fill the
    gap this opens under every column with Na (``nx·ny`` voxels). Returns False if the CC cannot rise."""
    nxy = nx * ny
    if not lift_collector(lattice, nx, ny, nz, cc_bottom):
        return False
    for col in range(nxy):
        lattice[col + (cc_bottom[col] - 1) * nxy] = NA
    return True


@njit(cache=True)
def close_enclosed_gaps(lattice, nx, ny, nz, cc_bottom):
    """Fill with Na every GAP voxel under the collector; returns how many.

    Used when a sealed, loaded layer is lifted: the voids left in it (valleys of the electrolyte the
    insertion never reached) sit under Na loaded at ~P, which creeps into them at ~1e4 /s (Na's
    creep law at 5 MPa), many decades faster than plating; the collector settles evenly by their
    volume (the caller takes it from the sealed layer's pending volume). In the column model of
    the stress, left to the kinetics, such a void would instead wander through the loaded layer
    (each creep move into it opens it in the neighbouring column) without ever closing. Only gaps
    below each column's lower face are filled: a collector pore never is (E9)."""
    nxy = nx * ny
    n = 0
    for col in range(nxy):
        for z in range(min(cc_bottom[col], nz)):
            g = col + z * nxy
            if lattice[g] == GAP:
                lattice[g] = NA
                n += 1
    return n


@njit(cache=True)
def electrolyte_face_counts(lattice, site_class, nx, ny, nz, site_lo, site_hi, out):
    """Recount the faces of the electrolyte surface among sites [site_lo, site_hi) into ``out``:
    [surface (electrolyte facing anything else), contact (facing the CC or Na of an active
    cluster), Na contact (facing active Na), void (facing a gap)]. z is walled, x and y periodic."""
    nbr = np.empty(N_NEIGHBORS, dtype=np.int64)
    out[:] = 0
    for e in range(site_lo, site_hi):
        if not _is_electrolyte(lattice[e]):
            continue
        neighbors6(e, nx, ny, nz, False, nbr)
        for d in range(N_NEIGHBORS):
            k = nbr[d]
            if k < 0 or _is_electrolyte(lattice[k]):
                continue
            out[0] += 1
            st = lattice[k]
            if st == CC:
                out[1] += 1
            elif st == NA and site_class[k] == CLUSTER_ACTIVE:
                out[1] += 1
                out[2] += 1
            elif st == GAP:
                out[3] += 1


@njit(cache=True)
def lower_collector_into_layer(lattice, nx, ny, nz, cc_bottom):
    """Lower the CC body one voxel into what lies under it — Na or gap in every column — as loaded
    Na that has flowed into interface voids lets the collector settle (``moves``: loaded flow takes
    its volume from the layer). The Na voxels under the collector are removed with it.

    Returns how many Na voxels were removed, or −1 (and changes nothing) if some column has the
    electrolyte (or the domain bottom) right under the collector: the rigid body cannot descend."""
    nxy = nx * ny
    for col in range(nxy):
        b = cc_bottom[col]
        if b <= 0:
            return -1
        st = lattice[col + (b - 1) * nxy]
        if st != NA and st != GAP:
            return -1
    removed = 0
    for col in range(nxy):
        b = cc_bottom[col]
        if lattice[col + (b - 1) * nxy] == NA:
            removed += 1
        for z in range(b - 1, nz - 1):
            lattice[col + z * nxy] = lattice[col + (z + 1) * nxy]
        lattice[col + (nz - 1) * nxy] = CC  # the body continues above the domain
        cc_bottom[col] = b - 1
    return removed


@njit(cache=True)
def layer_contents(lattice, nxy, nz, has_electrolyte, has_gap):
    """Per layer z (uint8): whether it holds an electrolyte voxel (SE or SEI), and a gap. One pass
    over the lattice, stopping in a layer once both are seen (the bands of ``kmc.battery.driver``),
    eight voxels at a time (``layer_holds``)."""
    words = lattice_words(lattice)
    for z in range(nz):
        el, gap = layer_holds(lattice, words, z * nxy, (z + 1) * nxy, True, True)
        has_electrolyte[z] = el
        has_gap[z] = gap


@njit(cache=True)
def layer_holds(lattice, words, i, end, want_electrolyte, want_gap):
    """(electrolyte, gap): whether the sites i..end−1 hold an electrolyte voxel (SE or SEI) and a gap,
    each looked for only if wanted; the reading stops once all that is wanted is seen. Eight voxels at a
    time (``words``: ``lattice_words``), 32 words between tests: a layer holding neither is read whole (the
    Na and the collector above the electrolyte, its bulk for gaps), and a byte at a time that took 10 ms a
    pass at 512² columns of T2."""
    el = not want_electrolyte
    gap = not want_gap
    se_p = np.uint64(SE) * BYTE_ONES
    sei_p = np.uint64(SEI) * BYTE_ONES
    gap_p = np.uint64(GAP) * BYTE_ONES
    while i < end and (i % 8 != 0 or words.size == 0) and not (el and gap):  # up to a word's start
        s = lattice[i]
        el |= _is_electrolyte(s)
        gap |= s == GAP
        i += 1
    while i + 8 <= end and not (el and gap):  # whole words
        k0 = i // 8
        k1 = min(k0 + 32, end // 8)
        el_bits = np.uint64(0)
        gap_bits = np.uint64(0)
        for k in range(k0, k1):
            w = words[k]
            el_bits |= zero_bytes(w ^ se_p) | zero_bytes(w ^ sei_p)
            gap_bits |= zero_bytes(w ^ gap_p)
        el |= el_bits != 0
        gap |= gap_bits != 0
        i = 8 * k1
    while i < end and not (el and gap):  # the last bytes
        s = lattice[i]
        el |= _is_electrolyte(s)
        gap |= s == GAP
        i += 1
    return el and want_electrolyte, gap and want_gap
