"""Measures of one lattice snapshot: a (z, y, x) array of voxel states (SCHEMA.md ``lattice``).

The Na thickness as PHYSICS.md §7 defines it: the height of the Na above the electrolyte surface,
not a voxel count. Per column it is the top of the highest Na voxel minus the electrolyte's surface
(the store's continuous ``surface_height`` where there is one, else the top of the highest SE or SEI
voxel), so voids and pores inside the Na raise it, where a count of Na voxels
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


def na_height_um(lattice, voxel_um: float, surface_um=None) -> np.ndarray:
    """Height (µm) of the Na top above the electrolyte surface per column, (y, x); NaN where a column
    holds no Na. ``surface_um``: the electrolyte's continuous surface (the store's ``surface_height``,
    µm above the domain bottom), finer than the voxel; without it, the top of the highest SE or SEI
    voxel."""
    lat = np.asarray(lattice)
    na = lat == NA
    base = _top((lat == SE) | (lat == SEI)) * float(voxel_um) if surface_um is None else np.asarray(surface_um, float)
    height = _top(na) * float(voxel_um) - base
    return np.where(na.any(axis=0), height, np.nan)


def mean_na_height_um(lattice, voxel_um: float, surface_um=None) -> float:
    """Mean of ``na_height_um`` over the columns that hold Na (µm); NaN if none does."""
    height = na_height_um(lattice, voxel_um, surface_um)
    return float(np.nanmean(height)) if np.isfinite(height).any() else math.nan
