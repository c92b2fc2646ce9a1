"""The store: condition ids (results never merge by display label), schema v2, reading and migrating a
v1 store written by smoothflip 0.1, read-only opening that never writes, and damaged rows named."""

from __future__ import annotations

import shutil
import sqlite3
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from smoothflip.cli import app
from smoothflip.engine import resolve_study, run_study
from smoothflip.study.conditions import study_conditions
from smoothflip.study.results import load_study_data, summarize
from smoothflip.study.spec import load_study, loads_study
from smoothflip.study.store import SCHEMA_VERSION, Store, StoreError
from smoothflip.study.verdict import study_verdict

V1 = Path(__file__).parent / "fixtures" / "v1_store"
runner = CliRunner()

TWO_MAPS = """
name = "two-maps"
seeds = 3
[data]
source = "digits"
test_fraction = 0.25
[model]
name = "logistic"
[train]
epochs = 2
batch_size = 128
[[arms]]
name = "ce"
[[arms]]
name = "ls"
loss = "smoothed_ce"
eps = 0.1
[[conditions]]
noise = "asymmetric"
rates = [0.3]
mapping = {"1" = 7, "2" = 5}
[[conditions]]
noise = "asymmetric"
rates = [0.3]
mapping = {"3" = 8, "4" = 9}
[[conditions]]
noise = "matrix"
matrix = [[0.9, 0.1], [0.1, 0.9]]
[probes]
seeds = 0
"""


def test_conditions_that_print_alike_have_distinct_ids_and_labels():
    spec = loads_study(
        TWO_MAPS.replace('[[conditions]]\nnoise = "matrix"\nmatrix = [[0.9, 0.1], [0.1, 0.9]]\n', "")
    )
    first, second = study_conditions(spec)
    assert first.base_label == second.base_label == "asymmetric 30%"
    assert first.condition_id != second.condition_id
    assert first.label != second.label
    assert "1→7" in first.label
    assert "3→8" in second.label
    # the id depends on the definition only, never on the label or the file's option order
    again = loads_study(TWO_MAPS.replace('mapping = {"1" = 7, "2" = 5}', 'mapping = {"2" = 5, "1" = 7}'))
    assert study_conditions(again)[0].condition_id == first.condition_id


