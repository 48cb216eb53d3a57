"""Scenario files shipped with the package (installed as ``kmc.scenarios``); read with importlib.resources."""
