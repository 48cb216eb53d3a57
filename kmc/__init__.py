"""kmc: kinetic Monte Carlo of anode-free sodium solid-state batteries.

The public API is re-exported here; see the README for the layout.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kmc-anodefree")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"

from kmc.errors import KmcError, ScenarioError
from kmc.state import State

__all__ = ["KmcError", "ScenarioError", "State", "__version__"]
