"""Hostile and broken input (issue 17): every case is one ``error:`` line on stderr with exit code 2,
nothing stored is lost or changed, nothing is unpickled, and no name reaches a terminal raw."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from smoothflip._cli_errors import os_error_sentence
from smoothflip.cli import app
from smoothflip.engine.planning import MAX_HOURS, plan_study, resolve_study
from smoothflip.errors import UserCodeError
from smoothflip.study.lock import LOCK_NAME, study_lock
from smoothflip.study.spec import loads_study
from smoothflip.study.store import Store

runner = CliRunner()
SRC = Path(__file__).resolve().parents[1] / "src"
V1 = Path(__file__).parent / "fixtures" / "v1_store"
HOSTILE = "\u001b]0;pwned\u0007\u001b[2J"

STUDY = """
name = "hostile"
seeds = 1
[data]
source = "{source}"
{data_extra}
[model]
{model}
[train]
epochs = {epochs}
{probes}
[[arms]]
name = "ce"
[[arms]]
name = "ls"
loss = "smoothed_ce"
eps = 0.1
[[conditions]]
noise = "symmetric"
rates = [0.0]
"""


def write_study(
    tmp_path: Path,
    *,
    source: str = "digits",
    model: str = 'name = "logistic"',
    epochs: int = 1,
    data_extra: str = "",
    probes: str = "",
    name: str = "study.toml",
) -> Path:
    path = tmp_path / name
    text = STUDY.format(source=source, model=model, epochs=epochs, data_extra=data_extra, probes=probes)
    path.write_text(text)
    return path


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line(result, *fragments: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A small finished study directory (digits, two arms, one seed)."""
    tmp = tmp_path_factory.mktemp("finished")
    out = tmp / "out"
    result = invoke("run", write_study(tmp), "--out", out, "-q")
    assert result.exit_code == 0, result.output
    return out


def copy_of(finished: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(finished, target, ignore=shutil.ignore_patterns("report", LOCK_NAME))
    return target


# --------------------------------------------------------------------------- 1. forged .npy headers


def _forged_npz(path: Path) -> Path:
    header = io.BytesIO()
    np.lib.format.write_array_header_2_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (2**40, 4)}
    )
    header.write(b"\0" * 64)
    labels = io.BytesIO()
    np.save(labels, np.arange(120) % 3)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", header.getvalue())
        archive.writestr("y.npy", labels.getvalue())
    return path


def test_an_npz_whose_header_claims_terabytes_is_refused_before_loading(tmp_path):
    forged = _forged_npz(tmp_path / "forged.npz")
    assert forged.stat().st_size < 2000
    for result in (
        invoke("run", write_study(tmp_path, source=str(forged)), "--out", tmp_path / "o", "-q"),
        invoke("attack", forged, "-s", "random", "-b", "0.1", "-o", tmp_path / "a.npz"),
        invoke("clean", forged, "-d", "knn", "-o", tmp_path / "c.npz"),
    ):
        assert_one_line(result, "(1099511627776, 4)", "32.0 TiB", "truncated or forged")
    assert not (tmp_path / "a.npz").exists()
    assert not (tmp_path / "o" / "smoothflip.sqlite").exists()


# --------------------------------------------------------------------------- 2. models too large


def test_a_model_that_cannot_fit_memory_is_refused_before_it_is_built(tmp_path):
    study = write_study(tmp_path, model='name = "mlp"\nhidden = [1000000000000]')
    started = time.perf_counter()
    line = assert_one_line(invoke("run", study, "--out", tmp_path / "o", "-q"), "model 'mlp' has ", "free")
    assert time.perf_counter() - started < 60
    count = int(line.split(" has ")[1].split(" parameters")[0].replace(",", ""))
    assert count == 64 * 10**12 + 10**12 + 10**12 * 10 + 10  # digits: 64 inputs, 10 classes
    assert "at most" in line
    assert "make the model smaller" in line
    assert not (tmp_path / "o" / "study.toml").exists()


