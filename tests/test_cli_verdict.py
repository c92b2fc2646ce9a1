"""``smoothflip verdict --format csv`` and ``smoothflip plan`` on a small trained study, and their bad input:
one line, exit code 2, nothing written or touched."""

from __future__ import annotations

import csv
import hashlib
import io

import pytest
from typer.testing import CliRunner

from smoothflip.cli import app
from smoothflip.report.verdict_rows import CSV_COLUMNS

runner = CliRunner()

STUDY = """
name = "cli-plan"
seeds = 4
[data]
source = "digits"
[model]
name = "logistic"
[train]
epochs = 2
[[arms]]
name = "ce"
[[arms]]
name = "ls"
loss = "smoothed_ce"
eps = 0.1
[[conditions]]
noise = "symmetric"
rates = [0.0, 0.2]
"""


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The study trained by the engine itself (``smoothflip run`` would also write the report)."""
    from smoothflip.engine.runner import run_study
    from smoothflip.study.spec import loads_study

    out = tmp_path_factory.mktemp("plan") / "out"
    run_study(loads_study(STUDY), out)
    return out


def snapshot(*folders):
    """Every file under the folders with the hash of its bytes."""
    found = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def assert_clean_error(result, match):
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    assert match in lines[0], lines[0]


def test_verdict_csv_on_stdout_and_into_a_file(study, tmp_path):
    result = invoke("verdict", study, "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert tuple(rows[0]) == CSV_COLUMNS  # nothing but the CSV on stdout
    primary = [r for r in rows if r["role"] == "primary"]
    assert {(r["condition"], r["technique"]) for r in primary} == {("clean", "ls"), ("symmetric 20%", "ls")}
    assert all(r["metric"] == "accuracy" and r["unit"] == "pts" and r["seeds"] == "4" for r in primary)
    assert {r["role"] for r in rows} == {"primary", "secondary"}
    for r in rows:
        assert (r["seeds_needed"] != "") == (r["verdict"] == "inconclusive"), r
        if r["seeds_needed"] not in ("", "inf"):
            assert int(r["seeds_needed"]) >= int(r["seeds"])
        float(r["estimate"])
    # the table shows the same verdicts
    table = invoke("verdict", study)
    assert table.exit_code == 0, table.output
    assert "seeds needed" in table.stdout
    target = tmp_path / "verdicts.csv"
    written = invoke("verdict", study, "--format", "csv", "--out", target)
    assert written.exit_code == 0, written.output
    assert written.stdout == ""
    assert target.read_text() == result.stdout
    assert f"wrote {len(rows)} verdict rows" in written.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["verdicts.csv"]  # no temporary file left


def test_plan_prices_every_inconclusive_cell(study):
    result = invoke("plan", study)
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    csv_rows = list(csv.DictReader(io.StringIO(invoke("verdict", study, "--format", "csv").stdout)))
    assert any(r["verdict"] == "inconclusive" for r in csv_rows if r["role"] == "primary")  # 4 seeds: open
    assert "seeds to detect the target" in text
    assert "Totals" in text
    assert "Time per run" in text
    looser = invoke("plan", study, "--target-mde", "50")
    assert looser.exit_code == 0, looser.output
    assert "target 50.0 pts" in " ".join(looser.stdout.split())
    tight = list(
        csv.DictReader(io.StringIO(invoke("verdict", study, "--format", "csv", "--target-mde", "0.2").stdout))
    )
    loose = list(
        csv.DictReader(io.StringIO(invoke("verdict", study, "--format", "csv", "--target-mde", "50").stdout))
    )
    for a, b in zip(tight, loose, strict=True):
        if a["role"] == "primary" and a["seeds_needed"] not in ("", "inf"):
            assert int(a["seeds_needed"]) >= int(b["seeds_needed"])
            assert a["target_mde"] == "0.2"


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("verdict", "{study}", "--format", "xml"), "--format must be one of table, csv, got 'xml'"),
        (
            ("verdict", "{study}", "--format", "csv", "--target-mde", "0"),
            "--target-mde must be a finite number > 0",
        ),
        (("verdict", "{study}", "--target-mde", "-1"), "--target-mde must be a finite number > 0"),
        (("plan", "{study}", "--target-mde", "abc"), "--target-mde must be a finite number > 0"),
        (("plan", "{study}", "--target-mde", "nan"), "--target-mde must be a finite number > 0"),
        (("plan", "{study}", "--target-mde", "inf"), "--target-mde must be a finite number > 0"),
        (("verdict", "{study}", "--format", "csv", "--out", "{tmp}/missing/v.csv"), "does not exist"),
        (("verdict", "{study}", "--format", "csv", "--out", "{tmp}"), "it is a directory"),
        (("verdict", "{study}", "--format", "csv", "--out", "{study}/smoothflip.sqlite"), "the study's own"),
        (("verdict", "{study}", "--format", "csv", "--out", "{study}/study.toml"), "the study's own"),
        (("verdict", "{study}", "--out", "{tmp}/v.csv"), "--out writes the CSV rows: add --format csv"),
        (("verdict", "{study}", "--at", "best", "--format", "csv"), "--at must be"),
        (("verdict", "{tmp}/nowhere", "--format", "csv"), "no smoothflip study"),
        (("plan", "{tmp}/nowhere"), "no smoothflip study"),
        (("plan", "{tmp}"), "no smoothflip study"),
    ],
)
def test_bad_input_is_one_line_and_touches_nothing(study, tmp_path, args, match):
    before = snapshot(study, tmp_path)
    result = invoke(*(a.format(study=study, tmp=tmp_path) for a in args))
    assert_clean_error(result, match)
    assert result.stdout == ""
    assert snapshot(study, tmp_path) == before


def test_out_through_a_symlinked_study_folder_is_still_the_study(study, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(study, target_is_directory=True)
    before = snapshot(study)
    result = invoke("verdict", study, "--format", "csv", "--out", link / "smoothflip.sqlite")
    assert_clean_error(result, "the study's own")
    assert snapshot(study) == before


def test_an_unwritable_out_folder_is_refused(study, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        import os

        if os.access(locked, os.W_OK):  # root writes anywhere
            pytest.skip("this user can write into a read-only folder")
        result = invoke("verdict", study, "--format", "csv", "--out", locked / "v.csv")
        assert_clean_error(result, "is not writable")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)
