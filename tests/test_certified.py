"""The certified track: learners trained as packs depend on their own part only (bitwise), a learner
alone equals the learner in a pack, checkpoints resume bitwise, a study end to end with attack
checks, and one-line errors with exit code 2."""

from __future__ import annotations

import dataclasses
import json
import re
import textwrap

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from smoothflip.cli import app
from smoothflip.engine import resolve_study, run_study
from smoothflip.engine.certified import train_certified_pack
from smoothflip.engine.certified.pack import train_chunk
from smoothflip.engine.certified.plan import Member, Settings, plan_run
from smoothflip.engine.certified.results import certificate
from smoothflip.engine.checkpoint import FilePackCheckpoint
from smoothflip.report.data import load_study_data
from smoothflip.study.spec import dumps_study, loads_study

STUDY = """
name = "cert"
kind = "certified"
seeds = 1
[data]
source = "digits"
test_fraction = 0.25
[model]
name = "mlp"
hidden = [8]
[train]
epochs = 2
batch_size = 64
[certify]
partitions = 4
attack_checks = 0
[[arms]]
name = "ce"
[[arms]]
name = "prior"
loss = "smoothed_ce"
eps = 0.3
prior = "train"
[[arms]]
name = "disturb"
disturb_alpha = 0.2
[[arms]]
name = "ols"
loss = "online_ls"
[[conditions]]
noise = "symmetric"
rates = [0.2]
"""


def study(text: str = STUDY, **replace: str):
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return loads_study(textwrap.dedent(text))


@pytest.fixture(scope="module")
def tiny():
    return resolve_study(study())


@pytest.fixture(scope="module")
def tiny_partition():
    return resolve_study(
        study(**{"attack_checks = 0": 'attack_checks = 0\nselection = "partition"\nholdout = 0.3'})
    )


def _with_labels(members: list[Member], labels: np.ndarray) -> list[Member]:
    return [dataclasses.replace(m, labels=labels) for m in members]


def _flip_inside(member: Member, labels: np.ndarray, num_classes: int, where: np.ndarray) -> np.ndarray:
    flipped = labels.copy()
    flipped[where] = (flipped[where] + 1) % num_classes
    return flipped


def _same_learner(a, b, i: int, j: int) -> bool:
    return all(torch.equal(a.params[name][i], b.params[name][j]) for name in a.params)


@pytest.mark.parametrize("which", ["last", "partition"])
def test_flipping_labels_inside_one_part_leaves_every_other_learner_bitwise_identical(
    tiny, tiny_partition, which
):
    """Every arm (a label-derived prior, DisturbLabel's flips, a stateful loss) in one pack; the
    flips fall in learner 2's training examples and (selection = "partition") its held-out ones."""
    dataset, runs = tiny if which == "last" else tiny_partition
    plans = [plan_run(run, i, dataset) for i, run in enumerate(runs)]
    members = [m for plan in plans for m in plan.members[(4, 0)]]
    settings = plans[0].settings
    before = train_chunk(members, dataset, settings, device=torch.device("cpu"), keep_params=True)
    target = [m for m in members if m.learner == 2]
    changed = []
    for m in members:
        if m.learner == 2:
            where = np.concatenate([m.train_idx[:7], m.val_idx[:3]])
            m = dataclasses.replace(m, labels=_flip_inside(m, m.labels, dataset.num_classes, where))
        changed.append(m)
    after = train_chunk(changed, dataset, settings, device=torch.device("cpu"), keep_params=True)
    for i, m in enumerate(members):
        same = _same_learner(before, after, i, i) and np.array_equal(before.losses[i], after.losses[i])
        assert same == (m.learner != 2), (m.run.arm.name, m.learner)
    assert len(target) == len(runs) == 4
    if which == "partition":
        assert (before.epochs >= 1).all()
        assert (before.epochs <= 2).all()


