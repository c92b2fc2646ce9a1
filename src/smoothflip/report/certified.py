"""The certified study's part of the report: certified accuracy against radius, the answer, the checks.

Reads what each run stored (``extras["certify"]``: every test point's certified radius per
ensemble, and the attacked retrainings) and the verdict's primary comparisons; arrays in, rows out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from smoothflip import certify
from smoothflip.report.data import StudyData, mean_sd, metric_values, t_interval
from smoothflip.study.spec.certify import metric_suffix
from smoothflip.study.store import RunResult


def ensemble(run: RunResult, k: int) -> dict[str, Any] | None:
    """The stored record of ``run``'s ``k``-ensemble (None when absent)."""
    stored = run.extras.get("certify")
    if not isinstance(stored, dict):
        return None
    for item in stored.get("ensembles") or []:
        if isinstance(item, dict) and item.get("k") == k and isinstance(item.get("radius"), list):
            return item
    return None


def curve(
    runs: Sequence[RunResult], k: int, radii: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Certified accuracy at ``radii`` over ``runs``: mean, and the 95% Student-t interval, ``[R]`` each."""
    rows = []
    for run in runs:
        found = ensemble(run, k)
        if found is not None and found["radius"]:
            rows.append(certify.certified_accuracy(np.asarray(found["radius"], dtype=np.int64), list(radii)))
    if not rows:
        nan = np.full(len(radii), math.nan)
        return nan, nan, nan
    table = np.asarray(rows)
    stats = np.array([t_interval(table[:, i]) for i in range(table.shape[1])])
    return stats[:, 0], stats[:, 1], stats[:, 2]


def _cell(mean: float, low: float, high: float) -> str:
    if not math.isfinite(mean):
        return "—"
    if low == high:
        return f"{100 * mean:.1f}"
    return f"{100 * mean:.1f} [{100 * max(low, 0.0):.1f}, {100 * min(high, 1.0):.1f}]"


def _answer(comparison: Any) -> str:
    metric = comparison.metric
    verdict = comparison.verdict
    what = f"{comparison.arm} vs {comparison.baseline}, {comparison.condition}"
    diff = comparison.mean_diff * metric.scale
    interval = ""
    if math.isfinite(getattr(comparison, "ci_low", math.nan)):
        interval = f" [{comparison.ci_low * metric.scale:+.1f}, {comparison.ci_high * metric.scale:+.1f}]"
    words = {
        "helps": "yes, it raises it",
        "hurts": "no, it lowers it",
        "equivalent": "no, equivalent within the margin",
        "inconclusive": "not detectably",
        "no detectable effect": "not detectably",
        "no verdict": "too few seeds to say",
    }.get(verdict, verdict)
    return f"{what}: {words} ({diff:+.1f} {metric.unit}{interval}, {verdict})"


def _checks(data: StudyData) -> dict[str, Any]:
    found = []
    for run in data.results:
        stored = run.extras.get("certify")
        if isinstance(stored, dict):
            found += [(run, c) for c in stored.get("attack_checks") or [] if isinstance(c, dict)]
    broken = [(run, c) for run, c in found if c.get("broken", 0) or c.get("untouched_learners_changed", 0)]
    attacks = sorted({str(c.get("attack")) for _, c in found})
    budgets = sorted({int(c.get("budget", 0)) for _, c in found})
    covered = sum(int(c.get("certified", 0)) for _, c in found)
    if not found:
        text = "No attacked retrainings were run (certify.attack_checks = 0, or no first-seed run is stored)."
    else:
        text = (
            f"{len(found)} attacked retrainings checked ({', '.join(attacks)} attack on the training labels, "
            f"{'/'.join(map(str, budgets))} flip{'' if budgets == [1] else 's'}, {covered} test predictions "
            "certified at those budgets): "
        )
        if not broken:
            text += "none changed a certified prediction, and every learner whose part the attack left alone "
            text += "was retrained to the same predictions."
        else:
            run, first = broken[0]
            where = f"{run.arm} / {run.condition} / seed {run.seed}, k = {first.get('k')}"
            text += (
                f"{len(broken)} broke: a certified prediction (or an untouched learner) changed, which is a "
                f"bug (e.g. {where}: {first.get('broken')} certified predictions changed, "
                f"{first.get('untouched_learners_changed')} untouched learners changed)."
            )
    return {"count": len(found), "broken": len(broken), "text": text}


def certified_section(data: StudyData, verdict: Any) -> dict[str, Any] | None:
    """The certified part of the report: per ``k`` and condition a table of certified accuracy (%) at
    each radius per arm (mean [95% t-interval] over seeds), the median certified radius, clean and
    base-learner accuracy; the answers of the primary verdicts; the attack checks. None for other kinds."""
    cert = data.spec.certify
    if "certified" not in data.kind.report_parts or cert is None:
        return None
    tables = []
    for k in cert.partitions:
        sfx = metric_suffix(cert, k)
        for condition in data.conditions:
            rows = []
            for arm in data.arms:
                runs = data.runs(arm, condition)
                if not runs:
                    continue
                mean, low, high = curve(runs, k, cert.radii)
                rows.append(
                    {
                        "arm": arm,
                        "n": len(runs),
                        "cells": [_cell(*v) for v in zip(mean, low, high, strict=True)],
                        "mcr": mean_sd(metric_values(runs, f"test_mcr{sfx}")),
                        "acc": mean_sd(metric_values(runs, f"test_acc{sfx}"), scale=100.0),
                        "base": mean_sd(metric_values(runs, f"test_base_acc{sfx}"), scale=100.0),
                    }
                )
            if rows:
                tables.append({"k": k, "condition": condition.label, "rows": rows})
    primary = verdict.primary
    answers = [_answer(c) for c in verdict.comparisons if primary is not None and c.metric.key == primary.key]
    question = (
        f"Does a technique in the base learners raise {primary.label}"
        if primary is not None
        else "No verdict"
    )
    return {
        "radii": list(cert.radii),
        "tables": tables,
        "question": question + "?" if primary is not None else question,
        "answers": answers,
        "checks": _checks(data),
        "scheme": cert.scheme,
        "d": cert.d,
        "selection": cert.selection,
    }
