"""MkDocs hook: the generated parts of the pages, and the rule that no page points outside the repository.

Generated parts are written from the code and data they describe, at every build, so they cannot
drift from them. A page asks for one with a marker line ``<!-- generated: NAME -->``:

- ``materials``: every constant of ``scenarios/materials.toml`` with its value (as written in the
  file), units, role (sourced, calibrated on a row, prior), what it sets in the model, and its source
  or reason (the comment on its line), plus the notes above it in the file;
- ``scenario-keys`` / ``step-kinds`` / ``sweep-keys``: the scenario tables and keys of
  ``kmc.config.SCHEMA``, the protocol step kinds of ``kmc.config.STEP_KINDS``, the sweep file's keys of
  ``kmc.sweep.SWEEP_KEYS``, with defaults and allowed values as the validation reports them;
- ``store-layout``: the variables a battery run and a hop run write, from the models' own layouts
  (``layout()``) and the per-run bookkeeping of ``kmc.store``.

A material key with no entry in ``MEANING`` below, or an unknown marker, fails the build: a new
constant must say what it sets.

Outside references: the pages speak for themselves. A page whose content links out of the site (a
URL with a scheme or host, an absolute path, a relative path that climbs out of the site) or names the
project's specification files fails the build. The texts quoted from the code and data (comments of
materials.toml, docs of scenario keys) mention those specification files by section; such mentions are
turned into links to the matching section of the model page (``own_words``).
"""
from __future__ import annotations

import html
import math
import posixpath
import re
import sys
import tomllib
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parents[2]
# Describe this checkout's code and data, not whatever kmc is installed: its root goes first on the
# path (kmc/__init__.py maps kernels/, analysis/ and scenarios/ into the kmc namespace from there).
if (ROOT / "pyproject.toml").is_file() and (ROOT / "kmc" / "__init__.py").is_file():
    sys.path.insert(0, str(ROOT))

MATERIALS_TOML = ROOT / "scenarios" / "materials.toml"
#: A scenario whose layout has every kind of battery variable (samples, cycles, maps, snapshots).
LAYOUT_SCENARIO = ROOT / "scenarios" / "validation" / "T5.toml"
HOP_SCENARIO = ROOT / "scenarios" / "hop.toml"

MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)


# ---------------------------------------------------------------------------------------------------
# The project's own words for mentions of its specification files in quoted texts
# ---------------------------------------------------------------------------------------------------

#: Sections of the model page, numbered as the comments in the code and data number them.
MODEL_SECTIONS = {"1": "what is simulated", "2": "domain and states", "3": "initial geometry",
                  "4": "the field solve", "5": "events and rates", "6": "protocols",
                  "7": "observables", "8": "parameters"}
_SPEC = r"PHYSICS(?:\.md)?"
#: Rewrites of the quoted texts' mentions of the specification, in order. Most mention it as where a
#: value was also quoted: these pages state the value and its own source, so the mention goes.
REWRITES = (
    (re.compile(rf"\s*\({_SPEC} §\d\)"), ""),                         # "… 0.25–0.3 eV (PHYSICS §8), midpoint"
    (re.compile(rf"{_SPEC} §\d, "), ""),                                # "(PHYSICS §8, handbook; …)"
    (re.compile(rf"; {_SPEC} §\d [^;)]*"), ""),                         # "…; PHYSICS §5 ~0.2"
    (re.compile(rf", quoted in {_SPEC} §\d,"), ", a value often quoted,"),
    (re.compile(rf", bounded as {_SPEC} §\d says"), ""),
    (re.compile(rf"{_SPEC} §\d quotes (≈ [\d.]+), which is"), r"A rate of \1 is"),
    (re.compile(rf"{_SPEC} §\d gives "), ""),                           # "(PHYSICS §4 gives χ = …, …)"
    (re.compile(rf"{_SPEC} §\d's|{_SPEC}'s"), "the expected"),          # "inside PHYSICS §5's 1–2 V²"
    (re.compile(rf"\({_SPEC} §\d: "), "(expected: "),                  # "(PHYSICS §5: 1–2 V²)"
    (re.compile(rf"{_SPEC} §(\d)"), r"[model §\1](model.md#s\1)"),      # what the model page describes
    (re.compile(rf"{_SPEC}"), "[the model](model.md)"),
    (re.compile(r"(?<!model )§(\d)"), r"[model §\1](model.md#s\1)"),    # a bare "(§4)"
    (re.compile(r"VALIDATION(?:\.md)?"), "[validation](validation.md)"),
    (re.compile(r"SCHEMA\.md"), "[user guide](user-guide.md)"),
)


