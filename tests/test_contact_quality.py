"""Contact quality χ as a state of each Na face (PHYSICS.md §4, ``model.contact_quality = "face_state"``,
``kmc.kernels.contact``), through the production driver and batch loop on small hand-built cells.

χ = 1 for a face made by reduction or pressed at σ ≥ σ_χ, ``min(1, σ/σ_χ)`` for a face Na reached by
flow and not pressed since, kept until a void opens there; no floor. What the field solve uses is
read from its faces (``j0`` already carries χ: χ = j0/j0_Na on a Na face). The default model
(``"floor"``) is the golden trajectories' and is not changed by any of this.

The cells: NASICON under a bare Al foil, 4 × 4 columns of 0.5 µm. A column is drawn bottom-up as a
string: ``S`` electrolyte, ``N`` Na, ``.`` gap, ``C`` collector (the rigid body: solid from its
lowest voxel up).
"""
import numpy as np
import pytest
from battery_runs import cell_scenario
from click.testing import CliRunner

import kmc
from kmc.battery import BatteryModel, Run
from kmc.battery.driver import bands
from kmc.cli import main
from kmc.errors import ScenarioError
from kmc.kernels.interface import COLUMN_NA_SUPPORT, COLUMN_OPEN, COLUMN_THINNED, FACE_NA
from kmc.kernels import battery_loop as kloop
from kmc.kernels import contact as kc
from kmc.kernels import faradaic as kf
from kmc.kernels import moves as km
from kmc.kernels.cell import CC, GAP, NA, SE

PROTOCOL = """
[[protocol]]
kind = "plate"
current_ma_cm2 = 0.5
capacity_mah_cm2 = 0.1
"""
CODES = {"S": SE, "N": NA, ".": GAP, "C": CC}
N = 4  # columns per side
OPTION = {"model.contact_quality": "face_state"}


def model_of(tmp_path, pressure_mpa, nz, **overrides):
    path = tmp_path / "chi.toml"
    cell_scenario(path, PROTOCOL, 10.0, n=N, nz=nz, pressure_mpa=pressure_mpa)
    model = BatteryModel(kmc.load_scenario(path, overrides={**OPTION, **overrides}))
    return model, Run(model.new_state(1))


def draw(model, run, columns, contact):
    """Lay out the cell: ``columns`` a string per column (bottom-up), ``contact`` the contact state
    of every Na voxel (``kc.ATOMIC`` or ``kc.BY_FLOW``)."""
    p = model.params
    lat = run.lattice.reshape(p.nz, p.n_cols)
    for col, text in enumerate(columns):
        assert len(text) == p.nz
        lat[:, col] = [CODES[ch] for ch in text]
        run.cc_bottom[col] = text.index("C")
        run.se_surface_um[col] = text.count("S") * p.voxel_um
    run.na_contact[:] = np.where(run.lattice == NA, contact, kc.BY_FLOW)


def site(model, col, z):
    return col + z * model.params.n_cols


def chi_by_pixel(model, run, current_a=0.0):
    """A field solve at ``current_a`` (A); the contact quality of the Na faces it used, by pixel (every
    Na voxel here has one electrolyte face, its bottom one)."""
    model.driver.solve(run, current_a)
    faces, table = model.driver._faces(run, bands(run.lattice, model.params)[0])
    is_na = table.kind == FACE_NA
    j0 = np.broadcast_to(faces.j0_a_cm2, faces.pixel.shape)
    return dict(zip(faces.pixel[is_na].tolist(), (j0[is_na] / run.kinetics[kf.P_J0_NA]).tolist()))


def one_event(model, run):
    """One event of the production batch loop at the last solve's fields."""
    p = model.params
    code = kloop.run_batch(model.driver._cell(run), run.state.rng, abs(run.i_far_a), p.q_v_c, p.c_au, 1, np.inf,
                           p.capacity_drift_factor, False)
    assert code in (kloop.STOP_EVENTS, kloop.STOP_RESOLVE)


