"""The bodies of ``smoothflip verdict`` and ``smoothflip plan`` (``cli.py`` holds only their options).

- ``smoothflip verdict DIR [--format table|csv] [--out FILE] [--target-mde X]``: the verdict tables in
  the terminal, or every verdict row as CSV (:data:`smoothflip.report.verdict_rows.CSV_COLUMNS`) on
  stdout or into ``FILE`` (written whole or not at all);
- ``smoothflip plan DIR [--target-mde X]``: what settling every inconclusive cell would cost, in paired
  seeds and training minutes (:mod:`smoothflip.study.pricing`).

Every option is checked before the store is read; a bad one is one ``error:`` line and exit code 2,
and nothing is written.
"""

from __future__ import annotations

import io
import math
import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from smoothflip._files import atomic_write
from smoothflip.errors import SmoothflipError

__all__ = ["FORMATS", "plan_command", "verdict_command"]

FORMATS = ("table", "csv")
_STUDY_FILES = ("smoothflip.sqlite", "smoothflip.sqlite-wal", "smoothflip.sqlite-shm", "study.toml")
_STUDY_FILES += ("study.json", "smoothflip.lock")


def _check_at(at: str) -> None:
    if at not in ("selected", "last"):
        raise SmoothflipError(f"--at must be 'selected' or 'last', got {at!r}")


def _check_target(target_mde: str | float | None) -> float | None:
    """``--target-mde`` as a finite number > 0 (display units), or None when not given."""
    if target_mde is None:
        return None
    try:
        value = float(target_mde)
    except ValueError:
        value = math.nan
    if not 0.0 < value < math.inf:
        raise SmoothflipError(
            f"--target-mde must be a finite number > 0 in the primary metric's display units "
            f"(accuracy in points), got {str(target_mde)!r}"
        )
    return value