def own_words(text: str) -> str:
    """Markdown ``text`` with its mentions of the specification files made the project's own: dropped
    where they only say where a value was also quoted, else links to the matching page or section."""
    for pattern, replacement in REWRITES:
        text = pattern.sub(replacement, text)
    return text


_MD_SPECIAL = re.compile(r"([\\`*_\[\]|])")


def md_text(text: str) -> str:
    """Plain text as Markdown (special characters escaped), in the project's words."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return own_words(_MD_SPECIAL.sub(r"\\\1", text))


# ---------------------------------------------------------------------------------------------------
# materials.toml
# ---------------------------------------------------------------------------------------------------

#: Units and what each constant sets in the model, by key (``table.key`` where a key means something
#: else in one table). Every key of materials.toml must have an entry.
MEANING: dict[str, tuple[str, str]] = {
    # sodium
    "molar_volume_cm3_mol": ("cm³/mol", ("molar volume V_m: the charge of a voxel q_v = F a³/V_m, the stress "
                                         "term V_m σ/F and the overpotential pressure F|η|/V_m")),
    "melting_point_c": ("°C", "melting point (the homologous temperature T/T_m; informational, not read by the code)"),
    "creep_flow_stress_mpa": ("MPa", "σ_ref: the measured point of Na's power-law creep (E4a, E4b, E8 extrusion)"),
    "creep_reference_strain_rate_s": ("1/s", "ε̇_ref: the strain rate at σ_ref"),
    "creep_stress_exponent": ("1", "n: stress exponent of the creep law"),
    "creep_activation_ev": ("eV", "Q of the creep law (Arrhenius factor away from 25 °C)"),
    "creep_geometric_factor": ("1", "k_ℓ: multiplies the creep rate of E4a and the capillary attempt rate of E4b"),
    "self_diffusion_cm2_s": ("cm²/s", "D* at 25 °C: the vacancy-diffusion refill rate E4c"),
    "self_diffusion_activation_ev": ("eV", "Q_D: Arrhenius factor of D* away from 25 °C"),
    "refill_current_ma_cm2_per_mpa": ("mA cm⁻² MPa⁻¹", "k_r: Na's critical stripping current per MPa of normal "
                                                        "stress, j_r = k_r σ_c (E4 refill of interface voids under "
                                                        "model.refill = critical_current, at 25 °C)"),
    "refill_activation_ev": ("eV", "Q_r: Arrhenius factor of j_r away from 25 °C (model.refill = critical_current)"),
    "surface_energy_j_m2": ("J/m²", "γ: the capillary stress γ/a that sets the capillary attempt rate (E4b)"),
    "capillary_energy_scale_j_m2": ("J/m²", ("E_eff per area: the energy scale of capillary moves (E4b) and of "
                                             "the insertion energy (E1)")),
    "pair_energy_na_na_j_m2": ("J/m²", "bond energy of a Na face against Na (E1 insertion, E4 moves)"),
    "pair_energy_na_gap_j_m2": ("J/m²", "bond energy of a Na face against a gap: the zero"),
    "pair_energy_na_au_j_m2": ("J/m²", "bond energy of a Na face against an Au-covered collector"),
    "pair_energy_na_se_j_m2": ("J/m²", "bond energy of a Na face against the electrolyte or its interphase"),
    "pair_energy_na_al_j_m2": ("J/m²", "bond energy of a Na face against a bare Al collector"),
    "pair_energy_na_cu_j_m2": ("J/m²", "bond energy of a Na face against a bare Cu collector"),
    "pair_energy_na_ti_j_m2": ("J/m²", "bond energy of a Na face against a bare Ti collector"),
    "size_effect_strength_mpa": ("MPa", ("σ_s: size-effect term of Na's flow stress, "
                                         "σ_f = [σ_ref + σ_s (h/1 µm)^(−β)] (ε̇/ε̇_ref)^(1/n) in a gap of height h "
                                         "(v4 prior; not read by the code yet)")),
    "size_effect_exponent": ("1", ("β: exponent of the size effect in σ_s (h/1 µm)^(−β) "
                                   "(v4 prior; not read by the code yet)")),
    # electrolytes
    "conductivity_s_cm": ("S/cm", "ionic conductivity σ at its reference temperature (field solve, R_int)"),
    "conductivity_activation_ev": ("eV", "activation energy of σ"),
    "conductivity_reference_c": ("°C", "temperature of the conductivity value"),
    "j0_ma_cm2": ("mA/cm²", ("exchange current density j0 of Na on this electrolyte (Butler–Volmer of Na "
                              "faces and of nucleated collector faces)")),
    "transfer_coefficient": ("1", "cathodic transfer coefficient α of Butler–Volmer"),
    "k_ic_mpa_m05": ("MPa·m^½", "fracture toughness K_IC (E8 crack criterion)"),
    "roughness_um": ("µm", "Rq of the electrolyte surface (under a foil collector)"),
    "correlation_length_um": ("µm", "ξ: lateral correlation length of the electrolyte surface"),
    "contact_stress_mpa": ("MPa", ("σ_χ: Na stress at which a Na face reaches full contact quality χ = 1 (under "
                                   "model.contact_quality = \"face_state\", pressed at σ ≥ σ_χ it keeps χ = 1 until a "
                                   "void opens there)")),
    "unloaded_contact_quality": ("1", ("χ of Na faces that carry no load (the floor of χ) under model.contact_quality "
                                       "= \"floor\"; not used under \"face_state\"")),
    "double_layer_capacitance_uf_cm2": ("µF/cm²", ("C_dl: double layer charged while the faces cannot carry "
                                                   "the current, and on a jump of a held voltage")),
    "sei_rate_ma_cm2": ("mA/cm²", "k_sei: the interphase growth rate on Na faces (E7)"),
    "sei_limit_nm": ("nm", "δ0 of the self-limiting law k_sei/(1 + δ/δ0) (E7)"),
    "sei_kind": ("—", "self_limiting (insulating products) or continuous (electron-conducting products) (E7)"),
    "sei_exchange_ratio": ("1", "j0 of a Na face on the interphase relative to one on the clean electrolyte"),
    "flaw_density_cm2": ("1/cm²", "n_flaw: areal density of the electrolyte's surface flaws (E8)"),
    "flaw_scale_um": ("µm", ("c0: Weibull scale of the flaw depths (E8); under model.flaw_law = \"slot\" the "
                              "shallowest flaw depth of the Pareto tail (calibrated for the v3 law only)")),
    "flaw_shape": ("1", "m: Weibull shape of the flaw depths (E8, v3 law model.flaw_law = \"metal_front\")"),
    "crack_opening_um": ("µm", ("δ_c: opening of a flaw, in the extrusion pressure (E8, v3 law; the slot law "
                                 "takes δ_c = (8 K_IC/E)√(c/2π) per depth)")),
    "relief_rq_um": ("µm", ("Rq of the self-affine electrolyte relief: rms over the wavelengths λ_s to λ_r "
                             "(v4 prior; not read by the code yet)")),
    "relief_rolloff_um": ("µm", ("λ_r: roll-off wavelength of the relief spectrum, flat at longer waves, "
                                  "∝ q^(−2(1+H)) at shorter (v4 prior; not read by the code yet)")),
    "relief_cutoff_um": ("µm", ("λ_s: shortest wavelength of the relief, a material scale (grain, particle), "
                                 "never the voxel (v4 prior; not read by the code yet)")),
    "relief_hurst": ("1", "H: Hurst exponent of the self-affine relief (v4 prior; not read by the code yet)"),
    "youngs_modulus_gpa": ("GPa", ("E: Young's modulus of the electrolyte; the slot law's flaw opening "
                                    "δ_c = (8 K_IC/E)√(c/2π) (E8 under model.flaw_law = \"slot\")")),
    "strength_weibull_modulus": ("1", ("m: Weibull modulus of the electrolyte's specimen strength, which sets the "
                                       "flaw-depth tail (x/c0)^(−m/2) (E8 under model.flaw_law = \"slot\")")),
    # collectors
    "foil_hardness_mpa": ("MPa", "H of a foil: bearing fraction min(1, P/H) and the load its contacts carry"),
    "pellet_hardness_mpa": ("MPa", "H of a pressed-powder pellet: the load its contacts carry"),
    "pellet_roughness_um": ("µm", "Rq of the interface under a pellet collector (used instead of the electrolyte's)"),
    "nucleation_barrier_v2": ("V²", "B of the nucleation hazard a² J0 exp(−B/η²) (E2)"),
    "nucleation_prefactor_cm2_s": ("1/(cm² s)", "J0 of the nucleation hazard (E2)"),
    "pellet_relief_rq_um": ("µm", "Rq of the self-affine relief under a pellet collector (v4 prior; not read yet)"),
    "pellet_relief_rolloff_um": ("µm", "λ_r of the relief under a pellet collector (v4 prior; not read yet)"),
    "pellet_relief_cutoff_um": ("µm", "λ_s of the relief under a pellet collector (v4 prior; not read yet)"),
    "pellet_relief_hurst": ("1", "H of the relief under a pellet collector (v4 prior; not read yet)"),
    "pore_radius_um": ("µm", ("r_p: pore radius of a porous pellet collector; Na enters above 2γ|cos θ|/r_p "
                               "(E9; v4 prior, not read by the code yet)")),
    # seed layer and counter electrodes
    "alloy_capacity_mah_cm2_per_100nm": ("mAh/cm² per 100 nm", "Na taken up by 100 nm of Au when it alloys (E3)"),
    "alloying_potential_v": ("V vs Na/Na⁺", "local potential of unalloyed Au faces (electrochemical alloying, E3)"),
    "au.j0_ma_cm2": ("mA/cm²", "exchange current density of Au faces, unalloyed (E3) and alloyed (E1)"),
    "dealloying_potential_v": ("V vs Na/Na⁺", ("V + U_CE above which alloyed Au facing the electrolyte gives its Na "
                                                 "back on stripping, and that face's local potential (E3, "
                                                 "model.alloy = phases; v4 prior)")),
    "alloy_spread_rate_um_s": ("µm/s", ("speed of the Na–Au alloy front along the Au to neighbouring columns, a/v "
                                        "per column (E3, model.alloy = phases; v4 prior)")),
    "au_molar_volume_cm3_mol": ("cm³/mol", ("molar volume of Au: the seed layer's moles, so its Na capacity and "
                                            "thickness (E3, model.alloy = phases)")),
    "naau2_molar_volume_cm3_mol": ("cm³/mol", "molar volume of NaAu2 per formula unit (E3, model.alloy = phases: "
                                              "the alloy layer's thickness)"),
    "naau_molar_volume_cm3_mol": ("cm³/mol", "molar volume of NaAu per formula unit (E3, model.alloy = phases)"),
    "na2au_molar_volume_cm3_mol": ("cm³/mol", "molar volume of Na2Au per formula unit (E3, model.alloy = phases)"),
    "potential_v": ("V vs Na/Na⁺", "potential U_CE of the counter electrode"),
}

_TABLE_LINE = re.compile(r"^\[([A-Za-z0-9_]+)\]\s*(?:#\s?(.*))?$")
_VALUE_LINE = re.compile(r"^([A-Za-z0-9_]+)\s*=\s*(.+?)\s+#\s?(.*)$")
_ROLE = re.compile(r"^(source|prior|calibrated on ([A-Z]\d+)):?\s*(.*)$", re.DOTALL)


def read_materials(path: Path = MATERIALS_TOML) -> list[dict]:
    """The tables of materials.toml in file order: name, description, notes, and keys with the raw value
    text, parsed value, inline comment and the comment lines just above (notes)."""
    text = path.read_text(encoding="utf-8")
    values = tomllib.loads(text)
    tables: list[dict] = []
    notes: list[str] = []
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if s.startswith("#"):
            notes.append(s.lstrip("#").strip())
            continue
        if not s:
            continue
        if m := _TABLE_LINE.match(s):
            # Comments before the first table are the file's header (described on the page itself).
            tables.append({"name": m.group(1), "description": m.group(2) or "", "notes": notes if tables else [],
                           "keys": []})
        elif (m := _VALUE_LINE.match(s)) and tables:
            key, raw, comment = m.groups()
            table = tables[-1]
            if tomllib.loads(f"v = {raw}")["v"] != values[table["name"]][key]:
                raise PluginError(f"{path.name}:{n}: could not read {table['name']}.{key}'s value")
            table["keys"].append({"key": key, "raw": raw, "comment": comment.strip(), "notes": notes})
        else:
            raise PluginError(f"{path.name}:{n}: expected a table header or 'key = value  # comment': {s!r}")
        notes = []
    read = {(t["name"], k["key"]) for t in tables for k in t["keys"]}
    every = {(t, k) for t, keys in values.items() for k in keys}
    if read != every:
        raise PluginError(f"{path.name}: keys not read from the file: {sorted(every - read)}")
    return tables


def role_of(comment: str) -> tuple[str, str]:
    """(role, source or reason) from a value line's comment."""
    m = _ROLE.match(comment)
    if not m:
        raise PluginError(f"materials.toml: a comment that is not source / calibrated on <row> / prior: {comment!r}")
    kind, row, rest = m.groups()
    role = "sourced" if kind == "source" else "prior" if kind == "prior" else f"calibrated on {row}"
    return role, rest


