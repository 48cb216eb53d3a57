"""Scenario loading and validation (kmc.config): bad input is refused naming the key, good input resolves."""
from __future__ import annotations

import copy
import hashlib
import importlib.resources
import json
import tomllib

import pytest

from kmc import config
from kmc.config import Scenario, ccd_currents_ma_cm2, load_scenario, protocol_duration_s, seed_for_replica
from kmc.errors import KmcError, ScenarioError

BATTERY = """
[scenario]
name = "cell"

[[protocol]]
kind = "plate"
current_ma_cm2 = 0.5
capacity_mah_cm2 = 1.0

[[protocol]]
kind = "strip"
current_ma_cm2 = 0.5
cutoff_v = 1.0
max_duration_s = 9000
"""

# protocol.2 is a cycle, so nested step keys can be overridden in the bad-input table.
BATTERY_CYCLE = BATTERY + """
[[protocol]]
kind = "cycle"
count = 3
steps = [{kind = "plate", current_ma_cm2 = 1, capacity_mah_cm2 = 0.5},
         {kind = "strip", current_ma_cm2 = 1, capacity_mah_cm2 = 0.5}]

[[protocol]]
kind = "ccd"
start_ma_cm2 = 0.5
step_ma_cm2 = 0.5
max_ma_cm2 = 2.0
capacity_mah_cm2 = 0.25
"""

HOP = """
[model]
kind = "hop"

[hop]
duration_s = 10
"""

# A stand-in for scenarios/materials.toml, so these tests do not depend on the shipped constants.
MATERIALS = {
    "nasicon": {"j0_ma_cm2": 1.0, "roughness_um": 0.5, "flaw_count": 3, "source": "Ma 2019"},
    "al": {"foil": {"hardness_mpa": 400.0}, "pellet": {"hardness_mpa": 160.0}},
}


@pytest.fixture(autouse=True)
def shipped(monkeypatch):
    monkeypatch.setattr(config, "shipped_materials", lambda: copy.deepcopy(MATERIALS))


