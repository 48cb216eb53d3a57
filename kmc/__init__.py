"""kmc: kinetic Monte Carlo of anode-free sodium solid-state batteries.

The public API is re-exported here; see the README for the layout.
"""
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path as _Path

# In a source checkout kernels/, analysis/ and scenarios/ sit beside kmc/ and the install maps them to
# kmc.kernels, kmc.analysis, kmc.scenarios. When this kmc/ is imported from the checkout itself (Python
# started in the repository root, which puts it first on sys.path), the same mapping comes from adding
# the checkout root to the package path. An installed kmc has kmc/kernels/ and never takes this branch.
_checkout = _Path(__file__).resolve().parent.parent
if not (_Path(__file__).parent / "kernels").is_dir() and (_checkout / "pyproject.toml").is_file() \
        and (_checkout / "kernels" / "__init__.py").is_file():
    __path__.append(str(_checkout))

try:
    __version__ = version("kmc-anodefree")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"

from kmc.analysis import accessor as _accessor  # noqa: F401 - registers ds.kmc (SCHEMA.md); no matplotlib
from kmc.api import open, run, simulate  # noqa: A004 - kmc.open is SCHEMA.md's name
from kmc.api import sweep as _sweep
from kmc.config import Scenario, load_scenario, seed_for_replica
from kmc.errors import KmcError, ScenarioError
from kmc.state import State
from kmc.sweep import load_sweep

# Importing the submodule kmc.sweep (above) binds the attribute kmc.sweep to the module, hiding the
# function of the same name; SCHEMA.md's kmc.sweep is the function, so it is bound again last.
sweep = _sweep

__all__ = ["KmcError", "Scenario", "ScenarioError", "State", "__version__", "load_scenario", "load_sweep",
           "open", "run", "seed_for_replica", "simulate", "sweep"]
