"""A study's trackers for one run (or one export): what they log, and how a failure is contained.

:class:`TrackingSession` drives the trackers a study was given:

1. :meth:`~TrackingSession.open` imports each backend and checks it can be reached (a dead server
   warns once and the tracker is switched off before training starts);
2. :meth:`~TrackingSession.begin` binds them to the study directory once the store is claimed, and
   asks each tracker which of the study's runs it already holds;
3. :meth:`~TrackingSession.log` is the store's ``on_write`` hook: each pack's runs, as committed;
4. :meth:`~TrackingSession.finish` logs what is stored but not yet logged and attaches the report.

Every call into a tracker is guarded: an exception (a lost connection, a full disk) is reported once
(``warn``; an export, which exists to push, raises it instead) and that tracker is off for the rest
of the session. Stored runs are never touched.

What a run is logged as (both backends): parameters from its configuration (:func:`run_params`),
per-epoch curves with the epoch as step (:func:`run_curves`), final metrics (:func:`run_metrics`:
``selected_*`` and ``last_*`` as in ``Results.runs``) and tags naming it (:func:`run_tags`).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from smoothflip.study.ids import short_hash
from smoothflip.study.kinds import table_owners
from smoothflip.study.spec import StudySpec
from smoothflip.study.store import RunResult
from smoothflip.tracking import TrackingError, load_tracker, parse_track

__all__ = [
    "ExperimentTracker",
    "StudyInfo",
    "TrackingSession",
    "TrackingWarning",
    "run_curves",
    "run_metrics",
    "run_params",
    "run_tags",
]


class TrackingWarning(UserWarning):
    """A tracker failed; the study goes on without it (its runs stay stored)."""


@dataclass(frozen=True)
class StudyInfo:
    """The study a tracker logs.

    Attributes:
        name: the study's name.
        directory: its study directory.
        key: a stable id of the directory's study (its name and creation time): the tracker's
            parent run or folder is found again by it when the study resumes or grows.
        spec: the resolved study (``DIR/study.toml``).
    """

    name: str
    directory: Path
    key: str
    spec: StudySpec

    @classmethod
    def read(cls, directory: str | Path) -> StudyInfo:
        from smoothflip.study.spec import load_study
        from smoothflip.study.store import Store

        directory = Path(directory)
        with Store.open(directory, readonly=True) as store:
            name = store.get_meta("name") or directory.name
            created = store.get_meta("created_at") or str(directory.resolve())
        spec = load_study(directory / "study.toml", stored=True)
        return cls(
            name=name, directory=directory, key=short_hash({"name": name, "created": created}), spec=spec
        )


class ExperimentTracker(Protocol):
    """What a backend of :data:`smoothflip.tracking.TRACKERS` does."""

    name: str
    keeps_report: bool  # attach_report stores the report with the study

    def describe(self) -> str:
        """Where it logs, for messages (``"mlflow at http://host:5000"``)."""

    def check(self) -> None:
        """Fail fast (raise) when the backend cannot be reached or written."""

    def begin(self, study: StudyInfo) -> set[str]:
        """Bind to the study (find or create its parent run / folder); the run ids it already holds."""

    def log_run(self, study: StudyInfo, run: RunResult) -> None:
        """Log one finished run."""

    def attach_report(self, study: StudyInfo, report: Path) -> None:
        """Attach the study's report folder (``index.html``, ``report.md``, ``figures/``)."""

    def end(self, study: StudyInfo, status: str) -> None:
        """The study's session ends (``"FINISHED"``, ``"KILLED"``, ``"FAILED"``)."""


