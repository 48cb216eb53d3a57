"""Units, constants and material laws (kmc.units), and the rules of scenarios/materials.toml (PHYSICS.md §8)."""
from __future__ import annotations

import importlib.resources
import math
import re
import tomllib

import numpy as np
import pytest

from kmc import config, units
from kmc.errors import KmcError

MATERIALS_TEXT = (importlib.resources.files("kmc.scenarios") / "materials.toml").read_text(encoding="utf-8")
MATERIALS = tomllib.loads(MATERIALS_TEXT)
NA = MATERIALS["na"]
VM = NA["molar_volume_cm3_mol"]

# Every table and key, with the sign its value must have: "+" > 0, "-" < 0, "0" == 0, or str.
_SE = {
    "conductivity_s_cm": "+", "conductivity_activation_ev": "+", "conductivity_reference_c": "+",
    "j0_ma_cm2": "+", "transfer_coefficient": "+", "k_ic_mpa_m05": "+", "roughness_um": "+",
    "correlation_length_um": "+", "contact_stress_mpa": "+", "unloaded_contact_quality": "+", "double_layer_capacitance_uf_cm2": "+",
    "sei_rate_ma_cm2": "+", "sei_limit_nm": "+", "sei_kind": str, "sei_exchange_ratio": "+", "flaw_density_cm2": "+",
    "flaw_scale_um": "+", "flaw_shape": "+", "crack_opening_um": "+",
    "relief_rq_um": "+", "relief_rolloff_um": "+", "relief_cutoff_um": "+", "relief_hurst": "+",
    "youngs_modulus_gpa": "+", "strength_weibull_modulus": "+",
}
_CC = {"foil_hardness_mpa": "+", "pellet_hardness_mpa": "+", "pellet_roughness_um": "+",
       "nucleation_barrier_v2": "+", "nucleation_prefactor_cm2_s": "+",
       "pellet_relief_rq_um": "+", "pellet_relief_rolloff_um": "+", "pellet_relief_cutoff_um": "+",
       "pellet_relief_hurst": "+", "pore_radius_um": "+"}
EXPECTED = {
    "na": {
        "molar_volume_cm3_mol": "+", "melting_point_c": "+", "creep_flow_stress_mpa": "+",
        "creep_reference_strain_rate_s": "+", "creep_stress_exponent": "+", "creep_activation_ev": "+",
        "creep_geometric_factor": "+", "self_diffusion_cm2_s": "+", "self_diffusion_activation_ev": "+",
        "refill_current_ma_cm2_per_mpa": "+", "refill_activation_ev": "+",
        "surface_energy_j_m2": "+", "capillary_energy_scale_j_m2": "+",
        "pair_energy_na_na_j_m2": "-", "pair_energy_na_gap_j_m2": "0", "pair_energy_na_se_j_m2": "-",
        "pair_energy_na_au_j_m2": "-", "pair_energy_na_al_j_m2": "-", "pair_energy_na_cu_j_m2": "-",
        "pair_energy_na_ti_j_m2": "-", "size_effect_strength_mpa": "+", "size_effect_exponent": "+",
    },
    "nasicon": _SE, "nbh": _SE, "nps": _SE,
    "al": _CC, "cu": _CC, "ti": _CC,
    "au": {"alloy_capacity_mah_cm2_per_100nm": "+", "alloying_potential_v": "+", "j0_ma_cm2": "+",
           "dealloying_potential_v": "+", "alloy_spread_rate_um_s": "+", "naau2_molar_volume_cm3_mol": "+",
           "naau_molar_volume_cm3_mol": "+", "na2au_molar_volume_cm3_mol": "+", "au_molar_volume_cm3_mol": "+"},
    "na_counter": {"potential_v": "0"},
    "na9sn4": {"potential_v": "+"},
}

# The calibrations PHYSICS.md §8 assigns, and the VALIDATION.md row of each; no other key is calibrated.
CALIBRATED = {
    "nasicon.j0_ma_cm2": "T3",
    "nasicon.sei_rate_ma_cm2": "T4",
    "nasicon.flaw_density_cm2": "T5", "nasicon.flaw_scale_um": "T5", "nasicon.flaw_shape": "T5",
    "nbh.flaw_density_cm2": "D2", "nbh.flaw_scale_um": "D2", "nbh.flaw_shape": "D2",
    "nps.sei_rate_ma_cm2": "D3",
}
PREDICTION_ROWS = ("T1", "T2", "T6", "D1", "D4")


