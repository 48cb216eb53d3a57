"""xarray-level analysis of trajectory stores (installed as ``kmc.analysis``)."""
