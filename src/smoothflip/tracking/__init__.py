"""Experiment trackers: a study's runs mirrored to MLflow or TensorBoard as they are stored.

The registry (:data:`TRACKERS`) has one entry per backend — its name, the package it needs, the
pip extra that installs it, what its target is and the class that logs (``"module:attribute"``,
imported only when used). A new backend is one entry and one class with the
:class:`~smoothflip.tracking.session.ExperimentTracker` methods.

Trackers are called only by the process that writes the store (with Ray, the driver), right after
each pack is committed, and once more at the end of the study to log whatever is stored but not yet
logged (runs of earlier sessions included) and attach the report. A tracker already holding a run
(found by the run's id in the tracker itself) never logs it again, so a resumed study or a second
``smoothflip export --to`` duplicates nothing. A tracker that fails — a server gone, a full disk —
warns once and is switched off; the study goes on and every run stays stored
(:class:`~smoothflip.tracking.session.TrackingSession`).

How to name them: ``"mlflow"``, ``"mlflow=URI"``, ``"tensorboard"``, ``"tensorboard=DIR"`` (what
``smoothflip run --track`` takes), a list of those, or a dict ``{"mlflow": URI or {"uri": URI,
"experiment": NAME}, "tensorboard": DIR}``.

Example:
    >>> parse_track(["mlflow=http://mlflow.example:5000", "tensorboard"])
    [('mlflow', {'uri': 'http://mlflow.example:5000'}), ('tensorboard', {})]
    >>> parse_track("wandb")
    Traceback (most recent call last):
    ...
    smoothflip.errors.SmoothflipError: track: unknown tracker 'wandb'; available: 'mlflow', 'tensorboard'
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from smoothflip.errors import SmoothflipError

__all__ = ["TRACKERS", "TrackerEntry", "TrackingError", "load_tracker", "parse_track"]


class TrackingError(SmoothflipError):
    """A tracker that cannot be used as asked (not installed, a bad target, unreachable on export)."""


@dataclass(frozen=True)
class TrackerEntry:
    """One experiment-tracking backend.

    Attributes:
        name: what ``track=`` / ``--track`` call it.
        summary: one line for the docs.
        target: ``"module:attribute"`` of the class that logs (takes ``target=`` and its options).
        requires: the module that must be importable.
        extra: the pip extra that installs it.
        argument: what ``name=VALUE`` sets (``"uri"``, ``"dir"``).
        options: the other options the class takes (``{"experiment": ...}``).
    """

    name: str
    summary: str
    target: str
    requires: str
    extra: str
    argument: str
    options: tuple[str, ...] = ()


TRACKERS: Mapping[str, TrackerEntry] = {
    e.name: e
    for e in (
        TrackerEntry(
            "mlflow",
            "one parent run per study, a nested run per study run (params, curves, metrics, tags); the "
            "report as the parent's artifacts",
            "smoothflip.tracking._mlflow:MlflowTracker",
            requires="mlflow",
            extra="smoothflip[mlflow]",
            argument="uri",
            options=("experiment",),
        ),
        TrackerEntry(
            "tensorboard",
            "scalars per run under DIR/<study>/<arm>/<condition>/seed-<s>",
            "smoothflip.tracking._tensorboard:TensorBoardTracker",
            requires="tensorboard",
            extra="smoothflip[tensorboard]",
            argument="dir",
        ),
    )
}


def _entry(name: Any) -> TrackerEntry:
    if not isinstance(name, str) or name not in TRACKERS:
        allowed = ", ".join(map(repr, TRACKERS))
        raise SmoothflipError(f"track: unknown tracker {name!r}; available: {allowed}")
    return TRACKERS[name]


def parse_track(track: Any) -> list[tuple[str, dict[str, Any]]]:
    """``[(name, options), ...]`` from what ``track=`` takes (see the module docstring).

    Raises:
        SmoothflipError: an unknown tracker or option, or a value of the wrong kind (one line).
    """
    if track is None or track is False:
        return []
    items: list[tuple[Any, Any]] = []
    if isinstance(track, str):
        track = [track]
    if isinstance(track, Mapping):
        items = list(track.items())
    elif isinstance(track, Sequence):
        for item in track:
            if not isinstance(item, str):
                raise SmoothflipError(f"track: {item!r}: give 'mlflow', 'mlflow=URI', 'tensorboard=DIR' ...")
            name, sep, value = item.partition("=")
            items.append((name.strip(), value.strip() if sep else None))
    else:
        raise SmoothflipError(f"track = {track!r}: give a tracker's name, a list of names or a dict")
    out: list[tuple[str, dict[str, Any]]] = []
    for name, value in items:
        entry = _entry(name)
        if value is None or value is True:
            options: dict[str, Any] = {}
        elif isinstance(value, str):
            if not value:
                raise SmoothflipError(
                    f"track: {name}= needs a value ({entry.argument}), or write just {name}"
                )
            options = {entry.argument: value}
        elif isinstance(value, Mapping):
            options = dict(value)
            for key in options:
                if key not in (entry.argument, *entry.options):
                    allowed = ", ".join((entry.argument, *entry.options))
                    raise SmoothflipError(f"track: {name} has no option {key!r}; allowed: {allowed}")
        else:
            raise SmoothflipError(
                f"track: {name} = {value!r}: give its {entry.argument} or a dict of options"
            )
        if any(n == name for n, _ in out):
            raise SmoothflipError(f"track: {name} is named twice; give each tracker once")
        out.append((name, options))
    return out


def load_tracker(name: str, options: Mapping[str, Any]) -> Any:
    """The tracker ``name`` with ``options``, its backend imported now.

    Raises:
        TrackingError: the backend is not installed (the message says which extra installs it), or
            an option is not usable (e.g. an MLflow URI scheme mlflow-skinny cannot serve).
    """
    entry = _entry(name)
    try:
        importlib.import_module(entry.requires)
    except ImportError as err:
        raise TrackingError(
            f"track: {name!r} needs the {entry.requires} package, which is not installed here ({err}); "
            f"pip install '{entry.extra}'"
        ) from None
    module, _, attribute = entry.target.partition(":")
    return getattr(importlib.import_module(module), attribute)(**options)
