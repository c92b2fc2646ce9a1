"""The report of a pooled analysis (``smoothflip meta``): ``OUT/report/index.html``, ``report.md`` and
``figures/*.png``.

Built with the study report's machinery (:mod:`smoothflip.report.render`): Jinja2 with autoescaping
for the HTML (every study, arm and condition name escaped), :func:`~smoothflip.report.render.md_escape`
for the Markdown twin, figures embedded as ``data:`` URIs under a Content-Security-Policy that allows
nothing else (no scripts, no network), files written atomically, no timestamps.

Sections: the studies pooled; the primary verdicts (one Holm family); the forest plots (the
overview, the correct-labels condition, one per arm faceted by condition); the sensitivity rows
(fixed effect, Wald, modified HKSJ, leave-one-out range); the paired probability of improvement
(conditional on these tasks); the secondary metrics (BH per metric); notes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import matplotlib.style

from smoothflip import __version__
from smoothflip._files import atomic_write
from smoothflip.analysis import format_diff, format_size
from smoothflip.analysis.meta import INTERVAL_NAMES, METHOD_NAMES, reading
from smoothflip.report.figures import FigureResult, FigureSkipped, to_png
from smoothflip.report.figures._common import _RC
from smoothflip.report.figures._forest import forest, pooled_overview
from smoothflip.report.render import VERDICT_CLASSES, _environment, figure_entries

if TYPE_CHECKING:
    from smoothflip.study.meta import MetaAnalysis, PooledKey

__all__ = ["MEDIA", "meta_figures", "write_meta_report"]

MEDIA = ("pooled", "clean")
"""Stems of the summary figures (``figures/pooled.png``: every condition; ``figures/clean.png``:
correct labels, one panel per technique)."""


def _bare(value: float, metric: Any) -> str:
    text = format_diff(value, metric)
    return text[: -len(metric.unit) - 1] if metric.unit and text.endswith(" " + metric.unit) else text


def _interval(low: float, high: float, metric: Any) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return "—"
    return f"[{_bare(low, metric)}, {_bare(high, metric)}]"


def _primary_keys(analysis: MetaAnalysis) -> list[PooledKey]:
    return [k for k in analysis.keys if k.role == "primary"]


def meta_figures(analysis: MetaAnalysis) -> list[FigureResult]:
    """The report's figures: the overview, the clean condition (per technique), one forest per arm."""
    primary = _primary_keys(analysis)
    names = [s.name for s in analysis.studies]
    specs: list[tuple[str, str, Any]] = [
        ("pooled", f"Pooled effects on {analysis.primary.label}", lambda: pooled_overview(primary)),
        (
            "clean",
            f"Correct labels: every study and the pooled effect, {analysis.primary.label}",
            lambda: _clean(primary, names),
        ),
    ]
    arms = list(dict.fromkeys((k.arm, k.baseline) for k in primary))
    for i, (arm, baseline) in enumerate(arms, start=1):
        keys = [k for k in primary if (k.arm, k.baseline) == (arm, baseline)]
        specs.append((f"forest_{i:02d}", f"{arm} against {baseline}", lambda keys=keys: forest(keys, names)))
    out = []
    with matplotlib.style.context(["default", _RC]):
        for name, title, build in specs:
            try:
                fig, caption = build()
            except FigureSkipped as skipped:
                out.append(FigureResult(name=name, title=title, caption="", png=None, note=str(skipped)))
                continue
            out.append(FigureResult(name=name, title=title, caption=caption, png=to_png(fig)))
    return out


def _clean(primary: Sequence[PooledKey], names: Sequence[str]) -> tuple[Any, str]:
    """The correct-labels condition: one forest panel per technique."""
    from dataclasses import replace

    clean = [k for k in primary if k.is_clean]
    if not clean:
        raise FigureSkipped("No study has the correct-labels condition.")
    # one panel per technique: the forest's panels are titled by their key's condition
    panels = [replace(k, condition=k.arm) for k in clean]
    fig, _ = forest(panels, names)
    r = clean[0].result
    caption = (
        f"With correct training labels, each technique against {clean[0].baseline} on "
        f"{clean[0].metric.label}: each study's mean paired difference over its seeds with its 95% t "
        f"interval (square area: weight), the random-effects estimate ({METHOD_NAMES[r.requested]}) with "
        f"its {INTERVAL_NAMES[r.interval]} interval as a diamond coloured by the pooled verdict, the "
        "prediction interval (orange) and no difference (dashed)."
    )
    return fig, caption


