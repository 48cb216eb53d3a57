"""E9: Na enters a collector pore only above the capillary entry pressure and only to its extrusion depth
(``kmc.pores``), through the production kernels: the insertion (``kmc.kernels.plating.insertion_site``),
the moves (``kmc.kernels.moves``: loaded flow and capillary relocation), and the whole model on a porous
pellet."""
import math

import numpy as np
import pytest
from battery_runs import validation

from kmc import pores
from kmc.battery import BatteryModel, Run
from kmc.kernels.capillary import EPS_AU, EPS_SIZE
from kmc.kernels.cell import CC, GAP, NA, SE
from kmc.kernels.interface import COLUMN_NA_SUPPORT
from kmc.kernels.moves import (
    M_CREEP_K,
    M_CREEP_N,
    M_LOADED_FLOW,
    M_NU_CAP,
    M_SIGMA_NA,
    M_SIGMA_REF,
    N_MOVE_PARAMS,
    fill_move_leaves,
    run_moves,
)
from kmc.kernels.plating import insertion_site
from kmc.kernels.solver import STOP_NO_EVENTS, tree_build, tree_new

GAMMA, PAIR_CU, RADIUS, SIGMA_REF, SIZE_STRENGTH, SIZE_EXP = 0.2, -0.1, 1.4, 0.235, 13.8, 1.0  # materials.toml


def test_entry_pressure_and_extrusion_law_by_hand():
    """θ_Cu = 120° (W_adh = γ/2): p_entry = 2γ·0.5/r_p = 0.1429 MPa at r_p = 1.4 µm; σ_f = 0.235 + 13.8/2.8 =
    5.164 MPa, τ_f = σ_f/√3, L = (σ − p_entry) r_p/(2τ_f): 2.314 µm at 10 MPa, 4 voxels of 0.5 µm."""
    entry = pores.entry_pressure_mpa(GAMMA, PAIR_CU, RADIUS)
    assert entry == pytest.approx(2 * 0.2 * 0.5 / 1.4e-6 * 1e-6, rel=1e-12)
    rate = pores.extrusion_um_per_mpa(RADIUS, SIGMA_REF, SIZE_STRENGTH, SIZE_EXP)
    tau = (0.235 + 13.8 / 2.8) / math.sqrt(3)
    assert rate * (10 - entry) == pytest.approx((10 - entry) * 1.4 / (2 * tau), rel=1e-12)
    assert pores.depth_voxels(10.0, entry, rate, 0.5) == 4
    assert pores.depth_voxels(entry * 0.99, entry, rate, 0.5) == 0


def _straight_pore(pore_layers=5):
    """3×3 columns: SE at z = 0, a Na layer at z = 1, the collector from z = 2 with one straight pore up the
    middle column (open to the Na), solid top layer."""
    nx = ny = 3
    nz = pore_layers + 3
    lat = np.full((nz, ny, nx), CC, dtype=np.uint8)
    lat[0] = SE
    lat[1] = NA
    lat[2:2 + pore_layers, 1, 1] = GAP
    return lat.ravel(), nx, ny, nz, np.full(nx * ny, 2, dtype=np.int64)


@pytest.mark.parametrize("stress_mpa", [0.1, 3.0, 10.0, 20.0])
def test_plated_na_fills_a_straight_pore_to_the_extrusion_depth(stress_mpa):
    """Plating at the face under the pore fills it from its mouth, one voxel per event, exactly the
    extrusion law's whole voxels deep (none below the entry pressure, 0.14 MPa), then finds no room.
    Shown to fail with the admissibility test removed (all 5 pore voxels filled at any stress)."""
    lat, nx, ny, nz, cc_bottom = _straight_pore()
    voxel = 0.5
    entry = pores.entry_pressure_mpa(GAMMA, PAIR_CU, RADIUS)
    depth = pores.depth_voxels(stress_mpa, entry, pores.extrusion_um_per_mpa(RADIUS, SIGMA_REF, SIZE_STRENGTH,
                                                                             SIZE_EXP), voxel)
    nxy = nx * ny
    c, e = 4 + nxy, 4  # the Na voxel under the pore and the electrolyte below it
    queue, visited = np.zeros(lat.size, dtype=np.int64), np.zeros(lat.size, dtype=np.uint8)
    filled = 0
    for _ in range(10):
        g = insertion_site(c, e, lat, np.zeros(nxy, dtype=np.uint8), nx, ny, nz, np.zeros(EPS_SIZE), queue, visited,
                           cc_bottom, depth)
        if g < 0:
            break
        assert g == 4 + (2 + filled) * nxy  # up the pore from its mouth
        lat[g] = NA
        filled += 1
    assert filled == min(depth, 5)
    assert filled == {0.1: 0, 3.0: 1, 10.0: 4, 20.0: 5}[stress_mpa]