# --------------------------------------------------------------------------- what a run is logged as


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def run_params(run: RunResult) -> dict[str, str]:
    """A run's parameters: arm, technique and its parameters, flipping, condition, seed, model, data,
    ``[train]`` and its study kind's own table (``certify.partitions`` ...).

    Example:
        >>> from smoothflip.study.store import RunResult
        >>> run = RunResult("r1", "ls", "clean", "none", 0.0, 3, {"arm": {"name": "ls", "loss": "smoothed_ce",
        ...     "params": {"eps": 0.1}}, "condition": {"noise": "none", "rate": 0.0}, "model": {"name": "mlp",
        ...     "options": {"hidden": [16]}}, "data": {"source": "digits"}}, {}, {}, {}, {}, {})
        >>> run_params(run)["technique.eps"], run_params(run)["model.hidden"], run_params(run)["seed"]
        ('0.1', '[16]', '3')
    """
    config = run.config
    arm = config.get("arm", {})
    out = {"arm": run.arm, "technique": str(arm.get("loss", ""))}
    for key, value in (arm.get("params") or {}).items():
        out[f"technique.{key}"] = _text(value)
    for key in ("disturb_alpha", "flip_rate", "warmup_epochs"):
        if arm.get(key):
            out[key] = _text(arm[key])
    for key in ("role", "teacher"):
        if arm.get(key):
            out[f"arm.{key}"] = _text(arm[key])
    if arm.get("defense"):
        out["defense"] = _text(arm["defense"])
    out.update(condition=run.condition, noise=run.noise, rate=_text(run.rate), seed=str(run.seed))
    for key, value in (config.get("condition") or {}).items():
        if key not in ("noise", "rate"):
            out[f"condition.{key}"] = _text(value)
    model = config.get("model") or {}
    out["model"] = str(model.get("trainer") or model.get("factory") or model.get("name", ""))
    for key, value in (model.get("options") or {}).items():
        out[f"model.{key}"] = _text(value)
    out["data"] = str((config.get("data") or {}).get("source", ""))
    for key, value in (config.get("train") or {}).items():
        out[f"train.{key}"] = _text(value)
    for table in table_owners():  # a study kind's own table: a certified run's [certify]
        for key, value in (config.get(table) or {}).items():
            out[f"{table}.{key}"] = _text(value)
    return out


def run_metrics(run: RunResult) -> dict[str, float]:
    """Final metrics: ``selected_<metric>`` and ``last_<metric>`` (the epoch the study's selection
    rule picked, and the last epoch; a certified ensemble has no epochs of its own and reports its
    learners' final parameters, per its ``selection``, as both), and the run's
    other numbers (``diverged``, ``noise_rate`` ...); finite values only."""
    out: dict[str, float] = {}
    for which in ("selected", "last"):
        for key, value in (run.metrics.get(which) or {}).items():
            out[f"{which}_{key}"] = value
    for key, value in run.metrics.items():
        if isinstance(value, bool | int | float):
            out[key] = float(value)
    return {k: float(v) for k, v in out.items() if isinstance(v, int | float) and math.isfinite(v)}


def run_curves(run: RunResult) -> dict[str, list[tuple[int, float]]]:
    """Per-epoch curves as ``{metric: [(epoch, value), ...]}``, finite values only."""
    epochs = run.curves.get("epoch") or []
    out: dict[str, list[tuple[int, float]]] = {}
    for key, values in run.curves.items():
        if key == "epoch" or not isinstance(values, list):
            continue
        points = [
            (int(e), float(v))
            for e, v in zip(epochs, values, strict=False)
            if isinstance(v, int | float) and math.isfinite(v)
        ]
        if points:
            out[key] = points
    return out


def run_tags(study: StudyInfo, run: RunResult) -> dict[str, str]:
    """Tags that name the run: its id, its condition's id, the study, arm and seed."""
    return {
        "smoothflip.run_id": run.run_id,
        "smoothflip.condition_id": run.condition_id,
        "smoothflip.study": study.name,
        "smoothflip.study_key": study.key,
        "smoothflip.arm": run.arm,
        "smoothflip.seed": str(run.seed),
    }


