"""The user-trainer track: the user's own loop, run by run, with smoothflip's grid, labels, techniques,
metrics, storage, resume and failure handling; batch norm in packs; the shipped examples."""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from smoothflip.cli import app
from smoothflip.engine import resolve_study, run_study
from smoothflip.engine.classifier.pack import train_pack
from smoothflip.engine.classifier.reference import train_reference
from smoothflip.engine.trainer import TRACK as TRAINERS
from smoothflip.study.results import load_study_data
from smoothflip.study.spec import loads_study
from smoothflip.study.store import Store
from smoothflip.study.verdict import study_verdict

EXAMPLES = Path(__file__).parents[1] / "examples" / "own_loop"
runner = CliRunner()

# A user loop that does exactly what smoothflip's own per-run trainer does, written only against the
# TrainerRun API (and smoothflip's public optimizer helpers): its results must equal the reference's.
MIMIC = """
import torch
from smoothflip.engine.schedule import make_lr_schedule, make_optimizer
from smoothflip.models import build_model


def train(run):
    model = build_model(run.options["net"], input_shape=run.input_shape, num_classes=run.num_classes,
                        options={k: v for k, v in run.options.items() if k != "net"}).to(run.device)
    optimizer = make_optimizer(list(model.parameters()), run.train)
    steps = run.num_epochs * -(-len(run.train_indices) // run.train["batch_size"])
    schedule = make_lr_schedule(optimizer, run.train, steps)
    for epoch in run.epochs():
        model.train()
        total, seen = 0.0, 0
        for x, y in run.train_batches():
            loss = run.criterion(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total, seen = total + float(loss.detach()) * len(y), seen + len(y)
        val, test = run.predict(model, run.x_val), run.predict(model, run.x_test)
        run.report(epoch, val_logits=val, test_logits=test,
                   train_loss=total / seen, train_logits=run.predict(model, run.x_train_eval))


def broken(run):
    if run.seed == 1:
        raise RuntimeError("the GPU caught fire")
    train(run)


def wrong_shape(run):
    logits = torch.zeros(len(run.val_indices), run.num_classes + 1)
    run.report(1, val_logits=logits, test_logits=torch.zeros(len(run.test_indices), run.num_classes + 1))


def nan_logits(run):
    run.report(1, val_logits=torch.full((len(run.val_indices), run.num_classes), float("nan")),
               test_logits=torch.zeros(len(run.test_indices), run.num_classes))


def returns_logits(run):
    return {"val_logits": torch.zeros(len(run.val_indices), run.num_classes),
            "test_logits": torch.zeros(len(run.test_indices), run.num_classes)}


def slow(run):
    import time
    time.sleep(0.4)
    train(run)


not_callable = 42
"""

STUDY = """
name = "own-loop"
seeds = 2
[data]
source = "digits"
test_fraction = 0.25
[model]
{model}
[train]
epochs = 2
batch_size = 64
{train}
[[arms]]
name = "ce"
[[arms]]
name = "ls"
loss = "smoothed_ce"
eps = 0.1
[[arms]]
name = "disturb"
disturb_alpha = 0.2
[[arms]]
name = "ols"
loss = "online_ls"
warmup_epochs = 1
[[conditions]]
noise = "symmetric"
rates = [0.0, 0.3]
[probes]
seeds = 0
"""


def write(tmp_path: Path, *, model: str, train: str = "", text: str = STUDY) -> Path:
    (tmp_path / "loops.py").write_text(MIMIC)
    path = tmp_path / "study.toml"
    path.write_text(textwrap.dedent(text.format(model=model, train=train)))
    return path


def test_the_trainer_run_api_reproduces_the_reference_trainer(tmp_path):
    from test_engine import assert_same_result

    builtin = loads_study(textwrap.dedent(STUDY.format(model='name = "mlp"\nhidden = [16]', train="")))
    trainer = loads_study(
        textwrap.dedent(
            STUDY.format(model='trainer = "loops.py:train"\nnet = "mlp"\nhidden = [16]', train="")
        ),
        base_dir=tmp_path,
    )
    (tmp_path / "loops.py").write_text(MIMIC)
    assert trainer.kind == "trainer"  # inferred from [model] trainer
    data, builtin_runs = resolve_study(builtin)
    _, trainer_runs = resolve_study(trainer)
    for mine, theirs in zip(trainer_runs, builtin_runs, strict=True):
        got = TRAINERS.train_reference(mine, data, base_dir=str(tmp_path))
        want = train_reference(theirs, data)
        object.__setattr__(got, "run_id", want.run_id)  # the configs differ (model table), the training not
        assert_same_result(got, want)


