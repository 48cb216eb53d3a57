"""Numba kernels: plain functions over arrays, no Python objects, no I/O (installed as ``kmc.kernels``).

- ``lattice``: site indexing and neighbours on the flat voxel lattice.
- ``solver``: the rejection-free event selection (sum tree) and the KMC clock.
- ``hop``: the hop benchmark model and its batch loop.

Compiled kernels are cached on disk (``cache=True``) so that every new process (a Dask worker, an
array task, a resume) loads them instead of compiling. Numba invalidates a cached function only when
*its own* source file changes, not when a kernel it calls and inlines does: edit ``solver.py`` in an
editable install and ``hop.run_batch`` would go on running the old solver from the cache (with a
changed tree layout, out of bounds). So the cache directory is keyed by a digest of every kernel
source file: ``$NUMBA_CACHE_DIR/kmc-kernels-<digest>`` if the user set NUMBA_CACHE_DIR, else
``$XDG_CACHE_HOME/kmc/numba/kmc-kernels-<digest>`` (``~/.cache`` by default). This sets
``numba.config.CACHE_DIR`` for the process, so other Numba code imported later caches there too.
"""
import hashlib
import os
from pathlib import Path

from numba.core import config as _numba_config


def _kernel_source_digest() -> str:
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _cache_root() -> str:
    user_dir = os.environ.get("NUMBA_CACHE_DIR", "")
    if user_dir:
        return user_dir
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "kmc", "numba")


KERNEL_DIGEST = _kernel_source_digest()
CACHE_DIR = os.path.join(_cache_root(), f"kmc-kernels-{KERNEL_DIGEST}")
_numba_config.CACHE_DIR = CACHE_DIR