def test_a_face_made_by_reduction_keeps_chi_1_unloaded_until_a_void_opens_there(tmp_path):
    """Plate one voxel at a collector contact where nothing loads the Na (the collector rests on its
    contacts: σ_Na = 0): its face has χ = 1 in the next solve, unloaded. Strip it: a void opens there.
    A Na voxel that flows back into that site by a capillary move (E4b) has χ = σ/σ_χ = 0.

    Planted faults, each shown to fail: a χ floor of 0.05 (χ = max(χ, 0.05) for Na reached by flow)
    fails the last check; the state not cleared on stripping (``remove_na`` leaving ATOMIC) fails the
    void check (a gap that keeps a contact state). (The next solve clears what no longer holds Na, so
    with that fault the flowed-back voxel would still come out right here.)"""
    model, run = model_of(tmp_path, pressure_mpa=5.6, nz=6)
    # Every column but one rests on the electrolyte (bare Al contacts at H = 400 MPa carry P·A); column 5
    # has a nucleus (a sodiophilic face); column 6 holds a two-voxel cavity under the collector.
    columns = ["SCCCCC"] * N * N
    columns[6] = "S..CCC"
    draw(model, run, columns, kc.BY_FLOW)
    run.col_state[5] = kf.CC_NUCLEATED
    g, above = site(model, 6, 1), site(model, 6, 2)
    i_plate = 0.5e-3 * model.params.area_cm2
    nu_cap = run.moves[km.M_NU_CAP]

    run.moves[km.M_NU_CAP] = 0.0  # no capillary moves while plating and stripping: the voxel stays at g
    model.driver.solve(run, i_plate)
    one_event(model, run)
    assert run.count("plate") == 1 and run.lattice[g] == NA  # plated at the nucleus, inserted into the cavity
    chi = chi_by_pixel(model, run)
    assert run.na_stress_mpa == 0.0 and run.col_support[6] != 2  # unloaded
    assert chi[6] == 1.0  # made by reduction

    model.driver.solve(run, -i_plate)
    one_event(model, run)
    assert run.count("strip") == 1 and run.lattice[g] == GAP
    # A void has opened at g: no site without Na keeps a contact state.
    assert not run.na_contact[run.lattice != NA].any()

    # Na hanging from the collector above g flows back into g (its only gap) by a capillary move.
    run.lattice[above] = NA
    run.na_contact[above] = kc.ATOMIC  # whatever its own history, the face at g is reached by flow
    run.moves[km.M_NU_CAP] = nu_cap
    model.driver.solve(run, 0.0)
    one_event(model, run)
    assert run.count("moves") == 1 and run.lattice[g] == NA and run.lattice[above] == GAP
    chi = chi_by_pixel(model, run)
    assert run.na_stress_mpa == 0.0
    assert chi.get(6, 0.0) == 0.0  # reached by flow, unloaded: no current (a face at χ = 0 is left out)


