"""What a battery run holds in memory at each phase, from the scenario's sizes alone (``kmc.memory``).

n sites (nx·ny·nz voxels), c columns (nx·ny pixels). The State is the spec of ``kmc.battery.state``
(~40 bytes per site: the uint8 lattice, int8 cluster classes, the uint8 contact state of each Na voxel
and four float64 sum trees, 8/7 of a word per site each; ~450 bytes per column). Beside it, each phase holds (bytes, from the code named):

- geometry (``kmc.geometry.build``): the uint8 lattice, up to three boolean masks while it is filled
  (one without initial Na), and the surface synthesis per column; a porous pellet's pores are a
  smoothed 3-D random field (float64 field, three frequency grids, the squared-frequency sum, two
  complex spectra): ~75 bytes per site, measured;
- new State (``kmc.battery.state.new_state``): the geometry's lattice and per-column arrays beside the
  State, and a boolean temporary;
- solve (``driver.Driver.solve``): the event loop's scratch (kept from the first batch on: an int64,
  two uint8 and a uint16 per site, a uint8 per tree node) and then the largest of: the cluster classification
  (per run of Na along x, at most half a run per site: its ends, its parent and its flags, 13 bytes), the
  bands (three boolean layers of the lattice), or the field solve (per contact face: the face table,
  ``field.Faces`` and the solver's copies; per pixel: the FFT planes, the Green's function and the
  Newton–CG vectors);
- observe (``observe.Observer.observe``): the scratch and the classification's temporaries, or the per-site
  parents of the count of unloaded Na (``observe.Observer.unloaded_na_voxels``), whichever is larger;
- from the first solve on, the last classification kept with the lattice it came from
  (``kmc.battery.classes``: a uint8 copy of the lattice and an int8 class per site, and two int64
  column-support arrays kept with them);
- losses (``losses.take_from_metal``): a uint8 layer of the lattice (the metal touching the
  electrolyte), a count per column, the columns' queue (the sort and a heap) and the payment's search
  of it (a stack, and each column's place in the sort), int64 each;
- checkpoint and snapshot writes (``kmc.store.RunWriter``): Zarr's copies of the largest array and of
  the lattice; a resume reads the checkpoint back array by array.

The number of contact faces is not known before the run: it is estimated from the electrolyte's
roughness (a contact face is an electrolyte face, and a height field's faces per column are its top
plus the steps to its neighbours): 1.86 per column for T2, 1.99 for D4, where runs reach at most 0.5
and 1.5. The constants below were measured with ``tracemalloc`` (NumPy's and Numba's allocations) on
T2 and D4 lattices; ``tests/test_memory.py`` checks the phases against it.
"""
from __future__ import annotations

import math

from kmc import memory
from kmc.state import spec_nbytes

#: The per-column arrays of ``geometry.build`` beside its lattice (continuous and voxel heights, the
#: contact order, the collector's shape and bottom, float64/int64): measured peak 88 bytes per column
#: (``geometry.rough_surface_um`` before it: 28).
GEOMETRY_BYTES_PER_COLUMN = 88
#: The Geometry's per-column arrays kept beside its lattice: heights, collector shape, Au (float64/int64).
GEOMETRY_KEPT_BYTES_PER_COLUMN = 24
#: ``geometry._correlated_pores``: the float64 random field, three float64 frequency grids, their squared
#: sum, the filter and the complex spectra of a porous pellet: measured 72 bytes per site.
PORES_BYTES_PER_SITE = 72
#: Per contact face in a solve: the face table (4 int64 + kinds, j0, U, a boolean: 57 B), ``field.Faces``'
#: broadcast area and α (16 B), the solver's selection, ``np.unique`` and per-face copies, the Newton–CG
#: vectors over the contact pixels (at most one per face), the face currents: measured 230 B per face.
SOLVE_BYTES_PER_FACE = 240
#: Per pixel in a solve: the FFT planes of G_cc (buffer, half spectrum, inverse) and the current and
#: potential maps with their spectrum: measured 66 B per column.
SOLVE_BYTES_PER_COLUMN = 80