# --------------------------------------------------------------------------- 3. the user's own code


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import torch\n\ndef make(:\n    pass\n", ("SyntaxError", "net.py, line 3")),
        (
            "import torch\n\ndef make(**kw):\n    raise RuntimeError('boom in the factory')\n",
            ("RuntimeError: boom in the factory", "net.py, line 4", "net.py:make"),
        ),
        ("import torch\nraise KeyError('at import')\n", ("KeyError", "at import", "net.py, line 2")),
    ],
)
def test_a_failing_model_factory_is_one_line_naming_file_line_and_exception(tmp_path, source, expected):
    (tmp_path / "net.py").write_text(source)
    study = write_study(tmp_path, model='factory = "net.py:make"')
    assert_one_line(invoke("run", study, "--out", tmp_path / "o", "-q"), *expected)


def test_debug_shows_the_traceback_of_the_users_code(tmp_path, monkeypatch):
    (tmp_path / "net.py").write_text("def make(**kw):\n    raise RuntimeError('boom in the factory')\n")
    study = write_study(tmp_path, model='factory = "net.py:make"')
    monkeypatch.delenv("SMOOTHFLIP_DEBUG", raising=False)
    result = invoke("--debug", "run", study, "--out", tmp_path / "o", "-q")
    assert isinstance(result.exception, UserCodeError), result.output
    assert isinstance(result.exception.__cause__, RuntimeError)  # the user's traceback is chained
    assert "net.py, line 2" in result.exception.where
    assert invoke("run", study, "--out", tmp_path / "o", "-q").exit_code == 2  # --debug does not stick
    monkeypatch.setenv("SMOOTHFLIP_DEBUG", "1")
    process = subprocess.run(
        [sys.executable, "-m", "smoothflip", "run", str(study), "--out", str(tmp_path / "o"), "-q"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        timeout=120,
    )
    assert "Traceback" in process.stderr
    assert "raise RuntimeError('boom in the factory')" in process.stderr


# --------------------------------------------------------------------------- 4. foreign files


@pytest.mark.parametrize("content", ["foreign", "empty", "garbage"])
def test_read_only_commands_never_write_into_a_file_that_is_not_a_store(tmp_path, content):
    directory = tmp_path / "d"
    directory.mkdir()
    db = directory / "smoothflip.sqlite"
    if content == "foreign":
        connection = sqlite3.connect(db)
        connection.execute("CREATE TABLE customers (name TEXT)")
        connection.execute("INSERT INTO customers VALUES ('ada')")
        connection.commit()
        connection.close()
    elif content == "empty":
        db.write_bytes(b"")
    else:
        db.write_bytes(b"not a database at all" * 50)
    before = db.read_bytes()
    for command in ("verdict", "report", "export"):
        assert_one_line(invoke(command, directory), "smoothflip.sqlite")
        assert "not a smoothflip store" in invoke(command, directory).stderr or content == "garbage"
    assert db.read_bytes() == before
    assert sorted(p.name for p in directory.iterdir()) == ["smoothflip.sqlite"]  # no -wal, -shm, report


# --------------------------------------------------------------------------- 5. damaged rows


def test_a_damaged_row_is_named_by_store_run_and_column(finished, tmp_path):
    for column, value, where in (
        ("curves", "not json", "column 'curves'"),
        ("metrics", "{", "column 'metrics'"),
    ):
        study = copy_of(finished, tmp_path / column)
        connection = sqlite3.connect(study / "smoothflip.sqlite")
        run_id = connection.execute("SELECT run_id FROM runs ORDER BY rowid LIMIT 1").fetchone()[0]
        connection.execute(f"UPDATE runs SET {column} = ? WHERE run_id = ?", (value, run_id))
        connection.commit()
        connection.close()
        for command in ("verdict", "report", "export"):
            assert_one_line(invoke(command, study), str(study / "smoothflip.sqlite"), run_id, where)


def test_a_bad_schema_version_is_named(finished, tmp_path):
    study = copy_of(finished, tmp_path)
    connection = sqlite3.connect(study / "smoothflip.sqlite")
    connection.execute("UPDATE meta SET value = 'abc' WHERE key = 'schema_version'")
    connection.commit()
    connection.close()
    for command in ("verdict", "report", "export"):
        assert_one_line(invoke(command, study), "smoothflip.sqlite", "meta.schema_version is 'abc'")


def test_a_run_without_metrics_is_shown_as_incomplete_by_the_report(finished, tmp_path):
    study = copy_of(finished, tmp_path)
    connection = sqlite3.connect(study / "smoothflip.sqlite")
    run_id, _arm = connection.execute("SELECT run_id, arm FROM runs WHERE arm = 'ls'").fetchone()
    connection.execute("UPDATE runs SET metrics = '{}' WHERE run_id = ?", (run_id,))
    connection.commit()
    connection.close()
    result = invoke("report", study)
    assert result.exit_code == 0, (result.output, result.exception)
    markdown = (study / "report" / "report.md").read_text()
    assert "1 incomplete" in markdown
    assert run_id in markdown
    verdict = invoke("verdict", study)
    assert_one_line(verdict, "1 stored run(s) are incomplete")
    assert invoke("export", study).exit_code == 0


# --------------------------------------------------------------------------- 6. probe classes


@pytest.mark.parametrize(
    ("probes", "fragment"),
    [
        ("classes = [0, 1, 99]", "probes.classes = [0, 1, 99]: class(es) [99]"),
        ("mi_classes = [0, 10]", "[10]"),
    ],
)
def test_probe_classes_outside_the_data_are_refused(tmp_path, probes, fragment):
    study = write_study(tmp_path, model='name = "mlp"\nhidden = [8]', probes=f"[probes]\n{probes}")
    assert_one_line(invoke("run", study, "--out", tmp_path / "o", "-q"), fragment, "0 to 9")
    assert not (tmp_path / "o" / "study.toml").exists()


# --------------------------------------------------------------------------- 7. endless budgets


def _small_npz(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "small.npz"
    np.savez(path, x=rng.normal(size=(120, 4)).astype(np.float32), y=np.arange(120) % 3)
    return path


@pytest.mark.parametrize("epochs", [10**9, 2**63 - 1])
def test_a_budget_beyond_the_ceiling_is_refused_with_its_steps_and_time(tmp_path, epochs):
    study = write_study(tmp_path, source=str(_small_npz(tmp_path)), epochs=epochs)
    started = time.perf_counter()
    line = assert_one_line(
        invoke("run", study, "--out", tmp_path / "o", "-q"), "optimizer steps, estimated", "--yes", "24 h"
    )
    assert time.perf_counter() - started < 60
    steps = int(line.split("plan ")[1].split(" optimizer")[0].replace(",", ""))
    assert steps == epochs  # the 2 runs train as one pack; 96 - 10 validation examples: one batch an epoch
    assert not (tmp_path / "o" / "study.toml").exists()  # the directory is not bound


def test_yes_lets_a_long_study_plan_and_the_plan_states_its_estimate(tmp_path):
    spec = loads_study(
        STUDY.format(
            source=str(_small_npz(tmp_path)),
            model='name = "logistic"',
            epochs=10**9,
            data_extra="",
            probes="",
        ),
        base_dir=tmp_path,
    )
    data, runs = resolve_study(spec)
    with Store.open(tmp_path / "o") as store:
        plan = plan_study(spec, data, runs, store, allow_long=True)
    assert plan.estimate is not None
    assert plan.estimate.too_long()
    assert plan.estimate.seconds > MAX_HOURS * 3600
    result = invoke("run", write_study(tmp_path, epochs=2), "--out", tmp_path / "short")
    assert result.exit_code == 0, result.output
    assert "optimizer steps, estimated" in result.stderr


# --------------------------------------------------------------------------- 8. parse errors


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["run", "s.toml", "--pack-size", "abc"], "--pack-size"),
        (["run", "s.toml", "--outt", "DIR"], "No such option: --outt"),
        (["verdikt", "x"], "verdikt"),
        (["run"], "Missing argument"),
    ],
)
def test_parse_errors_are_one_line_with_exit_2(args, fragment):
    result = invoke(*args)
    line = assert_one_line(result, fragment)
    assert "╭" not in result.output
    assert "Usage:" not in result.output
    assert line.endswith("--help')")