def test_a_resnet_study_as_a_pack_and_as_a_user_loop_give_the_same_verdicts(tmp_path):
    """Batch norm: the built-in ResNet trains as a pack equal to the per-run reference, and a user loop
    over the same image folder reproduces the same numbers, so the verdicts agree word for word."""
    from smoothflip.data.images import write_digit_images
    from test_engine import assert_same_result

    write_digit_images(tmp_path / "images", per_class=8, test_per_class=4, size=8, shift=1)
    train = 'augment = "crop_flip"\naugment_padding = 1\nlr = 0.01'
    resnet = 'name = "resnet"\ndepth = 8\nwidth = 4'
    text = STUDY.replace('source = "digits"\ntest_fraction = 0.25', 'source = "images"')
    pack_spec = loads_study(textwrap.dedent(text.format(model=resnet, train=train)), base_dir=tmp_path)
    data, runs = resolve_study(pack_spec)
    for result, run in zip(train_pack(runs, data), runs, strict=True):
        assert_same_result(result, train_reference(run, data))
    run_study(pack_spec, tmp_path / "pack")
    mine = write(
        tmp_path,
        model='trainer = "loops.py:train"\nnet = "resnet"\ndepth = 8\nwidth = 4',
        train=train,
        text=text,
    )
    run_study(loads_study(mine.read_text(), base_dir=tmp_path), tmp_path / "loop")
    words = []
    for directory in ("pack", "loop"):
        verdict = study_verdict(load_study_data(tmp_path / directory))
        words.append(
            [
                # 5 decimals: the smooth ECE (a self-consistent bandwidth) of the pack and of the user
                # loop differ by ~1e-6 here (float rounding of the two paths), across a 6-decimal edge
                (c.condition, c.arm, c.metric.key, c.verdict, round(c.mean_diff, 5))
                for c in verdict.comparisons
            ]
        )
    assert words[0] == words[1]
    assert len(words[0]) == 3 * 2 * 9  # 5 metrics + AURC, E-AURC, class-wise and smooth ECE


def test_a_failing_function_is_recorded_the_study_goes_on_and_a_rerun_retries_it(tmp_path):
    study = write(tmp_path, model='trainer = "loops.py:broken"\nnet = "mlp"\nhidden = [8]')
    out = tmp_path / "out"
    first = runner.invoke(app, ["run", str(study), "--out", str(out), "-q"])
    assert first.exit_code == 2, first.output
    assert "8 run(s) failed" in first.stderr
    assert "RuntimeError: the GPU caught fire" in first.stderr
    assert "loops.py, line" in first.stderr  # where the user's code raised
    with Store.open(out, readonly=True) as store:
        assert store.count() == 4 * 2  # seed 0 of every arm and condition is stored
        failures = store.failures()
    assert len(failures) == 8
    assert {f.seed for f, _ in failures} == {1}
    assert all(attempts == 1 for _, attempts in failures)
    report = (out / "report" / "report.md").read_text()
    assert "8 failed and will be retried" in report
    again = runner.invoke(app, ["run", str(study), "--out", str(out), "-q"])  # still broken: attempt 2
    assert again.exit_code == 2
    with Store.open(out, readonly=True) as store:
        assert all(attempts == 2 for _, attempts in store.failures())
    # fix the code, not the study file (the same study: its stored runs stay valid)
    (tmp_path / "loops.py").write_text(MIMIC.replace('raise RuntimeError("the GPU caught fire")', "pass"))
    done = runner.invoke(app, ["run", str(study), "--out", str(out), "-q"])
    assert done.exit_code == 0, done.output
    with Store.open(out, readonly=True) as store:
        assert store.count() == 16
        assert store.failures() == []


