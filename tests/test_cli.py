"""The command line: a study end to end, export, and one-line errors with exit code 2 for bad input."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from smoothflip import __version__
from smoothflip.cli import app
from smoothflip.study.conditions import LabelCondition
from smoothflip.study.store import Store

runner = CliRunner()

STUDY = """
name = "cli"
seeds = 1
[data]
source = "{source}"
{data_extra}
[model]
name = "logistic"
[train]
epochs = 2
[[arms]]
name = "ce"
{arm_extra}
[[arms]]
name = "ls"
loss = "smoothed_ce"
eps = 0.1
[[conditions]]
noise = "symmetric"
rates = [0.0, 0.2]
"""


def write_study(tmp_path, *, source="digits", data_extra="", arm_extra="", name="study.toml", text=None):
    path = tmp_path / name
    path.write_text(
        text if text is not None else STUDY.format(source=source, data_extra=data_extra, arm_extra=arm_extra)
    )
    return path


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_clean_error(result, match):
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    assert match in lines[0], lines[0]


def test_version_and_help():
    assert invoke("--version").stdout.strip() == f"smoothflip {__version__}"
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("run", "demo", "export"):
        assert command in result.stdout


def test_run_prints_a_results_table_and_export_writes_tables(tmp_path):
    study = write_study(tmp_path)
    out = tmp_path / "out"
    result = invoke("run", study, "--out", out, "-q")
    assert result.exit_code == 0, result.output
    assert "test metrics at the validation-selected epoch" in result.stdout
    assert "symmetric 20%" in result.stdout
    with Store.open(out, create=False) as store:
        assert store.count() == 4
    for fmt in ("csv", "parquet"):
        result = invoke("export", out, "--format", fmt, "--out", tmp_path / fmt)
        assert result.exit_code == 0, result.output
        runs = (
            pd.read_csv(tmp_path / fmt / "runs.csv")
            if fmt == "csv"
            else pd.read_parquet(tmp_path / fmt / "runs.parquet")
        )
        assert len(runs) == 4
        assert {
            "run_id",
            "arm",
            "condition",
            "seed",
            "selected_test_acc",
            "last_test_acc",
            "noise_rate",
        } <= set(runs)
        curves = (
            pd.read_csv(tmp_path / fmt / "curves.csv")
            if fmt == "csv"
            else pd.read_parquet(tmp_path / fmt / "curves.parquet")
        )
        assert len(curves) == 4 * 2
        assert {"epoch", "train_acc_flipped", "test_ece"} <= set(curves)
    # rerunning resumes: nothing new is trained
    again = invoke("run", study, "--out", out, "-q")
    assert again.exit_code == 0
    with Store.open(out, create=False) as store:
        assert store.count() == 4


def _csv(tmp_path, name, frame):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def _frame(n=60, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    return pd.DataFrame({"a": rng.normal(size=n) + y, "b": rng.normal(size=n), "label": [f"c{v}" for v in y]})


BAD_STUDIES = {
    "unknown dataset": ({"source": "mnist2d"}, "unknown dataset 'mnist2d'"),
    "unknown model": ({"text_edit": ('name = "logistic"', 'name = "vgg"')}, 'model.name = "vgg"'),
    "unknown loss": ({"text_edit": ('loss = "smoothed_ce"', 'loss = "focal"')}, 'loss = "focal"'),
    "eps above 1": ({"text_edit": ("eps = 0.1", "eps = 1.5")}, "eps must be <= 1"),
    "alpha outside [0, 1]": ({"arm_extra": "disturb_alpha = 1.2"}, "disturb_alpha = 1.2: must be <= 1"),
    "rate 1": ({"text_edit": ("rates = [0.0, 0.2]", "rates = [0.0, 1.0]")}, "must be < 1"),
    "mapping to a class the data lacks": (
        {"text_edit": ('noise = "symmetric"', 'noise = "asymmetric"\nmapping = {"2" = 99}')},
        "conditions: asymmetric 20%: mapping uses class 99",
    ),
    "matrix of the wrong size": (
        {
            "text_edit": (
                'noise = "symmetric"\nrates = [0.0, 0.2]',
                'noise = "matrix"\nmatrix = [[0.8, 0.2], [0.2, 0.8]]',
            )
        },
        "transition_matrix is 2x2 but labels hold class 9",
    ),
    "defence option out of range": (
        {"arm_extra": 'defense = "knn"\ndefense_options = {eta = 5}'},
        "arms[0].defense_options: eta must be in (0, 1], got 5",
    ),
    "binary-only attack on ten classes": (
        {"text_edit": ('noise = "symmetric"\nrates = [0.0, 0.2]', 'attack = "alfa"\nbudgets = [0.1]')},
        "conditions: alfa attack 10%",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_STUDIES))
def test_bad_study_values_exit_2_with_one_line(tmp_path, case):
    kwargs, match = BAD_STUDIES[case]
    text = STUDY.format(
        source=kwargs.get("source", "digits"), data_extra="", arm_extra=kwargs.get("arm_extra", "")
    )
    if "text_edit" in kwargs:
        old, new = kwargs["text_edit"]
        assert old in text
        text = text.replace(old, new)
    study = write_study(tmp_path, text=text)
    assert_clean_error(invoke("run", study, "--out", tmp_path / "out", "-q"), match)
    assert not (tmp_path / "out").exists()  # nothing is created for a study that cannot run


def test_bad_data_files_exit_2_with_one_line(tmp_path):
    good = _frame()
    cases = []
    path = _csv(tmp_path, "nolabel.csv", good.rename(columns={"label": "target"}))
    cases.append((path, 'label_column = "label"', "'label' is not a column"))
    bad = good.copy()
    bad.loc[3, "a"] = np.nan
    cases.append((_csv(tmp_path, "nan.csv", bad), 'label_column = "label"', "non-finite"))
    one = good.copy()
    one["label"] = "only"
    cases.append((_csv(tmp_path, "one.csv", one), 'label_column = "label"', "class"))
    train = _csv(tmp_path, "train.csv", good)
    test = good.copy()
    test.loc[0, "label"] = "never-seen"
    _csv(tmp_path, "test.csv", test)
    cases.append((train, 'label_column = "label"\ntest_source = "test.csv"', "never-seen"))
    obj = tmp_path / "obj.npz"
    np.savez(obj, x=np.array([{"a": 1}] * 10, dtype=object), y=np.arange(10) % 2)
    cases.append((obj, "", "never unpickles"))
    cases.append((tmp_path / "missing.csv", 'label_column = "label"', "file not found"))
    for source, extra, match in cases:
        study = write_study(tmp_path, source=source.name, data_extra=extra, name=f"s-{source.stem}.toml")
        assert_clean_error(invoke("run", study, "--out", tmp_path / f"out-{source.stem}", "-q"), match)


def test_user_csv_with_string_labels_runs(tmp_path):
    _csv(tmp_path, "data.csv", _frame(n=90))
    study = write_study(tmp_path, source="data.csv", data_extra='label_column = "label"\ntest_fraction = 0.3')
    result = invoke("run", study, "--out", tmp_path / "out", "-q")
    assert result.exit_code == 0, result.output


def test_targeted_attack_names_classes_by_their_labels(tmp_path):
    _csv(tmp_path, "data.csv", _frame(n=90))
    extra = 'label_column = "label"\ntest_fraction = 0.3'
    attack = 'attack = "targeted"\nsource = "{}"\ntarget = "c0"\nbudgets = [0.2]'
    text = STUDY.format(source="data.csv", data_extra=extra, arm_extra="")
    text = text.replace('noise = "symmetric"\nrates = [0.0, 0.2]', attack.format("c2"))
    result = invoke("run", write_study(tmp_path, text=text), "--out", tmp_path / "out", "-q")
    assert result.exit_code == 0, result.output
    condition = LabelCondition("attack", 0.5, (("source", "c2"), ("strategy", "targeted"), ("target", "c0")))
    y = np.arange(30) % 3
    noisy = condition.apply(np.zeros((30, 2)), y, 3, seed=0, class_names=("c0", "c1", "c2"))
    assert set(y[noisy.flipped]) == {2}
    assert set(noisy.labels[noisy.flipped]) == {0}
    bad = write_study(tmp_path, text=text.replace('source = "c2"', 'source = "c9"'), name="bad.toml")
    assert_clean_error(invoke("run", bad, "--out", tmp_path / "bad", "-q"), "source='c9' is not a class")
    assert not (tmp_path / "bad").exists()


def test_names_with_rich_markup_are_printed_as_written(tmp_path):
    text = STUDY.format(source="digits", data_extra="", arm_extra="")
    text = text.replace('name = "cli"', 'name = "study [/]"').replace('name = "ls"', 'name = "ls[/x] [red]"')
    out = tmp_path / "out"
    result = invoke("run", write_study(tmp_path, text=text), "--out", out)
    assert result.exit_code == 0, result.output
    assert "ls[/x] [red]" in result.output
    assert "study [/]" in result.output
    assert (out / "report" / "index.html").is_file()
    verdict = invoke("verdict", out)
    assert verdict.exit_code == 0, verdict.output
    assert "ls[/x] [red]" in verdict.output


def test_export_of_a_study_without_runs_is_a_clean_error(tmp_path):
    with Store.open(tmp_path / "empty", create=True) as store:
        store.claim(name="empty", identity="x" * 32, study_json="{}", study_toml="")
    assert_clean_error(invoke("export", tmp_path / "empty"), "holds no finished runs to export yet")
    assert not (tmp_path / "empty" / "runs.csv").exists()


def test_progress_bar_counts_runs_and_shows_an_eta(tmp_path):
    result = invoke("run", write_study(tmp_path), "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "cli: 4 runs (0 already stored)" in result.stderr
    assert re.search(r"4/4 runs \d+:\d\d:\d\d ETA", result.stderr), result.stderr
    again = invoke("run", write_study(tmp_path), "--out", tmp_path / "out")
    assert "cli: 4 runs (4 already stored)" in again.stderr


WARNING_NET = """
import math
import warnings

