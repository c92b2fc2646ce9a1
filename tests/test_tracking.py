"""Experiment tracking: MLflow read back with MlflowClient, TensorBoard with its EventAccumulator; a
resumed study and a second export log nothing twice; a dead or failing tracker warns once and the
study completes with every run stored; the command line's --track and export --to."""

from __future__ import annotations

import errno
import importlib.util
import socket
import sys
import textwrap
import warnings

import numpy as np
import pytest
from torch import nn
from typer.testing import CliRunner

import smoothflip as sf
from smoothflip.cli import app
from smoothflip.study.store import Store
from smoothflip.tracking import TRACKERS, TrackerEntry
from smoothflip.tracking.session import TrackingWarning

pytest.importorskip("mlflow", reason="pip install 'smoothflip[mlflow]'")
pytest.importorskip("tensorboard", reason="pip install 'smoothflip[tensorboard]'")

runner = CliRunner()


def make_net(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), num_classes))


def study(seeds: int = 2, name: str = "tracked") -> sf.Study:
    rng = np.random.default_rng(0)
    y = np.arange(120) % 3
    x = (rng.normal(size=(3, 4))[y] + rng.normal(size=(120, 4))).astype(np.float32)
    return sf.Study(
        name=name,
        seeds=seeds,
        data=(x, y),
        model=make_net,
        train={"epochs": 3, "batch_size": 40},
        arms=[{"name": "ce"}, {"name": "ls", "loss": "smoothed_ce", "eps": 0.1}],
        conditions=[{"noise": "symmetric", "rates": [0.2]}],
    )


def stored_runs(directory) -> dict:
    with Store.open(directory, readonly=True) as store:
        return {r.run_id: r for r in store.results()}


def mlflow_runs(uri: str, experiment: str) -> tuple[list, list]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], max_results=1000)
    parents = [r for r in found if r.data.tags.get("smoothflip.parent") == "true"]
    children = [r for r in found if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_and_tensorboard_hold_every_run_once_and_read_back(tmp_path):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    uri = (tmp_path / "mlruns").as_uri()
    track = {"mlflow": {"uri": uri, "experiment": "exp"}, "tensorboard": str(tmp_path / "tb")}
    out = tmp_path / "study"
    study().run(out=out, track=track, progress=False)
    runs = stored_runs(out)
    assert len(runs) == 4

    client = MlflowClient(tracking_uri=uri)
    parents, children = mlflow_runs(uri, "exp")
    assert len(parents) == 1
    assert len(children) == 4
    parent = parents[0].info.run_id
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent}
    artifacts = {a.path for a in client.list_artifacts(parent, "report")}
    assert {"report/index.html", "report/report.md", "report/figures"} <= artifacts
    for child in children:
        run = runs[child.data.tags["smoothflip.run_id"]]  # one nested run per stored run
        assert child.data.tags["smoothflip.condition_id"] == run.condition_id
        assert child.data.tags["smoothflip.study"] == "tracked"
        params = child.data.params
        assert (params["arm"], params["technique"], params["seed"]) == (
            run.arm,
            run.config["arm"]["loss"],
            str(run.seed),
        )
        assert params["condition"] == "symmetric 20%"
        assert params["model"].startswith(f"memory:{__name__}.make_net@")
        assert params["data"].startswith("memory:arrays@")
        if run.arm == "ls":
            assert params["technique.eps"] == "0.1"
        history = client.get_metric_history(child.info.run_id, "test_acc")
        assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == list(
            zip([1, 2, 3], run.curves["test_acc"], strict=True)
        )
        assert child.data.metrics["selected_test_acc"] == run.metrics["selected"]["test_acc"]

        folder = tmp_path / "tb" / "tracked" / run.arm / "symmetric-20" / f"seed-{run.seed}"
        events = EventAccumulator(str(folder))
        events.Reload()
        scalars = events.Scalars("test_acc")
        assert [s.step for s in scalars] == [1, 2, 3]
        assert [s.value for s in scalars] == pytest.approx(run.curves["test_acc"], rel=1e-6)  # float32
        final = events.Scalars("final/selected_test_acc")
        assert len(final) == 1
        assert final[0].value == pytest.approx(run.metrics["selected"]["test_acc"], rel=1e-6)

    # resumed (one nested run's logging cut off by a kill), then grown by a seed: each run held once
    cut = children[0].info.run_id
    client.update_run(cut, status="RUNNING")
    event_files = sorted(p.name for p in (tmp_path / "tb").rglob("events.out.tfevents.*"))
    assert study().run(out=out, track=track, progress=False, report=False).trained == 0
    _, children = mlflow_runs(uri, "exp")
    assert len(children) == 4
    assert cut not in {c.info.run_id for c in children}
    assert {c.info.status for c in children} == {"FINISHED"}
    assert study(seeds=3).run(out=out, track=track, progress=False, report=False).trained == 2
    parents, children = mlflow_runs(uri, "exp")
    assert len(parents) == 1
    assert sorted(c.data.tags["smoothflip.run_id"] for c in children) == sorted(stored_runs(out))
    grown = sorted(p.name for p in (tmp_path / "tb").rglob("events.out.tfevents.*"))
    assert len(grown) == 6
    assert set(event_files) <= set(grown)


