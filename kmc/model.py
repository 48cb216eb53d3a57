"""What the runner needs of a model, and the registry of models by ``[model] kind``.

A model turns a checked scenario into runs: the store layout its variables need, a fresh State per
seed, and, sample by sample, the advance of a State and what it hands to the store. The runner, the
sweeps and the store never know more than this about a model.
"""
from __future__ import annotations

import importlib
from typing import Protocol

from kmc.state import State


class Model(Protocol):
    """The model interface (``kmc.runner.execute_run`` drives it)."""

    kind: str
    n_samples: int  #: samples in the store (the protocol's bound)
    size_keys: dict  #: the scenario keys that set the lattice's size, with their values (a memory refusal names them)

    def layout(self):
        """The store's variables, dimensions and coordinates (``kmc.store.Layout``)."""

    def new_state(self, seed: int) -> State:
        """A fresh State for a run with this seed."""

    def state_spec(self) -> dict:
        """Every array of its States, name -> (shape, dtype), from the sizes alone (``kmc.state.ArraySpec``):
        the store's checkpoint slots and the memory estimate, made without building a State."""

    def memory_phases(self) -> dict:
        """Bytes a run holds beyond the interpreter at the peak of each of its phases, by part,
        {phase: {part: bytes}}, from the sizes alone (``kmc.memory``)."""

    def advance_sample(self, state: State, k: int) -> dict | None:
        """Advance to sample k; its observables (name -> value), or None once the run has ended."""

    def records(self, state: State, k: int) -> list:
        """What sample k hands to the store beyond its observables: (variable, index, value) triples,
        index None for a per-run value."""


#: Model classes by kind, as "module:Class" (imported on first use, so the CLI starts fast).
MODELS: dict[str, str] = {
    "battery": "kmc.battery:BatteryModel",
    "hop": "kmc.hop:HopModel",
}


def register(kind: str, target: str) -> None:
    """Register a model class ("module:Class") for ``[model] kind = kind``."""
    MODELS[kind] = target


def model_for(scenario) -> Model:
    """The model object that runs a scenario (by its ``[model] kind``)."""
    module, _, name = MODELS[scenario.kind].partition(":")
    return getattr(importlib.import_module(module), name)(scenario)