def _value_lines(text: str) -> list[tuple[str, str, str]]:
    """(dotted key, value text, inline comment) of every ``key = value`` line of a flat TOML file."""
    out, table = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            table = line[1:line.index("]")].strip()
            continue
        in_string, cut = False, len(line)
        for i, ch in enumerate(line):
            if ch == '"':
                in_string = not in_string
            elif ch == "#" and not in_string:
                cut = i
                break
        body, comment = line[:cut], line[cut + 1:].strip()
        key, _, value = body.partition("=")
        out.append((f"{table}.{key.strip()}", value.strip(), comment))
    return out


VALUE_LINES = _value_lines(MATERIALS_TEXT)


# ---------------------------------------------------------------------------------------------
# Conversions
# ---------------------------------------------------------------------------------------------

def test_constants():
    assert units.F == pytest.approx(units.E * units.N_A, rel=1e-15)
    assert units.R == pytest.approx(units.K_B * units.E * units.N_A, rel=1e-15)
    assert units.celsius_to_kelvin(25.0) == 298.15
    assert units.thermal_voltage_v(298.15) == pytest.approx(0.025693, abs=1e-6)


def test_one_mah_cm2_is_8_87_um_of_na():
    h = units.capacity_to_thickness_um(1.0, VM)
    assert f"{h:.3g}" == "8.87"
    assert units.thickness_to_capacity_mah_cm2(h, VM) == pytest.approx(1.0, rel=1e-14)
    assert units.capacity_to_thickness_um(2.0, VM) == pytest.approx(2 * h, rel=1e-14)


def test_voxel_charge():
    q = units.voxel_charge_c(0.5, VM)
    assert q == pytest.approx(units.F * (0.5e-4) ** 3 / VM, rel=1e-14)
    assert q == pytest.approx(5.07e-10, rel=1e-3)
    # a voxel column of height a over area a² holds a µm of Na: q_v / a² is the capacity of a µm.
    per_area_mah_cm2 = q / (0.5e-4) ** 2 / units.MAH
    assert per_area_mah_cm2 == pytest.approx(units.thickness_to_capacity_mah_cm2(0.5, VM), rel=1e-14)


def test_stress_term():
    assert units.mpa_to_mv(1.0, VM) == pytest.approx(0.246, abs=5e-4)
    assert units.mv_to_mpa(1.0, VM) == pytest.approx(4.06, abs=5e-3)          # E8: 1 mV ≈ 4 MPa
    assert units.mv_to_mpa(units.mpa_to_mv(3.0, VM), VM) == pytest.approx(3.0, rel=1e-14)


def test_face_energy():
    assert units.face_energy_ev(0.2, 0.5) == pytest.approx(0.2 * 0.25e-12 / units.E, rel=1e-14)
    assert units.face_energy_ev(0.2, 0.5) > 1e5 * units.K_B * 298.15     # ≫ kT (PHYSICS §5, E4b)


# ---------------------------------------------------------------------------------------------
# Material laws
# ---------------------------------------------------------------------------------------------

def test_creep_law_passes_through_the_measured_point_and_scales_as_sigma_to_the_n():
    s_ref, e_ref, n = NA["creep_flow_stress_mpa"], NA["creep_reference_strain_rate_s"], NA["creep_stress_exponent"]
    assert units.creep_strain_rate_s(s_ref, NA, units.T_REF_K) == pytest.approx(e_ref, rel=1e-14)
    for factor in (0.1, 2.0, 7.5):
        ratio = units.creep_strain_rate_s(factor * s_ref, NA, 310.0) / units.creep_strain_rate_s(s_ref, NA, 310.0)
        assert ratio == pytest.approx(factor**n, rel=1e-12)
    assert units.creep_strain_rate_s(0.0, NA, 298.15) == 0.0
    assert units.creep_strain_rate_s(-s_ref, NA, 298.15) == pytest.approx(-e_ref)
    rates = units.creep_strain_rate_s(np.array([s_ref, 2 * s_ref]), NA, units.T_REF_K)
    assert rates == pytest.approx([e_ref, e_ref * 2**n])


