"""The worked-example notebooks (analysis/notebooks/) run from top to bottom in quick mode.

Each notebook runs with nbclient in a new kernel of this Python (ipykernel, from the ``test`` extra),
with ``KMC_NOTEBOOK_QUICK=1`` (small lattices, few replicas, short protocols); its working directory
and its temporary files (the stores) are in pytest's ``tmp_path``, never in the checkout. Any cell
error fails the test. The notebooks are files of the checkout (not installed), found relative to this
file, as the README's ``pip install '.[test]' && pytest`` runs it.
"""
import os
from pathlib import Path

import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "analysis" / "notebooks"
NOTEBOOKS = ["pressure_current_sweep.ipynb", "bare_al_vs_au.ipynb"]
KERNEL = "kmc-tests"
CELL_TIMEOUT_S = 900  # a cold Numba cache compiles the battery kernels in each Dask worker first


@pytest.fixture(scope="module")
def kernel_path(tmp_path_factory):
    """A JUPYTER_PATH entry holding one kernel spec, ``<this Python> -m ipykernel_launcher``,
    so the notebooks run with the Python that runs the tests, whatever kernels the user has."""
    root = tmp_path_factory.mktemp("jupyter")
    write_kernel_spec(root / "kernels" / KERNEL)
    return root


def _read(name: str):
    path = NOTEBOOK_DIR / name
    assert path.is_file(), f"{path} is missing (the notebooks are found relative to tests/)"
    return nbformat.read(path, as_version=4)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_clean_with_a_parameters_cell(name):
    nb = _read(name)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "store notebooks without outputs"
    first = code[0]
    assert "parameters" in first.metadata.get("tags", []), "the first code cell is the tagged parameters cell"
    assert 'os.environ.get("KMC_NOTEBOOK_QUICK") == "1"' in first.source


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_quick_mode(name, tmp_path, kernel_path, monkeypatch):
    nb = _read(name)
    monkeypatch.setenv("KMC_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebooks' temporary stores and Dask's scratch
    paths = [str(kernel_path), os.environ.get("JUPYTER_PATH")]
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join(p for p in paths if p))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend, so figures show
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name=KERNEL,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, naming the cell, on any error

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    figures = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert len(figures) >= 2, f"expected the notebook's figures inline, got {len(figures)}"
    assert not list(NOTEBOOK_DIR.glob("*.zarr"))  # nothing written beside the notebooks
