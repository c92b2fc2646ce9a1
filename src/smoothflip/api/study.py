"""``sf.Study``: a study built in Python (or read from a file), run from Python.

A :class:`Study` holds a validated :class:`~smoothflip.study.spec.StudySpec`: the keyword arguments
mirror the study file's keys and go through the same reader, so a bad value is the same one-line
:class:`~smoothflip.errors.SpecError`. What a file cannot hold — arrays, a DataFrame, a torch
Dataset, a model function or class, a training function — is named by reference
(:mod:`smoothflip.api.inputs`). :meth:`Study.run` trains (or resumes) it into a study directory,
the same way ``smoothflip run`` does, and returns :class:`~smoothflip.api.results.Results`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smoothflip._memory import Entry
from smoothflip._text import safe_name
from smoothflip.api.inputs import memory_keys, study_document
from smoothflip.errors import SmoothflipError, SpecError
from smoothflip.study.spec import StudySpec, load_study, parse_study

if TYPE_CHECKING:
    from smoothflip.api.results import Results

__all__ = ["DEFAULT_RUNS_DIR", "Study"]

DEFAULT_RUNS_DIR = Path("smoothflip-runs")
"""Where :meth:`Study.run` writes without ``out``: ``smoothflip-runs/<study name>`` (as the CLI)."""


class Study:
    """A study: techniques (arms) x label conditions x seeds on one dataset and model.

    The keyword arguments are the study file's top-level keys (see the README's "The study file"),
    as Python values; each table is a dict. Beyond the file, ``data`` may be in memory and ``model``
    / ``trainer`` may be Python callables:

    Args:
        name: the study's name (default ``"study"``).
        seeds: a count or a list of seeds (default 3).
        data: a built-in dataset's name (``"digits"``), a path, arrays ``(x, y)`` or
            ``(x, y, x_test, y_test)`` or ``{"x": ..., "y": ...}``, a pandas DataFrame (give
            ``label_column`` in a table: ``{"source": df, "label_column": "label"}``), a torch
            Dataset of ``(x, y)``; or the ``[data]`` table with ``source`` one of those (and
            ``test_source`` the test examples as the same kind of data).
        model: a built-in model's name (``"mlp"``), the ``[model]`` table, a factory function
            ``(input_shape, num_classes, **options) -> nn.Module``, an ``nn.Module`` subclass taking
            those arguments, or ``{"factory": function, **options}``.
        train, arms, conditions, analysis, probes, distillation, certify: the study file's tables
            (dicts; ``arms`` and ``conditions`` lists of dicts; ``certify`` is the ``[certify]`` table of
            a ``kind = "certified"`` study).
        baseline, kind, description: as in the study file.
        trainer: your own training function (a ``kind = "trainer"`` study: it receives a
            :class:`~smoothflip.engine.trainer.TrainerRun`), or ``"file.py:function"``.
        base_dir: the folder relative paths resolve against (default: the working directory).

    Raises:
        SpecError: one line naming the key, the bad value and what is allowed.

    Example:
        >>> import smoothflip as sf
        >>> study = sf.Study(name="tiny", data="digits", model={"name": "mlp", "hidden": [16]},
        ...                  arms=[{"name": "ce"}, {"name": "ls", "loss": "smoothed_ce", "eps": 0.1}])
        >>> study
        Study('tiny': 2 arms x 1 condition x 3 seeds = 6 runs; data "digits", model "mlp")
        >>> sf.Study(data="digits", train={"lr": -1}, arms=[{"name": "ce"}])
        Traceback (most recent call last):
        ...
        smoothflip.errors.SpecError: train.lr = -1: must be > 0
    """

    spec: StudySpec

    def __init__(
        self,
        *,
        name: str | None = None,
        seeds: int | Sequence[int] | None = None,
        data: Any = None,
        model: Any = None,
        train: Mapping[str, Any] | None = None,
        arms: Sequence[Mapping[str, Any]] | None = None,
        conditions: Sequence[Mapping[str, Any]] | None = None,
        analysis: Mapping[str, Any] | None = None,
        baseline: str | None = None,
        kind: str | None = None,
        description: str | None = None,
        probes: Mapping[str, Any] | None = None,
        distillation: Mapping[str, Any] | None = None,
        certify: Mapping[str, Any] | None = None,
        trainer: Any = None,
        base_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        settings = {
            "name": name,
            "seeds": seeds,
            "data": data,
            "model": model,
            "train": train,
            "arms": arms,
            "conditions": conditions,
            "analysis": analysis,
            "baseline": baseline,
            "kind": kind,
            "description": description,
            "probes": probes,
            "distillation": distillation,
            "certify": certify,
            "trainer": trainer,
        }
        self._build(settings, base_dir)

    def _build(self, settings: Mapping[str, Any], base_dir: str | os.PathLike[str] | None) -> None:
        document, entries = study_document(settings)
        self._entries: list[Entry] = entries  # keeps the in-memory references valid
        self._memory = memory_keys(document)
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        self.spec = parse_study(document, base_dir=base.resolve())

    @classmethod
    def from_dict(
        cls, settings: Mapping[str, Any], *, base_dir: str | os.PathLike[str] | None = None
    ) -> Study:
        """A study from a dict shaped like the study file (tables as dicts), in-memory values allowed.

        Example:
            >>> Study.from_dict({"name": "d", "data": {"source": "digits"}, "arms": [{"name": "ce"}]})
            Study('d': 1 arm x 1 condition x 3 seeds = 3 runs; data "digits", model "mlp")
        """
        if not isinstance(settings, Mapping):
            raise SpecError(
                f"Study.from_dict: expected a dict of the study file's keys, got {type(settings).__name__}"
            )
        study = cls.__new__(cls)
        study._build(settings, base_dir)
        return study

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> Study:
        """A study from a study file (relative paths in it resolve against the file's folder).

        Raises:
            FileNotFoundError: no such file.
            SpecError: the file is not TOML, or a key or value is wrong.
        """
        study = cls.__new__(cls)
        study._entries, study._memory = [], {}
        study.spec = load_study(path)
        return study

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def num_runs(self) -> int:
        """The number of runs of the grid (arms x label-condition rates x seeds)."""
        from smoothflip.study.conditions import study_conditions

        return len(self.spec.arms) * len(study_conditions(self.spec)) * len(self.spec.seeds)

    def to_toml(self, path: str | os.PathLike[str] | None = None) -> str:
        """The resolved study file (every default written out); also written to ``path`` when given.

        A model or training function defined at the top of a ``.py`` file is written as
        ``"path/to/file.py:function"``, relative to ``path``'s folder (without ``path``: to the
        study's ``base_dir``), so the file reruns the same study; one of an installed package as
        ``"package.module:function"``.

        Raises:
            SpecError: the study holds in-memory data, or a callable a file cannot name (defined in a
                notebook, in ``__main__`` or inside a function).
        """
        from smoothflip.api.inputs import file_references

        folder = Path(path).resolve().parent if path is not None else self.spec.base_dir
        named = file_references(self._memory, relative_to=folder)
        keys = ", ".join(k for k, reference in self._memory.items() if reference not in named)
        if keys:
            raise SpecError(
                f"to_toml: {keys} hold(s) in-memory data or a Python callable, which a study file cannot "
                "name; save the data to a file (numpy.savez, DataFrame.to_parquet) and put the function in "
                "a .py file, then name them (data.source = path, model.factory = 'file.py:function')"
            )
        from smoothflip.study.spec import dumps_study

        text = dumps_study(_renamed(self.spec, named))
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def run(
        self,
        out: str | os.PathLike[str] | None = None,
        *,
        device: str = "cpu",
        executor: str = "local",
        workers: int = 1,
        pack_size: int | None = None,
        address: str | None = None,
        cpus_per_pack: float | None = None,
        gpus_per_pack: float | None = None,
        checkpoint_seconds: float = 60.0,
        until_settled: bool = False,
        max_seeds: int | None = None,
        round_size: int = 2,
        track: Any = None,
        progress: bool = True,
        report: bool = True,
        allow_long: bool = False,
    ) -> Results:
        """Train (or resume) the study into ``out``; rerunning trains only what is not stored yet.

        Args:
            out: the study directory (default ``smoothflip-runs/<name>``).
            device, executor, workers, pack_size, address, cpus_per_pack, gpus_per_pack,
                checkpoint_seconds, allow_long: as ``smoothflip run``'s options
                (:func:`smoothflip.engine.run_study`).
            until_settled: add seeds in rounds to the cells whose primary verdict is inconclusive,
                up to ``max_seeds`` per cell, ``round_size`` per round (``--until-settled``).
            track: experiment trackers: ``"mlflow"``, ``"mlflow=URI"``, ``"tensorboard=DIR"``, a list
                of those, or ``{"mlflow": URI or {"uri": ..., "experiment": ...}, "tensorboard": DIR}``
                (see :mod:`smoothflip.tracking`). A tracker that fails warns once; the study goes on.
            progress: show a progress bar (a live line in a notebook).
            report: write the report (``DIR/report``) when the study is done.

        Returns:
            The study's :class:`~smoothflip.api.results.Results`; ``results.trained`` is how many runs
            this call trained.

        Raises:
            SmoothflipError: bad options, or a directory that holds another study (nothing is written).
        """
        from smoothflip.api.running import run_study_here, warn_failures, write_report_at

        if until_settled and max_seeds is None:
            raise SmoothflipError("until_settled needs max_seeds (the most seeds a cell may get)")
        if not until_settled and max_seeds is not None:
            raise SmoothflipError("max_seeds is an option of until_settled; pass until_settled=True")
        target = Path(out) if out is not None else DEFAULT_RUNS_DIR / safe_name(self.spec.name)
        results = run_study_here(
            self.spec,
            target,
            options={
                "device": device,
                "executor": executor,
                "workers": workers,
                "pack_size": pack_size,
                "address": address,
                "cpus_per_pack": cpus_per_pack,
                "gpus_per_pack": gpus_per_pack,
                "checkpoint_seconds": checkpoint_seconds,
                "allow_long": allow_long,
            },
            settle=(max_seeds, round_size) if until_settled else None,
            track=track,
            progress=progress,
            report=write_report_at if report else None,
        )
        warn_failures(results)
        return results

    def __repr__(self) -> str:
        from smoothflip.study.conditions import study_conditions

        spec = self.spec
        arms, conditions, seeds = len(spec.arms), len(study_conditions(spec)), len(spec.seeds)
        plural = lambda n, word: f"{n} {word}{'' if n == 1 else 's'}"  # noqa: E731
        data = spec.data.source if not spec.data.source.startswith("memory:") else "in memory"
        model = f"trainer {_show(spec.model.trainer)}" if spec.model.trainer else ""
        model = model or f"model {_show(spec.model.factory or spec.model.name)}"
        return (
            f"Study({spec.name!r}: {plural(arms, 'arm')} x {plural(conditions, 'condition')} x "
            f"{plural(seeds, 'seed')} = {plural(arms * conditions * seeds, 'run')}; data {_show(data)}, "
            f"{model})"
        )


def _show(text: str) -> str:
    from smoothflip._text import printable

    if text.startswith("memory:"):
        return printable(text.removeprefix("memory:").partition("@")[0])
    return f'"{printable(text)}"' if text != "in memory" else text


def _renamed(value: Any, names: Mapping[str, str]) -> Any:
    """``value`` (a spec: frozen dataclasses and tuples) with every string in ``names`` replaced."""
    if isinstance(value, str):
        return names.get(value, value)
    if isinstance(value, tuple):
        items = tuple(_renamed(v, names) for v in value)
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    if dataclasses.is_dataclass(value) and not isinstance(value, type) and names:
        changed = {
            f.name: new
            for f in dataclasses.fields(value)
            if f.init and (new := _renamed(getattr(value, f.name), names)) is not getattr(value, f.name)
        }
        return dataclasses.replace(value, **changed) if changed else value
    return value
