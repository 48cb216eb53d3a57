"""The battery kernels' arrays as one named tuple (``Cell``), and the slots of its small arrays.

The batch loop and every helper it calls take one ``Cell`` instead of some thirty positional arrays:
adding an array to the battery model is a field here and in ``kmc.battery.state``, not a change of
eight kernel signatures. Numba compiles a named tuple of arrays as a plain struct (its class is a
module global, so the on-disk cache keys on it like on any other argument type).

Slots of the small float arrays the kernels share with the driver (named views of them for Python
are in ``kmc.battery.state``; nothing else indexes them):

- ``counters`` (int64): events by kind, ``C_*``;
- ``tally`` (float64): the volumes the kernels keep between batches, ``T_*``;
- ``limits`` (float64): what the driver's last solve froze for the batch, ``L_*``;
- ``state_counts`` (float64): faces and load-bearing columns kept up to date by the kernels, ``N_*``.
"""
from collections import namedtuple

#: Every array (and the lattice size) the battery's batch loop works on.
Cell = namedtuple("Cell", [
    "lattice",       # uint8 voxel states, flat, x fastest (``kmc.kernels.cell``)
    "site_class",    # int8 per site: cluster class of a Na voxel (``kmc.kernels.clusters``), -1 elsewhere
    "na_contact",    # uint8 per site: contact state of a Na voxel's faces (``kmc.kernels.contact``)
    "col_state",     # uint8 per column: state of the collector's lower face (``faradaic.CC_*``)
    "col_support",   # int64 per column: load-bearing kind (``interface.COLUMN_*``)
    "cc_bottom",     # int64 per column: z of the collector's lowest voxel
    "au_column",     # uint8 per column: 1 where the collector carries Au
    "phi",           # float64 per column: electrolyte potential at the last solve (V)
    "params",        # float64: face kinetics (``faradaic.P_*``)
    "eps",           # float64: capillary pair energies by state (``capillary``)
    "move_params",   # float64: move rates (``moves.M_*``)
    "plate_tree",    # float64 sum trees over sites (``solver``): E1/E6 plating and stripping,
    "alloy_tree",    #   E3 electrochemical alloying,
    "nuc_tree",      #   E2 nucleation,
    "move_tree",     #   E4 moves
    "offsets",       # int64 level offsets of the trees
    "clock",         # float64[1]: simulated time (s)
    "counters",      # int64: events by kind (C_*)
    "tally",         # float64: T_*
    "limits",        # float64: L_*
    "state_counts",  # float64: N_*
    "queue",         # int64 per site: scratch of the insertion search (zero between calls)
    "visited",       # uint8 per site: scratch of the insertion search
    "seen",          # uint8 per site: scratch of the stencils
    "mark",          # uint8 per tree node: scratch of the tree updates
    "nbr",           # int64[6]: neighbour scratch
    "nbr2",          # int64[6]: second neighbour scratch
    "stencil",       # int64: stencil of one event (``capillary.STENCIL_SIZE``)
    "scratch",       # int64: tree-update scratch (max(STENCIL_SIZE, nz))
    "buf",           # int64[nz]: the sites of one column
    "keep",          # int64[4, max(STENCIL_SIZE, nz)]: the leaves a refresh changed, per tree (``battery_update``)
    "gap_dist",      # uint16 per site: the insertion search's distance labels (``gap_distance``; scratch)
    "gap_search",    # int64: their bookkeeping (``gap_distance.S_*``)
    "gap_cols",      # uint8 per column: 0 where no gap at the interface is (``plating.nearest_interface_gap``; scratch)
    "deposit_stress",  # float64 per column: σ of a deposit pixel at the last solve (MPa; ``deposit_stress``)
    "insertion_target",  # int64 per column: where a deposit pixel's plated volume goes (``deposit_stress``)
    "side_face_weight",  # float64 per column: area of a side face of the electrolyte's column / a² (``faradaic``)
    "nx", "ny", "nz",
])

# counters
C_EVENTS = 0
C_PLATE = 1
C_ALLOY = 2
C_NUCLEATE = 3
C_LIFTS = 4
C_CHEM_ALLOY = 5
C_MOVES = 6
C_SETTLES = 7
C_STRIP = 8
C_REFILL = 9  #: loaded flow (creep, diffusion) filling a gap from the layer's volume; refill law: a void refilled
C_LOWERS = 10  #: the collector lowered one voxel into the layer (a layer's volume had flowed into gaps)
#: Under the refill law: loaded flow (E4a creep) filling a gap outside deposits from the layer's
#: volume (C_REFILL then counts the refills of interface voids; under v3 it counts loaded flow)
C_LOADED_FLOW = 11
N_COUNTERS = 12

# tally
T_NA_DEBT = 0  #: Na (voxels) owed to chemical alloying, not yet removed from the lattice
T_PENDING = 1  #: Na (voxels) plated into a sealed interface, waiting to be laid down as a layer
T_SEALED = 2  #: 1 once a search found no gap reachable from a plating face (cleared at each solve)
T_UNDER_CC = 3  #: Na voxels right under the collector (recounted at each solve, kept up to date here)
T_NUC_DEBT = 4  #: nucleus voxels formed while the double layer took the current, not yet paid by it
T_DEALLOY = 5  #: de-alloying steps (``model.alloy = "phases"``: c_au/4 Na voxels each, recovered on stripping)
N_TALLY = 8

# limits: what the last solve froze. A re-solve is due when faces or supports changed by more than
# fraction × max(value at solve, floor), the floor being the number of columns: a change of 1 % of the
# contact, but never less than 1 % of the interface, so that a few faces flickering under capillary
# moves do not force solve after solve; or when the faces' capacity at the frozen V has drifted by
# more than ``numerics.capacity_drift_factor`` (a face kind changed: Au alloyed, a nucleus formed: V
# itself has to move).
L_FACES = 0  #: contact faces at the solve
L_SUPPORTS = 1  #: Na-support columns at the solve
L_FRACTION = 2  #: re-solve fraction (``numerics.resolve_area_fraction``)
L_STOP_ON_NUCLEUS = 3  #: 1: a nucleus ends the batch (the double layer takes the current, or a hold)
L_FLOOR = 4  #: floor of the re-solve test (the number of columns)
L_CAPACITY = 5  #: faradaic capacity S_p + S_a at the solve (A)
L_PORE_DEPTH = 6  #: collector pore layers Na may fill at the solve's stress (E9, ``kmc.pores``); nz without pores
L_LEAST_STRESS = 7  #: 1: E1 inside deposits by the per-solve stress map (``model.insertion = "least_stress"``)
L_DEPOSIT_COLS = 8  #: deposit pixels at the solve: the volume one collector lift takes (``deposit_stress``)
N_LIMITS = 9

# state_counts
N_FACES = 0  #: contact faces
N_NA_SUPPORTS = 1  #: Na-support columns
N_CC_CONTACTS = 2  #: collector-electrolyte contact columns