def test_a_face_reached_by_flow_has_sigma_over_sigma_chi_and_1_for_good_once_pressed(tmp_path):
    """Na that flowed in (state BY_FLOW) on a NASICON cell at P = 0.5 MPa, σ_χ = 1 MPa, no collector
    contact: σ_Na = P·A/A_supports.

    1. 15 of 16 columns are Na supports: χ = σ_Na/σ_χ = 0.5·16/15 on their faces, 0 on the open
       column's (unloaded Na reached by flow carries no current).
    2. 8 supports opened: 7 left at σ_Na = 0.5·16/7 ≥ σ_χ; the solve presses them (χ = 1).
    3. A collector contact takes the whole load (σ_Na = 0): the pressed faces keep χ = 1, the faces
       that were never pressed have χ = 0.

    Planted faults, each shown to fail: a χ floor of 0.05 fails the open column's χ = 0; no pressing
    at the solve fails step 3."""
    model, run = model_of(tmp_path, pressure_mpa=0.5, nz=6)
    sigma_chi = run.kinetics[kf.P_SIGMA_CHI]
    assert sigma_chi == 1.0
    columns = ["SNNCCC"] * N * N
    columns[0] = "SN.CCC"  # open: Na on the electrolyte, a gap above it
    draw(model, run, columns, kc.BY_FLOW)

    chi = chi_by_pixel(model, run)
    assert run.na_stress_mpa == pytest.approx(0.5 * 16 / 15)
    assert chi.get(0, 0.0) == 0.0
    for col in range(1, N * N):
        assert chi[col] == pytest.approx(0.5 * 16 / 15 / sigma_chi)

    opened = list(range(1, 9))
    for col in opened:
        run.lattice[site(model, col, 2)] = GAP
    chi = chi_by_pixel(model, run)
    assert run.na_stress_mpa == pytest.approx(0.5 * 16 / 7) and run.na_stress_mpa >= sigma_chi
    assert all(chi[col] == 1.0 for col in range(9, N * N))

    run.lattice[site(model, 0, 1)] = CC  # column 0: the collector now rests on the electrolyte
    run.lattice[site(model, 0, 2)] = CC
    run.cc_bottom[0] = 1
    chi = chi_by_pixel(model, run)
    assert run.na_stress_mpa == 0.0
    assert all(chi[col] == 1.0 for col in range(9, N * N))  # pressed once: χ = 1 for good
    assert all(chi.get(col, 0.0) == 0.0 for col in opened)  # reached by flow, never pressed, unloaded


def test_plating_at_a_face_reached_by_flow_puts_it_in_atomic_contact(tmp_path):
    """Na that flowed in, loaded below σ_χ (χ = σ/σ_χ), plates one voxel at one of its faces: Na made
    by reduction there, that face now has χ = 1; the others keep σ/σ_χ. Planted fault seen to fail
    it: only the inserted voxel marked (not the Na at whose face the reduction happened)."""
    model, run = model_of(tmp_path, pressure_mpa=0.5, nz=6)
    columns = ["SNNCCC"] * N * N
    columns[0] = "SN.CCC"  # the gap the new volume goes to
    draw(model, run, columns, kc.BY_FLOW)
    run.moves[[km.M_NU_CAP, km.M_CREEP_K, km.M_DIFF_PER_MPA]] = 0.0  # no moves: one plating event
    model.driver.solve(run, 0.5e-3 * model.params.area_cm2)
    one_event(model, run)
    assert run.count("plate") == 1 and run.lattice[site(model, 0, 2)] == NA
    reduced = [col for col in range(N * N) if run.na_contact[site(model, col, 1)] == kc.ATOMIC]
    assert len(reduced) == 1 and reduced[0] != 0
    chi = chi_by_pixel(model, run)
    assert run.na_stress_mpa == pytest.approx(0.5)  # every column a support now
    assert chi[reduced[0]] == 1.0
    assert all(chi[col] == pytest.approx(0.5) for col in range(N * N) if col != reduced[0])


def test_the_initial_na_foil_is_in_atomic_contact(tmp_path):
    """A Na layer laid in at the start (``initial_na_um``: a Na foil pressed in) is in atomic contact."""
    path = tmp_path / "foil.toml"
    cell_scenario(path, PROTOCOL, 10.0, n=N, nz=12, initial_na_um=2.0)
    run = Run(BatteryModel(kmc.load_scenario(path, overrides=OPTION)).new_state(1))
    na = run.lattice == NA
    assert na.any()
    assert (run.na_contact[na] == kc.ATOMIC).all() and not run.na_contact[~na].any()
    floor = Run(BatteryModel(kmc.load_scenario(path)).new_state(1))  # the default model keeps no state
    assert not floor.na_contact.any()


