"""The interface plane and the electrolyte slab's Green's function (PHYSICS.md §4): the field solve's data.

Units: lengths in cm, conductivity in S/cm, current in A, current density in A/cm², potential in V,
temperature in K, areal resistance in Ω·cm².


Geometry
--------
The interface plane is ``nx × ny`` square pixels of edge ``a`` (``pixel_cm``), periodic in x and y,
one pixel per lattice column. Pixel maps are arrays of shape ``(ny, nx)`` (row y, column x), so the
flat pixel index ``p = x + nx·y`` is the lattice's column index (``kmc.kernels.lattice``: x fastest).

Green's function of the SE slab
-------------------------------
Under the interface the SE is a slab of thickness ``L`` and conductivity ``σ`` with an equipotential
counter electrode at the far side (``φ = 0`` there; φ is measured from the electrolyte at the
counter electrode). φ is harmonic in the slab, ``∇²φ = 0``. For one Fourier mode ``exp(i q·x)`` of the
plane, ``φ(z) = A sinh(|q| (L − z))`` vanishes at the counter electrode (depth ``z = L``); at the
interface (``z = 0``) the reduction current density ``J`` (positive when Na⁺ leaves the SE into the
anode) is the ionic current arriving from the bulk: ``J = −σ ∂φ/∂(−z)``, i.e. ionic current flows
up (towards the interface) down the gradient, ``σ ∂φ/∂z|₀ = J``. With ``∂φ/∂z|₀ = −A|q| cosh(|q| L)``:

    φ̂(q) = −G(q) Ĵ(q),     G(q) = tanh(|q| L) / (σ |q|),     G(0) = L/σ   (Ω·cm²)

so plating (J > 0) lowers the SE potential under the contact, and a uniform J gives the ohmic drop
``−J L/σ`` of the whole slab. On the discrete plane ``q = 2π·fftfreq(n, a)`` per axis, Ĵ is the FFT of
the pixel current density (face currents of a pixel summed and divided by ``a²``), and one apply of
G is one ``rfft2`` and one ``irfft2`` (``apply_green``).

"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import scipy.fft

from kmc import units
from kmc.kernels import field as kfield


#: Exponent argument beyond which exp(x) is continued linearly (value and slope continuous).
EXP_ARG_LIMIT = kfield.EXP_ARG_LIMIT  # compiled into the kernels, so defined with them
#: Default bound on |V| (V): faces that cannot carry I within it leave the excess to the double layer.
VOLTAGE_BOUND_V = 5.0
#: Faces with j0·A at or below this (A) carry nothing and are left out of the solve.
MIN_EXCHANGE_CURRENT_A = 1e-60
MAX_NEWTON_ITERATIONS = 60
#: Relative reduction of the CG residual per Newton step (inexact Newton forcing term); the absolute
#: target ties it to the potential tolerance.
CG_FORCING = 1e-4




@dataclass(frozen=True)
class Plane:
    """The periodic interface plane over the SE slab, with its Green's function.

    Parameters
    ----------
    nx, ny : pixels along x and y (each ≥ 1).
    pixel_cm : pixel edge ``a`` (cm), the lattice voxel edge.
    thickness_cm : SE thickness ``L`` between interface and counter electrode (cm).
    conductivity_s_cm : ionic conductivity ``σ`` of the SE (S/cm).

    ``green`` holds G(q) (Ω·cm²) on the rfft grid of a ``(ny, nx)`` map; ``green_self`` (Ω·cm²) is the
    diagonal of the pixel Green's matrix without the uniform mode, ``Σ_{q≠0} G(q) / (nx·ny)``.
    """

    nx: int
    ny: int
    pixel_cm: float
    thickness_cm: float
    conductivity_s_cm: float

    def __post_init__(self):
        for key in ("nx", "ny"):
            n = getattr(self, key)
            if not isinstance(n, (int, np.integer)) or n < 1:
                raise ValueError(f"Plane.{key} = {n!r}: expected a positive integer")
        for key in ("pixel_cm", "thickness_cm", "conductivity_s_cm"):
            v = getattr(self, key)
            if not (isinstance(v, (int, float, np.floating)) and math.isfinite(v) and v > 0):
                raise ValueError(f"Plane.{key} = {v!r}: expected a finite number > 0")

    # G(q) is computed at the first solve, not when the plane is made: a model (and the store's layout,
    # and the memory estimate that may refuse the run) is built from a scenario without allocating
    # anything the size of the plane.
    @functools.cached_property
    def _green_and_self(self) -> tuple[np.ndarray, float]:
        a, L, sigma = float(self.pixel_cm), float(self.thickness_cm), float(self.conductivity_s_cm)
        qy = 2.0 * np.pi * np.fft.fftfreq(self.ny, a)[:, None]
        qx = 2.0 * np.pi * np.fft.rfftfreq(self.nx, a)[None, :]
        q = np.hypot(qx, qy)
        q[0, 0] = 1.0
        green = np.tanh(q * L) / (sigma * q)
        green[0, 0] = L / sigma
        # Columns of the half spectrum other than x-frequency 0 (and nx/2 for even nx) stand for two.
        weight = np.full(green.shape[1], 2.0)
        weight[0] = 1.0
        if self.nx % 2 == 0:
            weight[-1] = 1.0
        self_term = float(((green * weight).sum() - green[0, 0]) / (self.nx * self.ny))
        return green, self_term

    @property
    def green(self) -> np.ndarray:
        """G(q) (Ω·cm²) on the rfft grid of a ``(ny, nx)`` map."""
        return self._green_and_self[0]

    @property
    def green_self(self) -> float:
        """Σ_{q≠0} G(q) / (nx·ny) (Ω·cm²): the diagonal of the pixel Green's matrix without the uniform mode."""
        return self._green_and_self[1]

    @property
    def pixel_area_cm2(self) -> float:
        return float(self.pixel_cm) ** 2

    @property
    def area_cm2(self) -> float:
        """Projected area of the plane (cm²)."""
        return self.nx * self.ny * self.pixel_area_cm2


