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
