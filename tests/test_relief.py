"""The self-affine electrolyte relief (``kmc.relief``): spectrum, rms, voxel invariance, and a rigid
flat punch on it against the analytic results for Gaussian heights."""
import math

import numpy as np
import pytest
from scipy.special import erfcinv
from scipy.stats import norm

from kmc import relief


def _prior_spectrum(q, rq, rolloff, cutoff, hurst):
    """C(q) written out from its definition (not the module's): flat below q_r, q^(−2(1+H)) to q_s, 0
    beyond, C0 fixed by the band's rms, Rq² = ∫_{q_r}^{q_s} C(q) q dq / 2π."""
    q_r, q_s = 2 * math.pi / rolloff, 2 * math.pi / cutoff
    band = np.geomspace(q_r, q_s, 20001)
    shape = (band / q_r) ** (-2 * (1 + hurst))
    c0 = rq**2 / (np.trapezoid(shape * band, band) / (2 * math.pi))
    return np.where(q <= q_s, c0 * np.where(q < q_r, 1.0, (np.maximum(q, q_r) / q_r) ** (-2 * (1 + hurst))), 0.0)


def _radial_power(h, voxel_um):
    """|ĥ(q)|² A / N² per mode (µm⁴) — an unbiased estimate of C(q) — and |q| (rad/µm), over the plane."""
    ny, nx = h.shape
    spec = np.abs(np.fft.fft2(h)) ** 2 * (nx * ny * voxel_um**2) / (nx * ny) ** 2
    qx = 2 * np.pi * np.fft.fftfreq(nx, voxel_um)
    qy = 2 * np.pi * np.fft.fftfreq(ny, voxel_um)
    return spec.ravel(), np.hypot(qx[None, :], qy[:, None]).ravel()


@pytest.mark.parametrize("rolloff_um,hurst", [(8.0, 0.8), (16.0, 0.8), (16.0, 0.5)])
def test_spectrum_and_rms_match_the_prior_within_sampling_error(rolloff_um, hurst):
    """Per band of |q|, the mean power of the modes over 6 surfaces equals C(q) within 4 standard
    errors (each mode's power is exponential: relative error 1/√m of m modes); the rms² over the
    surfaces equals the spectrum's sum. Shown to fail with the exponent −2(1+H) written as −2H."""
    n, a, rq, cutoff = 128, 0.5, 0.3, 1.5
    powers, rms2 = [], []
    for seed in range(6):
        h = relief.self_affine_surface_um(n, n, a, rq, rolloff_um, cutoff, hurst, np.random.default_rng(seed))
        p, q = _radial_power(h, a)
        powers.append(p)
        rms2.append(h.var())
    p = np.concatenate(powers)
    q = np.tile(q, 6)
    edges = np.geomspace(2 * np.pi / (n * a) * 0.99, 2 * np.pi / cutoff, 9)
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (q >= lo) & (q < hi) & (q > 0)
        m = sel.sum()
        expected = _prior_spectrum(q[sel], rq, rolloff_um, cutoff, hurst).mean()
        assert abs(p[sel].mean() - expected) < 4 * expected / math.sqrt(m), (lo, hi, m, p[sel].mean(), expected)
    qx = 2 * np.pi * np.fft.fftfreq(n, a)
    modes = np.hypot(qx[None, :], qx[:, None]).ravel()
    want = _prior_spectrum(modes[modes > 0], rq, rolloff_um, cutoff, hurst).sum() / (n * a) ** 2
    assert abs(np.mean(rms2) - want) < 0.25 * want, (np.mean(rms2), want)  # 6 surfaces of few low-q modes


def test_the_band_rms_is_rq_and_the_rolloff_adds_the_flat_part():
    """On a domain far larger than λ_r the spectrum's rms tends to Rq √(1 + H/(1 − (q_s/q_r)^(−2H))),
    of which Rq is the band's (the module's formula for C0)."""
    rq, lr, ls, hurst = 0.3, 4.0, 0.5, 0.8
    big = relief.expected_rms_um(512, 512, 0.25, rq, lr, ls, hurst)
    ratio = (2 * np.pi / ls) / (2 * np.pi / lr)
    assert big == pytest.approx(rq * math.sqrt(1 + hurst / (1 - ratio ** (-2 * hurst))), rel=0.02)


def test_the_surface_does_not_change_when_the_voxel_halves():
    """The same band-limited surface sampled at twice the points (λ_s a material length, not the voxel).
    Shown to fail with the noise drawn per grid point and filtered (as the v3 Gaussian surface is made):
    the draws then follow the voxel."""
    coarse = relief.self_affine_surface_um(64, 48, 0.5, 0.3, 8.0, 2.0, 0.8, np.random.default_rng(3))
    fine = relief.self_affine_surface_um(128, 96, 0.25, 0.3, 8.0, 2.0, 0.8, np.random.default_rng(3))
    np.testing.assert_allclose(fine[::2, ::2], coarse, atol=1e-12)
    assert coarse.std() > 0.1


