"""Paying the metal's per-column debts (E7 interphase, E8 flaws) in whole voxels from the lattice, and
giving back what it is owed (E8 slot law: flaw Na that stripped first returns to the metal).

The battery's losses (``kmc.battery.losses``) owe Na per column, far below a voxel per column; whole
voxels are taken from the metal touching the electrolyte and that much debt is cleared from the most
indebted columns first. These kernels do the per-voxel work without a sort of every column per voxel
or a lattice-sized temporary per voxel: the most indebted columns come off a binary heap (descending
debt, the lower column first on a tie: the order of a stable sort of −debt) when a voxel's worth
takes few of them, in the order of that sort when it takes nearly all; the columns still touching
the electrolyte are kept as a count per column. A payment of many voxels sorts the columns once
(``order_by_debt``; the payment's queue, ``clear_debt_queued``): E7's debt is spread thinly over every
column, so each voxel clears thousands of columns, and a heap of every column cost a sort per voxel. A
column a voxel clears is left at zero, where taking from it again changes nothing, and is not seen
again; the one it leaves partly paid goes to a small heap, merged with the sorted columns by the same
order (debt, then column: total), so the columns come in the order a fresh sort of the debts would
give at each voxel. The same queue says which column each voxel is taken from (``pay_voxels``): the
first in it with metal touching the electrolyte.
"""
import numpy as np
from numba import njit

from kmc.kernels.cell import GAP, NA, SE, SEI, lattice_words
from kmc.kernels.clusters import CLUSTER_ACTIVE
from kmc.kernels.interface import layer_holds


@njit(cache=True)
def order_by_debt(debt):
    """The columns by descending debt, the lower column first on a tie: ``np.argsort(−debt,
    kind="stable")``, the same permutation (a stable sort's is unique), by a least-significant-digit
    radix sort of the float keys' bits (four 16-bit digits, a digit every key shares skipped): linear
    in the columns where NumPy's timsort of floats is n log n (a payment sorted every column twice; at
    512² columns the sorts took 12 s of a T2 run)."""
    n = debt.size
    negated = np.empty(n)
    for i in range(n):
        negated[i] = -debt[i] + 0.0  # + 0.0 turns −0.0 into 0.0: equal debts tie, as NumPy compares them
    bits = negated.view(np.uint64)
    keys = np.empty(n, dtype=np.uint64)
    sign = np.uint64(1) << np.uint64(63)
    for i in range(n):
        b = bits[i]
        keys[i] = ~b if b & sign else b | sign  # unsigned order of the keys = order of the floats
    order = np.arange(n)
    keys2 = np.empty(n, dtype=np.uint64)
    order2 = np.empty(n, dtype=np.int64)
    count = np.empty(65537, dtype=np.int64)
    mask = np.uint64(0xFFFF)
    for shift in range(0, 64, 16):
        sh = np.uint64(shift)
        count[:] = 0
        for i in range(n):
            count[np.int64((keys[i] >> sh) & mask) + 1] += 1
        if n == 0 or count[np.int64((keys[0] >> sh) & mask) + 1] == n:
            continue  # every key has this digit: the pass would not move anything
        for d in range(65536):
            count[d + 1] += count[d]
        for i in range(n):  # in the current order: a stable pass
            d = np.int64((keys[i] >> sh) & mask)
            j = count[d]
            count[d] = j + 1
            keys2[j] = keys[i]
            order2[j] = order[i]
        keys, keys2 = keys2, keys
        order, order2 = order2, order
    return order


@njit(cache=True, inline="always")
def _before(debt, a, b):
    """Whether column a comes before column b: more debt, or as much and a lower index."""
    return debt[a] > debt[b] or (debt[a] == debt[b] and a < b)


@njit(cache=True)
def _sift_down(heap, n, i, debt):
    while True:
        first = i
        left = 2 * i + 1
        right = left + 1
        if left < n and _before(debt, heap[left], heap[first]):
            first = left
        if right < n and _before(debt, heap[right], heap[first]):
            first = right
        if first == i:
            return
        heap[i], heap[first] = heap[first], heap[i]
        i = first


@njit(cache=True)
def _sift_up(heap, i, debt):
    while i > 0:
        up = (i - 1) // 2
        if not _before(debt, heap[i], heap[up]):
            return
        heap[i], heap[up] = heap[up], heap[i]
        i = up


