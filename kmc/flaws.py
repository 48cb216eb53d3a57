"""Surface flaws of the electrolyte and filament initiation (PHYSICS.md §3 flaws, §5 E8).

The electrolyte surface holds sub-grid flaws, areal density n_flaw. Two laws of how they fill and how
deep they are (``model.flaw_law``):

**metal_front** (v3, the default). Depths c from a Weibull law (scale c0, shape m):
F(c) = 1 − exp(−(c/c0)^m). A flaw whose mouth is covered by Na that plates fills with Na at the pixel's
plating current j_p: c/a voxels of Na, so the fill takes ``(c/a) q_v / (j_p a²)`` — Na goes down every
flaw under the pixel as fast as the pixel's metal thickens. "Na-covered" is read on the lattice: j_p is
the current the pixel's Na faces carry. A collector face (Au, alloyed Au, a nucleated bare collector)
caps the flaw under it with the collector itself, and what it plates goes into the gap beside it. The
crack opening δ_c is one constant (``crack_opening_um``).

**slot** (PHYSICS v4 E8). A flaw of depth c is a slot whose walls stand δ_c apart, the opening of an edge
crack loaded to the toughness, ``δ_c(c) = (8 K_IC/E) √(c/2π)`` (E = ``youngs_modulus_gpa``; with K_IC in
MPa√m and E in GPa, K_IC/E is in √µm, so δ_c comes out in µm for c in µm). It fills by deposition on
its walls from any face at Na's activity carrying cathodic current at its mouth, Na or collector (not Au
still alloying, which takes the Na into the alloy: ``kmc.battery.losses``): the metal at the
mouth is connected to the Na that has entered the slot, and the slot's electrolyte walls that this Na
covers plate at the mouth's current density j. Per unit length of the mouth, Na that has reached x
into the slot grows at (j V_m/F)(δ_c + 2x) (the mouth's width and the two walls), and it fills the
slot's width:

    δ_c dx/dt = (j V_m/F)(δ_c + 2x),   i.e.  dx/dQ = (V_m/F)(1 + 2x/δ_c)  with dQ = j dt,

so x(Q) = (δ_c/2)(exp(2 V_m Q/(F δ_c)) − 1), and the flaw is full (x = c) once the cathodic charge
density passed at its mouth, Q = ∫ j dt (C/cm²), reaches

    Q(c) = (δ_c F/(2 V_m)) ln(1 + 2c/δ_c);   at constant j,  t_fill = Q(c)/j,

PHYSICS's ``t_fill = (δ_c F/(2 j V_m)) ln(2c/δ_c)`` for c ≫ δ_c (δ_c ≈ 0.05 √(c/µm) µm on NASICON: the
two differ by < 1 % from c ≈ 1 µm up). The exact log is kept: it stays positive and increasing down to
the shallowest bins, where ln(2c/δ_c) turns negative below c = δ_c/2. Since the ODE is linear in dQ,
the fill at a varying current depends on its history only through Q — one number per pixel, counted
while the cell plates (a rest changes nothing). Flaw Na strips first (PHYSICS v4 E6, E8): while its
pixel strips, the flaws give their Na before the layer does, their expected Na falling by the charge
stripped at the mouth, and Q falls back along this law to Q(d) of the full depth d that holds what is
left (``kmc.battery.losses.Losses.strip_flaws``; the Na goes back to the metal). With δ_c = k√c,
k = 8 K_IC/(E √(2π)), Q(c) = (F k/(2 V_m)) √c ln(1 + 2√c/k): both factors
grow with c, so Q(c) is increasing and the flaws full at Q_i are those shallower than d_i = Q⁻¹(Q_i).
The same wall deposition sets the speed at which Na arrives at a full flaw's bottom,
v = (j V_m/F)(1 + 2c/δ_c), in the extrusion pressure below. Depths follow the law that gives a Weibull
specimen strength of modulus m_σ (``strength_weibull_modulus``): strength ∝ c^(−1/2), so
P(σ_f < s) = 1 − exp(−(s/s0)^m_σ) needs a tail P(c > x) = (x/c0)^(−m_σ/2) for x > c0 (all flaws at
least c0 deep; c0 = ``flaw_scale_um``, to be recalibrated for this law).

Under both laws the Na in a filled flaw is pressed to the smaller of what the overpotential can give,
``F|η|/V_m`` (1 mV ≈ 4 MPa), and what Na flowing out of the flaw by creep allows, the extrusion pressure

    p_flow = (2c/δ_c) (σ_ref/√3) (ε̇/ε̇_ref)^(1/n),   ε̇ = 2v/δ_c,   v = (j V_m/F)(1 + 2c/δ_c),

(σ_ref, ε̇_ref) a point of Na's creep law at the temperature (under the deposit stress law PHYSICS v4's
``min(P + F|η0|/V_m, σ_mouth + p_flow)``: ``kmc.battery.losses``). The pressure is the present state's:
nothing of it is kept across a current reversal. Growth is unstable — a filament crosses the
electrolyte and the cell shorts — when the Griffith–Inglis stress intensity of the pressurized edge
crack reaches the toughness: ``1.12 p √(π c) ≥ K_IC`` (Porz et al. 2017). Which flaws of the cell these
are, and when the cell shorts, is the population model below.
"""
from __future__ import annotations

