"""Surface flaws of the electrolyte and filament initiation (PHYSICS.md §3 flaws, §5 E8).

Each pixel of the electrolyte surface may hold sub-grid flaws: their number is Poisson with mean
``n_flaw a²`` (areal density n_flaw), each of depth c drawn from a Weibull law (scale c0, shape m);
a pixel keeps its deepest flaw (the one that decides whether that pixel can crack).

A flaw whose mouth is covered by Na that plates fills with Na at the pixel's plating current
j_p: c/a voxels of Na, so the fill takes ``(c/a) q_v / (j_p a²)``. The Na in a filled flaw is pressed
to the smaller of what the overpotential can give, ``F|η|/V_m`` (1 mV ≈ 4 MPa), and what Na flowing
out of the flaw by creep allows, the extrusion pressure

    p_flow = (2c/δ_c) (σ_ref/√3) (ε̇/ε̇_ref)^(1/n),   ε̇ = 2v/δ_c,   v = (j V_m/F)(1 + 2c/δ_c),

(σ_ref, ε̇_ref) a point of Na's creep law at the temperature, δ_c the crack opening. Growth is unstable
— a filament crosses the electrolyte and the cell shorts — when the Griffith–Inglis stress intensity
of the pressurized edge crack reaches the toughness: ``1.12 p √(π c) ≥ K_IC`` (Porz et al. 2017).
"""
from __future__ import annotations

import math

import numpy as np

from kmc import units


def sample_flaw_depths_um(rng: np.random.Generator, n_pixels: int, flaws_per_pixel: float, scale_um: float,
                          shape: float) -> np.ndarray:
    """Depth (µm) of each pixel's deepest flaw, 0 where it has none."""
    counts = rng.poisson(flaws_per_pixel, n_pixels)
    depth = np.zeros(n_pixels)
    for pixel in np.flatnonzero(counts):
        depth[pixel] = scale_um * rng.weibull(shape, counts[pixel]).max()
    return depth


def overpotential_pressure_mpa(eta_v: float, molar_volume_cm3_mol: float) -> float:
    """F|η|/V_m (MPa): the most the overpotential can press Na into a closed flaw."""
    return units.F * abs(eta_v) / (molar_volume_cm3_mol * 1e-6) * 1e-6


def extrusion_pressure_mpa(depth_um: float, current_a_cm2: float, opening_um: float, sigma_ref_mpa: float,
                           strain_rate_ref_s: float, stress_exponent: float, molar_volume_cm3_mol: float) -> float:
    """p_flow (MPa): the pressure at which Na plated into a flaw of depth c at j (A/cm²) flows out of
    its opening δ_c by creep as fast as it arrives (module docstring)."""
    aspect = 2.0 * depth_um / opening_um
    v_m_s = abs(current_a_cm2) * 1e4 * molar_volume_cm3_mol * 1e-6 / units.F * (1.0 + aspect)
    strain_rate = 2.0 * v_m_s / (opening_um * 1e-6)
    return aspect * sigma_ref_mpa / math.sqrt(3.0) * (strain_rate / strain_rate_ref_s) ** (1.0 / stress_exponent)


def stress_intensity_mpa_m05(pressure_mpa: float, depth_um: float) -> float:
    """K = 1.12 p √(π c) (MPa√m) of an edge crack of depth c under internal pressure p."""
    return 1.12 * pressure_mpa * math.sqrt(math.pi * depth_um * 1e-6)


def fill_time_s(depth_um: float, voxel_um: float, voxel_charge_c: float, current_a_cm2: float) -> float:
    """(c/a) q_v / (j_p a²): the time a flaw of depth c takes to fill at the pixel current j_p."""
    return (depth_um / voxel_um) * voxel_charge_c / (current_a_cm2 * (voxel_um * 1e-4) ** 2)