@njit(cache=True)
def clear_debt_queued(debt, order, heap, sizes, amount):
    """``clear_debt`` over a payment's queue of columns: ``order`` the columns by descending debt
    (``argsort(−debt, kind="stable")`` at the payment's start; ``sizes[0]`` of them taken), ``heap`` the
    columns left partly paid (``sizes[1]`` of them), with their debts now. A column this clears down to
    zero leaves the queue (taking from it again would take nothing); one it leaves partly paid goes
    back to the heap."""
    n = order.size
    ptr = sizes[0]
    m = sizes[1]
    while True:
        if ptr < n and (m == 0 or _before(debt, order[ptr], heap[0])):
            c = order[ptr]
            ptr += 1
        elif m > 0:
            c = heap[0]
            m -= 1
            heap[0] = heap[m]
            _sift_down(heap, m, 0, debt)
        else:
            break
        d = debt[c]
        take = amount if amount < d else d  # Python's min(d, amount): d unless amount is smaller
        debt[c] = d - take
        amount -= take
        if amount <= 0:
            if debt[c] != 0.0:
                heap[m] = c
                _sift_up(heap, m, debt)
                m += 1
            break
    sizes[0] = ptr
    sizes[1] = m


@njit(cache=True)
def clear_debt(debt, amount):
    """Clear ``amount`` voxels of a per-column debt (float64 per column), from the most indebted
    columns first: each column in turn gives min(its debt, what is left), until nothing is left.
    The keys are read while the heap is built and while it is popped; a column's debt changes only
    once it has been popped, so the order is that of the debts on entry."""
    n = debt.size
    if n == 0:
        return
    heap = np.arange(n)
    for i in range(n // 2 - 1, -1, -1):
        _sift_down(heap, n, i, debt)
    m = n
    while m > 0:
        c = heap[0]
        m -= 1
        heap[0] = heap[m]
        _sift_down(heap, m, 0, debt)
        d = debt[c]
        take = amount if amount < d else d  # Python's min(d, amount): d unless amount is smaller
        debt[c] = d - take
        amount -= take
        if amount <= 0:
            return


@njit(cache=True)
def clear_debt_in_order(debt, order, amount):
    """``clear_debt`` with the columns' order given (``argsort(−debt, kind="stable")``): when nearly
    every column gives its debt (E7's whole voxels owed by a uniform interphase), NumPy's sort and
    one pass are five times faster than popping every column off the heap."""
    for c in order:
        d = debt[c]
        take = amount if amount < d else d
        debt[c] = d - take
        amount -= take
        if amount <= 0:
            return


@njit(cache=True)
def touching_electrolyte(lattice, nx, ny, nz, touching, count):
    """Na voxels with an electrolyte face (x, y periodic, z walled): ``touching`` (uint8, nz × columns)
    1 there, ``count`` (int64 per column) how many in each column. Only the layers up to one above the
    highest holding electrolyte (SE or SEI) are looked at: no Na above them has a face on any (at 512²
    columns of T2 they are a sixth of the lattice)."""
    nxy = nx * ny
    count[:] = 0
    top = -1
    words = lattice_words(lattice)
    for z in range(nz - 1, -1, -1):  # the highest layer holding electrolyte
        if layer_holds(lattice, words, z * nxy, (z + 1) * nxy, True, False)[0]:
            top = z
            break
    z_hi = min(nz, top + 2)
    touching[z_hi:, :] = 0
    for z in range(z_hi):
        for y in range(ny):
            for x in range(nx):
                col = x + nx * y
                i = col + z * nxy
                t = 1 if lattice[i] == NA and _touches(lattice, i, x, y, z, nx, ny, nz, SE, SEI) else 0
                touching[z, col] = t
                count[col] += t


@njit(cache=True, inline="always")
def _lowest_flagged(flagged, col):
    """The lowest layer z whose site of column col is flagged (``flagged[z, col]``; the column has one)."""
    z = 0
    while flagged[z, col] == 0:
        z += 1
    return z


@njit(cache=True, inline="always")
def _lowest_in_column_owed_most(flagged, count, owed, nxy):
    """(column, z) of the lowest flagged site (``flagged[z, col]``) in the column owed most among those
    with one (``count`` per column; the lower column on a tie), or (−1, −1) when none is."""
    col = -1
    for c in range(nxy):
        if count[c] > 0 and (col < 0 or owed[c] > owed[col]):
            col = c
    if col < 0:
        return -1, -1
    return col, _lowest_flagged(flagged, col)


@njit(cache=True, inline="always")
def _pay_at(lattice, nx, ny, nz, touching, count, col, z, becomes, exposed):
    """The Na voxel at layer z of column col, touching the electrolyte, ``becomes`` GAP or SEI. New SEI
    is electrolyte: the metal around it now touches it (a gap does not). Returns how many columns came
    to touch the electrolyte (their count left zero), listed in ``exposed`` (int64[6]) in the order met."""
    nxy = nx * ny
    lattice[col + z * nxy] = becomes
    touching[z, col] = 0
    count[col] -= 1
    k = 0
    if becomes == SEI:
        x = col % nx
        y = col // nx
        for zz, cc in ((z + 1, col), (z - 1, col), (z, (x + 1) % nx + nx * y), (z, (x - 1) % nx + nx * y),
                       (z, x + nx * ((y + 1) % ny)), (z, x + nx * ((y - 1) % ny))):
            if 0 <= zz < nz and lattice[cc + zz * nxy] == NA and touching[zz, cc] == 0:
                touching[zz, cc] = 1
                count[cc] += 1
                if count[cc] == 1:
                    exposed[k] = cc
                    k += 1
    return k


@njit(cache=True)
def pay_one_voxel(lattice, nx, ny, nz, touching, count, debt, order, heap, sizes, becomes):
    """Turn one Na voxel touching the electrolyte into ``becomes`` (GAP or SEI): the lowest one in the
    column owing most among those that have one (the lower column on a tie), and clear one voxel of
    debt (``order``, ``heap``, ``sizes``: the payment's queue of columns, ``clear_debt_queued``).
    Returns False (nothing changed) when no metal touches the electrolyte."""
    nxy = nx * ny
    col, z = _lowest_in_column_owed_most(touching, count, debt, nxy)
    if col < 0:
        return False
    _pay_at(lattice, nx, ny, nz, touching, count, col, z, becomes, np.empty(6, dtype=np.int64))
    clear_debt_queued(debt, order, heap, sizes, 1.0)
    return True


@njit(cache=True, inline="always")
def _owed_before(key_a, col_a, key_b, col_b):
    """Order of the owing columns' heap: more owed first, the lower column on a tie."""
    return key_a > key_b or (key_a == key_b and col_a < col_b)


@njit(cache=True)
def _owing_push(keys, cols, m, key, col):
    """Push (key, col) on the owing columns' max-heap of m entries; returns the new size."""
    i = m
    keys[i] = key
    cols[i] = col
    while i > 0:
        up = (i - 1) // 2
        if not _owed_before(keys[i], cols[i], keys[up], cols[up]):
            break
        keys[i], keys[up] = keys[up], keys[i]
        cols[i], cols[up] = cols[up], cols[i]
        i = up
    return m + 1


@njit(cache=True)
def _owing_pop(keys, cols, m):
    """Remove the top of the owing columns' max-heap of m entries (m > 0); returns the new size."""
    m -= 1
    keys[0] = keys[m]
    cols[0] = cols[m]
    _owing_sift_down(keys, cols, m, 0)
    return m


@njit(cache=True)
def _owing_sift_down(keys, cols, m, i):
    """Move entry i of the owing columns' max-heap of m entries down to its place."""
    while True:
        first = i
        left = 2 * i + 1
        right = left + 1
        if left < m and _owed_before(keys[left], cols[left], keys[first], cols[first]):
            first = left
        if right < m and _owed_before(keys[right], cols[right], keys[first], cols[first]):
            first = right
        if first == i:
            return
        keys[i], keys[first] = keys[first], keys[i]
        cols[i], cols[first] = cols[first], cols[i]
        i = first


@njit(cache=True)
def pay_voxels(lattice, nx, ny, nz, touching, count, debt, order, heap, sizes, becomes, n_voxels):
    """``pay_one_voxel`` up to ``n_voxels`` times in one call; returns how many voxels were paid (fewer
    once no metal touches the electrolyte).

    The same voxels in the same order as that many calls of ``pay_one_voxel``, without its scan of every
    column per voxel (which made a payment cost voxels × columns: quadratic in the domain's area, since
    E7's debt grows with it). Each voxel goes to the column owed most among those with metal touching the
    electrolyte (the lower column on a tie), and the payment's queue (``order`` from ``sizes[0]`` on,
    then ``heap``: ``clear_debt_queued``) already holds every column still owed anything in exactly that
    order: the columns cleared to zero have left it. So while the column found is owed more than zero,
    it is the first column of the queue with metal: the first such in ``order`` (a pointer that moves on
    past the columns with none, and back to a column a new SEI voxel gives metal again) or the best such
    among the few partly paid columns in ``heap``, whichever comes first. Only when no column with metal
    is owed more than zero (the cleared columns then tie with it) does the rest of the payment go to
    ``_pay_voxels_by_heap``, which keeps every column with metal on a heap."""
    nxy = nx * ny
    n = order.size
    exposed = np.empty(6, dtype=np.int64)  # the columns a new SEI voxel brings to the electrolyte
    stack = np.empty(heap.size + 1, dtype=np.int64)  # the search of the partly paid columns
    position = np.empty(nxy if becomes == SEI else 0, dtype=np.int64)  # each column's place in order
    for k in range(position.size):
        position[order[k]] = k
    scan = 0  # order[sizes[0]:scan] have no metal touching the electrolyte
    paid = 0
    while paid < n_voxels:
        if scan < sizes[0]:
            scan = sizes[0]
        while scan < n and count[order[scan]] == 0:
            scan += 1
        col = order[scan] if scan < n else -1
        partial = _best_with_metal(heap, sizes[1], debt, count, stack)
        if partial >= 0 and (col < 0 or _before(debt, partial, col)):
            col = partial
        if col < 0 or not debt[col] > 0.0:
            break  # the columns cleared to zero tie with it: the heap of every column with metal decides
        z = _lowest_flagged(touching, col)
        for i in range(_pay_at(lattice, nx, ny, nz, touching, count, col, z, becomes, exposed)):
            k = position[exposed[i]]
            if sizes[0] <= k < scan:
                scan = k  # it has metal again: the pointer goes back to it
        clear_debt_queued(debt, order, heap, sizes, 1.0)
        paid += 1
    if paid < n_voxels:
        paid += _pay_voxels_by_heap(lattice, nx, ny, nz, touching, count, debt, order, heap, sizes, becomes,
                                    n_voxels - paid)
    return paid


@njit(cache=True, inline="always")
def _best_with_metal(heap, m, debt, count, stack):
    """The first of the partly paid columns (``heap``, m of them, a binary heap by ``_before``) with metal
    touching the electrolyte (``count`` > 0), or −1: a search from the root that does not go below a
    column with metal, whose subtree comes after it."""
    best = -1
    top = 0
    if m > 0:
        stack[0] = 0
        top = 1
    while top > 0:
        top -= 1
        i = stack[top]
        c = heap[i]
        if count[c] > 0:
            if best < 0 or _before(debt, c, best):
                best = c
            continue
        for child in (2 * i + 1, 2 * i + 2):
            if child < m:
                stack[top] = child
                top += 1
    return best


@njit(cache=True)
def _pay_voxels_by_heap(lattice, nx, ny, nz, touching, count, debt, order, heap, sizes, becomes, n_voxels):
    """``pay_voxels`` with every column that has metal touching the electrolyte kept on a max-heap by
    (debt, then the lower column); what comes off it depends on the entries only, not on how the heap was
    built (the order is total). Debts only fall while a payment runs (``clear_debt_queued``), so an
    entry's key is at least its column's debt now; an entry whose key is stale is pushed again with the
    debt now, and the first fresh entry on top is the column a scan would find. A column that comes to
    touch the electrolyte (next to new SEI) is pushed when its count leaves zero. Exact whatever the debts
    (columns with metal owed nothing or less), but each column cleared while on the heap is popped and
    pushed again: ``pay_voxels`` goes through the queue first."""
    nxy = nx * ny
    capacity = nxy + 7 * n_voxels + 1
    keys = np.empty(capacity)
    cols = np.empty(capacity, dtype=np.int64)
    exposed = np.empty(6, dtype=np.int64)  # the columns a new SEI voxel brings to the electrolyte
    m = 0
    for c in range(nxy):
        if count[c] > 0:
            keys[m] = debt[c]
            cols[m] = c
            m += 1
    for i in range(m // 2 - 1, -1, -1):  # heapified in place (linear), not pushed one by one (n log n)
        _owing_sift_down(keys, cols, m, i)
    paid = 0
    while paid < n_voxels:
        col = -1
        while m > 0:
            key, c = keys[0], cols[0]
            m = _owing_pop(keys, cols, m)
            if count[c] == 0:
                continue  # no metal left touching the electrolyte there (pushed again if it returns)
            if key != debt[c]:
                m = _owing_push(keys, cols, m, debt[c], c)  # cleared since it was pushed
                continue
            col = c
            m = _owing_push(keys, cols, m, key, c)  # it stays a candidate while it has metal
            break
        if col < 0:
            break
        z = _lowest_flagged(touching, col)
        for i in range(_pay_at(lattice, nx, ny, nz, touching, count, col, z, becomes, exposed)):
            m = _owing_push(keys, cols, m, debt[exposed[i]], exposed[i])
        clear_debt_queued(debt, order, heap, sizes, 1.0)
        paid += 1
    return paid


@njit(cache=True, inline="always")
def _touches(lattice, i, x, y, z, nx, ny, nz, kind_a, kind_b):
    """Whether site i at (x, y, z) has a face on a site of ``kind_a`` or ``kind_b`` (x, y periodic, z walled)."""
    nxy = nx * ny
    for k in (i - nxy if z > 0 else -1, i + nxy if z < nz - 1 else -1,
              i - x + (x + 1) % nx, i - x + (x - 1) % nx,
              z * nxy + x + nx * ((y + 1) % ny), z * nxy + x + nx * ((y - 1) % ny)):
        if k >= 0 and (lattice[k] == kind_a or lattice[k] == kind_b):
            return True
    return False


@njit(cache=True, inline="always")
def _beside_active_na(lattice, site_class, i, x, y, z, nx, ny, nz):
    """Whether site i has a face on Na of a cluster connected to the collector (``site_class`` of the last
    solve, kept by the kernels since)."""
    nxy = nx * ny
    for k in (i - nxy if z > 0 else -1, i + nxy if z < nz - 1 else -1,
              i - x + (x + 1) % nx, i - x + (x - 1) % nx,
              z * nxy + x + nx * ((y + 1) % ny), z * nxy + x + nx * ((y - 1) % ny)):
        if k >= 0 and lattice[k] == NA and site_class[k] == CLUSTER_ACTIVE:
            return True
    return False


@njit(cache=True)
def returnable_gaps(lattice, site_class, nx, ny, nz, gap, count):
    """Gaps where Na given back to the metal can go (``gap``, uint8 nz × columns, 1 there; ``count`` per
    column): a gap with an electrolyte face and a face on connected Na — an interface void beside the
    metal, such as a strip leaves."""
    nxy = nx * ny
    count[:] = 0
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                col = x + nx * y
                i = col + z * nxy
                t = 0
                if (lattice[i] == GAP and _touches(lattice, i, x, y, z, nx, ny, nz, SE, SEI)
                        and _beside_active_na(lattice, site_class, i, x, y, z, nx, ny, nz)):
                    t = 1
                gap[z, col] = t
                count[col] += t


@njit(cache=True)
def give_one_voxel(lattice, site_class, nx, ny, nz, gap, count, owed):
    """Turn one returnable gap (``returnable_gaps``) into connected Na: the lowest one in the column owed
    most (``owed``, voxels per column, the lower column on a tie) among those that have one, and clear one
    voxel of what is owed, from the columns owed most first. Returns False (nothing changed) when there is
    no returnable gap."""
    nxy = nx * ny
    col, z = _lowest_in_column_owed_most(gap, count, owed, nxy)
    if col < 0:
        return False
    i = col + z * nxy
    lattice[i] = NA
    site_class[i] = CLUSTER_ACTIVE
    gap[z, col] = 0
    count[col] -= 1
    x = col % nx
    y = col // nx
    for zz, cc in ((z + 1, col), (z - 1, col), (z, (x + 1) % nx + nx * y), (z, (x - 1) % nx + nx * y),
                   (z, x + nx * ((y + 1) % ny)), (z, x + nx * ((y - 1) % ny))):
        # A gap beside the new Na that touches the electrolyte can now take Na too.
        if 0 <= zz < nz and gap[zz, cc] == 0 and lattice[cc + zz * nxy] == GAP \
                and _touches(lattice, cc + zz * nxy, cc % nx, cc // nx, zz, nx, ny, nz, SE, SEI):
            gap[zz, cc] = 1
            count[cc] += 1
    clear_debt(owed, 1.0)
    return True
