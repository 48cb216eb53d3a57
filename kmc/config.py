"""Scenario files: loading, validation, overrides and seeds.

A scenario is a TOML file (SCHEMA.md, "Scenario file"). ``load_scenario`` reads it, applies overrides
(``kmc run --set KEY=VALUE``) to the raw TOML, checks every table and key against the declarative
schema below (``SCHEMA``, ``STEP_KINDS``, the cross-key ``CHECKS``), fills in every default and
returns an immutable ``Scenario``. Values stay in the units of the file, which are in the key names
(``stack_pressure_mpa``, ``current_ma_cm2``).

Every error a user can cause is a ``ScenarioError`` naming the dotted key in the ``--set`` form
(``protocol.2.steps.1.kind``) and what is allowed; an unreadable file or a TOML syntax error is a
``KmcError`` naming the file (and the line).
"""
from __future__ import annotations

import copy
import hashlib
import importlib.resources
import json
import math
import numbers
import re
import reprlib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from kmc.errors import KmcError, ScenarioError

__all__ = [
    "Key", "StepKind", "SCHEMA", "STEP_KINDS", "TABLES", "Scenario", "load_scenario", "read_toml",
    "parse_assignment", "shipped_materials", "protocol_duration_s", "ccd_currents_ma_cm2",
    "seed_for_replica", "derive_seed", "SEED_LIMIT", "MAX_CCD_LEVELS", "MAX_CYCLES", "MAX_SAMPLES", "MAX_RUNS",
]

#: Seeds are integers in [0, SEED_LIMIT): they fit a TOML integer and NumPy's SeedSequence.
SEED_LIMIT = 2**63
#: Samples over the protocol's bound when neither ``sample_every_s`` nor ``sample_every_mah_cm2`` is set.
DEFAULT_SAMPLES = 500
#: A ccd step may have at most this many current levels (a typo in ``step_ma_cm2`` should not
#: silently ask for a million plate/strip pairs).
MAX_CCD_LEVELS = 10_000
#: A cycle step may repeat at most this many times: the protocol is flattened cycle by cycle and the
#: store has a ``cycle`` entry per cycle, so a typo in ``count`` should not ask for a billion.
MAX_CYCLES = 10_000
#: A run may have at most this many samples: every per-sample variable of the store is this long, so a
#: typo in the sampling interval (or a protocol a million times longer) should not ask for 10¹² of them.
MAX_SAMPLES = 1_000_000
#: A store may have at most this many runs (replicas × sweep points): each run has its own chunks of
#: every variable, and the store is planned run by run; more runs go into several stores.
MAX_RUNS = 100_000


