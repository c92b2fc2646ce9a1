"""The shipped studies (``examples/*.toml`` and the built-in demo) load and resolve; the demo reports."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from smoothflip.engine import resolve_study
from smoothflip.study.spec import load_study, loads_study

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.toml"))
# Runs per shipped study, as the README and benchmarks/RESULTS.md describe them.
EXPECTED_RUNS = {
    "certified.toml": 90,
    "digits.toml": None,
    "lm_synthetic.toml": 30,
    "muller2019.toml": 240,
}


def test_every_example_is_listed():
    assert sorted(p.name for p in EXAMPLES) == sorted(EXPECTED_RUNS)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_loads_and_resolves(path):
    spec = load_study(path)
    _, runs = resolve_study(spec)
    expected = EXPECTED_RUNS[path.name]
    if expected is not None:
        assert len(runs) == expected


def _demo_spec():
    text = resources.files("smoothflip.studies").joinpath("demo.toml").read_text(encoding="utf-8")
    return loads_study(text, default_name="demo", origin="built-in demo study")


def test_demo_study_is_the_documented_grid():
    spec = _demo_spec()
    _, runs = resolve_study(spec)
    assert len(runs) == 240  # 6 arms x 2 noise rates x 20 seeds
    assert spec.arms[0].name == spec.baseline


@pytest.mark.slow
def test_demo_runs_and_its_report_renders(tmp_path):
    from typer.testing import CliRunner

    from smoothflip.cli import app
    from smoothflip.report.data import load_study_data

    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "demo"), "-q"])
    assert result.exit_code == 0, result.output
    index = tmp_path / "demo" / "report" / "index.html"
    html = index.read_text(encoding="utf-8")
    assert "Verdict table" in html
    assert len(load_study_data(tmp_path / "demo").results) == 240
    for name in ("accuracy_vs_noise", "calibration_vs_noise", "reliability", "verdicts"):
        assert (index.parent / "figures" / f"{name}.png").is_file(), name
