"""``examples/notebook.ipynb`` runs in a real Jupyter kernel (nbclient + ipykernel) and shows what it
promises: a live progress line (HTML, no terminal escape codes), the results, the verdict table, a
figure, and a rerun that trains nothing."""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import pytest

import smoothflip

nbclient = pytest.importorskip("nbclient", reason="the test extra installs nbclient and ipykernel")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "notebook.ipynb"


def outputs(cell) -> list[dict]:
    return [dict(o) for o in cell.get("outputs", [])]


def html_of(cell) -> str:
    return "".join(o.get("data", {}).get("text/html", "") for o in outputs(cell))


def test_the_example_notebook_runs_in_a_kernel_and_shows_its_results(tmp_path, monkeypatch):
    src = str(Path(smoothflip.__file__).resolve().parents[1])  # the kernel imports this smoothflip
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p))
    shutil.copy(NOTEBOOK, tmp_path / "notebook.ipynb")
    nb = nbformat.read(tmp_path / "notebook.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # a cell that raises fails the test (CellExecutionError)

    code = [c for c in nb.cells if c.cell_type == "code"]
    everything = repr([outputs(c) for c in code])
    assert "\\x1b[" not in everything  # no raw terminal escape codes anywhere
    by_source = {c.source.splitlines()[0]: c for c in code}

    first_run = by_source['results = study.run(out="smoothflip-runs/notebook-demo")']
    shown = html_of(first_run)
    assert "<progress" in shown  # the live progress line, updated in place
    assert "12/12 runs" in shown
    assert "12 runs (0 already stored)" in shown
    assert "12 of 12 runs stored" in shown
    assert "12 trained by this call" in shown

    verdict = html_of(by_source["results.verdict()"])
    assert "<table>" in verdict
    assert "primary verdicts" in verdict
    assert "ls-0.1" in verdict

    runs = html_of(next(c for c in code if c.source.startswith("results.runs")))
    assert runs.count("<tr") == 6  # the header and five runs

    figure = by_source['results.figure("accuracy_vs_noise")']
    png = [o["data"]["image/png"] for o in outputs(figure) if "image/png" in o.get("data", {})]
    assert len(png) == 1
    assert base64.b64decode(png[0]).startswith(b"\x89PNG")

    rerun = by_source['again = study.run(out="smoothflip-runs/notebook-demo")']
    assert "12 runs (12 already stored): nothing to train" in html_of(rerun)
    printed = "".join(o.get("text", "") for o in outputs(rerun) if o.get("name") == "stdout")
    assert printed == "runs trained by this call: 0\n"
    warnings_shown = [
        line
        for c in code
        for o in outputs(c)
        if o.get("name") == "stderr"
        for line in o.get("text", "").splitlines()
        if "Warning" in line
    ]
    assert len(warnings_shown) == len(set(warnings_shown))  # none repeated per run
    assert (tmp_path / "smoothflip-runs" / "notebook-demo" / "report" / "index.html").is_file()
