"""Durable progress: what pack checkpoints cost, and what ten ``kill -9`` cost with them.

One 75-run MNIST-1D study (the grid of ``study_engine.py``, MLP 40-100-100-10, batch 100) is run
as real ``smoothflip run`` subprocesses, in one pack:

1. uninterrupted without checkpoints (``--checkpoint-seconds -1``), with the default (60 s) and
   with a checkpoint after every epoch (``0``): the cost of checkpoints;
2. killed with SIGKILL ten times at random moments (each process lives a random 0.5-1.5 times
   the uninterrupted time / 11, so the kills spread over the study), then run to the end: the
   total wall time of the eleven processes against one uninterrupted
   run, and whether the stored results are bitwise those of the uninterrupted run.

Usage::

    python benchmarks/kill_resume.py [--steps 3000] [--kills 10] [--checkpoint-seconds 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import torch

from smoothflip.study.store import Store

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from study_engine import STUDY  # noqa: E402


def _run(study: Path, out: Path, seconds: float, *, kill_after: float | None = None) -> float:
    cmd = [
        sys.executable,
        "-m",
        "smoothflip",
        "run",
        str(study),
        "--out",
        str(out),
        "--pack-size",
        "1000",
        "--checkpoint-seconds",
        str(seconds),
        "-q",
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        proc.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    elapsed = time.perf_counter() - start
    if kill_after is None and proc.returncode != 0:
        raise SystemExit(proc.stderr.read().decode())
    return elapsed


def _fingerprint(out: Path) -> dict[str, str]:
    with Store.open(out, readonly=True) as store:
        return {
            r.run_id: json.dumps([r.metrics, r.curves, r.extras], sort_keys=True, default=str)
            for r in store.results()
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--checkpoint-seconds", type=float, default=0.0, help="for the kill loop")
    args = parser.parse_args()
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        study = root / "study.toml"
        text = STUDY.format(
            source="mnist1d", model='name = "mlp"\nhidden = [100, 100]', steps=args.steps, eval_every=1
        )
        study.write_text(textwrap.dedent(text))
        times = {}
        for seconds in (-1, 60, 0):
            times[seconds] = _run(study, root / f"whole{seconds}", seconds)
            print(f"uninterrupted, --checkpoint-seconds {seconds:g}: {times[seconds]:.1f} s", flush=True)
        base = times[-1]
        print(f"checkpoint cost: default {times[60] / base - 1:+.1%}, every epoch {times[0] / base - 1:+.1%}")
        rng = np.random.default_rng(0)
        out = root / "killed"
        total = 0.0
        for _ in range(args.kills):
            life = float(rng.uniform(0.5, 1.5)) * base / (args.kills + 1)
            total += _run(study, out, args.checkpoint_seconds, kill_after=life)
        total += _run(study, out, args.checkpoint_seconds)
        same = _fingerprint(out) == _fingerprint(root / "whole-1")
        print(
            f"{args.kills} kills (each process 0.5-1.5 x {base / (args.kills + 1):.1f} s) + final run, "
            f"--checkpoint-seconds {args.checkpoint_seconds:g}: {total:.1f} s = {total / base:.2f}x "
            f"uninterrupted; results bitwise equal: {same}"
        )


if __name__ == "__main__":
    main()