class _Marker:
    """A named placeholder (for defaults and for absent values in error messages)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


REQUIRED = _Marker("<required>")   # default of a key that must be given
OPTIONAL = _Marker("<optional>")   # default of a key that may be absent (and stays absent)
MISSING = _Marker("<missing>")     # the value shown in errors for an absent required key


class _Brief:
    """A table or array shortened for a one-line error message."""

    def __init__(self, value):
        self.value = value

    def __repr__(self) -> str:
        return reprlib.repr(self.value)


def _brief(value):
    return _Brief(value) if isinstance(value, (dict, list)) else value


# Units by key-name suffix, longest first (PHYSICS.md: lengths in µm, time in s, ...).
_UNITS = (("_mah_cm2", "mAh/cm²"), ("_ma_cm2", "mA/cm²"), ("_mpa", "MPa"), ("_um", "µm"),
          ("_nm", "nm"), ("_mv", "mV"), ("_v", "V"), ("_s", "s"), ("_c", "°C"))


def _units(name: str) -> str:
    return next((unit for suffix, unit in _UNITS if name.endswith(suffix)), "")


def _number(x) -> str:
    return "2**63" if x == SEED_LIMIT else f"{x:g}" if isinstance(x, float) else str(x)


@dataclass(frozen=True)
class DefaultFrom:
    """A default that depends on a sibling key: ``values[table[key]]``."""

    key: str
    values: Mapping[str, Any]


@dataclass(frozen=True)
class Key:
    """One scenario key: its type, default, allowed values and a one-line doc.

    ``type`` is ``"int"``, ``"float"`` (an int is accepted and converted), ``"str"`` or ``"steps"``
    (an array of protocol steps). ``default`` is a value, ``REQUIRED``, ``OPTIONAL`` (may be absent)
    or a ``DefaultFrom``. ``gt``/``ge``/``lt``/``le`` bound numbers; ``choices`` lists allowed strings.
    Units are those of the key name's suffix (``_um`` µm, ``_mpa`` MPa, ...).
    """

    type: str
    doc: str
    default: Any = REQUIRED
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    choices: tuple = ()

    def allowed(self, name: str) -> str:
        """What is allowed, in words, for the key ``name`` (its last dotted part)."""
        if self.type == "steps":
            return "a non-empty array of steps (tables with a kind)"
        if self.choices:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            text = {"int": "an integer", "float": "a number", "str": "a string"}[self.type]
            low = (f"({_number(self.gt)}" if self.gt is not None
                   else f"[{_number(self.ge)}" if self.ge is not None else None)
            high = (f"{_number(self.lt)})" if self.lt is not None
                    else f"{_number(self.le)}]" if self.le is not None else None)
            if low and high:
                text += f" in {low}, {high}"
            elif low:
                text += f" {'>' if low[0] == '(' else '>='} {low[1:]}"
            elif high:
                text += f" {'<' if high[-1] == ')' else '<='} {high[:-1]}"
            if _units(name):
                text += f" [{_units(name)}]"
        return text + (" (required)" if self.default is REQUIRED else "")

    def in_range(self, x) -> bool:
        return not ((self.gt is not None and not x > self.gt) or (self.ge is not None and not x >= self.ge)
                    or (self.lt is not None and not x < self.lt) or (self.le is not None and not x <= self.le))


def _pos(doc: str, default=REQUIRED) -> Key:
    """A number > 0."""
    return Key("float", doc, default, gt=0.0)


def _count(doc: str, default=REQUIRED) -> Key:
    """An integer >= 1."""
    return Key("int", doc, default, ge=1)


# ---------------------------------------------------------------------------------------------
# The schema: one dict of keys per table (SCHEMA.md "Scenario file"; PHYSICS.md §2, §3, §6, §8).
# ---------------------------------------------------------------------------------------------

SCHEMA: dict[str, dict[str, Key]] = {
    "scenario": {
        "name": Key("str", "name of the scenario and of its default store <name>.zarr (default: the file stem)",
                    OPTIONAL),
        "description": Key("str", "what the scenario is for", ""),
        "reference": Key("str", "the paper or VALIDATION.md row it reproduces", ""),
        "seed": Key("int", "seed of the run's random generator (PCG64); replicas derive theirs from it",
                    1, ge=0, lt=SEED_LIMIT),
    },
    "model": {
        "kind": Key("str", "battery: the Na plating model; hop: the engine benchmark model",
                    "battery", choices=("battery", "hop")),
        "insertion": Key("str", "E1 inside a deposit, where plated volume goes: nearest_gap (v3: the nearest gap "
                         "reached through the Na, at no cost) or least_stress (PHYSICS.md §5 M: the free edge of least "
                         "squeeze-flow stress, or a collector lift when that is cheaper; paths computed per solve)",
                         "nearest_gap", choices=("nearest_gap", "least_stress")),
        "flaw_law": Key("str", "E8, how the electrolyte's surface flaws fill and how deep they are: metal_front (v3: "
                        "a flaw fills only from the current of Na faces at its mouth, as fast as the metal "
                        "thickens; Weibull depths of flaw_shape; one crack_opening_um) or slot (PHYSICS.md v4 E8: a "
                        "slot of opening (8 K_IC/E) sqrt(c/2 pi) fills by deposition on its walls from any face "
                        "plating at its mouth below Na's potential, Na or collector, while the cell plates, and is "
                        "full once the charge passed there reaches (delta F/2 V_m) ln(1 + 2c/delta); depths P(c > x) = "
                        "(x/c0)^(-m/2) with m the electrolyte's strength_weibull_modulus; flaw_scale_um c0 is "
                        "calibrated for metal_front, not for slot)",
                        "metal_front", choices=("metal_front", "slot")),
        "flaw_mouth": Key("str", "E8 under the slot law, which of a pixel's flaws can hold pressure: pixel (PHYSICS.md "
                          "v4 as written: every flaw under a plating pixel, whatever its depth) or trace (a flaw of "
                          "depth c has a surface trace about 2c long, a half-penny crack: it holds pressure while "
                          "the pixels that plate cover the disc of radius c about its pixel; a deeper one opens "
                          "into the gap beside the patch, vents, and does not crack: a probe of E8's geometry, chosen "
                          "after seeing T1 and T2, not PHYSICS.md; docs/model.md, 'What the v4 laws predict for "
                          "foils on NASICON'). Ignored under metal_front",
                          "pixel", choices=("pixel", "trace")),
        "refill": Key("str", "E4, how an interface void under the Na closes while stripping: loaded_flow (v3: the "
                      "loaded layer's creep and one-voxel vacancy diffusion, E4a/E4c) or critical_current (PHYSICS.md "
                      "§5 E4: the void refills at Na's critical stripping current j_r = k_r σ_c exp[−(Q_r/k_B)(1/T − "
                      "1/T_ref)], σ_c the stress of the Na around it, the volume taken at the collector side of the "
                      "thickest Na nearby; E4c off; a ccd whose strip the contact cannot carry ends there as a CCD "
                      "by voids)", "loaded_flow", choices=("loaded_flow", "critical_current")),
        "contact_quality": Key("str", "contact quality χ of a Na face, the factor of its exchange current: floor (v3: "
                               "χ = min(1, max(σ/σ_χ, unloaded_contact_quality)), σ the Na's load-bearing stress) or "
                               "face_state (PHYSICS.md §4: χ = 1 for a face whose Na was made there by reduction, "
                               "is the cell's initial Na, or was pressed at σ ≥ contact_stress_mpa, kept until a void "
                               "opens there; min(1, σ/σ_χ) for a face Na reached by flow; no floor: "
                               "unloaded_contact_quality is not used)",
                               "floor", choices=("floor", "face_state")),
        "face_area": Key("str", "the area of a contact face on the voxelized electrolyte relief: staircase (v3: every "
                         "face a², so the side faces of the relief's steps add their L1 area, which grows as the "
                         "voxel resolves the relief) or true_area (PHYSICS.md §2, sub-voxel interface: a column's top "
                         "face a², its side faces sharing its true area beyond the projected one, "
                         "(sqrt(1 + |grad h|^2) - 1) a², from the continuous surface)",
                         "true_area", choices=("staircase", "true_area")),
        "alloy": Key("str", "E3, the Au seed layer's alloy: v3 (a column's Au takes its whole Na2Au inventory in one "
                     "event, electrochemically at electrolyte contacts or chemically where Na metal touches it; the "
                     "alloy's Na is never recovered) or phases (PHYSICS.md §5 E3: the Au takes Na through NaAu2, "
                     "NaAu and Na2Au in four steps of 0.5 Na per Au, its capacity from Au's molar volume; the alloy "
                     "front spreads to neighbouring Au columns at au.alloy_spread_rate_um_s; on stripping, alloy "
                     "facing the electrolyte gives its Na back, step by step, while V + U_CE exceeds "
                     "au.dealloying_potential_v)", "v3", choices=("v3", "phases")),
    },
    "hop": {
        "size": Key("int", "edge L of the periodic L×L×L lattice, in sites", 22, ge=2),
        "fraction": Key("float", "fraction of sites occupied", 0.5, gt=0.0, lt=1.0),
        "rate_decades": Key("float", "0: every hop at 1/s; > 0: per-site rate multipliers log-uniform "
                            "over this many decades", 0.0, ge=0.0, le=15.0),
        "duration_s": _pos("simulated time to run"),
    },
    "lattice": {
        # From atoms (1 nm) to the cell (1 mm): outside, the charge per voxel under- or overflows.
        "voxel_um": Key("float", "voxel edge a", 0.5, ge=1e-3, le=1e3),
        "nx": Key("int", "columns along x (periodic)", 64, ge=1),
        "ny": Key("int", "columns along y (periodic)", 64, ge=1),
        "nz": Key("int", "height of the anode region, in voxels", 64, ge=2),
    },
    "electrolyte": {
        "material": Key("str", "solid electrolyte: NASICON Na3.4Zr2Si2.4P0.6O12, NBH Na4B10H10B12H12 "
                        "or Na3PS4", "nasicon", choices=("nasicon", "nbh", "nps")),
        "thickness_um": Key("float", "thickness L of the electrolyte pellet (enters the field solve)", 800.0,
                            ge=1e-3, le=1e5),
        "relief": Key("str", "the electrolyte surface: gaussian (one scale, Rq and correlation length) or self_affine "
                      "(the material's relief spectrum: roll-off, cut-off, Hurst exponent)", "gaussian",
                      choices=("gaussian", "self_affine")),
    },
    "collector": {
        "form": Key("str", "foil (rolled, hard, flat) or pellet (powder pressed onto the electrolyte)",
                    "foil", choices=("foil", "pellet")),
        "material": Key("str", "current collector metal", "al", choices=("al", "cu", "ti")),
        "porosity": Key("float", "pore volume fraction of a pellet collector (0 for a foil)",
                        0.0, ge=0.0, lt=1.0),
        "seed_layer": Key("str", "sodiophilic seed layer on the collector's lower face", "none",
                          choices=("none", "au")),
        "seed_layer_nm": Key("float", "seed layer thickness (default 0 without a layer, 100 with Au)",
                             DefaultFrom("seed_layer", {"none": 0.0, "au": 100.0}), ge=0.0),
        "initial_na_um": Key("float", "Na layer in place between collector and electrolyte at the start "
                             "(0: anode-free)", 0.0, ge=0.0),
    },
    "counter": {
        "material": Key("str", "counter electrode: Na foil (0 V vs Na) or Na9Sn4", "na",
                        choices=("na", "na9sn4")),
    },
    "conditions": {
        "stack_pressure_mpa": Key("float", "stack pressure P", 5.0, ge=0.0),
        # Na melts at 97.8 °C; below -50 °C no data constrain the creep and conductivity laws.
        "temperature_c": Key("float", "cell temperature", 25.0, gt=-50.0, lt=97.8),
        # The domain is a patch of the cell: the cell shorts at the weakest of its flaws (kmc.flaws).
        "cell_area_cm2": Key("float", "area of the cell's collector-electrolyte interface, of which the "
                             "domain is a patch (sets the number of flaws that can short it)", 1.0, gt=0.0),
    },
    "output": {
        "sample_every_s": Key("float", f"sampling interval in simulated time (default: the run's time "
                              f"bound / {DEFAULT_SAMPLES})", OPTIONAL, gt=0.0),
        "sample_every_mah_cm2": Key("float", "sampling interval in passed charge (instead of sample_every_s)",
                                    OPTIONAL, gt=0.0),
        "map_every_samples": _count("a thickness/contact/current map every this many samples", 10),
        "snapshot_every_samples": _count("a 3D lattice snapshot every this many samples", 100),
        "checkpoint_every_s": _pos("wall-clock time between checkpoints", 300.0),
    },
    "numerics": {
        "resolve_area_fraction": Key("float", "re-solve the field when the contact area has changed by this "
                                     "fraction", 0.01, gt=0.0, le=1.0),
        "resolve_dv_mv": _pos("re-solve the field when the voltage has changed by this much", 1.0),
        "solver_rtol": Key("float", "relative tolerance of the field solve", 1e-6, gt=0.0, lt=1.0),
        "max_capillary_rate_ratio": _pos("cap on capillary move rates, relative to the faradaic rate nearby "
                                         "(PHYSICS.md §5, time-scale separation)", 100.0),
        "voltage_bound_v": _pos("largest |cell voltage| the faces may need to carry the current; beyond it the "
                                "double layer takes the excess (nucleation-limited start) or a step ends", 5.0),
        "capacity_drift_factor": Key("float", "re-solve the field when the faces' faradaic capacity at the frozen "
                                     "voltage has grown or shrunk by this factor", 2.0, gt=1.0),
        "events_per_batch": _count("most KMC events per kernel call between the driver's checks", 200_000),
    },
}

# Table order of each model kind (also the order of Scenario.data and of dumps_toml). "protocol"
# (an array of steps) and "materials" (overrides of the shipped table) are checked by their own code.
TABLES: dict[str, tuple[str, ...]] = {
    "battery": ("scenario", "model", "lattice", "electrolyte", "collector", "counter", "conditions",
                "protocol", "output", "numerics", "materials"),
    "hop": ("scenario", "model", "hop", "output"),
}


@dataclass(frozen=True)
class StepKind:
    """A protocol step kind: its keys (besides ``kind``) and the keys that bound it in time.

    ``bound``: at least one of these keys must be given (PHYSICS.md §6: every step has a bound so the
    store can be sized); empty when required keys bound the step already. ``checks`` are cross-key
    checks ``check(step, path)``.
    """

    doc: str
    keys: dict[str, Key]
    bound: tuple[str, ...] = ()
    checks: tuple[Callable[[dict, str], None], ...] = ()


def _galvanostatic(verb: str, cutoff: Key) -> StepKind:
    return StepKind(
        doc=f"{verb} at constant current until the capacity, the cut-off voltage or max_duration_s",
        keys={
            "current_ma_cm2": _pos(f"{verb} current density"),
            "capacity_mah_cm2": _pos("charge to pass", OPTIONAL),
            "cutoff_v": cutoff,
            "max_duration_s": _pos("longest duration of the step", OPTIONAL),
        },
        bound=("capacity_mah_cm2", "max_duration_s"),
    )


def _ccd_levels(step: Mapping) -> int:
    # The small slack keeps the max level when (max - start)/step lands just below an integer.
    return math.floor((step["max_ma_cm2"] - step["start_ma_cm2"]) / step["step_ma_cm2"] + 1e-9) + 1


def ccd_currents_ma_cm2(step: Mapping) -> list[float]:
    """The current levels of a validated ccd step, mA/cm²: start, start + step, ... up to max."""
    # Rounded so that 0.1 + 2·0.1 is stored and reported as 0.3, not 0.30000000000000004.
    return [round(step["start_ma_cm2"] + k * step["step_ma_cm2"], 12) for k in range(_ccd_levels(step))]


def _check_ccd(step: dict, path: str) -> None:
    if step["max_ma_cm2"] < step["start_ma_cm2"]:
        raise ScenarioError(f"{path}.max_ma_cm2", step["max_ma_cm2"],
                            f"a current >= start_ma_cm2 = {step['start_ma_cm2']:g} [mA/cm²]")
    # Levels are kept to 1e-12 mA/cm² (ccd_currents_ma_cm2): a start below it would be a level of 0.
    if round(step["start_ma_cm2"], 12) <= 0:
        raise ScenarioError(f"{path}.start_ma_cm2", step["start_ma_cm2"], "a current of at least 1e-12 [mA/cm²]")
    # (max - start) / step may overflow to inf before it is counted.
    span = (step["max_ma_cm2"] - step["start_ma_cm2"]) / step["step_ma_cm2"]
    levels = _ccd_levels(step) if span < MAX_CCD_LEVELS else math.inf
    if levels > MAX_CCD_LEVELS:
        raise ScenarioError(f"{path}.step_ma_cm2", step["step_ma_cm2"],
                            f"a current step giving at most {MAX_CCD_LEVELS} levels from start_ma_cm2 to "
                            f"max_ma_cm2 (this one gives {span + 1:.6g})")


STEP_KINDS: dict[str, StepKind] = {
    # Plating drives the cell voltage negative and stripping positive (PHYSICS.md §1), so a plating
    # cut-off above 0 or a stripping cut-off below 0 would end the step at once.
    "plate": _galvanostatic("plate", Key("float", "end the step when the voltage falls to this", OPTIONAL, lt=0.0)),
    "strip": _galvanostatic("strip", Key("float", "end the step when the voltage rises to this", OPTIONAL, gt=0.0)),
    "rest": StepKind(doc="open circuit for duration_s",
                     keys={"duration_s": _pos("duration of the rest", OPTIONAL)}, bound=("duration_s",)),
    "hold": StepKind(doc="constant voltage until the current falls below min_current_ma_cm2 or max_duration_s",
                     keys={"voltage_v": Key("float", "cell voltage held"),
                           "min_current_ma_cm2": _pos("end the step when |current| falls below this", OPTIONAL),
                           "max_duration_s": _pos("longest duration of the step", OPTIONAL)},
                     bound=("max_duration_s",)),
    "cycle": StepKind(doc="repeat steps count times (a cycle's steps are plate, strip, rest or hold)",
                      keys={"count": Key("int", "number of repetitions", ge=1, le=MAX_CYCLES),
                            "steps": Key("steps", "the steps of one cycle")}),
    "ccd": StepKind(doc="critical current density: plate then strip capacity_mah_cm2 at start_ma_cm2, "
                        "start + step, ... up to max_ma_cm2, until a short",
                    keys={"start_ma_cm2": _pos("first current density"),
                          "step_ma_cm2": _pos("increase of the current density per level"),
                          "max_ma_cm2": _pos("last current density"),
                          "capacity_mah_cm2": _pos("charge plated and then stripped at each level"),
                          "max_duration_s": _pos("longest duration of the whole step", OPTIONAL)},
                    checks=(_check_ccd,)),
}
PROTOCOL_KINDS = tuple(STEP_KINDS)
# Nested cycles and a ccd inside a cycle are refused: a cycle is the unit of the store's `cycle`
# dimension (Coulombic efficiency per cycle), and a ccd ends the run at a short anyway.
CYCLE_STEP_KINDS = ("plate", "strip", "rest", "hold")


# ---------------------------------------------------------------------------------------------
# Checking values and tables
# ---------------------------------------------------------------------------------------------

def _check_value(value, key: Key, path: str):
    """The value converted to the key's type (int → float for floats), or a ScenarioError."""
    if key.type == "steps":
        return _check_steps(value, path, CYCLE_STEP_KINDS)
    if key.type == "int":
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        converted = int(value) if ok else value
    elif key.type == "float":
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
        converted = float(value) if ok else value
    else:
        ok, converted = isinstance(value, str), value
    if (not ok or (key.choices and converted not in key.choices)
            or (key.type != "str" and not key.in_range(converted))):
        raise ScenarioError(path, _brief(value), key.allowed(path.rsplit(".", 1)[-1]))
    return converted


