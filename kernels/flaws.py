"""The cell's flaw population on the patch's pixels (PHYSICS.md E8; the model in ``kmc.flaws``).

Per pixel i: ``fill[i]``, the pixel's fill clock — under the v3 law the depth d_i (µm) Na has reached in
the pixel's flaws (a flaw shallower than d_i is full); under the slot law the cathodic charge density
Q_i (C/cm²) passed at the flaws' mouths, a bin b being full once Q_i ≥ ``fill_thresholds[b]`` = Q(c_b)
(increasing in b: ``kmc.flaws``); ``cracked[i·n_bins + b]``, 1 once flaws of the depth bin b under the pixel have met
Griffith–Inglis while full; ``block_lo[i]..block_hi[i]``, the highest run of cracked bins (every bin
in it cracked, none above it), so an update touches only bins it may change. Under the v3 law d_i only
grows, so the run always ends at the deepest full bin; under the slot law flaw Na strips first
(``kmc.battery.losses``), d_i falls on a strip, and a later plating may crack bins below the run.

A bin b cracks at the pixel's state when ``min(p_per_volt |η|, flow_mpa[b] j^(1/n)) ≥ need_mpa[b]``
(``kmc.flaws.crack_criterion_tables``): the left side grows with c and the right side falls, so the
cracking depths at one state are the bins from a critical bin c* up, and those full are [c*, d_i].
"""
import math

from numba import njit


@njit(cache=True)
def critical_bin(eta_abs_v, j_a_cm2, p_per_volt, need_mpa, flow_mpa, inv_n, base_eta_mpa, base_flow_mpa):
    """The shallowest bin whose flaws crack at |η| and j (a monotone predicate: bisection); n_bins if none.
    ``base_eta_mpa`` and ``base_flow_mpa`` are added to the overpotential's and the flow's pressures
    (0 under the v3 law; P and the mouth's σ under the deposit stress: PHYSICS E8 v4)."""
    p_eta = base_eta_mpa + p_per_volt * eta_abs_v
    flow_j = j_a_cm2 ** inv_n
    lo, hi = 0, need_mpa.size
    while lo < hi:
        mid = (lo + hi) // 2
        if min(p_eta, base_flow_mpa + flow_mpa[mid] * flow_j) >= need_mpa[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit(cache=True)
def deepest_full_bin(depth_um, first_um, log_ratio, n_bins):
    """The last bin whose centre is at most ``depth_um`` (−1 if none): its flaws are full."""
    if depth_um <= 0.0 or depth_um < first_um * (1.0 - 1e-12):
        return -1
    b = int(math.floor(math.log(depth_um / first_um) / log_ratio + 1e-9))
    return min(b, n_bins - 1)


@njit(cache=True)
def deepest_full_bin_by_threshold(fill, thresholds):
    """The last bin whose threshold is at most ``fill`` (−1 if none): bisection on the increasing
    ``thresholds`` (the slot law's Q(c_b))."""
    lo, hi = 0, thresholds.size
    while lo < hi:  # the first bin whose threshold exceeds fill
        mid = (lo + hi) // 2
        if thresholds[mid] <= fill:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


@njit(cache=True)
def crack_population(pixels, rate, dt, eta_abs_v, j_a_cm2, p_per_volt, need_mpa, flow_mpa, inv_n, weights,
                     first_um, log_ratio, fill, cracked, block_lo, block_hi, commit, base_eta_mpa, mouth_mpa,
                     fill_thresholds, sealed_bin, cracking, n_known):
    """Advance the plating ``pixels`` by ``dt`` at frozen fields: pixel k's fill clock grows by
    ``rate[k]·dt`` (µm/s of depth under the v3 law, with ``fill_thresholds`` empty; A/cm² of charge
    under the slot law, with its thresholds), and every full bin from the critical one cracks. Returns
    the summed probability of the bins newly cracked (the rise of Σ_i P_i) and how many pixels crack
    (their positions k, in order, in ``cracking``, when it has room for them). With ``commit`` False
    nothing is written: the rise the same advance would give. ``sealed_bin[k]``: the deepest bin of pixel k
    whose flaws can hold pressure (``n_bins − 1`` for all of them; ``kmc.flaws.deepest_sealed_bin`` under
    ``model.flaw_mouth = "trace"``): deeper flaws fill but vent, and do not crack.

    ``n_known ≥ 0``: the cracking pixels are known, ``cracking[:n_known]``, from a call at the same
    ``dt`` and state with ``commit`` False (a batch's outlook, ``Losses.short_time_s``, then its
    booking): every clock is advanced, and only those pixels are looked at for cracks (a bisection
    and a power per pixel otherwise, for the same answer: the others crack nothing). ``n_known < 0``:
    every pixel is looked at."""
    n_bins = weights.size
    n_cracking = 0
    known = 0  # the next of the known cracking pixels
    by_threshold = fill_thresholds.size > 0
    # Where the need falls with depth (K_IC/(1.12 √(π c)) does), a pixel whose overpotential's pressure
    # is below the need of its deepest full bin cracks none of its full bins: every shallower bin needs
    # more, and min(p_η, p_flow) ≤ p_η. Its critical bin (a bisection and a power per pixel, the larger
    # part of this pass while nothing cracks) is then not wanted: the test below is the same decision.
    need_falls = True
    for b in range(1, n_bins):
        need_falls &= need_mpa[b] <= need_mpa[b - 1]
    added = 0.0
    for k in range(pixels.size):
        i = pixels[k]
        d = fill[i] + rate[k] * dt
        if commit:
            fill[i] = d
        if n_known >= 0:
            if known >= n_known or cracking[known] != k:
                continue
            known += 1
        if by_threshold:
            top = deepest_full_bin_by_threshold(d, fill_thresholds)
        else:
            top = deepest_full_bin(d, first_um, log_ratio, n_bins)
        top = min(top, sealed_bin[k])
        if top < 0:
            continue
        if need_falls and base_eta_mpa + p_per_volt * eta_abs_v[k] < need_mpa[top]:
            continue  # critical_bin would give a bin deeper than top (its bisection lands only where it cracks)
        cb = critical_bin(eta_abs_v[k], j_a_cm2[k], p_per_volt, need_mpa, flow_mpa, inv_n, base_eta_mpa, mouth_mpa[k])
        if cb > top:
            continue
        if n_known < 0 and n_cracking < cracking.size:
            cracking[n_cracking] = k
        n_cracking += 1
        base = i * n_bins
        lo, hi = block_lo[i], block_hi[i]
        if cb > hi + 1:  # apart from every bin cracked so far (or the first): a new run [c*, top]
            for b in range(cb, top + 1):
                added += weights[b]
                if commit:
                    cracked[base + b] = 1
            if commit:
                block_lo[i], block_hi[i] = cb, top
            continue
        for b in range(hi + 1, top + 1):  # deeper than any cracked before
            added += weights[b]
            if commit:
                cracked[base + b] = 1
        # Below the run: older runs may hold some of them. Only up to the full bins: after a strip
        # (slot law) top may lie below the run.
        for b in range(cb, min(lo, hi + 1, top + 1)):
            if cracked[base + b] == 0:
                added += weights[b]
                if commit:
                    cracked[base + b] = 1
        if commit and top + 1 >= lo:  # [c*, top] joins the run; a run below it leaves the highest as it is
            block_lo[i], block_hi[i] = min(lo, cb), max(hi, top)
    return added, n_cracking