import math

import numpy as np

from kmc import units


def overpotential_pressure_mpa(eta_v: float, molar_volume_cm3_mol: float) -> float:
    """F|η|/V_m (MPa): the most the overpotential can press Na into a closed flaw."""
    return units.F * abs(eta_v) / (molar_volume_cm3_mol * 1e-6) * 1e-6


def extrusion_pressure_mpa(depth_um: float, current_a_cm2: float, opening_um: float, sigma_ref_mpa: float,
                           strain_rate_ref_s: float, stress_exponent: float, molar_volume_cm3_mol: float) -> float:
    """p_flow (MPa): the pressure at which Na plated into a flaw of depth c at j (A/cm²) flows out of
    its opening δ_c by creep as fast as it arrives (module docstring)."""
    aspect = 2.0 * depth_um / opening_um
    v_m_s = abs(current_a_cm2) * 1e4 * molar_volume_cm3_mol * 1e-6 / units.F * (1.0 + aspect)
    strain_rate = 2.0 * v_m_s / (opening_um * 1e-6)
    return aspect * sigma_ref_mpa / math.sqrt(3.0) * (strain_rate / strain_rate_ref_s) ** (1.0 / stress_exponent)


def stress_intensity_mpa_m05(pressure_mpa: float, depth_um: float) -> float:
    """K = 1.12 p √(π c) (MPa√m) of an edge crack of depth c under internal pressure p."""
    return 1.12 * pressure_mpa * math.sqrt(math.pi * depth_um * 1e-6)


def fill_time_s(depth_um: float, voxel_um: float, voxel_charge_c: float, current_a_cm2: float) -> float:
    """(c/a) q_v / (j_p a²): the time a flaw of depth c takes to fill at the pixel current j_p."""
    return (depth_um / voxel_um) * voxel_charge_c / (current_a_cm2 * (voxel_um * 1e-4) ** 2)


def slot_opening_per_sqrt_um(k_ic_mpa_m05: float, youngs_modulus_gpa: float) -> float:
    """k = 8 K_IC/(E √(2π)) (√µm): the slot law's opening δ_c = k √c (c, δ_c in µm)."""
    return 8.0 * k_ic_mpa_m05 / youngs_modulus_gpa / math.sqrt(2.0 * math.pi)


def slot_opening_um(depth_um, k_ic_mpa_m05: float, youngs_modulus_gpa: float):
    """δ_c = (8 K_IC/E) √(c/2π) (µm): the opening of an edge crack of depth c at the toughness."""
    return slot_opening_per_sqrt_um(k_ic_mpa_m05, youngs_modulus_gpa) * np.sqrt(depth_um)


def slot_fill_charge_c_cm2(depth_um, opening_um, molar_volume_cm3_mol: float):
    """Q(c) = (δ_c F/(2 V_m)) ln(1 + 2c/δ_c) (C/cm²): the cathodic charge density at its mouth that fills a
    slot of depth c and opening δ_c (module docstring)."""
    opening = np.asarray(opening_um, dtype=float)
    return opening * 1e-4 * units.F / (2.0 * molar_volume_cm3_mol) * np.log1p(2.0 * np.asarray(depth_um) / opening)


def slot_fill_time_s(depth_um: float, k_ic_mpa_m05: float, youngs_modulus_gpa: float, current_a_cm2: float,
                     molar_volume_cm3_mol: float) -> float:
    """t_fill = Q(c)/j (s): the time a slot of depth c, opening δ_c(c), takes to fill at a constant j."""
    delta = slot_opening_um(depth_um, k_ic_mpa_m05, youngs_modulus_gpa)
    return float(slot_fill_charge_c_cm2(depth_um, delta, molar_volume_cm3_mol)) / current_a_cm2


