"""The field solve (kmc.field) against known answers: Holm's constriction resistance, full contact,
arrays of spots, and the bookkeeping of signs, currents, warm starts and faces that cannot carry I.

Units as in kmc.field: cm, S/cm, A, A/cm², V, K.
"""
import math

import numpy as np
import pytest

from kmc.field import (
    Faces,
    Plane,
    apply_green,
    interfacial_resistance_ohm_cm2,
    solve_galvanostatic,
    solve_potentiostatic,
    thermal_factor,
)

T_K = 298.15
RT_F = 1.0 / thermal_factor(T_K)
FAST_J0 = 1e8  # A/cm²: R_ct = RT/(F j0) ~ 3e-10 Ω·cm², negligible beside a/σ ~ 1e-2 Ω·cm²


def disk_pixels(n, radius_px, centre=None):
    """Flat indices (x + n·y) of the pixels whose centres lie within radius_px of the centre pixel's centre."""
    cx, cy = (n // 2, n // 2) if centre is None else centre
    y, x = np.mgrid[0:n, 0:n]
    return np.flatnonzero((((x - cx) ** 2 + (y - cy) ** 2) <= radius_px**2).ravel())


def spot_array_pixels(n, spacing_px, radius_px):
    """A square array of disks, one centred in each spacing × spacing cell."""
    y, x = np.mgrid[0:n, 0:n]
    xm = x % spacing_px - spacing_px // 2
    ym = y % spacing_px - spacing_px // 2
    return np.flatnonzero(((xm**2 + ym**2) <= radius_px**2).ravel())


def uniform_faces(pixels, plane, j0, alpha=0.5, u=0.0):
    n = pixels.size
    return Faces(pixels, np.full(n, plane.pixel_area_cm2), np.full(n, float(j0)), np.full(n, alpha),
                 np.full(n, u))


def periodic_image_correction(cell_cm, radius_cm, thickness_cm, sigma, m_max=400):
    """Δ = R_per − L/(σA) − 1/(4σr) (Ω) for the Holm distribution j ∝ 1/√(r² − ρ²) of one disk per
    periodic cell of side W: R_per = (1/A) Σ_{q≠0} G(q) [sin(qr)/(qr)]² + L/(σA) over the reciprocal
    lattice 2π(m, n)/W, summed for |q| ≤ Q = 2π m_max/W plus the tail ∫_Q^∞ with sin² → 1/2,
    1/(4πσ r² Q). (Checked: the same sum as an integral, ∫d²q/(2π)² 1/(σq) [sin(qr)/(qr)]², is 1/(4σr);
    m_max = 400 is converged to ~1e-8 relative for the cases here.)"""
    m = np.arange(-m_max, m_max + 1, dtype=float)
    q = 2.0 * np.pi / cell_cm * np.hypot(m[:, None], m[None, :])
    q_cut = 2.0 * np.pi * m_max / cell_cm
    q = q[(q > 0) & (q <= q_cut)]
    lattice_sum = np.sum(np.tanh(q * thickness_cm) / (sigma * q) * (np.sin(q * radius_cm) / (q * radius_cm)) ** 2)
    tail = 1.0 / (4.0 * np.pi * sigma * radius_cm**2 * q_cut)
    return (lattice_sum + tail * cell_cm**2) / cell_cm**2 - 1.0 / (4.0 * sigma * radius_cm)


# --------------------------------------------------------------------------------------------------
# The Green's function itself


def test_green_single_mode_and_uniform_current():
    """φ = −G(q) J for one Fourier mode (G = tanh(qL)/(σq)); φ = −J L/σ for a uniform J."""
    thickness = 3e-4  # qL ≈ 0.6: tanh matters
    plane = Plane(32, 16, 1e-4, thickness, 0.02)
    x = np.arange(32) * plane.pixel_cm
    q = 2 * np.pi / (32 * plane.pixel_cm)
    current = np.broadcast_to(np.cos(q * x), (16, 32)).copy()
    expected = -np.tanh(q * thickness) / (0.02 * q) * current
    np.testing.assert_allclose(apply_green(plane, current), expected, rtol=0, atol=1e-12 * np.abs(expected).max())
    uniform = np.full((16, 32), 0.7)
    np.testing.assert_allclose(apply_green(plane, uniform), -0.7 * thickness / 0.02, rtol=1e-13)


# --------------------------------------------------------------------------------------------------
# 1. Holm


@pytest.fixture(scope="module")
def holm_errors():
    """Relative error of the constriction resistance against Holm, per (cell px, radius px)."""
    a, sigma = 1e-4, 0.01
    errors = {}
    for cells in (128, 256):
        thickness = 10 * cells * a  # L ≫ W: tanh(qL) = 1 for every q ≠ 0
        plane = Plane(cells, cells, a, thickness, sigma)
        for radius in (8, 16):
            pixels = disk_pixels(cells, radius)
            current = 1e-6
            sol = solve_galvanostatic(plane, uniform_faces(pixels, plane, FAST_J0), current, 0.0, T_K)
            assert sol.converged and sol.carried
            r_eff = math.sqrt(pixels.size / math.pi) * a
            resistance = -sol.voltage_v / current
            constriction = (resistance - thickness / (sigma * plane.area_cm2)
                            - periodic_image_correction(cells * a, r_eff, thickness, sigma))
            errors[cells, radius] = constriction / (1.0 / (4.0 * sigma * r_eff)) - 1.0
    return errors


def test_holm_constriction_resistance(holm_errors):
    """One equipotential disk on a thick SE: R − L/(σA) − Δ_periodic = 1/(4σ r_eff) within 5 %.

    r_eff = √(N_pixels/π)·a is the radius of the disk with the pixelated disk's area. Measured errors
    (this solver, spectral G on the pixel grid): +1.27 % at r = 8 px and +0.73 % at r = 16 px, the same
    to 1e-4 in 128² and 256² cells (where Δ differs by a factor 2: −15 %/−8 % of Holm at r = 8,
    −31 %/−15 % at r = 16), so the periodic-image correction is right and the remaining error is the
    pixelation of the disk's edge.
    """
    for (cells, radius), err in holm_errors.items():
        assert abs(err) < 0.05, f"Holm error {err:+.4f} at r = {radius} px in a {cells}² cell"


def test_holm_converges_with_resolution(holm_errors):
    for cells in (128, 256):
        e8, e16 = abs(holm_errors[cells, 8]), abs(holm_errors[cells, 16])
        assert e16 < 0.8 * e8, f"{cells}² cell: error {e16:.4f} at r = 16 px not below {e8:.4f} at r = 8 px"
    # The periodic correction removes the cell-size dependence.
    for radius in (8, 16):
        assert abs(holm_errors[128, radius] - holm_errors[256, radius]) < 2e-3


# --------------------------------------------------------------------------------------------------
# 2. Full contact


@pytest.mark.parametrize("faces_per_pixel", [1, 2])
def test_full_contact_linear_regime(faces_per_pixel):
    """Every pixel in contact: −V·A/I = L/σ + R_ct/k (k faces of area a² per pixel), R_ct = RT/(F j0)."""
    plane = Plane(32, 32, 5e-5, 0.05, 0.005)
    j0 = 1e-3
    pixels = np.tile(np.arange(32 * 32), faces_per_pixel)
    faces = uniform_faces(pixels, plane, j0)
    current = 1e-9 * plane.area_cm2  # f·η ~ 1e-6: linear
    sol = solve_galvanostatic(plane, faces, current, 0.0, T_K, rtol=1e-10)
    assert sol.converged
    expected = plane.thickness_cm / plane.conductivity_s_cm + RT_F / j0 / faces_per_pixel
    measured = -sol.voltage_v * plane.area_cm2 / current
    assert measured == pytest.approx(expected, rel=1e-6)
    r_int = interfacial_resistance_ohm_cm2(sol, plane, current, 0.0)
    assert r_int == pytest.approx(RT_F / j0 / faces_per_pixel, rel=1e-6)
    np.testing.assert_allclose(sol.pixel_current_density_a_cm2, current / plane.area_cm2, rtol=1e-9)


@pytest.mark.parametrize("jbar", [0.05, -0.05, 0.2])
def test_full_contact_tafel_regime(jbar):
    """Uniform current j̄ at α = 0.5: V = −j̄ L/σ + η, η = −(2RT/F) asinh(j̄/(2 j0)), to 1e-8 V."""
    plane = Plane(16, 16, 5e-5, 0.05, 0.005)
    j0 = 1e-3
    sol = solve_galvanostatic(plane, uniform_faces(np.arange(256), plane, j0), jbar * plane.area_cm2, 0.0, T_K,
                              rtol=1e-12)
    eta = -2.0 * RT_F * math.asinh(jbar / (2.0 * j0))
    expected = -jbar * plane.thickness_cm / plane.conductivity_s_cm + eta
    assert sol.converged and abs(sol.voltage_v - expected) < 1e-8, (sol.voltage_v, expected)


# --------------------------------------------------------------------------------------------------
# 3. Many small spots


SPOTS_CELLS, SPOTS_SPACING = 256, 64  # a 4 × 4 array


def _spot_resistance(radius_px, j0):
    a, sigma, thickness = 1e-4, 0.01, 0.05
    plane = Plane(SPOTS_CELLS, SPOTS_CELLS, a, thickness, sigma)
    pixels = spot_array_pixels(SPOTS_CELLS, SPOTS_SPACING, radius_px)
    current = 1e-7 * plane.area_cm2
    sol = solve_galvanostatic(plane, uniform_faces(pixels, plane, j0), current, 0.0, T_K)
    assert sol.converged
    excess = -sol.voltage_v / current - thickness / (sigma * plane.area_cm2)  # Ω, all spots in parallel
    n_spots = (SPOTS_CELLS // SPOTS_SPACING) ** 2
    return excess, pixels.size * a * a, n_spots, plane


def test_spots_constriction_scales_as_one_over_radius():
    """Fast kinetics: the excess resistance per spot is Holm's 1/(4σr), with the spot array's images.

    Measured: per-spot constriction / (1/(4σ r_eff) + Δ(64 px cell)) − 1 = +2.7 % (r = 4 px) and
    +1.8 % (r = 8 px; the single-disk pixelation error of 1.3 % over a constriction that the images
    lower by 30 %). Halving r multiplies the constriction by 2.46: 2 for isolated spots, times
    (1 − 0.15)/(1 − 0.30) for the images, which lower the larger spots' share more (predicted 2.43).
    """
    a, sigma, thickness = 1e-4, 0.01, 0.05
    per_spot, predicted = {}, {}
    for radius in (4, 8):
        excess, area_contact, n_spots, _ = _spot_resistance(radius, FAST_J0)
        per_spot[radius] = excess * n_spots
        r_eff = math.sqrt(area_contact / n_spots / math.pi)
        predicted[radius] = (1.0 / (4.0 * sigma * r_eff)
                             + periodic_image_correction(SPOTS_SPACING * a, r_eff, thickness, sigma))
        err = per_spot[radius] / predicted[radius] - 1.0
        assert abs(err) < 0.10, f"r = {radius} px: per-spot constriction off the periodic Holm value by {err:+.4f}"
    ratio = per_spot[4] / per_spot[8]
    assert 1.8 < ratio < 2.6, f"halving r multiplied the constriction by {ratio:.3f}"
    assert ratio == pytest.approx(predicted[4] / predicted[8], rel=0.05)


def test_spots_charge_transfer_scales_as_one_over_contact_area():
    """Slow kinetics (R_ct/A_c ≫ constriction): R − L/(σA) = R_ct/A_contact within 2 %.

    j0 = 2 mA/cm² puts the constriction at ~0.5 % (r = 8 px) and ~0.25 % (r = 4 px) of the
    charge-transfer part, so this checks the 1/A_contact scaling to about that.
    """
    j0 = 2e-3
    r_ct = RT_F / j0
    for radius in (4, 8):
        excess, area_contact, _, _ = _spot_resistance(radius, j0)
        assert excess * area_contact / r_ct == pytest.approx(1.0, abs=0.02), radius


# --------------------------------------------------------------------------------------------------
# 4. Signs and bookkeeping


def _focused_case(rel_current=1.0):
    """Sparse spots with a spread of j0 in the Tafel regime: a nonlinear, focused problem."""
    plane = Plane(128, 128, 5e-5, 0.01, 0.005)
    pixels = spot_array_pixels(128, 32, 4)
    rng = np.random.default_rng(7)
    n = pixels.size
    faces = Faces(pixels, np.full(n, plane.pixel_area_cm2), 1e-2 * 10.0 ** rng.uniform(-2, 0, n), np.full(n, 0.5),
                  np.zeros(n))
    return plane, faces, rel_current * 0.05 * plane.area_cm2


def test_voltage_sign_and_current_constraint():
    plane, faces, current = _focused_case()
    rtol = 1e-6
    plate = solve_galvanostatic(plane, faces, current, 0.0, T_K, rtol=rtol)
    strip = solve_galvanostatic(plane, faces, -current, 0.0, T_K, rtol=rtol)
    assert plate.converged and strip.converged and plate.carried and strip.carried
    assert plate.voltage_v < 0.0 < strip.voltage_v
    for sol, i in ((plate, current), (strip, -current)):
        total = np.sum(sol.face_current_density_a_cm2 * faces.area_cm2)
        assert abs(total - i) <= rtol * abs(i)
        assert abs(sol.current_a - i) <= rtol * abs(i)
        # The pixel map is the face currents per pixel, and φ is the Green's function applied to it.
        per_pixel = np.bincount(faces.pixel, faces.area_cm2 * sol.face_current_density_a_cm2,
                                minlength=128 * 128) / plane.pixel_area_cm2
        np.testing.assert_allclose(sol.pixel_current_density_a_cm2.ravel(), per_pixel, rtol=0,
                                   atol=1e-9 * np.abs(per_pixel).max())
        np.testing.assert_allclose(sol.phi_v, apply_green(plane, sol.pixel_current_density_a_cm2))
    # A counter electrode at U_CE shifts V by −U_CE, nothing else.
    shifted = solve_galvanostatic(plane, faces, current, 0.15, T_K, rtol=rtol)
    assert shifted.voltage_v == pytest.approx(plate.voltage_v - 0.15, abs=1e-6 * abs(plate.voltage_v))


def test_potentiostatic_at_galvanostatic_voltage_returns_same_currents():
    plane, faces, current = _focused_case()
    galv = solve_galvanostatic(plane, faces, current, 0.0, T_K, rtol=1e-9)
    pot = solve_potentiostatic(plane, faces, galv.voltage_v, 0.0, T_K, rtol=1e-9)
    assert pot.converged
    assert pot.current_a == pytest.approx(current, rel=1e-7)
    jg, jp = galv.face_current_density_a_cm2, pot.face_current_density_a_cm2
    np.testing.assert_allclose(jp, jg, rtol=0, atol=1e-7 * np.abs(jg).max())


def test_warm_start_reduces_newton_iterations():
    plane, faces, current = _focused_case()
    first = solve_galvanostatic(plane, faces, current, 0.0, T_K)
    cold = solve_galvanostatic(plane, faces, 1.02 * current, 0.0, T_K)
    warm = solve_galvanostatic(plane, faces, 1.02 * current, 0.0, T_K, guess=first)
    assert cold.converged and warm.converged
    assert cold.newton_iterations >= 3, "the test case should be nonlinear enough to need a few steps"
    assert warm.newton_iterations < cold.newton_iterations
    assert warm.voltage_v == pytest.approx(cold.voltage_v, abs=1e-6 * abs(cold.voltage_v))
    # The same solution again: the guess is already converged.
    again = solve_galvanostatic(plane, faces, current, 0.0, T_K, guess=first)
    assert again.newton_iterations <= 1
    # A warm start onto a changed set of faces (some lost, some new) still converges.
    keep = np.arange(len(faces)) % 7 != 0
    changed = Faces(faces.pixel[keep], faces.area_cm2[keep], faces.j0_a_cm2[keep], faces.alpha[keep],
                    faces.u_local_v[keep])
    after = solve_galvanostatic(plane, changed, current, 0.0, T_K, guess=first)
    assert after.converged and np.sum(after.face_current_density_a_cm2 * changed.area_cm2) == pytest.approx(current)


def test_nonuniform_j0_focuses_current():
    """Four equal spots, one with 100× the exchange current: it takes most of the current."""
    plane = Plane(64, 64, 5e-5, 0.01, 0.005)
    pixels = spot_array_pixels(64, 32, 2)
    spot = (pixels % 64) // 32 + 2 * ((pixels // 64) // 32)
    j0 = np.where(spot == 0, 1e-1, 1e-3)
    n = pixels.size
    faces = Faces(pixels, np.full(n, plane.pixel_area_cm2), j0, np.full(n, 0.5), np.zeros(n))
    current = 1e-2 * plane.area_cm2
    sol = solve_galvanostatic(plane, faces, current, 0.0, T_K)
    assert sol.converged
    mean_on_contact = current / (n * plane.pixel_area_cm2)
    assert sol.max_local_current_density_a_cm2 > 2.0 * mean_on_contact
    fast_share = np.sum(sol.face_current_density_a_cm2[spot == 0]) * plane.pixel_area_cm2 / current
    assert fast_share > 0.5
    uniform = solve_galvanostatic(plane, uniform_faces(pixels, plane, 1e-3), current, 0.0, T_K)
    assert uniform.max_local_current_density_a_cm2 < sol.max_local_current_density_a_cm2


def test_faces_that_cannot_carry_the_current():
    plane = Plane(32, 32, 5e-5, 0.05, 0.005)
    pixels = disk_pixels(32, 4)
    faces = uniform_faces(pixels, plane, 1e-20)
    current = 1e-3 * plane.area_cm2
    sol = solve_galvanostatic(plane, faces, current, 0.0, T_K, voltage_bound_v=1.0)
    assert not sol.carried
    assert sol.voltage_v == -1.0
    assert 0.0 < sol.current_a < current
    for arr in (sol.face_current_density_a_cm2, sol.pixel_current_density_a_cm2, sol.phi_v):
        assert np.all(np.isfinite(arr))
    stripping = solve_galvanostatic(plane, faces, -current, 0.0, T_K, voltage_bound_v=1.0)
    assert not stripping.carried and stripping.voltage_v == 1.0 and stripping.current_a < 0.0
    # Carried only through an ohmic drop beyond the bound: fast faces, a thick poor conductor.
    resistive = Plane(32, 32, 5e-5, 1.0, 1e-4)
    sol = solve_galvanostatic(resistive, uniform_faces(pixels, resistive, 1.0), current, 0.0, T_K)
    assert not sol.carried and sol.voltage_v == -5.0 and np.isfinite(sol.current_a)
    # No faces at all.
    none = Faces(np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0))
    sol = solve_galvanostatic(plane, none, current, 0.0, T_K)
    assert not sol.carried and sol.current_a == 0.0


def test_extreme_overpotential_stays_finite():
    """Potentiostatic at −5 V on fast faces: huge exponents are guarded, the ohmic drop takes the volts."""
    plane = Plane(64, 64, 5e-5, 0.05, 0.005)
    faces = uniform_faces(spot_array_pixels(64, 16, 3), plane, 10.0)
    sol = solve_potentiostatic(plane, faces, -5.0, 0.0, T_K)
    assert sol.converged
    assert np.all(np.isfinite(sol.face_current_density_a_cm2)) and sol.current_a > 0.0
    back = solve_galvanostatic(plane, faces, sol.current_a, 0.0, T_K, rtol=1e-8)
    assert back.voltage_v == pytest.approx(-5.0, abs=1e-6)


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="alpha"):
        Faces([0], [1e-8], [1e-3], [1.0], [0.0])
    with pytest.raises(ValueError, match="pixel_cm"):
        Plane(8, 8, 0.0, 0.05, 0.005)
    plane = Plane(8, 8, 5e-5, 0.05, 0.005)
    with pytest.raises(ValueError, match="pixel"):
        solve_galvanostatic(plane, Faces([64], [1e-8], [1e-3], [0.5], [0.0]), 1e-9, 0.0, T_K)