def test_creep_law_arrhenius_and_prefactor():
    q = NA["creep_activation_ev"]
    hot, cold = units.creep_strain_rate_s(1.0, NA, 330.0), units.creep_strain_rate_s(1.0, NA, units.T_REF_K)
    assert hot / cold == pytest.approx(math.exp(-q / units.K_B * (1 / 330.0 - 1 / units.T_REF_K)), rel=1e-12)
    a = units.creep_prefactor(NA)
    for t in (260.0, 298.15, 340.0):
        textbook = a * 0.8 ** NA["creep_stress_exponent"] * math.exp(-q / (units.K_B * t))
        assert units.creep_strain_rate_s(0.8, NA, t) == pytest.approx(textbook, rel=1e-12)


def test_creep_point_is_wang_2020():
    # Wang et al. (2020): flow stress 0.19–0.28 MPa at ~1e-3 1/s, n ≈ 5; Q inside Lowack's 0.13–0.15 eV.
    assert 0.19 <= NA["creep_flow_stress_mpa"] <= 0.28
    assert NA["creep_reference_strain_rate_s"] == pytest.approx(1e-3)
    assert NA["creep_stress_exponent"] == pytest.approx(5.0)
    assert 0.13 <= NA["creep_activation_ev"] <= 0.15


def test_self_diffusion_and_e4c_rate():
    assert units.self_diffusion_cm2_s(NA, units.T_REF_K) == NA["self_diffusion_cm2_s"]
    assert 0.5e-8 <= NA["self_diffusion_cm2_s"] <= 1.0e-8                      # Mundy et al. (1966)
    ratio = units.self_diffusion_cm2_s(NA, 350.0) / units.self_diffusion_cm2_s(NA, units.T_REF_K)
    assert ratio == pytest.approx(math.exp(-NA["self_diffusion_activation_ev"] / units.K_B
                                           * (1 / 350.0 - 1 / units.T_REF_K)), rel=1e-12)
    # E4c at 25 °C, a = 0.5 µm: D* V_m Δσ/(R T a²); ≈ 0.04 s⁻¹ per MPa in PHYSICS §5 for D* = 1e-8 cm²/s.
    k = units.diffusion_hop_rate_s(1.0, NA, units.T_REF_K, 0.5)
    assert k == pytest.approx(NA["self_diffusion_cm2_s"] / 1e-8 * 0.0384, rel=2e-3)
    assert 0.019 <= k <= 0.04
    assert units.diffusion_hop_rate_s(np.array([1.0, 2.0]), NA, units.T_REF_K, 0.5) == pytest.approx([k, 2 * k])


def test_refill_current_law():
    """E4 refill (model.refill = "critical_current"): j_r = k_r σ exp(−Q_r/k_B (1/T − 1/T_ref)), with Spencer
    Jolly et al.'s 2.5 mA/cm² at 9 MPa (k_r = 0.278) and Lowack et al.'s 0.13–0.15 eV."""
    assert NA["refill_current_ma_cm2_per_mpa"] == pytest.approx(2.5 / 9.0, rel=0.01)
    assert 0.13 <= NA["refill_activation_ev"] <= 0.15
    assert units.refill_current_density_ma_cm2(5.6, NA, units.T_REF_K) == pytest.approx(0.28 * 5.6)
    ratio = units.refill_current_density_ma_cm2(1.0, NA, 350.0) / units.refill_current_density_ma_cm2(
        1.0, NA, units.T_REF_K)
    assert ratio == pytest.approx(math.exp(-NA["refill_activation_ev"] / units.K_B * (1 / 350.0 - 1 / units.T_REF_K)))
    assert units.refill_current_density_ma_cm2(np.array([1.0, 2.0]), NA, units.T_REF_K) == pytest.approx(
        [0.28, 0.56])


def test_conductivity_at_its_reference_temperature():
    nbh = MATERIALS["nbh"]
    assert units.conductivity_s_cm(nbh, units.celsius_to_kelvin(20.0)) == pytest.approx(0.9e-3)
    assert units.conductivity_s_cm(nbh, 298.15) > 0.9e-3
    assert units.conductivity_s_cm(MATERIALS["nasicon"], 298.15) == pytest.approx(5.0e-3)


def test_load_materials_reads_the_shipped_table(monkeypatch):
    assert units.load_materials() == MATERIALS
    monkeypatch.setattr(config, "shipped_materials", dict)
    with pytest.raises(KmcError, match="no material table"):
        units.load_materials()