def meaning_of(table: str, key: str) -> tuple[str, str]:
    found = MEANING.get(f"{table}.{key}") or MEANING.get(key)
    if found is None:
        raise PluginError(f"materials.toml: {table}.{key} has no entry in MEANING ({__file__}): say its units "
                          f"and what it sets")
    return found


def _role_link(role: str) -> str:
    if role.startswith("calibrated on "):
        row = role.removeprefix("calibrated on ")
        return f"calibrated on [{row}](validation.md#{row.lower()})"
    return role


def materials_tables() -> str:
    out = []
    for table in read_materials():
        name = table["name"]
        out += [f"### `[{name}]` {md_text(table['description'])}" if table["description"] else f"### `[{name}]`",
                ""]
        if table["notes"]:
            out += ["> " + md_text(" ".join(table["notes"])), ""]
        out += ["| key | value | units | role | sets | source or reason |", "|---|---|---|---|---|---|"]
        notes = []
        for k in table["keys"]:
            units, sets = meaning_of(name, k["key"])
            role, source = role_of(k["comment"])
            full = f"{name}.{k['key']}"
            out.append(f"| `{full}` | `{k['raw']}` | {units} | {_role_link(role)} | {md_text(sets)} | "
                       f"{md_text(source)} |")
            if k["notes"]:
                notes.append(f"- `{full}`: {md_text(' '.join(k['notes']))}")
        out.append("")
        if notes:
            out += ["Notes from the file, above the keys they explain:", "", *notes, ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------------
# Scenario and sweep keys
# ---------------------------------------------------------------------------------------------------

def _default_text(key) -> str:
    from kmc import config

    d = key.default
    if d is config.REQUIRED:
        return "required"
    if d is config.OPTIONAL:
        return "(absent)"
    if isinstance(d, config.DefaultFrom):
        return ", ".join(f"{v!r} with {d.key} = {k!r}" for k, v in d.values.items())
    return f"`{d!r}`" if not isinstance(d, str) else (f'`"{d}"`' if d else '`""`')


def _key_rows(prefix: str, keys: dict) -> list[str]:
    rows = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    for name, key in keys.items():
        allowed = key.allowed(name).removesuffix(" (required)")
        rows.append(f"| `{prefix}{name}` | {_default_text(key)} | {md_text(allowed)} | {md_text(key.doc)} |")
    return rows


def scenario_keys() -> str:
    from kmc.config import SCHEMA, TABLES

    out = []
    for name, keys in SCHEMA.items():
        kinds = [k for k, tables in TABLES.items() if name in tables]
        which = " (both model kinds)" if len(kinds) > 1 else f" (`[model] kind = \"{kinds[0]}\"`)"
        out += [f"#### `[{name}]`{which}", "", *_key_rows(f"{name}.", keys), ""]
    return "\n".join(out)


def step_kinds() -> str:
    from kmc.config import CYCLE_STEP_KINDS, STEP_KINDS

    out = []
    for kind, spec in STEP_KINDS.items():
        out += [f"#### `kind = \"{kind}\"`", "", md_text(spec.doc[0].upper() + spec.doc[1:]) + "."]
        if len(spec.bound) == 1:
            out[-1] += f" `{spec.bound[0]}` must be given (the step's bound)."
        elif spec.bound:
            either = " or ".join(f"`{b}`" for b in spec.bound)
            out[-1] += f" At least one of {either} must be given (the step's bound)."
        if kind == "cycle":
            kinds = ", ".join(f"`{k}`" for k in CYCLE_STEP_KINDS)
            out[-1] += f" Each of `steps` is a table with a `kind` among {kinds}."
        out += ["", *_key_rows("", spec.keys), ""]
    return "\n".join(out)


def sweep_keys() -> str:
    from kmc.sweep import SWEEP_KEYS, UNSWEEPABLE

    rows = ["| key | default | allowed | meaning |", "|---|---|---|---|",
            "| `base` | required | a path, relative to the sweep file | the base scenario file |"]
    rows += _key_rows("", SWEEP_KEYS)[2:]
    rows.append("| `[vary]` | (empty) | dotted scenario keys, each with a non-empty list of values | the values "
                "each key takes |")
    rows += ["", "Keys a sweep may not vary:", ""]
    rows += [f"- `{k}`{'.*' if k in ('lattice', 'model') else ''}: {md_text(why.split('(', 1)[-1].rstrip(')'))}"
             for k, why in UNSWEEPABLE.items()]
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------------------------------

def _var_rows(variables) -> list[str]:
    rows = ["| variable | dims | dtype | units | meaning | fill |", "|---|---|---|---|---|---|"]
    for v in variables:
        fill = v.fill_value()
        fill_text = "NaN" if isinstance(fill, float) and math.isnan(fill) else repr(fill)
        legend = ""
        if "flag_meanings" in v.attrs:
            pairs = zip(v.attrs["flag_values"], v.attrs["flag_meanings"].split())
            legend = " (" + ", ".join(f"{a} {b}" for a, b in pairs) + ")"
        rows.append(f"| `{v.name}` | ({', '.join(v.dims)}) | {v.dtype} | `{v.units}` | "
                    f"{md_text(v.long_name + legend)} | {fill_text} |")
    return rows


def store_layout() -> str:
    from kmc.config import load_scenario
    from kmc.model import model_for
    from kmc.store import RUN_VARS

    battery = model_for(load_scenario(LAYOUT_SCENARIO)).layout()
    hop = model_for(load_scenario(HOP_SCENARIO)).layout()
    out = ["#### Every store: per-run bookkeeping", "", *_var_rows(RUN_VARS), "",
           "#### Battery runs", "", *_var_rows(battery.variables), "",
           "#### Hop runs (the engine benchmark model)", "", *_var_rows(hop.variables), ""]
    return "\n".join(out)


GENERATORS = {"materials": materials_tables, "scenario-keys": scenario_keys, "step-kinds": step_kinds,
              "sweep-keys": sweep_keys, "store-layout": store_layout}


def on_page_markdown(markdown, page, config, files):
    def generate(m):
        name = m.group(1)
        if name not in GENERATORS:
            raise PluginError(f"{page.file.src_path}: unknown generated part {name!r}: expected one of "
                              f"{', '.join(GENERATORS)}")
        return GENERATORS[name]()

    return MARKER.sub(generate, markdown)


# ---------------------------------------------------------------------------------------------------
# Nothing points outside the repository
# ---------------------------------------------------------------------------------------------------

#: Names of the specification files, which are not part of the repository, and machine paths to them.
OUTSIDE_TEXT = re.compile(r"shared/|\b(?:PHYSICS|VALIDATION|SCHEMA|DESIGN)\.md\b|\bPHYSICS\b")


class _References(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.targets: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.targets += [v for k, v in attrs if k in ("href", "src") and v]

    def handle_data(self, data):
        self.text.append(data)


def outside_references(content_html: str, page_url: str) -> list[str]:
    """What in a page's content points outside the repository (empty if nothing)."""
    parser = _References()
    parser.feed(content_html)
    problems = []
    for target in parser.targets:
        parts = urlsplit(target)
        if parts.scheme or parts.netloc:
            problems.append(f"a link out of the site: {target}")
        elif parts.path.startswith("/"):
            problems.append(f"an absolute path: {target}")
        elif parts.path:
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(page_url), parts.path))
            if resolved == ".." or resolved.startswith("../"):
                problems.append(f"a link out of the site: {target}")
        if OUTSIDE_TEXT.search(target):
            problems.append(f"a link to a file outside the repository: {target}")
    for m in OUTSIDE_TEXT.finditer(html.unescape("".join(parser.text))):
        problems.append(f"a mention of a file outside the repository: {m.group(0)!r}")
    return problems


def on_page_content(content_html, page, config, files):
    problems = outside_references(content_html, page.url)
    if problems:
        raise PluginError(f"{page.file.src_path}: the documentation must not point outside the repository: "
                          + "; ".join(dict.fromkeys(problems)))
    return content_html
