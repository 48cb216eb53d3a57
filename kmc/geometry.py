"""Initial geometry of the cell under stack pressure (PHYSICS.md §3).

- **SE surface**: a Gaussian random field of rms roughness ``Rq`` and correlation length ``ξ``
  (Gaussian autocorrelation ``C(r) = Rq² exp(−r²/ξ²)``), voxelized as column heights. The SE is
  voxelized only as deep as its topography: the lowest valley keeps one SE voxel.
- **Foil CC**: a flat lower face lowered onto the asperities until the bearing fraction is
  ``φ0 = min(1, P/H_foil)``: exactly ``ceil(φ0·N)`` columns (at least one) touch — the smallest
  bearing area that carries P — the highest ones
  by continuous height, and the CC is flattened where it overlaps them (the asperity tops end at
  the CC's lower face). Everything between the surfaces is GAP.
- **Sub-voxel heights** (PHYSICS.md §2: the voxel need not resolve Rq). The CC's lower face is put on
  a voxel boundary at the continuous punch height, and every column's gap is the continuous
  ``g = z_punch − h`` rounded to whole voxels — at least one voxel where the column does not touch, so
  the lattice's contacts are exactly the bearing columns. The continuous SE surface (``se_surface_um``,
  lattice coordinates: µm above the lattice's z = 0 plane) is kept beside the lattice; heights of the
  Na above the electrolyte are measured from it. Rounding each column's own gap (not the SE heights
  to a rounded CC level, as before) makes the lattice's gap volume an unbiased sum over columns: the
  only bias left is the one-voxel minimum of thin gaps, O(a²) (measured on NASICON's self-affine
  relief under T2's load, 64 µm domain: lattice/continuous gap volume 1.042, 1.006, 1.001 at voxels
  of 0.5, 0.25, 0.125 µm; rounding the SE heights to a rounded CC level gave 1.24, 0.93, 1.07).
- **Pellet CC**: its lower face replicates the SE topography (full contact); a porous pellet holds
  GAP pores, a fraction ``ε`` of the CC body and, at the interface, of the CC's lower face, of the
  collector material's pore radius (``pore_correlation_um``: a length in µm, not voxels).
- **Au**: the seed-layer inventory (nm) on every CC lower-face pixel.
- **Initial Na**: a layer of mean thickness ``initial_na_um`` between SE and CC, in full contact.

The CC is a rigid body: its shape (``cc_shape``: lower face per column relative to the offset) is
fixed, and ``cc_offset`` is its vertical position; the lowest CC voxel of a column is at
``cc_offset + cc_shape``. Pores and whatever fills them move with it. The top layer of the domain is
always solid CC, so lifting the CC loses only solid CC out of the top.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.special

from kmc import relief
from kmc.errors import ScenarioError
from kmc.kernels.cell import CC, GAP, NA, SE


@dataclass
class Geometry:
    """The initial lattice and the per-column fields of a cell. Arrays are (ny, nx) or (nz, ny, nx)."""

    voxel_um: float
    lattice: np.ndarray  # uint8 (nz, ny, nx)
    surface_um: np.ndarray  # continuous SE heights (mean 0), µm
    se_surface_um: np.ndarray  # continuous SE surface in lattice coordinates (µm above z = 0), (ny, nx)
    cc_shape: np.ndarray  # int (ny, nx), lowest CC voxel relative to cc_offset
    cc_offset: int
    au_nm: np.ndarray  # float (ny, nx), Au on the CC lower face
    bearing_fraction: float  # columns where the CC touches the SE / all columns
    side_face_weight: np.ndarray | None = None  # float (ny, nx): a side face's true area / a² (``side_face_weight``)

    @property
    def shape(self) -> tuple[int, int, int]:
        nz, ny, nx = self.lattice.shape
        return nx, ny, nz


def rough_surface_um(nx: int, ny: int, voxel_um: float, rq_um: float, xi_um: float,
                     rng: np.random.Generator) -> np.ndarray:
    """Gaussian random heights (µm, mean 0, rms exactly ``rq_um``) with autocorrelation ``exp(−r²/ξ²)``.

    White noise filtered in Fourier space by the square root of the Gaussian power spectrum,
    ``exp(−q²ξ²/8)``; then shifted and scaled so the sample mean is 0 and the sample rms is Rq.
    """
    noise = rng.standard_normal((ny, nx))
    qx = 2 * np.pi * scipy.fft.rfftfreq(nx, d=voxel_um)
    qy = 2 * np.pi * scipy.fft.fftfreq(ny, d=voxel_um)
    q2 = qy[:, None] ** 2 + qx[None, :] ** 2
    h = scipy.fft.irfft2(scipy.fft.rfft2(noise, workers=1) * np.exp(-q2 * xi_um**2 / 8.0), s=(ny, nx), workers=1)
    h -= h.mean()
    rms = h.std()
    return h * (rq_um / rms) if rms > 0 else h


def pore_correlation_um(porosity: float, pore_radius_um: float) -> float:
    """Correlation length ξ (µm) of the Gaussian field whose excursion above its (1 − ε) quantile makes
    pores of hydraulic radius ``pore_radius_um`` at porosity ε.

    The field f has unit variance and autocorrelation exp(−r²/ξ²), so the variance of a directional
    derivative is λ = 2/ξ². By Rice's formula a test line crosses the level u = Φ⁻¹(1 − ε)
    (1/π) √λ exp(−u²/2) times per unit length, and the pore surface per volume is twice that
    (stereology, S_V = 2 P_L): S_V = (2√2/(π ξ)) exp(−u²/2). A pore's hydraulic radius 2ε/S_V (a
    cylinder's radius r has 2V/S = r) set to r_p gives ξ = √2 r_p exp(−u²/2)/(π ε): a length of the
    material, so the pores do not change when the voxel halves."""
    u = float(scipy.special.ndtri(1.0 - porosity))
    return math.sqrt(2.0) * pore_radius_um * math.exp(-u * u / 2.0) / (math.pi * porosity)


def _correlated_pores(shape: tuple[int, ...], porosity: float, rng: np.random.Generator, voxel_um: float,
                      pore_radius_um: float) -> np.ndarray:
    """Boolean pore mask: a Gaussian random field (white noise filtered to the autocorrelation
    exp(−r²/ξ²), ξ from ``pore_correlation_um``) above its (1 − ε) quantile."""
    corr_voxels = pore_correlation_um(porosity, pore_radius_um) / voxel_um
    field = rng.standard_normal(shape)
    freqs = np.meshgrid(*[scipy.fft.fftfreq(n) for n in shape], indexing="ij")
    q2 = sum((2 * np.pi * f) ** 2 for f in freqs)
    field = np.real(scipy.fft.ifftn(scipy.fft.fftn(field, workers=1) * np.exp(-q2 * corr_voxels**2 / 8.0), workers=1))
    return field > np.quantile(field, 1.0 - porosity)


def build(nx: int, ny: int, nz: int, voxel_um: float, *, form: str, rq_um: float, xi_um: float,
          stack_pressure_mpa: float, hardness_mpa: float, porosity: float = 0.0, au_nm: float = 0.0,
          initial_na_um: float = 0.0, rng: np.random.Generator, surface_um: np.ndarray | None = None,
          pore_radius_um: float | None = None) -> Geometry:
    """Build the initial cell (see the module docstring). Raises ScenarioError if nz is too small.

    ``surface_um``: the electrolyte's continuous heights (µm, (ny, nx)) when made elsewhere (a
    self-affine relief, ``kmc.relief``); by default the Gaussian surface of ``rq_um`` and ``xi_um``.
    ``pore_radius_um``: the hydraulic radius of a porous pellet's pores (the collector material's)."""
    a = voxel_um
    h = rough_surface_um(nx, ny, a, rq_um, xi_um, rng) if surface_um is None else surface_um - surface_um.mean()
    # The continuous SE surface with one SE voxel under the deepest valley: its top face at
    # rint(s/a) voxels, at least 1.
    s = h - h.min() + a
    se_h = np.maximum(1, np.rint(s / a).astype(np.int64))
    n_cols = nx * ny
    cc_shape = np.zeros((ny, nx), dtype=np.int64)
    if form == "foil":
        if initial_na_um > 0:
            # A Na layer of the given mean thickness under a flat CC; asperities that would reach
            # the CC are cut one voxel below it, so the Na carries the load everywhere.
            level = int(np.rint(se_h.mean() + initial_na_um / a))
            level = max(level, 2)
            se_h = np.minimum(se_h, level - 1)
            s = np.minimum(s, (level - 1) * a)
            bearing = 0.0
        else:
            # The smallest bearing area that carries P (k/N ≥ φ0): asperities at their hardness bear
            # the whole load, and Na in the gaps stays unloaded until it lifts the CC.
            phi0 = min(1.0, stack_pressure_mpa / hardness_mpa)
            k = max(1, int(math.ceil(phi0 * n_cols - 1e-9)))
            if k >= n_cols:
                check_foil_pressure(stack_pressure_mpa, hardness_mpa)
            order = np.argsort(h, axis=None, kind="stable")[::-1]
            contact = np.zeros(n_cols, dtype=bool)
            contact[order[:k]] = True
            contact = contact.reshape(ny, nx)
            punch = float(h.ravel()[order[k - 1]])
            gap = np.where(contact, 0.0, punch - h)  # continuous gap under the punch, µm
            # The CC face on a voxel boundary with room for the deepest gap over one SE voxel.
            level = int(math.ceil(float(gap.max()) / a - 1e-9)) + 1
            n_gap = np.where(contact, 0, np.maximum(1, np.rint(gap / a).astype(np.int64)))
            se_h = level - n_gap
            s = level * a - gap
            bearing = k / n_cols
            lattice_gap, continuous_gap = float(n_gap.mean()) * a, float(gap.mean())
            if continuous_gap < a / 2:
                # Voxels coarse against the relief: the gaps under the foil hold less than half a voxel
                # per area, and the lattice's one-voxel minimum per gap column would hold more than twice
                # what they can.
                check_foil_pressure(stack_pressure_mpa, hardness_mpa)
                raise ScenarioError("lattice.voxel_um", a, f"a voxel that resolves the surface relief under a foil "
                                                           f"(or a rougher electrolyte: roughness_um = {rq_um:g}): "
                                                           f"at this voxel the gaps under the foil "
                                                           f"(P/H = {phi0:.3g}) hold {lattice_gap:.3g} µm of "
                                                           f"volume per area for {continuous_gap:.3g} µm")
        cc_offset = level
    elif form == "pellet":
        lift = int(np.rint(initial_na_um / a)) if initial_na_um > 0 else 0
        cc_offset = int(se_h.min()) + lift
        cc_shape = se_h - se_h.min()
        bearing = 0.0 if lift else 1.0
    else:
        raise ScenarioError("collector.form", form, '"foil" or "pellet"')

    cc_bottom = cc_offset + cc_shape
    if cc_bottom.max() + 2 > nz:
        raise ScenarioError(
            "lattice.nz", nz,
            f"at least {int(cc_bottom.max()) + 2} voxels here: the SE topography "
            f"(Rq = {rq_um} µm at {a} µm voxels) plus the initial Na leave no room for the collector",
        )
    z = np.arange(nz)[:, None, None]
    lattice = np.full((nz, ny, nx), GAP, dtype=np.uint8)
    lattice[z < se_h[None]] = SE
    lattice[z >= cc_bottom[None]] = CC
    if initial_na_um > 0:
        lattice[(z >= se_h[None]) & (z < cc_bottom[None])] = NA
    if form == "pellet" and porosity > 0:
        # Pores inside the CC body, never in its top layer (what lifting pushes out of the domain).
        body = (z >= cc_bottom[None]) & (z < nz - 1)
        if pore_radius_um is None:
            raise ValueError("a porous pellet needs its pores' radius (pore_radius_um)")
        pores = _correlated_pores((nz, ny, nx), porosity, rng, a, pore_radius_um) & body
        lattice[pores] = GAP
        bottom_open = np.take_along_axis(pores, cc_bottom[None], axis=0)[0]
        if initial_na_um == 0:
            bearing = 1.0 - bottom_open.mean()
    au = np.full((ny, nx), float(au_nm))
    return Geometry(a, lattice, h, s, cc_shape, int(cc_offset), au, float(bearing), side_face_weight(h, se_h, a))


def surface_slopes(surface_um: np.ndarray, voxel_um: float) -> tuple[np.ndarray, np.ndarray]:
    """∂h/∂x and ∂h/∂y per pixel of a periodic surface (dimensionless).

    Spectral (both reliefs are drawn as Fourier sums on the pixel grid), the Nyquist modes' derivative
    taken as zero: exact for the band-limited surface the lattice samples, converging as the voxel
    halves."""
    ny, nx = surface_um.shape
    spec = scipy.fft.rfft2(surface_um, workers=1)
    qx = 2 * np.pi * scipy.fft.rfftfreq(nx, d=voxel_um)
    qy = 2 * np.pi * scipy.fft.fftfreq(ny, d=voxel_um)
    if nx % 2 == 0:
        qx[-1] = 0.0
    if ny % 2 == 0:
        qy[ny // 2] = 0.0
    hx = scipy.fft.irfft2(spec * (1j * qx[None, :]), s=(ny, nx), workers=1)
    hy = scipy.fft.irfft2(spec * (1j * qy[:, None]), s=(ny, nx), workers=1)
    return hx, hy


def true_area_factor(surface_um: np.ndarray, voxel_um: float) -> np.ndarray:
    """Per pixel, the true area of the continuous surface over its projected area, √(1 + |∇h|²)."""
    hx, hy = surface_slopes(surface_um, voxel_um)
    return np.sqrt(1.0 + hx**2 + hy**2)


def side_face_weight(surface_um: np.ndarray, se_h: np.ndarray, voxel_um: float) -> np.ndarray:
    """The area of each side face of an electrolyte column, in units of a² (PHYSICS.md §2: field faces on
    the sub-voxel surface; ``model.face_area = "true_area"``).

    The voxelized relief is a staircase: one top face per column (its projected area, exact) and a side
    face for every voxel by which the column stands above a lateral neighbour. Its side faces per pixel
    grow as the voxel resolves the relief, towards the L1 excess ⟨|∂h/∂x| + |∂h/∂y|⟩ (0.235 for NASICON's
    Gaussian relief; 0.181 / 0.211 / 0.233 on the lattice at 0.5 / 0.25 / 0.125 µm), while the true
    excess ⟨√(1 + |∇h|²) − 1⟩ is 0.02; every one of those faces is a contact face once Na fills the gap,
    so the contact area — and with it R_int and the interphase — would move with the voxel. Here the
    side faces carry the relief's true area beyond the projected one, in total exactly, each in
    proportion to its column's excess per unit of L1 slope, (√(1 + |∇h|²) − 1)/(|∂h/∂x| + |∂h/∂y|) ≈
    |∇h|/2 (the area a step of the staircase stands for where the surface is that steep). A local
    normalisation (each column's excess over its own side faces) would drop the excess of the many
    columns with no side face at all: 80 % of it at 0.5 µm on NASICON's relief."""
    hx, hy = surface_slopes(surface_um, voxel_um)
    excess = np.sqrt(1.0 + hx**2 + hy**2) - 1.0
    l1 = np.abs(hx) + np.abs(hy)
    shape = np.where(l1 > 0, excess / np.where(l1 > 0, l1, 1.0), 0.0)
    sides = np.zeros(se_h.shape, dtype=np.int64)
    for axis in (0, 1):
        for shift in (1, -1):
            sides += np.maximum(0, se_h - np.roll(se_h, shift, axis=axis))
    carried = float(np.sum(sides * shape))
    if carried <= 0.0:
        return np.zeros(se_h.shape)  # no side faces: the relief is flat to within a voxel
    return shape * (float(np.sum(excess)) / carried)


def check_foil_pressure(stack_pressure_mpa: float, hardness_mpa: float) -> None:
    """A foil with no Na in place needs P below its hardness: at or above it the foil bears on every
    column and leaves no gap to plate into (a ScenarioError naming the stack pressure)."""
    if stack_pressure_mpa >= hardness_mpa:
        raise ScenarioError("conditions.stack_pressure_mpa", stack_pressure_mpa,
                            f"a pressure below the foil's hardness, {hardness_mpa:g} MPa: at or above "
                            f"it the foil bears on every column and leaves no gap")


def collector_hardness_mpa(materials: dict, material: str, form: str) -> float:
    """The CC hardness for its form (PHYSICS.md §8: by form)."""
    table = materials[material]
    key = f"{form}_hardness_mpa"
    if key not in table:
        raise ScenarioError(f"materials.{material}.{key}", None, f"a hardness for a {form} of {material}")
    return float(table[key])


def from_scenario(scenario, rng: np.random.Generator) -> Geometry:
    """Build the geometry a battery scenario describes, with its materials. ``electrolyte.relief``
    chooses the surface: ``"gaussian"`` (v3: one scale, Rq and ξ) or ``"self_affine"`` (v4,
    ``kmc.relief``: the electrolyte's — or a pellet collector's — relief spectrum)."""
    d, m = scenario.data, scenario.materials
    lat, col, el = d["lattice"], d["collector"], d["electrolyte"]
    se = m[el["material"]]
    pellet = col["form"] == "pellet"
    rq = float(m[col["material"]]["pellet_roughness_um"]) if pellet else float(se["roughness_um"])
    nx, ny, voxel_um = int(lat["nx"]), int(lat["ny"]), float(lat["voxel_um"])
    surface = None
    if el.get("relief", "gaussian") == "self_affine":
        table, prefix = (m[col["material"]], "pellet_relief_") if pellet else (se, "relief_")
        spectrum = [float(table[prefix + k]) for k in ("rq_um", "rolloff_um", "cutoff_um", "hurst")]
        rq = spectrum[0]
        surface = relief.self_affine_surface_um(nx, ny, voxel_um, *spectrum, rng)
    return build(
        nx, ny, int(lat["nz"]), voxel_um,
        form=col["form"], rq_um=rq, xi_um=float(se["correlation_length_um"]),
        stack_pressure_mpa=float(d["conditions"]["stack_pressure_mpa"]),
        hardness_mpa=collector_hardness_mpa(m, col["material"], col["form"]),
        porosity=float(col.get("porosity", 0.0)),
        au_nm=float(col.get("seed_layer_nm", 0.0)) if col.get("seed_layer") == "au" else 0.0,
        initial_na_um=float(col.get("initial_na_um", 0.0)), rng=rng, surface_um=surface,
        pore_radius_um=_pore_radius_um(m, col),
    )


def _pore_radius_um(materials: dict, collector: dict) -> float | None:
    """The pore radius of a porous pellet's material (a ScenarioError naming the key if it has none)."""
    if collector["form"] != "pellet" or float(collector.get("porosity", 0.0)) == 0.0:
        return None
    table = materials[collector["material"]]
    if "pore_radius_um" not in table:
        raise ScenarioError(f"materials.{collector['material']}.pore_radius_um", None,
                            "a pore radius for a porous pellet of this material")
    return float(table["pore_radius_um"])
