"""Every map and per-sample variable of the battery model against a recount from the stored snapshot.

A small Au–Al foil cell on NASICON is plated, rested and stripped to its cut-off through the store
(``kmc.simulate``), with a lattice snapshot and a map at every sample, so each sample has its frame
and its snapshot. From each stored ``lattice`` alone — with NumPy and ``scipy.ndimage.label``, none of
the model's code paths — the test recounts the contact faces per pixel and their fractions, the
load-bearing columns, the Na clusters (active, trapped, dead; the nuclei), the Na per column and its
thickness statistics, and compares them with what the run stored.

What the snapshot cannot show is bounded, not recounted: a sealed layer's pending volume (Na plated
into a sealed interface, laid down as a layer once a whole one is pending) is spread evenly over the
thickness map, so the map minus the recounted Na must be one offset, the same in every column and
less than a voxel; the inventories the lattice does not hold (alloy, interphase, flaws) enter the
Na balance as stored, within the pending layer and the sub-voxel debts.
"""
import numpy as np
import pytest
import scipy.sparse
from battery_runs import cell_scenario
from scipy import ndimage
from scipy.sparse.csgraph import connected_components

import kmc
from kmc import units
from kmc.kernels.cell import CC, GAP, NA, SE, SEI

N = 16
PROTOCOL = """
[[protocol]]
kind = "plate"
current_ma_cm2 = 0.5
capacity_mah_cm2 = 0.3
[[protocol]]
kind = "rest"
duration_s = 300.0
[[protocol]]
kind = "strip"
current_ma_cm2 = 0.5
cutoff_v = 1.5
capacity_mah_cm2 = 0.3
"""


@pytest.fixture(scope="module")
def cell_run(tmp_path_factory):
    """(scenario, the run's Dataset up to its last sample, its recounts per sample)."""
    path = tmp_path_factory.mktemp("recount") / "recount.toml"
    sc = cell_scenario(path, PROTOCOL, 60.0, n=N, nz=24, au_nm=96.0, snapshot_every=1, map_every=1)
    ds = kmc.simulate(sc, seed=1).isel(run=0)
    assert int(ds.status) == 2
    n = int(ds.samples_written)
    ds = ds.isel(sample=slice(0, n), frame=slice(0, n), snap=slice(0, n))
    # One frame and one snapshot per sample, taken at the sample's time.
    np.testing.assert_array_equal(ds.snap_time.values, ds.time.values)
    np.testing.assert_array_equal(ds.frame_time.values, ds.time.values)
    return sc, ds, [recount(lat) for lat in ds.lattice.values]


# -- the recount, from a (z, y, x) lattice alone -------------------------------------------------------

def next_to(mask):
    """Voxels with a face neighbour in ``mask`` (x and y periodic, z walled)."""
    out = np.zeros_like(mask)
    for axis in (1, 2):
        out |= np.roll(mask, 1, axis) | np.roll(mask, -1, axis)
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    return out


def faces_with(mask, other):
    """Per column (y, x): faces between a voxel of ``mask`` and one of ``other``, in the column of the
    ``mask`` voxel (x and y periodic, z walled)."""
    other = other.astype(np.int64)
    facing = np.zeros(other.shape, dtype=np.int64)
    for axis in (1, 2):
        facing += np.roll(other, 1, axis) + np.roll(other, -1, axis)
    facing[1:] += other[:-1]
    facing[:-1] += other[1:]
    return (facing * mask).sum(axis=0)


def na_clusters(lat):
    """Cluster id per Na voxel (−1 elsewhere): ``scipy.ndimage.label`` over face neighbours, its
    labels joined across the periodic x and y boundaries."""
    na = lat == NA
    labels, n = ndimage.label(na, structure=ndimage.generate_binary_structure(3, 1))
    ends = []
    for axis in (1, 2):
        first, last = np.take(labels, 0, axis=axis), np.take(labels, -1, axis=axis)
        both = (first > 0) & (last > 0)
        ends.append((first[both], last[both]))
    a = np.concatenate([e[0] for e in ends])
    b = np.concatenate([e[1] for e in ends])
    graph = scipy.sparse.coo_matrix((np.ones(a.size), (a, b)), shape=(n + 1, n + 1))
    _, joined = connected_components(graph, directed=False)
    return np.where(na, joined[labels], -1)