@pytest.mark.parametrize(
    ("model", "match"),
    [
        ('trainer = "nothere.py:train"', "nothere.py"),
        ('trainer = "loops.py:absent"', "has no attribute 'absent'"),
        ('trainer = "loops.py:not_callable"', "'not_callable' is not callable"),
        ('trainer = "loops"', 'model.trainer = "loops": write "file.py:function"'),
    ],
)
def test_a_bad_trainer_reference_is_one_line_before_anything_is_stored(tmp_path, model, match):
    study = write(tmp_path, model=model)
    result = runner.invoke(app, ["run", str(study), "--out", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert match in result.stderr
    assert not (tmp_path / "out" / "smoothflip.sqlite").exists()


def test_a_trainer_file_with_a_syntax_error_names_the_file_and_line(tmp_path):
    study = write(tmp_path, model='trainer = "oops.py:train"')
    (tmp_path / "oops.py").write_text("def train(run):\n    return (\n")
    result = runner.invoke(app, ["run", str(study), "--out", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 2
    assert "SyntaxError" in result.stderr
    assert "oops.py, line" in result.stderr


@pytest.mark.parametrize(
    ("function", "match"),
    [
        ("wrong_shape", ", 11) (torch.float32) at epoch 1; expected a float array of shape"),
        ("nan_logits", "non-finite validation logits at epoch 1"),
    ],
)
def test_bad_logits_fail_the_run_with_one_line(tmp_path, function, match):
    text = STUDY.replace("seeds = 2", "seeds = 1")
    study = write(tmp_path, model=f'trainer = "loops.py:{function}"', text=text)
    result = runner.invoke(app, ["run", str(study), "--out", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 2, result.output
    assert match in result.stderr.splitlines()[-1]


def test_a_function_may_return_its_logits_instead_of_reporting(tmp_path):
    study = write(
        tmp_path, model='trainer = "loops.py:returns_logits"', text=STUDY.replace("seeds = 2", "seeds = 1")
    )
    run_study(loads_study(study.read_text(), base_dir=tmp_path), tmp_path / "out")
    data = load_study_data(tmp_path / "out")
    assert len(data.results) == 8
    assert math.isclose(data.results[0].metrics["selected"]["test_acc"], 0.1, abs_tol=0.05)  # all-zero logits


def test_workers_train_runs_in_parallel_processes_with_the_same_results(tmp_path):
    study = write(tmp_path, model='trainer = "loops.py:train"\nnet = "mlp"\nhidden = [8]')
    spec = loads_study(study.read_text(), base_dir=tmp_path)
    run_study(spec, tmp_path / "one")
    run_study(spec, tmp_path / "two", workers=2)
    with Store.open(tmp_path / "one", readonly=True) as a, Store.open(tmp_path / "two", readonly=True) as b:
        one = {r.run_id: r.metrics for r in a.results()}
        two = {r.run_id: r.metrics for r in b.results()}
    assert one == two
    assert len(one) == 16


@pytest.mark.slow
def test_kill_9_during_a_trainer_study_resumes_with_nothing_lost_or_duplicated(tmp_path):
    study = write(tmp_path, model='trainer = "loops.py:slow"\nnet = "mlp"\nhidden = [8]')
    out = tmp_path / "out"
    command = [sys.executable, "-m", "smoothflip", "run", str(study), "--out", str(out), "-q"]
    for _ in range(3):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.2)
            if (out / "smoothflip.sqlite").exists():
                with Store.open(out, readonly=True) as store:
                    if store.count() >= 2 and store.count() % 3 == 2:
                        break
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr
    with Store.open(out, readonly=True) as store:
        ids = [r.run_id for r in store.results()]
        assert len(ids) == len(set(ids)) == 16
        assert store.integrity_check() == "ok"
        killed = {r.run_id: r.metrics for r in store.results()}
    spec = loads_study(study.read_text(), base_dir=tmp_path)
    run_study(spec, tmp_path / "clean")
    with Store.open(tmp_path / "clean", readonly=True) as store:
        assert killed == {r.run_id: r.metrics for r in store.results()}


@pytest.mark.parametrize("example", ["resnet_loop", "lightning", "hf_text"])
def test_the_shipped_own_loop_examples_run(tmp_path, example):
    if example == "lightning":
        pytest.importorskip("lightning")
    if example == "hf_text":
        pytest.importorskip("transformers")
    for path in EXAMPLES.glob("*"):
        if path.suffix in (".py", ".toml"):
            shutil.copy(path, tmp_path / path.name)
    study = tmp_path / f"{example}.toml"
    text = study.read_text().replace("seeds = 3", "seeds = 1")
    if example == "resnet_loop":
        from smoothflip.data.images import write_digit_images

        write_digit_images(tmp_path / "digit-images", per_class=16, test_per_class=6, size=8, shift=1)
        text = text.replace("epochs = 8", "epochs = 6").replace("augment_padding = 2", "augment_padding = 1")
    if example == "hf_text":
        sys.path.insert(0, str(tmp_path))
        try:
            import hf_text

            hf_text.make_tokens(tmp_path / "tokens.npz", n=600)
        finally:
            sys.path.remove(str(tmp_path))
            sys.modules.pop("hf_text", None)
    study.write_text(text)
    result = runner.invoke(app, ["run", str(study), "--out", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 0, result.output
    data = load_study_data(tmp_path / "out")
    assert len(data.results) == len(data.arms) * len(data.conditions)
    chance = 1 / 3 if example == "hf_text" else 1 / 10
    accuracy = max(r.metrics["selected"]["test_acc"] for r in data.results if r.condition == "clean")
    assert accuracy > 1.5 * chance, accuracy