def _check_out(out: Path, directory: Path) -> Path:
    """Refuse an ``--out`` that cannot be written or would overwrite the study's own files."""
    target = Path(os.path.abspath(out))
    if target.is_dir():
        raise SmoothflipError(f"--out {out}: it is a directory; name a file")
    parent = target.parent
    if not parent.is_dir():
        raise SmoothflipError(f"--out {out}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise SmoothflipError(f"--out {out}: the folder {parent} is not writable")
    if target.exists() and not os.access(target, os.W_OK):
        raise SmoothflipError(f"--out {out}: the file is not writable")
    if parent.resolve() == Path(directory).resolve() and target.name in _STUDY_FILES:
        raise SmoothflipError(f"--out {out}: that is the study's own {target.name}; name another file")
    return target


def _load(directory: Path, at: str, target_mde: float | None) -> tuple[Any, Any]:
    from smoothflip.study.results import load_study_data
    from smoothflip.study.verdict import study_verdict

    data = load_study_data(directory)
    result = study_verdict(data, at=at, target_mde=target_mde)
    if result.note is not None:
        incomplete = (
            f"; {len(data.incomplete)} stored run(s) are incomplete (no final metrics) and left out"
            if data.incomplete
            else ""
        )
        raise SmoothflipError(
            f"{directory} holds no finished runs to compare yet (need the baseline and another arm)"
            + incomplete
        )
    return data, result


def verdict_command(
    out: Console,
    directory: Path,
    *,
    at: str = "selected",
    format: str = "table",
    out_file: Path | None = None,
    target_mde: str | float | None = None,
) -> None:
    """``smoothflip verdict``: the terminal tables, or the verdict rows as CSV."""
    from smoothflip.report.terminal import print_verdict
    from smoothflip.report.verdict_rows import write_csv

    _check_at(at)
    if format not in FORMATS:
        raise SmoothflipError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    target = _check_target(target_mde)
    if out_file is not None and format != "csv":
        raise SmoothflipError("--out writes the CSV rows: add --format csv (the table goes to the terminal)")
    path = None if out_file is None else _check_out(out_file, directory)
    data, result = _load(directory, at, target)
    if format == "csv":
        buffer = io.StringIO()
        count = write_csv(result, buffer)
        if path is None:
            sys.stdout.write(buffer.getvalue())
            sys.stdout.flush()
        else:
            atomic_write(path, buffer.getvalue().encode("utf-8"))
            Console(stderr=True).print(f"wrote {count} verdict rows to {path}", markup=False, highlight=False)
        return
    print_verdict(out, data, result)
    if data.incomplete:
        out.print(
            f"{len(data.incomplete)} stored run(s) are incomplete (no final metrics) and left out",
            markup=False,
        )


def _plan_table(result: Any, role: str, rows: list[dict[str, Any]]) -> Table | None:
    from smoothflip.analysis import format_size
    from smoothflip.report.terminal import escape

    picked = [r for r in rows if r["needs"] or r["needs_equivalence"]]
    if not picked:
        return None
    primary = result.primary
    secondary = role == "secondary"
    if secondary:
        title = "secondary (Benjamini-Hochberg per metric)"
    else:
        target = format_size(result.targets[primary.key] / primary.scale, primary)
        title = f"primary: {primary.label}{f' ({primary.unit})' if primary.unit else ''}, target {target}"
    table = Table(title=title)
    columns = ["condition", "arm", *(["metric"] if secondary else []), "seeds", "sd", "MDE"]
    columns += [*(["target"] if secondary else []), "seeds to detect the target", "seeds to show equivalence"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("condition", "arm", "metric") else "right")
    for r in picked:
        price = result.prices[(r["values"]["condition"], r["values"]["technique"], r["key"])]
        metric = next(m for m in result.metrics if m.key == r["key"])
        cells = [escape(r["condition"]), escape(r["arm"]), *([escape(r["metric"])] if secondary else [])]
        cells += [str(r["n"]), format_size(price.sd / metric.scale, metric), r["mde"]]
        cells += [format_size(price.target / metric.scale, metric)] if secondary else []
        table.add_row(*cells, r["needs"] or "-", r["needs_equivalence"] or "-")
    return table


def _totals(out: Console, data: Any, result: Any, directory: Path) -> None:
    from smoothflip.report.terminal import escape
    from smoothflip.report.verdict_rows import cost_sentences, cost_text
    from smoothflip.study.pricing import grow_cost

    out.print(
        "[bold]Totals[/] (a baseline run serves every cell of its condition; a run serves every metric):"
    )
    for sentence in cost_sentences(result, str(directory)):
        out.print(f"- {escape(sentence)}", highlight=False)
    needs = [p.seeds_detect for p in result.prices.values() if p.role == "primary"]
    needs = [n for n in needs if math.isfinite(n)]
    if needs:
        k = max(needs)
        out.print(
            f"- Or grow the study file to seeds = {k:.0f} (what the neediest primary cell needs; every arm "
            f"under every condition): {cost_text(grow_cost(data, k))}; rerun the same `smoothflip run` into "
            f"{escape(str(directory))} and the stored runs are reused (fixed-design tests read again after "
            "more seeds are a second look: their family-wise guarantee no longer holds exactly)",
            highlight=False,
        )


def plan_command(
    out: Console, directory: Path, *, at: str = "selected", target_mde: str | float | None = None
) -> None:
    """``smoothflip plan``: every inconclusive cell priced in seeds and minutes, with totals."""
    from smoothflip.report.terminal import escape
    from smoothflip.report.verdict_rows import verdict_rows
    from smoothflip.study.pricing import study_seconds

    _check_at(at)
    target = _check_target(target_mde)
    data, result = _load(directory, at, target)
    rows = verdict_rows(result)
    out.print(
        f"[bold]{escape(data.spec.name)}[/]: what settling each inconclusive cell would cost "
        f"(each arm vs its baseline, paired by seed, {result.design} design)"
    )
    for sentence in rows["design"]:
        if sentence.startswith(("Primary metric", "Seeds needed:", "Design:")):
            out.print(escape(sentence), highlight=False)
    if not result.prices:
        out.print(
            "No cell is inconclusive (each is settled, or has fewer than 3 paired seeds): nothing to price."
        )
        return
    seconds = study_seconds(result.prices)
    known = ", ".join(f"{escape(a)} {s:.2f} s" for a, s in seconds.items() if math.isfinite(s))
    out.print(
        f"Time per run (training + evaluation per pack member, stored): {known or 'no timings stored'}."
    )
    for role in ("primary", "secondary"):
        table = _plan_table(result, role, rows[role])
        if table is not None:
            out.print()
            out.print(table)
    out.print()
    _totals(out, data, result, directory)