def test_the_floor_key_is_not_used_under_face_state_and_a_bad_option_is_refused_in_one_line(tmp_path):
    """``unloaded_contact_quality`` stays a valid key (the default model's floor) but ``"face_state"``
    does not read it: unloaded Na reached by flow has χ = 0 whatever it is set to, and under
    ``"floor"`` that same face has χ = the floor. A value of ``model.contact_quality`` that is not one
    of the two is refused by the CLI in one line naming the key, the value and the choices, exit 2,
    nothing written. Planted fault seen to fail it: the floor read under ``"face_state"`` too
    (``na_contact_quality`` returning ``max(χ, χ_floor)``)."""
    columns = ["SCCCCC"] * N * N
    columns[0] = "SN.CCC"  # open: Na on the electrolyte, unloaded (the collector rests on its contacts)
    for option, floor, want in (("face_state", 0.3, 0.0), ("floor", 0.3, 0.3)):
        model, run = model_of(tmp_path, 5.6, 6, **{"model.contact_quality": option,
                                                   "materials.nasicon.unloaded_contact_quality": floor})
        draw(model, run, columns, kc.BY_FLOW)
        assert chi_by_pixel(model, run).get(0, 0.0) == pytest.approx(want), option

    path = tmp_path / "bad.toml"
    with pytest.raises(ScenarioError):  # written, then refused on loading
        cell_scenario(path, PROTOCOL + '\n[model]\ncontact_quality = "pressed"\n', 10.0, n=N, nz=8)
    out = tmp_path / "bad.zarr"
    result = CliRunner().invoke(main, ["run", str(path), "-o", str(out)], env={"KMC_NO_PROGRESS": "1"})
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1
    assert "model.contact_quality = 'pressed' is not allowed: expected one of 'floor', 'face_state'" in result.stderr
    assert not out.exists()


def test_a_deposit_is_pressed_at_its_own_stress_under_least_stress(tmp_path):
    """Under ``model.insertion = "least_stress"`` a deposit carries the stress the solve gives it
    (``deposit_stress_mpa``): that stress, not the load share σ_Na, decides whether its Na is pressed
    into atomic contact (σ ≥ σ_χ = 1 MPa), and a face reached by flow has χ = σ_deposit/σ_χ below it.
    Two deposit columns at σ_Na = 0.5 MPa: one at a deposit stress of 3 MPa is pressed, one at 0.4 MPa
    is not (χ = 0.4); an open column is cleared of nothing and keeps χ = 0.

    Planted fault seen to fail it: the press reading σ_Na alone (``Driver._press`` without the
    deposit stress) leaves the 3 MPa column unpressed."""
    model, run = model_of(tmp_path, 0.5, 6, **{"model.insertion": "least_stress"})
    p = model.params
    draw(model, run, ["SNNCCC"] * N * N, kc.BY_FLOW)
    run.col_support[:] = COLUMN_NA_SUPPORT
    run.col_support[2] = COLUMN_OPEN
    run.na_stress_mpa = 0.5
    run.kinetics[kf.P_DIRECTION] = 1.0
    run.deposit_stress_mpa[:] = np.nan
    run.deposit_stress_mpa[0], run.deposit_stress_mpa[1] = 3.0, 0.4
    model.driver._press(run)
    assert (run.na_contact[[site(model, 0, 1), site(model, 0, 2)]] == kc.ATOMIC).all()
    assert run.na_contact[site(model, 1, 1)] == kc.BY_FLOW and run.na_contact[site(model, 2, 1)] == kc.BY_FLOW
    # The faces' χ at those stresses, as the kinetics read them (the field solve's and the events')
    chi = [kf.na_contact_quality(site(model, col, 1), col, 0.5 if col != 2 else 0.0, run.col_support,
                                 run.deposit_stress_mpa, run.na_contact, run.kinetics) for col in (0, 1, 2)]
    assert chi == [1.0, pytest.approx(0.4), 0.0]
    assert p.face_state and p.least_stress