def faces_per_column(rq_um: float, xi_um: float, voxel_um: float) -> float:
    """Expected electrolyte faces per column of a Gaussian height field of rms ``rq_um`` and correlation
    length ``xi_um`` voxelized at ``voxel_um``: its top, plus, per neighbour pair, the step
    E|Δh| ≤ √(E Δh²) in voxels, with E Δh² = 2 Rq² (1 − e^(−a²/ξ²)) / a² + 1/6 (the rounding of
    both heights); each column has two neighbour pairs of its own."""
    var = 2.0 * rq_um**2 * -math.expm1(-(voxel_um / xi_um) ** 2) / voxel_um**2 if xi_um > 0 else 0.0
    return 1.0 + 2.0 * math.sqrt(var + 1.0 / 6.0)


def phases(scenario, p, spec, snapshots: bool, maps: bool) -> dict[str, dict[str, int]]:
    """Bytes held at the peak of each phase of a battery run beyond the baseline, by part."""
    n = p.nx * p.ny * p.nz
    c = p.n_cols
    tree_nodes = spec["tree"][0][0]
    state = spec_nbytes(spec)
    d, m = scenario.data, scenario.materials
    col = d["collector"]
    el = m[d["electrolyte"]["material"]]
    pellet = col["form"] == "pellet"
    rq = float(m[col["material"]]["pellet_roughness_um"]) if pellet else float(el["roughness_um"])
    faces = faces_per_column(rq, float(el["correlation_length_um"]), p.voxel_um) * c

    masks = 3 * n if float(col.get("initial_na_um", 0.0)) > 0 else n
    geometry = {"lattice": n, "geometry masks": masks, "per-column arrays": GEOMETRY_BYTES_PER_COLUMN * c}
    if pellet and float(col.get("porosity", 0.0)) > 0:
        geometry["pores"] = PORES_BYTES_PER_SITE * n + n  # the field, and the collector-body mask
    geometry_kept = n + GEOMETRY_KEPT_BYTES_PER_COLUMN * c

    # Driver._cell: int64, two uint8 and the uint16 distance labels per site, uint8 per tree node, and
    # uint8 per column (the columns that may hold a gap at the interface)
    scratch = 8 * n + 2 * n + 2 * n + tree_nodes + c
    green = 8 * p.ny * (p.nx // 2 + 1)  # field.Plane.green, computed at the first solve and kept
    # kernels.clusters.classify_na_runs: per run of Na along x two int32 ends, an int32 parent and a uint8,
    # at most ceil(nx/2) runs a row, and an int64 per row. The samples' count of unloaded Na (face_state)
    # labels site by site: int32 parents (classes.parent_dtype).
    classify = 13 * p.ny * p.nz * ((p.nx + 1) // 2) + 8 * p.ny * p.nz
    unloaded_labels = 4 * n
    bands = 3 * n
    field_solve = int(SOLVE_BYTES_PER_FACE * faces) + SOLVE_BYTES_PER_COLUMN * c
    # the kept classification and lattice copy, and what is kept with them (two column-support arrays)
    run = {"state": state, "event-loop scratch": scratch, "Green's function": green, "cluster classes": 2 * n + 16 * c}
    return {
        "building the geometry": geometry,
        "building the State": {"state": state, "geometry": geometry_kept, "temporaries": n},
        "a field solve": {**run, "solve temporaries": max(classify, bands, field_solve)},
        "observing a sample": {**run, "observables": max(classify, unloaded_labels) + 64 * c},
        "taking losses from the metal": {**run, "metal masks": n + 48 * c},
        "writing a checkpoint": {**run, "checkpoint write": memory.checkpoint_write_bytes(spec)},
        "writing a snapshot": {**run, "snapshot write": memory.zarr_write_bytes(n, 1) if snapshots else 0,
                               "map write": 40 * c if maps else 0},
        "reading a checkpoint": {"state": state, "checkpoint read": memory.checkpoint_read_bytes(spec)},
    }