def write(folder, text, name="s.toml"):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# (id, scenario text, overrides, the dotted key the message must name)
BAD = [
    ("unknown table", BATTERY + "[colour]\nx = 1\n", None, "colour"),
    ("unknown key scenario", BATTERY, {"scenario.nmae": "x"}, "scenario.nmae"),
    ("unknown key lattice", BATTERY, {"lattice.voxl_um": 1.0}, "lattice.voxl_um"),
    ("unknown key step", BATTERY, {"protocol.0.curent_ma_cm2": 1.0}, "protocol.0.curent_ma_cm2"),
    ("unknown key nested step", BATTERY_CYCLE, {"protocol.2.steps.1.foo": 1}, "protocol.2.steps.1.foo"),
    ("unknown key output", BATTERY, ["output.sample_every=1.0"], "output.sample_every"),
    ("str for float", BATTERY, {"conditions.stack_pressure_mpa": "high"}, "conditions.stack_pressure_mpa"),
    ("bool for int", BATTERY, ["lattice.nx=true"], "lattice.nx"),
    ("integral float for int", BATTERY, ["lattice.nx=64.0"], "lattice.nx"),
    ("bool for float", BATTERY, ["conditions.temperature_c=false"], "conditions.temperature_c"),
    ("nan", BATTERY, ["protocol.0.capacity_mah_cm2=nan"], "protocol.0.capacity_mah_cm2"),
    ("negative hop size", HOP, {"hop.size": -3}, "hop.size"),
    ("hop fraction 1", HOP, {"hop.fraction": 1.0}, "hop.fraction"),
    ("hop without duration", "[model]\nkind = \"hop\"\n", None, "hop.duration_s"),
    ("negative current", BATTERY, ["protocol.0.current_ma_cm2=-0.5"], "protocol.0.current_ma_cm2"),
    ("zero capacity", BATTERY, ["protocol.0.capacity_mah_cm2=0"], "protocol.0.capacity_mah_cm2"),
    ("porosity 1", BATTERY, {"collector.form": "pellet", "collector.porosity": 1.0}, "collector.porosity"),
    ("porosity on a foil", BATTERY, {"collector.porosity": 0.2}, "collector.porosity"),
    ("voxel larger than domain", BATTERY, {"lattice.nx": 1}, "lattice.voxel_um"),
    ("nz 1", BATTERY, {"lattice.nz": 1}, "lattice.nz"),
    ("initial Na over the region", BATTERY, {"collector.initial_na_um": 40.0}, "collector.initial_na_um"),
    ("plate with cutoff only", "[[protocol]]\nkind = \"plate\"\ncurrent_ma_cm2 = 1\ncutoff_v = -1\n", None,
     "protocol.0"),
    ("rest without duration", BATTERY + "[[protocol]]\nkind = \"rest\"\n", None, "protocol.2"),
    ("hold without max_duration", BATTERY + "[[protocol]]\nkind = \"hold\"\nvoltage_v = 0.1\n", None,
     "protocol.2"),
    ("nested step without bound", BATTERY_CYCLE, {"protocol.2.steps.0": {"kind": "strip", "current_ma_cm2": 1}},
     "protocol.2.steps.0"),
    ("unknown protocol kind", BATTERY, ["protocol.0.kind=\"charge\""], "protocol.0.kind"),
    ("cycle in a cycle", BATTERY_CYCLE, ["protocol.2.steps.1.kind=\"cycle\""], "protocol.2.steps.1.kind"),
    ("ccd max below start", BATTERY_CYCLE, {"protocol.3.max_ma_cm2": 0.25}, "protocol.3.max_ma_cm2"),
    ("ccd too many levels", BATTERY_CYCLE, {"protocol.3.step_ma_cm2": 1e-6}, "protocol.3.step_ma_cm2"),
    ("strip cutoff below 0", BATTERY, {"protocol.1.cutoff_v": -0.5}, "protocol.1.cutoff_v"),
    ("no protocol", "[scenario]\nname = \"x\"\n", None, "protocol"),
    ("protocol as a table", "[protocol]\nkind = \"rest\"\nduration_s = 1\n", None, "protocol"),
    ("temperature above Na melting", BATTERY, {"conditions.temperature_c": 98}, "conditions.temperature_c"),
    ("negative pressure", BATTERY, {"conditions.stack_pressure_mpa": -1}, "conditions.stack_pressure_mpa"),
    ("unknown electrolyte", BATTERY, {"electrolyte.material": "llzo"}, "electrolyte.material"),
    ("seed layer none with nm", BATTERY, {"collector.seed_layer_nm": 50}, "collector.seed_layer_nm"),
    ("au seed layer of 0 nm", BATTERY, {"collector.seed_layer": "au", "collector.seed_layer_nm": 0},
     "collector.seed_layer_nm"),
    ("negative seed", BATTERY, {"scenario.seed": -1}, "scenario.seed"),
    ("both sampling keys", BATTERY, {"output.sample_every_s": 1.0, "output.sample_every_mah_cm2": 0.1},
     "output.sample_every_mah_cm2"),
    ("sampling longer than the run", HOP, {"output.sample_every_s": 11.0}, "output.sample_every_s"),
    ("charge sampling in hop", HOP, {"output.sample_every_mah_cm2": 0.1}, "output.sample_every_mah_cm2"),
    ("zero map interval", BATTERY, {"output.map_every_samples": 0}, "output.map_every_samples"),
    ("hop table in battery", BATTERY, {"hop.size": 10}, "hop"),
    ("battery table in hop", HOP, {"lattice.nx": 4}, "lattice"),
    ("unknown model", BATTERY, {"model.kind": "spparks"}, "model.kind"),
    ("unknown material", BATTERY, {"materials.llzo.j0_ma_cm2": 1.0}, "materials.llzo"),
    ("unknown material key", BATTERY, {"materials.nasicon.j0": 1.0}, "materials.nasicon.j0"),
    ("material str for float", BATTERY, {"materials.nasicon.j0_ma_cm2": "1"},
     "materials.nasicon.j0_ma_cm2"),
    ("material float for int", BATTERY, {"materials.nasicon.flaw_count": 2.5}, "materials.nasicon.flaw_count"),
    ("material table as value", BATTERY, {"materials.al.foil": 3.0}, "materials.al.foil"),
    ("--set without =", BATTERY, ["conditions.stack_pressure_mpa"], "conditions.stack_pressure_mpa"),
    ("--set bare word", BATTERY, ["collector.seed_layer=au"], "collector.seed_layer"),
    ("--set two values", BATTERY, ["conditions.stack_pressure_mpa=5\nx = 1"], "conditions.stack_pressure_mpa"),
    ("index out of range", BATTERY, ["protocol.5.current_ma_cm2=1"], "protocol.5.current_ma_cm2"),
    ("index not a number", BATTERY, ["protocol.first.current_ma_cm2=1"], "protocol.first.current_ma_cm2"),
    ("key into a number", BATTERY, ["protocol.0.current_ma_cm2.x=1"], "protocol.0.current_ma_cm2.x"),
    ("key into a default", BATTERY, ["conditions.stack_pressure_mpa.x=1"], "conditions.stack_pressure_mpa.x"),
    ("unknown table by --set", BATTERY, ["colour.x=1"], "colour.x"),
    ("empty key part", BATTERY, {"conditions..x": 1}, "conditions..x"),
]


