"""Helpers shared by the battery-physics tests: run the production driver, load a validation row."""
import os

import kmc

VALIDATION = os.path.join(os.path.dirname(__file__), "..", "scenarios", "validation")


def advance_all(model, state):
    """Every sample's observables of a run from ``state`` to its end."""
    out, k = [], 0
    while (obs := model.advance_sample(state, k)) is not None:
        out.append(obs)
        k += 1
    return out


def run(model, seed=1):
    """(state, observables of every sample) of one whole run."""
    state = model.new_state(seed)
    return state, advance_all(model, state)


def validation(name, **overrides):
    """A shipped validation scenario (scenarios/validation/<name>.toml) with overrides."""
    return kmc.load_scenario(os.path.join(VALIDATION, f"{name}.toml"), overrides=overrides)


CELL = """
[scenario]
name = "{name}"
[lattice]
voxel_um = 0.5
nx = {n}
ny = {n}
nz = {nz}
[electrolyte]
material = "nasicon"
thickness_um = {thickness_um}
[collector]
form = "{form}"
material = "al"
{collector_extra}
[counter]
material = "na"
[conditions]
stack_pressure_mpa = {pressure_mpa}
temperature_c = 25.0
{protocol}
[output]
sample_every_s = {every}
{output_extra}
{materials}
"""


def cell_scenario(path, protocol, every, *, n, nz, form="foil", au_nm=0.0, initial_na_um=0.0, pressure_mpa=5.6,
                  thickness_um=1000.0, snapshot_every=None, map_every=None, materials=""):
    """Write and load a small NASICON cell (Al collector, Na counter, 25 °C): ``protocol`` is whole
    ``[[protocol]]`` tables, ``materials`` any ``[materials.…]`` tables of the study; a snapshot and a
    map every ``snapshot_every`` and ``map_every`` samples when given."""
    extra = f'seed_layer = "au"\nseed_layer_nm = {au_nm}' if au_nm else 'seed_layer = "none"'
    if initial_na_um:
        extra += f"\ninitial_na_um = {initial_na_um}"
    clocks = (("snapshot_every_samples", snapshot_every), ("map_every_samples", map_every))
    path.write_text(CELL.format(name=path.stem, n=n, nz=nz, thickness_um=thickness_um, form=form, collector_extra=extra,
                                pressure_mpa=pressure_mpa, protocol=protocol, every=every,
                                output_extra="\n".join(f"{key} = {k}" for key, k in clocks if k),
                                materials=materials))
    return kmc.load_scenario(path)


def accepted(row, quantity):
    """The VALIDATION.md row's judged quantity (``kmc.validation.Metric``) whose name starts with
    ``quantity``: tests judge a small run by the row's own accepted range (``Metric.accepts``)."""
    from kmc.validation import ROWS

    return next(m for r in ROWS if r.id == row for m in r.metrics if m.quantity.startswith(quantity))
