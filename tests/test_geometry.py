"""Initial geometry under stack pressure (PHYSICS.md §3), checked against what it must be."""
import numpy as np
import pytest

from kmc.errors import ScenarioError
from kmc.geometry import build, rough_surface_um
from kmc.kernels.cell import CC, GAP, NA, SE


def _columns(geo):
    """Per column: SE top (number of SE voxels), lowest CC voxel — recounted from the lattice."""
    lat = geo.lattice
    se_top = (lat == SE).sum(axis=0)
    cc_low = np.argmax(lat == CC, axis=0)
    return se_top, cc_low


def test_rough_surface_has_the_requested_rms_and_correlation_length():
    rng = np.random.default_rng(1)
    a, rq, xi = 0.25, 1.0, 2.0
    acf_at_xi = []
    for _ in range(4):
        h = rough_surface_um(256, 256, a, rq, xi, rng)
        assert abs(h.mean()) < 1e-12 and h.std() == pytest.approx(rq, rel=1e-12)
        lag = int(round(xi / a))
        acf = 0.5 * (np.mean(h * np.roll(h, lag, axis=1)) + np.mean(h * np.roll(h, lag, axis=0)))
        acf_at_xi.append(acf / rq**2)
    # Gaussian autocorrelation: exp(-1) at r = ξ (finite-domain estimate, 4 surfaces averaged).
    assert np.mean(acf_at_xi) == pytest.approx(np.exp(-1.0), abs=0.05)


@pytest.mark.parametrize("pressure,hardness", [(5.6, 400.0), (10.0, 160.0), (50.0, 400.0)])
def test_foil_rests_on_the_bearing_fraction_of_highest_asperities(pressure, hardness):
    geo = build(64, 48, 40, 0.5, form="foil", rq_um=1.0, xi_um=2.0, stack_pressure_mpa=pressure,
                hardness_mpa=hardness, rng=np.random.default_rng(3))
    se_top, cc_low = _columns(geo)
    n = se_top.size
    expected = max(1, int(np.ceil(min(1.0, pressure / hardness) * n - 1e-9)))
    assert hardness * expected >= pressure * n  # the asperities can carry the whole stack load
    contact = se_top == cc_low  # SE top voxel directly under the CC's lowest voxel
    assert contact.sum() == expected
    assert geo.bearing_fraction == pytest.approx(expected / n)
    assert (cc_low == cc_low.flat[0]).all()  # a flat foil
    assert (se_top <= cc_low).all()  # the CC never overlaps the SE
    # Every voxel between SE and CC is a gap, and the contacts sit on the highest asperities.
    z = np.arange(geo.lattice.shape[0])[:, None, None]
    between = (z >= se_top) & (z < cc_low)
    assert (geo.lattice[between] == GAP).all()
    assert geo.surface_um[contact].min() >= geo.surface_um[~contact].max() - 1e-12


def test_dense_pellet_conforms_everywhere():
    geo = build(32, 32, 40, 0.5, form="pellet", rq_um=1.0, xi_um=2.0, stack_pressure_mpa=10.0,
                hardness_mpa=160.0, rng=np.random.default_rng(4))
    se_top, cc_low = _columns(geo)
    assert (se_top == cc_low).all() and geo.bearing_fraction == 1.0
    assert not (geo.lattice == GAP).any()


def test_porous_pellet_holds_pores_open_to_the_interface():
    eps = 0.2
    geo = build(48, 48, 40, 0.5, form="pellet", rq_um=1.0, xi_um=2.0, stack_pressure_mpa=10.0,
                hardness_mpa=370.0, porosity=eps, rng=np.random.default_rng(5), pore_radius_um=0.8)
    lat = geo.lattice
    cc_bottom = geo.cc_offset + geo.cc_shape
    z = np.arange(lat.shape[0])[:, None, None]
    body = (z >= cc_bottom) & (z < lat.shape[0] - 1)
    pore_fraction = (lat[body] == GAP).mean()
    assert pore_fraction == pytest.approx(eps, abs=0.03)
    assert (lat[-1] == CC).all()  # the top layer is solid
    at_face = np.take_along_axis(lat, cc_bottom[None], axis=0)[0]
    assert geo.bearing_fraction == pytest.approx((at_face == CC).mean())
    assert geo.bearing_fraction == pytest.approx(1 - eps, abs=0.08)


@pytest.mark.parametrize("form", ["foil", "pellet"])
def test_initial_na_layer_has_its_thickness_and_full_contact(form):
    t = 5.0
    geo = build(40, 40, 60, 0.5, form=form, rq_um=1.0, xi_um=2.0, stack_pressure_mpa=5.6,
                hardness_mpa=400.0, initial_na_um=t, rng=np.random.default_rng(6))
    lat = geo.lattice
    na_um = (lat == NA).sum() * 0.5 / (40 * 40)
    assert na_um == pytest.approx(t, abs=0.5)  # within one voxel
    se_top, cc_low = _columns(geo)
    assert (cc_low > se_top).all()  # Na everywhere between: no CC–SE contact
    assert not (lat == GAP).any()


def test_au_inventory_on_every_collector_pixel():
    geo = build(16, 16, 30, 0.5, form="foil", rq_um=0.5, xi_um=1.0, stack_pressure_mpa=5.6,
                hardness_mpa=400.0, au_nm=96.0, rng=np.random.default_rng(7))
    assert (geo.au_nm == 96.0).all()


def test_too_few_layers_is_a_scenario_error_naming_nz():
    with pytest.raises(ScenarioError, match="lattice.nz"):
        build(32, 32, 6, 0.1, form="foil", rq_um=1.0, xi_um=2.0, stack_pressure_mpa=5.6, hardness_mpa=400.0,
              rng=np.random.default_rng(8))


@pytest.mark.parametrize("voxel_um", [0.5, 0.25])
def test_pores_have_the_material_pore_radius_at_any_voxel(voxel_um):
    """A porous pellet's pores: porosity ε of the collector body, and hydraulic radius 2ε/S_V equal to the
    material's pore radius within 10 % at voxels of 0.5 and 0.25 µm — S_V from line crossings of the pore
    phase, S_V = 2 P_L (stereology; unbiased on a grid that resolves the pores, where counting voxel
    faces would overstate an isotropic surface by 3/2). Shown to fail with the v3 pore field's
    correlation length fixed at 1.5 voxels (pores that halve with the voxel)."""
    from kmc.geometry import _correlated_pores

    eps, radius = 0.21, 1.4  # porous Cu (PHYSICS §3; materials.toml's prior radius)
    n = int(round(24 / voxel_um))
    pores = _correlated_pores((n, n, n), eps, np.random.default_rng(3), voxel_um, radius)
    assert pores.mean() == pytest.approx(eps, abs=0.01)
    crossings = sum(np.count_nonzero(pores != np.roll(pores, 1, axis)) for axis in range(3))
    p_l = crossings / (3 * pores.size * voxel_um)  # crossings per µm of test line
    assert eps / p_l == pytest.approx(radius, rel=0.10)  # 2ε/S_V with S_V = 2 P_L