def recount(lat):
    """Everything the test compares, from one snapshot."""
    electrolyte = (lat == SE) | (lat == SEI)
    cluster = na_clusters(lat)
    on_cc = np.unique(cluster[(lat == NA) & next_to(lat == CC)])
    on_el = np.unique(cluster[(lat == NA) & next_to(electrolyte)])
    active_ids = np.intersect1d(on_cc, on_el)
    active = np.isin(cluster, active_ids) & (lat == NA)
    held = np.isin(cluster, on_cc) & ~active & (lat == NA)
    # In the collector's pores: at or above the column's lowest CC voxel; below it, stranded in a gap.
    cc_low = np.argmax(lat == CC, axis=0)
    in_pores = held & (np.arange(lat.shape[0])[:, None, None] >= cc_low[None])
    dead = (lat == NA) & ~np.isin(cluster, on_cc)
    # Load-bearing columns: scanning up from the electrolyte, the CC first (a CC–SE contact), or Na
    # reaching the CC without a gap (a Na support).
    bearing = 0
    for col in lat.reshape(lat.shape[0], -1).T:
        z = int(np.argmax(~((col == SE) | (col == SEI))))
        if col[z] == NA:
            while z < col.size and col[z] == NA:
                z += 1
        bearing += bool(z < col.size and col[z] == CC)
    return {
        "na_per_column": (lat == NA).sum(axis=0),
        "na_top": lat.shape[0] - np.argmax((lat == NA)[::-1], axis=0),  # z + 1 of the highest Na voxel
        "surface_faces": int(faces_with(electrolyte, ~electrolyte).sum()),
        "contact_map": faces_with(electrolyte, (lat == CC) | active),
        "na_contact_faces": int(faces_with(electrolyte, active).sum()),
        "void_faces": int(faces_with(electrolyte, lat == GAP).sum()),
        "bearing_columns": bearing,
        "nuclei": active_ids.size,
        "active": int(active.sum()), "trapped": int(in_pores.sum()),
        "stranded": int((held & ~in_pores).sum()), "dead": int(dead.sum()),
    }


def constants(sc):
    a = sc.get("lattice.voxel_um")
    vox_mah = units.thickness_to_capacity_mah_cm2(a, sc.materials["na"]["molar_volume_cm3_mol"]) / N**2
    return a, vox_mah, N**2 * (a * 1e-4) ** 2


# -- the checks ------------------------------------------------------------------------------------------

