"""Writing the report: a self-contained HTML page, a Markdown twin and the PNG figures.

``DIR/report/index.html`` embeds every figure as a base64 PNG ``data:`` URI and its CSS inline, and
declares a Content-Security-Policy that allows nothing else (no scripts, no network), so it opens
from disk anywhere. ``DIR/report/report.md`` renders on GitHub and links ``figures/*.png``.

Every user-supplied string (study name, description, arm names, condition labels, class names) is
escaped: the HTML template is rendered by Jinja2 with autoescaping on; the Markdown template has
autoescaping off and passes every such string through :func:`md_escape` (HTML entities for ``&``,
``<`` and ``>``, backslashes before Markdown punctuation and table pipes). Figures draw them as
plain text (see :func:`smoothflip.report.figures.plain`).

Every file is written atomically (a temporary file in the same folder, then ``os.replace``), and
the output depends only on the stored study: no timestamps, so rewriting gives identical bytes.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from smoothflip import __version__
from smoothflip._files import atomic_write
from smoothflip._text import printable
from smoothflip.report.certified import certified_section
from smoothflip.report.data import (
    StudyData,
    load_study_data,
    mean_sd,
    mean_sd_text,
    measured_at,
    metric_values,
)
from smoothflip.report.figures import ALL_FIGURE_NAMES, FigureResult, build_figures
from smoothflip.study.results import study_summary
from smoothflip.study.verdict import study_verdict

TEMPLATES = Path(__file__).parent / "templates"

VERDICT_CLASSES = {
    "helps": "v-helps",
    "hurts": "v-hurts",
    "equivalent": "v-equiv",
    "inconclusive": "v-neutral",
    "no detectable effect": "v-neutral",
    "no verdict": "v-none",
}
"""CSS class of each verdict word in the HTML."""


# --------------------------------------------------------------------------- escaping

_MD_PUNCT = re.compile(r"([\\`*_\[\]{}|~])")
_MD_LINE_START = re.compile(r"^([#+\-=>]|\d+[.)])")


def md_escape(value: Any, *, line_start: bool = False) -> str:
    """Make a user string inert in Markdown (GitHub flavour), on one line.

    ``&``, ``<`` and ``>`` become HTML entities (no raw HTML gets through); ``\\ ` * _ [ ] { } | ~``
    are backslash-escaped (no emphasis, code, links, images or table cells); whitespace runs,
    newlines included, become one space; control characters are written as their escapes
    (``\\x1b``), so that showing the file in a terminal cannot drive the terminal. With
    ``line_start`` (the string begins a line), a leading ``#``, ``+``, ``-``, ``=`` or ``1.`` is
    escaped too, so it cannot start a heading or a list.

    Example:
        >>> md_escape("<b>a|b</b> & [x](y)")
        '&lt;b&gt;a\\\\|b&lt;/b&gt; &amp; \\\\[x\\\\](y)'
        >>> md_escape("# 1. not a heading", line_start=True)
        '\\\\# 1. not a heading'
    """
    text = printable(" ".join(str(value).split()))  # no terminal control characters in report.md
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_PUNCT.sub(r"\\\1", text)
    match = _MD_LINE_START.match(text) if line_start else None
    if match:
        token = match.group(1)
        text = (token[:-1] + "\\" + token[-1] if token[-1] in ".)" else "\\" + token) + text[len(token) :]
    return text


# --------------------------------------------------------------------------- context


@dataclass(frozen=True)
class _Cell:
    diff: str
    low: str
    high: str
    verdict: str
    css: str
    n: int
    extra: str = ""  # interquartile mean of the differences (from 4 seeds) and P(improvement)


def _extra(c: Any, metric: Any, format_diff: Any) -> str:
    """``MDE 1.2 · IQM +0.4 · P(better) 0.8``: the minimum detectable effect at the cell's seeds, the
    IQM of the paired differences (4+ seeds) and P(improvement)."""
    from smoothflip.analysis import format_size

    parts = []
    if not math.isnan(c.mde):
        parts.append(f"MDE {_bare(format_size(c.mde, metric), metric.unit)}")
    if math.isfinite(c.iqm_diff):
        parts.append(f"IQM {format_diff(c.iqm_diff, metric)}")
    if math.isfinite(c.prob_improvement):
        parts.append(f"P(better) {c.prob_improvement:.2f}")
    return " · ".join(parts)


def _bare(text: str, unit: str) -> str:
    """``format_diff`` text without its unit (interval ends; the column header names the unit)."""
    suffix = f" {unit}"
    return text[: -len(suffix)] if unit and text.endswith(suffix) else text


def _analysis(data: StudyData) -> Any:
    """The study's verdict (comparisons, headlines, families, design), as the terminal shows it."""
    return study_verdict(data)


def _verdict_table(data: StudyData, comparisons: Sequence[Any]) -> dict[str, Any]:
    from smoothflip.analysis import format_diff

    metrics: dict[str, Any] = {}
    for c in comparisons:
        metrics.setdefault(c.metric.key, c.metric)
    table = {(c.condition, c.arm, c.metric.key): c for c in comparisons}
    groups = []
    for condition in data.conditions:
        rows = []
        for arm in data.others:
            cells = []
            for key, metric in metrics.items():
                c = table.get((condition.label, arm, key))
                if c is None:
                    cells.append(_Cell("n/a", "", "", "no verdict", VERDICT_CLASSES["no verdict"], 0))
                    continue
                finite = math.isfinite(c.ci_low) and math.isfinite(c.ci_high)
                cells.append(
                    _Cell(
                        diff=format_diff(c.mean_diff, metric),
                        low=_bare(format_diff(c.ci_low, metric), metric.unit) if finite else "",
                        high=_bare(format_diff(c.ci_high, metric), metric.unit) if finite else "",
                        verdict=c.verdict,
                        css=VERDICT_CLASSES.get(c.verdict, "v-none"),
                        n=c.n,
                        extra=_extra(c, metric, format_diff),
                    )
                )
            if any(table.get((condition.label, arm, k)) is not None for k in metrics):
                label = arm if data.single_baseline else f"{arm} vs {data.baselines.get(arm, data.baseline)}"
                rows.append({"arm": label, "cells": cells, "n": max(c.n for c in cells)})
        if rows:
            groups.append({"condition": condition.label, "rows": rows})
    headers = [
        {
            "label": m.label,
            "unit": m.unit,
            "better": "higher is better" if m.higher_is_better else "lower is better",
            "arrow": "↑" if m.higher_is_better else "↓",
            "role": next((c.role for c in comparisons if c.metric.key == m.key), ""),
        }
        for m in metrics.values()
    ]
    return {"headers": headers, "groups": groups}


def figure_entries(figures: Sequence[FigureResult]) -> list[dict[str, Any]]:
    """The templates' view of drawn figures: title, caption, note, the Markdown's file link and the
    HTML's inline ``data:`` URI (``None`` for a figure that was skipped)."""
    return [
        {
            "name": f.name,
            "title": f.title,
            "caption": f.caption,
            "note": f.note,
            "file": f"figures/{f.name}.png" if f.png is not None else None,
            "uri": "data:image/png;base64," + base64.b64encode(f.png).decode("ascii")
            if f.png is not None
            else None,
        }
        for f in figures
    ]


def _summary(data: StudyData) -> dict[str, Any]:
    """The summary table: the study kind's summary columns, mean ± sd over seeds per condition and arm."""
    columns, rows = study_summary(data)
    return {
        "columns": [c.title for c in columns],
        "temperature_scaled": any(c.key.endswith("_ts") for c in columns),
        "rows": [
            {
                "condition": r["condition"],
                "arm": r["arm"],
                "n": r["n"],
                "cells": [
                    mean_sd_text(r[c.key], r[f"{c.key}_sd"], scale=c.scale, digits=c.digits) for c in columns
                ],
                "diverged": r["diverged"],
            }
            for r in rows
        ],
    }


def _representation(data: StudyData) -> list[dict[str, Any]]:
    """Müller et al. 2019's representation claims as numbers, per arm and condition (probed seeds).

    Cluster tightness and centroid spacing come from the penultimate projection of the stored test
    sample (:func:`smoothflip.metrics.cluster_geometry`); the mutual information is the estimate at
    the last recorded epoch. Means over the probed seeds.
    """
    from smoothflip.metrics import cluster_geometry, penultimate_projection

    rows = []
    for condition in data.conditions:
        for arm in (data.baseline, *data.smoothing_arms):
            tight, spacing, mi, mi_max, seeds = [], [], [], [], 0
            for run in data.runs(arm, condition):
                rep = run.extras.get("representation")
                curve = [v for v in run.curves.get("mi", []) if isinstance(v, float) and math.isfinite(v)]
                if not isinstance(rep, dict) and not curve:
                    continue
                seeds += 1
                if curve:
                    mi.append(curve[-1])
                    info = run.extras.get("mi")
                    if isinstance(info, dict) and info.get("examples"):
                        mi_max.append(math.log(info["examples"]))
                if isinstance(rep, dict):
                    bias = rep.get("head_bias")
                    bias = bias if isinstance(bias, list) else None
                    try:
                        coords = penultimate_projection(
                            rep["features"], rep["head_weight"], rep["classes"], bias=bias
                        )
                        geometry = cluster_geometry(coords, rep["labels"])
                    except (ValueError, TypeError, KeyError):
                        continue
                    tight.append(geometry.tightness)
                    spacing.append(geometry.spacing_cv)
            if seeds:
                rows.append(
                    {
                        "condition": condition.label,
                        "arm": arm,
                        "seeds": seeds,
                        "tightness": f"{np.mean(tight):.3f}" if tight else "—",
                        "spacing": f"{np.mean(spacing):.3f}" if spacing else "—",
                        "mi": f"{np.mean(mi):.3f}" if mi else "—",
                        "mi_max": f"{np.mean(mi_max):.2f}" if mi_max else "—",
                    }
                )
    return rows


def _defenses(data: StudyData) -> list[dict[str, Any]]:
    """Detection by each defense arm, scored against the true flip mask (mean over seeds)."""
    rows = []
    for condition in data.conditions:
        for arm in data.arms:
            scores = [r.metrics.get("defense") for r in data.runs(arm, condition)]
            scores = [d for d in scores if isinstance(d, dict)]
            if not scores:
                continue

            def mean(key: str, digits: int = 3, scores: list = scores) -> str:
                values = np.array([float(d.get(key, math.nan)) for d in scores])
                values = values[np.isfinite(values)]
                return f"{values.mean():.{digits}f}" if values.size else "—"

            rows.append(
                {
                    "condition": condition.label,
                    "arm": arm,
                    "defense": str(scores[0].get("name", "")),
                    "seeds": len(scores),
                    "precision": mean("precision"),
                    "recall": mean("recall"),
                    "f1": mean("f1"),
                    "relabelled": mean("relabelled", 1),
                    "dropped": mean("dropped", 1),
                }
            )
    return rows


def _attack_table(data: StudyData) -> dict[str, Any] | None:
    """Test accuracy per arm (rows) under each attack and budget (columns), mean ± sd over seeds."""
    attacks = [c for c in data.conditions if c.noise == "attack"]
    if not attacks:
        return None
    columns = ([data.clean] if data.clean is not None else []) + attacks
    rows = []
    for arm in data.arms:
        cells = [mean_sd(metric_values(data.runs(arm, c), "test_acc"), scale=100.0) for c in columns]
        rows.append({"arm": arm, "cells": cells})
    return {"columns": [c.label for c in columns], "rows": rows}


def _language_model(data: StudyData) -> dict[str, Any] | None:
    """Language-model studies: perplexity, KL to the truth and entropies per arm, and next-token examples."""
    if "language_model" not in data.kind.report_parts:
        return None
    rows = []
    for condition in data.conditions:
        for arm in data.arms:
            runs = data.runs(arm, condition)
            if not runs:
                continue

            def stat(key: str, digits: int, runs: list = runs) -> str:
                return mean_sd(metric_values(runs, key), digits=digits)

            rows.append(
                {
                    "arm": arm,
                    "n": len(runs),
                    "perplexity": stat("test_perplexity", 2),
                    "kl": stat("test_kl", 4),
                    "entropy": stat("test_entropy", 3),
                    "true_entropy": stat("true_entropy", 3),
                    "acc": stat("test_acc", 4),
                }
            )
    examples = []
    for arm in data.arms:
        for run in data.runs(arm, data.conditions[0]) if data.conditions else []:
            found = run.extras.get("next_token_examples")
            if isinstance(found, list) and found:
                examples.append({"arm": arm, "seed": run.seed, "examples": found})
                break
    return {"rows": rows, "examples": examples}


def _versions(data: StudyData, key: str) -> str:
    found = sorted({str(r.versions.get(key)) for r in data.results if r.versions.get(key)})
    return ", ".join(found) if found else "unknown"


def _setup(data: StudyData) -> list[dict[str, str]]:
    spec = data.spec
    model = spec.model.factory if spec.model.factory else spec.model.name
    seeds = ", ".join(str(s) for s in spec.seeds)
    stored = len(data.results)
    runs = f"{stored} of {data.expected_runs} stored"
    if data.design:
        runs = f"{stored} stored (until settled: each cell got the seeds its verdict needed)"
    if data.diverged:
        runs += f", {data.diverged} diverged"
    else:
        runs += ", none diverged"
    if data.incomplete:
        first_run = data.incomplete[0]
        runs += (
            f"; {len(data.incomplete)} incomplete (stored without final metrics, left out; e.g. "
            f"{first_run.arm} / {first_run.condition} / seed {first_run.seed}, run {first_run.run_id})"
        )
    if data.failures:
        first = data.failures[0]
        runs += (
            f"; {len(data.failures)} failed and will be retried by a rerun "
            f"(e.g. {first.arm} / {first.condition} / seed {first.seed}: {first.message})"
        )
    return [
        {"label": "data", "value": spec.data.source},
        {"label": "model", "value": model},
        {"label": "seeds", "value": f"{'up to ' if data.design else ''}{len(spec.seeds)} ({seeds})"},
        {
            "label": "arms",
            "value": f"{', '.join(data.arms)} (baseline {data.baseline})"
            if data.single_baseline
            else f"{', '.join(data.arms)} (each against its hard-label counterpart)",
        },
        {"label": "conditions", "value": ", ".join(c.label for c in data.conditions)},
        {"label": "runs", "value": runs},
    ]


def _context(data: StudyData, verdict: Any, figures: Sequence[FigureResult]) -> dict[str, Any]:
    from smoothflip.report.verdict_rows import cost_sentences, verdict_rows

    comparisons, headlines, analysis_note = verdict.comparisons, verdict.headlines, verdict.note
    rows = verdict_rows(verdict) if analysis_note is None else {"design": [], "primary": [], "secondary": []}
    primary = verdict.primary
    from smoothflip.report.findings import check_findings

    findings = [] if analysis_note is not None else check_findings(data, verdict)
    return {
        "name": data.spec.name,
        "description": data.spec.description,
        "setup": _setup(data),
        "baseline": data.baseline,
        "single_baseline": data.single_baseline,
        "measured_at": measured_at(data),
        "headlines": [{"arm": arm, "sentences": texts} for arm, texts in headlines.items()],
        "analysis_note": analysis_note,
        "verdicts": _verdict_table(data, comparisons),
        "design": rows["design"],
        "findings": [
            {
                "claim": f.finding.claim,
                "reference": f.finding.reference,
                "status": f.status,
                "evidence": list(f.evidence),
            }
            for f in findings
        ],
        "primary_rows": [{**r, "css": VERDICT_CLASSES.get(r["verdict"], "v-none")} for r in rows["primary"]],
        "priced": any(r["needs"] for r in rows["primary"]),
        "priced_rows": [
            r for r in (*rows["primary"], *rows["secondary"]) if r["needs"] or r["needs_equivalence"]
        ],
        "costs": [] if analysis_note is not None else cost_sentences(verdict, str(data.directory)),
        "primary_label": primary.label + (f" ({primary.unit})" if primary.unit else ""),
        "figures": figure_entries(figures),
        "summary": _summary(data),
        "representation": _representation(data),
        "language_model": _language_model(data),
        "certified": certified_section(data, verdict),
        "defenses": _defenses(data),
        "attack_table": _attack_table(data),
        "attacked": any(c.noise == "attack" for c in data.conditions),
        "provenance": {
            "smoothflip": _versions(data, "smoothflip"),
            "torch": _versions(data, "torch"),
            "runs": len(data.results),
            "writer": __version__,
        },
    }


def _no_controls(value: Any) -> Any:
    """Every string a template prints loses its control characters (written as ``\\x1b``); markup the
    report made itself (figures, marked safe) passes as it is."""
    if isinstance(value, str) and not hasattr(value, "__html__"):
        return printable(value)
    return value


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"), default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=_no_controls,
    )
    env.filters["md"] = md_escape
    env.filters["md_line"] = lambda value: md_escape(value, line_start=True)
    return env


# --------------------------------------------------------------------------- writing


def write_report(directory: str | Path, *, out: str | Path | None = None) -> Path:
    """Write the report of a study directory: ``index.html``, ``report.md`` and ``figures/*.png``.

    Figures whose data is absent (no noisy condition, no representation probes, ...) are left out
    with a short note in their place.

    Args:
        directory: a study directory written by ``smoothflip run``.
        out: where to write (default: ``DIR/report``); created if missing.

    Returns:
        The path of ``index.html``.

    Raises:
        FileNotFoundError: ``directory`` holds no study (no store or no ``study.toml``).

    Example:
        >>> from smoothflip.report import write_report
        >>> write_report("smoothflip-runs/demo")  # doctest: +SKIP
        PosixPath('smoothflip-runs/demo/report/index.html')
    """
    data = load_study_data(directory)
    target = Path(out) if out is not None else data.directory / "report"
    figures_dir = target / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)

    verdict = _analysis(data)
    from smoothflip.analysis import format_diff

    figures = build_figures(data, verdict.comparisons, format_diff=format_diff)
    drawn = set()
    for figure in figures:
        if figure.png is not None:
            atomic_write(figures_dir / f"{figure.name}.png", figure.png)
            drawn.add(figure.name)
    for name in ALL_FIGURE_NAMES:  # a figure skipped now must not linger from an earlier report
        stale = figures_dir / f"{name}.png"
        if name not in drawn and stale.exists():
            stale.unlink()

    context = _context(data, verdict, figures)
    env = _environment()
    markdown = env.get_template("report.md.j2").render(context)
    atomic_write(target / "report.md", markdown.encode("utf-8"))
    html = env.get_template("report.html.j2").render(context)
    index = target / "index.html"
    atomic_write(index, html.encode("utf-8"))
    return index
