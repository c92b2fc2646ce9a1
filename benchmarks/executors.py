"""Local executor vs Ray executor on the demo study, side by side in one process.

The built-in demo study (MNIST-1D, 1D CNN, 6 arms x 3 label conditions x 5 seeds = 90 runs; fewer
epochs with ``--epochs``) is trained with the same pack size

1. by the local executor (packs one after another in this process, torch with all its threads),
   once before and once after the Ray runs (the machine's load drifts; the faster one is compared);
2. by the Ray executor on a local Ray cluster started here (``ray.init(num_cpus=...)``),
   ``--cpus-per-pack`` CPUs per pack: first "cold" (the cluster's worker processes start and import
   torch during the run), then "warm" (the same study again into a fresh directory, workers up).

Each run writes its own study directory; the stored results are checked to match. It prints wall
times, the overhead ratio (Ray / local) and the machine. Usage::

    python benchmarks/executors.py [--epochs 5] [--pack-size 15] [--cpus-per-pack 1] [--num-cpus N]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import re
import tempfile
import time
from importlib import resources
from pathlib import Path

import torch

from smoothflip.engine import run_study
from smoothflip.study.spec import StudySpec, loads_study
from smoothflip.study.store import Store


def demo_study(epochs: int | None) -> StudySpec:
    """The built-in demo study, optionally with another number of epochs."""
    text = resources.files("smoothflip.studies").joinpath("demo.toml").read_text(encoding="utf-8")
    if epochs is not None:
        text, count = re.subn(r"(?m)^epochs = \d+", f"epochs = {epochs}", text)
        if count != 1:
            raise SystemExit("the demo study's [train] epochs line was not found")
    return loads_study(text, default_name="demo", origin="built-in demo study")


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def max_difference(a: Path, b: Path) -> float:
    """Largest absolute difference of the selected-epoch metrics between two study directories."""
    with Store.open(a, create=False) as sa, Store.open(b, create=False) as sb:
        ra = {r.run_id: r for r in sa.results()}
        rb = {r.run_id: r for r in sb.results()}
    if ra.keys() != rb.keys():
        raise SystemExit(f"{a} and {b} hold different runs")
    worst = 0.0
    for run_id, x in ra.items():
        for key, u in x.metrics["selected"].items():
            v = rb[run_id].metrics["selected"][key]
            if isinstance(u, float) and not (math.isnan(u) and math.isnan(v)):
                worst = max(worst, abs(u - v))
    return worst


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"{os.cpu_count()} CPU(s), {cpu}, {platform.system()} {platform.machine()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs per run (the demo uses 25)")
    parser.add_argument("--pack-size", type=int, default=15, help="members per pack, both executors")
    parser.add_argument("--cpus-per-pack", type=float, default=1.0, help="Ray: CPUs per pack")
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray cluster")
    args = parser.parse_args()

    import ray

    spec = demo_study(args.epochs)
    ray_options = {"executor": "ray", "pack_size": args.pack_size, "cpus_per_pack": args.cpus_per_pack}
    cluster = {"address": "local", "num_cpus": args.num_cpus, "include_dashboard": False}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        local_s = timed(lambda: run_study(spec, out / "local", pack_size=args.pack_size))
        init_s = timed(lambda: ray.init(**cluster, logging_level=logging.WARNING))
        try:
            cold_s = timed(lambda: run_study(spec, out / "ray-cold", **ray_options))
            warm_s = timed(lambda: run_study(spec, out / "ray-warm", **ray_options))
        finally:
            ray.shutdown()
        again_s = timed(lambda: run_study(spec, out / "local-again", pack_size=args.pack_size))
        others = ("ray-cold", "ray-warm", "local-again")
        diff = max(max_difference(out / "local", out / name) for name in others)
        with Store.open(out / "local", create=False) as store:
            runs = store.count()

    packs = -(-runs // args.pack_size)
    threads = torch.get_num_threads()
    best = min(local_s, again_s)
    print(f"machine: {machine()}; torch {torch.__version__} ({threads} threads), ray {ray.__version__}")
    print(
        f"study: demo, {runs} runs, {args.epochs} epochs, pack size {args.pack_size} (~{packs} packs); "
        f"Ray: {args.num_cpus} CPUs, {args.cpus_per_pack:g} CPU(s) per pack"
    )
    print(f"largest metric difference between the four stores: {diff:.2g}")
    print()
    print("| executor | wall s | vs local (faster of the two) |")
    print("|---|---|---|")
    print(f"| local, before the Ray runs | {local_s:.1f} | {local_s / best:.2f}x |")
    print(f"| local, after the Ray runs | {again_s:.1f} | {again_s / best:.2f}x |")
    print(f"| ray, cold (workers start during the run) | {cold_s:.1f} | {cold_s / best:.2f}x |")
    print(f"| ray, warm | {warm_s:.1f} | {warm_s / best:.2f}x |")
    print(f"| ray.init (cluster start, not in the rows above) | {init_s:.1f} | |")


if __name__ == "__main__":
    main()