def test_two_asymmetric_maps_give_two_rows_in_summary_and_verdict(tmp_path):
    text = TWO_MAPS.replace('[[conditions]]\nnoise = "matrix"\nmatrix = [[0.9, 0.1], [0.1, 0.9]]\n', "")
    (tmp_path / "s.toml").write_text(text)
    result = runner.invoke(app, ["run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 0, result.output
    data = load_study_data(tmp_path / "out")
    rows = summarize(data.results, arms=list(data.arms), conditions=[c.label for c in data.conditions])
    assert [r["n"] for r in rows] == [3, 3, 3, 3]  # 2 arms x 2 conditions, 3 seeds each: nothing merged
    verdict = study_verdict(data)
    assert len(verdict.conditions) == 2
    assert len({(c.condition, c.arm) for c in verdict.comparisons}) == 2
    printed = runner.invoke(app, ["verdict", str(tmp_path / "out")])
    assert printed.exit_code == 0, printed.output
    table = printed.stdout[printed.stdout.index("verdicts") :]
    assert "1→7" in table
    assert "3→8" in table


def test_a_v1_store_is_read_as_it_is_read_only_and_never_written(tmp_path):
    study = tmp_path / "v1"
    shutil.copytree(V1, study)
    before = (study / "smoothflip.sqlite").read_bytes()
    with Store.open(study, readonly=True) as store:
        assert store.schema == 1
        results = store.results()
    assert len(results) == 18
    ids = {r.condition_id for r in results}
    assert len(ids) == 3  # clean and the two maps, which v1 stored under one label
    assert {r.condition for r in results} == {"clean", "asymmetric 30%"}
    data = load_study_data(study)
    assert len(data.conditions) == 3
    assert len(data.results) == 18
    verdict = study_verdict(data)
    assert len(verdict.conditions) == 3
    printed = runner.invoke(app, ["verdict", str(study)])
    assert printed.exit_code == 0, printed.output
    assert (study / "smoothflip.sqlite").read_bytes() == before  # read-only: not a byte changed
    assert (
        not (study / "smoothflip.sqlite-wal").exists()
        or (study / "smoothflip.sqlite-wal").stat().st_size == 0
    )


def test_opening_a_v1_store_for_writing_migrates_it_and_a_rerun_trains_nothing(tmp_path):
    study = tmp_path / "v1"
    shutil.copytree(V1, study)
    with Store.open(study, readonly=True) as store:
        old = {r.run_id: r for r in store.results()}
    with Store.open(study) as store:
        assert store.get_meta("schema_version") == str(SCHEMA_VERSION)
        new = {r.run_id: r for r in store.results()}
    assert new.keys() == old.keys()
    for run_id, r in new.items():
        assert r.condition_id == old[run_id].condition_id
        assert r.metrics == old[run_id].metrics
    columns = [
        row[1] for row in sqlite3.connect(study / "smoothflip.sqlite").execute("PRAGMA table_info(runs)")
    ]
    assert "condition_id" in columns
    # the same study file reruns into the migrated store: every run id still matches, nothing trains
    spec = load_study(V1 / "source.toml")
    planned = []
    run_study(spec, study, on_plan=planned.append)
    assert planned[0].remaining == 0
    assert len(planned[0].done) == 18


def test_read_only_commands_refuse_foreign_and_empty_databases_unchanged(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    db = sqlite3.connect(foreign / "smoothflip.sqlite")
    db.execute("CREATE TABLE customers (id INTEGER, name TEXT)")
    db.execute("INSERT INTO customers VALUES (1, 'ada')")
    db.commit()
    db.close()
    (foreign / "study.toml").write_text(textwrap.dedent(TWO_MAPS))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "smoothflip.sqlite").write_bytes(b"")
    for directory in (foreign, empty):
        before = (directory / "smoothflip.sqlite").read_bytes()
        for command in ("verdict", "report", "export"):
            result = runner.invoke(app, [command, str(directory)])
            assert result.exit_code == 2, (command, result.output)
            assert "not a smoothflip store" in result.stderr, result.stderr
        assert (directory / "smoothflip.sqlite").read_bytes() == before
        assert not (directory / "smoothflip.sqlite-wal").exists()
    with pytest.raises(StoreError, match="other tables: customers"):
        Store.open(foreign)  # writing is refused too, before anything is written
    assert sqlite3.connect(foreign / "smoothflip.sqlite").execute(
        "SELECT name FROM customers"
    ).fetchall() == [("ada",)]


def test_damaged_rows_name_the_store_the_run_and_the_column(tmp_path):
    study = tmp_path / "v1"
    shutil.copytree(V1, study)
    db = sqlite3.connect(study / "smoothflip.sqlite")
    run_id = db.execute("SELECT run_id FROM runs LIMIT 1").fetchone()[0]
    db.execute("UPDATE runs SET curves = 'not json' WHERE run_id = ?", (run_id,))
    db.commit()
    db.close()
    result = runner.invoke(app, ["verdict", str(study)])
    assert result.exit_code == 2
    assert "smoothflip.sqlite" in result.stderr
    assert run_id in result.stderr
    assert "'curves'" in result.stderr
    db = sqlite3.connect(study / "smoothflip.sqlite")
    db.execute("UPDATE meta SET value = 'abc' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    result = runner.invoke(app, ["verdict", str(study)])
    assert result.exit_code == 2
    assert "schema_version is 'abc'" in result.stderr


def test_a_matrix_condition_and_its_id_survive_a_run(tmp_path):
    text = TWO_MAPS.replace(
        '[[conditions]]\nnoise = "asymmetric"\nrates = [0.3]\nmapping = {"3" = 8, "4" = 9}\n', ""
    )
    text = text.replace(
        'source = "digits"\ntest_fraction = 0.25',
        'source = "synthetic"\ntest_fraction = 0.25\n[data.options]\nn_classes = 2\nn_samples = 200',
    )
    spec = loads_study(text.replace('mapping = {"1" = 7, "2" = 5}', 'mapping = {"0" = 1}'))
    _, runs = resolve_study(spec)
    run_study(spec, tmp_path / "out")
    with Store.open(tmp_path / "out", readonly=True) as store:
        stored = {r.condition_id for r in store.results()}
    assert (
        stored == {c.condition_id for c in study_conditions(spec)} == {r.condition.condition_id for r in runs}
    )


def test_a_new_store_appears_whole_under_its_name(tmp_path, monkeypatch):
    # The race CI hit: a reader polling for smoothflip.sqlite found the file after SQLite had made
    # it and before the tables were in it. The store is now made under a private name and linked.
    import os

    seen = []
    real_link = os.link

    def checking_link(source, target):
        db = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        db.close()
        seen.append((Path(target).exists(), tables, version))
        return real_link(source, target)

    monkeypatch.setattr(os, "link", checking_link)
    with Store.open(tmp_path / "out") as store:
        assert store.count() == 0
    assert seen == [(False, {"meta", "runs", "artifacts", "failures"}, (str(SCHEMA_VERSION),))]
    assert (tmp_path / "out" / "smoothflip.sqlite").is_file()
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".new")]
    with Store.open(tmp_path / "out", readonly=True) as store:
        assert store.schema == SCHEMA_VERSION


def test_a_store_made_by_another_process_first_is_kept_not_replaced(tmp_path):
    out = tmp_path / "out"
    with Store.open(out) as store:
        store.set_meta("marker", "first")
    Store._create(out / "smoothflip.sqlite")  # a second creator that lost the race
    with Store.open(out, readonly=True) as store:
        assert store.get_meta("marker") == "first"
    assert not [p for p in out.iterdir() if p.name.endswith(".new")]
