"""The lateral front of Au alloying (PHYSICS §5 E3, ``model.alloy = "phases"``), advanced once per solve.

Au that Na has alloyed (Na2Au: ``faradaic.CC_AU_ALLOYED``) alloys the Au of its four neighbouring
columns chemically, the front moving along the film at a constant speed v (``au.alloy_spread_rate_um_s``):
a neighbour alloys once the front has crossed it, a/v after the column feeding it (a the voxel). So the
front is deterministic, and its arrival time at a column is the least, over chains of neighbouring Au
columns from one alloyed by an event, of that column's alloying time plus a/v per step (a shortest path
in steps, i.e. the Manhattan distance: a diagonal neighbour is two steps away, the cost of a lattice
front). The arrival times are exact whatever the solve interval; a column alloys at the first solve
after its arrival time. A column alloyed by an event (electrochemically, or chemically where Na metal
touches it) is timed at the first solve that sees it: the solves are seconds to minutes apart, a/v
hours (35 700 s at 1.4e-5 µm/s and a = 0.5 µm). A column whose alloy gave Na back (de-alloying) stops
feeding the front until it is Na2Au again.
"""
import numpy as np
from numba import njit

from kmc.kernels.faradaic import ALLOY_STEPS, CC_AU_ALLOYED, alloy_steps, alloyable


@njit(cache=True)
def advance_alloy_front(col_state, au_column, alloy_time_s, nx, ny, t_now_s, step_s, spread_cols):
    """Advance the front to ``t_now_s`` (s): every Au column it has crossed becomes Na2Au, timed at its
    arrival. ``alloy_time_s`` (s per column; NaN where not Na2Au) is updated; ``step_s`` = a/v (inf:
    no spreading). Writes the columns alloyed here to ``spread_cols`` and returns (their number, the
    alloying steps they took: each c_au/ALLOY_STEPS Na voxels, owed by the metal that feeds the front)."""
    n = nx * ny
    for col in range(n):
        if col_state[col] == CC_AU_ALLOYED:
            if alloy_time_s[col] != alloy_time_s[col]:
                alloy_time_s[col] = t_now_s  # alloyed by an event since the last pass
        else:
            alloy_time_s[col] = np.nan
    if not step_s < np.inf:
        return 0, 0
    reached = np.zeros(n, dtype=np.uint8)
    changed = True
    while changed:  # relax until no arrival time moves (Bellman–Ford over the Au columns)
        changed = False
        for col in range(n):
            if au_column[col] == 0 or not (alloyable(col_state[col]) or reached[col]):
                continue
            x = col % nx
            y = col // nx
            best = np.inf
            for k in range(4):
                if k == 0:
                    nb = y * nx + (x + 1) % nx
                elif k == 1:
                    nb = y * nx + (x - 1) % nx
                elif k == 2:
                    nb = ((y + 1) % ny) * nx + x
                else:
                    nb = ((y - 1) % ny) * nx + x
                t = alloy_time_s[nb]
                if t == t and t + step_s < best:
                    best = t + step_s
            if best <= t_now_s and (not reached[col] or best < alloy_time_s[col]):
                alloy_time_s[col] = best
                reached[col] = 1
                changed = True
    n_new = 0
    steps = 0
    for col in range(n):
        if reached[col]:
            steps += ALLOY_STEPS - alloy_steps(col_state[col])
            col_state[col] = CC_AU_ALLOYED
            spread_cols[n_new] = col
            n_new += 1
    return n_new, steps