def _reject_unknown(table: dict, path: str, allowed: Iterable[str], what: str) -> None:
    allowed = list(allowed)
    for k, v in table.items():
        if k not in allowed:
            raise ScenarioError(f"{path}.{k}" if path else k, _brief(v),
                                f"a key of {what}: {', '.join(allowed)}")


def _check_table(table, path: str, spec: dict[str, Key], what: str | None = None) -> dict:
    """The table checked against ``spec``, defaults filled in, keys in the schema's order."""
    what = what or f"[{path}]"
    if not isinstance(table, dict):
        raise ScenarioError(path, _brief(table), f"a table {what}")
    _reject_unknown(table, path, spec, what)
    out = {}
    for name, key in spec.items():
        full = f"{path}.{name}" if path else name
        if name in table:
            out[name] = _check_value(table[name], key, full)
        elif key.default is REQUIRED:
            raise ScenarioError(full, MISSING, key.allowed(name))
        elif key.default is not OPTIONAL:
            out[name] = key.default
    for name, key in spec.items():
        if isinstance(out.get(name), DefaultFrom):
            out[name] = key.default.values[out[key.default.key]]
    return out


def _check_steps(steps, path: str, kinds: tuple[str, ...]) -> list[dict]:
    if steps is MISSING or steps == []:
        raise ScenarioError(path, steps, 'at least one step, e.g. [[protocol]] kind = "plate", '
                                         "current_ma_cm2 = 0.5, capacity_mah_cm2 = 1.0")
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        raise ScenarioError(path, _brief(steps), "an array of tables (steps with a kind)")
    return [_check_step(step, f"{path}.{i}", kinds) for i, step in enumerate(steps)]