# --------------------------------------------------------------------------- the session


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class TrackingSession:
    """The trackers of one study run (or export), each guarded: one failure, one warning, then off.

    Args:
        trackers: the backends (from :func:`open`).
        warn: reports a failure (default: a :class:`TrackingWarning`).
        strict: raise a :class:`~smoothflip.tracking.TrackingError` instead (``smoothflip export``).
    """

    def __init__(
        self, trackers: Sequence[Any], *, warn: Callable[[str], None] | None = None, strict: bool = False
    ) -> None:
        self.trackers = list(trackers)
        self.warn = warn or (lambda message: warnings.warn(message, TrackingWarning, stacklevel=3))
        self.strict = strict
        self.study: StudyInfo | None = None
        self.logged: dict[int, set[str]] = {}
        self.counts: dict[str, int] = {}

    @classmethod
    def open(
        cls, track: Any, *, warn: Callable[[str], None] | None = None, strict: bool = False
    ) -> TrackingSession:
        """Parse ``track``, import each backend and check that it answers.

        Raises:
            SmoothflipError: an unknown tracker or option; a backend that is not installed (these are
                errors of the call, so nothing starts).
        """
        session = cls(
            [load_tracker(name, options) for name, options in parse_track(track)], warn=warn, strict=strict
        )
        for tracker in list(session.trackers):
            session._guard(tracker, tracker.check)
        return session

    def __bool__(self) -> bool:
        return bool(self.trackers)

    def _fail(self, tracker: Any, err: Exception) -> None:
        """Switch ``tracker`` off and say why, once (raise instead in a strict session)."""
        if tracker in self.trackers:
            self.trackers.remove(tracker)
        where = tracker.describe()
        if self.strict:
            raise TrackingError(f"{where} failed: {_one_line(err)}") from err
        self.warn(
            f"{where} failed ({_one_line(err)}); the study goes on without it and its runs stay "
            f"stored: push them later with `smoothflip export DIR --to {tracker.name}`"
        )

    def _guard(self, tracker: Any, call: Callable[..., Any], *args: Any) -> Any:
        if tracker not in self.trackers:
            return None
        try:
            return call(*args)
        except Exception as err:
            self._fail(tracker, err)
            return None

    def _read(self, directory: str | Path, read: Callable[[str | Path], Any]) -> Any:
        """What ``read(directory)`` returns; if it fails every tracker is off (the study goes on)."""
        try:
            return read(directory)
        except Exception as err:
            for tracker in list(self.trackers):
                self._fail(tracker, err)
            return None

    def begin(self, directory: str | Path) -> None:
        """Bind the trackers to the study in ``directory`` (after its store is claimed)."""
        if not self.trackers or self.study is not None:
            return
        self.study = self._read(directory, StudyInfo.read)
        for tracker in list(self.trackers):
            held = self._guard(tracker, tracker.begin, self.study)
            if tracker in self.trackers:
                self.logged[id(tracker)] = set(held or ())

    def log(self, runs: Iterable[RunResult]) -> None:
        """Log finished runs the trackers do not hold yet (the store's ``on_write`` hook: it never
        raises into the study, unless the session is strict)."""
        runs = list(runs)
        if self.study is None or not runs:
            return
        for tracker in list(self.trackers):
            held = self.logged.setdefault(id(tracker), set())
            for run in runs:
                if run.run_id in held or tracker not in self.trackers:
                    continue
                self._guard(tracker, tracker.log_run, self.study, run)
                if tracker in self.trackers:
                    held.add(run.run_id)
                    self.counts[tracker.name] = self.counts.get(tracker.name, 0) + 1

    def finish(self, directory: str | Path, report: Path | None = None, *, status: str = "FINISHED") -> None:
        """Log every stored run not yet logged, attach ``report`` (a report folder), end the session."""
        if not self.trackers:
            return
        from smoothflip.study.results import load_study_data

        self.begin(directory)
        data = self._read(directory, load_study_data)
        if data is not None:
            self.log([*data.results, *data.incomplete])
        for tracker in list(self.trackers):
            if report is not None and report.is_dir():
                self._guard(tracker, tracker.attach_report, self.study, report)
            self._guard(tracker, tracker.end, self.study, status)

    @contextmanager
    def ending_on_error(self) -> Iterator[None]:
        """Inside it, an interrupt ends the trackers' session as ``KILLED``, an error as ``FAILED``."""
        try:
            yield
        except KeyboardInterrupt:
            self.close("KILLED")
            raise
        except BaseException:
            self.close("FAILED")
            raise

    def close(self, status: str) -> None:
        """End the session early (an interrupted or failed study): the trackers mark it ``status``."""
        if self.study is None:
            return
        for tracker in list(self.trackers):
            self._guard(tracker, tracker.end, self.study, status)