class FullDisk:
    """A tracker whose disk fills up after its first run."""

    name = "full-disk"
    keeps_report = False

    def __init__(self) -> None:
        self.logged = 0

    def describe(self) -> str:
        return "full-disk at /nowhere"

    def check(self) -> None:
        return None

    def begin(self, study) -> set[str]:
        return set()

    def log_run(self, study, run) -> None:
        if self.logged:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.logged += 1

    def attach_report(self, study, report) -> None:
        return None

    def end(self, study, status) -> None:
        return None


@pytest.mark.parametrize("failing", ["dead mlflow server", "disk full"])
def test_a_failing_tracker_warns_once_and_the_study_completes(failing, tmp_path, monkeypatch):
    if failing == "disk full":
        entry = TrackerEntry("full-disk", "a test tracker", f"{__name__}:FullDisk", "json", "none", "dir")
        monkeypatch.setitem(TRACKERS, "full-disk", entry)
        track = ["full-disk"]
    else:
        track = [f"mlflow=http://127.0.0.1:{free_port()}"]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        results = study(name="dead").run(out=tmp_path / "out", track=track, progress=False, report=False)
    raised = [w for w in seen if issubclass(w.category, TrackingWarning)]
    assert len(raised) == 1
    assert "the study goes on without it" in str(raised[0].message)
    assert results.trained == 4
    assert len(stored_runs(tmp_path / "out")) == 4


STUDY_FILE = """
name = "cli-tracked"
seeds = 2
[data]
source = "digits"
[model]
name = "logistic"
[train]
epochs = 2
batch_size = 200
[[arms]]
name = "ce"
[[arms]]
name = "ls"
loss = "smoothed_ce"
eps = 0.1
"""


def test_the_command_line_tracks_exports_and_says_what_is_wrong_in_one_line(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (tmp_path / "s.toml").write_text(textwrap.dedent(STUDY_FILE))
    out, tb = tmp_path / "out", tmp_path / "tb"
    result = runner.invoke(
        app, ["run", str(tmp_path / "s.toml"), "--out", str(out), "-q", "--track", f"tensorboard={tb}"]
    )
    assert result.exit_code == 0, result.output
    events = EventAccumulator(str(tb / "cli-tracked" / "ls" / "clean" / "seed-1"))
    events.Reload()
    assert [s.step for s in events.Scalars("val_acc")] == [1, 2]

    uri = (tmp_path / "mlruns").as_uri()
    for logged in ("2 run(s) logged, 0 already there", "0 run(s) logged, 2 already there"):
        pushed = runner.invoke(app, ["export", str(out), "--to", f"mlflow={uri}"])
        assert pushed.exit_code == 0, pushed.output
        assert logged.replace("2", "4") in pushed.stdout
    parents, children = mlflow_runs(uri, "cli-tracked")
    assert len(parents) == 1
    assert len(children) == 4

    for args, message in (
        (["run", str(tmp_path / "s.toml"), "--out", str(out), "--track", "wandb"], "unknown tracker 'wandb'"),
        (
            ["export", str(out), "--to", f"mlflow=http://127.0.0.1:{free_port()}"],
            "failed: ConnectionRefusedError",
        ),
        (["export", str(out), "--to", "mlflow=sqlite:///x.db"], "needs the full mlflow package"),
        (["export", str(out), "--to", f"tensorboard={tb}", "-f", "parquet"], "--format: options of the file"),
        (["export", str(out), "--to", f"tensorboard={tb}", "-o", str(tmp_path)], "--out: options of"),
    ):
        if "sqlite" in args[-1] and importlib.util.find_spec("sqlalchemy") is not None:
            continue  # the full mlflow is installed: a database store works
        failed = runner.invoke(app, args)
        assert failed.exit_code == 2
        assert len(failed.stderr.strip().splitlines()) == 1
        assert failed.stderr.startswith("error: ")
        assert message in failed.stderr
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    missing = runner.invoke(
        app, ["run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "o2"), "--track", "tensorboard"]
    )
    assert missing.exit_code == 2
    assert "pip install 'smoothflip[tensorboard]'" in missing.stderr
    assert not (tmp_path / "o2").exists()
    assert len(stored_runs(out)) == 4


def test_a_certified_runs_own_table_is_logged_with_its_params():
    from smoothflip.study.store import RunResult
    from smoothflip.tracking.session import run_params

    config = {
        "arm": {"name": "ce", "loss": "ce"},
        "train": {"epochs": 3},
        "certify": {"partitions": [20, 50], "scheme": "hash", "d": 1, "radii": [0, 2]},
    }
    params = run_params(RunResult("r1", "ce", "clean", "none", 0.0, 0, config, {}, {}, {}, {}, {}))
    assert params["certify.partitions"] == "[20, 50]"
    assert params["certify.scheme"] == "hash"
    assert params["certify.d"] == "1"
    assert params["train.epochs"] == "3"
