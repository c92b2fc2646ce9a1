"""The atlas (`smoothflip atlas`): its shipped study files, a quick atlas end to end, and resuming after
a real kill -9 (slow)."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from importlib import resources
from types import SimpleNamespace

import pandas as pd
import pytest
from typer.testing import CliRunner

import smoothflip.engine.atlas as atlas
import smoothflip.study.meta as meta_module
from smoothflip.cli import app
from smoothflip.engine.atlas import AtlasStudy, atlas_names, atlas_specs, progress_weights
from smoothflip.engine.planning import Progress
from smoothflip.errors import StoreError
from smoothflip.study.conditions import study_conditions
from smoothflip.study.meta_keys import arm_words
from smoothflip.study.store import Store

runner = CliRunner()


def test_atlas_files_cover_every_builtin_dataset_and_model_with_the_same_arms_and_conditions():
    specs = {s.name.removeprefix("atlas-"): s for s in atlas_specs()}
    assert set(specs) == set(atlas_names())
    pairs = {(s.data.source, s.model.name) for s in specs.values()}
    assert {("mnist1d", "logistic"), ("mnist1d", "mlp"), ("mnist1d", "cnn1d"), ("digits", "mlp")} <= pairs
    assert ("digits", "cnn2d") in pairs or ("digits", "resnet") in pairs
    assert {"iris", "wine", "breast_cancer"} <= {s.data.source for s in specs.values()}
    synthetic = [s for s in specs.values() if s.data.source == "synthetic"]
    assert len(synthetic) >= 2
    assert len({s.data.options.get("class_sep") for s in synthetic}) == len(synthetic)  # other difficulties
    arms = {tuple(a.name for a in s.arms) for s in specs.values()}
    assert len(arms) == 1
    (names,) = arms
    assert names == ("ce", "ls-0.1", "cp-0.5", "disturb-0.1", "ols", "lr-0.1")
    from smoothflip.study.grid import arm_dict

    definitions = {tuple(repr(sorted(arm_dict(a).items())) for a in s.arms) for s in specs.values()}
    assert len(definitions) == 1
    words = [arm_words(arm_dict(a)) for a in next(iter(specs.values())).arms]
    assert words[1] == "smoothed_ce eps=0.1"
    assert "disturb 0.1" in words[3]
    labels = {tuple(c.label for c in study_conditions(s)) for s in specs.values()}
    assert labels == {("clean", "symmetric 20%", "pair 20%")}
    for s in specs.values():
        assert len(s.seeds) >= 5, s.name  # enough for a clean-label MDE per study
        assert s.baseline == "ce"


def test_atlas_files_ship_in_the_package():
    folder = resources.files("smoothflip.studies").joinpath("atlas")
    assert len([p for p in folder.iterdir() if p.name.endswith(".toml")]) == len(atlas_names()) >= 10


def test_quick_atlas_end_to_end_and_rerun(tmp_path):
    out = tmp_path / "atlas"
    args = ["atlas", "--quick", "--only", "iris-mlp", "--only", "wine-mlp", "--no-study-reports", "-q"]
    args += ["--pack-size", "64"]  # no pack-size probe
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "accuracy (primary, Holm family)" in result.stdout
    for name in ("iris-mlp", "wine-mlp"):
        with Store.open(out / name, readonly=True) as store:
            assert store.count() == 6 * 3 * 2  # arms x conditions x quick seeds
    pooled = pd.read_csv(out / "meta" / "pooled.csv")
    primary = pooled[pooled.role == "primary"]
    assert len(primary) == 5 * 3  # every technique under every condition
    assert (primary.k == 2).all()
    assert set(primary.condition) == {"clean", "symmetric 20%", "pair 20%"}
    assert (out / "meta" / "report" / "index.html").is_file()
    assert (out / "meta" / "report" / "figures" / "clean.png").is_file()
    # a rerun trains nothing and pools the same numbers
    again = runner.invoke(app, [*args, "--out", str(out)])
    assert again.exit_code == 0, again.output
    pd.testing.assert_frame_equal(pd.read_csv(out / "meta" / "pooled.csv"), pooled)
    # one study (--only iris-mlp, the --help example): trained (here: stored already), nothing to pool
    one = runner.invoke(app, ["atlas", "--quick", "--only", "iris-mlp", "-q", "--out", str(out)])
    assert one.exit_code == 0, one.output
    assert "atlas: one study (iris-mlp): nothing to pool" in one.stdout
    pd.testing.assert_frame_equal(pd.read_csv(out / "meta" / "pooled.csv"), pooled)


def test_atlas_bad_input_is_one_line(tmp_path):
    result = runner.invoke(app, ["atlas", "--quick", "--only", "cifar-resnet", "--out", str(tmp_path / "a")])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: --only 'cifar-resnet': not an atlas study; the atlas has {', '.join(atlas_names())}"
    ]
    assert not (tmp_path / "a").exists()
    result = runner.invoke(app, ["atlas", "--quick", "--address", "x:1", "--out", str(tmp_path / "a")])
    assert result.exit_code == 2
    assert "--executor ray" in result.stderr


@pytest.mark.slow
def test_atlas_resumes_after_kill_9(tmp_path):
    """A real `smoothflip atlas` killed with SIGKILL while its first study trains, then run again to
    the end: every run of every study stored once, and the pooled tables written."""
    out = tmp_path / "atlas"
    cmd = [
        sys.executable,
        "-m",
        "smoothflip",
        "atlas",
        "--quick",
        "--only",
        "mnist1d-cnn",
        "--only",
        "iris-mlp",
    ]
    cmd += ["--no-study-reports", "-q", "--pack-size", "12", "--checkpoint-seconds", "0", "--out", str(out)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    first = out / "mnist1d-cnn"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    stored = 0
    while time.time() < deadline and proc.poll() is None:
        if (first / "smoothflip.sqlite").exists():
            try:
                with Store.open(first, readonly=True) as store:
                    stored = store.count()
            except StoreError:  # created this instant, its schema not yet recorded
                stored = 0
            if stored:
                break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert 0 < stored < 36, "the kill did not interrupt the first study"
    assert not (out / "meta").exists()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    for name in ("mnist1d-cnn", "iris-mlp"):
        with Store.open(out / name, readonly=True) as store:
            assert store.integrity_check() == "ok"
            ids = [r.run_id for r in store.results()]
        assert len(ids) == len(set(ids)) == 36
    pooled = pd.read_csv(out / "meta" / "pooled.csv")
    assert (pooled[pooled.role == "primary"].k == 2).all()


@pytest.mark.slow
@pytest.mark.filterwarnings("error:the Ray checkpoint keeper is gone")  # it died: a bug, not a display
def test_atlas_through_ray_pools_the_same_numbers_as_locally(tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'smoothflip[ray]'")
    import logging

    from smoothflip.engine.atlas import run_atlas

    only = ["iris-mlp", "wine-mlp"]
    local = run_atlas(tmp_path / "local", only=only, quick=True, pack_size=12, checkpoint_seconds=-1)
    auth = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # a private test cluster: no token written to ~/.ray
    if ray.is_initialized():
        ray.shutdown()
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=200 * 1024**2,
        logging_level=logging.WARNING,
        _system_config={"health_check_failure_threshold": 100},
    )
    try:
        seen = []
        remote = run_atlas(
            tmp_path / "ray", only=only, quick=True, executor="ray", pack_size=12, progress=seen.append
        )
    finally:
        ray.shutdown()
        if auth is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = auth
    assert seen[-1].runs_done == seen[-1].runs_total == 72
    assert [p.work_done for p in seen] == sorted(p.work_done for p in seen)
    a, b = local.pooled_frame(), remote.pooled_frame()
    assert list(a.key) == list(b.key)
    pd.testing.assert_series_equal(a.k, b.k)
    assert a.estimate.to_numpy() == pytest.approx(b.estimate.to_numpy(), abs=1e-6)


def planned_studies(tmp_path) -> list[AtlasStudy]:
    """a: 10 runs left estimated at 100 s; b: 10 runs left without an estimate; c: all stored."""
    return [
        AtlasStudy("a", "spec-a", tmp_path / "a", runs=10, stored=0, seconds=100.0),
        AtlasStudy("b", "spec-b", tmp_path / "b", runs=12, stored=2, seconds=None),
        AtlasStudy("c", "spec-c", tmp_path / "c", runs=5, stored=5, seconds=None),
    ]


def test_progress_weights_are_all_seconds_or_all_runs(tmp_path):
    a, b, c = planned_studies(tmp_path)
    # b has no estimate: its 10 runs at a's 10 s per run, not "10" beside a's 100 seconds
    assert progress_weights([a, b, c]) == [100.0, 100.0, 0.0]
    untimed = dataclasses.replace(a, seconds=None)
    assert progress_weights([untimed, b, c]) == [10.0, 10.0, 0.0]  # no estimate anywhere: runs
    timed = dataclasses.replace(b, seconds=30.0)
    assert progress_weights([a, timed, c]) == [100.0, 30.0, 0.0]
    b_only = dataclasses.replace(b, seconds=40.0)
    assert progress_weights([untimed, b_only]) == [40.0, 40.0]


def test_the_atlas_bar_advances_by_estimated_seconds(tmp_path, monkeypatch):
    planned = planned_studies(tmp_path)
    planned = [
        dataclasses.replace(p, weight=w) for p, w in zip(planned, progress_weights(planned), strict=True)
    ]
    by_spec = {p.spec: p for p in planned}
    specs = [SimpleNamespace(name=f"atlas-{p.name}") for p in planned]
    monkeypatch.setattr(atlas, "atlas_specs", lambda only, quick: specs)
    monkeypatch.setattr(atlas, "plan_atlas", lambda *args, **kwargs: planned)
    monkeypatch.setattr(atlas, "run_study", lambda spec, directory, **kw: fake_run(by_spec[spec], **kw))
    monkeypatch.setattr(meta_module, "meta", lambda dirs, **kwargs: ("pooled", len(dirs)))

    def fake_run(study, *, progress, on_plan):
        left = study.runs - study.stored
        for done in (study.stored + left / 2, study.runs):
            progress(Progress(done=done, total=study.runs, packs_done=0, packs_total=1))

    seen, estimates = [], []
    result = atlas.run_atlas(
        tmp_path / "atlas", progress=seen.append, on_plan=lambda p, s: estimates.append(s)
    )
    assert result == ("pooled", 3)
    assert estimates == [200.0]  # a's 100 s, and b's 10 runs at a's 10 s per run
    assert {p.work_total for p in seen} == {200.0}
    work = [(p.study, p.work_done) for p in seen]
    assert work == [
        ("a", 50.0),
        ("a", 100.0),
        ("b", 150.0),
        ("b", 200.0),
        ("c", 200.0),
        ("c", 200.0),
        ("", 200.0),
    ]
