"""Every notebook in notebooks/ runs from top to bottom without an error, at the fast setting.

Each notebook is read into memory and executed there (the committed file, with its outputs, is
never written), in a fresh ``python3`` kernel started with ``ZOO_FAST=1`` so that it uses its
small budgets. Slow (tens of seconds per notebook): deselect with ``-m "not slow"``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS, ids=[path.name for path in PATHS])
def test_notebook_runs(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from nbclient.exceptions import CellExecutionError

    committed = path.read_bytes()
    notebook = nbformat.reads(committed.decode("utf-8"), as_version=4)
    # The kernel inherits this process's environment; monkeypatch restores it afterwards.
    monkeypatch.setenv("ZOO_FAST", "1")
    assert os.environ["ZOO_FAST"] == "1"
    client = nbclient.NotebookClient(
        notebook,
        timeout=900,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    try:
        client.execute()
    except CellExecutionError as error:
        pytest.fail(f"{path.name} failed at the fast setting:\n{error}", pytrace=False)
    assert path.read_bytes() == committed, f"running {path.name} changed the committed file"
