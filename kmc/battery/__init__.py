"""The battery model (``[model] kind = "battery"``): anode-free Na plating and stripping, PHYSICS.md §§2–7.

``BatteryModel`` is a thin facade over the parts, each in its own module:

- ``params``: materials + scenario -> frozen parameters (the one place units are converted);
- ``state``: named views over the State's arrays (``Run``) and a fresh State;
- ``protocol``: the protocol as steps, one class per step kind with its own ``advance``;
- ``driver``: field solves, event batches (``kmc.kernels.battery_loop``), the double-layer start;
- ``losses``: the interphase (E7) and the cell's flaws and shorts (E8) between batches;
- ``observe``: the store layout, the recount and bookkeeping check, observables and records.

Per sample the runner calls ``advance_sample`` (the protocol's steps advance the run to the sample's
time; a short or the protocol's end stops it) and then ``records``.
"""
from __future__ import annotations

import numpy as np

from kmc.battery import params as _params
from kmc.battery import state as _state
from kmc.battery.driver import Driver
from kmc.battery.observe import SAMPLE_VARS, Observer
from kmc.battery.protocol import flatten
from kmc.battery.state import Run
from kmc.geometry import from_scenario
from kmc.state import State

__all__ = ["BatteryModel", "Run", "SAMPLE_VARS"]


class BatteryModel:
    """Runs a battery scenario; the runner's model interface (``kmc.model.Model``)."""

    kind = "battery"

    def __init__(self, scenario):
        self.scenario = scenario
        d = scenario.data
        lat = d["lattice"]
        area_cm2 = int(lat["nx"]) * int(lat["ny"]) * (float(lat["voxel_um"]) * 1e-4) ** 2
        self.steps = flatten(d["protocol"], area_cm2)
        self.params = p = _params.build(scenario, max((s.current_a for s in self.steps), default=0.0))
        self.duration_s = sum(s.duration_s for s in self.steps)
        j_max_ma_cm2 = max((abs(s.current_a) for s in self.steps), default=0.0) / p.area_cm2 * 1e3
        self.sample_every_s = _params.sampling(d["output"], self.duration_s, j_max_ma_cm2)
        self.n_samples = _params.samples(self.duration_s, self.sample_every_s)
        out = d["output"]
        self.driver = Driver(p, self.steps)
        self.observer = Observer(p, self.steps, self.driver.losses, (
            self.n_samples, int(out.get("map_every_samples") or 0), int(out.get("snapshot_every_samples") or 0)),
            classes=self.driver.classes)  # one classification for solves and samples

    @property
    def timing(self) -> dict:
        """Wall time by part of the work (solves, event loop, observables), for benchmarks."""
        return self.driver.timing

    @property
    def n_cycles(self) -> int:
        return self.observer.n_cycles

    def layout(self):
        return self.observer.layout()

    @property
    def size_keys(self) -> dict:
        """The scenario keys that set the lattice's size, with their values."""
        p = self.params
        return {"lattice.nx": p.nx, "lattice.ny": p.ny, "lattice.nz": p.nz}

    def state_spec(self) -> dict:
        """Every State array, name -> (shape, dtype), without allocating (``new_state`` allocates from it)."""
        return _state.state_spec(self.params, self.n_cycles)

    def memory_phases(self) -> dict:
        """Bytes a run holds at the peak of each phase, by part (``kmc.battery.memory``)."""
        from kmc.battery import memory

        return memory.phases(self.scenario, self.params, self.state_spec(), bool(self.observer.n_snaps),
                             bool(self.observer.n_frames))

    def new_state(self, seed: int) -> State:
        rng = np.random.default_rng(seed)
        geo = from_scenario(self.scenario, rng)
        return _state.new_state(self.params, geo, rng, seed, self.n_cycles)

    def advance_sample(self, state: State, k: int) -> dict | None:
        """Advance to sample k's time; its observables, or None once the protocol has ended."""
        run = Run(state)
        t_k = k * self.sample_every_s
        while not run.ended and run.time_s < t_k:
            i = int(run.step)
            step = self.steps[i]
            step_end = run.step_start_s + step.duration_s
            cut = step.advance(self.driver, run, min(t_k, step_end))
            if run.shorted or run.ccd_failure:
                break  # the run ends at the short (``Driver.short``) or a ccd strip not carried
            if cut or run.time_s >= step_end:
                if step.ends_cycle:
                    self._end_cycle(run)
                if i + 1 >= len(self.steps):
                    run.ended = 1.0
                else:
                    run.step = i + 1
                    run.step_start_s = run.time_s
                    run.need_solve = 1.0
                    run.hold_above = 0.0
        if run.ended:
            # The protocol has ended (at a sample, or between samples: a cut-off, a short): one last
            # sample of the end state (the voltage at the cut-off), then the run is over.
            if run.end_observed:
                return None
            run.end_observed = 1.0
        return self.observe(state)

    def _end_cycle(self, run) -> None:
        """Close a cycle: its Coulombic efficiency = charge stripped / charge plated since the last."""
        i = int(run.cycles_done)
        per = 1.0 / self.params.area_cm2 / 3.6  # C -> mAh/cm²
        plated, stripped = run.cycle_plated_c * per, run.cycle_stripped_c * per
        run.cycle_table[3 * i:3 * i + 3] = (stripped / plated if plated > 0 else float("nan"), plated, stripped)
        run.cycles_done = i + 1
        run.cycle_plated_c = run.cycle_stripped_c = 0.0

    def observe(self, state: State) -> dict:
        import time

        t_start = time.perf_counter()
        try:
            return self.observer.observe(Run(state))
        finally:
            self.timing["observe_s"] += time.perf_counter() - t_start

    def records(self, state: State, k: int) -> list:
        """Cycles closed, the short, frames and snapshots due at sample k: (variable, index, value)."""
        return self.observer.records(Run(state), k)
