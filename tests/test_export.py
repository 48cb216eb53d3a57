"""``kmc export OUT.zarr --vtk DIR``: the VTK files read back independently and compared value for value
with the store.

The files are decoded here with the standard library and numpy alone (XML header, raw appended
blocks each led by a UInt64 byte count, strings as null-terminated byte values), so a fault in how
the exporter lays out the voxels, times or legend shows as a difference from the store.
"""
import json
import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from click.testing import CliRunner

import kmc
from kmc.api import plan_replicas, plan_sweep
from kmc.cli import main
from kmc.executors import run_serial

SCENARIOS = os.path.join(os.path.dirname(__file__), "..", "scenarios")
T2_SMALL = ["lattice.nx=8", "lattice.ny=8", "protocol.0.capacity_mah_cm2=0.05",
            "output.snapshot_every_samples=1", "output.map_every_samples=1"]
MAPS = ("thickness_map", "contact_map", "current_map", "stress_map")  # the last: v4, NaN unless computed
VTK_TYPES = {"UInt8": "u1", "Int8": "i1", "UInt16": "u2", "Int16": "i2", "UInt32": "u4", "Int32": "i4",
             "UInt64": "u8", "Int64": "i8", "Float32": "f4", "Float64": "f8"}


@pytest.fixture(scope="module")
def battery_store(tmp_path_factory):
    """T2 on 8×8 columns, a snapshot and a map every sample; run 1 plates half the charge, so it ends
    early and its later slots are fill (the store is sized by run 0)."""
    store = tmp_path_factory.mktemp("export") / "t2.zarr"
    base = kmc.load_scenario(os.path.join(SCENARIOS, "validation", "T2.toml"), overrides=T2_SMALL)
    plan = plan_sweep({"base": base, "vary": {"protocol.0.capacity_mah_cm2": [0.05, 0.025]}})
    plan.create(store)
    assert run_serial(store, [0, 1], progress=False) == {0: "done", 1: "done"}
    return store


@pytest.fixture(scope="module")
def hop_store(tmp_path_factory):
    """A 6³ hop store of two replicas of which only run 0 ran (run 1 stays pending)."""
    store = tmp_path_factory.mktemp("export") / "hop.zarr"
    sc = kmc.load_scenario(os.path.join(SCENARIOS, "hop.toml"),
                           overrides=["hop.size=6", "hop.duration_s=1", "output.snapshot_every_samples=1"])
    plan_replicas(sc, replicas=2).create(store)
    assert run_serial(store, [0], progress=False) == {0: "done"}
    return store


def export(*args):
    return CliRunner().invoke(main, ["export", *map(str, args)])