def test_the_run_walks_plating_rest_and_stripping_with_contacts_throughout(cell_run):
    """The run has what the recount must see: contacts while plating, at rest and while stripping, voids
    opened by the strip, several nuclei, and Na left behind at the cut-off."""
    _, ds, rc = cell_run
    j = ds.current_density.values
    assert (j > 0).any() and (j == 0).any() and (j < 0).any()
    resting_or_stripping = np.flatnonzero(j <= 0)[:-1]  # the last: Na run out, the cut-off
    assert all(rc[k]["contact_map"].sum() > 0 for k in resting_or_stripping)
    assert max(r["void_faces"] for r in rc[len(rc) // 2:]) > 0
    assert max(r["nuclei"] for r in rc) >= 3
    assert rc[-1]["trapped"] + rc[-1]["stranded"] + rc[-1]["dead"] > 0


def test_contact_map_counts_contact_faces_per_pixel_whatever_the_current(cell_run):
    """``contact_map``: conductor–electrolyte faces per pixel (in the column of the electrolyte voxel),
    at every frame: plating, at rest, stripping. Planted fault: the map as ``current > 0`` (what it
    was: zero everywhere at rest and while stripping) fails it."""
    _, ds, rc = cell_run
    for k, r in enumerate(rc):
        np.testing.assert_array_equal(ds.contact_map.values[k], r["contact_map"], err_msg=f"frame {k}")


def test_face_fractions_recounted(cell_run):
    """``contact_fraction``, ``na_contact_fraction``, ``void_fraction``: faces of the electrolyte surface
    facing a conductor (CC or active Na), active Na, and a gap, over every face of the surface. Planted
    fault: Na of trapped clusters counted as contact fails it."""
    _, ds, rc = cell_run
    for k, r in enumerate(rc):
        surface = r["surface_faces"]
        assert float(ds.contact_fraction[k]) == pytest.approx(r["contact_map"].sum() / surface, rel=1e-12), k
        assert float(ds.na_contact_fraction[k]) == pytest.approx(r["na_contact_faces"] / surface, rel=1e-12), k
        assert float(ds.void_fraction[k]) == pytest.approx(r["void_faces"] / surface, rel=1e-12), k


def test_load_fraction_recounted(cell_run):
    """``load_fraction``: columns where the CC rests on the electrolyte or Na bridges them without a gap.
    Planted fault: Na supports not counted fails it."""
    _, ds, rc = cell_run
    for k, r in enumerate(rc):
        assert float(ds.load_fraction[k]) == pytest.approx(r["bearing_columns"] / N**2, rel=1e-12), k


def test_nucleation_density_and_na_inventories_recounted(cell_run):
    """``nucleation_density``: Na clusters touching the electrolyte and connected to the collector, per
    cm²; ``dead_na`` (clusters not touching the CC), ``trapped_na`` (touching the CC, not the
    electrolyte, in the collector's pores) and ``stranded_na`` (the same below the collector's lower
    face, in gaps) in mAh/cm². Planted faults: trapped Na counted as dead, or all of the connected Na
    without an electrolyte face counted as trapped, fail it."""
    sc, ds, rc = cell_run
    _, vox_mah, area_cm2 = constants(sc)
    for k, r in enumerate(rc):
        assert float(ds.nucleation_density[k]) == pytest.approx(r["nuclei"] / area_cm2, rel=1e-12), k
        assert float(ds.dead_na[k]) == pytest.approx(r["dead"] * vox_mah, rel=1e-12, abs=1e-15), k
        assert float(ds.trapped_na[k]) == pytest.approx(r["trapped"] * vox_mah, rel=1e-12, abs=1e-15), k
        assert float(ds.stranded_na[k]) == pytest.approx(r["stranded"] * vox_mah, rel=1e-12, abs=1e-15), k
    assert any(r["stranded"] > 0 for r in rc)  # the split is exercised


def test_thickness_map_mean_and_cv_recounted_up_to_the_pending_layer(cell_run):
    """``thickness_map``: the height of each column's Na top above the electrolyte's continuous surface
    (the store's ``surface_height``; 0 without Na), plus the sealed layer's pending volume spread
    evenly — not in the snapshot, so bounded: the map minus the recount is one offset over the columns,
    of less than a voxel (|pending| < one layer). ``thickness_mean`` is the recount's mean plus that
    offset, ``thickness_cv`` the recount's standard deviation over that mean. Planted fault: the map
    without the pending volume's spread, or the CV over the mean without it, fails it."""
    sc, ds, rc = cell_run
    a, _, _ = constants(sc)
    offsets = []
    surface = ds.surface_height.values
    assert np.all(surface > 0) and np.ptp(surface) > 0
    for k, r in enumerate(rc):
        counted = np.where(r["na_per_column"] > 0, r["na_top"] * a - surface, 0.0)
        offset = ds.thickness_map.values[k].astype(np.float64) - counted
        assert np.ptp(offset) <= 1e-5, (k, offset.min(), offset.max())  # float32 map
        offsets.append(offset.mean())
        assert abs(offsets[-1]) < a, (k, offsets[-1])
        mean = float(ds.thickness_mean[k])
        assert mean == pytest.approx(counted.mean() + offsets[-1], abs=1e-5), k
        if mean > 0:
            assert float(ds.thickness_cv[k]) == pytest.approx(counted.std() / mean, rel=1e-9), k
    assert np.any(np.array(offsets) != 0.0)  # the bound is exercised: some pending volume was held


def test_current_map_and_the_na_balance(cell_run):
    """``current_map`` (the last solve's pixel currents): its largest magnitude is
    ``max_current_density``, its mean the applied current while the faces carry it, zero at rest.
    The Na balance: the recounted Na metal plus the pending volume (the thickness map's offset) equals
    plated − stripped − alloy − interphase − flaws, up to the debts not yet taken from the lattice
    (Na still there): less than a voxel each of E8 and chemical alloying, and of E7 at most what the
    interphase grew since the previous sample (it is paid at the next solve, and NASICON's calibrated
    interphase grows several voxels a minute over a fresh contact). Planted faults: the current map in
    A/cm² rather than mA/cm², or ``plated`` without the alloy's share, fail it."""
    sc, ds, rc = cell_run
    a, vox_mah, _ = constants(sc)
    j = ds.current_density.values
    for k, r in enumerate(rc):
        current = ds.current_map.values[k].astype(np.float64)
        assert float(ds.max_current_density[k]) == pytest.approx(np.abs(current).max(), rel=1e-6, abs=1e-9), k
        if j[k] == 0:
            assert np.abs(current).max() < 1e-9, k  # round-off of a solve at zero current
        elif k > 0 and abs(float(ds.voltage[k])) < 1.0:  # carried by the faces (not the cut-off's jump)
            assert current.mean() == pytest.approx(j[k], rel=1e-4), k
        metal = float(ds.plated[k] - ds.stripped[k] - ds.alloy_na[k] - ds.sei_na[k] - ds.flaw_na[k]) / vox_mah
        height = np.where(r["na_per_column"] > 0, r["na_top"] * a - ds.surface_height.values, 0.0)
        pending = float((ds.thickness_map.values[k] - height).mean()) / a * N**2
        debts = r["na_per_column"].sum() + pending - metal  # voxels
        grown = float(ds.sei_na[k] - ds.sei_na[k - 1]) / vox_mah if k > 0 else 0.0
        assert -1e-2 <= debts < 3.0 + grown, (k, debts, grown)


def test_a_nucleus_is_a_cluster_on_the_collector_touching_the_electrolyte(tmp_path):
    """On a fresh foil cell: a Na pillar from the electrolyte up to the collector is one nucleus; a Na
    island on the electrolyte cut off from the collector is dead Na, not a nucleus. Planted fault:
    nuclei counted as every cluster touching the electrolyte (the island too) fails it."""
    from kmc.battery import BatteryModel, Run

    sc = cell_scenario(tmp_path / "nuclei.toml", PROTOCOL, 60.0, n=N, nz=24, au_nm=96.0)
    model = BatteryModel(sc)
    state = model.new_state(1)
    lat = state.lattice.reshape(24, N, N)
    electrolyte = (lat == SE) | (lat == SEI)
    top = 24 - 1 - np.argmax(electrolyte[::-1], axis=0)  # highest electrolyte voxel per column
    bottom = np.argmax(lat == CC, axis=0)  # lowest collector voxel per column
    gap = bottom - top - 1
    y0, x0 = np.unravel_index(np.argmax(gap), gap.shape)  # the widest gap: a pillar there
    lat[top[y0, x0] + 1:bottom[y0, x0], y0, x0] = NA
    # The island: one voxel of a gap on the electrolyte, touching neither the collector nor the pillar.
    free = (lat == GAP) & next_to(electrolyte) & ~next_to((lat == CC) | (lat == NA))
    z1, y1, x1 = np.argwhere(free)[0]
    lat[z1, y1, x1] = NA
    rc = model.observer.recount(Run(state))
    assert rc["nuclei"] == 1
    assert rc["dead"] == 1 and rc["active"] == gap[y0, x0]
