"""Voxel state codes of the battery cell (PHYSICS.md §2) and small kernels over them.

z points from the solid electrolyte (SE, bottom) up to the current collector (CC, top); x and y
are periodic, z is walled.
"""
import numpy as np
from numba import njit

GAP = 0  #: empty: initial gap between CC and SE, a void, a pore of the CC
SE = 1  #: solid electrolyte (only as deep as its topography; the bulk enters the field solve)
NA = 2  #: sodium metal
CC = 3  #: current collector (a rigid body)
SEI = 4  #: solid-electrolyte interphase (an electrolyte with a lower exchange current)

#: Legend written to the store's ``lattice`` variable (CF flag attributes).
FLAG_VALUES = [GAP, SE, NA, CC, SEI]
FLAG_MEANINGS = "gap electrolyte sodium collector interphase"


@njit(cache=True)
def column_profile(lattice, nx, ny, nz, state, from_top, out):
    """Per column, the z of the first voxel of ``state`` scanning up (or down if ``from_top``); -1 if none."""
    nxy = nx * ny
    for c in range(nxy):
        out[c] = -1
        if from_top:
            for z in range(nz - 1, -1, -1):
                if lattice[c + z * nxy] == state:
                    out[c] = z
                    break
        else:
            for z in range(nz):
                if lattice[c + z * nxy] == state:
                    out[c] = z
                    break


def count_states(lattice: np.ndarray) -> np.ndarray:
    """Number of voxels of each state code 0…4 (a recount, independent of any counter)."""
    return np.bincount(lattice.ravel(), minlength=5)[:5]


#: Every byte of a 64-bit word set to 0x01, and to 0x80: the bytes of a word tested at once (``zero_bytes``).
BYTE_ONES = np.uint64(0x0101010101010101)
_HIGHS = np.uint64(0x8080808080808080)


@njit(cache=True, inline="always")
def zero_bytes(x):
    """Nonzero iff some byte of the 64-bit word x is zero: (x − 0x01…01) & ~x & 0x80…80, exact (no byte is
    flagged that is not zero). On x = word ^ (b · 0x01…01): whether some byte of word is b."""
    return (x - BYTE_ONES) & ~x & _HIGHS


@njit(cache=True)
def holds_state(lattice, words, i, end, state):
    """Whether the sites i..end−1 hold a voxel of ``state``, read eight voxels at a time (``words``:
    ``lattice_words``) with the zero-byte test, 32 words between tests; the reading stops at the first
    one seen."""
    pattern = np.uint64(state) * BYTE_ONES
    while i < end and (i % 8 != 0 or words.size == 0):  # up to a word's start
        if lattice[i] == state:
            return True
        i += 1
    while i + 8 <= end:  # whole words
        k0 = i // 8
        k1 = min(k0 + 32, end // 8)
        bits = np.uint64(0)
        for k in range(k0, k1):
            bits |= zero_bytes(words[k] ^ pattern)
        if bits != 0:
            return True
        i = 8 * k1
    while i < end:  # the last bytes
        if lattice[i] == state:
            return True
        i += 1
    return False


@njit(cache=True, inline="always")
def lattice_words(lattice):
    """The lattice as 64-bit words for ``holds_state`` and ``interface.layer_holds`` (empty when its size is
    not a multiple of 8: then every voxel is read on its own)."""
    return lattice.view(np.uint64) if lattice.size % 8 == 0 else lattice[:0].view(np.uint64)
