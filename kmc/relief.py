"""The electrolyte's surface relief as a self-affine random surface (PHYSICS.md §3, v4).

Power spectrum (isotropic, ``C(q)`` with ``rms² = ∫ C(q) d²q/(2π)²``, q in rad/µm):

    C(q) = C0                            for q < q_r = 2π/λ_r   (roll-off: flat)
    C(q) = C0 (q/q_r)^(−2(1+H))          for q_r ≤ q ≤ q_s = 2π/λ_s
    C(q) = 0                             for q > q_s

with the Hurst exponent H, the roll-off wavelength λ_r and the short-wavelength cut-off λ_s, a
property of the material (the grain scale, a profilometer's resolution) and never the voxel. ``Rq``
is the rms over the band [q_r, q_s], which fixes C0 independently of the domain:

    Rq² = C0 q_r² (1 − (q_s/q_r)^(−2H)) / (4π H).

The flat roll-off below q_r adds C0 q_r²/(4π) once the domain holds it (L ≫ λ_r), so a large
domain's total rms is Rq √(1 + H/(1 − (q_s/q_r)^(−2H))) (``expected_rms_um`` gives it for a finite
periodic domain, mode by mode).

The surface is a sum of the domain's Fourier modes with |q| ≤ q_s, each with a Gaussian amplitude of
variance set by C(q), drawn from the generator in a fixed order of the integer wave vectors (by |q|,
then ky, then kx), independent of the voxel: halving the voxel on the same domain samples the very
same band-limited surface at twice the points.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.fft


def band_amplitude(rq_um: float, rolloff_um: float, cutoff_um: float, hurst: float) -> float:
    """C0 (µm⁴) of the spectrum whose rms over [q_r, q_s] is ``rq_um``."""
    q_r, q_s = 2 * math.pi / rolloff_um, 2 * math.pi / cutoff_um
    return rq_um**2 * 4 * math.pi * hurst / (q_r**2 * (1 - (q_s / q_r) ** (-2 * hurst)))


def spectrum_um4(q: np.ndarray, rq_um: float, rolloff_um: float, cutoff_um: float, hurst: float) -> np.ndarray:
    """C(q) (µm⁴) at wave numbers q (rad/µm): flat below q_r, power law to q_s, zero beyond."""
    q = np.asarray(q, dtype=float)
    q_r, q_s = 2 * math.pi / rolloff_um, 2 * math.pi / cutoff_um
    c0 = band_amplitude(rq_um, rolloff_um, cutoff_um, hurst)
    with np.errstate(divide="ignore"):
        c = c0 * np.where(q < q_r, 1.0, (np.maximum(q, q_r) / q_r) ** (-2 * (1 + hurst)))
    return np.where(q <= q_s, c, 0.0)


def _modes(nx: int, ny: int, voxel_um: float, cutoff_um: float):
    """Integer wave vectors (kx, ky) of one half plane with 0 < |q| ≤ q_s, in the canonical order, and
    their |q| (rad/µm). The half plane: kx > 0, or kx = 0 and ky > 0."""
    lx, ly = nx * voxel_um, ny * voxel_um
    q_s = 2 * math.pi / cutoff_um
    kx_max = min(int(q_s * lx / (2 * math.pi)), (nx - 1) // 2)
    ky_max = min(int(q_s * ly / (2 * math.pi)), (ny - 1) // 2)
    kx, ky = np.meshgrid(np.arange(0, kx_max + 1), np.arange(-ky_max, ky_max + 1))
    kx, ky = kx.ravel(), ky.ravel()
    q = 2 * math.pi * np.hypot(kx / lx, ky / ly)
    keep = ((kx > 0) | ((kx == 0) & (ky > 0))) & (q <= q_s)
    kx, ky, q = kx[keep], ky[keep], q[keep]
    order = np.lexsort((kx, ky, np.round(q, 12)))
    return kx[order], ky[order], q[order]


def self_affine_surface_um(nx: int, ny: int, voxel_um: float, rq_um: float, rolloff_um: float, cutoff_um: float,
                           hurst: float, rng: np.random.Generator) -> np.ndarray:
    """Heights (µm, shape (ny, nx), mean 0) of a self-affine random surface with the module's spectrum.

    The band's modes must be resolved: λ_s ≥ 2 voxels (a mode beyond the grid's Nyquist limit is left
    out, which the caller should not need)."""
    if not (rq_um >= 0 and rolloff_um > cutoff_um > 0 and 0 < hurst <= 1):
        raise ValueError(f"relief: need rq >= 0, rolloff > cutoff > 0, 0 < H <= 1 (got {rq_um}, {rolloff_um}, "
                         f"{cutoff_um}, {hurst})")
    kx, ky, q = _modes(nx, ny, voxel_um, cutoff_um)
    area = nx * ny * voxel_um**2
    # Mode pair ±k: variance 2 C(q) Δq²/(2π)² = 2 C(q)/A, shared by its cosine and sine parts.
    amp = np.sqrt(2 * spectrum_um4(q, rq_um, rolloff_um, cutoff_um, hurst) / area)
    g = rng.standard_normal((q.size, 2))
    coeff = np.zeros((ny, nx), dtype=complex)
    # h(x) = Σ_k amp (g1 cos(q·x) + g2 sin(q·x)) = Σ_k (c_k e^{iq·x} + conj(c_k) e^{−iq·x}).
    c = amp * (g[:, 0] - 1j * g[:, 1]) / 2.0
    coeff[ky % ny, kx % nx] = c
    coeff[(-ky) % ny, (-kx) % nx] += np.conj(c)
    return np.real(scipy.fft.ifft2(coeff, workers=1)) * (nx * ny)


def expected_rms_um(nx: int, ny: int, voxel_um: float, rq_um: float, rolloff_um: float, cutoff_um: float,
                    hurst: float) -> float:
    """The ensemble rms (µm) of ``self_affine_surface_um`` on this periodic domain: Σ over its modes."""
    _, _, q = _modes(nx, ny, voxel_um, cutoff_um)
    return math.sqrt(float(np.sum(2 * spectrum_um4(q, rq_um, rolloff_um, cutoff_um, hurst))) / (nx * ny * voxel_um**2))
