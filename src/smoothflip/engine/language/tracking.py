"""Per-epoch curves and model selection (validation NLL by default) of a language-model run."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from smoothflip.engine.checkpoint import Checkpointed
from smoothflip.engine.language.evaluation import final_metrics, next_token_examples
from smoothflip.engine.results import run_result
from smoothflip.study.grid import RunConfig
from smoothflip.study.store import RunResult

LM_CURVE_KEYS = (
    "epoch",
    "train_loss",
    "val_nll",
    "val_acc",
    "val_ece",
    "test_nll",
    "test_acc",
    "test_ece",
    "test_kl",
    "test_entropy",
)


class LMTracker(Checkpointed):
    """Per-epoch curves and model selection (lowest validation NLL) for one language-model run."""

    CHECKPOINTED = ("curves", "best", "selected_epoch", "selected_state", "diverged_epoch")

    def __init__(self, run: RunConfig) -> None:
        self.run = run
        self.curves: dict[str, list[float]] = {k: [] for k in LM_CURVE_KEYS}
        self.best = math.inf
        self.selected_epoch: int | None = None
        self.selected_state: dict[str, Tensor] | None = None
        self.diverged_epoch: int | None = None
        self.selection = run.shared["train"]["selection"]

    def record(
        self, epoch: int, train_loss: float, val: Mapping[str, float], test: Mapping[str, float]
    ) -> bool:
        row = {
            "epoch": float(epoch),
            "train_loss": float(train_loss),
            "val_nll": val["nll"],
            "val_acc": val["accuracy"],
            "val_ece": val["ece"],
            "test_nll": test["nll"],
            "test_acc": test["accuracy"],
            "test_ece": test["ece"],
            "test_kl": test.get("kl_to_truth", math.nan),
            "test_entropy": test["entropy"],
        }
        for key in LM_CURVE_KEYS:
            self.curves[key].append(float(row[key]))
        score = val["nll"] if self.selection == "val_nll" else -val["accuracy"]
        if math.isfinite(score) and score < self.best:
            self.best = score
            self.selected_epoch = epoch
            return True
        return False

    def mark_diverged(self, epoch: int) -> None:
        if self.diverged_epoch is None:
            self.diverged_epoch = epoch

    def result(
        self,
        timings: dict[str, Any],
        selected: dict[str, float],
        last: dict[str, float],
        extras: dict[str, Any],
    ) -> RunResult:
        run = self.run
        summary = {
            "selected": selected,
            "last": last,
            "diverged": self.diverged_epoch is not None,
            "diverged_epoch": float(self.diverged_epoch) if self.diverged_epoch is not None else math.nan,
            "epochs_recorded": float(len(self.curves["epoch"])),
            "noise_rate": 0.0,
        }
        return run_result(run, summary, self.curves, extras, timings)


def finish(
    tracker: LMTracker,
    corpus: Any,
    device: torch.device,
    current: Callable[[Tensor], Tensor] | None,
    selected: Callable[[Tensor], Tensor] | None,
    timings: dict[str, Any],
) -> RunResult:
    nan = dict.fromkeys(("epoch", "test_acc", "test_nll", "test_ece", "test_ece_ts", "test_brier"), math.nan)
    last_epoch = len(tracker.curves["epoch"])
    last = (
        final_metrics(current, corpus, device, last_epoch)
        if current is not None and last_epoch
        else dict(nan)
    )
    best = (
        final_metrics(selected, corpus, device, tracker.selected_epoch or 0)
        if selected is not None and tracker.selected_epoch
        else dict(nan)
    )
    extras = (
        {"next_token_examples": next_token_examples(selected, corpus, device)} if selected is not None else {}
    )
    return tracker.result(timings, best, last, extras)
