"""The contact faces' area on the voxelized relief (``model.face_area``; ``kmc.geometry.side_face_weight``).

The staircase of a voxelized surface has one top face per column and a side face per voxel of step;
counted at a² each, its area grows as the voxel resolves the relief, towards the L1 area
⟨1 + |∂h/∂x| + |∂h/∂y|⟩, not the true ⟨√(1 + |∇h|²)⟩. Under ``"true_area"`` the side faces carry the
relief's true area beyond the projected one. Known answers: the mean area factor of a Gaussian surface
(analytic, from its slope variance), the faces recounted from the lattice, and the small-signal
resistance of a cell in full contact, RT/(F j0 ⟨A⟩), on the same surface at two voxel sizes.
"""
import math

import numpy as np
import pytest
import scipy.special
from battery_runs import advance_all, cell_scenario

import kmc
from kmc import geometry
from kmc.battery import BatteryModel, Run
from kmc.kernels.cell import SE

F_OVER_R = 96485.33212 / 8.314462618


def _gaussian_area_factor(rq_um, xi_um):
    """⟨√(1 + |∇h|²)⟩ of an isotropic Gaussian surface with autocorrelation Rq² exp(−r²/ξ²): each slope
    component is normal with variance s² = −C''(0) = 2Rq²/ξ², so |∇h|² is exponential with mean
    μ = 2s², and E√(1 + X) = 1 + ½ ∫ e^(−x/μ)/√(1 + x) dx/μ·μ = 1 + (√(πμ)/2) erfcx(1/√μ)."""
    mu = 4.0 * rq_um**2 / xi_um**2
    return 1.0 + math.sqrt(math.pi * mu) / 2.0 * scipy.special.erfcx(1.0 / math.sqrt(mu))


@pytest.mark.parametrize("voxel_um, n", [(0.5, 512), (0.25, 1024)])
def test_true_area_of_a_gaussian_surface_matches_its_slope_statistics(voxel_um, n):
    """The spectral slopes give the analytic mean area factor of a steep Gaussian relief (Rq 1 µm, ξ 3
    µm: excess 0.19) within 3 % of its excess (sampling: 2 % on this seed), at two voxel sizes. Planted
    faults: the staircase's L1 area (excess 0.75) or slopes per voxel instead of per µm fail here."""
    rng = np.random.default_rng(7)
    h = geometry.rough_surface_um(n, n, voxel_um, 1.0, 3.0, rng)
    got = float(geometry.true_area_factor(h, voxel_um).mean())
    want = _gaussian_area_factor(1.0, 3.0)
    assert abs(got - want) < 0.03 * (want - 1.0), (got, want)


def _self_affine_cell(tmp_path, voxel_um, face_area, *, domain_um=32.0, initial_na_um=0.0, protocol=None):
    """A NASICON cell under an Al foil on the electrolyte's self-affine relief: the same surface at any
    voxel on the same domain (``kmc.relief``)."""
    n = int(round(domain_um / voxel_um))
    nz = int(round((12.0 if initial_na_um else 8.0) / voxel_um))
    path = tmp_path / f"area_{voxel_um}_{face_area}.toml"
    cell_scenario(path, protocol or PROBE, 2.0, n=n, nz=nz, initial_na_um=initial_na_um)
    # No interphase: it turns Na voxels into SEI (j0 × sei_exchange_ratio) a voxel at a time, a change of
    # the faces that depends on the voxel and is not what is tested here.
    return kmc.load_scenario(path, overrides={"lattice.voxel_um": voxel_um, "electrolyte.relief": "self_affine",
                                              "model.face_area": face_area, "model.contact_quality": "face_state",
                                              "materials.nasicon.sei_rate_ma_cm2": 0.0})


def _side_faces_from_lattice(lattice):
    """Per column, the electrolyte's faces that look sideways onto something else, recounted voxel by voxel."""
    se = lattice == SE
    sides = np.zeros(lattice.shape[1:], dtype=np.int64)
    for axis in (1, 2):
        for shift in (1, -1):
            sides += (se & ~np.roll(se, shift, axis=axis)).sum(axis=0)
    return sides