def _row(k: PooledKey) -> dict[str, Any]:
    r, m = k.result, k.metric
    poi = k.improvement
    mod = k.sensitivity.get("hksj_modified")
    fe = k.sensitivity.get("fixed effect")
    wald = k.sensitivity.get("wald")
    also = k.arm_names[1:]  # the first is the name k.arm starts with (before any disambiguation)
    return {
        "condition": k.condition,
        "arm": k.arm,
        "also": ", ".join(also),
        "definition": k.arm_definition,
        "baseline": k.baseline,
        "k": r.k,
        "seeds": sum(e.n for e in k.effects),
        "estimate": format_diff(r.estimate, m),
        "ci": _interval(*r.ci, m),
        "pi": _interval(*r.pi, m) if r.pi else "—",
        "tau": "—" if math.isnan(r.tau) else _bare(r.tau, m).lstrip("+"),
        "i2": "—" if math.isnan(r.i2) else f"{r.i2:.0f}%",
        "verdict": k.verdict,
        "css": VERDICT_CLASSES.get(k.verdict, "v-none"),
        "verdict_interval": _interval(k.verdict_low, k.verdict_high, m),
        "mde": "—" if k.verdict == "no verdict" else format_size(k.mde, m),
        "p": "—" if math.isnan(k.p_adjusted) else f"{k.p_adjusted:.3g}",
        "fe": f"{format_diff(fe.estimate, m)} {_interval(*fe.ci, m)}" if fe else "—",
        "wald": _interval(*wald.ci, m) if wald else "—",
        "modified": _interval(*mod.ci, m) if mod else "—",
        "loo": _interval(*k.loo, m) if math.isfinite(k.loo[0]) else "—",
        "poi": f"{poi.estimate:.2f}" if poi and poi.studies else "—",
        "poi_ci": f"[{poi.low:.2f}, {poi.high:.2f}]" if poi and poi.studies else "—",
        "pairs": poi.pairs if poi else 0,
        "warnings": " ".join((*r.notes, *r.warnings)),
    }


def _context(analysis: MetaAnalysis, figures: Sequence[FigureResult]) -> dict[str, Any]:
    primary = _primary_keys(analysis)
    secondary: dict[str, list[dict[str, Any]]] = {}
    labels: dict[str, str] = {}
    for k in analysis.keys:
        if k.role == "secondary":
            secondary.setdefault(k.metric.key, []).append(_row(k))
            labels[k.metric.key] = k.metric.label + (f" ({k.metric.unit})" if k.metric.unit else "")
    p = analysis.primary
    level = f"{100 * analysis.level:g}%"
    warnings = sorted({w for k in analysis.keys for w in (*k.result.notes, *k.result.warnings)})
    tasks = len(analysis.studies)
    return {
        "name": f"Pooled analysis of {tasks} studies",
        "studies": [
            {"name": s.name, "directory": str(s.directory), "kind": s.kind, "runs": s.runs, "seeds": s.seeds}
            for s in analysis.studies
        ],
        "primary_label": p.label + (f" ({p.unit})" if p.unit else ""),
        "primary_rows": [_row(k) for k in primary],
        "secondary": [{"label": labels[key], "rows": rows} for key, rows in secondary.items()],
        "method": f"{reading(analysis.method, analysis.interval)}, {level}",
        "reading": reading(analysis.method, analysis.interval),
        "interval_name": INTERVAL_NAMES[analysis.interval],
        "alpha": f"{analysis.alpha:g}",
        "power": f"{analysis.power:g}",
        "tasks": tasks,
        "at": "the epoch selected on validation data" if analysis.at == "selected" else "the last epoch",
        "notes": list(analysis.notes),
        "warnings": warnings,
        "figures": figure_entries(figures),
        "writer": __version__,
    }


def write_meta_report(analysis: MetaAnalysis, target: str | Path) -> Path:
    """Write the pooled analysis' report into ``target``; returns the path of ``index.html``.

    Example:
        >>> from smoothflip.study.meta import meta
        >>> write_meta_report(meta(["a", "b", "c"]), "pooled/report")  # doctest: +SKIP
        PosixPath('pooled/report/index.html')
    """
    target = Path(target)
    figures = meta_figures(analysis)
    figures_dir = target / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    drawn = set()
    for figure in figures:
        if figure.png is not None:
            atomic_write(figures_dir / f"{figure.name}.png", figure.png)
            drawn.add(f"{figure.name}.png")
    for stale in figures_dir.glob("*.png"):  # a figure not drawn now must not linger from an earlier run
        if stale.name not in drawn:
            stale.unlink()
    context = _context(analysis, figures)
    env = _environment()
    atomic_write(target / "report.md", env.get_template("meta.md.j2").render(context).encode("utf-8"))
    index = target / "index.html"
    atomic_write(index, env.get_template("meta.html.j2").render(context).encode("utf-8"))
    return index