# --------------------------------------------------------------------------- 9. control characters


def test_names_with_control_characters_are_refused_when_the_study_is_read(tmp_path):
    study = write_study(tmp_path)
    text = study.read_text().replace('name = "ls"', f"name = {json.dumps(HOSTILE)}")
    study.write_text(text)
    result = invoke("run", study, "--out", tmp_path / "o", "-q")
    line = assert_one_line(result, "arms[1].name", "control characters", r"\x1b")
    assert "\x1b" not in result.output
    assert "\x07" not in line
    assert not (tmp_path / "o").exists()


def test_names_read_from_a_store_are_escaped_where_they_are_shown(finished, tmp_path, recwarn):
    study = copy_of(finished, tmp_path)
    connection = sqlite3.connect(study / "smoothflip.sqlite")
    connection.execute("UPDATE runs SET arm = ? WHERE arm = 'ls'", (HOSTILE,))
    connection.commit()
    connection.close()
    toml = (study / "study.toml").read_text()
    (study / "study.toml").write_text(toml.replace('name = "ls"', f"name = {json.dumps(HOSTILE)}"))
    verdict = invoke("verdict", study)
    assert verdict.exit_code == 0, verdict.output
    assert "\x1b" not in verdict.output
    assert "\x07" not in verdict.output
    assert r"\x1b]0;pwned\x07\x1b[2J" in verdict.stdout.replace("\n", "")
    report = invoke("report", study)
    assert report.exit_code == 0, report.output
    markdown = (study / "report" / "report.md").read_text()
    assert "\x1b" not in markdown
    assert "\x07" not in markdown
    assert r"\x1b" in markdown
    html = (study / "report" / "index.html").read_text()
    assert "\x1b" not in html
    assert "\x07" not in html
    assert r"\x1b]0;pwned" in html
    assert not [w for w in recwarn if "Glyph" in str(w.message)]  # matplotlib's glyph warnings stay quiet


