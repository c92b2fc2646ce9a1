"""Reading a study directory back: flat tables of runs and curves, summaries, and export."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from smoothflip.study.store import RunResult, Store

EXPORT_FORMATS = ("csv", "parquet")


def run_rows(results: Iterable[RunResult]) -> list[dict[str, Any]]:
    """One flat row per run: grid coordinates, then ``selected_*`` / ``last_*`` metrics and the rest."""
    rows = []
    for r in results:
        row: dict[str, Any] = {
            "run_id": r.run_id,
            "arm": r.arm,
            "condition": r.condition,
            "noise": r.noise,
            "rate": r.rate,
            "seed": r.seed,
            "loss": r.config["arm"]["loss"],
        }
        for which in ("selected", "last"):
            for key, value in r.metrics.get(which, {}).items():
                row[f"{which}_{key}"] = value
        for key, value in r.metrics.items():
            if not isinstance(value, dict):
                row[key] = value
        for key, value in r.timings.items():
            row[f"time_{key}"] = value
        rows.append(row)
    return rows


def curve_rows(results: Iterable[RunResult]) -> list[dict[str, Any]]:
    """Long table of per-epoch curves: one row per run and epoch."""
    rows = []
    for r in results:
        keys = list(r.curves)
        for i in range(len(r.curves.get("epoch", []))):
            rows.append(
                {
                    "run_id": r.run_id,
                    "arm": r.arm,
                    "condition": r.condition,
                    "seed": r.seed,
                    **{k: r.curves[k][i] for k in keys},
                }
            )
    return rows


def summarize(
    results: Iterable[RunResult], *, arms: list[str], conditions: list[str]
) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds per arm and condition (selected epoch)."""
    groups: dict[tuple[str, str], list[RunResult]] = {}
    for r in results:
        groups.setdefault((r.arm, r.condition), []).append(r)
    rows = []
    for condition in conditions:
        for arm in arms:
            runs = groups.get((arm, condition), [])
            if not runs:
                continue
            row: dict[str, Any] = {"arm": arm, "condition": condition, "n": len(runs)}
            for key in ("test_acc", "test_nll", "test_ece", "test_ece_ts"):
                values = np.array([r.metrics["selected"].get(key, math.nan) for r in runs], dtype=float)
                finite = values[np.isfinite(values)]
                row[key] = float(finite.mean()) if finite.size else math.nan
                row[f"{key}_sd"] = float(finite.std(ddof=1)) if finite.size > 1 else math.nan
            row["diverged"] = sum(bool(r.metrics.get("diverged")) for r in runs)
            rows.append(row)
    return rows


def export(directory: str | Path, *, format: str = "csv", out: str | Path | None = None) -> list[Path]:
    """Write ``runs.<fmt>`` and ``curves.<fmt>`` for a study directory; returns the paths written.

    Raises:
        FileNotFoundError: no study in ``directory``.
        ValueError: unknown format.
    """
    import pandas as pd

    if format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(map(repr, EXPORT_FORMATS))}, got {format!r}")
    directory = Path(directory)
    with Store.open(directory, create=False) as store:
        results = store.results()
    if not results:
        raise ValueError(f"{directory} holds no finished runs to export yet")
    target = Path(out) if out is not None else directory
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, rows in (("runs", run_rows(results)), ("curves", curve_rows(results))):
        frame = pd.DataFrame(rows)
        path = target / f"{name}.{format}"
        if format == "csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        written.append(path)
    return written