def _check_step(step: dict, path: str, kinds: tuple[str, ...]) -> dict:
    kind = step.get("kind", MISSING)
    if not isinstance(kind, str) or kind not in kinds:
        nested = "" if kinds == PROTOCOL_KINDS else " (a cycle's steps cannot be cycle or ccd)"
        raise ScenarioError(f"{path}.kind", _brief(kind), "one of " + ", ".join(map(repr, kinds)) + nested)
    spec = STEP_KINDS[kind]
    what = f'a "{kind}" step'
    _reject_unknown(step, path, ("kind", *spec.keys), what)
    if spec.bound and not any(k in step for k in spec.bound):
        note = " (cutoff_v alone is not a bound)" if "cutoff_v" in spec.keys else ""
        raise ScenarioError(path, _brief(step), f"{what} with a bound so the store can be sized: "
                                                f"{' or '.join(spec.bound)}{note}")
    body = _check_table({k: v for k, v in step.items() if k != "kind"}, path, spec.keys, what)
    for check in spec.checks:
        check(body, path)
    return {"kind": kind, **body}


def protocol_duration_s(steps: list[Mapping]) -> float:
    """Upper bound of the simulated time of validated protocol steps, in s.

    Plate and strip last at most capacity / current (galvanostatic) and at most max_duration_s; a
    cut-off or a short can only end them earlier. This bound sizes the store's sample dimension.
    """
    total = 0.0
    for step in steps:
        kind = step["kind"]
        if kind in ("plate", "strip"):
            bounds = [step.get("max_duration_s", math.inf)]
            if "capacity_mah_cm2" in step:
                bounds.append(3600.0 * step["capacity_mah_cm2"] / step["current_ma_cm2"])
            total += min(bounds)
        elif kind == "rest":
            total += step["duration_s"]
        elif kind == "hold":
            total += step["max_duration_s"]
        elif kind == "cycle":
            total += step["count"] * protocol_duration_s(step["steps"])
        else:  # ccd: a plate and a strip of capacity_mah_cm2 at each level
            ladder = sum(2 * 3600.0 * step["capacity_mah_cm2"] / j for j in ccd_currents_ma_cm2(step))
            total += min(ladder, step.get("max_duration_s", math.inf))
    return total


# Cross-key checks: each takes the checked data of one model kind and raises a ScenarioError.

