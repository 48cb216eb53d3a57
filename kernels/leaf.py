"""How the kernels' small per-site functions are compiled: without reference counting.

Numba's runtime (NRT) counts references to every array: a compiled function takes a reference on
each array argument at entry and drops it at exit, each an atomic operation. The battery loop calls
a handful of small functions per site of an event's stencil (a face's kinetics, a voxel's moves, its
neighbours), each with some ten array arguments, and there the counting cost as much as the work:
about half of an event's time before the interface seals (T2 at 256²). A function that allocates
nothing and returns no array needs no counting, and ``leaf`` compiles it without it (Numba's
``_nrt=False`` target option). Its callers keep theirs: it only stops taking references it never
needed. A ``leaf`` function that allocated would fail to compile, loudly, not run wrong.
"""
from numba import njit

#: Decorator of a kernel that allocates nothing and returns scalars (or nothing): compiled without NRT.
leaf = njit(cache=True, _nrt=False)
