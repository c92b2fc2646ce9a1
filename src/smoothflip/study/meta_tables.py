"""The pooled study's tables: ``pooled.csv`` (one row per key) and ``studies.csv`` (one row per study
and key), written atomically.

Values are in the metric's raw units (accuracy as a fraction); ``scale`` converts them for display
(100 for accuracy: points). ``studies.csv`` holds what each key was pooled from (``key``,
``estimate``, ``variance``), so ``pooled.csv`` can be recomputed from it with
:func:`smoothflip.analysis.meta.random_effects`.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smoothflip._files import atomic_write

if TYPE_CHECKING:
    from smoothflip.study.meta import MetaAnalysis

__all__ = ["POOLED_COLUMNS", "STUDY_COLUMNS", "pooled_rows", "study_rows", "write_tables"]

POOLED_COLUMNS = (
    "key",
    "arm",
    "arm_names",
    "arm_definition",
    "baseline",
    "baseline_definition",
    "condition",
    "noise",
    "rate",
    "metric",
    "metric_label",
    "role",
    "higher_is_better",
    "scale",
    "unit",
    "k",
    "n_seeds",
    "estimate",
    "se",
    "ci_low",
    "ci_high",
    "pi_low",
    "pi_high",
    "tau2",
    "tau",
    "i2",
    "h2",
    "q",
    "q_pvalue",
    "method",
    "interval",
    "level",
    "p_value",
    "p_adjusted",
    "verdict",
    "verdict_low",
    "verdict_high",
    "margin",
    "mde",
    "fe_estimate",
    "fe_low",
    "fe_high",
    "wald_low",
    "wald_high",
    "hksj_modified_low",
    "hksj_modified_high",
    "loo_min",
    "loo_max",
    "prob_improvement",
    "prob_improvement_low",
    "prob_improvement_high",
    "notes",
)
"""Columns of ``pooled.csv``."""

STUDY_COLUMNS = (
    "key",
    "study",
    "directory",
    "arm",
    "baseline",
    "condition",
    "metric",
    "n_seeds",
    "estimate",
    "se",
    "variance",
    "variance_floored",
    "weight",
)
"""Columns of ``studies.csv``."""


def pooled_rows(analysis: MetaAnalysis) -> list[dict[str, Any]]:
    """One row per key, in the order of ``analysis.keys``."""
    rows = []
    nan = math.nan
    for p in analysis.keys:
        r, s = p.result, p.sensitivity
        fe, wald, mod = s.get("fixed effect"), s.get("wald"), s.get("hksj_modified")
        poi = p.improvement
        rows.append(
            {
                "key": p.key,
                "arm": p.arm,
                "arm_names": "; ".join(p.arm_names),
                "arm_definition": p.arm_definition,
                "baseline": p.baseline,
                "baseline_definition": p.baseline_definition,
                "condition": p.condition,
                "noise": p.noise,
                "rate": p.rate,
                "metric": p.metric.key,
                "metric_label": p.metric.label,
                "role": p.role,
                "higher_is_better": p.metric.higher_is_better,
                "scale": p.metric.scale,
                "unit": p.metric.unit,
                "k": r.k,
                "n_seeds": sum(e.n for e in p.effects),
                "estimate": r.estimate,
                "se": r.se,
                "ci_low": r.ci[0],
                "ci_high": r.ci[1],
                "pi_low": r.pi[0] if r.pi else nan,
                "pi_high": r.pi[1] if r.pi else nan,
                "tau2": r.tau2,
                "tau": r.tau,
                "i2": r.i2,
                "h2": r.h2,
                "q": r.q,
                "q_pvalue": r.q_pvalue,
                "method": r.method,
                "interval": r.interval,
                "level": r.level,
                "p_value": r.p_value,
                "p_adjusted": p.p_adjusted,
                "verdict": p.verdict,
                "verdict_low": p.verdict_low,
                "verdict_high": p.verdict_high,
                "margin": p.margin,
                "mde": p.mde,
                "fe_estimate": fe.estimate if fe else nan,
                "fe_low": fe.ci[0] if fe else nan,
                "fe_high": fe.ci[1] if fe else nan,
                "wald_low": wald.ci[0] if wald else nan,
                "wald_high": wald.ci[1] if wald else nan,
                "hksj_modified_low": mod.ci[0] if mod else nan,
                "hksj_modified_high": mod.ci[1] if mod else nan,
                "loo_min": p.loo[0],
                "loo_max": p.loo[1],
                "prob_improvement": poi.estimate if poi else nan,
                "prob_improvement_low": poi.low if poi else nan,
                "prob_improvement_high": poi.high if poi else nan,
                "notes": " | ".join((*r.notes, *r.warnings)),
            }
        )
    return rows


def study_rows(analysis: MetaAnalysis) -> list[dict[str, Any]]:
    """One row per study and key (the studies a key was pooled from, with their weights)."""
    rows = []
    for p in analysis.keys:
        for effect, weight in zip(p.effects, p.result.weights, strict=True):
            study = analysis.studies[effect.study]
            rows.append(
                {
                    "key": p.key,
                    "study": study.name,
                    "directory": str(study.directory),
                    "arm": effect.arm,
                    "baseline": effect.baseline,
                    "condition": effect.condition,
                    "metric": p.metric.key,
                    "n_seeds": effect.n,
                    "estimate": effect.estimate,
                    "se": effect.se,
                    "variance": effect.variance,
                    "variance_floored": effect.floored,
                    "weight": weight,
                }
            )
    return rows


def _csv(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> bytes:
    import pandas as pd

    buffer = io.StringIO()
    pd.DataFrame(rows, columns=list(columns)).to_csv(buffer, index=False)
    return buffer.getvalue().encode("utf-8")


def write_tables(analysis: MetaAnalysis, out: Path) -> tuple[Path, Path]:
    """Write ``out/pooled.csv`` and ``out/studies.csv`` (creating ``out``)."""
    pooled = _csv(pooled_rows(analysis), POOLED_COLUMNS)
    studies = _csv(study_rows(analysis), STUDY_COLUMNS)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "pooled.csv", pooled)
    atomic_write(out / "studies.csv", studies)
    return out / "pooled.csv", out / "studies.csv"