def _check_domain(d: dict) -> None:
    lat = d["lattice"]
    x_um, y_um = lat["nx"] * lat["voxel_um"], lat["ny"] * lat["voxel_um"]
    if lat["voxel_um"] >= min(x_um, y_um):
        raise ScenarioError("lattice.voxel_um", lat["voxel_um"],
                            f"a voxel smaller than the lateral domain (nx·voxel_um = {x_um:g} µm, "
                            f"ny·voxel_um = {y_um:g} µm): use nx and ny of at least 2")


def _check_initial_na(d: dict) -> None:
    lat, na_um = d["lattice"], d["collector"]["initial_na_um"]
    height_um = lat["nz"] * lat["voxel_um"]
    if na_um >= height_um:
        raise ScenarioError("collector.initial_na_um", na_um,
                            f"a Na layer thinner than the anode region (nz·voxel_um = {height_um:g} µm)")


def _check_seed_layer(d: dict) -> None:
    cc = d["collector"]
    if cc["seed_layer"] == "none" and cc["seed_layer_nm"] > 0:
        raise ScenarioError("collector.seed_layer_nm", cc["seed_layer_nm"],
                            '0 with seed_layer = "none" (set seed_layer = "au" for a seed layer)')
    if cc["seed_layer"] != "none" and cc["seed_layer_nm"] == 0:
        raise ScenarioError("collector.seed_layer_nm", cc["seed_layer_nm"],
                            f'a thickness > 0 with seed_layer = "{cc["seed_layer"]}" '
                            '(or seed_layer = "none")')


def _check_porosity(d: dict) -> None:
    cc = d["collector"]
    if cc["porosity"] > 0 and cc["form"] != "pellet":
        raise ScenarioError("collector.porosity", cc["porosity"],
                            f'0 for form = "{cc["form"]}" (only a pellet collector has pores)')


def _check_duration(d: dict) -> None:
    # The protocol's time bound sizes the store: a capacity over a current that overflows to inf
    # (1e300 mAh/cm² at 1e-300 mA/cm²) has no store size.
    for i, step in enumerate(d["protocol"]):
        if not math.isfinite(protocol_duration_s([step])):
            raise ScenarioError(f"protocol.{i}", _brief(step), "a step whose time bound (capacity over current, "
                                                               "count, max_duration_s) is a finite number of seconds")
    if not math.isfinite(protocol_duration_s(d["protocol"])):
        raise ScenarioError("protocol", _brief(d["protocol"]), "a protocol whose time bound (the sum of its steps') "
                                                               "is a finite number of seconds")


def _max_current_ma_cm2(steps: list[Mapping]) -> float:
    """The largest current density of validated protocol steps (cycles and ccd levels included), mA/cm²."""
    currents = [0.0]
    for step in steps:
        if step["kind"] in ("plate", "strip"):
            currents.append(step["current_ma_cm2"])
        elif step["kind"] == "cycle":
            currents.append(_max_current_ma_cm2(step["steps"]))
        elif step["kind"] == "ccd":
            currents.append(ccd_currents_ma_cm2(step)[-1])
    return max(currents)


def _check_sample_count(d: dict) -> None:
    # The number of samples (the store's sample dimension) is the time bound over the interval, the
    # interval in charge being passed at the protocol's largest current (as kmc.battery samples it).
    out, duration = d["output"], _duration_s(d)
    if "sample_every_s" in out:
        key, every_s, how = "output.sample_every_s", out["sample_every_s"], ""
    elif "sample_every_mah_cm2" in out and d["model"]["kind"] == "battery":
        j_max = _max_current_ma_cm2(d["protocol"])
        if j_max <= 0:   # no current: the run samples at the default interval
            return
        key, every_s = "output.sample_every_mah_cm2", 3600.0 * out["sample_every_mah_cm2"] / j_max
        how = f" at the protocol's largest current, {j_max:g} mA/cm²"
    else:   # the default interval: DEFAULT_SAMPLES samples
        return
    samples = duration / every_s + 1 if every_s > 0 else math.inf
    if not samples <= MAX_SAMPLES:
        raise ScenarioError(key, out[key.split(".")[1]],
                            f"an interval giving at most {MAX_SAMPLES} samples over the run's time bound of "
                            f"{duration:g} s (this one gives {samples:.3g}{how})")


def _check_sampling(d: dict) -> None:
    out = d["output"]
    if "sample_every_s" in out and "sample_every_mah_cm2" in out:
        raise ScenarioError("output.sample_every_mah_cm2", out["sample_every_mah_cm2"],
                            "either output.sample_every_s or output.sample_every_mah_cm2, not both")
    if "sample_every_s" in out and out["sample_every_s"] > _duration_s(d):
        raise ScenarioError("output.sample_every_s", out["sample_every_s"],
                            f"at most the run's time bound of {_duration_s(d):g} s")


def _check_name(d: dict) -> None:
    # The name is also the default store, <name>.zarr in the working directory: a path separator or
    # a control character there would put the store elsewhere or under an unprintable name.
    name = d["scenario"]["name"]
    if not name or not name.isprintable() or any(c in name for c in "/\\") or name in (".", ".."):
        raise ScenarioError("scenario.name", name, "a non-empty name of printable characters without / or \\ "
                                                   "(it names the default store <name>.zarr)")


def _check_hop_sampling(d: dict) -> None:
    if "sample_every_mah_cm2" in d["output"]:
        raise ScenarioError("output.sample_every_mah_cm2", d["output"]["sample_every_mah_cm2"],
                            "output.sample_every_s: the hop model passes no charge")


CHECKS: dict[str, tuple[Callable[[dict], None], ...]] = {
    "battery": (_check_name, _check_domain, _check_initial_na, _check_seed_layer, _check_porosity, _check_duration,
                _check_sampling, _check_sample_count),
    "hop": (_check_name, _check_hop_sampling, _check_sampling, _check_sample_count),
}


def _duration_s(d: dict) -> float:
    """Simulated-time bound of checked scenario data, s."""
    return d["hop"]["duration_s"] if d["model"]["kind"] == "hop" else protocol_duration_s(d["protocol"])


# ---------------------------------------------------------------------------------------------
# Materials
# ---------------------------------------------------------------------------------------------

