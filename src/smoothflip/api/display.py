"""What ``study.run()`` shows while it trains: a progress bar that fits where it runs, and each
warning once.

- In a Jupyter notebook (an IPython kernel) the bar is one HTML line — a ``<progress>`` element,
  the runs done, the time and the plan — updated in place through an IPython display handle (at
  most a few times a second), so the notebook holds one live line, never raw terminal escape codes;
  no ``ipywidgets`` needed.
- Elsewhere (a script, a terminal IPython, ``smoothflip run`` itself: the display is bound to its
  console) it is a rich bar on stderr, with the plan line and each until-settled look above it.
- :func:`warnings_once` shows each warning *location* (category, file, line) once for the whole
  study: a warning a model or a metric raises on every run is not repeated per run.
"""

from __future__ import annotations

import html
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["in_notebook", "progress_display", "warnings_once"]

UPDATE_SECONDS = 0.25
"""Least time between two updates of the notebook line (the last update is always shown)."""


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (IPython with a kernel attached)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and getattr(shell, "kernel", None) is not None


def _clock(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class _NotebookLine:
    """One HTML line in the cell's output, replaced in place as the study advances."""

    def __init__(self, name: str) -> None:
        from IPython.display import HTML, display

        self._html = HTML
        self.name = name
        self.plan = ""
        self.note = ""  # the until-settled loop's last look
        self.done, self.total = 0.0, None
        self.started = time.monotonic()
        self.first: tuple[float, float] | None = None  # (time, done) when training started
        self.shown = 0.0
        self.handle = display(HTML(self._render()), display_id=True)

    def _render(self) -> str:
        name = html.escape(self.name)
        if self.total is None:
            return f"<div><b>{name}</b>: planning …</div>"
        total = max(self.total, 1)
        elapsed = time.monotonic() - self.started
        eta = ""
        if self.first is not None and self.done - self.first[1] > 0 and self.done < total:
            rate = (time.monotonic() - self.first[0]) / (self.done - self.first[1])
            eta = f" · ETA {_clock(rate * (total - self.done))}"
        runs = f"{self.done:.0f}/{self.total} runs"
        grey = '<div style="font-family: monospace; color: #555">'
        return (
            f'<div style="font-family: monospace"><b>{name}</b> '
            f'<progress value="{self.done:.3f}" max="{total}" style="width: 40%"></progress> '
            f"{runs} · {_clock(elapsed)}{eta}</div>"
            f"{grey}{html.escape(self.plan)}</div>"
            + (f"{grey}{html.escape(self.note)}</div>" if self.note else "")
        )

    def update(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.shown >= UPDATE_SECONDS:
            self.shown = now
            self.handle.update(self._html(self._render()))


class _TerminalBar:
    """The rich progress bar (on ``console``, default: a new one on stderr)."""

    def __init__(self, name: str, console: Any = None) -> None:
        from rich.console import Console
        from rich.markup import escape
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        from smoothflip._text import printable

        self.console = console if console is not None else Console(stderr=True)
        self.escape = lambda text: escape(printable(text))
        self.name = name
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),  # escaped below
            BarColumn(),
            TaskProgressColumn(),  # moves with every epoch of the pack in training, not only per stored pack
            MofNCompleteColumn(),
            TextColumn("runs"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.bar.start()
        self.task = self.bar.add_task(self.escape(name), total=None)

    def say(self, text: str) -> None:
        """A line above the bar, ``<study name>: <text>``."""
        self.console.print(f"{self.escape(self.name)}: {self.escape(text)}", highlight=False)


class _Display:
    """The callbacks ``run_study`` takes (``on_plan``, ``progress``), drawing where the study runs."""

    def __init__(self, name: str, mode: str, console: Any = None) -> None:
        self.mode = mode
        self.line = _NotebookLine(name) if mode == "notebook" else None
        self.terminal = _TerminalBar(name, console) if mode == "terminal" else None
        self.trained = 0

    def on_plan(self, plan: Any, text: str) -> None:
        self.trained += plan.remaining
        if self.line is not None:
            self.line.plan, self.line.total, self.line.done = text, len(plan.runs), float(len(plan.done))
            self.line.first = (time.monotonic(), float(len(plan.done)))
            self.line.update(force=True)
        elif self.terminal is not None:
            self.terminal.bar.update(self.terminal.task, total=len(plan.runs), completed=len(plan.done))
            self.terminal.say(text)

    def on_round(self, text: str) -> None:
        """One look of the until-settled loop (``look 0: ...``): a line above the bar, or below the
        plan in a notebook."""
        if self.line is not None:
            self.line.note = text
            self.line.update(force=True)
        elif self.terminal is not None:
            self.terminal.console.print(self.terminal.escape(text), highlight=False)

    def on_progress(self, p: Any) -> None:
        if self.line is not None:
            self.line.done, self.line.total = float(p.done), p.total
            self.line.update(force=p.done >= p.total)
        elif self.terminal is not None:
            self.terminal.bar.update(self.terminal.task, completed=p.done, total=p.total)

    def close(self) -> None:
        if self.line is not None:
            self.line.update(force=True)
        if self.terminal is not None:
            self.terminal.bar.stop()


@contextmanager
def progress_display(name: str, *, enabled: bool = True, console: Any = None) -> Iterator[_Display]:
    """A live progress display for one study run: a notebook line, a terminal bar, or nothing.

    Args:
        name: the study's name.
        enabled: False: nothing is shown (``smoothflip run --quiet``, ``study.run(progress=False)``).
        console: the rich ``Console`` to draw the bar on (``smoothflip run``'s stderr); None: a
            notebook line in a Jupyter kernel, else a bar on stderr.

    Yields an object with ``on_plan(plan, text)``, ``on_progress(progress)`` (the callbacks of
    :func:`smoothflip.engine.run_study`), ``on_round(text)`` (each look of the until-settled loop)
    and ``trained`` (runs planned to train).
    """
    mode = "off" if not enabled else ("notebook" if console is None and in_notebook() else "terminal")
    shown = _Display(name, mode, console)
    try:
        yield shown
    finally:
        shown.close()


@contextmanager
def warnings_once() -> Iterator[Callable[[], dict[str, int]]]:
    """Show each warning location (category, file, line) once while the block runs.

    Yields a function returning how often each shown warning was raised (``"UserWarning at
    file.py:12" -> 40``), for a note at the end.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as seen:
        ...     warnings.simplefilter("always")
        ...     with warnings_once() as counts:
        ...         for epoch in range(3):
        ...             warnings.warn(f"epoch {epoch}: slow")
        >>> [str(w.message) for w in seen], list(counts().values())
        (['epoch 0: slow'], [3])
    """
    seen: dict[tuple[Any, str, int], int] = {}
    original = warnings.showwarning

    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None):
        key = (category, filename, lineno)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] == 1:
            original(message, category, filename, lineno, file, line)

    def counts() -> dict[str, int]:
        return {f"{c.__name__} at {f}:{n}": k for (c, f, n), k in seen.items()}

    warnings.showwarning = show
    try:
        yield counts
    finally:
        if warnings.showwarning is show:
            warnings.showwarning = original
