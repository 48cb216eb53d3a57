"""The field solve: pixel currents and cell voltage by damped Newton–CG (PHYSICS.md §4).

Units: lengths in cm, conductivity in S/cm, current in A, current density in A/cm², potential in V,
temperature in K, areal resistance in Ω·cm².


Kinetics and unknowns
---------------------
A contact face ``f`` (area ``A_f``; a side face counts ``a²``; several faces may share a pixel) in
pixel ``p(f)`` carries the Butler–Volmer current density

    j_f = j0_f [exp(−α_f F η_f / RT) − exp((1 − α_f) F η_f / RT)],
    η_f = (V + U_CE) − φ_{p(f)} − U_f = ψ_{p(f)} − U_f,      ψ_p = V + U_CE + (G J)_p,

reduction (plating) positive for η < 0. ``V`` is the cell voltage (collector vs counter electrode;
negative while plating). The unknowns are the pixel current densities ``J_p`` of the contact pixels
and V. Per contact pixel, ``g_p(ψ) = a⁻² Σ_{f∈p} A_f j_f`` is the current density its faces carry at
potential ψ, a strictly decreasing function; ``D_p = −g_p'(ψ_p) > 0``. The equations are

    r_p = J_p − g_p(ψ_p) = 0  on every contact pixel,     a² Σ_p J_p = I   (galvanostatic)

or, in potentiostatic mode (``hold``), V is given and the current constraint is dropped.

Newton–CG
---------
Linearizing ``g_p`` at ψ_p and dividing each row by ``D_p`` gives, for the step (δJ, δV),

    (D⁻¹ + G_cc) δJ + δV·1 = −D⁻¹ r,        1ᵀ δJ = I/a² − Σ J       (bordered system)

with G_cc the Green's matrix restricted to the contact pixels. Its rows are potentials (V): ``D⁻¹`` is
the charge-transfer resistance of each pixel, G_cc the spreading resistance between pixels.
``M = D⁻¹ + G_cc`` is symmetric positive definite (G is: all G(q) > 0), and the bordered system is
solved by projected preconditioned CG (Gould, Hribar & Nocedal 2001): the iterate starts with
``1ᵀx = s`` and stays there, the preconditioner is the constraint-preconditioner of the Jacobi
diagonal ``C = D⁻¹ + g_self`` (``g_self`` the diagonal of G without its uniform mode), and δV comes
out as the multiplier of the constraint. On the zero-sum subspace the uniform mode ``G(0) = L/σ``
(the largest eigenvalue of G by a factor ~L/a) never acts, so CG sees only the spreading part.
Potentiostatic steps solve the bordered system twice (for the rhs, and for a unit current with zero
rhs) and combine them so that δV = 0. G_cc is applied by scattering onto the full plane, one real FFT
pair, and a gather.

Globalization: the step length t ≤ 1 is halved until the weighted residual ``‖D_k⁻¹ r‖₂`` (D frozen at
the iterate, for which the Newton direction is a descent direction) drops (Armijo). The exponentials
are continued linearly beyond an argument of ``EXP_ARG_LIMIT`` (current densities ~10²¹ j0, far
beyond anything physical), so nothing overflows. The start is kinetically consistent: the currents the
faces carry at a uniform potential, then V (or the current scale) from a safeguarded scalar solve.

Tolerance
---------
A solve has converged when (galvanostatic) ``|a² Σ J − I| ≤ rtol·max(|I|, a² Σ |J|)`` (the second
term matters only at I = 0, where local cells between faces of different U_f still carry current)
and the potential residual ``max_p |r_p| / D_p`` (V: how far ψ_p is from the potential at which the
pixel's faces carry J_p) is ``≤ rtol · max(|V + U_CE|, max |φ|, max |U_f|)`` over the contact pixels
(plus 1e-15 V so that a cell at rest converges). Each CG solve stops at a residual (V, 2-norm) of
0.3·that potential tolerance or ``CG_FORCING`` times its initial residual, whichever is larger.
The face current densities returned are corrected to first order by the last residual
(``j_f + d_f r_p / D_p``, ``d_f = −∂j_f/∂η``), so that they sum to the pixel currents and to I exactly.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.fft

from kmc.field.plane import (
    CG_FORCING,
    MAX_NEWTON_ITERATIONS,
    MIN_EXCHANGE_CURRENT_A,
    VOLTAGE_BOUND_V,
    Faces,
    Plane,
    Solution,
    apply_green,
    thermal_factor,
)
from kmc.kernels import field as kfield



class _Problem:
    """The contact pixels of one (plane, faces) pair and the operator M = D⁻¹ + G_cc on them."""

    def __init__(self, plane: Plane, faces: Faces, temperature_k: float):
        if not (math.isfinite(temperature_k) and temperature_k > 0):
            raise ValueError(f"temperature_k = {temperature_k!r}: expected a finite number > 0")
        n_pix = plane.nx * plane.ny
        if faces.pixel.size and (faces.pixel.min() < 0 or faces.pixel.max() >= n_pix):
            raise ValueError(f"Faces.pixel: expected flat pixel indices in [0, {n_pix})")
        self.plane = plane
        self.faces = faces
        self.f = thermal_factor(temperature_k)
        self.a2 = plane.pixel_area_cm2
        self.active = np.flatnonzero(faces.j0_a_cm2 * faces.area_cm2 > MIN_EXCHANGE_CURRENT_A)
        pix = faces.pixel[self.active]
        self.cpix, self.loc = kfield.contact_pixels(np.ascontiguousarray(pix, dtype=np.int64), n_pix)
        self.n = self.cpix.size
        self.weight = faces.area_cm2[self.active] / self.a2
        self.j0 = faces.j0_a_cm2[self.active]
        self.alpha = faces.alpha[self.active]
        self.u = faces.u_local_v[self.active]
        self.u_scale = float(np.max(np.abs(self.u))) if self.u.size else 0.0
        self.buf = np.zeros((plane.ny, plane.nx))
        self.buf_flat = self.buf.reshape(-1)
        self.slope_scratch = np.empty(self.n)  # current_at needs no slope: computed and dropped

    def green_cc(self, vec: np.ndarray, out: np.ndarray, dinv: np.ndarray | None = None) -> np.ndarray:
        """out = G_cc vec (+ D⁻¹ vec when dinv is given); G_cc is +G (V per A/cm²), no sign flip."""
        kfield.scatter(self.buf_flat, self.cpix, vec)
        spec = scipy.fft.rfft2(self.buf, workers=1)
        spec *= self.plane.green
        full = scipy.fft.irfft2(spec, s=self.buf.shape, workers=1, overwrite_x=True).reshape(-1)
        if dinv is None:
            kfield.gather(full, self.cpix, out)
        else:
            kfield.gather_add(full, self.cpix, dinv, vec, out)
        return out

    def kinetics(self, psi, g, dneg):
        kfield.pixel_kinetics(psi, self.loc, self.weight, self.j0, self.alpha, self.u, self.f, g, dneg)

    def current_at(self, psi, g):
        kfield.pixel_kinetics(psi, self.loc, self.weight, self.j0, self.alpha, self.u, self.f, g, self.slope_scratch)

    def total(self, base, slope, x):
        """Faradaic current (A) at ψ = base + x·slope, and its derivative in x."""
        tot, dtot = kfield.total_current(base, slope, x, self.loc, self.weight, self.j0, self.alpha, self.u,
                                   self.f)
        return tot * self.a2, dtot * self.a2

    def bordered_solve(self, dinv, cinv, b, s, atol, rtol, maxiter):
        """Projected PCG for M x + mu·1 = b, Σx = s (M = diag(dinv) + G_cc). Returns x, mu, iterations."""
        x = cinv * (s / cinv.sum())
        q = np.empty(self.n)
        r = b - self.green_cc(x, q, dinv)
        z = np.empty(self.n)
        mu, rz, res2 = kfield.precondition(r, cinv, z)
        target2 = max(atol, rtol * math.sqrt(res2)) ** 2
        p = z.copy()
        it = 0
        while res2 > target2 and it < maxiter and rz > 0.0:
            self.green_cc(p, q, dinv)
            pq = kfield.dot(p, q)
            if not pq > 0.0:
                break
            kfield.cg_step(x, r, p, q, rz / pq)
            mu, rz_new, res2 = kfield.precondition(r, cinv, z)
            kfield.cg_direction(p, z, rz_new / rz)
            rz = rz_new
            it += 1
        return x, mu, it


def _scalar_root(fun, x0, step0, x_limit, xtol):
    """Root of a continuous decreasing ``fun(x) -> (value, derivative)``, bracketed outward from x0
    within |x| ≤ x_limit, then safeguarded Newton. Returns (x, bracketed).

    The first step outward is 1.5 Newton steps from x0 when that is shorter than ``step0``: from a warm
    start (the last solve's V) the root is a small fraction of ``step0`` away, and the bracket that
    step gives is that tight; the Newton iteration then starts from the bracket's end where |fun| is
    smaller, with the derivative already evaluated there (not from the bracket's middle, which took two
    more evaluations of the faces' current: ~7 a solve, each a pass over every face)."""
    f0, d0 = fun(x0)
    if f0 == 0.0:
        return x0, True
    direction = 1.0 if f0 > 0.0 else -1.0  # decreasing: positive value -> root lies at larger x
    step = step0
    if d0 < 0.0 and math.isfinite(d0):
        newton = -1.5 * f0 / d0  # of the root's sign; a convex stretch makes Newton fall short: 1.5 of it
        if 0.0 < abs(newton) < step0:
            step = abs(newton)
    while True:
        x1 = x0 + direction * step
        if abs(x1) > x_limit:
            x1 = math.copysign(x_limit, direction)
        f1, d1 = fun(x1)
        if (f1 > 0.0) != (f0 > 0.0) or f1 == 0.0:
            lo, hi = (x0, x1) if direction > 0 else (x1, x0)
            break
        if abs(x1) >= x_limit:
            return x1, False
        x0, f0, d0 = x1, f1, d1
        step = max(2.0 * step, step0)
    if f1 == 0.0:
        return x1, True
    # fun(lo) > 0 > fun(hi), lo < hi: Newton from the end nearer the root by |fun|, safeguarded
    x, fx, dx = (x1, f1, d1) if abs(f1) < abs(f0) else (x0, f0, d0)
    for _ in range(200):
        xn = x - fx / dx if dx < 0.0 else 0.5 * (lo + hi)
        if not (lo < xn < hi) or not math.isfinite(xn):
            xn = 0.5 * (lo + hi)
        if abs(xn - x) <= 0.25 * xtol * max(1.0, abs(x)):
            return xn, True
        x = xn
        fx, dx = fun(x)
        if fx == 0.0:
            return x, True
        if fx > 0.0:
            lo = x
        else:
            hi = x
        if hi - lo <= xtol * max(1.0, abs(x)):
            break
    return x, True


def _check_mode_inputs(name, value):
    if not (isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(value)):
        raise ValueError(f"{name} = {value!r}: expected a finite number")


def solve_galvanostatic(plane: Plane, faces: Faces, current_a: float, u_ce_v: float, temperature_k: float,
                        rtol: float = 1e-6, guess: Solution | None = None,
                        voltage_bound_v: float = VOLTAGE_BOUND_V) -> Solution:
    """Currents and cell voltage when the faces carry ``current_a`` (A; reduction/plating > 0).

    ``u_ce_v`` is the counter electrode's potential vs Na/Na⁺ (V), ``temperature_k`` in K. ``rtol`` is
    the relative tolerance of the module docstring. ``guess`` (a previous Solution on the same plane,
    possibly with other faces) warm-starts from its V and pixel currents. If the faces cannot carry the
    current with |V| ≤ ``voltage_bound_v``, the result has ``carried=False`` and is the potentiostatic
    solution at V = −sign(I)·bound.
    """
    for name, v in (("current_a", current_a), ("u_ce_v", u_ce_v), ("rtol", rtol),
                    ("voltage_bound_v", voltage_bound_v)):
        _check_mode_inputs(name, v)
    prob = _Problem(plane, faces, temperature_k)
    current = float(current_a)
    bound_v = -math.copysign(float(voltage_bound_v), current) if current != 0.0 else 0.0
    if prob.n == 0:
        if current == 0.0:
            return _empty_solution(prob, 0.0, carried=True)
        return _empty_solution(prob, bound_v, carried=False)
    # The most the faces could carry at the bound, even without any ohmic drop: a necessary condition.
    if current != 0.0:
        zeros, ones = np.zeros(prob.n), np.ones(prob.n)
        limit, _ = prob.total(zeros, ones, bound_v + u_ce_v)
        if (current > 0.0 and limit < current) or (current < 0.0 and limit > current):
            return _not_carried(plane, faces, bound_v, u_ce_v, temperature_k, rtol)
    v_start, j_start, gj_start = _galvanostatic_start(prob, current, u_ce_v, guess, voltage_bound_v)
    sol = _newton(prob, current, u_ce_v, v_start, j_start, rtol, galvanostatic=True, gj=gj_start)
    if current != 0.0 and abs(sol.voltage_v) > voltage_bound_v:
        return _not_carried(plane, faces, bound_v, u_ce_v, temperature_k, rtol)
    return sol


def solve_potentiostatic(plane: Plane, faces: Faces, voltage_v: float, u_ce_v: float, temperature_k: float,
                         rtol: float = 1e-6, guess: Solution | None = None) -> Solution:
    """Currents at a given cell voltage ``voltage_v`` (V, collector vs counter electrode).

    Same units, tolerance (without the current constraint) and warm start as ``solve_galvanostatic``.
    """
    for name, v in (("voltage_v", voltage_v), ("u_ce_v", u_ce_v), ("rtol", rtol)):
        _check_mode_inputs(name, v)
    prob = _Problem(plane, faces, temperature_k)
    if prob.n == 0:
        return _empty_solution(prob, float(voltage_v), carried=True)
    j_start = _potentiostatic_start(prob, float(voltage_v), u_ce_v, guess)
    return _newton(prob, None, u_ce_v, float(voltage_v), j_start, rtol, galvanostatic=False)


def _not_carried(plane, faces, bound_v, u_ce_v, temperature_k, rtol):
    sol = solve_potentiostatic(plane, faces, bound_v, u_ce_v, temperature_k, rtol)
    sol.carried = False
    return sol


def _empty_solution(prob, voltage_v, carried):
    plane = prob.plane
    return Solution(voltage_v=float(voltage_v), face_current_density_a_cm2=np.zeros(len(prob.faces)),
                    pixel_current_density_a_cm2=np.zeros((plane.ny, plane.nx)),
                    phi_v=np.zeros((plane.ny, plane.nx)), newton_iterations=0, cg_iterations=0,
                    converged=True, carried=carried, current_a=0.0)


def _guess_currents(prob, guess):
    """The guess's pixel currents on this problem's contact pixels (A/cm²), or None."""
    if guess is None:
        return None
    jmap = np.asarray(guess.pixel_current_density_a_cm2, dtype=np.float64)
    if jmap.shape != (prob.plane.ny, prob.plane.nx):
        raise ValueError(f"guess has a current map of shape {jmap.shape}: expected "
                         f"{(prob.plane.ny, prob.plane.nx)}")
    return jmap.reshape(-1)[prob.cpix].copy()


def _galvanostatic_start(prob, current, u_ce_v, guess, voltage_bound_v):
    """(V, J, G_cc J) with a²ΣJ = I exactly and V such that the faces carry I at ψ = V + U_CE + G J."""
    target = current / prob.a2  # Σ J over contact pixels
    ones = np.ones(prob.n)
    x_limit = 4.0 * voltage_bound_v + 10.0
    j = _guess_currents(prob, guess)
    if j is not None and current != 0.0:
        # The old pattern, scaled to the new current; after a reversal (plate -> strip) the
        # kinetically consistent cold start is the better guess in the nonlinear regime.
        carried = j.sum()
        if carried != 0.0 and (carried > 0.0) == (current > 0.0):
            j *= target / carried
        else:
            j = None
    if j is None:
        # The currents the faces carry at a uniform potential ψ, where they carry I in total.
        zeros = np.zeros(prob.n)
        psi0, _ = _scalar_root(lambda x: _shifted(prob.total(zeros, ones, x), current), 0.0, 0.01,
                               x_limit, 1e-15)
        j = np.empty(prob.n)
        prob.current_at(psi0 * ones, j)
    # Put any mismatch with I where the faces can take it (their exchange capacity).
    capacity = np.bincount(prob.loc, prob.weight * prob.j0, minlength=prob.n)
    j += (target - j.sum()) * capacity / capacity.sum()
    gj = prob.green_cc(j, np.empty(prob.n))
    v0 = float(guess.voltage_v) if guess is not None else -float(np.mean(gj)) - u_ce_v
    v, _ = _scalar_root(lambda x: _shifted(prob.total(gj + u_ce_v, ones, x), current), v0, 0.01, x_limit,
                        1e-15)
    return v, j, gj


def _shifted(value_derivative, current):
    value, derivative = value_derivative
    return value - current, derivative


def _potentiostatic_start(prob, voltage_v, u_ce_v, guess):
    """J = c·w with the scale c at which the faces carry what the ohmic drop of c·w allows."""
    w = _guess_currents(prob, guess)
    if w is None or not np.any(w):
        w = np.bincount(prob.loc, prob.weight * prob.j0, minlength=prob.n)
    gw = prob.green_cc(w, np.empty(prob.n))
    base = np.full(prob.n, voltage_v + u_ce_v)
    wsum = w.sum() * prob.a2

    def residual(c):
        tot, dtot = prob.total(base, gw, c)
        return tot - c * wsum, dtot - wsum

    c, _ = _scalar_root(residual, 1.0 if guess is not None else 0.0, 1e-3, 1e300, 1e-15)
    return c * w


def _newton(prob, current, u_ce_v, voltage, j, rtol, galvanostatic, gj=None):
    """Damped Newton–CG from (V, J); ``gj`` is G_cc J when the caller has it already."""
    n = prob.n
    a2 = prob.a2
    g = np.empty(n)
    dneg = np.empty(n)
    if gj is None:
        gj = prob.green_cc(j, np.empty(n))
    g_trial = np.empty(n)
    gdj = np.empty(n)
    cg_total = 0
    converged = False
    iterations = 0
    maxiter_cg = 10 * n + 100
    while True:
        psi = voltage + u_ce_v + gj
        prob.kinetics(psi, g, dneg)
        r = j - g
        err = r / dneg
        err_v = float(np.max(np.abs(err)))
        scale_v = max(abs(voltage + u_ce_v), float(np.max(np.abs(gj))), prob.u_scale)
        tol_v = rtol * scale_v + 1e-15
        ok = err_v <= tol_v
        if galvanostatic:
            c_res = abs(a2 * j.sum() - current)
            ok = ok and c_res <= rtol * max(abs(current), a2 * float(np.abs(j).sum()))
        if ok:
            converged = True
            break
        if iterations >= MAX_NEWTON_ITERATIONS:
            break
        iterations += 1
        dinv = 1.0 / dneg
        cinv = 1.0 / (dinv + prob.plane.green_self)
        b = -err
        atol = 0.3 * tol_v
        if galvanostatic:
            dj, dv, it = prob.bordered_solve(dinv, cinv, b, current / a2 - j.sum(), atol, CG_FORCING,
                                             maxiter_cg)
            cg_total += it
        else:
            xb, mub, it1 = prob.bordered_solve(dinv, cinv, b, 0.0, atol, CG_FORCING, maxiter_cg)
            # Unit current, zero rhs: its multiplier mu1 < 0; the combination with zero δV is exact.
            x1, mu1, it2 = prob.bordered_solve(dinv, cinv, np.zeros(n), 1.0, 1e-3 * atol, 1e-12,
                                               maxiter_cg)
            cg_total += it1 + it2
            s = -mub / mu1
            dj = xb + s * x1
            dv = 0.0
        prob.green_cc(dj, gdj)
        dpsi = dv + gdj
        # Armijo backtracking on ‖D_k⁻¹ r‖ with D frozen at the iterate.
        m0 = float(np.sqrt(kfield.dot(err, err)))
        t = 1.0
        for _ in range(40):
            prob.current_at(psi + t * dpsi, g_trial)
            ft = (j + t * dj - g_trial) * dinv
            mt = float(np.sqrt(kfield.dot(ft, ft)))
            if mt <= (1.0 - 1e-4 * t) * m0 or not m0 > 0.0:
                break
            t *= 0.5
        j = j + t * dj
        gj = gj + t * gdj
        voltage = voltage + t * dv
    # Face currents consistent with the pixel currents (first-order correction by err = r/D).
    faces = prob.faces
    face_j = np.zeros(len(faces))
    active_j = np.empty(prob.active.size)
    kfield.face_currents(psi, err, prob.loc, prob.j0, prob.alpha, prob.u, prob.f, active_j)
    face_j[prob.active] = active_j
    jmap = np.zeros(prob.plane.ny * prob.plane.nx)
    jmap[prob.cpix] = j
    jmap = jmap.reshape(prob.plane.ny, prob.plane.nx)
    phi = apply_green(prob.plane, jmap)
    return Solution(voltage_v=float(voltage), face_current_density_a_cm2=face_j,
                    pixel_current_density_a_cm2=jmap, phi_v=phi, newton_iterations=iterations,
                    cg_iterations=cg_total, converged=converged, carried=True,
                    current_a=float(a2 * j.sum()))