def slot_full_depth_um(charge_c_cm2, opening_per_sqrt_um: float, molar_volume_cm3_mol: float) -> np.ndarray:
    """d = Q⁻¹(Q_i) (µm): the depth of the deepest slot full after Q_i (C/cm²) at its mouth.

    With y = 2√c/k, Q(c) = (k² F 10⁻⁴/(4 V_m)) y ln(1 + y): y ln(1 + y) = z is solved by Newton's method
    from y = z + √z, above the root (the left side is convex and increasing), so it converges from above."""
    k = opening_per_sqrt_um
    z = 4.0 * molar_volume_cm3_mol * np.asarray(charge_c_cm2, dtype=float) / (k * k * 1e-4 * units.F)
    y = z + np.sqrt(z)
    for _ in range(100):
        f = y * np.log1p(y) - z
        step = f / np.maximum(np.log1p(y) + y / (1.0 + y), 1e-300)
        y_new = np.maximum(y - step, 0.0)
        if np.all(np.abs(y_new - y) <= 1e-15 * np.maximum(y, 1e-300)):
            y = y_new
            break
        y = y_new
    return (0.5 * k * y) ** 2



# -- a flaw's trace on the surface (model.flaw_mouth = "trace") ------------------------------------
#
# The slot law idealises a flaw as an edge crack whose mouth is long compared with its depth, and puts
# every flaw of a pixel under that pixel's metal. A real surface flaw of depth c is closer to a half-penny
# crack: its trace on the surface is about 2c long, so a flaw deeper than the metal patch around its pixel
# reaches past the patch's edge. There its slot opens into the gap beside the patch: the Na plated on its
# walls leaves by the nearer opening — sideways along the slot, over less than c to the open end at the
# gap's stress, not out through the full depth c against σ_mouth — so the pressure stays far below the
# extrusion pressure of a closed slot and the flaw does not crack. The choice made here: a flaw of depth c
# holds pressure while the pixels that plate cover the disc of radius c around its pixel (every
# orientation of its trace), and a deeper one vents and is not counted. A patch that covers everything
# (a Na electrode in full contact, T5) vents nothing. A probe of issue 16, chosen after T1 and T2 were
# seen to short alike under PHYSICS v4 as written (docs/model.md, "What the v4 laws predict for foils
# on NASICON"); not the default.

def covered_radius_um(plating: np.ndarray, voxel_um: float) -> np.ndarray:
    """ρ (µm) per pixel of the periodic ``(ny, nx)`` mask ``plating``: the radius of the largest disc about
    the pixel's centre inside the plating pixels, (d − ½)·a with d the Euclidean distance (in pixels) to the
    centre of the nearest pixel that does not plate — so a plating pixel beside one that does not has ρ = a/2,
    its own half-width. 0 on a pixel that does not plate; inf everywhere if every pixel plates. Periodic:
    the distance transform of the mask tiled 3 × 3 (a disc wider than the domain is not needed: ρ only
    has to be compared with flaw depths below the domain's size, and beyond half of it the disc meets its
    own images)."""
    from scipy.ndimage import distance_transform_edt

    mask = np.asarray(plating, dtype=bool)
    if mask.all():
        return np.full(mask.shape, np.inf)
    ny, nx = mask.shape
    d = distance_transform_edt(np.tile(mask, (3, 3)))[ny:2 * ny, nx:2 * nx]
    return np.where(mask, (d - 0.5) * voxel_um, 0.0)


def deepest_sealed_bin(grid: "DepthGrid", radius_um: np.ndarray) -> np.ndarray:
    """Per pixel, the last depth bin whose centre is at most the covered radius ρ (−1 if none): the
    deepest flaws that hold pressure under ``model.flaw_mouth = "trace"`` (``covered_radius_um``)."""
    return np.searchsorted(grid.centres_um, np.asarray(radius_um, dtype=float), side="right").astype(np.int64) - 1

