"""Measures of one lattice snapshot: a (z, y, x) array of voxel states (SCHEMA.md ``lattice``).

The Na thickness as PHYSICS.md §7 defines it: the height of the Na above the electrolyte surface,
not a voxel count. Per column it is the top of the highest Na voxel minus the top of the highest
electrolyte (SE or SEI) voxel, so voids and pores inside the Na raise it, where a count of Na voxels
(the ``thickness_map``) would not see them.
"""
from __future__ import annotations

import math

import numpy as np

from kmc.kernels.cell import NA, SE, SEI


def _top(mask: np.ndarray) -> np.ndarray:
    """Per column, z + 1 of the highest voxel in ``mask`` (0 where there is none)."""
    nz = mask.shape[0]
    return np.where(mask.any(axis=0), nz - np.argmax(mask[::-1], axis=0), 0)


def na_height_um(lattice, voxel_um: float) -> np.ndarray:
    """Height (µm) of the Na top above the electrolyte surface per column, (y, x); NaN where a column
    holds no Na."""
    lat = np.asarray(lattice)
    na = lat == NA
    height = (_top(na) - _top((lat == SE) | (lat == SEI))) * float(voxel_um)
    return np.where(na.any(axis=0), height, np.nan)


def mean_na_height_um(lattice, voxel_um: float) -> float:
    """Mean of ``na_height_um`` over the columns that hold Na (µm); NaN if none does."""
    height = na_height_um(lattice, voxel_um)
    return float(np.nanmean(height)) if np.isfinite(height).any() else math.nan
