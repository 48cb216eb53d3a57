"""The ``ds.kmc`` accessor on trajectory datasets (``kmc.open(store)``), registered on ``import kmc``.

Summaries and replica statistics for notebooks: ``ds.kmc.summary()``, ``ds.kmc.parameters``,
``ds.kmc.select(...)``, ``ds.kmc.stats(var)``, ``ds.kmc.survival()``, ``ds.kmc.figures(dir)``.
Runs that did not finish (status other than done) are left out by default (``only_done=False``
takes them in); NaN past a run's end is ignored. Every returned variable has ``units`` and
``long_name``. The work is in the modules named for it (runs, summary, stats, survival, figures);
matplotlib is imported only by ``figures``.
"""
from __future__ import annotations

from collections.abc import Mapping

import xarray as xr

from kmc.analysis import runs as _runs
from kmc.errors import KmcError


@xr.register_dataset_accessor("kmc")
class KmcAccessor:
    """``ds.kmc``: analysis of a kmc trajectory dataset (dims run, sample, frame, snap, cycle, y, x, z)."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    @property
    def parameters(self) -> list[str]:
        """Names of the swept parameters: the dataset's coordinates along ``run`` other than run,
        seed and replica (dotted scenario keys, e.g. ``conditions.stack_pressure_mpa``)."""
        return _runs.parameters(self._ds)

    def done(self) -> xr.Dataset:
        """The finished runs only (``status == 2``)."""
        return _runs.runs_to_use(self._ds, only_done=True)

    def select(self, values: Mapping | None = None, /, rtol: float = 1e-9, atol: float = 1e-12, **kw) -> xr.Dataset:
        """Runs whose parameters have the given values: ``select({"conditions.stack_pressure_mpa": 5})``
        or ``select(**{"conditions.stack_pressure_mpa": [2, 5]})`` (a list accepts any of its values).

        Numbers match within ``rtol``/``atol``; any coordinate along ``run`` (seed, replica too) may be
        used. An unknown name, or a value no run has, raises ``KmcError``.
        """
        return _runs.select(self._ds, values, rtol=rtol, atol=atol, **kw)

    def summary(self, only_done: bool = True) -> xr.Dataset:
        """One row per run: final contact fraction, thickness mean and CV, interfacial resistance,
        voltage, charge (``final_*``, last non-NaN sample), ``min_voltage`` [V], and ``shorted``,
        ``short_charge`` [mA h cm-2], ``ccd`` [mA cm-2], ``coulombic_efficiency`` per cycle when the
        store has them. See ``kmc.analysis.summary.summary``."""
        from kmc.analysis.summary import summary

        return summary(self._ds, only_done=only_done)

    def stats(self, var: str | xr.DataArray, confidence: float = 0.95, at: str = "sample",
              only_done: bool = True) -> xr.Dataset:
        """Replica statistics of ``var`` per sweep point: ``<var>_median``, ``_mean``, ``_std``, ``_n``,
        and the order-statistic (binomial) ``confidence`` interval of the median (``_median_low``,
        ``_median_high``), along ``point`` with the swept values as coordinates.

        ``var``: a variable of the dataset, a name from ``summary()`` (e.g. ``"min_voltage"``), or a
        DataArray along ``run``. ``at="sample"`` gives statistics at every sample (a mean voltage curve,
        with the mean ``charge`` and ``time`` as coordinates); ``at="final"`` at each run's last
        non-NaN sample (or cycle). For a product sweep,
        ``.set_index(point=ds.kmc.parameters).unstack("point")`` gives one dimension per parameter.
        See ``kmc.analysis.stats.replica_stats``.
        """
        from kmc.analysis.stats import replica_stats

        ds = self._ds
        if isinstance(var, xr.DataArray):
            da = var
        elif var in ds:
            da = ds[var]
        else:
            table = self.summary(only_done=False)
            if var not in table:
                raise KmcError(f"stats: {var!r} is not a variable of the dataset or of its summary: expected "
                               f"one of {sorted(set(ds.data_vars) | set(table.data_vars))}")
            da = table[var]
        return replica_stats(ds, da, confidence=confidence, at=at, only_done=only_done)

    def survival(self, var: str = "short_charge", censor: str | None = None, confidence: float = 0.95,
                 only_done: bool = True) -> xr.Dataset:
        """Kaplan–Meier survival against shorting per sweep point; runs that did not short are
        censored at their final ``charge`` (or ``time`` for ``short_time``). A valid curve (1
        throughout) when nothing shorted. See ``kmc.analysis.survival.survival``."""
        from kmc.analysis.survival import survival

        return survival(self._ds, var=var, censor=censor, confidence=confidence, only_done=only_done)

    def figures(self, directory, run: int = 0, frames=None, snaps=None, only_done: bool = True):
        """Write the standard figures (PNG) that apply to this dataset into ``directory``; returns
        what was written (``.files``) and left out (``.skipped``, with the reason). See
        ``kmc.analysis.figures.write_figures`` (imports matplotlib)."""
        from kmc.analysis.figures import write_figures

        return write_figures(self._ds, directory, run=run, frames=frames, snaps=snaps, only_done=only_done)
