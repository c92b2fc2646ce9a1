"""Pack engine vs training the same runs one after another, side by side in one process.

For each model, the same 30-run grid on MNIST-1D (3 arms x 2 label conditions x 5 seeds) is trained

1. by ``train_pack`` (all 30 members stacked under ``torch.vmap``, one optimizer),
2. by ``train_reference`` run after run (a plain PyTorch loop per run doing the same work:
   same model, steps, per-epoch evaluation and metrics), and
3. by a bare sequential loop (model, Adam, ``F.cross_entropy``; no evaluation at all) — the
   cheapest possible sequential baseline, so its ratio is a lower bound for the pack.

It prints seconds and the speed-up ratios, plus the machine. Usage::

    python benchmarks/study_engine.py [--epochs 5] [--models logistic mlp-32 mlp cnn1d] [--device cpu]
"""

from __future__ import annotations

import argparse
import platform
import textwrap
import time

import numpy as np
import torch
import torch.nn.functional as F

from smoothflip.engine import resolve_study
from smoothflip.engine.classifier.members import build_member
from smoothflip.engine.classifier.pack import train_pack
from smoothflip.engine.classifier.reference import train_reference
from smoothflip.engine.classifier.run_data import epoch_targets, prepare_run
from smoothflip.engine.schedule import training_schedule
from smoothflip.study.spec import loads_study

MODELS = {
    "logistic": 'name = "logistic"',
    "mlp-32": 'name = "mlp"\nhidden = [32]',
    "mlp": 'name = "mlp"',
    "cnn1d": 'name = "cnn1d"',
}

STUDY = """
name = "bench"
seeds = 5
[data]
source = "mnist1d"
[model]
{model}
[train]
epochs = {epochs}
[[arms]]
name = "ce"
[[arms]]
name = "ls"
loss = "smoothed_ce"
eps = 0.1
[[arms]]
name = "disturb"
disturb_alpha = 0.1
[[conditions]]
noise = "symmetric"
rates = [0.0, 0.2]
"""


def bare_loop(runs, dataset, device: torch.device) -> None:
    """Train each run alone with the simplest loop: no evaluation, no bookkeeping."""
    x_all = torch.as_tensor(dataset.x_train, device=device)
    for run in runs:
        data = prepare_run(run, dataset)
        cfg = run.shared["train"]
        schedule = training_schedule(cfg, data.train_idx.size)
        model = build_member(run, dataset).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
        labels = torch.as_tensor(data.noisy.labels, device=device)
        train_idx = torch.as_tensor(data.train_idx, device=device)
        order = np.random.default_rng(run.seed_for("order"))
        eps = float(run.arm.params.get("eps", 0.0))
        gen = torch.Generator(device=device).manual_seed(run.seed_for("flip"))
        batch_size = cfg["batch_size"]
        for _ in range(schedule.epochs):
            visit = train_idx[torch.as_tensor(order.permutation(train_idx.numel()), device=device)]
            targets = labels[visit]
            if run.arm.disturb_alpha > 0:
                targets = epoch_targets(targets, data, dataset.num_classes, gen, batch_size)
            for b in range(schedule.batches):
                idx, target = (
                    visit[b * batch_size : (b + 1) * batch_size],
                    targets[b * batch_size : (b + 1) * batch_size],
                )
                loss = F.cross_entropy(model(x_all[idx]), target, label_smoothing=eps)
                opt.zero_grad()
                loss.backward()
                opt.step()


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(
        f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    )
    print(f"# 30 runs (3 arms x 2 conditions x 5 seeds), MNIST-1D, {args.epochs} epochs of 36 steps each")
    print("| model | pack s | reference loop s | bare loop s | pack vs reference | pack vs bare |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        spec = loads_study(textwrap.dedent(STUDY.format(model=MODELS[name], epochs=args.epochs)))
        dataset, runs = resolve_study(spec)
        train_pack(runs[:2], dataset, device=device)  # warm up (imports, allocator)
        t_pack = timed(lambda runs=runs, dataset=dataset: train_pack(runs, dataset, device=device))
        t_ref = timed(
            lambda runs=runs, dataset=dataset: [train_reference(r, dataset, device=device) for r in runs]
        )
        t_bare = timed(lambda runs=runs, dataset=dataset: bare_loop(runs, dataset, device))
        ratios = f"{t_ref / t_pack:.1f}x | {t_bare / t_pack:.1f}x"
        print(f"| {name} | {t_pack:.2f} | {t_ref:.2f} | {t_bare:.2f} | {ratios} |", flush=True)


if __name__ == "__main__":
    main()
