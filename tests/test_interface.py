"""Contact faces, load-bearing columns, the rigid collector and E1 insertion, against recounts."""
import numpy as np
import pytest

from kmc.geometry import build
from kmc.kernels.capillary import EPS_AU, EPS_SIZE
from kmc.kernels.cell import CC, GAP, NA, SE, SEI, holds_state, lattice_words
from kmc.kernels.clusters import classify_na, label_na_clusters
from kmc.kernels.interface import (
    layer_contents,
    COLUMN_CC_CONTACT,
    COLUMN_NA_SUPPORT,
    FACE_AU,
    FACE_AU_ALLOYED,
    FACE_BARE,
    FACE_NA,
    column_support,
    contact_faces,
    lift_collector,
    na_stress_mpa,
    settle_collector,
)
from kmc.kernels.plating import DOMAIN_FULL, PLATED, PLATED_AFTER_LIFT, plate_voxel


def _classes(flat, nx, ny, nz):
    parent = np.empty(flat.size, dtype=np.int64)
    cls = np.empty(flat.size, dtype=np.int64)
    label_na_clusters(flat, nx, ny, nz, parent)
    classify_na(flat, nx, ny, nz, parent, cls, np.zeros(4, dtype=np.int64))
    return cls


def _neighbors(s, nx, ny, nz):
    x, y, z = s % nx, (s // nx) % ny, s // (nx * ny)
    for dx, dy, dz in ((-1, 0, 0), (1, 0, 0), (0, -1, 0), (0, 1, 0), (0, 0, -1), (0, 0, 1)):
        if 0 <= z + dz < nz:
            yield (x + dx) % nx + nx * ((y + dy) % ny + ny * (z + dz))


def _random_cell(rng, nx=7, ny=6, nz=9):
    lat = rng.choice([GAP, NA], size=(nz, ny, nx), p=[0.5, 0.5]).astype(np.uint8)
    lat[0] = SE
    lat[1][rng.random((ny, nx)) < 0.4] = SE
    lat[1][rng.random((ny, nx)) < 0.1] = SEI
    lat[-2:] = CC
    lat[-3][rng.random((ny, nx)) < 0.3] = CC
    return lat.ravel().copy(), nx, ny, nz


@pytest.mark.parametrize("seed", range(4))
def test_contact_faces_match_a_brute_force_enumeration(seed):
    rng = np.random.default_rng(seed)
    flat, nx, ny, nz = _random_cell(rng)
    cls = _classes(flat, nx, ny, nz)
    au_present = (rng.random(nx * ny) < 0.5).astype(np.uint8)
    au_alloyed = (rng.random(nx * ny) < 0.5).astype(np.uint8)
    none = [np.empty(0, dtype=np.int64) for _ in range(4)]
    n = contact_faces(flat, cls, au_present, au_alloyed, nx, ny, nz, *none, 0, flat.size)  # counts only
    arrays = [np.empty(n, dtype=np.int64) for _ in range(4)]
    assert contact_faces(flat, cls, au_present, au_alloyed, nx, ny, nz, *arrays, 0, flat.size) == n
    # Lists too short take the first faces, and the count is still the whole one.
    short = [np.full(n // 2, -1, dtype=np.int64) for _ in range(4)]
    assert contact_faces(flat, cls, au_present, au_alloyed, nx, ny, nz, *short, 0, flat.size) == n
    assert all((s == a[:n // 2]).all() for s, a in zip(short, arrays))
    got = set(zip(*[a.tolist() for a in arrays]))
    expected = set()
    for c in range(flat.size):
        if flat[c] == CC:
            col = c % (nx * ny)
            kind = (FACE_AU_ALLOYED if au_alloyed[col] else FACE_AU) if au_present[col] else FACE_BARE
        elif flat[c] == NA and cls[c] == 0:
            kind = FACE_NA
        else:
            continue
        for e in _neighbors(c, nx, ny, nz):
            if flat[e] in (SE, SEI):
                expected.add((c, e, e % (nx * ny), kind))
    assert got == expected and n == len(expected)  # no face twice


@pytest.mark.parametrize("seed", range(4))
def test_column_support_matches_a_scan(seed):
    rng = np.random.default_rng(10 + seed)
    flat, nx, ny, nz = _random_cell(rng)
    out = np.empty(nx * ny, dtype=np.int64)
    n_cc, n_na = column_support(flat, nx, ny, nz, out)
    lat = flat.reshape(nz, ny, nx)
    for y in range(ny):
        for x in range(nx):
            col = "".join("E" if s in (SE, SEI) else "CNG"[[CC, NA, GAP].index(s)] for s in lat[:, y, x])
            rest = col.lstrip("E")
            expect = 1 if rest.startswith("C") else (2 if rest.lstrip("N").startswith("C") and rest.startswith("N") else 0)
            assert out[y * nx + x] == expect, col
    assert n_cc == (out == COLUMN_CC_CONTACT).sum() and n_na == (out == COLUMN_NA_SUPPORT).sum()


def test_load_sharing():
    assert na_stress_mpa(5.6, 400.0, 0, 100, 100) == pytest.approx(5.6)
    assert na_stress_mpa(5.6, 400.0, 0, 25, 100) == pytest.approx(22.4)  # P·A over a quarter
    assert na_stress_mpa(5.6, 400.0, 2, 50, 100) == 0.0  # asperities carry it all
    assert na_stress_mpa(10.0, 400.0, 1, 30, 100) == pytest.approx((1000 - 400) / 30)
    assert na_stress_mpa(5.6, 400.0, 3, 0, 100) == 0.0


def test_lift_then_settle_is_the_identity():
    geo = build(12, 10, 24, 0.5, form="foil", rq_um=0.8, xi_um=1.5, stack_pressure_mpa=5.6, hardness_mpa=400.0,
                rng=np.random.default_rng(1))
    nz, ny, nx = geo.lattice.shape
    flat = geo.lattice.ravel().copy()
    flat[flat == GAP] = np.where(np.random.default_rng(2).random((flat == GAP).sum()) < 0.3, NA, GAP)
    before = flat.copy()
    bottom = (geo.cc_offset + geo.cc_shape).ravel().astype(np.int64)
    b0 = bottom.copy()
    assert lift_collector(flat, nx, ny, nz, bottom)
    assert (bottom == b0 + 1).all()
    assert (flat.reshape(nz, ny, nx)[b0.reshape(ny, nx), np.arange(ny)[:, None], np.arange(nx)] == GAP).all()
    assert settle_collector(flat, nx, ny, nz, bottom)
    assert flat.tobytes() == before.tobytes() and (bottom == b0).all()


@pytest.mark.parametrize("seed", range(3))
def test_lift_shifts_each_column_above_its_bottom_up_one_voxel(seed):
    """``lift_collector`` against the column-by-column definition, with bottoms spread over several
    layers (the block copy of whole layers above every bottom, the per-column copy between the lowest
    and the highest). Planted faults: the layers copied bottom-up (a layer from one already shifted),
    and the block copy started at the lowest bottom instead of above the highest, each fail here."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = 6, 5, 12
    lattice = rng.choice(np.array([NA, GAP, SE, CC], dtype=np.uint8), (nz, nx * ny))
    bottom = rng.integers(2, 8, nx * ny).astype(np.int64)
    lattice[nz - 1] = CC  # no Na in the top layer, which leaves the domain
    want = lattice.copy()
    for col in range(nx * ny):
        want[bottom[col] + 1:, col] = lattice[bottom[col]:-1, col]
        want[bottom[col], col] = GAP
    flat, got_bottom = lattice.ravel().copy(), bottom.copy()
    assert lift_collector(flat, nx, ny, nz, got_bottom)
    assert flat.tobytes() == want.tobytes() and (got_bottom == bottom + 1).all()


def test_settle_refuses_when_a_column_bears():
    geo = build(8, 8, 16, 0.5, form="foil", rq_um=0.8, xi_um=1.5, stack_pressure_mpa=5.6, hardness_mpa=400.0,
                rng=np.random.default_rng(3))
    nz, ny, nx = geo.lattice.shape
    flat = geo.lattice.ravel().copy()
    bottom = (geo.cc_offset + geo.cc_shape).ravel().astype(np.int64)
    assert not settle_collector(flat, nx, ny, nz, bottom)  # it rests on an asperity
    assert flat.tobytes() == geo.lattice.tobytes()


def _gap_reachable(flat, c, e, nx, ny, nz):
    """Independent check of rules 1–3: a gap at the face, up c's Na column, through c's Na, or
    anywhere at the interface (touching an electrolyte voxel and a conductor)."""
    for g in np.flatnonzero(flat == GAP):
        kinds = {flat[n] for n in _neighbors(int(g), nx, ny, nz)}
        if kinds & {SE, SEI} and kinds & {CC, NA}:
            return True
    for center in (c, e):
        for g in _neighbors(center, nx, ny, nz):
            if flat[g] == GAP:
                kinds = {flat[n] for n in _neighbors(g, nx, ny, nz)}
                if kinds & {SE, SEI} and kinds & {CC, NA}:
                    return True
    if flat[c] != NA:
        return False
    seen, frontier = {c}, [c]
    while frontier:
        nxt = []
        for s in frontier:
            for n in _neighbors(s, nx, ny, nz):
                if flat[n] == GAP:
                    return True
                if flat[n] == NA and n not in seen:
                    seen.add(n)
                    nxt.append(n)
        frontier = nxt
    return False


def test_plating_conserves_volume_and_lifts_only_when_sealed():
    """Thousands of insertions at random contact faces: +1 Na each, SE untouched, CC only lifted."""
    geo = build(10, 8, 40, 0.5, form="foil", rq_um=0.8, xi_um=1.5, stack_pressure_mpa=5.6, hardness_mpa=400.0,
                au_nm=96.0, rng=np.random.default_rng(4))
    nz, ny, nx = geo.lattice.shape
    nxy = nx * ny
    flat = geo.lattice.ravel().copy()
    bottom = (geo.cc_offset + geo.cc_shape).ravel().astype(np.int64)
    au = np.ones(nxy, dtype=np.uint8)
    eps = np.zeros(EPS_SIZE)
    eps[NA], eps[GAP], eps[SE], eps[CC], eps[EPS_AU] = -1.0, 1.0, -0.2, 0.5, -1.0
    queue = np.empty(flat.size, dtype=np.int64)
    visited = np.zeros(flat.size, dtype=np.uint8)
    out = np.zeros(1, dtype=np.int64)
    rng = np.random.default_rng(5)
    se0, cc0 = (flat == SE).sum(), (flat == CC).sum()
    lifts = 0
    for i in range(2500):
        cls = _classes(flat, nx, ny, nz)
        faces = [np.empty(flat.size * 6, dtype=np.int64) for _ in range(4)]
        n = contact_faces(flat, cls, au, au, nx, ny, nz, *faces, 0, flat.size)
        k = rng.integers(n)
        na_before = (flat == NA).sum()
        before = flat.copy()
        c, e = int(faces[0][k]), int(faces[1][k])
        code = plate_voxel(c, e, flat, au, nx, ny, nz, eps, bottom, queue, visited, out, nz)
        assert code in (PLATED, PLATED_AFTER_LIFT), (i, code)
        if code == PLATED_AFTER_LIFT:
            lifts += 1
            assert not _gap_reachable(before, c, e, nx, ny, nz)  # lifted only when sealed
        else:
            assert before[out[0]] == GAP
        assert (flat == NA).sum() == na_before + 1
        assert flat[out[0]] == NA
    assert not visited.any()
    assert (flat == SE).sum() == se0  # the electrolyte is never touched
    assert (flat == CC).sum() == cc0 - lifts * nxy  # the CC only ever loses its top layer to lifts
    assert lifts >= 10  # the interface sealed and lifted many times: the test reached that regime
    # The CC body is contiguous from its bottom to the top in every column (a foil has no pores).
    lat = flat.reshape(nz, ny, nx)
    for col in range(nxy):
        column = lat[:, col // nx, col % nx]
        assert (column[bottom[col]:] == CC).all() and column[bottom[col] - 1] != CC


def test_domain_full_is_reported():
    flat = np.full((4, 2, 2), NA, dtype=np.uint8)
    flat[0], flat[-1] = SE, CC
    flat = flat.ravel().copy()
    bottom = np.full(4, 3, dtype=np.int64)
    eps = np.zeros(EPS_SIZE)
    code = plate_voxel(4, 0, flat, np.zeros(4, dtype=np.uint8), 2, 2, 4, eps, bottom,
                       np.empty(16, dtype=np.int64), np.zeros(16, dtype=np.uint8), np.zeros(1, dtype=np.int64), 4)
    assert code == DOMAIN_FULL


@pytest.mark.parametrize("nx, ny, nz", [(8, 8, 6), (6, 2, 4), (5, 5, 8), (7, 5, 9), (3, 3, 5), (16, 4, 3)])
@pytest.mark.parametrize("seed", range(3))
def test_holds_state_matches_numpy(nx, ny, nz, seed):
    """Whether a layer holds a voxel of a state (``holds_state``, which the insertion search's labelling
    uses to pass over the layers without Na), read eight voxels at a time, against NumPy: layers of one
    kind with the odd voxel at every position of a word, sizes that are and are not multiples of 8.
    Planted fault: testing the pattern of another state (GAP's for NA) fails here."""
    rng = np.random.default_rng(seed)
    nxy = nx * ny
    for base in (SE, CC, GAP):
        for kind in (NA, GAP, SEI):
            for where in sorted({0, 1, 7, 8, nxy // 2, nxy - 1}):
                if where >= nxy:
                    continue
                lattice = np.full(nz * nxy, base, dtype=np.uint8)
                lattice[rng.integers(0, nz) * nxy + where] = kind
                words = lattice_words(lattice)
                for state in (NA, GAP, SE):
                    got = [holds_state(lattice, words, z * nxy, (z + 1) * nxy, state) for z in range(nz)]
                    assert got == list((lattice.reshape(nz, nxy) == state).any(axis=1)), (base, kind, where, state)


@pytest.mark.parametrize("nx, ny, nz", [(8, 8, 6), (6, 2, 4), (5, 5, 8), (7, 5, 9), (3, 3, 5), (16, 4, 3)])
@pytest.mark.parametrize("seed", range(3))
def test_layer_contents_matches_numpy(nx, ny, nz, seed):
    """Which layers hold electrolyte (SE or SEI) and which a gap, read eight voxels at a time, against
    NumPy on the layers: layers of one kind throughout with a single other voxel planted at every
    position of a word (its first and last byte, the layer's first and last voxel), on layers whose size
    is and is not a multiple of 8 and lattices whose size is not. Planted fault: one of the word's tests
    (SEI's) left out fails here."""
    rng = np.random.default_rng(seed)
    nxy = nx * ny
    for base in (NA, CC, SE):
        for kind in (GAP, SE, SEI, NA):
            for where in sorted({0, 1, 7, 8, nxy // 2, nxy - 1}):
                if where >= nxy:
                    continue
                lattice = np.full(nz * nxy, base, dtype=np.uint8)
                z = rng.integers(0, nz)
                lattice[z * nxy + where] = kind
                mixed = rng.integers(0, nz)  # and one layer of everything at random
                lattice[mixed * nxy:(mixed + 1) * nxy] = rng.choice(np.array([GAP, SE, NA, CC, SEI], dtype=np.uint8), nxy)
                has_el, has_gap = np.empty(nz, dtype=np.uint8), np.empty(nz, dtype=np.uint8)
                layer_contents(lattice, nxy, nz, has_el, has_gap)
                lat = lattice.reshape(nz, nxy)
                assert np.array_equal(has_el, ((lat == SE) | (lat == SEI)).any(axis=1))
                assert np.array_equal(has_gap, (lat == GAP).any(axis=1))
