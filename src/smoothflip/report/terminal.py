"""``smoothflip verdict``: the study's verdict as terminal tables (rich), built from the same rows as the
report (:mod:`smoothflip.report.verdict_rows`)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape as _markup_escape
from rich.table import Table

from smoothflip._text import printable
from smoothflip.report.verdict_rows import verdict_rows


def escape(text: Any) -> str:
    """A name or sentence read from a store, safe to print: no markup, control characters escaped."""
    return _markup_escape(printable(text))


__all__ = ["VERDICT_STYLE", "print_summary", "print_verdict"]

VERDICT_STYLE = {
    "helps": "green",
    "hurts": "red",
    "equivalent": "cyan",
    "inconclusive": "dim",
    "no verdict": "yellow",
}


def _table(title: str, rows: list[dict[str, Any]], *, metric_column: bool, p_label: str) -> Table:
    table = Table(title=title, show_lines=False)
    columns = ["condition", "arm", *(["metric"] if metric_column else []), "n", "difference", "interval"]
    priced = any(row["needs"] for row in rows)
    columns += ["verdict", "MDE", p_label, *(["seeds needed"] if priced else [])]
    for column in columns:
        right = column in ("n", "difference", "MDE", p_label, "seeds needed")
        table.add_column(column, justify="right" if right else "left", overflow="fold")
    for row in rows:
        style = VERDICT_STYLE.get(row["verdict"], "")
        cells = [escape(row["condition"]), escape(row["arm"])]
        if metric_column:
            cells.append(escape(row["metric"]))
        cells += [
            str(row["n"]),
            row["diff"],
            row["interval"],
            f"[{style}]{row['verdict']}[/]",
            row["mde"],
            row["p"],
            *([row["needs"]] if priced else []),
        ]
        table.add_row(*cells)
    return table


def print_verdict(out: Console, data: Any, result: Any) -> None:
    """Print the headline, how the verdicts were read, and the primary and secondary tables."""
    spec = data.spec
    against = (
        f"the baseline [bold]{escape(spec.baseline)}[/]"
        if result.single_baseline
        else "its hard-label counterpart (shown in the table)"
    )
    out.print(
        f"[bold]{escape(spec.name)}[/]: each arm vs {against}, paired by seed, at the {result.at} epoch"
    )
    rows = verdict_rows(result)
    for sentence in rows["design"]:
        out.print(escape(sentence), highlight=False)
    for arm, texts in result.headlines.items():
        if texts:
            out.print(f"\n[bold]{escape(arm)}[/]: {escape(' '.join(texts))}", highlight=False)
    primary = result.primary
    unit = f" ({primary.unit})" if primary.unit else ""
    out.print()
    out.print(
        _table(
            f"primary verdicts: {primary.label}{unit}",
            rows["primary"],
            metric_column=False,
            p_label="p (Holm)",
        )
    )
    if rows["secondary"]:
        out.print()
        out.print(
            _table(
                "secondary verdicts (Benjamini-Hochberg)",
                rows["secondary"],
                metric_column=True,
                p_label="q (BH)",
            )
        )
    out.print(
        "n = paired seeds; accuracy in points; NLL, ECE, Brier, AURC: lower is better; "
        "MDE = minimum detectable effect at these seeds"
        + (
            "; seeds needed = paired seeds to detect the MDE target (more, time to train them); "
            "smoothflip plan DIR prices equivalence and totals"
            if result.prices
            else ""
        )
    )


def print_summary(out: Console, data: Any) -> None:
    """The study's summary (``smoothflip run``): per condition and arm, mean ± sd over seeds of its
    kind's summary metrics, where its kind measures them; one table per column group (a certified
    study's k). ``data``: a :class:`~smoothflip.study.results.StudyData`."""
    from smoothflip.report.data import mean_sd_text
    from smoothflip.study.results import study_summary

    columns, rows = study_summary(data)
    where = data.kind.measured(data.spec)
    for group in dict.fromkeys(c.group for c in columns):
        shown = [c for c in columns if c.group == group]
        title = (
            f"{data.spec.name}: test metrics at {where}{f', {group}' if group else ''} (mean ± sd over seeds)"
        )
        table = Table(title=escape(title))
        heads = ["condition", "arm", "n", *(c.terminal or c.label for c in shown), "diverged"]
        for i, head in enumerate(heads):
            justify, overflow = ("left", "fold") if i < 2 else ("right", "ellipsis")
            table.add_column(escape(head), justify=justify, overflow=overflow)
        for row in rows:
            cells = [
                mean_sd_text(
                    row[c.key], row[f"{c.key}_sd"], scale=c.scale, digits=c.digits, sep="±", missing="-"
                )
                for c in shown
            ]
            named = escape(row["condition"]), escape(row["arm"])
            table.add_row(*named, str(row["n"]), *cells, str(row["diverged"]))
        out.print(table)
