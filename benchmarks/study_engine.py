"""The pack engine against the practical floor and against one run at a time, side by side in one run.

The grid is the one of issue 16: 75 runs on MNIST-1D (ce, label smoothing 0.1, negative smoothing
-0.2 after 5 warm-up epochs, confidence penalty 0.5, DisturbLabel 0.1 x 0/20/40% symmetric noise x
5 seeds), batch 100, ``--steps`` steps per run. For each model it times

1. **floor**: a plain stacked-weights ensemble written here in a few dozen lines (parameters
   ``[P, in, out]``, ``torch.baddbmm``, one ``torch.optim.Adam`` with its defaults, one
   ``F.cross_entropy`` for all members, every member on its own batch; no evaluation, no noise, no
   techniques) — the cheapest code that trains the same P models for the same steps. Only for the
   models it can write this way (logistic, MLP); for the others the engine's own stacked model is
   the floor (``Stacked`` + one Adam + one cross-entropy: what the engine adds on top is measured).
2. **pack**: ``train_pack`` on all runs as one pack; its training seconds (``train_seconds``: the
   steps, the techniques, flipping, divergence checks) apart from its evaluation
   (``eval_seconds``, after every ``eval_every`` epochs and the last).
3. **reference** and **bare**: ``train_reference`` (the per-run loop the pack is tested against)
   and a bare sequential loop (model, Adam, ``F.cross_entropy``), timed on ``--sample`` runs and
   scaled to the whole grid.
4. **arithmetic rate**: the matrix-product and convolution FLOPs of one training step and of one
   example's evaluation (``torch.utils.flop_counter.FlopCounterMode`` on one member; batch norm,
   activations and the optimizer are not counted), over the pack's training and evaluation seconds
   and over the bare loop's seconds, in GFLOP/s, beside a large matrix product's rate
   (``--gemm`` x ``--gemm``, float32) measured in the same run.
5. with ``--vmap``, the convolutional models' pack again under ``torch.vmap`` (without the stacked
   layers of ``engine/stacked_layers.py``): the before and after of issue 25 side by side.
6. with ``--profile``, what a step of the stacked model costs, by operation (``torch.profiler``,
   20 steps of the floor loop per convolutional model, self CPU time): what holds the pack.

It prints one table (seconds, ratios, rates) and the machine. Usage::

    python benchmarks/study_engine.py [--steps 3000] [--models logistic mlp cnn1d resnet8]
        [--eval-every 1] [--sample 5] [--device cpu] [--vmap] [--profile] [--gemm 2048]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import os
import platform
import textwrap
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from smoothflip.engine import resolve_study, stacked
from smoothflip.engine.classifier.members import build_member
from smoothflip.engine.classifier.pack import train_pack
from smoothflip.engine.classifier.reference import train_reference
from smoothflip.engine.classifier.run_data import prepare_run
from smoothflip.engine.schedule import training_schedule
from smoothflip.engine.stacked import Stacked
from smoothflip.study.spec import loads_study

MODELS = {
    "logistic": ("mnist1d", 'name = "logistic"'),
    "mlp": ("mnist1d", 'name = "mlp"\nhidden = [100, 100]'),
    "cnn1d": ("mnist1d", 'name = "cnn1d"'),
    "resnet8": ("digits", 'name = "resnet"\ndepth = 8\nwidth = 8'),
}

STUDY = """
name = "bench"
seeds = 5
[data]
source = "{source}"
[model]
{model}
[train]
steps = {steps}
batch_size = 100
eval_every = {eval_every}
[[arms]]
name = "ce"
[[arms]]
name = "ls"
loss = "smoothed_ce"
eps = 0.1
[[arms]]
name = "nls"
loss = "smoothed_ce"
eps = -0.2
warmup_epochs = 5
[[arms]]
name = "cp"
loss = "confidence_penalty"
beta = 0.5
[[arms]]
name = "disturb"
disturb_alpha = 0.1
[[conditions]]
noise = "symmetric"
rates = [0.0, 0.2, 0.4]
"""


def _batches(x: torch.Tensor, y: torch.Tensor, members: int, steps: int, batch: int, seed: int = 0):
    """Every member on its own random batch, fresh permutations per epoch (as the engine visits data)."""
    n = x.shape[0]
    gen = torch.Generator().manual_seed(seed)
    per_epoch = n // batch
    step = 0
    while step < steps:
        perms = torch.stack([torch.randperm(n, generator=gen) for _ in range(members)]).to(x.device)
        for b in range(per_epoch):
            if step >= steps:
                return
            idx = perms[:, b * batch : (b + 1) * batch]
            yield x[idx], y[idx]
            step += 1


def floor_ensemble(x: torch.Tensor, y: torch.Tensor, sizes: list[int], members: int, steps: int) -> float:
    """The plain stacked ensemble: ``[P, in, out]`` weights, ``baddbmm``, one Adam, one loss."""
    torch.manual_seed(0)
    weights, biases = [], []
    for fan_in, fan_out in itertools.pairwise(sizes):
        bound = 1 / math.sqrt(fan_in)
        weights.append(torch.empty(members, fan_in, fan_out, device=x.device).uniform_(-bound, bound))
        biases.append(torch.empty(members, 1, fan_out, device=x.device).uniform_(-bound, bound))
    params = [p.requires_grad_() for p in weights + biases]
    opt = torch.optim.Adam(params, lr=1e-3)
    k = sizes[-1]
    batches = _batches(x, y, members, steps, 100)
    start = time.perf_counter()
    for xb, yb in batches:
        h = xb
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            h = torch.baddbmm(b, h, w)
            if i < len(weights) - 1:
                h = torch.relu(h)
        loss = F.cross_entropy(h.reshape(-1, k), yb.reshape(-1)) * members
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()
    _sync(x.device)
    return time.perf_counter() - start


def floor_stacked(runs, dataset, device: torch.device, steps: int, profile: bool = False) -> float:
    """The engine's own ``Stacked`` model with one Adam and one cross-entropy (models the plain
    ensemble cannot write as matrix products)."""
    model = Stacked([build_member(r, dataset) for r in runs], device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.as_tensor(dataset.x_train, device=device)
    y = torch.as_tensor(dataset.y_train, device=device)
    k = dataset.num_classes
    profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) if profile else None
    start = time.perf_counter()
    with profiler or contextlib.nullcontext():
        for xb, yb in _batches(x, y, len(runs), steps, 100):
            logits = model.each(xb)
            loss = F.cross_entropy(logits.reshape(-1, k), yb.reshape(-1)) * len(runs)
            opt.zero_grad(set_to_none=False)
            loss.backward()
            opt.step()
        _sync(device)
    if profiler is not None:
        print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    return time.perf_counter() - start


def bare_loop(runs, dataset, device: torch.device) -> float:
    """Each run alone with the simplest loop (model, Adam, ``F.cross_entropy``; no evaluation)."""
    x_all = torch.as_tensor(dataset.x_train, device=device)
    start = time.perf_counter()
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
        batch, step = cfg["batch_size"], 0
        while step < schedule.total_steps:
            visit = train_idx[torch.as_tensor(order.permutation(train_idx.numel()), device=device)]
            for b in range(schedule.batches):
                if step >= schedule.total_steps:
                    break
                idx = visit[b * batch : (b + 1) * batch]
                loss = F.cross_entropy(model(x_all[idx]), labels[idx], label_smoothing=max(eps, 0.0))
                opt.zero_grad()
                loss.backward()
                opt.step()
                step += 1
    _sync(device)
    return time.perf_counter() - start


def adam_step_ms(members: int, device: torch.device) -> dict[str, float]:
    """One Adam step over the stacked MLP parameters of ``members`` runs, per implementation."""
    shapes = [(members, 40, 100), (members, 100), (members, 100, 100), (members, 100), (members, 100, 10)]
    out = {}
    for name, kw in (
        ("for-loop", {"foreach": False}),
        ("foreach", {"foreach": True}),
        ("fused", {"fused": True}),
    ):
        params = [torch.randn(s, device=device, requires_grad=True) for s in [*shapes, (members, 10)]]
        for p in params:
            p.grad = torch.randn_like(p)
        opt = torch.optim.Adam(params, lr=1e-3, **kw)
        for _ in range(20):
            opt.step()
        _sync(device)
        start = time.perf_counter()
        for _ in range(300):
            opt.step()
        _sync(device)
        out[name] = (time.perf_counter() - start) / 300 * 1e3
    return out


def step_flops(run, dataset, batch: int) -> tuple[int, int]:
    """FLOPs (matrix products and convolutions, as ``FlopCounterMode`` counts them) of one training
    step of one member (forward and backward on ``batch`` examples) and of one example's evaluation."""
    model = build_member(run, dataset)
    x = torch.as_tensor(dataset.x_train[:batch])
    y = torch.as_tensor(dataset.y_train[:batch])
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    train = counter.get_total_flops()
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x[:1])
    return train, counter.get_total_flops()


