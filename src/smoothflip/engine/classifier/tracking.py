"""Per-epoch curves, model selection on validation data, and the final metrics of a classifier run."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor

from smoothflip import metrics
from smoothflip.data import Dataset
from smoothflip.engine.checkpoint import Checkpointed
from smoothflip.engine.classifier.run_data import RunData
from smoothflip.engine.results import run_result
from smoothflip.study.store import RunResult

ECE_BINS = 15

CURVE_KEYS = (
    "epoch",
    "train_loss",
    "train_acc",
    "train_acc_unflipped",
    "train_acc_flipped",
    "train_acc_flipped_true",
    "val_acc",
    "val_nll",
    "val_ece",
    "test_acc",
    "test_nll",
    "test_ece",
    "mi",
)


def _acc(pred: np.ndarray, labels: np.ndarray, mask: np.ndarray | None = None) -> float:
    if mask is not None:
        pred, labels = pred[mask], labels[mask]
    return float(np.mean(pred == labels)) if labels.size else math.nan


def _probs(logits: Tensor) -> np.ndarray:
    return torch.softmax(logits.detach().to(torch.float64), dim=-1).cpu().numpy()


SELECTIVE_KEYS = (
    "test_aurc",
    "test_eaurc",
    "test_classwise_ece",
    "test_smooth_ece",
    "test_ece_low",
    "test_ece_high",
)
"""Metrics computed from the test-set probabilities besides accuracy, NLL, ECE and Brier."""
ECE_RESAMPLES = 1000


def selective_and_calibration(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """AURC and E-AURC (selective classification by max probability), class-wise ECE (15 bins),
    smooth ECE, and the 95% bootstrap interval of the 15-bin ECE over test examples (1000
    resamples, seed 0: the same probabilities always give the same interval)."""
    if labels.size == 0 or not np.isfinite(probs).all():
        return dict.fromkeys(SELECTIVE_KEYS, math.nan)
    _, low, high = metrics.calibration_error_interval(
        probs, labels, metric="ece", n_bins=ECE_BINS, n_resamples=ECE_RESAMPLES, seed=0
    )
    return {
        "test_aurc": metrics.aurc(probs, labels),
        "test_eaurc": metrics.excess_aurc(probs, labels),
        "test_classwise_ece": metrics.classwise_calibration_error(probs, labels, n_bins=ECE_BINS),
        "test_smooth_ece": metrics.smooth_ece(probs, labels),
        "test_ece_low": float(low),
        "test_ece_high": float(high),
    }


class Tracker(Checkpointed):
    """Per-epoch curves, model selection on validation data, and final metrics of one run."""

    CHECKPOINTED = ("curves", "best_score", "selected", "last", "diverged_epoch", "extras", "artifacts")

    def __init__(self, data: RunData, dataset: Dataset) -> None:
        self.data = data
        self.dataset = dataset
        self.selection = data.run.shared["train"]["selection"]
        self.curves: dict[str, list[float]] = {k: [] for k in CURVE_KEYS}
        self.best_score = -math.inf
        self.selected: tuple[int, Tensor, Tensor] | None = None
        self.last: tuple[int, Tensor, Tensor] | None = None
        self.diverged_epoch: int | None = None
        self.extras: dict[str, Any] = {}
        self.artifacts: dict[str, bytes] = {}
        self.keeps_state = data.run.arm.role == "teacher"

    def record(
        self,
        epoch: int,
        train_loss: float,
        train_logits: Tensor | None,
        val_logits: Tensor,
        test_logits: Tensor,
        mi: float = math.nan,
    ) -> bool:
        """Record one epoch; returns True when this epoch becomes the selected one.

        ``train_logits`` (on the run's training-curve subset) may be None: the training-accuracy
        curves are then NaN for the epoch (a user's training function need not report them).
        """
        d, ds = self.data, self.dataset
        labels, flipped = d.noisy.labels[d.train_eval_idx], d.noisy.flipped[d.train_eval_idx]
        true = d.noisy.true_labels[d.train_eval_idx]
        val_labels = d.val_labels
        if train_logits is None:
            train = dict.fromkeys(("train_acc", "train_acc_unflipped", "train_acc_flipped"), math.nan)
            train["train_acc_flipped_true"] = math.nan
        else:
            train_pred = train_logits.argmax(-1).cpu().numpy()  # on d.train_eval_idx
            train = {
                "train_acc": _acc(train_pred, labels),
                "train_acc_unflipped": _acc(train_pred, labels, ~flipped),
                "train_acc_flipped": _acc(train_pred, labels, flipped),
                "train_acc_flipped_true": _acc(train_pred, true, flipped),
            }
        row = {
            "epoch": float(epoch),
            "train_loss": float(train_loss),
            **train,
            "test_acc": _acc(test_logits.argmax(-1).cpu().numpy(), ds.y_test),
            "test_nll": metrics.nll_from_logits(test_logits, ds.y_test),
            "test_ece": metrics.expected_calibration_error(_probs(test_logits), ds.y_test, n_bins=ECE_BINS),
            "mi": float(mi),
        }
        if val_labels.size:
            row["val_acc"] = _acc(val_logits.argmax(-1).cpu().numpy(), val_labels)
            row["val_nll"] = metrics.nll_from_logits(val_logits, val_labels)
            row["val_ece"] = metrics.expected_calibration_error(
                _probs(val_logits), val_labels, n_bins=ECE_BINS
            )
        else:
            row["val_acc"] = row["val_nll"] = row["val_ece"] = math.nan
        for key in CURVE_KEYS:
            self.curves[key].append(row[key])
        snapshot = (epoch, val_logits.detach().cpu().clone(), test_logits.detach().cpu().clone())
        self.last = snapshot
        if not val_labels.size:
            self.selected = snapshot  # no validation data: the last epoch is the selected one
            return True
        score = row["val_acc"] if self.selection == "val_accuracy" else -row["val_nll"]
        if score > self.best_score:
            self.best_score = score
            self.selected = snapshot
            return True
        return False

    def add_extra(self, key: str, value: Any) -> None:
        """Keep an artifact for the store (``None`` means there is nothing to keep)."""
        if value is not None:
            self.extras[key] = value

    def mark_diverged(self, epoch: int) -> None:
        if self.diverged_epoch is None:
            self.diverged_epoch = epoch

    def _final(self, snapshot: tuple[int, Tensor, Tensor] | None) -> dict[str, float]:
        nan_keys = (
            "epoch",
            "val_acc",
            "val_nll",
            "test_acc",
            "test_nll",
            "test_ece",
            "test_mce",
            "test_brier",
            "temperature",
            "test_ece_ts",
            "test_nll_ts",
            *SELECTIVE_KEYS,
        )
        if snapshot is None:
            return dict.fromkeys(nan_keys, math.nan)
        epoch, val_logits, test_logits = snapshot
        y_test, y_val = self.dataset.y_test, self.data.val_labels
        probs = _probs(test_logits)
        out = {
            "epoch": float(epoch),
            "val_acc": _acc(val_logits.argmax(-1).numpy(), y_val),
            "val_nll": metrics.nll_from_logits(val_logits, y_val) if y_val.size else math.nan,
            "test_acc": _acc(test_logits.argmax(-1).numpy(), y_test),
            "test_nll": metrics.nll_from_logits(test_logits, y_test),
            "test_ece": metrics.expected_calibration_error(probs, y_test, n_bins=ECE_BINS),
            "test_mce": metrics.expected_calibration_error(probs, y_test, n_bins=ECE_BINS, norm="max"),
            "test_brier": metrics.brier_score(probs, y_test),
            **selective_and_calibration(probs, y_test),
        }
        temperature = math.nan
        if y_val.size and self.dataset.num_classes >= 2:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                temperature = metrics.fit_temperature(val_logits, y_val)
        out["temperature"] = temperature
        if math.isfinite(temperature):
            scaled = test_logits.to(torch.float64) / temperature
            out["test_ece_ts"] = metrics.expected_calibration_error(_probs(scaled), y_test, n_bins=ECE_BINS)
            out["test_nll_ts"] = metrics.nll_from_logits(scaled, y_test)
        else:
            out["test_ece_ts"] = out["test_nll_ts"] = math.nan
        return out

    def result(self, timings: dict[str, Any]) -> RunResult:
        run, noisy = self.data.run, self.data.noisy
        selected = self._final(self.selected)
        last = self._final(self.last)
        train_flipped = self.data.train_flipped
        summary = {
            "selected": selected,
            "last": last,
            "diverged": self.diverged_epoch is not None,
            "diverged_epoch": float(self.diverged_epoch) if self.diverged_epoch is not None else math.nan,
            "epochs_recorded": float(len(self.curves["epoch"])),
            "noise_rate": float(noisy.rate),
            "noise_rate_train": float(train_flipped.mean()) if train_flipped.size else math.nan,
            "n_train": float(self.data.pool.size),
            "n_val": float(self.data.val_idx.size),
            "n_test": float(self.dataset.y_test.size),
        }
        if self.data.defense is not None:
            summary["defense"] = dict(self.data.defense)
        extras: dict[str, Any] = dict(self.extras)
        if self.selected is not None:
            diagram = metrics.reliability_diagram(
                _probs(self.selected[2]), self.dataset.y_test, n_bins=ECE_BINS
            )
            extras["reliability"] = {
                "edges": diagram.edges.tolist(),
                "confidence": diagram.confidence.tolist(),
                "accuracy": diagram.accuracy.tolist(),
                "count": diagram.count.tolist(),
            }
        return run_result(run, summary, self.curves, extras, timings, dict(self.artifacts))