def test_unloaded_na_counts_the_active_clusters_whose_every_face_has_chi_0(tmp_path):
    """``unloaded_na`` (mAh/cm²): Na connected to the collector and touching the electrolyte only at
    faces of χ = 0 — it can neither strip nor be plated on, and is neither dead nor stranded (PHYSICS
    §5: stranded Na has no electrolyte face). The collector rests on its contacts (σ_Na = 0); three
    Na bodies hang from its side faces onto the electrolyte, each its own cluster: one Na voxel that
    came by flow (unloaded: 1 voxel), a voxel that came by flow joined to one made by reduction (the
    cluster can strip through the latter: 0), and one made by reduction (0). Recounted by hand: 1
    voxel; the sample reports it, and the stranded and dead inventories do not.

    Planted faults, each shown to fail: counting voxels by their own χ, not their cluster's (2); a
    floor of χ under ``"face_state"`` (0)."""
    model, run = model_of(tmp_path, 5.6, 6)
    columns = ["SCCCCC"] * N * N
    for col in (0, 5, 6, 15):  # 0 = (0, 0); 5, 6 = (1, 1), (2, 1) side by side; 15 = (3, 3): no two others touch
        columns[col] = "SN.CCC"
    draw(model, run, columns, kc.BY_FLOW)
    run.na_contact[[site(model, 6, 1), site(model, 15, 1)]] = kc.ATOMIC
    run.na0_voxels = float((run.lattice == NA).sum())  # drawn in: the bookkeeping's start
    model.driver.solve(run, 0.0)
    assert run.na_stress_mpa == 0.0
    obs = model.observe(run.state)
    vox = model.params.voxel_mah_cm2 / model.params.n_cols
    assert obs["unloaded_na"] == pytest.approx(1 * vox, rel=1e-12)
    assert obs["stranded_na"] == 0.0 and obs["dead_na"] == 0.0


@pytest.mark.parametrize("sigma_chi_mpa, pressed", [(1.0, True), (10.0, False)])
def test_na_refilled_into_a_void_is_pressed_in_by_the_refill_stress(tmp_path, sigma_chi_mpa, pressed):
    """Under the refill law an interface void under continuous Na is refilled by Na pushed in by σ_c, the
    mean normal stress of the Na columns around it (E4): that stress presses the new face, so at
    σ_c ≥ σ_χ it is in atomic contact (χ = 1), below it reached by flow. One void under 15 loaded Na
    supports at P = 5 MPa, at rest: σ_c ≈ 5.3 MPa ≥ σ_χ = 1 MPa, ATOMIC; with σ_χ = 10 MPa, BY_FLOW. (Marked BY_FLOW whatever σ_c, the refilled Na of a stripping T4 run had χ = 0
    and its CE fell to 4–13 %.) Planted fault that fails it: the refilled voxel always BY_FLOW."""
    pressure_mpa = 5.0
    model, _ = model_of(tmp_path, pressure_mpa=pressure_mpa, nz=6, **{"model.refill": "critical_current",
                                                                     "materials.nasicon.contact_stress_mpa": sigma_chi_mpa})
    columns = ["SNNNCC"] * N * N
    columns[0] = "S.NNCC"  # an interface void under continuous Na
    void = site(model, 0, 1)
    for seed in range(1, 30):  # a capillary move may reach the void first: then another seed
        run = Run(model.new_state(seed))
        draw(model, run, columns, kc.ATOMIC)
        model.driver.solve(run, 0.0)
        assert run.bearing_stress_mpa == pytest.approx(pressure_mpa * 16 / 15)
        while True:  # (not solved again once the void is Na: a solve would press its column anyway)
            one_event(model, run)
            if run.lattice[void] == NA:
                break
            model.driver.solve(run, 0.0)
        if run.count("refill") == 1:
            break
    assert run.count("refill") == 1
    assert run.na_contact[site(model, 0, 1)] == (kc.ATOMIC if pressed else kc.BY_FLOW)


