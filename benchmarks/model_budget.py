"""Training budget for the built-in MNIST-1D models: the cheapest schedule that is reliably >= 90%.

Setup (what a study on ``mnist1d`` with default settings does): MNIST-1D generated with the
package defaults (4,000 train / 1,000 test, length 40), 10% of the training split held out as
validation (3,600 examples trained on), Adam, batch size 100 (36 steps per epoch), weight decay 0,
clean labels, PyTorch default initialization. One seed drives init and data order. Schedules are
``constant`` lr or ``cosine`` (annealed per step to 0 over the run). Accuracy is the final model's
(no early stopping).

Usage::

    python benchmarks/model_budget.py            # the final table (about 2 minutes on 2 cores)
    python benchmarks/model_budget.py --explore  # the schedule search behind it (about 6 minutes)

Wall time is the training loop only (no evaluation), per epoch, with ``torch.set_num_threads``
threads (2 by default). ``stacked`` rows time P copies trained at once through ``torch.vmap``
(one Adam over the stacked parameters, which is per-member identical to P separate Adams).
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from mnist1d.data import get_dataset_args, make_dataset
from torch.func import functional_call, stack_module_state

from smoothflip.models import build_model

BATCH_SIZE = 100
VALIDATION_FRACTION = 0.1
TARGET = 0.90


@dataclass(frozen=True)
class Data:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


@dataclass(frozen=True)
class Schedule:
    epochs: int
    lr: float
    kind: str  # "constant" | "cosine"

    def label(self) -> str:
        return f"{self.kind:8s} lr={self.lr:g} epochs={self.epochs}"


def load_data(split_seed: int = 0) -> Data:
    """MNIST-1D with the package defaults; 10% of train held out (fixed split)."""
    raw = make_dataset(get_dataset_args())  # note: mnist1d re-seeds the global numpy/random RNGs
    x = torch.tensor(raw["x"], dtype=torch.float32)
    y = torch.tensor(raw["y"], dtype=torch.long)
    perm = torch.from_numpy(np.random.default_rng(split_seed).permutation(len(y)))
    n_val = round(VALIDATION_FRACTION * len(y))
    val, train = perm[:n_val], perm[n_val:]
    return Data(
        x[train],
        y[train],
        x[val],
        y[val],
        torch.tensor(raw["x_test"], dtype=torch.float32),
        torch.tensor(raw["y_test"], dtype=torch.long),
    )


def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def train_one(name: str, schedule: Schedule, seed: int, data: Data) -> tuple[float, float, float]:
    """Train one model; return (test accuracy, validation accuracy, training seconds per epoch)."""
    torch.manual_seed(seed)
    model = build_model(name, input_shape=(40,), num_classes=10)
    opt = torch.optim.Adam(model.parameters(), lr=schedule.lr, weight_decay=0.0)
    n = len(data.y_train)
    steps_per_epoch = math.ceil(n / BATCH_SIZE)
    total = schedule.epochs * steps_per_epoch
    sched = None
    if schedule.kind == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(schedule.epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, BATCH_SIZE):
            idx = perm[i : i + BATCH_SIZE]
            loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
    per_epoch = (time.perf_counter() - start) / schedule.epochs
    return _accuracy(model, data.x_test, data.y_test), _accuracy(model, data.x_val, data.y_val), per_epoch


def time_stacked(name: str, copies: int, data: Data, *, epochs: int = 3) -> float:
    """Seconds per epoch to train ``copies`` models at once with vmap (all members, not per member)."""
    models = []
    for s in range(copies):
        torch.manual_seed(s)
        models.append(build_model(name, input_shape=(40,), num_classes=10))
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")

    def fmodel(p: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(base, (p, b), (x,))

    batched = torch.vmap(fmodel, in_dims=(0, 0, 0))
    opt = torch.optim.Adam(params.values(), lr=1e-2)
    n = len(data.y_train)
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(epochs):
        # every member gets its own data order, as in a study
        perms = torch.stack([torch.randperm(n, generator=gen) for _ in range(copies)])
        for i in range(0, n, BATCH_SIZE):
            idx = perms[:, i : i + BATCH_SIZE]
            logits = batched(params, buffers, data.x_train[idx])  # [P, B, K]
            loss = F.cross_entropy(logits.flatten(0, 1), data.y_train[idx].flatten(), reduction="sum")
            loss = loss / idx.shape[1]  # sum over members of each member's mean loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return (time.perf_counter() - start) / epochs


def run(name: str, schedule: Schedule, seeds: list[int], data: Data) -> dict:
    results = [train_one(name, schedule, s, data) for s in seeds]
    test = np.array([r[0] for r in results])
    val = np.array([r[1] for r in results])
    per_epoch = float(np.median([r[2] for r in results]))
    row = {
        "model": name,
        "schedule": schedule,
        "test_mean": test.mean(),
        "test_min": test.min(),
        "val_mean": val.mean(),
        "s_per_epoch": per_epoch,
        "s_per_run": per_epoch * schedule.epochs,
    }
    print(_format(row), flush=True)
    return row


def _format(row: dict) -> str:
    s: Schedule = row["schedule"]
    steps = s.epochs * math.ceil(3600 / BATCH_SIZE)
    ok = "yes" if row["test_min"] >= TARGET else "no"
    return (
        f"| {row['model']:8s} | {s.kind:8s} | {s.lr:<6g} | {s.epochs:6d} | {steps:5d} | "
        f"{100 * row['test_mean']:5.1f} | {100 * row['test_min']:5.1f} | {100 * row['val_mean']:5.1f} | "
        f"{row['s_per_epoch']:.3f} | {row['s_per_run']:6.1f} | {ok:4s} |"
    )


HEADER = (
    "| model    | schedule | lr     | epochs | steps | test% | min%  | val%  | s/ep  | s/run  | >=90 |\n"
    "|----------|----------|--------|--------|-------|-------|-------|-------|-------|--------|------|"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--explore", action="store_true", help="run the schedule search")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per schedule (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--model", default="cnn1d", help="model for --explore (default cnn1d)")
    parser.add_argument("--lrs", type=float, nargs="+", default=[3e-3, 1e-2, 2e-2], help="for --explore")
    parser.add_argument(
        "--epochs", type=int, nargs="+", default=[10, 15, 20, 30, 45, 60], help="for --explore"
    )
    parser.add_argument("--kinds", nargs="+", default=["constant", "cosine"], help="for --explore")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = list(range(args.seeds))
    print(
        f"# torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}, "
        f"seeds {seeds}"
    )
    data = load_data()
    print(f"# train {len(data.y_train)}, validation {len(data.y_val)}, test {len(data.y_test)}")
    print(HEADER)
    if args.explore:
        for kind in args.kinds:
            for lr in args.lrs:
                for epochs in args.epochs:
                    run(args.model, Schedule(epochs, lr, kind), seeds, data)
        return
    cheapest = Schedule(45, 2e-2, "cosine")  # cheapest schedule >= 90% on 10 of 10 seeds
    chosen = Schedule(75, 2e-2, "cosine")  # the recommended default (margin; see the table below)
    paper = Schedule(167, 1e-2, "constant")  # ~6,000 steps: the MNIST-1D quickstart's budget
    for schedule in (cheapest, chosen, Schedule(75, 2e-2, "constant"), paper):
        run("cnn1d", schedule, seeds, data)
    for schedule in (chosen, paper):
        run("mlp", schedule, seeds, data)
    for name in ("cnn1d", "mlp"):
        for copies in (8, 32):
            t = time_stacked(name, copies, data)
            print(
                f"# stacked {name} x{copies}: {t:.3f} s/epoch for all ({t / copies:.4f} s/epoch per member)"
            )


if __name__ == "__main__":
    main()

# --------------------------------------------------------------------------------------------------
# Results — 2-core CPU (AMD EPYC, x86_64), torch 2.13.0+cpu, 2 threads; MNIST-1D defaults
# (seed 42), 3,600 train / 400 validation / 1,000 test, Adam, batch 100 (36 steps/epoch), wd 0.
# Wall times vary by about ±30% between runs on this shared machine (0.06-0.09 s/epoch for cnn1d).
#
# `python benchmarks/model_budget.py` (seeds 0-2; test% = mean, min% = worst seed):
#
# | model    | schedule | lr     | epochs | steps | test% | min%  | val%  | s/ep  | s/run  | >=90 |
# |----------|----------|--------|--------|-------|-------|-------|-------|-------|--------|------|
# | cnn1d    | cosine   | 0.02   |     45 |  1620 |  91.3 |  90.4 |  92.0 | 0.066 |    3.0 | yes  |
# | cnn1d    | cosine   | 0.02   |     75 |  2700 |  92.8 |  92.1 |  93.0 | 0.067 |    5.0 | yes  |
# | cnn1d    | constant | 0.02   |     75 |  2700 |  90.7 |  89.8 |  89.7 | 0.092 |    6.9 | no   |
# | cnn1d    | constant | 0.01   |    167 |  6012 |  91.2 |  90.6 |  91.0 | 0.094 |   15.7 | yes  |
# | mlp      | cosine   | 0.02   |     75 |  2700 |  64.5 |  62.3 |  65.8 | 0.036 |    2.7 | no   |
# | mlp      | constant | 0.01   |    167 |  6012 |  64.9 |  64.3 |  63.3 | 0.039 |    6.5 | no   |
# stacked cnn1d x8: 0.504 s/epoch for all (0.0629 s/epoch per member)
# stacked cnn1d x32: 1.672 s/epoch for all (0.0522 s/epoch per member)
# stacked mlp x8: 0.111 s/epoch for all (0.0139 s/epoch per member)
# stacked mlp x32: 0.235 s/epoch for all (0.0073 s/epoch per member)
#
# The search (`--explore`; cnn1d): first 3 seeds over lr {3e-3, 1e-2, 2e-2} x epochs {10..60} x
# {constant, cosine}: nothing below 45 epochs was >= 90% on every seed except constant lr 2e-2 at
# 20 epochs (91.4 min), which then fell back below 90% at 30 and 60 epochs (constant lr plateaus
# around 90-91% and its final accuracy jitters); lr 3e-3 stays below 87%. Then 5 seeds over lr
# {2e-2, 3e-2, 5e-2} x epochs {30, 60, 90}: lr 5e-2 is unstable (worst seed 76-85%), constant lr
# never clears 90% reliably, cosine 2e-2 / 3e-2 does. Then 10 seeds (0-9), cosine:
#
# | lr   | epochs | steps | test% mean | worst seed | val% |
# |------|--------|-------|------------|------------|------|
# | 2e-2 |     45 |  1620 |       91.7 |       90.3 | 92.1 |
# | 2e-2 |     60 |  2160 |       92.4 |       90.2 | 92.3 |
# | 2e-2 |     75 |  2700 |       92.8 |       91.9 | 92.4 |
# | 2e-2 |     90 |  3240 |       93.4 |       92.3 | 93.0 |
# | 3e-2 |     45 |  1620 |       92.7 |       89.9 | 92.3 |
# | 3e-2 |     60 |  2160 |       93.0 |       90.9 | 91.9 |
# | 3e-2 |     75 |  2700 |       93.5 |       92.4 | 93.1 |
# | 3e-2 |     90 |  3240 |       93.4 |       91.9 | 93.3 |
#
# Cheapest reliable (10/10 seeds >= 90%): cosine, lr 2e-2, 45 epochs (1,620 steps, ~3 s per model)
# — but its worst seed clears 90% by only 0.3 points. Recommended default: cosine, lr 2e-2,
# 75 epochs (2,700 steps, ~5 s per model): worst of 10 seeds 91.9%, mean 92.8%, at less than half
# the MNIST-1D paper's 6,000 constant-lr steps (91.2% here, ~16 s). The MLP gets ~65% at
# both budgets (paper: 68%), as expected: MNIST-1D is built so that an MLP does poorly.
# Under vmap on this CPU, stacking cnn1d copies barely helps (grouped convolutions; 0.052-0.063
# s/epoch per member vs 0.066 alone); stacking MLPs helps 3-5x.