def test_a_learner_trained_alone_equals_the_learner_in_a_pack(tiny):
    dataset, runs = tiny
    plans = [plan_run(run, i, dataset) for i, run in enumerate(runs)]
    members = [m for plan in plans for m in plan.members[(4, 0)]]
    settings = plans[0].settings
    pack = train_chunk(members, dataset, settings, device=torch.device("cpu"), keep_params=True)
    for i in (0, 5, 9, 14):  # ce, prior, disturb, online-LS learners
        alone = train_chunk([members[i]], dataset, settings, device=torch.device("cpu"), keep_params=True)
        assert _same_learner(pack, alone, i, 0), members[i].key
        np.testing.assert_array_equal(pack.predictions[i], alone.predictions[0])


def test_a_learners_label_statistics_and_seeds_come_from_its_own_part(tiny):
    dataset, runs = tiny
    plan = plan_run(runs[1], 0, dataset)  # the prior = "train" arm
    for m in plan.members[(4, 0)]:
        context = m.context(dataset.num_classes)
        own = np.bincount(m.labels[m.train_idx], minlength=dataset.num_classes) / m.train_idx.size
        np.testing.assert_allclose(context.class_prior.numpy(), own)
        # forward correction's realized noise matrix: the part's own (true, noisy) label pairs
        pairs = np.zeros((dataset.num_classes, dataset.num_classes))
        np.add.at(pairs, (m.true_labels[m.train_idx], m.labels[m.train_idx]), 1)
        rows = pairs.sum(axis=1, keepdims=True)
        matrix = context.transition_matrix.numpy()
        np.testing.assert_allclose(matrix[rows[:, 0] > 0], (pairs / np.maximum(rows, 1))[rows[:, 0] > 0])
        assert context.key == m.key  # one loss module per learner, never shared across learners
    seeds = {m.seed("init") for m in plan.members[(4, 0)]}
    assert len(seeds) == 4
    # every arm and condition at a seed shares the partition and the learners' seeds (paired)
    other = plan_run(runs[0], 0, dataset)
    for a, b in zip(plan.members[(4, 0)], other.members[(4, 0)], strict=True):
        np.testing.assert_array_equal(a.train_idx, b.train_idx)
        assert a.seed("init") == b.seed("init")
        assert a.seed("order") == b.seed("order")
    assert sum(m.train_idx.size for m in plan.members[(4, 0)]) == dataset.y_train.size


def test_normalization_is_label_free(tmp_path):
    """Standardization statistics come from the training features only: relabelling every example
    of a file leaves the features the learners see bitwise the same."""
    from smoothflip.engine.certified import TRACK

    rng = np.random.default_rng(0)
    x, x_test, y_test = (
        rng.normal(3.0, 2.0, size=(80, 4)),
        rng.normal(3.0, 2.0, size=(20, 4)),
        np.arange(20) % 3,
    )
    for name, y in (("a", rng.integers(0, 3, 80)), ("b", rng.integers(0, 3, 80))):  # a fixed test split
        np.savez(tmp_path / f"{name}.npz", x=x, y=y, x_test=x_test, y_test=y_test)
    seen = []
    for name in ("a", "b"):
        text = textwrap.dedent(STUDY).replace('source = "digits"', f'source = "{tmp_path / name}.npz"')
        data = TRACK.load(loads_study(text))
        assert abs(float(data.x_train.mean())) < 0.5  # standardized
        seen.append(data)
    assert not np.array_equal(seen[0].y_train, seen[1].y_train)
    np.testing.assert_array_equal(seen[0].x_train, seen[1].x_train)
    np.testing.assert_array_equal(seen[0].x_test, seen[1].x_test)


def test_attack_budgets_and_which_runs_check():
    spec = study(
        **{"attack_checks = 0": "attack_checks = 3\nradii = [0, 2, 4, 6]", "seeds = 1": "seeds = [4, 1]"}
    )
    _, runs = resolve_study(spec)
    settings = Settings.of(runs[0])
    assert settings.budgets() == [2, 4, 6]  # from the middle radius (2), cycling through the positive ones
    assert {(r.seed, settings.checks(r)) for r in runs} == {(4, 3), (1, 0)}