# ---------------------------------------------------------------------------------------------
# The rules of materials.toml
# ---------------------------------------------------------------------------------------------

def test_every_table_and_key_is_present_with_the_right_sign():
    assert set(MATERIALS) == set(EXPECTED)
    for table, keys in EXPECTED.items():
        assert set(MATERIALS[table]) == set(keys), table
        for key, sign in keys.items():
            value = MATERIALS[table][key]
            where = f"{table}.{key} = {value!r}"
            if sign is str:
                assert isinstance(value, str), where
                continue
            assert isinstance(value, float) and math.isfinite(value), where   # floats: overrides may be ints
            assert {"+": value > 0, "-": value < 0, "0": value == 0}[sign], where
    for se in ("nasicon", "nbh"):
        assert MATERIALS[se]["sei_kind"] == "self_limiting"
    assert MATERIALS["nps"]["sei_kind"] == "continuous"


def test_sourced_values_are_the_cited_ones():
    assert VM == 23.78 and NA["melting_point_c"] == 97.8
    assert MATERIALS["nasicon"]["conductivity_s_cm"] == 5.0e-3
    assert 0.25 <= MATERIALS["nasicon"]["conductivity_activation_ev"] <= 0.3
    assert 1.0 <= MATERIALS["nasicon"]["k_ic_mpa_m05"] <= 1.5
    assert (MATERIALS["nbh"]["conductivity_s_cm"], MATERIALS["nbh"]["conductivity_reference_c"]) == (0.9e-3, 20.0)
    assert (MATERIALS["al"]["foil_hardness_mpa"], MATERIALS["al"]["pellet_hardness_mpa"]) == (400.0, 160.0)
    assert MATERIALS["cu"]["pellet_hardness_mpa"] == 370.0 and MATERIALS["ti"]["pellet_hardness_mpa"] == 970.0
    for cc in ("al", "cu", "ti"):
        assert 0.9 <= MATERIALS[cc]["pellet_roughness_um"] <= 1.05
        assert 1.0 <= MATERIALS[cc]["nucleation_barrier_v2"] <= 2.0
    assert 0.1 <= MATERIALS["na9sn4"]["potential_v"] <= 0.2
    assert 56.0 <= MATERIALS["nasicon"]["youngs_modulus_gpa"] <= 97.0                     # Wolfenstine et al. (2022)


def test_au_capacity_between_naau2_and_na2au():
    per_na_per_au = 1e-5 * 19.32 / 196.967 * units.F / units.MAH      # 100 nm Au, mAh/cm² per Na/Au
    assert 0.5 * per_na_per_au <= MATERIALS["au"]["alloy_capacity_mah_cm2_per_100nm"] <= 2.0 * per_na_per_au * 1.001


def test_size_effect_strength_is_li_at_the_same_homologous_temperature_scaled_by_shear_modulus():
    """σ_ref + σ_s is the strength at h = 1 µm: Xu et al.'s ~1 µm Li pillars at 90 °C (35 MPa, exponent −1.00),
    the temperature where Li has Na's T/Tm at 25 °C, times G_Na/G_Li = 1.7/4.24 (PHYSICS.md §5 M, §8).

    Planted fault seen to fail it: σ_s = 34.8 MPa (Li's strength taken without the shear-modulus ratio)."""
    homologous_na = units.T_REF_K / (NA["melting_point_c"] + 273.15)
    homologous_li_90c = (90.0 + 273.15) / (180.5 + 273.15)
    assert homologous_na == pytest.approx(homologous_li_90c, abs=0.01)
    at_one_um = NA["creep_flow_stress_mpa"] + NA["size_effect_strength_mpa"]
    assert at_one_um == pytest.approx(35.0 * 1.7 / 4.24, rel=0.01)
    assert NA["size_effect_exponent"] == 1.0