# --------------------------------------------------------------------------- 10. one writer per directory

HOLDER = """
import sys, time
from smoothflip.study.lock import study_lock
with study_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_second_run_on_a_locked_directory_names_the_holder_and_kill_9_leaves_no_stale_lock(
    finished, tmp_path
):
    study = copy_of(finished, tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(study)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = invoke("run", write_study(tmp_path), "--out", study, "-q")
        assert_one_line(result, "is in use", f"pid {holder.pid}", "since")
        # readers work while a study holds the directory
        assert invoke("verdict", study).exit_code == 0
        assert invoke("export", study, "--out", tmp_path / "exported").exit_code == 0
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    result = invoke("run", write_study(tmp_path), "--out", study, "-q")
    assert result.exit_code == 0, result.output  # the dead holder's lock went with it
    with study_lock(study):  # and the finished run released its own
        pass


def test_the_lock_is_taken_in_process_too(tmp_path):
    with study_lock(tmp_path / "d"):
        result = invoke("run", write_study(tmp_path), "--out", tmp_path / "d", "-q")
        assert_one_line(result, "is in use", f"pid {os.getpid()}")


def _unwritable(monkeypatch, directory: Path) -> None:
    """Make ``directory`` look unwritable to the store, as a read-only mount would (root ignores chmod)."""
    real = os.access

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and Path(path).resolve().is_relative_to(directory.resolve()):
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)  # the one os module: the store and sqlite3 callers see it


def test_verdict_and_export_work_on_a_read_only_directory(finished, tmp_path, monkeypatch):
    study = copy_of(finished, tmp_path)
    for extra in ("-wal", "-shm"):
        (study / f"smoothflip.sqlite{extra}").unlink(missing_ok=True)
    before = {p.name: p.read_bytes() for p in study.iterdir() if p.is_file()}
    _unwritable(monkeypatch, study)
    result = invoke("verdict", study)
    assert result.exit_code == 0, result.output
    assert invoke("export", study, "--out", tmp_path / "exported").exit_code == 0
    assert {p.name: p.read_bytes() for p in study.iterdir() if p.is_file()} == before


def test_a_read_only_store_whose_journal_holds_runs_is_read_whole(finished, tmp_path, monkeypatch):
    study = copy_of(finished, tmp_path)
    with Store.open(study, readonly=True) as store:
        expected = store.count()
    writer = sqlite3.connect(study / "smoothflip.sqlite")
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("UPDATE meta SET value = value WHERE key = 'name'")
    writer.execute("DELETE FROM runs WHERE rowid = (SELECT MAX(rowid) FROM runs)")  # held in the WAL only
    writer.commit()
    assert (study / "smoothflip.sqlite-wal").stat().st_size > 0
    _unwritable(monkeypatch, study)
    with Store.open(study, readonly=True) as store:
        assert store.count() == expected - 1  # the journal's transaction is seen
    writer.close()


def test_a_v1_store_still_opens_read_only_on_an_unwritable_directory(tmp_path, monkeypatch):
    study = tmp_path / "v1"
    shutil.copytree(V1, study)
    before = (study / "smoothflip.sqlite").read_bytes()
    _unwritable(monkeypatch, study)
    with Store.open(study, readonly=True) as store:
        assert store.schema == 1
        assert store.count() == 18
    assert (study / "smoothflip.sqlite").read_bytes() == before


# --------------------------------------------------------------------------- smaller message fixes


def test_data_messages_name_the_class_the_rows_and_the_bad_value(tmp_path):
    def csv(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    one_class = csv("one_class.csv", "a,b,label\n1,2,7\n3,4,7\n5,6,7\n7,8,7\n")
    one_row = csv("one_row.csv", "a,b,label\n1,2,0\n")
    bad_value = csv("bad.csv", "a,b,label\n1,2,0\n3,4x,1\n5,6,0\n7,8,1\n")
    extra = 'label_column = "label"'
    for path, fragments in (
        (one_class, ("every label is the same class, 7",)),
        (one_row, ("holds only 1 row", "at least 2 rows")),
        (bad_value, ("column 'b'", "'4x' in row 2")),
    ):
        study = write_study(tmp_path, source=str(path), data_extra=extra, name=f"{path.stem}.toml")
        assert_one_line(invoke("run", study, "--out", tmp_path / path.stem, "-q"), *fragments)
        attacked = invoke(
            "attack", path, "-s", "random", "-b", "1", "-o", tmp_path / "a.csv", "--label-column", "label"
        )
        assert_one_line(attacked, *fragments)
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 3)), y=np.zeros(0, dtype=int))
    assert_one_line(
        invoke("attack", tmp_path / "empty.npz", "-s", "random", "-b", "1", "-o", tmp_path / "e.npz"),
        "holds no rows",
    )


def test_os_errors_are_sentences_naming_the_path(finished, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    line = assert_one_line(invoke("run", write_study(tmp_path), "--out", blocker / "sub", "-q"), str(blocker))
    assert "[Errno" not in line
    assert "not a directory" in line
    study = copy_of(finished, tmp_path)
    (study / "report").mkdir()
    (study / "report" / "figures").write_text("a file where the figures folder goes")
    line = assert_one_line(invoke("report", study), str(study / "report" / "figures"))
    assert "[Errno" not in line
    assert "already exists" in line
    denied = os_error_sentence(PermissionError(errno.EACCES, "Permission denied", "/data/x.csv"))
    assert denied == "cannot use '/data/x.csv': permission denied (this user may not read or write it)"


LM_STUDY = """
name = "lm-hostile"
kind = "lm"
seeds = 1
[data]
source = "language"
[data.options]
vocab_size = 40
num_train = 100
num_validation = 20
num_test = 20
length = 8
[model]
name = "mlp"
hidden = [{hidden}]
[train]
epochs = {epochs}
batch_size = 50
[[arms]]
name = "ce"
loss = "ce"
[[arms]]
name = "ls"
loss = "smoothed_ce"
eps = 0.1
"""


@pytest.mark.parametrize(
    ("hidden", "epochs", "fragments"),
    [
        (10**12, 1, ("language model 'mlp' has ", "parameters", "free")),
        (8, 10**9, ("optimizer steps, beyond the ceiling of 100,000,000 steps", "--yes")),
    ],
)
def test_language_model_studies_get_the_size_check_and_the_step_ceiling(tmp_path, hidden, epochs, fragments):
    study = tmp_path / "lm.toml"
    study.write_text(LM_STUDY.format(hidden=hidden, epochs=epochs))
    assert_one_line(invoke("run", study, "--out", tmp_path / "o", "-q"), *fragments)
    assert not (tmp_path / "o" / "study.toml").exists()