# -- an independent reader of what the exporter writes ----------------------------------------------
def read_vti(path):
    """(header ImageData element, {cell array: (z, y, x) array}, {field array: values}) of a .vti file."""
    raw = path.read_bytes()
    cut = raw.index(b"<AppendedData")
    root = ET.fromstring(raw[:cut] + b"</VTKFile>")
    assert root.get("type") == "ImageData" and root.get("header_type") == "UInt64"
    order = {"LittleEndian": "<", "BigEndian": ">"}[root.get("byte_order")]
    blob = raw[raw.index(b"_", cut) + 1:]
    image = root.find("ImageData")
    extent = [int(v) for v in image.get("WholeExtent").split()]
    assert extent[0::2] == [0, 0, 0]
    nx, ny, nz = (max(extent[i + 1], 1) for i in (0, 2, 4))  # a 2D image (z extent 0) has one layer of cells
    cells = {}
    for da in image.find("Piece").find("CellData"):
        assert da.get("format") == "appended" and da.get("NumberOfComponents") == "1"
        at = int(da.get("offset"))
        n_bytes = int(np.frombuffer(blob, order + "u8", count=1, offset=at)[0])
        dtype = np.dtype(order + VTK_TYPES[da.get("type")])
        values = np.frombuffer(blob, dtype, count=n_bytes // dtype.itemsize, offset=at + 8)
        cells[da.get("Name")] = values.reshape(nz, ny, nx)  # VTK's cell order: x fastest, then y, then z
    fields = {}
    for da in image.find("FieldData"):
        numbers = [int(v) if da.get("type") != "Float64" else float(v) for v in da.text.split()]
        if da.get("type") == "String":  # byte values, each string ended by 0
            fields[da.get("Name")] = bytes(numbers).decode("utf-8").split("\0")[:-1]
        else:
            fields[da.get("Name")] = numbers
        assert len(fields[da.get("Name")]) == int(da.get("NumberOfTuples"))
    return image, cells, fields


def read_pvd(path):
    """[(time s, file path)] of a ParaView collection file."""
    root = ET.parse(path).getroot()
    assert root.get("type") == "Collection"
    return [(float(d.get("timestep")), path.parent / d.get("file")) for d in root.find("Collection")]


def check_export(store, out, run, with_maps=True):
    """Every exported value, time and legend entry against the store; returns the written slot indices."""
    ds = kmc.open(store).load()
    lattice = ds.lattice.isel(run=run).values
    written_snaps = [k for k in range(ds.sizes["snap"]) if not np.all(lattice[k] == 255)]
    legend = dict(zip(ds.lattice.attrs["flag_values"], ds.lattice.attrs["flag_meanings"].split()))
    step = {a: float(ds[a].values[1] - ds[a].values[0]) for a in "xyz"}

    series = read_pvd(out / f"lattice_run{run}.pvd")
    assert [t for t, _ in series] == list(ds.snap_time.isel(run=run).values[written_snaps])
    assert sorted(out.glob(f"lattice_run{run}_*.vti")) == sorted(f for _, f in series)
    for k, (t, path) in zip(written_snaps, series):
        image, cells, fields = read_vti(path)
        assert [float(v) for v in image.get("Spacing").split()] == [step["x"], step["y"], step["z"]]
        origin = [float(v) for v in image.get("Origin").split()]
        assert origin == [float(ds[a].values[0]) - step[a] / 2 for a in "xyz"]
        assert cells["state"].dtype == np.uint8
        np.testing.assert_array_equal(cells["state"], lattice[k])
        assert fields["TimeValue"] == [t]
        assert dict(zip(fields["state_code"], fields["state_meaning"])) == legend

    saved = json.loads((out / "legend.json").read_text())
    assert saved["state"] == {str(c): m for c, m in legend.items()}
    assert saved["spacing"] == step and saved["length_units"] == ds.x.attrs["units"]
    if not with_maps:
        assert not list(out.glob("maps_*"))
        return written_snaps, []

    names = [name for name in MAPS if name in ds]
    maps = {name: ds[name].isel(run=run).values for name in names}
    written_frames = [k for k in range(ds.sizes["frame"]) if not all(np.isnan(m[k]).all() for m in maps.values())]
    series = read_pvd(out / f"maps_run{run}.pvd")
    assert [t for t, _ in series] == list(ds.frame_time.isel(run=run).values[written_frames])
    assert sorted(out.glob(f"maps_run{run}_*.vti")) == sorted(f for _, f in series)
    for k, (t, path) in zip(written_frames, series):
        image, cells, fields = read_vti(path)
        assert image.get("WholeExtent") == f"0 {ds.sizes['x']} 0 {ds.sizes['y']} 0 0"  # a 2D image
        assert sorted(cells) == sorted(names)
        for name in names:
            assert cells[name].dtype == maps[name].dtype
            np.testing.assert_array_equal(cells[name][0], maps[name][k])
        assert fields["TimeValue"] == [t]
    assert {name: m["units"] for name, m in saved["maps"].items()} == {n: ds[n].attrs["units"] for n in names}
    return written_snaps, written_frames


# -- tests ---------------------------------------------------------------------------------------------
def test_every_snapshot_and_map_of_a_run_reads_back_as_in_the_store(battery_store, tmp_path):
    """Each voxel's state, each map value, the spacing (0.5 µm), the .pvd times and the legend equal
    the store's. Fails under a planted fault: the lattice transposed x/y (the 8×8 columns keep the
    extent, only the voxel order changes), or x/z; the .pvd listing file counts instead of times."""
    out = tmp_path / "vtk"
    result = export(battery_store, "--vtk", out)
    assert result.exit_code == 0, result.output
    snaps, frames = check_export(battery_store, out, run=0)
    ds = kmc.open(battery_store)
    assert len(snaps) == ds.sizes["snap"] and len(frames) == ds.sizes["frame"]  # run 0 fills its store
    assert len(snaps) >= 5
    # Not a trivial lattice: the exported states hold sodium plated on the electrolyte.
    _, cells, _ = read_vti(out / f"lattice_run0_{snaps[-1]:04d}.vti")
    assert {1, 2, 3} <= set(np.unique(cells["state"]))
    assert f"wrote {len(snaps)} lattice snapshot(s) of run 0" in result.output


def test_a_run_that_ended_early_exports_only_its_written_slots(battery_store, tmp_path):
    """Run 1 plates half of run 0's charge: its slots past the end are fill and are left out of the
    files and the .pvd. Fails under a planted fault: no skipping (fill slots exported as 255 states)."""
    out = tmp_path / "vtk"
    result = export(battery_store, "--vtk", out, "--run", 1)
    assert result.exit_code == 0, result.output
    snaps, frames = check_export(battery_store, out, run=1)
    ds = kmc.open(battery_store)
    n_skipped = ds.sizes["snap"] - len(snaps)
    assert 0 < n_skipped and snaps == list(range(len(snaps)))  # written ones first, then fill
    assert ds.sizes["frame"] - len(frames) > 0
    assert f"skipped {n_skipped} snapshot(s)" in result.output


def test_a_hop_store_exports_its_lattice_in_site_units(hop_store, tmp_path):
    """The hop model: no maps, coordinates are site indices (spacing 1, voxels centred on them), the
    legend "empty occupied". Fails under a planted fault: the legend taken from the battery's states."""
    out = tmp_path / "vtk"
    result = export(hop_store, "--vtk", out)
    assert result.exit_code == 0, result.output
    snaps, _ = check_export(hop_store, out, run=0, with_maps=False)
    assert len(snaps) == kmc.open(hop_store).sizes["snap"]
    image, cells, fields = read_vti(out / "lattice_run0_0000.vti")
    assert image.get("Spacing").split() == ["1.0", "1.0", "1.0"] and image.get("Origin").split() == ["-0.5"] * 3
    assert fields["state_meaning"] == ["empty", "occupied"]
    assert cells["state"].sum() == 108  # half of the 6³ sites occupied, as the hop model starts


def test_bad_input_is_one_line_exit_2_and_nothing_written(battery_store, hop_store, tmp_path):
    """Not a store, --run out of range, DIR a file, a run with nothing written: one line on stderr
    naming what was wrong, exit code 2, no DIR. Fails under a planted fault: DIR created before the
    checks."""
    plain_dir = tmp_path / "plain"
    plain_dir.mkdir()
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    cases = [
        ((tmp_path / "missing.zarr",), "OUT.zarr"),
        ((plain_dir,), "OUT.zarr"),
        ((a_file,), "OUT.zarr"),
        ((battery_store, "--run", 2), "--run = 2"),
        ((battery_store, "--run", -1), "--run = -1"),
        ((hop_store, "--run", 1), "--run = 1"),  # pending: nothing written yet
    ]
    for (store, *options), needle in cases:
        out = tmp_path / "out"
        result = export(store, "--vtk", out, *options)
        assert result.exit_code == 2, (store, options, result.output)
        assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert not out.exists(), (store, options)
    result = export(battery_store, "--vtk", a_file)
    assert result.exit_code == 2 and "--vtk" in result.stderr and "is a file" in result.stderr
    assert a_file.read_text() == "keep me"
    result = export(battery_store)
    assert result.exit_code == 2 and "--vtk" in result.stderr