# -- the cell's flaw population (weakest link) ------------------------------------------------------
#
# The simulated domain is a patch of the cell: a few tens of µm across, it holds n_flaw·A_patch ≈ 1–10
# flaws where a 1 cm² cell holds ~1e5, and the cell shorts at the first of them to crack. Sampling a
# patch's own few flaws would make the short a property of the domain size (a replica would be a tiny
# cell). Instead every pixel of the patch stands for the cell's flaws that sit under the same local
# history (Na at the mouth, plating current j_p(t), overpotential η(t)): the cell's flaws are a Poisson
# population of density n_flaw over A_cell, independent of one another, with depths from the Weibull law,
# and their local histories are distributed as the patch's pixels' are (the domain is larger than the
# contact spacing). A flaw of depth c under pixel i has cracked by t if, at some t' ≤ t, it was full
# (c ≤ d_i(t'), the depth Na has reached in the pixel's flaws) and 1.12 p √(πc) ≥ K_IC at the pixel's η
# and j_p. The number of cracked flaws in the cell by t is then Poisson with mean
#
#     Λ(t) = n_flaw A_cell ⟨P_i(t)⟩_i,    P_i(t) = Prob_c[ c in ∪_{t' ≤ t} [c*_i(t'), d_i(t')] ],
#
# c*_i the shallowest flaw that cracks at the pixel's state (K grows with c on both branches of the
# pressure). The cell shorts at the first crack: its survival is exp(−Λ(t)), sampled exactly by drawing
# E ~ Exp(1) at the start and shorting when Λ reaches E. The union over time is kept per pixel on a
# logarithmic grid of depths anchored at c0 (bins of 5 %), each bin carrying its probability under the
# depth law (Weibull: ``DepthGrid``; the slot law's Pareto tail: ``ParetoDepthGrid``). Under the slot law
# d_i(t) = Q⁻¹(Q_i(t)) from the charge at the mouth, and a bin is full once Q_i reaches its threshold Q(c_b).
# The Na the population holds is its expectation, n_flaw a² ∫₀^{d_i} (1 − F(c)) dc per pixel: each flaw
# is booked as a column of the pixel's cross-section a² filled to min(c, d_i) (v3's volume, kept under the
# slot law with its full depth d_i; not the slot's own δ_c·c per unit length of its mouth).

DEPTH_BINS_PER_DECADE = 48  #: depth grid resolution: bins of 10^(1/48) ≈ 4.9 % in c (2.4 % in K)
DEPTH_GRID_MIN_UM = 1e-3  #: shallower flaws never crack: K_IC needs p > 1 GPa·√(1 nm/c) even for NBH
DEPTH_GRID_DECADES = 7  #: up to 1 cm: deeper than any electrolyte (the tail beyond goes to the last bin)


class DepthGrid:
    """Logarithmic grid of flaw depths (µm) with each bin's Weibull probability.

    Centres c_b = c0 · r^(b − b0), r = 10^(1/48), spanning 1 nm to 1 cm whatever the law (so a state's
    arrays keep their shape when c0 or m is swept), with c0 a centre (a narrow law puts its mass in one
    bin). The probability beyond the last bin goes to it.
    """

    def __init__(self, scale_um: float, shape: float):
        self.scale_um, self.shape = float(scale_um), float(shape)
        self.log_ratio = math.log(10.0) / DEPTH_BINS_PER_DECADE
        n = DEPTH_GRID_DECADES * DEPTH_BINS_PER_DECADE + 1
        anchor = min(n - 1, max(0, math.ceil(math.log(scale_um / DEPTH_GRID_MIN_UM) / self.log_ratio - 1e-9)))
        self.first_um = scale_um * math.exp(-anchor * self.log_ratio)
        self.centres_um = self.first_um * np.exp(np.arange(n) * self.log_ratio)
        edges = np.concatenate(([0.0], self.centres_um * math.exp(0.5 * self.log_ratio)))
        edges[-1] = np.inf
        with np.errstate(over="ignore"):  # far past the scale: F = 1
            self.weights = np.diff(-np.exp(-(edges / scale_um) ** shape))  # F(e_{b+1}) − F(e_b)

    @property
    def n_bins(self) -> int:
        return self.centres_um.size

    def mean_fill_um(self, depth_um: np.ndarray) -> np.ndarray:
        """∫₀^d (1 − F(c)) dc (µm): the mean Na depth in one flaw when Na has reached d in the pixel's flaws
        (a flaw shallower than d is full)."""
        from scipy.special import gamma, gammainc

        d = np.asarray(depth_um, dtype=float)
        if self.shape == 1.0:
            # m = 1, an exponential tail (every shipped electrolyte's): ∫₀^d e^(−c/c0) dc = c0 (1 − e^(−d/c0)).
            # gammainc(1, ·) gives the same to a few ULP by a series or a continued fraction per pixel: 16 ms
            # against 4 ms at 512² columns, once a sample and once a solve.
            return -self.scale_um * np.expm1(-d / self.scale_um)
        a = 1.0 / self.shape
        with np.errstate(over="ignore", under="ignore"):  # far past the scale: x = inf, P(a, inf) = 1
            x = (d / self.scale_um) ** self.shape
            full = self.scale_um * a * gamma(a) * gammainc(a, x)
        # Far below the scale of a narrow law x underflows: there 1 − F ≈ 1 − c^m/c0^m, so ∫ ≈ d (1 − x/(m+1)).
        return np.where(x < 1e-12, d * (1.0 - x / (self.shape + 1.0)), full)


