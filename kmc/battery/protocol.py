"""The protocol as steps: one class per step kind, each with its own advance (PHYSICS.md §6).

``flatten`` turns the scenario's ``[[protocol]]`` into a flat list of steps — a ``cycle`` repeated
out, a ``ccd`` expanded into its rising plate/strip levels — each with its signed current (A,
reduction positive), its time bound (s) and its cut-off. A step advances the run within itself until
a time (``advance``), using the driver's solve and batches; it says whether it ended early (a
cut-off, a hold's current falling, a short). Every strip step ends a cycle: a cycle's Coulombic
efficiency is the charge stripped over the charge plated since the last one.

A new step kind is one class here (with its ``advance``) and its keys in ``kmc.config.STEP_KINDS``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from kmc.config import ccd_currents_ma_cm2
from kmc.errors import KmcError


@dataclass(frozen=True)
class Step:
    """One step of the flattened protocol."""

    kind: str
    protocol_index: int  #: the top-level ``[[protocol]]`` entry it comes from
    duration_s: float  #: its time bound
    current_a: float = 0.0  #: cell current, reduction positive
    cutoff_v: float | None = None
    ends_cycle: bool = False
    ccd_ma_cm2: float = math.nan  #: the ccd level it belongs to (NaN outside a ccd)

    def advance(self, driver, run, t_end: float) -> bool:
        raise NotImplementedError


class Galvanostatic(Step):
    """A step at constant current: plating, stripping, or a rest (zero current)."""

    def advance(self, driver, run, t_end: float) -> bool:
        """Advance until ``t_end`` (s); True if the step ended early (a cut-off, a short, or nothing
        left that can carry the current)."""
        current = self.current_a
        run.current_a = current
        while run.time_s < t_end:
            t0 = run.time_s
            fresh = bool(run.need_solve)
            if fresh:
                driver.solve(run, current)
            t_stop = driver.batch_end(run, t_end)
            if run.carried:
                code = driver.batch(run, current, t_stop)
                if driver.book_batch(run, t0, current * (run.time_s - t0)):
                    return True
                if code == driver.STOP_COLLAPSE and self._fail_if_not_carried(driver, run, collapsed=True):
                    return True
            elif (current < 0 and not run.na_faces_col.any()) or run.faces == 0:
                # Nothing can ever carry the current: stripping with no Na left at the electrolyte, or
                # no conductor touching it at all. The double layer on the contact area (C_dl A_c ~ 1e-4
                # of a voxel's charge per volt) takes the voltage to the cut-off at once — or to the
                # solver's bound, which ends the step.
                bound = math.copysign(driver.p.voltage_bound_v, -current)
                driver.set_voltage(run, float(self.cutoff_v) if self.cutoff_v is not None else bound)
                self._fail_if_not_carried(driver, run)
                return True
            else:
                code = driver.double_layer_step(run, current, t_end)
                if code == driver.STOP_SHORT:
                    return True
            driver.follow_stop(run, code, fresh and run.carried, t_stop)
            if self.cutoff_v is not None and (run.voltage_v - float(self.cutoff_v)) * current < 0:  # past it
                return True
            if self._fail_if_not_carried(driver, run):
                return True
        return False

    def _fail_if_not_carried(self, driver, run, collapsed: bool = False) -> bool:
        """Under the refill law (``model.refill = "critical_current"``), a ccd level's strip that voids
        stopped carrying ends the run as a CCD by stripping (``Driver.strip_not_carried``); True if it
        did. Either its voltage has reached the bound, or (``collapsed``) the collector came down through
        the interface voids (E5: nothing bore it any more, the voids had cut every bearing contact) — the
        stack pressure brings the collector and its hanging Na down at once, so the voltage's rise before
        it is not followed to its bound and the level is judged by the lost contact. Under the v3 law the
        ccd goes on as before."""
        if (driver.p.refill_law and self.current_a < 0 and not math.isnan(self.ccd_ma_cm2)
                and (collapsed or abs(run.voltage_v) >= driver.p.voltage_bound_v * (1.0 - 1e-12))):
            driver.strip_not_carried(run, self.ccd_ma_cm2)
            return True
        return False


class Plate(Galvanostatic):
    """``plate``: reduction at constant current."""


class Strip(Galvanostatic):
    """``strip``: oxidation at constant current; ends a cycle."""


class Rest(Galvanostatic):
    """``rest``: open circuit."""


@dataclass(frozen=True)
class Hold(Step):
    """``hold``: the cell voltage held (potentiostatic) until ``min_current_a`` or the bound."""

    voltage_v: float = 0.0
    min_current_a: float | None = None

    def advance(self, driver, run, t_end: float) -> bool:
        """Advance until ``t_end``; True once the current, having reached ``min_current``, falls below it.

        The faradaic events run at the current the faces carry at V (re-solved as the faces change);
        the double layer on the contact area charges at once when V jumps to the held value
        (ΔQ = −C_dl A_c ΔV, reduction positive). With no face carrying current (bare CC) only
        nucleation happens, at its hazard at V, until the first nucleus gives a face."""
        while run.time_s < t_end:
            t0 = run.time_s
            fresh = bool(run.need_solve)
            if fresh:
                driver.solve_held(run, self.voltage_v)
                i_min = self.min_current_a
                if i_min is not None:
                    if abs(run.i_far_a) >= i_min:
                        run.hold_above = 1.0
                    elif run.hold_above:
                        run.hold_above = 0.0
                        return True
            i_far = run.i_far_a
            nuclei0 = run.count("nucleate")
            t_stop = driver.batch_end(run, t_end)
            code = driver.batch(run, i_far, t_stop)
            # At a held V a nucleus's charge is current beyond the faces' (which the events share).
            if driver.book_batch(run, t0, i_far * (run.time_s - t0) + (run.count("nucleate") - nuclei0) * driver.p.q_v_c):
                return True
            driver.follow_stop(run, code, fresh, t_stop)
        return False


def _galvanostatic(step: dict, index: int, area_cm2: float, ccd_ma_cm2: float = math.nan) -> Step:
    kind = step["kind"]
    i_ma = float(step["current_ma_cm2"])
    bounds = [float(step["max_duration_s"])] if step.get("max_duration_s") else []
    if step.get("capacity_mah_cm2"):
        bounds.append(float(step["capacity_mah_cm2"]) / i_ma * 3600.0)
    sign = 1.0 if kind == "plate" else -1.0
    cls = Plate if kind == "plate" else Strip
    return cls(kind, index, min(bounds), sign * i_ma * 1e-3 * area_cm2, step.get("cutoff_v"), kind == "strip",
               ccd_ma_cm2)


def _step(step: dict, index: int, path: str, area_cm2: float) -> Step:
    """A plate, strip, rest or hold step (``kmc.config`` has checked its keys)."""
    kind = step["kind"]
    if kind in ("plate", "strip"):
        return _galvanostatic(step, index, area_cm2)
    if kind == "hold":
        i_min = step.get("min_current_ma_cm2")
        return Hold(kind, index, float(step["max_duration_s"]), voltage_v=float(step["voltage_v"]),
                    min_current_a=None if i_min is None else float(i_min) * 1e-3 * area_cm2)
    if kind == "rest":
        return Rest(kind, index, float(step["duration_s"]))
    raise KmcError(f"{path}.kind = {kind!r} is not modelled by the battery model")


def expand_cycle(step: dict, index: int, area_cm2: float) -> list[Step]:
    """A ``cycle``: its steps, ``count`` times."""
    return [_step(sub, index, f"protocol.{index}.steps", area_cm2)
            for _ in range(int(step["count"])) for sub in step["steps"]]


def expand_ccd(step: dict, index: int, area_cm2: float) -> list[Step]:
    """A ``ccd``: rising current levels, each plated then stripped at its capacity, until a short (or,
    under the refill law, a strip the interface cannot carry: ``Galvanostatic._fail_if_not_carried``)."""
    return [_galvanostatic({"kind": verb, "current_ma_cm2": level, "capacity_mah_cm2": step["capacity_mah_cm2"]},
                           index, area_cm2, level)
            for level in ccd_currents_ma_cm2(step) for verb in ("plate", "strip")]


EXPANDERS = {"cycle": expand_cycle, "ccd": expand_ccd}


def flatten(protocol: list[dict], area_cm2: float) -> list[Step]:
    """The protocol as a flat list of steps."""
    flat = []
    for i, step in enumerate(protocol):
        expand = EXPANDERS.get(step["kind"])
        flat += expand(step, i, area_cm2) if expand else [_step(step, i, f"protocol.{i}", area_cm2)]
    return flat