from torch import nn


def make(input_shape, num_classes):
    warnings.warn("built a net", UserWarning, stacklevel=1)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
"""


def test_the_command_line_runs_a_study_as_the_python_api_does(tmp_path, capsys):
    """`smoothflip run` calls what `study.run()` calls: the same plan line and bar (on its console), and
    a warning the model raises on every run shown once."""
    import warnings

    import smoothflip as sf

    (tmp_path / "net.py").write_text(WARNING_NET)
    text = STUDY.format(source="digits", data_extra="", arm_extra="")
    path = write_study(tmp_path, text=text.replace('name = "logistic"', 'factory = "net.py:make"'))
    plan = r"cli: 4 runs \(0 already stored\), 1 pack\(s\) of up to \d+ on cpu; data digits: [^;]*classes"
    shown = {}
    for way in ("cli", "api"):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            if way == "cli":
                result = invoke("run", path, "--out", tmp_path / way)
                assert result.exit_code == 0, result.output
                err = result.stderr
            else:
                assert sf.Study.from_toml(path).run(out=tmp_path / way, report=False).trained == 4
                err = capsys.readouterr().err
        assert len([w for w in seen if "built a net" in str(w.message)]) == 1, way
        flat = " ".join(err.split())
        assert re.search(r"4/4 runs \d+:\d\d:\d\d ETA", flat), flat
        shown[way] = re.search(plan, flat).group(0)
    assert shown["cli"] == shown["api"]


def test_study_file_problems_exit_2(tmp_path):
    assert_clean_error(invoke("run", tmp_path / "nope.toml"), "study file not found")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed")
    assert_clean_error(invoke("run", bad), "is not valid TOML")


def test_another_study_in_the_directory_is_refused_and_kept(tmp_path):
    out = tmp_path / "out"
    assert invoke("run", write_study(tmp_path), "--out", out, "-q").exit_code == 0
    before = (out / "smoothflip.sqlite").read_bytes()
    other = write_study(
        tmp_path, text=STUDY.format(source="digits", data_extra="", arm_extra="").replace('"cli"', '"x"')
    )
    assert_clean_error(invoke("run", other, "--out", out, "-q"), "holds a different study")
    assert (out / "smoothflip.sqlite").read_bytes() == before


def test_bad_options_exit_2(tmp_path):
    study = write_study(tmp_path)
    assert_clean_error(invoke("run", study, "--device", "tpu", "-q"), "device must be")
    assert_clean_error(invoke("run", study, "--pack-size", "0", "-q"), "pack_size must be >= 1")
    assert_clean_error(invoke("run", study, "--executor", "slurm", "-q"), "executor must be one of")
    assert_clean_error(invoke("export", tmp_path), "no smoothflip study")
    out = tmp_path / "out"
    invoke("run", study, "--out", out, "-q")
    assert_clean_error(invoke("export", out, "--format", "xlsx"), "format must be one of")


def test_demo_study_file_is_valid_and_matches_the_brief():
    from importlib import resources

    from smoothflip.study.conditions import study_conditions
    from smoothflip.study.spec import loads_study

    spec = loads_study(resources.files("smoothflip.studies").joinpath("demo.toml").read_text())
    assert spec.data.source == "mnist1d"
    assert len(spec.seeds) == 20
    losses = {(a.loss, a.params.get("eps", 0.0) < 0, a.disturb_alpha > 0) for a in spec.arms}
    assert ("ce", False, False) in losses  # baseline
    assert ("smoothed_ce", False, False) in losses  # label smoothing
    assert ("smoothed_ce", True, False) in losses  # negative smoothing
    assert ("confidence_penalty", False, False) in losses
    assert ("ce", False, True) in losses  # DisturbLabel
    assert {a.loss for a in spec.arms} & {"gce", "sce", "bootstrap", "forward"}
    assert [c.label for c in study_conditions(spec)] == ["clean", "symmetric 40%"]


def test_verdict_and_report_commands(tmp_path):
    text = STUDY.format(source="digits", data_extra="", arm_extra="").replace("seeds = 1", "seeds = 3")
    study = write_study(tmp_path, text=text)
    out = tmp_path / "out"
    result = invoke("run", study, "--out", out, "-q")
    assert result.exit_code == 0, result.output
    assert (out / "report" / "index.html").is_file()  # run writes the report when it finishes
    (out / "report" / "index.html").unlink()
    verdict = invoke("verdict", out)
    assert verdict.exit_code == 0, verdict.output
    text = " ".join(verdict.stdout.split())  # the console wraps long lines
    assert "ls: With correct labels: accuracy" in text
    assert "At symmetric 20% noise" in text
    assert "verdicts" in verdict.stdout
    report = invoke("report", out)
    assert report.exit_code == 0, report.output
    assert (out / "report" / "index.html").is_file()
    assert (out / "report" / "report.md").is_file()
    assert_clean_error(invoke("verdict", out, "--at", "best"), "--at must be")
    assert_clean_error(invoke("verdict", tmp_path / "nowhere"), "no smoothflip study")
    assert_clean_error(invoke("report", tmp_path / "nowhere"), "no smoothflip study")


def test_attack_and_clean_commands_on_a_csv(tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    frame = pd.DataFrame(digits.data[:600], columns=[f"p{i}" for i in range(64)])
    frame["label"] = [f"d{v}" for v in digits.target[:600]]
    source = _csv(tmp_path, "digits.csv", frame)
    attacked = tmp_path / "attacked.csv"
    result = invoke(
        "attack", source, "--strategy", "random", "--budget", "60", "-o", attacked, "--label-column", "label"
    )
    assert result.exit_code == 0, result.output
    assert "60 of 600 labels flipped" in result.stdout
    table = pd.read_csv(attacked)
    assert int(table["flipped"].sum()) == 60
    assert (table["label"] != table["label_original"]).sum() == 60
    cleaned = tmp_path / "cleaned.parquet"
    result = invoke(
        "clean", attacked, "--defense", "knn", "-o", cleaned, "--label-column", "label", "--option", "k=5"
    )
    assert result.exit_code == 0, result.output
    assert "precision" in result.stdout
    assert "flagged" in set(pd.read_parquet(cleaned))
    assert_clean_error(
        invoke(
            "attack",
            source,
            "--strategy",
            "alfa",
            "--budget",
            "0.1",
            "-o",
            tmp_path / "x.csv",
            "--label-column",
            "label",
        ),
        "alfa attacks binary classifiers",
    )
    assert_clean_error(
        invoke(
            "attack",
            source,
            "--strategy",
            "random",
            "--budget",
            "lots",
            "-o",
            tmp_path / "x.csv",
            "--label-column",
            "label",
        ),
        "--budget 'lots'",
    )
    assert_clean_error(
        invoke(
            "clean",
            attacked,
            "--defense",
            "knn",
            "-o",
            tmp_path / "y.csv",
            "--label-column",
            "label",
            "--option",
            "k",
        ),
        "write key=value",
    )


def test_a_bug_shows_its_traceback_and_exits_1_while_bad_input_stays_one_line(tmp_path, monkeypatch):
    """The error split: SmoothflipError (bad input) -> one line, exit 2; anything else is a bug."""
    import subprocess
    import sys

    study = write_study(tmp_path)
    script = (
        "import sys, smoothflip.engine.classifier as c\n"
        "def broken(*a, **k):\n"
        "    raise TypeError('an engine bug')\n"
        "c.train_pack = broken\n"
        "from smoothflip.cli import app\n"
        "sys.argv = ['smoothflip', 'run', sys.argv[1], '--out', sys.argv[2], '-q']\n"
        "app()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(study), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" in done.stderr
    assert "TypeError: an engine bug" in done.stderr
    assert "error: an engine bug" not in done.stderr
    # the same TypeError from input validation (a bad study value) is a one-line user error
    bad = write_study(tmp_path, name="bad.toml", arm_extra='loss = "confidence_penalty"\nbeta = "high"')
    assert_clean_error(invoke("run", bad, "--out", tmp_path / "bad"), "beta")


def test_techniques_lists_every_registry_entry():
    from smoothflip.study.conditions import NOISE_MODELS
    from smoothflip.study.kinds import KINDS
    from smoothflip.techniques import techniques

    result = runner.invoke(app, ["techniques"], terminal_width=250)
    assert result.exit_code == 0, result.output
    for name in [*techniques(), *NOISE_MODELS, *KINDS]:
        assert re.search(rf"\b{re.escape(name)}\b", result.stdout), name
    assert "[[arms]]" in result.stdout  # titles are not eaten as markup