@dataclass(frozen=True)
class Faces:
    """The contact faces on the plane, one entry per face.

    pixel : flat pixel index ``x + nx·y`` of the face's column (int64).
    area_cm2 : face area (cm²); a side face counts ``a²`` like a top face.
    j0_a_cm2 : exchange current density (A/cm²), already multiplied by the contact quality χ.
    alpha : cathodic transfer coefficient, 0 < α < 1.
    u_local_v : local potential U_f (V vs Na/Na⁺): 0 on Na, the alloying potential on unalloyed Au,
        plus the stress term.

    The float fields may be given as scalars (broadcast to every face). Faces with
    ``j0·A ≤ MIN_EXCHANGE_CURRENT_A`` carry no current and are left out of the solve.
    """

    pixel: np.ndarray
    area_cm2: np.ndarray
    j0_a_cm2: np.ndarray
    alpha: np.ndarray
    u_local_v: np.ndarray

    def __post_init__(self):
        pixel = np.ascontiguousarray(self.pixel, dtype=np.int64).reshape(-1)
        n = pixel.size
        object.__setattr__(self, "pixel", pixel)
        for key in ("area_cm2", "j0_a_cm2", "alpha", "u_local_v"):
            arr = np.ascontiguousarray(np.broadcast_to(np.asarray(getattr(self, key), dtype=np.float64),
                                                       (n,)))
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"Faces.{key}: expected finite numbers")
            object.__setattr__(self, key, arr)
        if np.any(self.area_cm2 < 0) or np.any(self.j0_a_cm2 < 0):
            raise ValueError("Faces.area_cm2 and Faces.j0_a_cm2: expected numbers >= 0")
        if np.any(self.alpha <= 0) or np.any(self.alpha >= 1):
            raise ValueError("Faces.alpha: expected numbers strictly between 0 and 1")

    def __len__(self) -> int:
        return int(self.pixel.size)


@dataclass
class Solution:
    """Result of a field solve.

    voltage_v : cell voltage V (collector vs counter electrode), negative while plating.
    face_current_density_a_cm2 : j_f per face (A/cm², reduction positive), in the order of ``Faces``.
    pixel_current_density_a_cm2 : J per pixel, shape (ny, nx): face currents of the pixel / a².
    phi_v : SE potential just under the interface per pixel, shape (ny, nx) (V vs the electrolyte at
        the counter electrode).
    newton_iterations, cg_iterations : work done (CG iterations summed over all Newton steps).
    converged : the tolerance (module docstring) was met.
    carried : False when the faces cannot carry the requested current with |V| ≤ the voltage bound;
        the solution is then the potentiostatic one at the bound (the most the faces carry), and the
        caller charges the double layer with the rest.
    current_a : Σ j_f A_f (A), the faradaic current of this solution.
    """

    voltage_v: float
    face_current_density_a_cm2: np.ndarray
    pixel_current_density_a_cm2: np.ndarray
    phi_v: np.ndarray
    newton_iterations: int
    cg_iterations: int
    converged: bool
    carried: bool
    current_a: float

    @property
    def max_local_current_density_a_cm2(self) -> float:
        """Largest |j_f| over the faces (A/cm²); 0 with no faces."""
        j = self.face_current_density_a_cm2
        return float(np.max(np.abs(j))) if j.size else 0.0


def apply_green(plane: Plane, pixel_current: np.ndarray) -> np.ndarray:
    """SE potential φ (V, shape (ny, nx)) under a pixel current-density map J (A/cm², (ny, nx)).

    ``φ = −irfft2(G · rfft2(J))``: two real FFTs.
    """
    j = np.asarray(pixel_current, dtype=np.float64)
    if j.shape != (plane.ny, plane.nx):
        raise ValueError(f"pixel_current has shape {j.shape}: expected (ny, nx) = {(plane.ny, plane.nx)}")
    spec = scipy.fft.rfft2(j, workers=1)
    spec *= plane.green
    return -scipy.fft.irfft2(spec, s=j.shape, workers=1, overwrite_x=True)


def thermal_factor(temperature_k: float) -> float:
    """f = F/RT (1/V)."""
    return units.F / (units.R * temperature_k)


def interfacial_resistance_ohm_cm2(solution: Solution, plane: Plane, current_a: float,
                                   u_ce_v: float) -> float:
    """R_int = (|V + U_CE| − |j̄| L/σ) / |j̄| (Ω·cm²), j̄ = I / (nx·ny·a²); NaN at zero current."""
    jbar = abs(current_a) / plane.area_cm2
    if jbar == 0.0:
        return float("nan")
    ohmic = jbar * plane.thickness_cm / plane.conductivity_s_cm
    return (abs(solution.voltage_v + u_ce_v) - ohmic) / jbar