def test_na_the_refill_law_thinned_is_pressed_by_the_load_it_bears_while_stripping(tmp_path):
    """Under the refill law a column thinned by one voxel at its collector side still bears on the
    collector while the cell strips (sub-voxel: ``interface.COLUMN_THINNED``), at the bearing stress P·A
    over the bearing columns; that stress presses its Na into atomic contact, as it does a Na support's.
    While plating (or at rest) the same column is growing towards the collector and bears nothing.

    The cell (P = 5.6 MPa, σ_χ = 1 MPa, no collector contact): 14 thinned columns of two Na voxels that
    came by flow, one Na support, and one interface void under Na hanging from the collector, which
    holds the collector up (the refill law's void). At rest the support bears P·A alone (89.6 MPa) and is
    pressed; the thinned columns are not (χ = 0). Then the support is thinned too, as the refill's
    sources thin the last ones at the end of a strip: no Na support is left (σ_Na reads 0), the 15
    thinned columns bear 5.6·16/15 MPa ≥ σ_χ, so a stripping solve presses them (χ = 1 on all 15 faces,
    no ``unloaded_na``), and the production batch loop strips a voxel at one of them.

    Planted faults, each seen to fail it: the rule before, the press reading Na supports only (here χ
    stays 0 on the thinned faces at the strip; in T4 under the v4 options it left 7–10 % of the plated
    Na unloaded at the cut-off); thinned columns pressed whatever the current's direction, or at σ_Na
    (both press them at rest, at the support's 89.6 MPa)."""
    model, run = model_of(tmp_path, pressure_mpa=5.6, nz=7, **{"model.refill": "critical_current"})
    p = model.params
    columns = ["SNN.CCC"] * N * N  # thinned: Na on the electrolyte, one gap voxel under the collector
    columns[0] = "S.NNCCC"  # an interface void under Na hanging from the collector
    columns[15] = "SNNNCCC"  # a Na support
    draw(model, run, columns, kc.BY_FLOW)
    run.moves[[km.M_NU_CAP, km.M_REFILL_PER_MPA]] = 0.0  # no moves, no refill: the events are strips
    thinned = range(1, N * N - 1)

    chi = chi_by_pixel(model, run)  # at rest: the thinned columns bear nothing, the support P·A
    assert (run.col_support[1:15] == COLUMN_THINNED).all() and run.col_support[15] == COLUMN_NA_SUPPORT
    assert run.na_stress_mpa == pytest.approx(5.6 * 16)
    assert chi[15] == 1.0
    assert all(chi.get(col, 0.0) == 0.0 for col in thinned)
    assert all(run.na_contact[site(model, col, z)] == kc.BY_FLOW for col in thinned for z in (1, 2))

    run.lattice[site(model, 15, 3)] = GAP  # the last support thinned at its collector side
    run.na0_voxels = float((run.lattice == NA).sum())  # drawn in: the bookkeeping's start
    thinned = range(1, N * N)
    chi = chi_by_pixel(model, run, -0.5e-3 * p.area_cm2)  # a stripping solve
    assert (run.col_support[1:] == COLUMN_THINNED).all()
    assert run.bearing_stress_mpa == pytest.approx(5.6 * 16 / 15)
    assert run.na_stress_mpa == 0.0  # no Na support: σ_Na reads 0, the thinned columns still bear
    assert all(chi[col] == 1.0 for col in thinned)
    assert all(run.na_contact[site(model, col, z)] == kc.ATOMIC for col in thinned for z in (1, 2))
    assert model.observe(run.state)["unloaded_na"] == 0.0

    one_event(model, run)
    assert run.count("strip") == 1
    assert sum(run.lattice[site(model, col, 1)] == GAP for col in thinned) == 1