def test_open_circuit_mixed_potential():
    """I = 0 with half the faces at U = 0.1 V: V sits at the mixed potential 0.05 V (equal kinetics);
    the U = 0.1 V faces plate (η = ψ − U < 0) and the U = 0 faces strip, summing to zero."""
    plane = Plane(32, 32, 5e-5, 0.05, 0.005)
    pixels = np.arange(0, 1024, 3)
    high = pixels % 2 == 0
    faces = Faces(pixels, plane.pixel_area_cm2, 1e-3, 0.5, np.where(high, 0.1, 0.0))
    sol = solve_galvanostatic(plane, faces, 0.0, 0.0, T_K)
    assert sol.converged and sol.carried
    assert sol.voltage_v == pytest.approx(0.05, abs=1e-3)
    j = sol.face_current_density_a_cm2
    assert np.all(j[high] > 0.0) and np.all(j[~high] < 0.0)
    assert abs(np.sum(j * faces.area_cm2)) < 1e-6 * np.sum(np.abs(j) * faces.area_cm2)


@pytest.mark.parametrize("n_pixels, n_faces", [(1, 0), (1, 5), (64, 10), (64, 500), (4096, 3000)])
def test_contact_pixels_are_numpys_unique(n_pixels, n_faces):
    """The solve's contact pixels and each face's index into them: np.unique's answer (sorted distinct
    pixels, the inverse), number for number, on faces in random order with repeats."""
    from kmc.kernels.field import contact_pixels

    rng = np.random.default_rng(n_pixels + n_faces)
    pixel = rng.integers(0, n_pixels, n_faces).astype(np.int64)
    cpix, loc = contact_pixels(pixel, n_pixels)
    want_cpix, want_loc = np.unique(pixel, return_inverse=True)
    assert np.array_equal(cpix, want_cpix) and np.array_equal(loc, want_loc.reshape(-1))
    assert cpix.dtype == np.int64 and loc.dtype == np.int64