def shipped_materials() -> dict:
    """The shipped material table ``scenarios/materials.toml`` (package ``kmc.scenarios``); ``{}`` if absent."""
    resource = importlib.resources.files("kmc.scenarios") / "materials.toml"
    if not resource.is_file():
        return {}
    try:
        return tomllib.loads(resource.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise KmcError(f"{resource}: not valid TOML: {err}") from None


def _span(ge=None, le=None, gt=None, lt=None, doc="") -> Key:
    return Key("float", doc, OPTIONAL, gt=gt, ge=ge, lt=lt, le=le)


# Ranges of the material constants an override may take, by key name (the same name means the same
# quantity in every material). They are typo guards, decades wider than any data, not priors: what
# lies outside is not a material (a negative conductivity, a transfer coefficient of 2) or drives the
# model's rates and geometry out of floating point (exp, powers, voxel counts). Units are in the
# names (materials.toml). A key without a range here is checked for its type only.
MATERIAL_RANGES: dict[str, Key] = {
    # Na metal
    "molar_volume_cm3_mol": _span(ge=1.0, le=1e3),
    "melting_point_c": _span(gt=-273.15, le=4000.0),
    "creep_flow_stress_mpa": _span(ge=1e-6, le=1e4),
    "creep_reference_strain_rate_s": _span(ge=1e-12, le=1e6),
    "creep_stress_exponent": _span(ge=1.0, le=20.0),
    "creep_activation_ev": _span(ge=0.0, le=5.0),
    "creep_geometric_factor": _span(ge=0.0, le=1e6),
    "self_diffusion_cm2_s": _span(ge=0.0, le=1.0),
    "self_diffusion_activation_ev": _span(ge=0.0, le=5.0),
    "refill_current_ma_cm2_per_mpa": _span(ge=0.0, le=1e3),
    "refill_activation_ev": _span(ge=0.0, le=5.0),
    "surface_energy_j_m2": _span(ge=0.0, le=10.0),
    "capillary_energy_scale_j_m2": _span(ge=1e-6, le=10.0),
    **{f"pair_energy_na_{other}_j_m2": _span(ge=-10.0, le=10.0)
       for other in ("na", "gap", "au", "se", "al", "cu", "ti")},
    # electrolytes
    "conductivity_s_cm": _span(ge=1e-12, le=1e3),
    "conductivity_activation_ev": _span(ge=0.0, le=5.0),
    # exp(Q/kT_ref) overflows near 0 K: from -150 °C (Q up to 5 eV).
    "conductivity_reference_c": _span(ge=-150.0, le=1000.0),
    "j0_ma_cm2": _span(ge=1e-9, le=1e6),
    "transfer_coefficient": _span(gt=0.0, lt=1.0),
    "k_ic_mpa_m05": _span(ge=1e-3, le=1e3),
    "roughness_um": _span(ge=0.0, le=100.0),
    "correlation_length_um": _span(ge=1e-3, le=1e4),
    "contact_stress_mpa": _span(ge=1e-6, le=1e4),
    "unloaded_contact_quality": _span(ge=0.0, le=1.0),
    "double_layer_capacitance_uf_cm2": _span(ge=1e-6, le=1e6),
    "sei_rate_ma_cm2": _span(ge=0.0, le=1e6),
    "sei_limit_nm": _span(gt=0.0, le=1e12),
    "sei_exchange_ratio": _span(gt=0.0, le=1.0),
    "flaw_density_cm2": _span(ge=0.0, le=1e12),
    "flaw_scale_um": _span(ge=1e-6, le=1e4),
    "flaw_shape": _span(ge=0.01, le=1e4),   # 1000: flaws of one depth (tests/test_filaments.py)
    "crack_opening_um": _span(ge=1e-6, le=1e3),
    "youngs_modulus_gpa": _span(ge=1e-3, le=1e4),
    "strength_weibull_modulus": _span(ge=0.01, le=1e4),   # 2000: flaws of one depth (tests/test_filaments.py)
    # collectors, seed layer, counter electrodes
    "foil_hardness_mpa": _span(ge=1e-3, le=1e5),
    "pellet_hardness_mpa": _span(ge=1e-3, le=1e5),
    "pellet_roughness_um": _span(ge=0.0, le=100.0),
    "nucleation_barrier_v2": _span(ge=0.0, le=1e3),
    "nucleation_prefactor_cm2_s": _span(ge=0.0, le=1e40),
    "alloy_capacity_mah_cm2_per_100nm": _span(ge=0.0, le=100.0),
    "alloying_potential_v": _span(ge=-5.0, le=5.0),
    "dealloying_potential_v": _span(ge=-5.0, le=5.0),
    "alloy_spread_rate_um_s": _span(ge=0.0, le=1e6),
    "au_molar_volume_cm3_mol": _span(ge=1.0, le=1e3),
    "naau2_molar_volume_cm3_mol": _span(ge=1.0, le=1e3),
    "naau_molar_volume_cm3_mol": _span(ge=1.0, le=1e3),
    "na2au_molar_volume_cm3_mol": _span(ge=1.0, le=1e3),
    "potential_v": _span(ge=-5.0, le=5.0),
}


def _check_like(value, shipped, path: str):
    """``value`` checked to have the type of the shipped value (an int is accepted for a float), and for
    a number to lie in the key's ``MATERIAL_RANGES``."""
    if isinstance(shipped, bool):
        ok, what = isinstance(value, bool), "true or false"
    elif isinstance(shipped, int):
        ok, what = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(shipped, float):
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
        value, what = float(value) if ok else value, "a number"
    elif isinstance(shipped, list):
        if not isinstance(value, list):
            raise ScenarioError(path, _brief(value), f"an array, like the shipped value {reprlib.repr(shipped)}")
        return [_check_like(v, shipped[0], f"{path}.{i}") if shipped else v for i, v in enumerate(value)]
    else:
        ok, what = type(value) is type(shipped), f"a {type(shipped).__name__}"
    if not ok:
        raise ScenarioError(path, _brief(value), f"{what}, like the shipped value {shipped!r}")
    span = MATERIAL_RANGES.get(path.rsplit(".", 1)[-1])
    if span is not None and isinstance(value, float) and not span.in_range(value):
        raise ScenarioError(path, value, f"{span.allowed('')} "
                                         f"(the shipped value is {shipped!r})")
    return value


def _check_material_overrides(over, shipped: dict, path: str) -> dict:
    if not isinstance(over, dict):
        raise ScenarioError(path, _brief(over), f"a table of overrides of [{path}] in materials.toml")
    out = {}
    for k, v in over.items():
        key = f"{path}.{k}"
        if k not in shipped:
            raise ScenarioError(key, _brief(v), f"a key of [{path}] in the shipped materials.toml: "
                                                f"{', '.join(shipped)}")
        out[k] = (_check_material_overrides(v, shipped[k], key) if isinstance(shipped[k], dict)
                  else _check_like(v, shipped[k], key))
    return out


def _merged(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _is_validation_scenario(source_path: Path | None) -> bool:
    """Scenarios directly in a ``validation/`` folder use the shipped material constants only."""
    return source_path is not None and source_path.parent.name == "validation"


# ---------------------------------------------------------------------------------------------
# Overrides
# ---------------------------------------------------------------------------------------------

_INDEX = re.compile(r"[0-9]+")
_ALL_TABLES = tuple(dict.fromkeys(t for tables in TABLES.values() for t in tables))


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"KEY=VALUE"`` (as from ``kmc run --set``) as ``(key, value)``, the value parsed as TOML."""
    key, sep, value_text = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ScenarioError(text, text, "KEY=VALUE with a dotted key, e.g. conditions.stack_pressure_mpa=5")
    try:
        parsed = tomllib.loads("v = " + value_text)
    except tomllib.TOMLDecodeError:
        parsed = None
    if parsed is None or list(parsed) != ["v"]:
        raise ScenarioError(key, value_text, 'a TOML value, e.g. a number, true/false, or a quoted string ("au")')
    return key, parsed["v"]


def _override_items(overrides, kw: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Overrides as ``(dotted key, value)`` pairs: a mapping, a list of "KEY=VALUE", and keywords."""
    if overrides is None:
        items = []
    elif isinstance(overrides, Mapping):
        items = list(overrides.items())
    elif isinstance(overrides, str):
        items = [parse_assignment(overrides)]
    else:
        items = [parse_assignment(text) for text in overrides]
    items += [(k.replace("__", "."), v) for k, v in kw.items()]
    for key, value in items:
        if not isinstance(key, str) or not key or "" in key.split("."):
            raise ScenarioError(str(key), _brief(value), "a dotted key, e.g. conditions.stack_pressure_mpa")
    return items


def _apply_override(raw: dict, key: str, value) -> None:
    """Set ``key`` (dotted; array entries by index) in the raw TOML data, creating missing tables."""
    parts = key.split(".")
    node: Any = raw
    for depth, part in enumerate(parts):
        here, last = ".".join(parts[:depth + 1]), depth == len(parts) - 1
        parent = ".".join(parts[:depth]) or "the scenario"
        if isinstance(node, list):
            if not _INDEX.fullmatch(part) or int(part) >= len(node):
                raise ScenarioError(key, _brief(value), f"the index of an existing entry at {here}: {parent} has "
                                                        f"{len(node)} entries, indexed from 0")
            part = int(part)
        elif isinstance(node, dict):
            if not last and part not in node:
                if _INDEX.fullmatch(parts[depth + 1]):
                    raise ScenarioError(key, _brief(value), f"an existing array entry ({here} is not set)")
                # Create only tables the schema has, so a key into a scalar is reported in full.
                if depth == 0 and part not in (*SCHEMA, "materials"):
                    raise ScenarioError(key, _brief(value), f"a key inside a table, but {here} is not a "
                                                            f"table of a scenario: {', '.join(_ALL_TABLES)}")
                if depth > 0 and parts[0] != "materials":
                    raise ScenarioError(key, _brief(value), f"a key inside a table, but {here} is not a table")
                node[part] = {}
        else:
            raise ScenarioError(key, _brief(value), f"a key inside a table or array, but {parent} is "
                                                    f"the value {node!r}")
        if last:
            node[part] = copy.deepcopy(value)
        else:
            node = node[part]


# ---------------------------------------------------------------------------------------------
# Scenario
# ---------------------------------------------------------------------------------------------

def read_toml(path: Path, what: str = "scenario") -> dict:
    """A TOML file's content; a one-line KmcError naming the file (and line) if it cannot be read."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as err:
        raise KmcError(f"cannot read {what} file {path}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise KmcError(f"{path}: not UTF-8 text (byte {err.start}); TOML files are UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = str(err)
        if not re.search(r"\bline \d+", message):   # errors "at end of document" carry no line number
            message += f" (the file ends at line {max(1, len(text.splitlines()))})"
        raise KmcError(f"{path}: not valid TOML: {message}") from None


def _resolve(raw: dict, source_path: Path | None, base_materials: dict) -> Scenario:
    """Check raw scenario data and fill in every default."""
    model = _check_table(raw.get("model", {}), "model", SCHEMA["model"])
    kind = model["kind"]
    tables = TABLES[kind]
    for name, value in raw.items():
        if name not in tables:
            other = next(k for k in TABLES if k != kind)
            hint = f' ([{name}] belongs to [model] kind = "{other}")' if name in TABLES[other] else ""
            raise ScenarioError(name, _brief(value), f"a table of a {kind} scenario: {', '.join(tables)}{hint}")
    if "materials" in raw and _is_validation_scenario(source_path):
        raise ScenarioError("materials", _brief(raw["materials"]),
                            "no [materials] table in a validation scenario (they use the shipped "
                            "material constants only)")
    data: dict[str, Any] = {}
    for name in tables:
        if name == "protocol":
            data[name] = _check_steps(raw.get(name, MISSING), name, PROTOCOL_KINDS)
        elif name == "materials":
            over = raw.get(name, {})
            if over and not base_materials:
                raise ScenarioError(name, _brief(over), "no [materials] table: no material table is "
                                                        "installed (kmc/scenarios/materials.toml)")
            data[name] = _check_material_overrides(over, base_materials, name)
        else:
            data[name] = _check_table(raw.get(name, {}), name, SCHEMA[name])
    if "name" not in data["scenario"]:
        stem = source_path.stem if source_path is not None else "scenario"
        data["scenario"] = {"name": stem, **data["scenario"]}
    for check in CHECKS[kind]:
        check(data)
    out = data["output"]
    if "sample_every_s" not in out and "sample_every_mah_cm2" not in out:
        data["output"] = {"sample_every_s": _duration_s(data) / DEFAULT_SAMPLES, **out}
    return Scenario._make(data, raw, _merged(base_materials, data.get("materials", {})), source_path)


def load_scenario(path, overrides=None, **kw) -> Scenario:
    """Read, override and check a scenario.

    Parameters
    ----------
    path : a scenario TOML file, or a mapping with a file's content (tables as dicts).
    overrides : a mapping of dotted keys to values (``{"protocol.0.current_ma_cm2": 0.2}``), or a list
        of ``"KEY=VALUE"`` strings as from ``kmc run --set`` (values parsed as TOML values).
    **kw : more overrides, ``__`` in place of dots: ``conditions__stack_pressure_mpa=5``.

    Overrides are applied to the raw TOML before validation, so they get the same checks.
    """
    if isinstance(path, Mapping):
        raw, source = copy.deepcopy(dict(path)), None
    else:
        source = Path(path).absolute()
        raw = read_toml(source)
    for key, value in _override_items(overrides, kw):
        _apply_override(raw, key, value)
    return _resolve(raw, source, shipped_materials())


def _walk(data, key: str):
    node = data
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and _INDEX.fullmatch(part) and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(key)
    return node


class Scenario:
    """A checked scenario with every default filled in; immutable.

    Attributes
    ----------
    name : ``[scenario] name`` (default: the file stem).
    kind : ``"battery"`` or ``"hop"``.
    seed : ``[scenario] seed``.
    data : the resolved scenario (a fresh JSON-serialisable dict, in the file's units).
    raw : the scenario as given (file content after overrides); ``with_overrides`` starts from it, so
        defaults that depend on other keys (the sampling interval) follow the new values.
    materials : the material table in effect: the shipped ``materials.toml`` merged with ``[materials]``.
    source_path : the file it was read from (absolute), or None.
    """

    __slots__ = ("_data", "_raw", "_materials", "source_path")

    @classmethod
    def _make(cls, data: dict, raw: dict, materials: dict, source_path: Path | None) -> Scenario:
        self = object.__new__(cls)
        for name, value in (("_data", data), ("_raw", copy.deepcopy(raw)), ("_materials", materials),
                            ("source_path", source_path)):
            object.__setattr__(self, name, value)
        return self

    def __setattr__(self, name, value):
        raise AttributeError("a Scenario is immutable: use with_overrides()")

    @property
    def name(self) -> str:
        return self._data["scenario"]["name"]

    @property
    def kind(self) -> str:
        return self._data["model"]["kind"]

    @property
    def seed(self) -> int:
        return self._data["scenario"]["seed"]

    @property
    def data(self) -> dict:
        return copy.deepcopy(self._data)

    @property
    def raw(self) -> dict:
        return copy.deepcopy(self._raw)

    @property
    def materials(self) -> dict:
        return copy.deepcopy(self._materials)

    @property
    def duration_s(self) -> float:
        """Upper bound of the simulated time, s (the protocol's bounds, or ``hop.duration_s``)."""
        return _duration_s(self._data)

    def get(self, key: str, default=MISSING):
        """The resolved value at a dotted key (``"protocol.0.current_ma_cm2"``).

        ``materials`` and ``materials.…`` read the material table in effect (shipped + overrides).
        Without a default, an absent key is a KmcError.
        """
        head, _, rest = key.partition(".")
        try:
            if head == "materials":
                return copy.deepcopy(_walk(self._materials, rest) if rest else self._materials)
            return copy.deepcopy(_walk(self._data, key))
        except KeyError:
            if default is MISSING:
                raise KmcError(f"scenario {self.name!r} has no key {key}") from None
            return default

    def with_overrides(self, overrides=None, **kw) -> Scenario:
        """A new checked scenario: this one's raw data with more overrides (as in ``load_scenario``)."""
        raw = copy.deepcopy(self._raw)
        for key, value in _override_items(overrides, kw):
            _apply_override(raw, key, value)
        # The material table in effect already holds this scenario's overrides; later ones go on top.
        return _resolve(raw, self.source_path, self._materials)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (for the store's attrs) that ``from_dict`` turns back into this scenario."""
        return {"data": self.data, "raw": self.raw, "materials": self.materials,
                "source_path": None if self.source_path is None else str(self.source_path)}

    @classmethod
    def from_dict(cls, d: Mapping) -> Scenario:
        """The scenario of ``to_dict()``, as it was: not re-read or re-resolved, so a resume does not
        depend on edited files or a newer schema."""
        missing = [k for k in ("data", "raw", "materials", "source_path") if k not in d]
        if missing or not isinstance(d["data"], dict) or "scenario" not in d["data"] or "model" not in d["data"]:
            raise KmcError(f"not a Scenario.to_dict() mapping (missing {', '.join(missing) or 'data tables'})")
        path = None if d["source_path"] is None else Path(d["source_path"])
        return cls._make(copy.deepcopy(dict(d["data"])), d["raw"], copy.deepcopy(dict(d["materials"])), path)

    def dumps_toml(self) -> str:
        """The resolved scenario as TOML text, every key with its doc and units as a comment."""
        lines = [f"# Scenario {self.name!r}, resolved: every default filled in."]
        _emit_table(lines, self._data, [])
        return "\n".join(lines) + "\n"

    def _canonical(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def __eq__(self, other) -> bool:
        return isinstance(other, Scenario) and self._canonical() == other._canonical()

    def __hash__(self) -> int:
        return hash(self._canonical())

    def __repr__(self) -> str:
        return f"Scenario(name={self.name!r}, kind={self.kind!r}, seed={self.seed}, source_path={self.source_path})"


# ---------------------------------------------------------------------------------------------
# TOML emitter for the resolved data model: tables, arrays of tables, scalars, arrays.
# ---------------------------------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(k: str) -> str:
    return k if _BARE_KEY.fullmatch(k) else _toml_string(k)


def _toml_string(s: str) -> str:
    # JSON escapes are valid TOML basic-string escapes; TOML also forbids a raw DEL.
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)   # repr of a float always has '.', 'e', 'inf' or 'nan': it re-reads as a float
    if isinstance(v, str):
        return _toml_string(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _is_table_array(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def _key_docs(path: list[str], table: dict) -> dict[str, str]:
    """Comments for the keys of a table at ``path`` (array indices left out)."""
    if path and path[-1] in ("protocol", "steps") and table.get("kind") in STEP_KINDS:
        step = STEP_KINDS[table["kind"]]
        return {"kind": step.doc, **{k: _comment(k, key) for k, key in step.keys.items()}}
    if len(path) == 1 and path[0] in SCHEMA:
        return {k: _comment(k, key) for k, key in SCHEMA[path[0]].items()}
    return {}


def _comment(name: str, key: Key) -> str:
    return f"{key.doc} [{_units(name)}]" if _units(name) else key.doc


def _emit_table(lines: list[str], table: dict, path: list[str]) -> None:
    docs = _key_docs(path, table)
    for k, v in table.items():
        if not isinstance(v, dict) and not _is_table_array(v):
            line = f"{_toml_key(k)} = {_toml_value(v)}"
            lines.append(f"{line:<40}  # {docs[k]}" if k in docs else line)
    for k, v in table.items():
        header = ".".join(_toml_key(p) for p in [*path, k])
        if isinstance(v, dict):
            lines += ["", f"[{header}]"]
            _emit_table(lines, v, [*path, k])
        elif _is_table_array(v):
            for item in v:
                lines += ["", f"[[{header}]]"]
                _emit_table(lines, item, [*path, k])


# ---------------------------------------------------------------------------------------------
# Seeds
# ---------------------------------------------------------------------------------------------

def derive_seed(*parts) -> int:
    """A seed in [0, 2**63) from the sha256 of the canonical JSON of ``parts`` (sorted keys)."""
    text = json.dumps(list(parts), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


_REPLICA = Key("int", "replica index", 0, ge=0)


def seed_for_replica(seed: int, replica: int) -> int:
    """Seed of replica ``replica`` of ``kmc run --seed seed --replicas R``.

    Replica 0 runs with ``seed`` itself; replica r > 0 with a seed hashed from (seed, r), so every
    replica's seed reproduces that run alone with ``kmc run --seed``.
    """
    seed = _check_value(seed, SCHEMA["scenario"]["seed"], "scenario.seed")
    replica = _check_value(replica, _REPLICA, "replica")
    return seed if replica == 0 else derive_seed("kmc.replica", seed, replica)
