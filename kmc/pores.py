"""E9: Na entering the pores of a porous collector (PHYSICS.md §5, E9).

A pore is an open channel of radius r_p (the collector material's ``pore_radius_um``). Na, which does
not wet the collector (Young–Dupré: cos θ_CC = W_adh/γ − 1 with W_adh = −pair_energy_na_<cc>), enters
it only when its stress σ exceeds the capillary entry pressure

    p_entry = 2 γ |cos θ_CC| / r_p                      (Laplace, a cylindrical meniscus)

and then only as deep as it can be extruded: pushing a plug of length L through a channel of radius
r whose wall it sticks to costs the shear flow stress τ_f over the wall, so the force balance
σ π r² = p_entry π r² + τ_f 2π r L gives

    L = (σ − p_entry) r_p / (2 τ_f),   τ_f = σ_f/√3 (von Mises),
    σ_f = σ_ref + σ_s (2 r_p / 1 µm)^(−β)              (PHYSICS §5 M at the pore's width h = 2 r_p),

at Na's reference strain rate (the rate factor (ε̇/ε̇_ref)^(1/n) is left at 1: a choice, since the
extrusion rate into a pore is not resolved). Na is never extruded further, so trapped Na follows the
porosity and the pore size. For Cu (r_p 1.4 µm, θ 120°, γ 0.2 J/m²): p_entry = 0.14 MPa, σ_f =
5.2 MPa, L = 0.24 µm per MPa above entry: ≈ 2.3 µm under a 10 MPa load.
"""
from __future__ import annotations

import math


def entry_pressure_mpa(surface_energy_j_m2: float, pair_energy_j_m2: float, pore_radius_um: float) -> float:
    """p_entry (MPa) of a pore of radius ``pore_radius_um`` for Na on a collector whose Na pair energy
    (J/m², −W_adh) is given: 2γ|cos θ|/r_p, cos θ = −pair/γ − 1."""
    cos_theta = -pair_energy_j_m2 / surface_energy_j_m2 - 1.0
    return 2.0 * surface_energy_j_m2 * abs(cos_theta) / (pore_radius_um * 1e-6) * 1e-6


def extrusion_um_per_mpa(pore_radius_um: float, sigma_ref_mpa: float, size_strength_mpa: float,
                         size_exponent: float) -> float:
    """dL/dσ (µm per MPa): r_p/(2 τ_f), τ_f = [σ_ref + σ_s (2 r_p/1 µm)^(−β)]/√3."""
    sigma_f = sigma_ref_mpa + size_strength_mpa * (2.0 * pore_radius_um) ** (-size_exponent)
    return pore_radius_um / (2.0 * sigma_f / math.sqrt(3.0))


def depth_voxels(stress_mpa: float, entry_mpa: float, um_per_mpa: float, voxel_um: float) -> int:
    """Pore layers (below the collector's lower face counted 1, 2, …) Na at ``stress_mpa`` may fill:
    the whole voxels of the extrusion depth L."""
    if stress_mpa <= entry_mpa:
        return 0
    return int(math.floor((stress_mpa - entry_mpa) * um_per_mpa / voxel_um + 1e-9))
