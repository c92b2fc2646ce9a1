"""``smoothflip meta``: pool study directories (the command's body; ``cli.py`` only declares it).

Everything is read and computed before anything is written, so bad input (a directory that is not
a study, a damaged store, no key shared by two studies, a directory given twice, an ``--out`` that
is a study directory or lies inside one) ends with one ``error:`` line, exit code 2, and nothing
written.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from smoothflip._cli_errors import clean_errors
from smoothflip._text import printable

__all__ = ["meta_command", "print_pooled", "register_commands"]

_STYLE = {"helps": "green", "hurts": "red", "equivalent": "blue", "inconclusive": "", "no verdict": "dim"}


def _shown(name: Any) -> str:
    return escape(printable(name))


def print_pooled(out: Console, analysis: Any, *, secondary: bool = False) -> None:
    """The terminal table: one row per key of the primary metric (and the secondary ones if asked)."""
    from smoothflip.analysis import format_diff, format_size
    from smoothflip.analysis.meta import reading

    def interval(low: float, high: float, metric: Any) -> str:
        if not (math.isfinite(low) and math.isfinite(high)):
            return "-"
        return f"[{format_diff(low, metric)}, {format_diff(high, metric)}]"

    roles = ("primary", "secondary") if secondary else ("primary",)
    metrics = list(dict.fromkeys(k.metric.key for k in analysis.keys if k.role in roles))
    for key in metrics:
        keys = [k for k in analysis.keys if k.metric.key == key]
        metric = keys[0].metric
        role = keys[0].role
        family = "Holm family" if role == "primary" else "BH"
        table = Table(
            title=f"{_shown(metric.label)} ({role}, {family}): technique - baseline, pooled over studies "
            f"({reading(analysis.method, analysis.interval)} {100 * analysis.level:g}%)"
        )
        for column in (
            "condition",
            "technique",
            "k",
            "estimate",
            "interval",
            "prediction",
            "I²",
            "verdict",
            "MDE",
        ):
            named = column in ("condition", "technique", "verdict")
            table.add_column(column, justify="left" if named else "right", overflow="fold")
        for k in keys:
            r = k.result
            style = _STYLE.get(k.verdict, "")
            table.add_row(
                _shown(k.condition),
                _shown(k.arm),
                str(r.k),
                format_diff(r.estimate, metric),
                interval(*r.ci, metric),
                interval(*r.pi, metric) if r.pi else "-",
                "-" if math.isnan(r.i2) else f"{r.i2:.0f}%",
                f"[{style}]{k.verdict}[/]" if style else k.verdict,
                "-" if k.verdict == "no verdict" else format_size(k.mde, metric),
            )
        out.print(table)
    out.print(
        f"verdicts: a claim (error rate {analysis.alpha:g}) needs the modified-HKSJ random-effects test and "
        "the unweighted t-test across studies to agree; their simultaneous interval, which the verdict is "
        "read from, is verdict_low / verdict_high in pooled.csv (wider than the interval shown); the MDE is "
        "the effect at which both would reject together with the power asked for",
        markup=False,
    )
    for note in analysis.notes:
        out.print(f"note: {note}", markup=False)


def meta_command(
    out: Console,
    dirs: list[Path],
    *,
    out_dir: Path,
    at: str,
    method: str,
    interval: str,
    level: float,
    primary: str | None,
    secondary: bool,
    report: bool,
    alpha: float | None = None,
    power: float | None = None,
) -> None:
    """Pool ``dirs`` into ``out_dir`` and print the table."""
    from smoothflip.study.meta import check_out, meta

    check_out(out_dir, dirs)
    analysis = meta(
        dirs,
        at=at,
        method=method,
        interval=interval,
        level=level,
        primary=primary,
        alpha=alpha,
        power=power,
        out=None,
    )
    print_pooled(out, analysis, secondary=secondary)
    analysis.write(out_dir, report=report)
    out.print(f"pooled:  {out_dir / 'pooled.csv'} (and {out_dir / 'studies.csv'})", markup=False)
    if report:
        out.print(f"report:  {out_dir / 'report' / 'index.html'} (and report.md)", markup=False)


def register_commands(app: typer.Typer, *, out: Console, console: Console) -> None:
    """Add ``smoothflip meta`` and ``smoothflip atlas`` to the command line ``app`` (``out``: stdout,
    ``console``: stderr, for progress)."""
    from smoothflip._cli_atlas import register_atlas

    @app.command()
    @clean_errors
    def meta(
        dirs: Annotated[list[Path], typer.Argument(help="Study directories to pool (two or more).")],
        out_dir: Annotated[
            Path, typer.Option("--out", "-o", help="Where to write pooled.csv, studies.csv and report/.")
        ],
        primary: Annotated[
            str | None,
            typer.Option("--primary", help="The primary metric, when the studies name different ones."),
        ] = None,
        method: Annotated[
            str, typer.Option("--method", help="How tau^2 is estimated: reml, pm, dl or fe.")
        ] = "reml",
        interval: Annotated[
            str, typer.Option("--interval", help="The estimate's interval: hksj, hksj_modified or wald.")
        ] = "hksj",
        at: Annotated[
            str, typer.Option("--at", help="Which epoch's metrics: selected or last.")
        ] = "selected",
        level: Annotated[
            float, typer.Option("--level", help="Level of the intervals and prediction intervals.")
        ] = 0.95,
        alpha: Annotated[
            float | None,
            typer.Option("--alpha", help="Error rate of the verdicts (default: the studies' alpha)."),
        ] = None,
        power: Annotated[
            float | None,
            typer.Option("--power", help="Power of the pooled MDEs (default: the studies' power)."),
        ] = None,
        all_metrics: Annotated[bool, typer.Option("--all", help="Print the secondary metrics too.")] = False,
        no_report: Annotated[bool, typer.Option("--no-report", help="Write the tables only.")] = False,
    ) -> None:
        """Pool studies: random-effects meta-analysis of each technique's effect, per condition and metric."""
        meta_command(
            out,
            dirs,
            out_dir=out_dir,
            at=at,
            method=method,
            interval=interval,
            level=level,
            primary=primary,
            secondary=all_metrics,
            report=not no_report,
            alpha=alpha,
            power=power,
        )

    register_atlas(app, out=out, console=console)
