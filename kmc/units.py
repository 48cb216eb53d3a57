"""Physical constants, unit conversions and the material laws of PHYSICS.md (§4, §5, §8).

The simulator works in the units of the scenario keys (PHYSICS.md, preamble): time in s, current
density in mA/cm², charge in mAh/cm², pressure in MPa, temperature in °C (K inside the laws), lengths
in µm, molar volumes in cm³/mol, energies of activation in eV. Every function here states its units.

Constants are the exact SI values (2019 redefinition) and CODATA 2018.

Reference temperature. The material laws are written about one measured point at
``T_REF_K = 298.15 K`` (25 °C): Na's creep point (σ_ref, ε̇_ref) of Wang et al. (2020) and Na's
self-diffusion D* of Mundy et al. (1966) are both 25 °C values in materials.toml, and every validation
row runs at 25 °C. Written this way, a law at 25 °C does not depend on its activation energy (which
is a prior, PHYSICS.md §8), and the prefactor of the textbook form ``A σⁿ exp(−Q/RT)`` follows as
``A = ε̇_ref σ_ref⁻ⁿ exp(Q/(R T_ref))`` (``creep_prefactor``).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = [
    "F", "R", "K_B", "E", "N_A", "T_REF_K", "MAH", "celsius_to_kelvin", "thermal_voltage_v",
    "voxel_charge_c", "capacity_to_thickness_um", "thickness_to_capacity_mah_cm2", "mpa_to_mv",
    "mv_to_mpa", "creep_strain_rate_s", "creep_prefactor", "self_diffusion_cm2_s",
    "diffusion_hop_rate_s", "refill_current_density_ma_cm2", "conductivity_s_cm", "face_energy_ev", "load_materials",
]

#: Faraday constant, C/mol (= e N_A, exact).
F = 96485.33212331001
#: Molar gas constant, J/(mol K) (= k N_A, exact).
R = 8.31446261815324
#: Boltzmann constant in eV/K (exact: 1.380649e-23 J/K / e).
K_B = 8.617333262145179e-05
#: Elementary charge, C (exact).
E = 1.602176634e-19
#: Avogadro constant, 1/mol (exact).
N_A = 6.02214076e23
#: Reference temperature of the material laws, K (25 °C; see the module docstring).
T_REF_K = 298.15
#: One mAh in C.
MAH = 3.6

_UM_TO_CM = 1e-4


def celsius_to_kelvin(t_c):
    """Temperature in K from °C: ``T = t + 273.15``."""
    return t_c + 273.15


def thermal_voltage_v(temperature_k):
    """``RT/F`` in V (25.69 mV at 298.15 K): the voltage scale of Butler–Volmer, ``f = F/RT = 1/this``."""
    return R * temperature_k / F


def voxel_charge_c(voxel_um, molar_volume_cm3_mol):
    """Charge of one Na voxel, ``q_v = F a³ / V_m``, in C.

    ``a`` is the voxel edge in µm (converted to cm), ``V_m`` in cm³/mol, so ``a³/V_m`` is mol of Na in the
    voxel and one electron per Na gives ``F`` C/mol. For a = 0.5 µm and V_m = 23.78 cm³/mol:
    1.25e-13 cm³ / 23.78 cm³/mol × 96485 C/mol = 5.07e-10 C (3.2e9 Na atoms).
    """
    a_cm = voxel_um * _UM_TO_CM
    return F * a_cm**3 / molar_volume_cm3_mol


def capacity_to_thickness_um(mah_cm2, molar_volume_cm3_mol):
    """Thickness in µm of a dense Na layer holding ``mah_cm2`` mAh/cm².

    ``h = (Q / F) V_m``: Q = 3.6 C/cm² per mAh/cm², divided by F gives mol/cm², times V_m (cm³/mol)
    gives cm, times 1e4 gives µm. 1 mAh/cm² → 3.6/96485 × 23.78 cm = 8.87 µm for V_m = 23.78 cm³/mol.
    """
    return mah_cm2 * MAH / F * molar_volume_cm3_mol / _UM_TO_CM


def thickness_to_capacity_mah_cm2(thickness_um, molar_volume_cm3_mol):
    """Capacity in mAh/cm² of a dense Na layer of ``thickness_um`` µm (inverse of ``capacity_to_thickness_um``)."""
    return thickness_um * _UM_TO_CM / molar_volume_cm3_mol * F / MAH


def mpa_to_mv(stress_mpa, molar_volume_cm3_mol):
    """Electrochemical potential shift of a stress, ``V_m σ / F``, in mV.

    V_m (cm³/mol = 1e-6 m³/mol) × σ (MPa = 1e6 Pa) is J/mol; / F (C/mol) is V. 1 MPa on Na:
    23.78 J/mol / 96485 C/mol = 0.246 mV. This is the stress term of ``U_loc`` (PHYSICS.md §4).
    """
    return molar_volume_cm3_mol * stress_mpa / F * 1e3


def mv_to_mpa(voltage_mv, molar_volume_cm3_mol):
    """Pressure in MPa equivalent to an overpotential, ``F |η| / V_m`` (1 mV ≈ 4.06 MPa on Na; E8)."""
    return voltage_mv * 1e-3 * F / molar_volume_cm3_mol


def creep_strain_rate_s(stress_mpa, na_table, temperature_k):
    """Na power-law creep rate in 1/s (PHYSICS.md §5, E4a).

    ``ε̇ = ε̇_ref (σ/σ_ref)ⁿ exp(−Q/k_B (1/T − 1/T_ref))``, with T_ref = 298.15 K, from the [na] keys
    ``creep_flow_stress_mpa`` (σ_ref, MPa), ``creep_reference_strain_rate_s`` (ε̇_ref, 1/s),
    ``creep_stress_exponent`` (n) and ``creep_activation_ev`` (Q, eV). This is ``A σⁿ exp(−Q/RT)``
    with ``A = creep_prefactor(na_table)``. The stress is a magnitude: a negative stress gives the
    negative rate (odd in σ), zero gives zero. Works on floats and NumPy arrays.
    """
    s = np.asarray(stress_mpa, dtype=float) / na_table["creep_flow_stress_mpa"]
    n = na_table["creep_stress_exponent"]
    arrhenius = math.exp(-na_table["creep_activation_ev"] / K_B * (1.0 / temperature_k - 1.0 / T_REF_K))
    rate = na_table["creep_reference_strain_rate_s"] * np.sign(s) * np.abs(s) ** n * arrhenius
    return rate if rate.ndim else float(rate)


def creep_prefactor(na_table):
    """``A`` of ``ε̇ = A σⁿ exp(−Q/RT)`` in MPa⁻ⁿ s⁻¹ (σ in MPa), derived from the measured point.

    ``A = ε̇_ref σ_ref⁻ⁿ exp(Q/(k_B T_ref))``: at T_ref the creep law passes through (σ_ref, ε̇_ref).
    With σ_ref = 0.235 MPa, ε̇_ref = 1e-3 1/s, n = 5, Q = 0.14 eV: A = 1.395 × 232.5 = 324 MPa⁻⁵ s⁻¹.
    """
    return (na_table["creep_reference_strain_rate_s"]
            / na_table["creep_flow_stress_mpa"] ** na_table["creep_stress_exponent"]
            * math.exp(na_table["creep_activation_ev"] / (K_B * T_REF_K)))


def self_diffusion_cm2_s(na_table, temperature_k):
    """Na self-diffusion coefficient D* in cm²/s: ``D*(T_ref) exp(−Q_D/k_B (1/T − 1/T_ref))``.

    From the [na] keys ``self_diffusion_cm2_s`` (at 25 °C) and ``self_diffusion_activation_ev``.
    """
    return na_table["self_diffusion_cm2_s"] * math.exp(
        -na_table["self_diffusion_activation_ev"] / K_B * (1.0 / temperature_k - 1.0 / T_REF_K))


def diffusion_hop_rate_s(stress_mpa, na_table, temperature_k, voxel_um):
    """Vacancy-diffusion move rate of E4c in 1/s: ``D* V_m Δσ / (R T a²)``.

    D* in m²/s (cm²/s × 1e-4), V_m in m³/mol (cm³/mol × 1e-6), Δσ in Pa (MPa × 1e6), a in m: the drift
    velocity ``D* V_m Δσ/(R T a)`` of a Na atom down a stress step Δσ over one voxel, divided by a.
    At 25 °C, a = 0.5 µm, D* = 0.7e-8 cm²/s: 0.027 s⁻¹ per MPa.
    """
    d_m2 = self_diffusion_cm2_s(na_table, temperature_k) * 1e-4
    v_m3 = na_table["molar_volume_cm3_mol"] * 1e-6
    a_m = voxel_um * 1e-6
    return d_m2 * v_m3 * (stress_mpa * 1e6) / (R * temperature_k * a_m**2)


def refill_current_density_ma_cm2(stress_mpa, na_table, temperature_k):
    """Critical stripping current of Na at a normal stress σ, in mA/cm² (PHYSICS.md §5 E4 refill; used
    under ``model.refill = "critical_current"``).

    ``j_r = k_r σ exp(−Q_r/k_B (1/T − 1/T_ref))``, from the [na] keys ``refill_current_ma_cm2_per_mpa``
    (k_r, mA cm⁻² MPa⁻¹, at 25 °C) and ``refill_activation_ev`` (Q_r, eV), σ in MPa. At 5.6 MPa and
    25 °C with k_r = 0.28: 1.57 mA/cm². Works on floats and NumPy arrays.
    """
    arrhenius = math.exp(-na_table["refill_activation_ev"] / K_B * (1.0 / temperature_k - 1.0 / T_REF_K))
    j = na_table["refill_current_ma_cm2_per_mpa"] * np.asarray(stress_mpa, dtype=float) * arrhenius
    return j if j.ndim else float(j)


def conductivity_s_cm(se_table, temperature_k):
    """Electrolyte conductivity in S/cm: ``σ_ref exp(−E_a/k_B (1/T − 1/T_σ))``.

    From the electrolyte keys ``conductivity_s_cm`` (at ``conductivity_reference_c``) and
    ``conductivity_activation_ev``. (The σT form would change σ by < 2 % over ±5 K; the simple form is used.)
    """
    t_ref = celsius_to_kelvin(se_table["conductivity_reference_c"])
    return se_table["conductivity_s_cm"] * math.exp(
        -se_table["conductivity_activation_ev"] / K_B * (1.0 / temperature_k - 1.0 / t_ref))


def face_energy_ev(energy_j_m2, voxel_um):
    """Energy of one voxel face in eV from a per-area value in J/m² (materials.toml ``*_j_m2`` keys).

    ``E = w a²``: 0.2 J/m² on a 0.5 µm face is 5e-14 J = 3.1e5 eV.
    """
    return energy_j_m2 * (voxel_um * 1e-6) ** 2 / E


def load_materials() -> dict:
    """The shipped material table ``scenarios/materials.toml`` (package ``kmc.scenarios``) as a dict.

    Reads it through ``kmc.config.shipped_materials`` (``importlib.resources.files("kmc.scenarios")``),
    so there is one reader. Raises ``KmcError`` if the file is not installed.
    """
    from kmc import config
    from kmc.errors import KmcError

    table = config.shipped_materials()
    if not table:
        raise KmcError("no material table is installed (kmc/scenarios/materials.toml)")
    return table
