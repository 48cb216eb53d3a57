"""E3 under ``model.alloy = "phases"`` (PHYSICS §5 E3): the lateral alloy front, the Na–Au phases'
capacity and thickness, and de-alloying only above its potential where the alloy faces the electrolyte."""
import math

import numpy as np
import pytest

from battery_runs import validation
from kmc import units
from kmc.battery import Run, alloy
from kmc.kernels import faradaic as kf
from kmc.kernels.alloy_front import advance_alloy_front
from kmc.kernels.cell import CC, SE, SEI
from kmc.model import model_for


def _strip_of_au(nx=21, ny=3):
    """A collector whose Au is one row (y = 1) of nx columns; the column x = 10 alloyed."""
    col_state = np.full(nx * ny, kf.CC_BARE, dtype=np.uint8)
    au = np.zeros(nx * ny, dtype=np.uint8)
    row = np.arange(nx) + nx
    col_state[row] = kf.CC_AU
    au[row] = 1
    col_state[nx + 10] = kf.CC_AU_ALLOYED
    return col_state, au, np.full(nx * ny, np.nan)


def test_the_alloy_front_has_moved_v_t_along_an_au_strip_whatever_the_solve_interval():
    """Known answer: at v = 1.4e-5 µm/s and a = 0.5 µm a column takes a/v = 35 714 s; after t = 3.6 a/v
    the front has crossed 3 columns each way (distance v t = 1.8 µm, 3 whole columns), each timed at its
    arrival k·a/v, though only one pass is made at t; the bare rows never alloy. Fails under the
    planted fault "the pass stops after one sweep over the columns" (the front then crosses one column
    per pass against the sweep's order: 4 columns alloyed, not 6)."""
    nx, voxel_um, v = 21, 0.5, 1.4e-5
    step = alloy.front_s_per_column(voxel_um, v)
    assert step == pytest.approx(voxel_um / v)
    col_state, au, t_alloy = _strip_of_au(nx)
    cols = np.empty(col_state.size, dtype=np.int64)
    assert advance_alloy_front(col_state, au, t_alloy, nx, 3, 0.0, step, cols) == (0, 0)  # timed at t = 0
    t = 3.6 * step
    n, steps = advance_alloy_front(col_state, au, t_alloy, nx, 3, t, step, cols)
    alloyed_x = np.flatnonzero(col_state[nx:2 * nx] == kf.CC_AU_ALLOYED)
    assert n == 6 and steps == 6 * kf.ALLOY_STEPS
    reach_um = (alloyed_x.max() - 10) * voxel_um
    assert reach_um == math.floor(v * t / voxel_um) * voxel_um == 1.5
    assert (10 - alloyed_x.min()) * voxel_um == reach_um
    np.testing.assert_allclose(t_alloy[nx + alloyed_x], np.abs(alloyed_x - 10) * step)
    assert (col_state[:nx] == kf.CC_BARE).all() and (col_state[2 * nx:] == kf.CC_BARE).all()
    # A second pass later moves it on by the time since: to 7 columns at 7.2 a/v.
    advance_alloy_front(col_state, au, t_alloy, nx, 3, 7.2 * step, step, cols)
    assert (col_state[nx + 3:nx + 18] == kf.CC_AU_ALLOYED).all() and col_state[nx + 2] == kf.CC_AU


def test_a_column_the_front_reaches_part_way_to_na2au_owes_only_its_missing_steps():
    """Known answer: a NaAu2 column (one step of four) reached by the front owes 3/4 of c_au to the
    metal, a bare-Au one all of it. Fails under the planted fault "the front's column owes a whole
    inventory whatever its phase"."""
    col_state = np.array([kf.CC_AU, kf.CC_AU_NAAU2, kf.CC_AU_ALLOYED, kf.CC_AU, kf.CC_AU], dtype=np.uint8)
    t_alloy, cols = np.full(5, np.nan), np.empty(5, dtype=np.int64)
    advance_alloy_front(col_state, np.ones(5, dtype=np.uint8), t_alloy, 5, 1, 0.0, 10.0, cols)
    n, steps = advance_alloy_front(col_state, np.ones(5, dtype=np.uint8), t_alloy, 5, 1, 10.0, 10.0, cols)
    assert n == 2 and steps == 3 + 4


def _phases(name="T2", n=8, **over):
    return validation(name, **{"lattice.nx": n, "lattice.ny": n, "model.alloy": "phases", **over})