class ParetoDepthGrid(DepthGrid):
    """The depth grid under the slot law: P(c > x) = (x/c0)^(−m_σ/2) for x > c0 and 1 below (every flaw
    at least c0 deep), the law that gives a Weibull specimen strength of modulus m_σ (module docstring).
    ``shape`` is m_σ. The same grid as ``DepthGrid``; bins whose upper edge is below c0 weigh 0, the bin
    centred at c0 takes 1 − r^(−m_σ/4), and the last bin takes the tail beyond it."""

    def __init__(self, scale_um: float, shape: float):
        super().__init__(scale_um, shape)
        self.tail_exponent = 0.5 * self.shape  #: m_σ/2
        edges = np.concatenate(([0.0], self.centres_um * math.exp(0.5 * self.log_ratio)))
        edges[-1] = np.inf
        self.weights = -np.diff(self.survival(edges))

    def survival(self, depth_um) -> np.ndarray:
        """P(c > x) = min(1, (x/c0)^(−m_σ/2))."""
        x = np.asarray(depth_um, dtype=float) / self.scale_um
        with np.errstate(divide="ignore", under="ignore"):
            return np.where(x <= 1.0, 1.0, np.power(np.maximum(x, 1.0), -self.tail_exponent))

    def mean_fill_um(self, depth_um: np.ndarray) -> np.ndarray:
        """∫₀^d P(c > x) dx (µm): d up to c0, then c0 (1 + ((d/c0)^(1−s) − 1)/(1 − s)), s = m_σ/2
        (c0 (1 + ln(d/c0)) at s = 1)."""
        d = np.asarray(depth_um, dtype=float)
        c0, s = self.scale_um, self.tail_exponent
        log_u = np.log(np.maximum(d, c0) / c0)
        tail = log_u if s == 1.0 else np.expm1((1.0 - s) * log_u) / (1.0 - s)
        return np.where(d <= c0, d, c0 * (1.0 + tail))

    def depth_of_mean_fill_um(self, fill_um) -> np.ndarray:
        """The inverse of ``mean_fill_um``: the full depth d (µm) at which one flaw holds ``fill_um`` (µm)
        on average — d = m up to c0, then c0 (1 + (1 − s)(m/c0 − 1))^(1/(1 − s)) (c0 e^(m/c0 − 1) at s = 1).
        Below its bound c0 s/(s − 1) (s > 1), which no fill reaches, m grows with d, so the inverse is one."""
        m = np.asarray(fill_um, dtype=float)
        c0, s = self.scale_um, self.tail_exponent
        excess = np.maximum(m, c0) / c0 - 1.0
        log_u = excess if s == 1.0 else np.log1p((1.0 - s) * excess) / (1.0 - s)
        return np.where(m <= c0, np.maximum(m, 0.0), c0 * np.exp(log_u))


def crack_criterion_tables(grid: DepthGrid, k_ic_mpa_m05: float, opening_um, sigma_ref_mpa: float,
                           strain_rate_ref_s: float, stress_exponent: float, molar_volume_cm3_mol: float):
    """Per-bin factors for the kernel's crack test at bin b: min(p_η, p_flow) · g_b ≥ K_IC with
    g_b = 1.12 √(π c_b) and p_flow = f_b · j^(1/n) (j in A/cm²); returns (K_IC/g_b, f_b), so a bin cracks when
    min(p_per_volt |η|, f_b j^(1/n)) ≥ K_IC/g_b. ``opening_um``: δ_c (µm), one number (the v3 law) or one per
    bin (the slot law's δ_c(c_b))."""
    c = grid.centres_um
    need_mpa = k_ic_mpa_m05 / (1.12 * np.sqrt(np.pi * c * 1e-6))
    opening = np.broadcast_to(np.asarray(opening_um, dtype=float), c.shape)
    flow = np.array([extrusion_pressure_mpa(ci, 1.0, float(di), sigma_ref_mpa, strain_rate_ref_s, stress_exponent,
                                            molar_volume_cm3_mol) for ci, di in zip(c, opening)])  # at j = 1 A/cm²
    return need_mpa, flow