# -- E9 in the moves (E4): the production move kernel on the straight pore -----------------------------------

STRESSES_MPA = [0.1, 3.0, 10.0, 20.0]  # below the entry pressure (0.14 MPa), then 1, 4 and 5 (all) pore layers


def _admitted_depth(stress_mpa, voxel_um=0.5):
    """The pore layers the extrusion law admits at ``stress_mpa`` (Cu's pores, ``kmc.pores``)."""
    return pores.depth_voxels(stress_mpa, pores.entry_pressure_mpa(GAMMA, PAIR_CU, RADIUS),
                              pores.extrusion_um_per_mpa(RADIUS, SIGMA_REF, SIZE_STRENGTH, SIZE_EXP), voxel_um)


def _na_in_pore(lat, nxy, cc_bottom):
    """Na voxels in the collector body (at or above its lower face), recounted from the lattice, and the
    deepest pore layer holding one (the lower face's layer counted 1; 0 if none)."""
    z = np.arange(lat.size // nxy)[:, None]
    in_body = (lat.reshape(-1, nxy) == NA) & (z >= cc_bottom[None])
    layers = (z - cc_bottom[None] + 1)[in_body]
    return int(in_body.sum()), int(layers.max()) if layers.size else 0


def _move_kernel(lat, nx, ny, nz, move_params, eps, au_column, support):
    """The production move tree over the whole lattice, and a function running its kernel (``run_moves``)
    for a number of events at the admitted ``depth``; returns the kernel's stop code."""
    tree, offsets = tree_new(lat.size)
    clock, counters = np.zeros(1), np.zeros(1, dtype=np.int64)
    rng = np.random.default_rng(7)

    def run(cc_bottom, depth, events):
        fill_move_leaves(tree, lat, au_column, support, cc_bottom, depth, nx, ny, nz, eps, move_params, 0, lat.size)
        tree_build(tree, offsets)
        return run_moves(lat, au_column, support, cc_bottom, depth, eps, move_params, tree, offsets, nx, ny, nz, clock,
                         counters, rng, events, np.inf)

    return run


@pytest.mark.parametrize("stress_mpa", STRESSES_MPA)
def test_loaded_flow_fills_a_straight_pore_exactly_to_the_admitted_depth(stress_mpa):
    """Loaded Na (E4a creep under the frozen σ, every column a Na support as a solve would freeze a loaded
    layer) flows into the straight pore above it until no move is left: the pore then holds exactly the
    admitted depth's voxels, recounted from the lattice (none below the entry pressure), never more.
    Shown to fail with the admissibility test dropped from the move targets (kmc.kernels.moves.is_target):
    all 5 pore voxels filled at every stress."""
    lat, nx, ny, nz, cc_bottom = _straight_pore()
    nxy = nx * ny
    move_params = np.zeros(N_MOVE_PARAMS)
    move_params[[M_CREEP_K, M_SIGMA_REF, M_CREEP_N, M_SIGMA_NA, M_LOADED_FLOW]] = 1.0, 1.0, 1.0, stress_mpa, 1.0
    support = np.full(nxy, COLUMN_NA_SUPPORT, dtype=np.int64)
    depth = _admitted_depth(stress_mpa)
    run = _move_kernel(lat, nx, ny, nz, move_params, np.zeros(EPS_SIZE), np.zeros(nxy, dtype=np.uint8), support)
    assert run(cc_bottom, depth, 1000) == STOP_NO_EVENTS  # the flow has stopped by itself
    assert _na_in_pore(lat, nxy, cc_bottom) == (min(depth, 5), min(depth, 5))
    assert min(depth, 5) == {0.1: 0, 3.0: 1, 10.0: 4, 20.0: 5}[stress_mpa]


@pytest.mark.parametrize("stress_mpa", STRESSES_MPA[:3])
def test_capillary_moves_never_carry_na_below_the_admitted_depth(stress_mpa):
    """Unloaded Na relocating by capillary moves (E4b) up a pore whose walls it wets (Au-covered: the walls
    pull it in) reaches the admitted depth but never passes it: the deepest Na, recounted from the lattice
    after every event of 4000, is at most the depth and equals it at some time (none in the pore below the
    entry pressure). Shown to fail with the admissibility test dropped from the move targets
    (kmc.kernels.moves.is_target): Na reaches the pore's fifth layer at every stress."""
    lat, nx, ny, nz, cc_bottom = _straight_pore()
    nxy = nx * ny
    eps = np.zeros(EPS_SIZE)
    eps[NA], eps[GAP], eps[SE], eps[CC], eps[EPS_AU] = -0.6, 0.6, -0.2, 0.3, -0.6
    move_params = np.zeros(N_MOVE_PARAMS)  # no load: capillary moves only
    move_params[M_NU_CAP] = 1.0
    depth = _admitted_depth(stress_mpa)
    run = _move_kernel(lat, nx, ny, nz, move_params, eps, np.ones(nxy, dtype=np.uint8),
                       np.zeros(nxy, dtype=np.int64))
    na0 = int((lat == NA).sum())
    deepest = []
    for _ in range(4000):
        run(cc_bottom, depth, 1)
        deepest.append(_na_in_pore(lat, nxy, cc_bottom)[1])
    assert int((lat == NA).sum()) == na0  # relocations conserve the Na
    assert max(deepest) == depth


# -- E9 by every route: the production model on a porous Cu pellet --------------------------------------------

@pytest.mark.parametrize("pressure_mpa", [0.05, 10.0])
def test_a_porous_pellet_fills_its_pores_only_to_the_depth_its_solves_admit(pressure_mpa):
    """A porous Cu pellet (21 %, 8 µm square, 2 µm of Na in place) plated and stripped 0.3 mAh/cm² by the
    production model: before every field solve and at every sample, the deepest Na in the collector body,
    recounted from the lattice, is no deeper than the deepest layer any solve has admitted so far
    (``limits[L_PORE_DEPTH]``, the extrusion depth at the solve's stress) — whatever put it there:
    insertion, capillary moves, loaded flow, the collector's lifts and descents. Below the entry pressure
    (0.05 MPa: the supports' σ stays under 0.14 MPa) no solve admits a layer and no Na enters a pore; at
    10 MPa the Na reaches at least the law's depth at P (4 layers). Shown to fail with the admissibility
    test dropped from the move targets (kmc.kernels.moves.is_target): Na one layer into the pores at
    0.05 MPa, 12 layers deep at 10 MPa where 5 were admitted; and at 10 MPa (16 layers) with the battery
    kernel's tree refresh passing the lattice height as the depth (kmc.kernels.battery_update.refresh)."""
    model = BatteryModel(validation("D1_pellet", **{
        "lattice.nx": 16, "lattice.ny": 16, "lattice.nz": 24, "collector.material": "cu", "collector.porosity": 0.21,
        "collector.initial_na_um": 2.0, "conditions.stack_pressure_mpa": pressure_mpa,
        "protocol.0.capacity_mah_cm2": 0.3, "protocol.1.capacity_mah_cm2": 0.3}))
    p = model.params
    state = model.new_state(3)
    run = Run(state)
    admitted, deepest = [0], []

    def check():
        deepest.append(_na_in_pore(run.lattice, p.n_cols, run.cc_bottom)[1])
        assert deepest[-1] <= admitted[0]

    solve = model.driver.solve

    def solve_checked(run_, *args, **kwargs):
        check()
        solve(run_, *args, **kwargs)
        admitted[0] = max(admitted[0], int(run_.pore_depth_voxels))

    model.driver.solve = solve_checked
    k, last = 0, None
    while (obs := model.advance_sample(state, k)) is not None:
        check()
        k, last = k + 1, obs
    assert last["stripped"] > 0.29  # the whole protocol ran
    # The supports' σ is P over the load-bearing fraction, at least P: the law's depth at P is reached.
    at_p = pores.depth_voxels(pressure_mpa, p.pore_entry_mpa, p.pore_um_per_mpa, p.voxel_um)
    assert max(deepest) >= at_p and admitted[0] >= at_p
    if pressure_mpa < p.pore_entry_mpa:
        assert admitted[0] == 0 and max(deepest) == 0
    else:
        assert at_p == 4
