"""The debt kernels (``kmc.kernels.debt``) pay exactly what the plain NumPy definition pays.

The reference below is the definition the kernels replaced (a stable sort of the debts per voxel, a
roll of the electrolyte mask): same columns, same voxels, same bits of debt left.
"""
import numpy as np
import pytest

from kmc.kernels import debt as kdebt
from kmc.kernels.cell import GAP, NA, SE, SEI


def reference_clear_debt(debt, amount):
    for c in np.argsort(-debt, kind="stable"):
        take = min(debt[c], amount)
        debt[c] -= take
        amount -= take
        if amount <= 0:
            break


@pytest.mark.parametrize("seed", range(3))
def test_order_by_debt_is_numpys_stable_sort_of_minus_the_debt(seed):
    """The radix sort gives the permutation of ``np.argsort(-debt, kind="stable")``: ties (equal debts,
    0.0 and −0.0 among them) in column order, negative debts, subnormals, infinities, debts spread over
    600 decades, and a uniform debt (every digit shared but the last; one column one ulp above the rest)."""
    rng = np.random.default_rng(seed)
    n = 5000
    cases = [
        np.round(rng.random(n), 2),
        rng.choice([0.0, -0.0, 5e-324, -5e-324, 0.25, 3.0, -2.0, np.inf, -np.inf], n),
        rng.normal(size=n) * 10.0 ** rng.integers(-300, 300, n),
        np.full(n, 0.0137) + rng.integers(0, 2, n) * 1e-17,
        np.where(np.arange(n) == n // 3, np.nextafter(0.0137, 1.0), 0.0137),  # one column a bit above the rest
        np.zeros(0),
    ]
    for debt in cases:
        assert np.array_equal(kdebt.order_by_debt(debt), np.argsort(-debt, kind="stable"))


def reference_take(lattice, nx, ny, nz, debt, becomes):
    lat3 = lattice.reshape(nz, ny, nx)
    el = (lat3 == SE) | (lat3 == SEI)
    touching = np.zeros_like(el)
    touching[1:] |= el[:-1]
    touching[:-1] |= el[1:]
    for axis in (1, 2):
        for shift in (1, -1):
            touching |= np.roll(el, shift, axis)
    touching = (touching & (lat3 == NA)).reshape(nz, nx * ny)
    lat = lattice.reshape(nz, nx * ny)
    paid = 0
    while debt.sum() >= 1.0:
        cols = np.flatnonzero(touching.any(axis=0))
        if cols.size == 0:
            break
        col = int(cols[np.argmax(debt[cols])])
        z = int(np.flatnonzero(touching[:, col])[0])
        lat[z, col] = becomes
        paid += 1
        touching[z, col] = False
        if becomes == SEI:
            x, y = col % nx, col // nx
            for zz, cc in ((z + 1, col), (z - 1, col), (z, (x + 1) % nx + nx * y), (z, (x - 1) % nx + nx * y),
                           (z, x + nx * ((y + 1) % ny)), (z, x + nx * ((y - 1) % ny))):
                if 0 <= zz < nz and lat[zz, cc] == NA:
                    touching[zz, cc] = True
        reference_clear_debt(debt, 1.0)
    return paid


@pytest.mark.parametrize("seed", range(5))
def test_clear_debt_takes_the_most_indebted_columns_first_lower_column_on_a_tie(seed):
    """Planted fault: ties broken towards the higher column (``a > b`` in ``_before``) fails here."""
    rng = np.random.default_rng(seed)
    debt = rng.integers(0, 6, 300) * 0.125  # many ties, exact in binary
    debt[rng.integers(0, 300, 20)] = rng.random(20)
    for amount in (0.3, 1.0, 7.0, 1e9):
        want, got, got_sorted = debt.copy(), debt.copy(), debt.copy()
        reference_clear_debt(want, amount)
        kdebt.clear_debt(got, amount)
        kdebt.clear_debt_in_order(got_sorted, np.argsort(-got_sorted, kind="stable"), amount)
        assert got.tobytes() == want.tobytes()
        assert got_sorted.tobytes() == want.tobytes()


@pytest.mark.parametrize("seed", range(3))
def test_one_queue_kept_over_many_clears_clears_as_a_fresh_sort_each_time(seed):
    """A payment sorts the columns once and keeps the partly paid ones in a heap (``clear_debt_queued``):
    each clear must take from the columns in the order of a sort of the debts now. Planted faults: the
    partly paid column not put back in the heap, and the heap's top taken before the sorted columns
    whatever their debts (``m > 0`` tested first), each fail here."""
    rng = np.random.default_rng(seed)
    debt = rng.integers(0, 6, 200) * 0.125  # many ties, exact in binary
    debt[rng.integers(0, 200, 30)] = rng.random(30) * 3.0
    debt[rng.integers(0, 200, 5)] = -0.25  # a debt below zero is taken last, and gives back
    want, got = debt.copy(), debt.copy()
    order = np.argsort(-got, kind="stable")
    heap = np.empty(got.size, dtype=np.int64)
    sizes = np.zeros(2, dtype=np.int64)
    for amount in rng.random(60) * 2.5:
        reference_clear_debt(want, amount)
        kdebt.clear_debt_queued(got, order, heap, sizes, amount)
        assert got.tobytes() == want.tobytes()


def _pay_while_owed(lattice, nx, ny, nz, debt, becomes) -> int:
    """Voxels the kernel pays, one ``pay_one_voxel`` at a time, while a whole voxel is owed."""
    touching = np.empty((nz, nx * ny), dtype=np.uint8)
    count = np.empty(nx * ny, dtype=np.int64)
    kdebt.touching_electrolyte(lattice, nx, ny, nz, touching, count)
    order = np.argsort(-debt, kind="stable")
    heap = np.empty(nx * ny, dtype=np.int64)
    sizes = np.zeros(2, dtype=np.int64)
    paid = 0
    while debt.sum() >= 1.0 and kdebt.pay_one_voxel(lattice, nx, ny, nz, touching, count, debt, order, heap, sizes,
                                                    becomes):
        paid += 1
    return paid


@pytest.mark.parametrize("becomes", [GAP, SEI])
@pytest.mark.parametrize("seed", range(3))
def test_pay_one_voxel_matches_the_numpy_definition(becomes, seed):
    """Random lattices and debts, both kinds of voxel left behind."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = 7, 5, 6
    lattice = rng.choice(np.array([NA, SE, GAP], dtype=np.uint8), nx * ny * nz, p=[0.6, 0.25, 0.15])
    debt = rng.random(nx * ny) * 0.8
    assert _pays_alike(reference_take, _pay_while_owed, lattice, nx, ny, nz, debt, becomes) > 0


def test_a_continuous_interphase_eats_down_a_column_voxel_by_voxel():
    """Each SEI voxel exposes the Na above it: three voxels owed by one column take its three Na
    voxels in turn, lowest first. Planted fault: not counting the metal a new SEI voxel exposes
    (``count[cc] += 1`` dropped) pays one voxel only."""
    nx, ny, nz = 2, 1, 5
    lattice = np.full(nx * ny * nz, GAP, dtype=np.uint8)
    lattice[0::2] = (SE, NA, NA, NA, GAP)  # column 0 from the bottom; column 1 is all gap
    debt = np.array([3.0, 0.0])
    paid = _pay_while_owed(lattice, nx, ny, nz, debt, SEI)
    assert paid == 3
    assert list(lattice[0::2]) == [SE, SEI, SEI, SEI, GAP]
    assert list(debt) == [0.0, 0.0]


@pytest.mark.parametrize("becomes", [GAP, SEI])
@pytest.mark.parametrize("seed", range(4))
def test_many_voxels_in_one_call_pay_what_one_at_a_time_pays(becomes, seed):
    """``pay_voxels`` (one call, a heap of the owing columns) against ``pay_one_voxel`` called voxel by
    voxel: same voxels in the same order, same bits of debt, on debts with many ties and columns that
    lose and regain metal touching the electrolyte (SEI). Planted faults: a stale heap entry taken as it
    is (no check of its key against the debt now), and a column that regains metal not pushed, each
    fail here."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = 9, 7, 8
    lattice = rng.choice(np.array([NA, SE, GAP], dtype=np.uint8), nx * ny * nz, p=[0.6, 0.25, 0.15])
    debt = rng.integers(0, 5, nx * ny) * 0.25  # ties, exact in binary
    debt[rng.integers(0, nx * ny, 10)] = rng.random(10) * 2.0
    assert _pays_alike(_pay_while_owed, _pay_in_one_call, lattice, nx, ny, nz, debt, becomes) > 10


@pytest.mark.parametrize("becomes", [GAP, SEI])
@pytest.mark.parametrize("seed", range(4))
def test_one_call_through_the_queue_pays_what_one_at_a_time_pays(becomes, seed):
    """E7's debt as it is, thin over every column (each voxel clears dozens of columns and leaves one
    partly paid), with columns that have no metal at the electrolyte and a few owed nothing or less than
    nothing: ``pay_voxels`` goes through the payment's queue while the column it finds is owed more than
    zero and hands the rest to the heap of every column with metal, and pays what ``pay_one_voxel`` pays,
    voxel by voxel. Planted faults, each failing here: the pointer not sent back to a column that new SEI
    gives metal again; the partly paid columns left out; the column found taken even when owed nothing
    (no hand-over)."""
    rng = np.random.default_rng(100 + seed)
    nx, ny, nz = 16, 12, 6
    lattice = rng.choice(np.array([NA, SE, GAP], dtype=np.uint8), nx * ny * nz, p=[0.55, 0.3, 0.15])
    lattice[: nx * ny] = SE
    debt = 0.02 + rng.random(nx * ny) * 0.05
    debt[rng.integers(0, nx * ny, 8)] = 0.0
    debt[rng.integers(0, nx * ny, 4)] = -0.01
    debt[rng.integers(0, nx * ny, 6)] = 0.75 + rng.random(6)  # owed most: some with no metal at all
    assert _pays_alike(_pay_while_owed, _pay_in_one_call, lattice, nx, ny, nz, debt, becomes) > 5


def test_the_queue_goes_back_to_a_column_new_sei_exposes_and_hands_over_at_zero():
    """Two hand-built cells (one row of columns, x periodic, from the bottom layer up), each paid in one
    call and voxel by voxel. (1) C owes most and has no metal, B next with none at the electrolyte
    (a gap under it), A least with metal: A's first SEI voxel exposes B's Na beside it, so the second
    voxel is B's — the pointer, already past B, must go back to it. (2) A column with metal is cleared to
    zero while the rest of the debt sits on many small columns without metal: the next voxel is the
    lowest column with metal among those owed nothing, A (cleared, out of the queue), not B (owed
    nothing from the start): the hand-over to the heap of every column with metal."""
    # (1) columns A, B, C: A = SE, Na, Na; B = gap, Na, gap; C all gap
    lattice = np.array([SE, GAP, GAP, NA, NA, GAP, NA, GAP, GAP], dtype=np.uint8)
    debt = np.array([0.2, 0.9, 1.0])  # two voxels
    want_lat, want_debt = lattice.copy(), debt.copy()
    _pay_while_owed(want_lat, 3, 1, 3, want_debt, SEI)
    assert list(want_lat[3:6]) == [SEI, SEI, GAP] and want_lat[6] == NA  # A, then B (not A above)
    _pay_in_one_call(lattice, 3, 1, 3, debt, SEI)
    assert np.array_equal(lattice, want_lat) and debt.tobytes() == want_debt.tobytes()
    # (2) A = SE, Na, Na owing 1.0; B = SE, Na owing nothing; ten columns of gap owing 0.1 each: two voxels
    nx = 12
    lattice = np.full(3 * nx, GAP, dtype=np.uint8)
    lattice[[0, 1]] = SE
    lattice[[nx, nx + 1, 2 * nx]] = NA
    debt = np.array([1.0, 0.0] + [0.1] * 10)
    want_lat, want_debt = lattice.copy(), debt.copy()
    _pay_while_owed(want_lat, nx, 1, 3, want_debt, SEI)
    assert want_lat[nx] == SEI and want_lat[2 * nx] == SEI and want_lat[nx + 1] == NA  # A twice, not B
    _pay_in_one_call(lattice, nx, 1, 3, debt, SEI)
    assert np.array_equal(lattice, want_lat) and debt.tobytes() == want_debt.tobytes()


def _pays_alike(reference, payment, lattice, nx, ny, nz, debt, becomes):
    """Pay ``debt`` from ``lattice`` by ``payment`` and, on copies, by ``reference``: the same voxels taken
    (the same lattice after) and the same bits of debt left. Returns how many were paid."""
    want_lat, want_debt = lattice.copy(), debt.copy()
    want = reference(want_lat, nx, ny, nz, want_debt, becomes)
    got = payment(lattice, nx, ny, nz, debt, becomes)
    assert got == want
    assert np.array_equal(lattice, want_lat)
    assert debt.tobytes() == want_debt.tobytes()
    return got


def _pay_in_one_call(lattice, nx, ny, nz, debt, becomes):
    """``pay_voxels`` for every whole voxel of the debt, set up as ``take_from_metal`` sets it up."""
    touching = np.empty((nz, nx * ny), dtype=np.uint8)
    count = np.empty(nx * ny, dtype=np.int64)
    kdebt.touching_electrolyte(lattice, nx, ny, nz, touching, count)
    order = np.argsort(-debt, kind="stable")
    return kdebt.pay_voxels(lattice, nx, ny, nz, touching, count, debt, order, np.empty(nx * ny, dtype=np.int64),
                            np.zeros(2, dtype=np.int64), becomes, int(np.floor(debt.sum())))


@pytest.mark.parametrize("becomes", [GAP, SEI])
def test_take_from_metal_pays_what_the_definition_pays(becomes):
    """The production payment (``losses.take_from_metal``: most voxels in one kernel call, the last
    ones against NumPy's sum) against the NumPy definition."""
    from types import SimpleNamespace

    from kmc.battery.losses import take_from_metal

    rng = np.random.default_rng(11)
    nx, ny, nz = 12, 10, 8
    lattice = rng.choice(np.array([NA, SE, GAP], dtype=np.uint8), nx * ny * nz, p=[0.6, 0.25, 0.15])
    debt = rng.random(nx * ny) * 0.3
    want_lat, want_debt = lattice.copy(), debt.copy()
    want = reference_take(want_lat, nx, ny, nz, want_debt, becomes)
    run = SimpleNamespace(lattice=lattice, sealed=1.0)
    got = take_from_metal(run, SimpleNamespace(nx=nx, ny=ny, nz=nz, n_cols=nx * ny), debt, becomes)
    assert got == want > 10
    assert np.array_equal(lattice, want_lat)
    assert debt.tobytes() == want_debt.tobytes()


def test_one_call_eats_down_columns_as_one_voxel_at_a_time_does():
    """A continuous interphase over a layered cell (electrolyte, then metal): each SEI voxel exposes
    the Na above it, so a column leaves the owing heap (no metal touching) and comes back. Planted
    fault: a column whose count leaves zero not pushed again fails here."""
    rng = np.random.default_rng(3)
    nx, ny, nz = 6, 5, 7
    lattice = np.full(nx * ny * nz, NA, dtype=np.uint8)
    lattice[: nx * ny] = SE
    lattice[-nx * ny:] = GAP
    debt = rng.integers(0, 13, nx * ny) * 0.25  # up to 3 voxels a column: the columns are eaten down
    want_lat, want_debt = lattice.copy(), debt.copy()
    want = _pay_while_owed(want_lat, nx, ny, nz, want_debt, SEI)
    got = _pay_in_one_call(lattice, nx, ny, nz, debt, SEI)
    assert got == want > nx * ny
    assert np.array_equal(lattice, want_lat)
    assert debt.tobytes() == want_debt.tobytes()
    # A column with no metal at the electrolyte (a gap under it) that comes to touch new SEI beside it.
    lattice = np.array([SE, SE, NA, GAP, NA, NA, GAP, NA], dtype=np.uint8)  # columns A, B from the bottom
    debt = np.array([2.0, 1.5])
    t, c = np.empty((4, 2), dtype=np.uint8), np.empty(2, dtype=np.int64)
    kdebt.touching_electrolyte(lattice, 2, 1, 4, t, c)
    got = kdebt.pay_voxels(lattice, 2, 1, 4, t, c, debt, np.argsort(-debt, kind="stable"),
                           np.empty(2, dtype=np.int64), np.zeros(2, dtype=np.int64), SEI, 3)
    assert got == 3  # A's two voxels, then B's, which A's second SEI voxel exposed
    assert list(lattice) == [SE, SE, SEI, GAP, SEI, SEI, GAP, NA]


@pytest.mark.parametrize("becomes", [GAP, SEI])
@pytest.mark.parametrize("seed", range(3))
def test_a_kept_metal_surface_is_the_recount_after_a_payment(becomes, seed):
    """The driver pays E7's and then E8's debts with one ``MetalSurface``: after the first payment the
    flags and counts it keeps must be those a fresh pass over the lattice finds (a recount), and the
    second payment must pay what it would with a fresh surface. Planted fault: new SEI not exposing
    the Na beside it (``_pay_at``) fails here."""
    from types import SimpleNamespace

    from kmc.battery.losses import MetalSurface, take_from_metal

    rng = np.random.default_rng(20 + seed)
    nx, ny, nz = 9, 8, 7
    lattice = rng.choice(np.array([NA, SE, GAP], dtype=np.uint8), nx * ny * nz, p=[0.6, 0.25, 0.15])
    p = SimpleNamespace(nx=nx, ny=ny, nz=nz, n_cols=nx * ny)
    run = SimpleNamespace(lattice=lattice, sealed=1.0)
    surface = MetalSurface()
    assert take_from_metal(run, p, rng.random(nx * ny) * 0.4, becomes, surface) > 10
    touching, count = np.empty((nz, nx * ny), dtype=np.uint8), np.empty(nx * ny, dtype=np.int64)
    kdebt.touching_electrolyte(lattice, nx, ny, nz, touching, count)
    kept_touching, kept_count = surface.arrays(run, p)
    assert np.array_equal(kept_touching, touching) and np.array_equal(kept_count, count)
    second = rng.random(nx * ny) * 0.2
    fresh_lattice, fresh_debt = lattice.copy(), second.copy()
    want = take_from_metal(SimpleNamespace(lattice=fresh_lattice, sealed=1.0), p, fresh_debt, GAP)
    assert take_from_metal(run, p, second, GAP, surface) == want > 5
    assert np.array_equal(lattice, fresh_lattice) and second.tobytes() == fresh_debt.tobytes()
