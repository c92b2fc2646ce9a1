"""``sf.Results``: a study directory read back as DataFrames, a verdict table, the report and figures.

:class:`Results` opens the store read-only on every access (like ``smoothflip verdict``), so it
works while a study still trains into the directory and never changes what is stored.
:class:`Verdict` is the verdict of ``smoothflip verdict`` as a table: it renders as HTML in a
notebook and converts to a pandas DataFrame with numbers in display units.
"""

from __future__ import annotations

import functools
import html
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smoothflip.errors import SmoothflipError

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from smoothflip.study.results import StudyData
    from smoothflip.study.spec import StudySpec

__all__ = ["Results", "Verdict", "open_results"]

_COLORS = {"helps": "#1a7f37", "hurts": "#cf222e", "equivalent": "#0969da", "no verdict": "#9a6700"}


class Verdict:
    """A study's verdict: each arm against its baseline, per label condition and metric.

    Attributes:
        result: the :class:`~smoothflip.study.verdict.StudyVerdict` (every comparison, the families).
        headlines: per arm, one sentence per condition.
        design: sentences saying how the verdicts were read (metric, correction, error rate).
    """

    def __init__(self, data: StudyData, result: Any) -> None:
        from smoothflip.report.verdict_rows import verdict_rows

        self.name = data.spec.name
        self.result = result
        self.rows = verdict_rows(result)
        self.design: list[str] = self.rows["design"]
        self.headlines: dict[str, list[str]] = dict(result.headlines)

    def to_frame(self) -> pd.DataFrame:
        """One row per condition, arm and metric (the primary metric first), numbers in display
        units (accuracy in points): ``difference`` (arm minus baseline, mean over paired seeds),
        ``ci_low`` / ``ci_high`` (its interval), ``verdict``, ``mde``, ``p_adjusted``, ``n`` ...."""
        import pandas as pd

        rows = []
        for c in self.result.comparisons:
            scale = c.metric.scale
            rows.append(
                {
                    "condition": c.condition,
                    "arm": c.arm,
                    "baseline": c.baseline,
                    "metric": c.metric.short,
                    "role": c.role,
                    "n": c.n,
                    "difference": c.mean_diff * scale,
                    "ci_low": c.ci_low * scale,
                    "ci_high": c.ci_high * scale,
                    "verdict": c.verdict,
                    "mde": c.mde * scale,
                    "p_adjusted": c.p_adjusted,
                    "unit": c.metric.unit,
                    "arm_mean": c.arm_mean * scale,
                    "baseline_mean": c.baseline_mean * scale,
                    "higher_is_better": c.metric.higher_is_better,
                }
            )
        frame = pd.DataFrame(rows)
        if len(frame):
            frame["_primary"] = frame["role"] != "primary"
            frame = (
                frame.sort_values("_primary", kind="stable").drop(columns="_primary").reset_index(drop=True)
            )
        return frame

    def _table_html(self, rows: list[dict[str, Any]], *, metric: bool) -> str:
        heads = ["condition", "arm", *(["metric"] if metric else []), "n", "difference", "interval"]
        heads += ["verdict", "MDE", "p (Holm)" if not metric else "q (BH)"]
        out = ["<table><thead><tr>", *(f"<th>{h}</th>" for h in heads), "</tr></thead><tbody>"]
        for row in rows:
            color = _COLORS.get(row["verdict"], "#57606a")
            cells = [row["condition"], row["arm"], *([row["metric"]] if metric else [])]
            cells += [row["n"], row["diff"], row["interval"]]
            out.append("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in cells))
            out.append(f'<td style="color: {color}; font-weight: bold">{html.escape(row["verdict"])}</td>')
            out.append(f"<td>{html.escape(row['mde'])}</td><td>{html.escape(row['p'])}</td></tr>")
        out.append("</tbody></table>")
        return "".join(out)

    def _repr_html_(self) -> str:
        primary = self.result.primary
        unit = f" ({primary.unit})" if primary is not None and primary.unit else ""
        parts = [f"<div><b>{html.escape(self.name)}</b>: each arm against its baseline, paired by seed</div>"]
        for arm, texts in self.headlines.items():
            if texts:
                parts.append(f"<p><b>{html.escape(arm)}</b>: {html.escape(' '.join(texts))}</p>")
        label = primary.label if primary is not None else ""
        parts.append(f"<div><b>primary verdicts: {html.escape(label + unit)}</b></div>")
        parts.append(self._table_html(self.rows["primary"], metric=False))
        if self.rows["secondary"]:
            parts.append("<details><summary>secondary verdicts (Benjamini-Hochberg)</summary>")
            parts.append(self._table_html(self.rows["secondary"], metric=True) + "</details>")
        design = "".join(f"<li>{html.escape(s)}</li>" for s in self.design)
        parts.append(f"<details><summary>how the verdicts were read</summary><ul>{design}</ul></details>")
        return "\n".join(parts)

    def __repr__(self) -> str:
        lines = [f"{self.name}: each arm against its baseline, paired by seed"]
        for row in self.rows["primary"]:
            lines.append(
                f"  {row['condition']} | {row['arm']}: {row['diff']} {row['interval']} -> {row['verdict']}"
            )
        return "\n".join(lines)


class Results:
    """A study directory's results (read-only): runs, curves, the verdict, the report, figures.

    Args:
        directory: a study directory written by ``smoothflip run`` or :meth:`Study.run`.
        trained: how many runs the call that returned it trained (None when opened with ``sf.open``).

    Raises:
        FileNotFoundError: no study in ``directory``.
    """

    def __init__(self, directory: str | os.PathLike[str], *, trained: int | None = None) -> None:
        self.directory = Path(directory)
        if not (self.directory / "study.toml").is_file():
            raise FileNotFoundError(
                f"no study in {self.directory} (no study.toml); give a directory written by study.run() "
                "or `smoothflip run`"
            )
        self.trained = trained

    def _data(self) -> StudyData:
        from smoothflip.study.results import load_study_data

        return load_study_data(self.directory)

    @property
    def spec(self) -> StudySpec:
        """The resolved study (``DIR/study.toml``)."""
        return self._data().spec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def runs(self) -> pd.DataFrame:
        """One row per finished run of the study: ``run_id``, ``arm``, ``condition``, ``noise``,
        ``rate``, ``seed``, ``loss``, then ``selected_<metric>`` (the metrics the verdicts compare:
        at the validation-selected epoch, or where the study's kind measures them, e.g. a certified
        study's base learners at their last epoch) and ``last_<metric>`` (the last epoch), the run's
        other numbers and ``time_*`` (what ``smoothflip export`` writes)."""
        import pandas as pd

        from smoothflip.study.results import run_rows

        return pd.DataFrame(run_rows(self._data().results))

    @property
    def curves(self) -> pd.DataFrame:
        """One row per run and epoch: ``run_id``, ``arm``, ``condition``, ``seed``, ``epoch`` and the
        per-epoch metrics (``train_loss``, ``val_acc``, ``test_acc``, ``test_ece`` ...)."""
        import pandas as pd

        from smoothflip.study.results import curve_rows

        return pd.DataFrame(curve_rows(self._data().results))

    @property
    def failures(self) -> pd.DataFrame:
        """Runs whose last attempt failed (your training function raised): a rerun retries them."""
        import pandas as pd

        columns = ["run_id", "arm", "condition", "seed", "message"]
        rows = [[f.run_id, f.arm, f.condition, f.seed, f.message] for f in self._data().failures]
        return pd.DataFrame(rows, columns=columns)

    def summary(self) -> pd.DataFrame:
        """Mean and standard deviation over seeds per condition and arm of the study kind's summary
        metrics (``<key>``, ``<key>_sd``, raw values; ``n`` runs, ``diverged``) — the table
        ``smoothflip run`` prints: accuracy, NLL, ECE and ECE after temperature scaling at the
        validation-selected epoch; for a certified study clean accuracy, certified accuracy at each
        radius and the median certified radius, where it measures them. ``attrs["measured_at"]``
        says where."""
        import pandas as pd

        from smoothflip.study.results import study_summary

        data = self._data()
        columns, rows = study_summary(data)
        keys = [k for c in columns for k in (c.key, f"{c.key}_sd")]
        frame = pd.DataFrame(rows, columns=["arm", "condition", "n", *keys, "diverged"])
        frame.attrs["measured_at"] = data.kind.measured(data.spec)
        return frame

    def verdict(self, *, at: str = "selected") -> Verdict:
        """The study's verdict (``at``: the ``"selected"`` or the ``"last"`` epoch's metrics).

        Raises:
            SmoothflipError: no finished runs to compare yet.
        """
        from smoothflip.study.verdict import study_verdict

        if at not in ("selected", "last"):
            raise SmoothflipError(f"at must be 'selected' or 'last', got {at!r}")
        data = self._data()
        result = study_verdict(data, at=at)
        if result.note is not None:
            raise SmoothflipError(
                f"{self.directory} holds no finished runs to compare yet (need the baseline and another arm)"
            )
        return Verdict(data, result)

    def report(self) -> Path:
        """Write the report (``DIR/report/index.html``, ``report.md``, ``figures/*.png``); its path."""
        from smoothflip.report import write_report

        return write_report(self.directory)

    @property
    def figure_names(self) -> tuple[str, ...]:
        """The report's figures (some are skipped when the study lacks their data)."""
        from smoothflip.report.figures import figure_names

        return figure_names(self._data())

    def figure(self, name: str) -> Figure:
        """One of the report's figures as a matplotlib ``Figure`` (shown inline in a notebook).

        Raises:
            SmoothflipError: an unknown name, or a figure this study has no data for (the note says why).
        """
        from smoothflip.analysis import format_diff
        from smoothflip.report.figures import FigureSkipped, draw_figure, to_png
        from smoothflip.study.verdict import study_verdict

        names = self.figure_names
        if name not in names:
            raise SmoothflipError(f"figure {name!r}: must be one of {', '.join(map(repr, names))}")
        data = self._data()
        try:
            fig, _caption = draw_figure(name, data, study_verdict(data).comparisons, format_diff=format_diff)
        except FigureSkipped as skipped:
            raise SmoothflipError(f"figure {name!r} is not drawn for this study: {skipped}") from None
        fig._repr_png_ = functools.partial(to_png, fig)  # inline in a notebook, without pyplot
        return fig

    def _repr_html_(self) -> str:
        data = self._data()
        expected = data.expected_runs
        parts = [
            f"<b>{html.escape(data.spec.name)}</b>: {len(data.results)} of {expected} runs stored in "
            f"<code>{html.escape(str(self.directory))}</code>"
        ]
        if self.trained is not None:
            parts.append(f"{self.trained} trained by this call")
        if data.failures:
            parts.append(f'<span style="color: #cf222e">{len(data.failures)} failed</span>')
        return "<div>" + "; ".join(parts) + "</div>"

    def __repr__(self) -> str:
        trained = "" if self.trained is None else f", trained={self.trained}"
        return f"Results({str(self.directory)!r}{trained})"


def open_results(directory: str | os.PathLike[str]) -> Results:
    """A study directory's :class:`Results`, read-only (``sf.open``): what ``smoothflip verdict``,
    ``report`` and ``export`` read.

    Raises:
        FileNotFoundError: no study in ``directory``.
    """
    return Results(directory)
