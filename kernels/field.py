"""The field solver's kernels (``kmc.field``): element-wise work and reductions over the contact
faces and pixels of the interface plane, the exponentials of the Butler–Volmer kinetics, and the
vector steps of the projected CG.

Units as in ``kmc.field``: potentials in V, current densities in A/cm², ``f = F/RT`` in 1/V. Faces are
given as parallel arrays over the active faces (``loc``: each face's contact-pixel index; ``weight``:
A_f/a²; ``j0``, ``alpha``, ``u``: exchange current density, transfer coefficient, local potential);
pixels as arrays over the contact pixels. Sums run sequentially, so results are bit-reproducible.
"""
import math

import numpy as np
from numba import njit

#: Exponent argument beyond which exp(x) is continued linearly (value and slope continuous).
EXP_ARG_LIMIT = 50.0


@njit(cache=True, inline="always")
def _gexp(x):
    """exp(x) and its derivative, continued linearly beyond EXP_ARG_LIMIT."""
    if x <= EXP_ARG_LIMIT:
        e = math.exp(x)
        return e, e
    e = math.exp(EXP_ARG_LIMIT)
    return e * (1.0 + (x - EXP_ARG_LIMIT)), e


@njit(cache=True, inline="always")
def _bv_exponentials(alpha, f, eta):
    """(e1, d1, e2, d2) = ``_gexp(−α f η)`` and ``_gexp((1 − α) f η)``. At α = 1/2 (every shipped
    scenario), within the continuation's limit, one exponential and its reciprocal: exp(−x) = 1/exp(x)
    to within an ulp, and the solve's passes over the faces are mostly their exponentials."""
    if alpha == 0.5:
        x = 0.5 * f * eta
        if -EXP_ARG_LIMIT <= x <= EXP_ARG_LIMIT:
            e = math.exp(x)
            r = 1.0 / e
            return r, r, e, e
    e1, d1 = _gexp(-alpha * f * eta)
    e2, d2 = _gexp((1.0 - alpha) * f * eta)
    return e1, d1, e2, d2


@njit(cache=True)
def pixel_kinetics(psi, loc, weight, j0, alpha, u, f, g, dneg):
    """Per contact pixel: g = a⁻² Σ A_f j_f at potential psi (A/cm²) and dneg = −∂g/∂ψ (A/cm²/V).

    ``weight`` is A_f/a² per face, ``loc`` the face's contact-pixel index.
    """
    g[:] = 0.0
    dneg[:] = 0.0
    for k in range(loc.size):
        c = loc[k]
        eta = psi[c] - u[k]
        e1, d1, e2, d2 = _bv_exponentials(alpha[k], f, eta)
        w = weight[k] * j0[k]
        g[c] += w * (e1 - e2)
        dneg[c] += w * f * (alpha[k] * d1 + (1.0 - alpha[k]) * d2)


@njit(cache=True)
def face_currents(psi, shift, loc, j0, alpha, u, f, out):
    """j_f at potential psi, corrected to first order by the pixel's potential shift (V)."""
    for k in range(loc.size):
        c = loc[k]
        eta = psi[c] - u[k]
        e1, d1, e2, d2 = _bv_exponentials(alpha[k], f, eta)
        out[k] = j0[k] * ((e1 - e2) + f * (alpha[k] * d1 + (1.0 - alpha[k]) * d2) * shift[c])


@njit(cache=True)
def total_current(base, slope, x, loc, weight, j0, alpha, u, f):
    """a⁻² Σ_f A_f j_f at ψ = base + x·slope, and its derivative in x."""
    tot = 0.0
    dtot = 0.0
    for k in range(loc.size):
        c = loc[k]
        eta = base[c] + x * slope[c] - u[k]
        e1, d1, e2, d2 = _bv_exponentials(alpha[k], f, eta)
        w = weight[k] * j0[k]
        tot += w * (e1 - e2)
        dtot -= w * f * (alpha[k] * d1 + (1.0 - alpha[k]) * d2) * slope[c]
    return tot, dtot


@njit(cache=True)
def scatter(flat, idx, vals):
    for i in range(idx.size):
        flat[idx[i]] = vals[i]


@njit(cache=True)
def gather_add(flat, idx, dinv, p, out):
    """out = G p (gathered from the plane) + D⁻¹ p."""
    for i in range(idx.size):
        out[i] = flat[idx[i]] + dinv[i] * p[i]


@njit(cache=True)
def gather(flat, idx, out):
    for i in range(idx.size):
        out[i] = flat[idx[i]]


@njit(cache=True)
def dot(a, b):
    s = 0.0
    for i in range(a.size):
        s += a[i] * b[i]
    return s


@njit(cache=True)
def precondition(r, cinv, z):
    """Constraint preconditioner: mu = Σ C⁻¹r / Σ C⁻¹, z = C⁻¹(r − mu); returns mu, rᵀz, ‖r − mu‖²."""
    swr = 0.0
    sw = 0.0
    for i in range(r.size):
        swr += cinv[i] * r[i]
        sw += cinv[i]
    mu = swr / sw
    rz = 0.0
    res2 = 0.0
    for i in range(r.size):
        d = r[i] - mu
        z[i] = cinv[i] * d
        rz += d * z[i]
        res2 += d * d
    return mu, rz, res2


@njit(cache=True)
def cg_step(x, r, p, q, step):
    for i in range(x.size):
        x[i] += step * p[i]
        r[i] -= step * q[i]


@njit(cache=True)
def cg_direction(p, z, beta):
    for i in range(p.size):
        p[i] = z[i] + beta * p[i]


@njit(cache=True)
def contact_pixels(pixel, n_pixels):
    """(cpix, loc) of faces' pixels ``pixel`` (flat indices in [0, n_pixels)): the distinct pixels in
    ascending order and each face's index into them — what ``np.unique(pixel, return_inverse=True)``
    returns, by marking the plane instead of sorting the faces (linear: at 512² columns the sort was
    10 ms a solve)."""
    index = np.full(n_pixels, -1, dtype=np.int64)
    for k in range(pixel.size):
        index[pixel[k]] = 0
    n = 0
    for i in range(n_pixels):
        if index[i] == 0:
            index[i] = n
            n += 1
    cpix = np.empty(n, dtype=np.int64)
    n = 0
    for i in range(n_pixels):
        if index[i] >= 0:
            cpix[n] = i
            n += 1
    loc = np.empty(pixel.size, dtype=np.int64)
    for k in range(pixel.size):
        loc[k] = index[pixel[k]]
    return cpix, loc