@pytest.mark.parametrize("text, overrides, key", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input_names_the_key(tmp_path, text, overrides, key):
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path, overrides)
    assert info.value.key == key
    assert key in str(info.value)
    assert "is not allowed: expected" in str(info.value)


def test_unknown_key_lists_the_tables_keys(tmp_path):
    with pytest.raises(ScenarioError, match=r"lattice\.voxl_um = .*voxel_um, nx, ny, nz"):
        load_scenario(write(tmp_path, BATTERY), {"lattice.voxl_um": 1.0})
    with pytest.raises(ScenarioError, match=r'protocol\.1\.foo = .*"strip" step: kind, current_ma_cm2, '
                                            r"capacity_mah_cm2, cutoff_v, max_duration_s"):
        load_scenario(write(tmp_path, BATTERY), {"protocol.1.foo": 1})


def test_step_without_bound_says_which_bounds(tmp_path):
    text = "[[protocol]]\nkind = \"strip\"\ncurrent_ma_cm2 = 1\ncutoff_v = 1\n"
    with pytest.raises(ScenarioError, match=r"^protocol\.0 = .*capacity_mah_cm2 or max_duration_s "
                                            r"\(cutoff_v alone is not a bound\)"):
        load_scenario(write(tmp_path, text))


def test_bad_toml_syntax_names_file_and_line(tmp_path):
    path = write(tmp_path, "[scenario]\nname = \"x\"\nseed = = 3\n", "broken.toml")
    with pytest.raises(KmcError, match=r"broken\.toml.*line 3") as info:
        load_scenario(path)
    assert "\n" not in str(info.value)


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(KmcError, match=r"cannot read scenario file .*nope\.toml"):
        load_scenario(tmp_path / "nope.toml")


def test_no_material_table_installed(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "shipped_materials", dict)
    path = write(tmp_path, BATTERY)
    assert load_scenario(path).materials == {}
    with pytest.raises(ScenarioError, match=r"^materials = .*no material table is installed"):
        load_scenario(path, {"materials.nasicon.j0_ma_cm2": 1.0})


def test_validation_scenarios_may_not_override_materials(tmp_path):
    path = write(tmp_path, BATTERY + "[materials.nasicon]\nj0_ma_cm2 = 2.0\n", "validation/T3.toml")
    with pytest.raises(ScenarioError, match=r"^materials = .*validation scenario"):
        load_scenario(path)
    plain = load_scenario(write(tmp_path, BATTERY, "validation/T2.toml"))
    with pytest.raises(ScenarioError, match=r"^materials = "):
        plain.with_overrides({"materials.nasicon.j0_ma_cm2": 2.0})


# ---------------------------------------------------------------------------------------------
# Good input
# ---------------------------------------------------------------------------------------------

def test_defaults_are_filled_in(tmp_path):
    s = load_scenario(write(tmp_path, BATTERY))
    assert (s.name, s.kind, s.seed) == ("cell", "battery", 1)
    d = s.data
    assert list(d) == ["scenario", "model", "lattice", "electrolyte", "collector", "counter", "conditions",
                       "protocol", "output", "numerics", "materials"]
    assert d["scenario"] == {"name": "cell", "description": "", "reference": "", "seed": 1}
    assert d["lattice"] == {"voxel_um": 0.5, "nx": 64, "ny": 64, "nz": 64}
    assert d["electrolyte"] == {"material": "nasicon", "thickness_um": 800.0, "relief": "gaussian"}
    assert d["collector"] == {"form": "foil", "material": "al", "porosity": 0.0, "seed_layer": "none",
                              "seed_layer_nm": 0.0, "initial_na_um": 0.0}
    assert d["counter"] == {"material": "na"}
    assert d["conditions"] == {"stack_pressure_mpa": 5.0, "temperature_c": 25.0, "cell_area_cm2": 1.0}
    assert d["numerics"] == {"resolve_area_fraction": 0.01, "resolve_dv_mv": 1.0, "solver_rtol": 1e-6,
                             "max_capillary_rate_ratio": 100.0, "voltage_bound_v": 5.0, "capacity_drift_factor": 2.0,
                             "events_per_batch": 200_000}
    # 500 samples over the bound: plate 1 mAh/cm² at 0.5 mA/cm² = 7200 s, strip at most 9000 s.
    assert d["output"] == {"sample_every_s": 16200.0 / 500, "map_every_samples": 10,
                           "snapshot_every_samples": 100, "checkpoint_every_s": 300.0}
    assert d["protocol"][1] == {"kind": "strip", "current_ma_cm2": 0.5, "cutoff_v": 1.0, "max_duration_s": 9000.0}
    assert d["materials"] == {}
    assert s.materials == MATERIALS
    json.dumps(d)