def test_the_phases_capacity_per_column_and_thickness_follow_the_molar_volumes():
    """Known answer: 96 nm of Au is 96e-7 cm / 10.195 cm³/mol = 9.416e-7 mol/cm²; Na2Au holds 2 Na per
    Au, 2 × 9.416e-7 × 96 485 / 3.6 = 0.05047 mAh/cm², each of the four steps a quarter; the layer grows
    to 96 × (17.85, 25.5, 33.15, 40.8)/10.195 nm = 168.1, 240.1, 312.2, 384.2 nm. The observer's alloy
    inventory counts a column's steps. Fails under the planted faults "one Na per Au" (capacity
    halved) and "the observer counts only whole Na2Au columns" (the recount's identity breaks)."""
    model = model_for(_phases())
    p = model.params
    assert p.alloy_phases and not model_for(validation("T2", **{"lattice.nx": 8, "lattice.ny": 8})).params.alloy_phases
    mah = 2 * 96e-7 / 10.195 * units.F / 3.6
    assert mah == pytest.approx(0.050474, rel=1e-4)
    assert p.c_au * p.voxel_mah_cm2 == pytest.approx(mah, rel=1e-12)  # per column, as mAh/cm² of its area
    np.testing.assert_allclose(p.alloy_layer_nm, [96.0, 168.08, 240.12, 312.15, 384.19], atol=0.01)
    state = model.new_state(3)
    run = Run(state)
    run.col_state[:4] = (kf.CC_AU_NAAU2, kf.CC_AU_NAAU, kf.CC_AU_NAAU_NA2AU, kf.CC_AU_ALLOYED)
    run.add_count("alloy", 1 + 2 + 3 + 4)  # as if reached by ten E3 steps
    obs = model.observe(state)  # checks the charge identity
    assert obs["alloy_na"] == pytest.approx(10 / 4 * mah / p.n_cols, rel=1e-12)
    np.testing.assert_allclose(alloy.layer_thickness_nm(p, run.col_state)[:5], [168.08, 240.12, 312.15, 384.19, 96.0],
                               atol=0.01)


def _alloyed_cell(seed=5):
    """An 8² Au-Al foil cell with no Na and all its Au Na2Au (so only the alloy can strip)."""
    model = model_for(_phases("T4"))
    state = model.new_state(seed)
    run = Run(state)
    run.col_state[:] = kf.CC_AU_ALLOYED
    run.add_count("alloy", kf.ALLOY_STEPS * model.params.n_cols)
    return model, state, run


def _facing_electrolyte(run, p):
    """Columns whose collector voxel touches the electrolyte from above."""
    b = run.cc_bottom
    below = run.lattice.reshape(p.nz, p.n_cols)[np.maximum(b - 1, 0), np.arange(p.n_cols)]
    return (b > 0) & np.isin(below, (SE, SEI))


@pytest.mark.parametrize("hold_v, dealloys", [(0.3, False), (0.5, True)])
def test_the_alloy_gives_back_its_na_only_above_the_dealloying_potential_where_it_faces_the_electrolyte(hold_v,
                                                                                                        dealloys):
    """Known answer: held at V = 0.3 V vs Na (below the 0.4 V de-alloying potential) nothing strips; at
    0.5 V the alloy strips, each event a step (c_au/4), only in columns whose collector faces the
    electrolyte; the others keep Na2Au, and the charge identity closes. Fails under the planted faults
    "the alloy de-alloys whatever V" (0.3 V strips) and "a de-alloying event does not count" (the
    observer's identity breaks)."""
    model, state, run = _alloyed_cell()
    p, driver = model.params, model.driver
    assert p.dealloying_potential_v == 0.4
    driver.solve_held(run, hold_v)
    facing = _facing_electrolyte(run, p)
    assert 0 < facing.sum() < p.n_cols
    weight = run.alloy_tree[:state.n_sites].reshape(p.nz, p.n_cols)
    weighted_cols = weight.sum(axis=0) > 0
    if not dealloys:
        assert run.kinetics[kf.P_DEALLOY_ON] == 0.0 and not weighted_cols.any() and run.i_far_a == 0.0
        return
    assert run.kinetics[kf.P_DEALLOY_ON] == 1.0 and run.i_far_a < 0.0
    np.testing.assert_array_equal(weighted_cols, facing)
    assert weight[run.lattice.reshape(p.nz, p.n_cols) != CC].sum() == 0.0
    driver.batch(run, run.i_far_a, 60.0)
    steps = alloy.steps_by_column(run.col_state)
    assert run.dealloy_steps > 0
    assert (steps[~facing] == kf.ALLOY_STEPS).all() and steps[facing].sum() < kf.ALLOY_STEPS * facing.sum()
    assert kf.ALLOY_STEPS * p.n_cols - steps.sum() == run.dealloy_steps
    obs = model.observe(state)  # the charge identity closes
    assert obs["stripped"] == pytest.approx(run.dealloy_steps * p.c_au / 4 * p.voxel_mah_cm2 / p.n_cols)
