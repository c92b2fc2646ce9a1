"""What every track stores for a finished run: the grid coordinates, the config and the versions."""

from __future__ import annotations

import platform
import sys
from typing import Any

import numpy as np
import torch

from smoothflip import __version__
from smoothflip.study.grid import RunConfig
from smoothflip.study.store import RunResult


def versions() -> dict[str, str]:
    """Package versions a run was trained with (stored beside it)."""
    return {
        "smoothflip": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(terse=True),
    }


def run_result(
    run: RunConfig,
    metrics: dict[str, Any],
    curves: dict[str, Any],
    extras: dict[str, Any],
    timings: dict[str, Any],
    artifacts: dict[str, bytes] | None = None,
) -> RunResult:
    """A finished run as the store keeps it (grid coordinates, condition id, config and versions)."""
    return RunResult(
        run_id=run.run_id,
        arm=run.arm.name,
        condition=run.condition.label,
        noise=run.condition.noise,
        rate=run.condition.rate,
        seed=run.seed,
        config=run.to_dict(),
        metrics=metrics,
        curves=curves,
        extras=extras,
        timings=timings,
        versions=versions(),
        artifacts=artifacts or {},
        condition_id=run.condition.condition_id,
    )


def pack_timings(
    seconds: float, size: int, steps: int, clock: dict[str, float] | None = None
) -> dict[str, Any]:
    """A pack's timings as stored with each of its runs; ``clock`` splits the pack's seconds into
    training (``train_seconds``) and evaluation (``eval_seconds``), summed over every process that
    worked on the pack (a pack resumed from a checkpoint counts the time before the kill too)."""
    out: dict[str, Any] = {
        "pack_seconds": seconds,
        "pack_size": size,
        "seconds_per_run": seconds / max(size, 1),
        "steps": steps,
    }
    if clock is not None:
        out["train_seconds"] = float(clock.get("train", 0.0))
        out["eval_seconds"] = float(clock.get("eval", 0.0))
    return out