def test_name_defaults_to_file_stem_and_au_layer_to_100_nm(tmp_path):
    s = load_scenario(write(tmp_path, BATTERY.replace('name = "cell"', ""), "my_cell.toml"),
                      {"collector.seed_layer": "au"})
    assert s.name == "my_cell"
    assert s.get("collector.seed_layer_nm") == 100.0


def test_int_accepted_for_float_and_kept_for_int(tmp_path):
    s = load_scenario(write(tmp_path, BATTERY), ["conditions.stack_pressure_mpa=7", "lattice.nx=32"])
    assert s.get("conditions.stack_pressure_mpa") == 7.0
    assert type(s.get("conditions.stack_pressure_mpa")) is float
    assert s.get("lattice.nx") == 32 and type(s.get("lattice.nx")) is int
    assert type(s.get("protocol.1.max_duration_s")) is float


def test_overrides_by_list_mapping_and_keywords_agree(tmp_path):
    path = write(tmp_path, BATTERY_CYCLE)
    by_list = load_scenario(path, ["conditions.stack_pressure_mpa=12.5", "protocol.2.steps.1.current_ma_cm2=2",
                                   'collector.seed_layer="au"'])
    by_map = load_scenario(path, {"conditions.stack_pressure_mpa": 12.5, "protocol.2.steps.1.current_ma_cm2": 2,
                                  "collector.seed_layer": "au"})
    by_kw = load_scenario(path, conditions__stack_pressure_mpa=12.5, protocol__2__steps__1__current_ma_cm2=2,
                          collector__seed_layer="au")
    assert by_list.data == by_map.data == by_kw.data
    assert by_kw.get("conditions.stack_pressure_mpa") == 12.5
    assert by_kw.get("protocol.2.steps.1.current_ma_cm2") == 2.0
    assert by_kw.get("collector.seed_layer_nm") == 100.0


def test_overrides_apply_before_defaults(tmp_path):
    s = load_scenario(write(tmp_path, BATTERY), {"protocol.0.capacity_mah_cm2": 3.0})
    # the plate step now lasts 21600 s, so the default sampling interval follows
    assert s.get("output.sample_every_s") == (21600.0 + 9000.0) / 500
    t = s.with_overrides({"protocol.0.capacity_mah_cm2": 0.5})
    assert t.get("output.sample_every_s") == (3600.0 + 9000.0) / 500
    assert s.get("protocol.0.capacity_mah_cm2") == 3.0          # the original is unchanged


def test_scenario_is_immutable(tmp_path):
    s = load_scenario(write(tmp_path, BATTERY))
    with pytest.raises(AttributeError):
        s.seed = 3
    s.data["lattice"]["nx"] = 3
    s.materials["nasicon"]["j0_ma_cm2"] = -1.0
    assert s.get("lattice.nx") == 64
    assert s.get("materials.nasicon.j0_ma_cm2") == 1.0


def test_get_by_dotted_key(tmp_path):
    s = load_scenario(write(tmp_path, BATTERY_CYCLE))
    assert s.get("protocol.2.steps.0.kind") == "plate"
    assert s.get("protocol.3") == {"kind": "ccd", "start_ma_cm2": 0.5, "step_ma_cm2": 0.5, "max_ma_cm2": 2.0,
                                   "capacity_mah_cm2": 0.25}
    assert s.get("materials.al.foil.hardness_mpa") == 400.0
    assert s.get("lattice.nw", None) is None
    with pytest.raises(KmcError, match="lattice.nw"):
        s.get("lattice.nw")


