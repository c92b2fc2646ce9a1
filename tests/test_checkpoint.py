"""Checkpoints inside a pack: resume after an interruption gives bitwise the results of an
uninterrupted pack; damaged, foreign and hostile checkpoints are ignored (never unpickled as
objects); planning cuts interrupted packs again exactly; a real ``kill -9`` loop (slow)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from smoothflip.engine import resolve_study, run_study
from smoothflip.engine.checkpoint import (
    DEFAULT_SECONDS,
    CheckpointWarning,
    FileCheckpoints,
    FilePackCheckpoint,
    Interval,
    resumed_packs,
)
from smoothflip.engine.classifier.pack import train_pack
from smoothflip.engine.language.pack import train_lm_pack
from smoothflip.study.grid import make_packs
from smoothflip.study.spec import loads_study
from smoothflip.study.store import Store, StoreError

MLP = """
name = "ckpt"
seeds = 2
[data]
source = "digits"
test_fraction = 0.25
[model]
name = "mlp"
hidden = [16]
[train]
epochs = 4
batch_size = 64
[[arms]]
name = "ce"
[[arms]]
name = "ls"
loss = "smoothed_ce"
eps = 0.2
[[arms]]
name = "disturb"
disturb_alpha = 0.2
[[arms]]
name = "ols"
loss = "online_ls"
[[arms]]
name = "nls"
loss = "smoothed_ce"
eps = -0.3
warmup_epochs = 2
[[conditions]]
noise = "symmetric"
rates = [0.0, 0.3]
"""

RESNET = """
name = "ckpt-resnet"
seeds = 1
[data]
source = "digits"
test_fraction = 0.25
[model]
name = "resnet"
depth = 8
width = 4
[train]
epochs = 3
batch_size = 128
augment = "crop_flip"
eval_every = 2
[[arms]]
name = "ce"
[[arms]]
name = "ls"
loss = "smoothed_ce"
eps = 0.1
[[conditions]]
noise = "symmetric"
rates = [0.2]
"""

LM = """
name = "ckpt-lm"
kind = "lm"
seeds = 1
[data]
source = "language"
[data.options]
vocab_size = 64
num_train = 64
num_validation = 16
num_test = 16
length = 10
[model]
name = "mlp"
context = 3
[train]
epochs = 3
batch_size = 16
[[arms]]
name = "ce"
[[arms]]
name = "ls"
loss = "smoothed_ce"
eps = 0.2
"""


class Interrupted(Exception):
    """Stands for a kill right after a checkpoint was written."""


class StopAfter(FilePackCheckpoint):
    """Saves every epoch, and 'dies' after the ``stop``-th save."""

    def __init__(self, *args, stop: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.stop = stop

    def save(self, state) -> None:
        super().save(state)
        if self.saves >= self.stop:
            raise Interrupted


def _fingerprint(results) -> list:
    """Everything a stored run holds that training determines (timings excluded)."""
    out = []
    for r in results:
        out.append(
            json.dumps(
                {"id": r.run_id, "metrics": r.metrics, "curves": r.curves, "extras": r.extras},
                sort_keys=True,
                default=str,
            )
        )
        out.append({k: bytes(v) for k, v in r.artifacts.items()})
    return out


def _resume_matches(trainer, runs, data, tmp_path, stop: int) -> FilePackCheckpoint:
    ids = [r.run_id for r in runs]
    whole = trainer(runs, data)
    dying = StopAfter(tmp_path, "study", ids, 0, stop=stop)
    with pytest.raises(Interrupted):
        trainer(runs, data, checkpoint=dying)
    assert dying.path.exists()
    assert dying.manifest.exists()
    resumed_ckpt = FilePackCheckpoint(tmp_path, "study", ids, 0)
    resumed = trainer(runs, data, checkpoint=resumed_ckpt)
    assert _fingerprint(resumed) == _fingerprint(whole)
    assert [r.timings["steps"] for r in resumed] == [r.timings["steps"] for r in whole]
    return resumed_ckpt


@pytest.mark.parametrize("stop", [1, 3])
def test_a_classifier_pack_resumed_from_a_checkpoint_equals_an_uninterrupted_one(tmp_path, stop):
    """MLP with noise, flipping, a stateful loss (online LS) and warm-up, interrupted after epoch 1
    or 3 of 4: bitwise the same metrics, curves and artifacts."""
    dataset, runs = resolve_study(loads_study(textwrap.dedent(MLP.replace("seeds = 2", "seeds = 1"))))
    ckpt = _resume_matches(train_pack, runs, dataset, tmp_path, stop)
    assert ckpt.saves == 4 - stop - 1  # the resumed pack saves after its epochs but the last


def test_a_batch_norm_resnet_with_augmentation_and_eval_every_resumes_bitwise(tmp_path):
    dataset, runs = resolve_study(loads_study(textwrap.dedent(RESNET)))
    _resume_matches(train_pack, runs, dataset, tmp_path, 1)


def test_a_language_model_pack_resumes_bitwise(tmp_path):
    corpus, runs = resolve_study(loads_study(textwrap.dedent(LM)))
    _resume_matches(train_lm_pack, runs, corpus, tmp_path, 1)


def _small():
    dataset, runs = resolve_study(loads_study(textwrap.dedent(MLP.replace("epochs = 4", "epochs = 2"))))
    return dataset, runs[:3]


def test_a_damaged_checkpoint_is_ignored_with_one_warning_and_the_pack_starts_over(tmp_path):
    dataset, runs = _small()
    ids = [r.run_id for r in runs]
    whole = train_pack(runs, dataset)
    ckpt = FilePackCheckpoint(tmp_path, "study", ids, 0)
    ckpt.directory.mkdir(parents=True, exist_ok=True)
    ckpt.path.write_bytes(b"PK\x03\x04 not a checkpoint at all")
    with pytest.warns(CheckpointWarning, match="damaged checkpoint"):
        again = train_pack(runs, dataset, checkpoint=ckpt)
    assert _fingerprint(again) == _fingerprint(whole)


def test_a_checkpoint_of_another_study_or_pack_is_ignored(tmp_path):
    dataset, runs = _small()
    ids = [r.run_id for r in runs]
    dying = StopAfter(tmp_path, "other-study", ids, 0, stop=1)
    with pytest.raises(Interrupted):
        train_pack(runs, dataset, checkpoint=dying)
    whole = train_pack(runs, dataset)
    for identity, members in (("study", ids), ("other-study", ids[:2])):
        probe = FilePackCheckpoint(tmp_path, identity, members, 0)
        probe.path.write_bytes(dying.path.read_bytes())  # the same bytes under this pack's name
        with pytest.warns(CheckpointWarning, match="another study or pack"):
            assert probe.load() is None
    with pytest.warns(CheckpointWarning):
        again = train_pack(runs, dataset, checkpoint=FilePackCheckpoint(tmp_path, "study", ids, 0))
    assert _fingerprint(again) == _fingerprint(whole)


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_checkpoint_holding_a_pickled_object_is_never_unpickled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = FilePackCheckpoint(tmp_path, "study", ["a"], 0)
    ckpt.directory.mkdir(parents=True, exist_ok=True)
    torch.save({"meta": {"format": 1, "identity": "study", "run_ids": ["a"]}, "x": _Boom()}, ckpt.path)
    with pytest.warns(CheckpointWarning, match="damaged"):
        assert ckpt.load() is None
    assert not (tmp_path / "PWNED").exists()


def test_the_interval_saves_every_epoch_at_zero_never_when_negative_and_waits_otherwise():
    assert Interval(0).due()
    assert not Interval(-1).due()
    waiting = Interval(3600)
    assert not waiting.due()
    waiting._last -= 3601
    assert waiting.due()


def test_the_cli_default_is_the_engine_default():
    from smoothflip.cli import DEFAULT_CHECKPOINT_SECONDS

    assert DEFAULT_CHECKPOINT_SECONDS == DEFAULT_SECONDS


def test_planning_cuts_a_checkpointed_pack_again_with_the_same_members():
    _dataset, runs = resolve_study(loads_study(textwrap.dedent(MLP)))
    packs = make_packs(runs, 7)
    interrupted = [r.run_id for r in packs[1]]
    replanned = resumed_packs(
        make_packs(runs, 4), [interrupted, ["unknown-run"]], lambda rs: make_packs(rs, 4)
    )
    assert [r.run_id for r in replanned[0]] == interrupted
    flat = sorted(r.run_id for p in replanned for r in p)
    assert flat == sorted(r.run_id for r in runs)  # every run once
    assert max(len(p) for p in replanned[1:]) <= 4


def test_a_study_resumes_an_interrupted_pack_and_deletes_its_checkpoint(tmp_path, monkeypatch):
    """Through run_study: a pack interrupted after its first checkpoint is planned again (under
    another pack size) and resumed; the stored results equal a study run without interruption,
    and no checkpoint is left."""
    spec = loads_study(textwrap.dedent(MLP.replace("seeds = 2", "seeds = 1")))
    run_study(spec, tmp_path / "whole", pack_size=10, checkpoint_seconds=-1)

    calls = {"n": 0}
    original = FilePackCheckpoint.save

    def dying_save(self, state):
        original(self, state)
        calls["n"] += 1
        raise Interrupted

    monkeypatch.setattr(FilePackCheckpoint, "save", dying_save)
    with pytest.raises(Interrupted):
        run_study(spec, tmp_path / "cut", pack_size=10, checkpoint_seconds=0)
    monkeypatch.setattr(FilePackCheckpoint, "save", original)
    checkpoints = FileCheckpoints(tmp_path / "cut", "unused")
    assert len(list(checkpoints.directory.glob("*.pt"))) == 1
    run_study(spec, tmp_path / "cut", pack_size=3, checkpoint_seconds=0)
    assert not list(checkpoints.directory.glob("*.pt"))
    assert not list(checkpoints.directory.glob("*.json"))
    with Store.open(tmp_path / "whole", readonly=True) as a, Store.open(tmp_path / "cut", readonly=True) as b:
        ra = {r.run_id: r for r in a.results()}
        rb = {r.run_id: r for r in b.results()}
    assert ra.keys() == rb.keys()
    assert _fingerprint([ra[k] for k in sorted(ra)]) == _fingerprint([rb[k] for k in sorted(rb)])


# --------------------------------------------------------------------------- a real kill -9 loop

KILLABLE = MLP.replace("epochs = 4", "epochs = 12").replace("seeds = 2", "seeds = 2")


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_at_most_an_epoch_and_ends_bitwise_equal(tmp_path):
    """``smoothflip run`` killed with SIGKILL five times at random moments, with a checkpoint every
    epoch: every kill after the first checkpoint leaves progress (stored runs or a later checkpoint
    epoch), the final store equals an uninterrupted run bitwise, and no run is stored twice."""
    study_file = tmp_path / "killable.toml"
    study_file.write_text(textwrap.dedent(KILLABLE))
    env = {**os.environ, "PYTHONHASHSEED": "0"}

    def cmd(out: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "smoothflip",
            "run",
            str(study_file),
            "--out",
            str(out),
            "--pack-size",
            "10",
            "--checkpoint-seconds",
            "0",
            "-q",
        ]

    whole = tmp_path / "whole"
    subprocess.run(cmd(whole), env=env, check=True, capture_output=True, timeout=600)
    out = tmp_path / "out"
    manifests = out / "checkpoints"
    rng = np.random.default_rng(0)

    def progress() -> tuple[int, int]:
        stored = 0
        if (out / "smoothflip.sqlite").exists():
            with contextlib.suppress(StoreError), Store.open(out, readonly=True) as store:
                stored = store.count()  # (StoreError: the store is being created this instant)
        epochs = 0
        for m in manifests.glob("*.json") if manifests.is_dir() else ():
            with contextlib.suppress(OSError, ValueError):
                epochs = max(epochs, json.loads(m.read_text())["epoch"])
        return stored, epochs

    seen = []
    for _ in range(5):
        before = progress()
        proc = subprocess.Popen(cmd(out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and progress() <= before:
            time.sleep(0.05)
        time.sleep(float(rng.uniform(0.0, 0.5)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        after = progress()
        assert after > before, "a kill after a checkpoint left no progress"
        seen.append(after)
    done = subprocess.run(cmd(out), env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    with Store.open(whole, readonly=True) as a, Store.open(out, readonly=True) as b:
        assert b.integrity_check() == "ok"
        ra = {r.run_id: r for r in a.results()}
        rb = {r.run_id: r for r in b.results()}
        assert b.count() == len(rb) == len(ra)
    assert _fingerprint([ra[k] for k in sorted(ra)]) == _fingerprint([rb[k] for k in sorted(rb)])
    assert not list(manifests.glob("*.pt"))