def _fingerprint(results):
    return [
        json.dumps([r.run_id, r.metrics, r.curves, r.extras], sort_keys=True, default=str) for r in results
    ]


class Interrupted(Exception):
    pass


class StopAfter(FilePackCheckpoint):
    def __init__(self, *args, stop: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.stop = stop

    def save(self, state) -> None:
        super().save(state)
        if self.saves >= self.stop:
            raise Interrupted


@pytest.mark.parametrize("stop", [1, 3])
def test_a_pack_resumed_from_a_checkpoint_equals_an_uninterrupted_one(tmp_path, tiny_partition, stop):
    """Two runs of 4 learners in chunks of 3 (three chunks), interrupted inside the first or the
    second chunk: bitwise the same results, the chunking kept from the checkpoint."""
    dataset, runs = tiny_partition
    runs = runs[:2]
    whole = train_certified_pack(runs, dataset, learners_per_chunk=3)
    ids = [r.run_id for r in runs]
    with pytest.raises(Interrupted):
        train_certified_pack(
            runs, dataset, learners_per_chunk=3, checkpoint=StopAfter(tmp_path, "s", ids, 0, stop=stop)
        )
    resumed = train_certified_pack(
        runs, dataset, learners_per_chunk=99, checkpoint=FilePackCheckpoint(tmp_path, "s", ids, 0)
    )
    assert _fingerprint(resumed) == _fingerprint(whole)
    assert resumed[0].timings["learners_per_chunk"] == 3


def test_finite_aggregation_ensembles_certify_through_fa(tiny):
    dataset, runs = resolve_study(
        study(**{"partitions = 4": "partitions = 3\nd = 2", "rates = [0.2]": "rates = [0.0]"})
    )
    result = train_certified_pack(runs[:1], dataset)[0]
    ensemble = result.extras["certify"]["ensembles"][0]
    assert ensemble["learners"] == 6
    assert ensemble["d"] == 2
    radius = np.array(ensemble["radius"])
    assert radius.max() <= 1
    assert radius.min() >= -1
    assert result.metrics["selected"]["test_cert_acc_r0"] == pytest.approx(np.mean(radius >= 0))


CERTIFIED = """
name = "certified-e2e"
kind = "certified"
seeds = 3
[data]
source = "digits"
test_fraction = 0.25
[model]
name = "mlp"
hidden = [16]
[train]
epochs = 3
batch_size = 64
lr = 0.01
[certify]
partitions = [8, 20]
radii = [0, 1, 2, 3]
attack_checks = 1
attack = "margin"
[[arms]]
name = "ce"
[[arms]]
name = "ls"
loss = "smoothed_ce"
eps = 0.2
[[conditions]]
noise = "symmetric"
rates = [0.0]
"""


def test_a_certified_study_end_to_end_verdicts_report_and_attack_checks(tmp_path):
    spec = loads_study(CERTIFIED)
    assert loads_study(dumps_study(spec), stored=True).to_dict() == spec.to_dict()
    out = run_study(spec, tmp_path / "run")
    data = load_study_data(out)
    assert len(data.results) == 6
    for r in data.results:
        block = r.metrics["selected"]
        for key in ("test_cert_acc_r1", "test_cert_acc_r3_k20", "test_mcr", "test_acc_k20", "test_base_acc"):
            assert key in block
        acc = [block[f"test_cert_acc_r{x}"] for x in range(4)]
        assert acc == sorted(acc, reverse=True)
        assert acc[0] == block["test_acc"]
        checks = r.extras["certify"]["attack_checks"]
        assert len(checks) == (2 if r.seed == 0 else 0)  # one per k at the first seed
        for check in checks:
            assert check["flipped"] == check["budget"] == 1  # the middle radius of [0, 1, 2, 3]
            assert check["broken"] == 0
            assert check["untouched_learners_changed"] == 0
            assert check["learners_touched"] == 1
            assert check["certified"] > 0
    from smoothflip.report.render import write_report

    markdown = (write_report(out).parent / "report.md").read_text()
    assert "Certified robustness" in markdown
    assert "4 attacked retrainings checked" in markdown
    assert "none changed a certified prediction" in markdown
    assert "Test metrics at each base learner's last epoch" in markdown  # no validation split here
    assert "selected on validation" not in markdown
    assert "temperature scaling" not in markdown + (out / "report" / "index.html").read_text()  # no TS column
    assert (out / "report" / "figures" / "certified_accuracy.png").is_file()
    import smoothflip as sf

    results = sf.open(out)  # the Python API reads the certified study back, its own figure first
    assert results.figure_names[0] == "certified_accuracy"
    assert results.figure("certified_accuracy")._repr_png_().startswith(b"\x89PNG")
    verdict = CliRunner().invoke(app, ["verdict", str(out)])
    assert verdict.exit_code == 0, verdict.output
    assert "certified accuracy at 1 flip" in verdict.output
    assert "1 flips" not in verdict.output + markdown
    check_certified_summaries(out, markdown)


def check_certified_summaries(out, markdown: str) -> None:
    """Every summary of a certified study (the terminal's, ``Results.summary()``, the report's) shows
    its own metrics where it measures them: clean accuracy, certified accuracy at each radius and the
    median certified radius per k, each base learner's last epoch; no NLL or ECE, no validation."""
    from rich.console import Console

    import smoothflip as sf
    from smoothflip.report.terminal import print_summary

    data = load_study_data(out)
    narrow, wide = Console(record=True, width=140), Console(record=True, width=400)
    print_summary(narrow, data)  # 140: what `smoothflip run` prints into a pipe
    assert "…" not in narrow.export_text()  # no number cut short
    print_summary(wide, data)
    printed = wide.export_text()
    flips = [f"{r} flip{'' if r == 1 else 's'}" for r in range(4)]
    heads = ["clean ensemble accuracy %", *(f"certified accuracy at {f} %" for f in flips)]
    header = next(line for line in printed.splitlines() if "condition" in line)
    assert [c.strip() for c in header.split("┃")[1:-1]] == [
        "condition",
        "arm",
        "n",
        *heads,
        "median certified radius",
        "diverged",
    ]
    for k in (8, 20):  # a table per k
        assert f"certified-e2e: test metrics at each base learner's last epoch, k = {k} (mean ± sd" in printed
    for gone in ("NLL", "ECE", "validation"):
        assert gone not in printed
    ce = [r for r in data.results if r.arm == "ce"]
    acc = np.array([r.metrics["selected"]["test_cert_acc_r1_k20"] for r in ce]) * 100
    mcr = np.array([r.metrics["selected"]["test_mcr_k20"] for r in ce])
    row = [line for line in printed.splitlines() if "│ ce " in line][1]  # the k = 20 table
    cells = [c.strip() for c in row.split("│")[1:-1]]
    assert cells[5] == f"{acc.mean():.1f}±{acc.std(ddof=1):.1f}"
    assert cells[8] == f"{mcr.mean():.1f}±{mcr.std(ddof=1):.1f}"

    summary = sf.open(out).summary()
    assert summary.attrs["measured_at"] == "each base learner's last epoch"
    keys = {"test_acc", "test_cert_acc_r3", "test_mcr_sd", "test_cert_acc_r1_k20", "test_mcr_k20"}
    assert keys <= set(summary)
    assert not {"test_nll", "test_ece", "test_ece_ts"} & set(summary)
    assert summary[summary.arm == "ce"]["test_cert_acc_r1_k20"].item() == pytest.approx(acc.mean() / 100)

    section = markdown[markdown.index("## Summary per technique") :]
    columns = " | ".join(f"{head} (k = 8)" for head in heads[:3])  # one table: the k in each header
    assert f"| condition | technique | runs | {columns} |" in section
    assert "median certified radius (k = 20) | diverged |" in section
    assert "NLL" not in section
    assert "ECE" not in section


BAD = [
    ("partitions = 4", "partitions = 0", "certify.partitions = 0: must be whole numbers >= 1"),
    ("partitions = 4", "partitions = [4, 4]", "values must not repeat"),
    ("partitions = 4", "partitions = 5000", "more than the 1347 training examples"),
    ("partitions = 4", "partitions = 1300", "is empty"),
    (
        "partitions = 4",
        "partitions = 4\nradii = [0, -1]",
        "certify.radii = [0, -1]: must be whole numbers >= 0",
    ),
    ("partitions = 4", "partitions = 4\nradii = [0, 1.5]", "must be whole numbers >= 0"),
    ("partitions = 4", 'partitions = 4\nscheme = "rank"', "certify.scheme"),
    ("partitions = 4", "partitions = 4\nholdout = 0.2", 'only with selection = "partition"'),
    ("partitions = 4", 'partitions = 4\nattack = "margin"\nattack_options = {sde = 1}', "attack_options.sde"),
    ('name = "disturb"', 'name = "disturb"\ndefense = "knn"', "arms[2].defense: not available"),
    ('kind = "certified"\n', "", "certify: only for kind"),
]


@pytest.mark.parametrize(("old", "new", "match"), BAD, ids=[b[2][:30] for b in BAD])
def test_bad_certified_studies_are_one_line_errors_with_exit_code_2(tmp_path, old, new, match):
    path = tmp_path / "s.toml"
    path.write_text(textwrap.dedent(STUDY).replace(old, new))
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "o"), "-q"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert match in lines[0], result.stderr
    assert not (tmp_path / "o" / "smoothflip.sqlite").exists()