def test_material_overrides_merge_into_the_shipped_table(tmp_path):
    text = BATTERY + "[materials.nasicon]\nj0_ma_cm2 = 2\n[materials.al.pellet]\nhardness_mpa = 150.0\n"
    s = load_scenario(write(tmp_path, text))
    assert s.data["materials"] == {"nasicon": {"j0_ma_cm2": 2.0}, "al": {"pellet": {"hardness_mpa": 150.0}}}
    assert s.materials["nasicon"] == {"j0_ma_cm2": 2.0, "roughness_um": 0.5, "flaw_count": 3, "source": "Ma 2019"}
    assert s.materials["al"] == {"foil": {"hardness_mpa": 400.0}, "pellet": {"hardness_mpa": 150.0}}
    t = s.with_overrides({"materials.nasicon.roughness_um": 0.7})
    assert t.materials["nasicon"] == {"j0_ma_cm2": 2.0, "roughness_um": 0.7, "flaw_count": 3, "source": "Ma 2019"}


def test_to_dict_from_dict_round_trip(tmp_path, monkeypatch):
    path = write(tmp_path, BATTERY_CYCLE + "[materials.nasicon]\nj0_ma_cm2 = 2.0\n")
    s = load_scenario(path, {"conditions.stack_pressure_mpa": 3})
    d = json.loads(json.dumps(s.to_dict()))
    path.unlink()                                              # a resume must not need the file ...
    monkeypatch.setattr(config, "shipped_materials", dict)     # ... nor the shipped table
    r = Scenario.from_dict(d)
    assert r == s and hash(r) == hash(s)
    assert r.data == s.data and r.materials == s.materials and r.source_path == s.source_path
    assert r.with_overrides({"lattice.nx": 32}).get("materials.nasicon.j0_ma_cm2") == 2.0
    with pytest.raises(KmcError, match="raw"):
        Scenario.from_dict({"data": d["data"]})


@pytest.mark.parametrize("text", [BATTERY_CYCLE + "[materials.al.foil]\nhardness_mpa = 300.0\n", HOP])
def test_dumps_toml_reparses_to_the_same_data(tmp_path, text):
    s = load_scenario(write(tmp_path, text), {"scenario.description": 'quote " backslash \\ tab\t line\nend'})
    text_out = s.dumps_toml()
    assert tomllib.loads(text_out) == s.data
    assert "[[protocol.steps]]" in text_out or s.kind == "hop"


def test_protocol_duration_and_ccd_levels(tmp_path):
    s = load_scenario(write(tmp_path, BATTERY_CYCLE))
    ccd = s.get("protocol.3")
    assert ccd_currents_ma_cm2(ccd) == [0.5, 1.0, 1.5, 2.0]
    ccd_s = sum(2 * 3600 * 0.25 / j for j in (0.5, 1.0, 1.5, 2.0))
    cycle_s = 3 * (2 * 3600 * 0.5 / 1.0)
    assert protocol_duration_s(s.get("protocol")) == pytest.approx(7200 + 9000 + cycle_s + ccd_s, rel=1e-12)
    assert s.duration_s == protocol_duration_s(s.get("protocol"))
    assert ccd_currents_ma_cm2({"start_ma_cm2": 0.1, "step_ma_cm2": 0.1, "max_ma_cm2": 0.5}) == [0.1, 0.2, 0.3,
                                                                                                 0.4, 0.5]


def test_hop_scenario_shipped():
    path = importlib.resources.files("kmc.scenarios") / "hop.toml"
    s = load_scenario(path)
    assert (s.name, s.kind, s.seed) == ("hop", "hop", 1)
    assert s.data["hop"] == {"size": 22, "fraction": 0.5, "rate_decades": 0.0, "duration_s": 20.0}
    assert s.get("output.sample_every_s") == 0.5
    assert list(s.data) == ["scenario", "model", "hop", "output"]
    assert s.duration_s == 20.0


def test_hop_default_sampling_is_500_samples(tmp_path):
    assert load_scenario(write(tmp_path, HOP)).get("output.sample_every_s") == 10.0 / 500


def test_load_from_mapping():
    s = load_scenario(tomllib.loads(HOP), hop__size=8)
    assert (s.name, s.source_path, s.get("hop.size")) == ("scenario", None, 8)


def test_seed_for_replica():
    assert seed_for_replica(42, 0) == 42
    canonical = json.dumps(["kmc.replica", 42, 3], sort_keys=True, separators=(",", ":"))
    expected = int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:8], "big") >> 1
    assert seed_for_replica(42, 3) == expected
    seeds = [seed_for_replica(42, r) for r in range(1, 50)]
    assert len(set(seeds)) == 49 and all(0 <= x < 2**63 for x in seeds)
    assert seed_for_replica(43, 1) != seed_for_replica(42, 1)
    with pytest.raises(ScenarioError, match="scenario.seed"):
        seed_for_replica(-1, 1)
    with pytest.raises(ScenarioError, match="replica"):
        seed_for_replica(1, True)
