"""Partition ensembles trained as packs against IBM ART's ``DeepPartitionEnsemble``, side by side in one
run; and certified-accuracy curves on MNIST-1D and digits.

**Timing** (``--ks 50 200``): the same ``k`` MLPs (``[model] name = "mlp"``, hidden ``--hidden``),
on the same label-independent parts of MNIST-1D's 4000 training examples (smoothflip's salted content
hash; ART gets it as its ``hash_function``), the same epochs, batch size, Adam and learning rate:

1. **pack**: smoothflip's certified track (``train_certified_pack`` on one run: planning, the learners
   trained as stacked packs, test predictions and the certificate);
2. **ART**: ``DeepPartitionEnsemble(PyTorchClassifier(...), hash_function=..., ensemble_size=k)``,
   whose ``fit`` trains the learners one after another (ART 1.20), then ``predict`` (its vote counts).

It prints seconds, the ratio ART / pack (goal at k = 50: at least 10x) and both ensembles' clean test
accuracy. An epoch differs slightly: ART's learner visits its part once; a pack's learner visits
``ceil(N / k)`` examples of its part (topped up or subsampled), so both take about the same steps.

**Curves** (``--curves``): certified studies (ce and label smoothing 0.1, correct labels, ``--seeds``
seeds) on MNIST-1D (k = 50, 200) and digits (k = 20, 50) through ``run_study``; prints certified
accuracy (%) at each radius, the median certified radius and the clean accuracy, mean over seeds,
as Markdown for ``benchmarks/RESULTS.md``.

Usage::

    python benchmarks/certify.py [--ks 50 200] [--epochs 30] [--device cpu] [--curves] [--seeds 3]
    python benchmarks/certify.py --smoke     # tiny sizes: k = 4 on digits, 1 epoch (a test runs it)
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import textwrap
import time
import warnings

import numpy as np
import torch

from smoothflip import certify
from smoothflip.engine import resolve_study, run_study
from smoothflip.engine.certified import train_certified_pack
from smoothflip.engine.certified.plan import Settings, assignment
from smoothflip.models import build_model
from smoothflip.report.data import load_study_data
from smoothflip.study.spec import loads_study

STUDY = """
name = "bench-certify"
kind = "certified"
seeds = 1
[data]
source = "{source}"
[model]
name = "mlp"
hidden = {hidden}
[train]
epochs = {epochs}
batch_size = {batch}
lr = {lr}
lr_schedule = "constant"
[certify]
partitions = {ks}
radii = {radii}
attack_checks = 0
{arms}
[[conditions]]
noise = "none"
"""

CE = '[[arms]]\nname = "ce"\n'
LS = '[[arms]]\nname = "ls-0.1"\nloss = "smoothed_ce"\neps = 0.1\n'


def study_text(
    source: str, ks: list[int], args: argparse.Namespace, *, arms: str = CE, seeds: int = 1
) -> str:
    radii = sorted({round(min(ks) / 2 * i / 10) for i in range(11)})
    return STUDY.format(
        source=source,
        hidden=list(args.hidden),
        epochs=args.epochs,
        batch=args.batch,
        lr=args.lr,
        ks=list(ks),
        radii=radii,
        arms=arms,
    ).replace("seeds = 1", f"seeds = {seeds}")


def pack_side(k: int, args: argparse.Namespace) -> tuple[float, float, np.ndarray, object]:
    """smoothflip: seconds, clean ensemble accuracy, the partition, the dataset."""
    spec = loads_study(textwrap.dedent(study_text(args.source, [k], args)))
    dataset, runs = resolve_study(spec)
    parts = assignment(runs[0], dataset, k, Settings.of(runs[0]))
    started = time.perf_counter()
    result = train_certified_pack(runs[:1], dataset, device=args.device)[0]
    seconds = time.perf_counter() - started
    return seconds, float(result.metrics["selected"]["test_acc"]), parts, dataset


def art_side(k: int, parts: np.ndarray, dataset: object, args: argparse.Namespace) -> tuple[float, float]:
    """IBM ART 1.20: seconds of fit + predict, clean ensemble accuracy."""
    from art.estimators.classification import DeepPartitionEnsemble, PyTorchClassifier

    ds = dataset
    model = build_model(
        "mlp", input_shape=ds.input_shape, num_classes=ds.num_classes, options={"hidden": list(args.hidden)}
    )
    classifier = PyTorchClassifier(
        model,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=tuple(ds.input_shape),
        nb_classes=ds.num_classes,
        optimizer=torch.optim.Adam(model.parameters(), lr=args.lr),
        device_type="gpu" if args.device.startswith("cuda") else "cpu",
    )
    part_of = {np.ascontiguousarray(row).tobytes(): int(p) for row, p in zip(ds.x_train, parts, strict=True)}
    ensemble = DeepPartitionEnsemble(
        classifier,
        hash_function=lambda x: part_of[np.ascontiguousarray(x).tobytes()],
        ensemble_size=k,
        channels_first=True,
    )
    started = time.perf_counter()
    ensemble.fit(ds.x_train, ds.y_train, batch_size=args.batch, nb_epochs=args.epochs)
    votes = ensemble.predict(ds.x_test)
    seconds = time.perf_counter() - started
    return seconds, float(np.mean(np.argmax(votes, axis=1) == ds.y_test))


def timing(args: argparse.Namespace) -> None:
    setup = f"{args.source}, MLP {list(args.hidden)}, {args.epochs} epochs, batch {args.batch}, {args.device}"
    warm = argparse.Namespace(**{**vars(args), "epochs": 1})
    _, _, parts, dataset = pack_side(2, warm)  # untimed: first-call costs (imports, allocator) of both sides
    art_side(2, parts, dataset, warm)
    print(f"\n## Packs vs ART DeepPartitionEnsemble ({setup})\n")
    print("| k | pack s | ART s | ART / pack | pack clean acc. | ART clean acc. |")
    print("|--:|--:|--:|--:|--:|--:|")
    for k in args.ks:
        pack_s, pack_acc, parts, dataset = pack_side(k, args)
        art_s, art_acc = art_side(k, parts, dataset, args)
        ratio = art_s / pack_s
        accuracy = f"{100 * pack_acc:.1f} | {100 * art_acc:.1f}"
        print(f"| {k} | {pack_s:.1f} | {art_s:.1f} | {ratio:.1f}x | {accuracy} |")


def curves(args: argparse.Namespace) -> None:
    for source, ks in (("mnist1d", [50, 200]), ("digits", [20, 50])):
        text = textwrap.dedent(study_text(source, ks, args, arms=CE + LS, seeds=args.seeds))
        spec = loads_study(text)
        with tempfile.TemporaryDirectory() as directory:
            run_study(spec, directory, device=args.device)
            data = load_study_data(directory)
        radii = list(spec.certify.radii)
        print(f"\n## Certified accuracy (%) on {source}, clean labels, mean of {args.seeds} seeds\n")
        print("| k | arm | " + " | ".join(f"r={r}" for r in radii) + " | median radius |")
        print("|--:|---|" + "--:|" * (len(radii) + 1))
        for k in ks:
            for arm in ("ce", "ls-0.1"):
                rows, medians = [], []
                for run in data.runs(arm, data.conditions[0]):
                    found = next(e for e in run.extras["certify"]["ensembles"] if e["k"] == k)
                    radius = np.asarray(found["radius"])
                    rows.append(certify.certified_accuracy(radius, radii))
                    medians.append(certify.median_certified_radius(radius))
                mean = np.mean(rows, axis=0)
                print(
                    f"| {k} | {arm} | "
                    + " | ".join(f"{100 * v:.1f}" for v in mean)
                    + f" | {np.mean(medians):.1f} |"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--hidden", type=int, nargs="+", default=[100, 100])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--source", default="mnist1d")
    parser.add_argument("--curves", action="store_true", help="also print certified-accuracy curves")
    parser.add_argument("--no-timing", action="store_true", help="skip the ART comparison")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (a test runs this)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="If a single classifier is passed")
    if args.smoke:
        args.ks, args.epochs, args.hidden, args.source = [4], 1, [8], "digits"
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads"
    )
    if not args.no_timing:
        timing(args)
    if args.curves:
        curves(args)


if __name__ == "__main__":
    main()