@pytest.mark.parametrize("shape", ["bv", "convex", "concave", "linear"])
@pytest.mark.parametrize("start_offset", [0.0, 1e-7, 3e-4, -2e-3, 0.05, -0.4])
def test_scalar_root_finds_the_root_from_near_and_far_starts(shape, start_offset):
    """The safeguarded root the solve's start takes V from (``newton._scalar_root``), against SciPy's
    ``brentq`` on decreasing functions of every curvature, from starts next to the root (a warm start:
    its first step outward is 1.5 Newton steps) and far from it (bracketing outward by doubling), and
    the number of evaluations from a warm start: at most 5 (each is a pass over every face in the solve).
    Planted fault: the search as it was before (a first step of ``step0``, then Newton from the bracket's
    middle: 6–12 evaluations here) fails the count."""
    from scipy.optimize import brentq

    from kmc.field.newton import _scalar_root

    root = 0.0137
    funs = {
        "bv": lambda x: (2e-3 * (math.exp(-19.5 * (x - root)) - math.exp(19.5 * (x - root))),
                         -2e-3 * 19.5 * (math.exp(-19.5 * (x - root)) + math.exp(19.5 * (x - root)))),
        "convex": lambda x: (math.exp(-30.0 * (x - root)) - 1.0, -30.0 * math.exp(-30.0 * (x - root))),
        "concave": lambda x: (1.0 - math.exp(30.0 * (x - root)), -30.0 * math.exp(30.0 * (x - root))),
        "linear": lambda x: (-(x - root) * 7.0, -7.0),
    }
    calls = []

    def fun(x):
        calls.append(x)
        return funs[shape](x)

    x, bracketed = _scalar_root(fun, root + start_offset, 0.01, 10.0, 1e-15)
    want = brentq(lambda v: funs[shape](v)[0], root - 1.0, root + 1.0, xtol=1e-15, rtol=1e-15)
    assert bracketed and x == pytest.approx(want, abs=1e-14)
    if 0.0 < abs(start_offset) <= 3e-4:  # a warm start: a few evaluations, not the bisections of a wide bracket
        assert len(calls) <= 5, calls


def test_scalar_root_says_when_it_cannot_bracket():
    """A decreasing function with no root within |x| ≤ x_limit: the limit, not bracketed."""
    from kmc.field.newton import _scalar_root

    x, bracketed = _scalar_root(lambda x: (1.0 - 1e-3 * x, -1e-3), 0.0, 0.01, 5.0, 1e-15)
    assert x == 5.0 and not bracketed