def test_relief_spectra_are_self_affine_bands_set_by_the_material():
    """Every relief spans λ_s < λ_r (at least a decade here) with a Hurst exponent of polished, fractured and
    pressed surfaces (0.7–0.9); NASICON keeps its v3 Rq; the pellets keep Deysher et al.'s 0.9–1.05 µm.

    Planted fault seen to fail it: nasicon relief_rolloff_um and relief_cutoff_um swapped (30 ↔ 3)."""
    reliefs = [(MATERIALS[se], "relief_") for se in ("nasicon", "nbh", "nps")]
    reliefs += [(MATERIALS[cc], "pellet_relief_") for cc in ("al", "cu", "ti")]
    for table, prefix in reliefs:
        assert table[f"{prefix}rolloff_um"] >= 10 * table[f"{prefix}cutoff_um"]
        assert 0.7 <= table[f"{prefix}hurst"] <= 0.9
    assert MATERIALS["nasicon"]["relief_rq_um"] == MATERIALS["nasicon"]["roughness_um"]
    for cc in ("al", "cu", "ti"):
        assert 0.9 <= MATERIALS[cc]["pellet_relief_rq_um"] <= 1.05


def test_pores_grow_with_the_hardness_of_the_pressed_powder():
    """A harder powder keeps more porosity at the same pressing load, so larger interstices: Al < Cu < Ti, each
    below the 2.1 µm interstice of loose ~10 µm particles.

    Planted fault seen to fail it: cu pore_radius_um = 0.5 (below Al's)."""
    radii = [MATERIALS[cc]["pore_radius_um"] for cc in ("al", "cu", "ti")]
    hardness = [MATERIALS[cc]["pellet_hardness_mpa"] for cc in ("al", "cu", "ti")]
    assert hardness == sorted(hardness) and radii == sorted(radii) and len(set(radii)) == 3
    assert max(radii) < 2.1


def test_na_au_phases_take_up_na_contracted_and_strip_above_their_alloying_potential():
    """Molar volumes grow with the Na content but stay below the sum of the metals' volumes (the alkali metal is
    contracted in its Au alloys); the de-alloying potential is not below the alloying potential.

    Planted fault seen to fail it: dealloying_potential_v = 0.1 (below alloying_potential_v = 0.2)."""
    au = MATERIALS["au"]
    v_au = 196.967 / 19.32
    phases = [("naau2_molar_volume_cm3_mol", 1, 2), ("naau_molar_volume_cm3_mol", 1, 1),
              ("na2au_molar_volume_cm3_mol", 2, 1)]
    volume_per_au = [au[key] / n_au for key, _, n_au in phases]
    assert volume_per_au == sorted(volume_per_au)
    for key, n_na, n_au in phases:
        assert n_au * v_au < au[key] < n_au * v_au + n_na * VM, key
    assert au["dealloying_potential_v"] >= au["alloying_potential_v"]


def test_pair_energies_follow_young_dupre():
    g = NA["surface_energy_j_m2"]
    assert NA["pair_energy_na_na_j_m2"] == pytest.approx(-2 * g)                 # −W_coh
    assert NA["pair_energy_na_au_j_m2"] <= NA["pair_energy_na_na_j_m2"]         # Na–Au favourable (θ ≈ 0)
    for metal in ("al", "cu", "ti"):                                             # non-wetting (θ > 90°)
        w = -NA[f"pair_energy_na_{metal}_j_m2"]
        assert 0 < w < g
    w_se = -NA["pair_energy_na_se_j_m2"]
    assert 0 < w_se <= 2 * g                                                     # a real angle


def test_every_value_line_says_source_calibration_or_prior():
    assert len(VALUE_LINES) == sum(len(t) for t in MATERIALS.values())          # one line per value
    for key, value, comment in VALUE_LINES:
        assert re.match(r"(source: |calibrated on [A-Z]\d+ |prior: )\S", comment), \
            f"{key} = {value}: the comment must start with 'source: ', 'calibrated on <row> ' or 'prior: '"


def test_only_the_assigned_calibrations_say_calibrated():
    said = {}
    for key, value, comment in VALUE_LINES:
        if "calibrat" in comment.lower():
            m = re.match(r"calibrated on ([A-Z]\d+) \((not yet run\): prior|run [^)]+\): .*prior) \S", comment)
            assert m, (f"{key}: a calibrated value names its row, and either gives its starting prior "
                       f"(not yet run) or how the run set it and the prior it started from")
            said[key] = m.group(1)
        assert not any(re.search(rf"\b{row}\b", comment) for row in PREDICTION_ROWS), \
            f"{key}: a material constant may not refer to a prediction row"
    assert said == CALIBRATED