def test_side_faces_carry_the_true_area_at_every_voxel(tmp_path):
    """Under a foil on NASICON's self-affine relief (the same surface at 0.5 and 0.25 µm), the faces
    recounted from the lattice, top faces at a² and side faces at their weight, add up to the true area
    of the continuous surface exactly, at both voxels; the staircase's own count moves with the voxel
    by more than ten times that (the effect the weight removes)."""
    totals, staircase = [], []
    for voxel_um in (0.5, 0.25):
        sc = _self_affine_cell(tmp_path, voxel_um, "true_area")
        geo = geometry.from_scenario(sc, np.random.default_rng(3))
        sides = _side_faces_from_lattice(geo.lattice)
        weighted = 1.0 + float((sides * geo.side_face_weight).mean())
        true = float(geometry.true_area_factor(geo.surface_um, voxel_um).mean())
        assert weighted == pytest.approx(true, rel=1e-12)
        totals.append(weighted)
        staircase.append(1.0 + float(sides.mean()))
    assert abs(totals[1] - totals[0]) < 0.002
    assert abs(staircase[1] - staircase[0]) > 10 * abs(totals[1] - totals[0])


PROBE = """
[[protocol]]
kind = "plate"
current_ma_cm2 = 0.02
max_duration_s = 4.0
"""


def _probe_r_int(tmp_path, voxel_um, face_area):
    """(R_int at the probe's end (Ω·cm²), the Na faces' area per pixel the solve used, the surface's
    true area factor, RT/(F j0) (Ω·cm²)) of a cell in full contact: an initial Na layer pressed in."""
    sc = _self_affine_cell(tmp_path, voxel_um, face_area, initial_na_um=2.0, protocol=PROBE)
    model = BatteryModel(sc)
    state = model.new_state(3)
    obs = advance_all(model, state)
    run = Run(state)
    p = model.params
    j0 = float(sc.materials["nasicon"]["j0_ma_cm2"]) * 1e-3
    r_ct = 1.0 / (F_OVER_R / p.temperature_k * j0)
    geo = geometry.from_scenario(sc, np.random.default_rng(3))
    true = float(geometry.true_area_factor(geo.surface_um, voxel_um).mean())
    # What the pixels' Na faces carry (E8 fills flaws from it) adds up to the cell current: every face
    # here is a Na face, each counted at its own area.
    assert float(run.na_current.sum()) * p.face_area_cm2 == pytest.approx(0.02e-3 * p.area_cm2, rel=1e-6)
    return float(obs[-1]["interfacial_resistance"]), float(run.na_faces_col.sum()) / p.n_cols, true, r_ct


def test_full_contact_resistance_is_charge_transfer_over_the_true_area(tmp_path):
    """A small-signal probe (0.02 mA/cm², j ≪ j0) of a cell whose relief is filled with pressed Na (χ = 1
    on every face): R_int = RT/(F j0 ⟨A⟩) with ⟨A⟩ the true area factor, within 0.5 % (measured: to
    four digits; the spreading between columns of different area is negligible), the same at 0.5 and
    0.25 µm within 0.2 %; the interphase's faces (``na_faces_col``) carry that area too, and the Na
    faces' current per pixel (``na_current``, E8's flaw fill) adds up to the cell current (planted fault:
    summing the faces' current densities as if each had the pixel's area — the first version of this
    option, which filled flaws ~10× too fast from side faces — fails it). Planted fault:
    the staircase's faces (``"staircase"``) give R_int 6.73 and 6.66 Ω·cm² for 7.90 at 0.5 and 0.25 µm."""
    r = {}
    for voxel_um in (0.5, 0.25):
        r_int, na_area, true, r_ct = _probe_r_int(tmp_path, voxel_um, "true_area")
        assert na_area == pytest.approx(true, rel=1e-6)
        assert r_int == pytest.approx(r_ct / true, rel=0.005), (voxel_um, r_int, r_ct / true)
        r[voxel_um] = r_int
    assert r[0.25] == pytest.approx(r[0.5], rel=0.002)
    stair, na_area, true, r_ct = _probe_r_int(tmp_path, 0.5, "staircase")
    assert na_area > true + 0.1  # the staircase's count: its L1 area
    assert stair < 0.9 * r[0.5]
