"""Current distribution on the electrolyte interface plane: the field solve of PHYSICS.md §4.

- ``kmc.field.plane``: the periodic plane over the electrolyte slab with its Green's function
  (``Plane``), the contact faces (``Faces``), a solve's result (``Solution``), ``apply_green``;
- ``kmc.field.newton``: the galvanostatic and potentiostatic solves (damped Newton–CG on the
  contact pixels, warm-started);
- ``kmc.kernels.field``: their element-wise Numba kernels.
"""
from kmc.field.newton import solve_galvanostatic, solve_potentiostatic
from kmc.field.plane import (
    CG_FORCING,
    EXP_ARG_LIMIT,
    MAX_NEWTON_ITERATIONS,
    MIN_EXCHANGE_CURRENT_A,
    VOLTAGE_BOUND_V,
    Faces,
    Plane,
    Solution,
    apply_green,
    interfacial_resistance_ohm_cm2,
    thermal_factor,
)

__all__ = ["Plane", "Faces", "Solution", "apply_green", "thermal_factor", "interfacial_resistance_ohm_cm2",
           "solve_galvanostatic", "solve_potentiostatic", "EXP_ARG_LIMIT", "VOLTAGE_BOUND_V",
           "MIN_EXCHANGE_CURRENT_A", "MAX_NEWTON_ITERATIONS", "CG_FORCING"]
