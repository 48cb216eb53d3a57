"""``kmc plot`` on a small real battery store (T2 on a 16² lattice, two replicas) and on a hop store;
the figures the battery driver cannot make yet (cycles, CCD, shorts) from a synthetic sweep."""
import os

import numpy as np
import pytest
from click.testing import CliRunner
from test_analysis import synthetic  # tests/ is on sys.path under pytest

import kmc
from kmc.cli import main

SCENARIOS = os.path.join(os.path.dirname(__file__), "..", "scenarios")
T2_SMALL = ["lattice.nx=16", "lattice.ny=16", "protocol.0.capacity_mah_cm2=0.2", "output.sample_every_s=60",
            "output.map_every_samples=2", "output.snapshot_every_samples=4"]
EXPECTED = ["voltage_vs_charge.png", "contact_void_vs_charge.png", "thickness_map_run0.png",
            "current_map_run0.png", "lattice_cut_run0.png", "short_survival.png"]


@pytest.fixture(scope="module")
def battery_store(tmp_path_factory):
    store = tmp_path_factory.mktemp("plot") / "t2.zarr"
    with pytest.MonkeyPatch.context() as mp:
        # The battery driver is still refused without this (work in progress, issue 4).
        mp.setenv("KMC_EXPERIMENTAL_BATTERY", "1")
        scenario = kmc.load_scenario(os.path.join(SCENARIOS, "validation", "T2.toml"), overrides=T2_SMALL)
        kmc.run(scenario, store, replicas=2)
    return store


def plot(*args):
    return CliRunner().invoke(main, ["plot", *map(str, args)])


def test_plot_writes_every_figure_of_a_battery_store(battery_store, tmp_path):
    out = tmp_path / "figs"
    result = plot(battery_store, "-o", out)
    assert result.exit_code == 0, result.output
    for name in EXPECTED:
        png = out / name
        assert png.is_file() and png.stat().st_size > 1000, name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"wrote {png}" in result.output
    # Only those: a plating store has no cycles and no CCD (its short variables give a survival curve,
    # flat at 1 when no run shorted).
    assert sorted(p.name for p in out.iterdir()) == sorted(EXPECTED)


def test_plot_options_and_bad_input(battery_store, tmp_path):
    result = plot(battery_store, "-o", tmp_path / "r1", "--run", 1, "--frames", "0,-1", "--snaps", "-1")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r1" / "thickness_map_run1.png").stat().st_size > 0
    for args, needle in ((["--run", 7], "--run"), (["--frames", "99"], "frame 99"), (["--frames", "a"], "--frames")):
        result = plot(battery_store, "-o", tmp_path / "bad", *args)
        assert result.exit_code == 2, (args, result.output)
        assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()  # bad input: nothing written
    result = plot(tmp_path / "missing.zarr")
    assert result.exit_code == 2 and "not a kmc store" in result.stderr


def test_plot_on_a_hop_store_says_what_does_not_apply(tmp_path):
    store = tmp_path / "hop.zarr"
    kmc.run(kmc.load_scenario(os.path.join(SCENARIOS, "hop.toml"), overrides=["hop.size=8", "hop.duration_s=1"]),
            store)
    result = plot(store, "-o", tmp_path / "figs")
    assert result.exit_code == 0, result.output
    assert "has none of their variables" in result.output
    # Only the lattice cut applies (the hop model stores lattice snapshots).
    assert [p.name for p in (tmp_path / "figs").iterdir()] == ["lattice_cut_run0.png"]


def test_cycle_ccd_and_short_figures_from_a_synthetic_sweep(tmp_path):
    # The battery driver does not write cycles, CCD or shorts yet: draw them from test_analysis's
    # synthetic 2-point sweep, with a stripping step added.
    ds = synthetic()
    ds["ccd"] = ("run", [1.0, 1.2, 1.1, 2.0, 2.4, 2.2, np.nan], {"units": "mA cm-2", "long_name": "critical current density"})
    ds["current_density"][:, 3:] = -0.5
    ds["step"][:, 3:] = 1
    written = ds.kmc.figures(tmp_path)
    names = sorted(p.name for p in written.files)
    assert names == ["ccd_histogram.png", "ce_vs_cycle.png", "contact_void_vs_charge.png", "short_survival.png",
                     "voltage_vs_charge.png"]
    assert all(p.stat().st_size > 1000 for p in written.files)
    assert set(written.skipped) == {"thickness_map_run0", "current_map_run0", "stress_map_run0", "lattice_cut_run0"}


def test_plot_draws_the_deposit_stress_when_the_run_computes_it(battery_store, tmp_path):
    """``stress_map_run0.png`` for a run with ``model.insertion = "least_stress"``; for the default law
    (NaN stress) the figure is skipped with its reason, not drawn empty."""
    store = tmp_path / "ls.zarr"
    scenario = kmc.load_scenario(os.path.join(SCENARIOS, "validation", "T2.toml"),
                                 overrides=T2_SMALL + ['model.insertion="least_stress"'])
    kmc.run(scenario, store, replicas=1)
    result = plot(store, "-o", tmp_path / "ls")
    assert result.exit_code == 0, result.output
    png = tmp_path / "ls" / "stress_map_run0.png"
    assert png.is_file() and png.stat().st_size > 1000
    from kmc.analysis.figures import write_figures

    written = write_figures(kmc.open(battery_store), tmp_path / "default")
    assert not (tmp_path / "default" / "stress_map_run0.png").exists()
    assert "least_stress" in written.skipped["stress_map_run0"]