@pytest.mark.parametrize("voxel_um", [0.5, 0.25])
def test_a_flat_punch_at_bearing_fraction_p_over_h_sits_where_gaussian_heights_say(voxel_um):
    """A rigid flat punch carrying P on a hardness H touches the fraction P/H of the surface: its height
    above the mean plane is √2 σ erfc⁻¹(2P/H) for Gaussian heights of rms σ, whatever the spectrum, and
    the gap under it holds h_p Φ(t) + σ φ(t) per area (t = h_p/σ). Both within 5 % at two voxel sizes on a
    domain of 16 roll-off wavelengths. Shown to fail with the asperity tops clipped at 2σ (heights not
    Gaussian in the tail the punch rests on)."""
    fraction = 5.6 / 400.0  # T2's stack pressure on a hard Al foil
    n = int(round(128 / voxel_um))
    h = relief.self_affine_surface_um(n, n, voxel_um, 0.3, 8.0, 1.0, 0.8, np.random.default_rng(11))
    sigma = h.std()
    punch = np.quantile(h - h.mean(), 1 - fraction)
    assert punch == pytest.approx(math.sqrt(2) * sigma * erfcinv(2 * fraction), rel=0.05)
    t = punch / sigma
    gap = np.mean(np.maximum(punch - (h - h.mean()), 0.0))
    assert gap == pytest.approx(punch * norm.cdf(t) + sigma * norm.pdf(t), rel=0.05)


def test_a_cell_on_the_self_affine_relief_builds_and_plates(tmp_path):
    """``electrolyte.relief = "self_affine"``: the geometry takes the electrolyte's relief spectrum from
    materials.toml (the v4 priors), the foil rests on the highest asperities at its bearing fraction,
    and a short plating run closes its bookkeeping. The default stays the v3 Gaussian."""
    import os

    import kmc
    from kmc.geometry import from_scenario

    t2 = os.path.join(os.path.dirname(__file__), "..", "scenarios", "validation", "T2.toml")
    sc = kmc.load_scenario(t2, overrides={"electrolyte.relief": "self_affine", "lattice.nx": 32, "lattice.ny": 32,
                                          "protocol.0.capacity_mah_cm2": 0.05})
    assert kmc.load_scenario(t2).get("electrolyte.relief") == "gaussian"
    geo = from_scenario(sc, np.random.default_rng(1))
    nasicon = sc.materials["nasicon"]
    want = relief.self_affine_surface_um(32, 32, 0.5, nasicon["relief_rq_um"], nasicon["relief_rolloff_um"],
                                         nasicon["relief_cutoff_um"], nasicon["relief_hurst"], np.random.default_rng(1))
    np.testing.assert_allclose(geo.surface_um, want - want.mean(), atol=1e-12)
    assert geo.bearing_fraction == pytest.approx(math.ceil(5.6 / 400 * 32 * 32) / (32 * 32))
    ds = kmc.simulate(sc, seed=1).isel(run=0)
    assert int(ds.status) == 2 and float(ds.plated[-1]) > 0.04


@pytest.mark.parametrize("voxel_um", [0.5, 0.25])
def test_the_lattice_gap_under_a_foil_holds_the_valley_volume_at_two_voxels(voxel_um):
    """Through the production geometry (``kmc.geometry.build``): the GAP voxels the lattice holds between
    the electrolyte and a foil at bearing fraction P/H, recounted, equal the analytic valley volume
    h_p Φ(t) + σ φ(t) per area within 5 % at voxels of 0.5 and 0.25 µm (Rq 0.3 µm: the coarser voxel does
    not resolve the relief); the continuous surface the geometry keeps gives the same gap within 5 % and
    the lattice matches it within 3 %. Shown to fail with the v3 construction planted back (SE heights
    rounded to voxels under a CC level rounded with them: the lattice gap 1.26× the valley volume at
    0.5 µm)."""
    from kmc.geometry import build
    from kmc.kernels.cell import GAP

    fraction = 5.6 / 400.0
    n = int(round(128 / voxel_um))
    h = relief.self_affine_surface_um(n, n, voxel_um, 0.3, 8.0, 1.0, 0.8, np.random.default_rng(11))
    geo = build(n, n, int(round(10 / voxel_um)), voxel_um, form="foil", rq_um=0.3, xi_um=3.0,
                stack_pressure_mpa=5.6, hardness_mpa=400.0, rng=np.random.default_rng(1), surface_um=h)
    sigma = h.std()
    punch = math.sqrt(2) * sigma * erfcinv(2 * fraction)
    t = punch / sigma
    valley = punch * norm.cdf(t) + sigma * norm.pdf(t)
    lattice_gap = (geo.lattice == GAP).sum() * voxel_um / n**2  # µm³ per µm²
    continuous_gap = float(np.mean(geo.cc_offset * voxel_um - geo.se_surface_um))
    assert lattice_gap == pytest.approx(valley, rel=0.05)
    assert continuous_gap == pytest.approx(valley, rel=0.05)
    assert lattice_gap == pytest.approx(continuous_gap, rel=0.03)
    # The continuous surface is the relief itself: under the CC face by the gap, flat at the contacts.
    contact = geo.se_surface_um == geo.cc_offset * voxel_um
    assert contact.mean() == pytest.approx(geo.bearing_fraction)
    np.testing.assert_allclose(geo.se_surface_um[~contact] - geo.se_surface_um[~contact].mean(),
                               (h - h.mean())[~contact] - (h - h.mean())[~contact].mean(), atol=1e-9)