def test_duplicate_examples_under_sorted_are_refused_in_one_line(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3)).round(3)
    x[17] = x[3]
    y = rng.integers(0, 2, 60)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    text = (
        textwrap.dedent(STUDY)
        .replace('source = "digits"', 'source = "d.npz"')
        .replace("partitions = 4", 'partitions = 4\nscheme = "sorted"')
    )
    (tmp_path / "s.toml").write_text(text)
    result = CliRunner().invoke(app, ["run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "o"), "-q"])
    assert result.exit_code == 2, result.output
    assert re.search(r"examples \d+ and \d+ are identical", result.stderr), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_the_benchmark_runs_at_tiny_sizes():
    """``benchmarks/certify.py --smoke``: both sides train k = 4 learners and report their accuracy."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    done = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "certify.py"), "--smoke"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("| 4 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3].endswith("x")
    assert 0 < float(cells[4]) <= 100
    assert 0 < float(cells[5]) <= 100


@pytest.mark.slow
def test_random_relabellings_within_the_radius_never_change_a_certified_prediction_of_real_learners(tiny):
    """MLP learners trained as a pack (k = 4): 12 random relabellings of 1 or 2 labels (in one part or
    in two), each retrained from scratch, keep every prediction certified at that many flips."""
    dataset, runs = tiny
    plan = plan_run(runs[0], 0, dataset)
    members = plan.members[(4, 0)]
    settings = plan.settings

    def predict(labels):
        out = train_chunk(_with_labels(members, labels), dataset, settings, device=torch.device("cpu"))
        return certificate(out.predictions.T, plan, 4, dataset.num_classes)

    base = predict(members[0].labels)
    assert (base.radius >= 1).sum() > 50
    rng = np.random.default_rng(0)
    n = dataset.y_train.size
    for trial in range(12):
        flips = 1 + trial % 2
        where = rng.choice(n, size=flips, replace=False)
        labels = members[0].labels.copy()
        labels[where] = (
            labels[where] + rng.integers(1, dataset.num_classes, size=flips)
        ) % dataset.num_classes
        again = predict(labels)
        covered = base.radius >= flips
        np.testing.assert_array_equal(again.prediction[covered], base.prediction[covered])