def gemm_rate(n: int, device: torch.device, repeats: int = 10) -> float:
    """GFLOP/s of one ``n x n`` by ``n x n`` float32 matrix product (the best of ``repeats``)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    torch.mm(a, b)
    best = math.inf
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def evaluated_examples(results, runs, dataset) -> int:
    """Examples one member scored over the pack's evaluations (test set, training subset, validation)."""
    data = prepare_run(runs[0], dataset)
    per = len(dataset.x_test) + data.train_eval_idx.size + data.val_idx.size
    return per * len(results[0].curves["epoch"])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--eval-every", type=int, default=1)
    parser.add_argument("--sample", type=int, default=5, help="runs timed one at a time (scaled up)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--vmap", action="store_true", help="time conv packs under vmap as well")
    parser.add_argument("--profile", action="store_true", help="profile a step of the conv models")
    parser.add_argument("--gemm", type=int, default=2048, help="size of the reference matrix product")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    )
    print(
        f"# 75 runs (5 arms x 3 conditions x 5 seeds), batch 100, {args.steps} steps, "
        f"eval_every {args.eval_every}"
    )
    gemm = gemm_rate(args.gemm, device)
    print(f"# large matrix product ({args.gemm} x {args.gemm}, float32): {gemm:.0f} GFLOP/s")
    print(
        "| model | floor s | pack train s | pack eval s | pack train / floor | reference s (scaled) "
        "| bare loop s (scaled) | pack vs reference | pack vs bare | GFLOP/s pack train / eval / bare "
        "| pack train % of matrix product |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    vmap_rows = []
    for name in args.models:
        source, model = MODELS[name]
        text = STUDY.format(source=source, model=model, steps=args.steps, eval_every=args.eval_every)
        dataset, runs = resolve_study(loads_study(textwrap.dedent(text)))
        warm = loads_study(textwrap.dedent(text.replace(f"steps = {args.steps}", "steps = 20")))
        train_pack(resolve_study(warm)[1][:3], dataset, device=device)  # warm up (allocator, kernels)
        if name in ("logistic", "mlp"):
            sizes = [int(np.prod(dataset.input_shape))]
            sizes += [100, 100] if name == "mlp" else []
            sizes += [dataset.num_classes]
            x = torch.as_tensor(dataset.x_train, device=device).reshape(len(dataset.x_train), -1)
            y = torch.as_tensor(dataset.y_train, device=device)
            floor = floor_ensemble(x, y, sizes, len(runs), args.steps)
        else:
            floor = floor_stacked(runs, dataset, device, args.steps)
        results = train_pack(runs, dataset, device=device)
        t_train, t_eval = results[0].timings["train_seconds"], results[0].timings["eval_seconds"]
        sample = runs[:: max(1, len(runs) // args.sample)][: args.sample]
        start = time.perf_counter()
        for r in sample:
            train_reference(r, dataset, device=device)
        t_ref = (time.perf_counter() - start) * len(runs) / len(sample)
        t_bare = bare_loop(sample, dataset, device) * len(runs) / len(sample)
        pack = t_train + t_eval
        train_flops, example_flops = step_flops(runs[0], dataset, 100)
        work = train_flops * args.steps * len(runs)
        scored = example_flops * evaluated_examples(results, runs, dataset) * len(runs)
        rates = f"{work / t_train / 1e9:.1f} / {scored / t_eval / 1e9:.1f} / {work / t_bare / 1e9:.1f}"
        print(
            f"| {name} | {floor:.1f} | {t_train:.1f} | {t_eval:.1f} | {t_train / floor:.2f}x | {t_ref:.0f} "
            f"| {t_bare:.0f} | {t_ref / pack:.1f}x | {t_bare / pack:.1f}x | {rates} "
            f"| {100 * work / t_train / 1e9 / gemm:.0f}% |",
            flush=True,
        )
        if args.vmap and name not in ("logistic", "mlp"):
            vmap_rows.append((name, *_vmap_pack(runs, dataset, device), t_train, t_eval, t_ref, t_bare, work))
    if vmap_rows:
        print(
            "\n| model, pack under vmap | train s | eval s | vs reference | vs bare | GFLOP/s train "
            "| the stacked layers faster by |"
        )
        print("|---|---|---|---|---|---|---|")
    for name, v_train, v_eval, t_train, t_eval, t_ref, t_bare, work in vmap_rows:
        print(
            f"| {name} | {v_train:.1f} | {v_eval:.1f} | {t_ref / (v_train + v_eval):.1f}x "
            f"| {t_bare / (v_train + v_eval):.1f}x | {work / v_train / 1e9:.1f} "
            f"| {(v_train + v_eval) / (t_train + t_eval):.2f}x |",
            flush=True,
        )
    if args.profile:
        for name in [m for m in args.models if m not in ("logistic", "mlp")]:
            source, model = MODELS[name]
            text = STUDY.format(source=source, model=model, steps=20, eval_every=1)
            dataset, runs = resolve_study(loads_study(textwrap.dedent(text)))
            print(f"\n# {name}: 20 steps of the stacked model (Adam, one cross-entropy), by operation")
            floor_stacked(runs, dataset, device, 20, profile=True)
    ms = adam_step_ms(75, device)
    print(
        "\n# one Adam step over 75 stacked MLP members: "
        + ", ".join(f"{k} {v:.2f} ms" for k, v in ms.items())
    )


def _vmap_pack(runs, dataset, device: torch.device) -> tuple[float, float]:
    """``train_pack``'s training and evaluation seconds with the stacked layers switched off."""
    program = stacked.stacked_forward
    stacked.stacked_forward = lambda base: None
    try:
        results = train_pack(runs, dataset, device=device)
    finally:
        stacked.stacked_forward = program
    return results[0].timings["train_seconds"], results[0].timings["eval_seconds"]


if __name__ == "__main__":
    main()
