"""The user-trainer track (``kind = "trainer"``): the user's own training function, one run at a time.

``[model] trainer = "train.py:train"`` names a function ``train(run)`` that trains one run of the
study (:class:`~smoothflip.engine.trainer.run.TrainerRun`: its seeds, data indices and noisy labels,
the arm's criterion and flipping, the budget) and reports the validation and test logits it
predicts. Everything else is smoothflip's: the grid, the label conditions, storage, resume, the
metrics (from the reported logits, exactly as for the built-in models), verdicts and the report.

A run whose function raises (or reports logits of the wrong shape, or non-finite ones) is stored as
a *failure* with its message, and the study goes on; rerunning the study retries it. The local
executor runs one run at a time (``--workers N``: N at once in worker processes); the Ray executor
runs each as one task (``--gpus-per-run 0.5`` puts two on a GPU).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from smoothflip.data import Dataset
from smoothflip.engine.classifier import TRACK as CLASSIFIERS
from smoothflip.engine.classifier.run_data import prepare_run
from smoothflip.engine.results import pack_timings
from smoothflip.engine.schedule import ProgressFn
from smoothflip.engine.trainer.run import TrainerRun
from smoothflip.errors import SmoothflipError, UserCodeError, user_input
from smoothflip.study.grid import RunConfig
from smoothflip.study.spec.schema import StudySpec
from smoothflip.study.store import RunFailure, RunResult

__all__ = ["TRACK", "TrainerRun", "TrainerTrack", "load_trainer", "train_one"]


def load_trainer(reference: str, *, base_dir: str = ".") -> Callable[[TrainerRun], Any]:
    """Import the user's training function (``"file.py:function"`` or ``"package.module:function"``).

    Raises:
        UserCodeError: the file or module cannot be found or imported, the attribute is missing or not
            callable (one line naming the reference).
    """
    from smoothflip.models import load_factory

    try:
        return load_factory(reference, base_dir=base_dir)
    except UserCodeError as err:  # the user's file raised while it was imported
        message = " ".join(str(err).split()).replace("model factory", "model.trainer", 1)
        raise UserCodeError(message, where=err.where) from err.__cause__
    except (ValueError, TypeError) as err:
        message = " ".join(str(err).split()).replace("model factory", "training function", 1)
        raise UserCodeError(f"model.trainer: {message}") from None
    except Exception as err:  # the user's module raised while it was imported
        where = _where(err)
        raise UserCodeError(
            f"model.trainer {reference!r}: importing it raised {type(err).__name__}: {err}{where}",
            where=where,
        ) from None


def _where(err: BaseException) -> str:
    """`` (file.py, line 12)``: the innermost frame of the traceback, for the one-line message."""
    if isinstance(err, SyntaxError) and err.filename:
        return f" ({err.filename}, line {err.lineno})"
    frames = traceback.extract_tb(err.__traceback__)
    return f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""


def train_one(
    run: RunConfig, dataset: Dataset, *, device: str | torch.device = "cpu", base_dir: str = "."
) -> RunResult | RunFailure:
    """Train one run with the user's function; its result, or a :class:`RunFailure` naming the problem."""
    started = time.perf_counter()
    data = prepare_run(run, dataset)
    model_cfg = run.shared["model"]
    handle = TrainerRun(data, dataset, device=torch.device(device), options=model_cfg.get("options", {}))
    try:
        function = load_trainer(model_cfg["trainer"], base_dir=base_dir)
        with torch.random.fork_rng(devices=_devices(handle.device)):
            torch.manual_seed(run.seed_for("init") % (2**63))
            returned = function(handle)
        if handle.reported == 0:
            _record_returned(handle, returned)
    except Exception as err:  # the user's code failed: a result of this run, not of the study
        message = (
            err.args[0] if isinstance(err, UserCodeError) else f"{type(err).__name__}: {err}{_where(err)}"
        )
        return RunFailure(
            run_id=run.run_id,
            arm=run.arm.name,
            condition=run.condition.label,
            condition_id=run.condition.condition_id,
            seed=run.seed,
            message=" ".join(str(message).split()),
            traceback="".join(traceback.format_exception(err)),
        )
    return handle.tracker.result(pack_timings(time.perf_counter() - started, 1, 0))


def _devices(device: torch.device) -> list[int]:
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def _record_returned(handle: TrainerRun, returned: Any) -> None:
    if not isinstance(returned, Mapping) or not {"val_logits", "test_logits"} <= set(returned):
        raise UserCodeError(
            "the training function reported no epoch: call run.report(epoch, val_logits=..., "
            "test_logits=...) after each epoch, or return {'val_logits': ..., 'test_logits': ...}"
        )
    epoch = int(returned.get("epoch", handle.num_epochs or 1))
    handle.report(
        epoch,
        val_logits=returned["val_logits"],
        test_logits=returned["test_logits"],
        train_loss=float(returned.get("train_loss", float("nan"))),
    )


class TrainerTrack:
    """Studies trained by the user's own function; data, labels and techniques as classifier studies."""

    name = "trainer"

    def load(self, spec: StudySpec) -> Dataset:
        return CLASSIFIERS.load(spec)

    def fingerprint(self, data: Dataset) -> str:
        return data.fingerprint()

    def describe(self, data: Dataset) -> str:
        return CLASSIFIERS.describe(data)

    def check(self, spec: StudySpec, data: Dataset, runs: Sequence[RunConfig]) -> None:
        """The function can be imported; the data, the techniques and the label conditions fit."""
        if data.num_classes < 2:
            raise SmoothflipError(
                f"data: the training labels hold {data.num_classes} class; at least 2 are needed"
            )
        load_trainer(spec.model.trainer or "", base_dir=spec.base_dir)
        from smoothflip.engine.classifier import _check_conditions
        from smoothflip.techniques import LossContext, build_loss

        for arm in spec.arms:
            with user_input(f"arm {arm.name!r}"):
                build_loss(arm.loss, arm.params, LossContext(num_classes=data.num_classes))
        _check_conditions(data, runs)

    def auto_pack_size(
        self, runs: Sequence[RunConfig], data: Dataset, *, device: torch.device, base_dir: str
    ) -> int:
        return 1  # every run is the user's own loop

    def estimate(self, packs: Sequence[Sequence[RunConfig]], data: Dataset, **_: Any) -> None:
        return None  # the user's own loop: its steps are its own

    def train_pack(
        self,
        runs: Sequence[RunConfig],
        data: Dataset,
        *,
        device: str | torch.device = "cpu",
        base_dir: str = ".",
        progress: ProgressFn | None = None,
        teachers: Mapping[str, Any] | None = None,
        checkpoint: Any = None,
    ) -> list[RunResult | RunFailure]:
        # a pack here is one run of the user's own loop, which owns its state: no pack checkpoint
        out = []
        for i, run in enumerate(runs):
            out.append(train_one(run, data, device=device, base_dir=base_dir))
            if progress is not None:
                progress((i + 1) / len(runs))
        return out

    def train_reference(self, run: RunConfig, data: Dataset, **options: Any) -> RunResult | RunFailure:
        return train_one(
            run, data, device=options.get("device", "cpu"), base_dir=options.get("base_dir", ".")
        )

    def skipped(self, run: RunConfig, data: Dataset, reason: str) -> RunResult:
        return CLASSIFIERS.skipped(run, data, reason)


TRACK = TrainerTrack()
