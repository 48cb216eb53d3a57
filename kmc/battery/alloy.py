"""The Au seed layer's alloy under ``model.alloy = "phases"`` (PHYSICS §5 E3): its Na capacity and
thickness from the Na–Au phases' molar volumes, the lateral front, and when de-alloying is on.

A column's Au (``t_Au`` nm) holds ``n_Au = t_Au / V_Au`` mol/cm². It takes Na through NaAu2 (0.5 Na
per Au), NaAu (1) and Na2Au (2) (Pelton 1986), in ``faradaic.ALLOY_STEPS`` = 4 equal steps of 0.5 Na
per Au (the third, Na1.5Au, a two-phase NaAu + Na2Au mixture); so its capacity is ``2 n_Au F`` and
each step a quarter of it. The layer's thickness after each step is ``n_Au`` times the phase's
molar volume per Au (per formula unit over its Au count), mixtures by their phase fractions:
Au 10.20, NaAu2 17.85, NaAu 25.5, Na2Au 40.8 cm³/mol per Au, so 96 nm of Au grows to 384 nm of Na2Au.
"""
from __future__ import annotations

import math

import numpy as np

from kmc import units
from kmc.kernels import faradaic as kf
from kmc.kernels.alloy_front import advance_alloy_front

#: Na per Au after each step (Au, NaAu2, NaAu, NaAu + Na2Au, Na2Au).
NA_PER_AU_BY_STEP = (0.0, 0.5, 1.0, 1.5, 2.0)


def capacity_mah_cm2(au_nm: float, au_molar_volume_cm3_mol: float) -> float:
    """Na (mAh/cm²) that ``au_nm`` of Au takes up to Na2Au: 2 F t_Au / V_Au."""
    return 2.0 * au_nm * 1e-7 / au_molar_volume_cm3_mol * units.F / 3.6


def layer_nm_by_step(au_nm: float, au: dict) -> np.ndarray:
    """Thickness (nm) of a column's Au layer after 0..4 steps, from the phases' molar volumes
    (``au.*_molar_volume_cm3_mol``, per formula unit) and Au's."""
    v_au = float(au["au_molar_volume_cm3_mol"])
    per_au = {0.0: v_au, 0.5: float(au["naau2_molar_volume_cm3_mol"]) / 2.0,
              1.0: float(au["naau_molar_volume_cm3_mol"]), 2.0: float(au["na2au_molar_volume_cm3_mol"])}
    per_au[1.5] = 0.5 * (per_au[1.0] + per_au[2.0])  # the two-phase step: half NaAu, half Na2Au by Au
    return np.array([au_nm * per_au[x] / v_au for x in NA_PER_AU_BY_STEP])


def front_s_per_column(voxel_um: float, spread_rate_um_s: float) -> float:
    """a/v (s): the time the alloy front takes to cross one column; inf when it does not move."""
    return voxel_um / spread_rate_um_s if spread_rate_um_s > 0 else math.inf


def steps_by_column(col_state: np.ndarray) -> np.ndarray:
    """Alloying steps (0..4) each column has taken (0 for bare or unalloyed collector)."""
    steps = np.zeros(col_state.shape, dtype=np.int64)
    steps[col_state == kf.CC_AU_ALLOYED] = kf.ALLOY_STEPS
    for k, cs in enumerate((kf.CC_AU_NAAU2, kf.CC_AU_NAAU, kf.CC_AU_NAAU_NA2AU), start=1):
        steps[col_state == cs] = k
    return steps


def layer_thickness_nm(p, col_state: np.ndarray) -> np.ndarray:
    """Each column's Au/alloy layer thickness (nm; 0 without Au)."""
    return np.where(col_state == kf.CC_BARE, 0.0, p.alloy_layer_nm[steps_by_column(col_state)])


def spread(run, p) -> int:
    """Advance the lateral front to the run's time (``kmc.kernels.alloy_front``); the alloy's Na owed by
    the metal feeding it (chemical alloying). Returns the columns it alloyed."""
    cols = np.empty(p.n_cols, dtype=np.int64)
    n, steps = advance_alloy_front(run.col_state, run.au_column, run.alloy_time_s, p.nx, p.ny, float(run.time_s),
                                   p.alloy_front_s_per_column, cols)
    if n:
        run.na_debt_voxels += p.c_au * steps / kf.ALLOY_STEPS
        run.add_count("chem_alloy", n)
    return n
