"""What the pack trainer and the per-run reference trainer share.

Both trainers must compute the same thing for the same run, so everything that is not the training
loop itself lives here: the run's data (noisy labels, train/validation split), seeding, model
construction, optimizer and learning-rate schedule, the loss of each epoch, divergence, and the
per-epoch and final metrics.
"""

from __future__ import annotations

import io
import math
import platform
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from smoothflip import __version__, metrics
from smoothflip.data import Dataset
from smoothflip.flipping import disturb_labels, flip_labels
from smoothflip.models import build_from_factory, build_model, load_factory
from smoothflip.noise import NoisyLabels, realized_transition_matrix
from smoothflip.study.grid import RunConfig
from smoothflip.study.store import RunResult
from smoothflip.techniques import LossContext, LossFn, build_loss

DIVERGENCE_LIMIT = 1e4
"""A member whose batch loss is non-finite, or whose |loss| or largest |logit| exceeds this, diverged."""

ECE_BINS = 15

TRAIN_EVAL_SIZE = 1024
"""Training examples (a fixed random subset per run) scored each epoch for the memorization curves."""


# --------------------------------------------------------------------------- run data


@dataclass(frozen=True)
class RunData:
    """A run's labels and split.

    Attributes:
        run: the run.
        noisy: the label condition applied to the whole training split of the dataset.
        train_idx: ``[N_tr]`` indices (into the dataset's training arrays) the model trains on.
        val_idx: ``[N_val]`` indices held out for model selection and temperature scaling; their
            labels are the *noisy* ones, as a practitioner's validation labels would be.
        train_eval_idx: ``[min(N_tr, TRAIN_EVAL_SIZE)]`` training indices scored every epoch for the
            per-epoch training curves (memorization of flipped vs unflipped examples).
        labels: ``[N]`` the labels the model trains on: the noisy labels, relabelled on the training
            split where the arm's defense relabels.
        pool: the training indices the model may visit (``train_idx`` minus examples the arm's
            defense drops).
        defense: what the arm's defense did, scored against the true flip mask (or None).
    """

    run: RunConfig
    noisy: NoisyLabels
    train_idx: np.ndarray
    val_idx: np.ndarray
    train_eval_idx: np.ndarray
    labels: np.ndarray
    pool: np.ndarray
    defense: dict[str, Any] | None = None

    @property
    def train_labels(self) -> np.ndarray:
        """The labels trained on, on the training split (after the arm's defense)."""
        return self.labels[self.train_idx]

    @property
    def train_flipped(self) -> np.ndarray:
        return self.noisy.flipped[self.train_idx]

    @property
    def val_labels(self) -> np.ndarray:
        return self.noisy.labels[self.val_idx]


def validation_count(n: int, fraction: float) -> int:
    return round(n * fraction)


def prepare_run(run: RunConfig, dataset: Dataset) -> RunData:
    """Apply the run's label condition to the training split, then split off its validation set."""
    n = dataset.y_train.shape[0]
    noisy = run.condition.apply(
        dataset.x_train, dataset.y_train, dataset.num_classes, run.seed_for("noise"), dataset.class_names
    )
    n_val = validation_count(n, float(run.shared["data"]["validation_fraction"]))
    if n - n_val < 1:
        raise ValueError(f"data.validation_fraction leaves no training examples out of {n}")
    rng = np.random.default_rng(run.seed_for("split"))
    order = rng.permutation(n)
    train_idx = np.sort(order[n_val:])
    train_eval_idx = np.sort(rng.permutation(train_idx)[:TRAIN_EVAL_SIZE])
    labels, pool, defense = noisy.labels, train_idx, None
    if run.arm.defense is not None:
        labels, pool, defense = _defend(run, dataset, noisy, train_idx)
    return RunData(
        run=run,
        noisy=noisy,
        train_idx=train_idx,
        val_idx=np.sort(order[:n_val]),
        train_eval_idx=train_eval_idx,
        labels=labels,
        pool=pool,
        defense=defense,
    )


def _defend(
    run: RunConfig, dataset: Dataset, noisy: NoisyLabels, train_idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Apply the arm's defense to its training split: relabelled labels, kept indices, detection scores."""
    from smoothflip.defenses import apply_defense, score_detection

    arm = run.arm
    x = dataset.x_train[train_idx].reshape(train_idx.size, -1)
    result = apply_defense(
        arm.defense,
        x,
        noisy.labels[train_idx],
        seed=run.seed_for("defense") % (2**32),
        **dict(arm.defense_options),
    )
    labels = noisy.labels.copy()
    labels[train_idx] = result.labels
    score = score_detection(result.flagged, noisy.flipped[train_idx])
    summary = {
        "name": arm.defense,
        "precision": float(score.precision),
        "recall": float(score.recall),
        "f1": float(score.f1),
        "flagged": float(result.flagged.sum()),
        "relabelled": float(result.n_relabelled),
        "dropped": float(result.n_dropped),
    }
    return labels, train_idx[result.keep], summary


def epoch_visit(rng: np.random.Generator, data: RunData) -> np.ndarray:
    """The dataset indices one epoch visits, in order: ``[N_tr]``.

    Without dropped examples this is a permutation of the training split. When the arm's defense
    drops examples, the epoch visits a permutation of the kept ones topped up with a random sample of
    them, so every run of a pack takes the same number of steps.
    """
    n = data.train_idx.size
    if data.pool.size == n:
        return data.train_idx[rng.permutation(n)]
    if data.pool.size == 0:
        raise ValueError(f"the {data.run.arm.defense} defense dropped every training example")
    order = rng.permutation(data.pool.size)
    extra = rng.choice(data.pool.size, size=n - data.pool.size, replace=True)
    return data.pool[np.concatenate([order, extra])]


def loss_context(data: RunData, num_classes: int) -> LossContext:
    labels = data.train_labels
    matrix = realized_transition_matrix(data.noisy.true_labels[data.train_idx], labels, num_classes)
    return LossContext(
        num_classes=num_classes,
        class_prior=torch.bincount(torch.as_tensor(labels).long(), minlength=num_classes).double()
        / max(1, labels.size),
        key=data.run.run_id,
        transition_matrix=torch.as_tensor(matrix),
    )


@dataclass(frozen=True)
class LossChoice:
    """The loss a member trains with in one epoch.

    Attributes:
        key: members with equal keys share one loss call.
        fn: ``fn(logits [B, K], target [B], **extra) -> [B]``.
        needs_teacher: ``fn`` takes ``teacher=`` logits ``[B, K]`` (distillation).
    """

    key: tuple[Any, ...]
    fn: LossFn
    needs_teacher: bool = False


def member_loss_fn(data: RunData, num_classes: int, epoch: int) -> LossChoice:
    """The loss a run trains with in ``epoch`` (1-based).

    Arms with ``warmup_epochs = w`` train with plain cross-entropy for epochs ``1..w``.
    """
    from smoothflip.techniques import LOSSES, is_member_specific

    arm = data.run.arm
    if epoch <= arm.warmup_epochs or (arm.loss == "ce" and not arm.params.get("z_loss")):
        return LossChoice(("ce",), build_loss("ce", {}, LossContext(num_classes)))
    if is_member_specific(arm.loss, arm.params):
        fn = build_loss(arm.loss, arm.params, loss_context(data, num_classes))
        return LossChoice(("member", data.run.run_id), fn)
    fn = build_loss(arm.loss, arm.params, LossContext(num_classes))
    return LossChoice(("arm", arm.name), fn, needs_teacher=LOSSES[arm.loss].needs_teacher)


# --------------------------------------------------------------------------- teachers (distillation)


@dataclass(frozen=True)
class TeacherState:
    """A trained teacher: its model config (as stored with its run) and its weights at the selected epoch."""

    model: dict[str, Any]
    state: dict[str, np.ndarray]


def state_to_bytes(state: dict[str, Tensor]) -> bytes:
    """A model's tensors as ``.npz`` bytes (float32; loaded back without pickle)."""
    buffer = io.BytesIO()
    np.savez(buffer, **{name: t.detach().to(torch.float32).cpu().numpy() for name, t in state.items()})
    return buffer.getvalue()


def state_from_bytes(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def teacher_logits(
    teacher: TeacherState, dataset: Dataset, *, base_dir: str = ".", device: torch.device
) -> Tensor:
    """``[N_train, K]`` logits of the teacher on every training example of the dataset."""
    cfg = teacher.model
    if cfg.get("factory"):
        model = build_from_factory(
            load_factory(cfg["factory"], base_dir=base_dir),
            input_shape=dataset.input_shape,
            num_classes=dataset.num_classes,
            options=cfg.get("options", {}),
        )
    else:
        model = build_model(
            cfg["name"],
            input_shape=dataset.input_shape,
            num_classes=dataset.num_classes,
            options=cfg.get("options", {}),
        )
    model.load_state_dict({name: torch.as_tensor(value) for name, value in teacher.state.items()})
    model = model.to(device).eval()
    x = torch.as_tensor(dataset.x_train, device=device)
    with torch.no_grad():
        return torch.cat([model(x[i : i + 1024]) for i in range(0, x.shape[0], 1024)])


def epoch_targets(
    labels: Tensor, data: RunData, num_classes: int, generator: torch.Generator | None, batch_size: int
) -> Tensor:
    """The targets of one epoch, ``[N_tr]`` in batch order, after the arm's training-time flipping.

    ``labels`` holds the (noisy) labels of the epoch's examples in the order they are visited.
    DisturbLabel redraws every label independently, so the whole epoch is drawn in one call;
    fixed-rate flips are exact per batch, so they are drawn batch by batch.
    """
    arm = data.run.arm
    if generator is None:
        return labels
    if arm.disturb_alpha > 0:
        return disturb_labels(labels, alpha=arm.disturb_alpha, num_classes=num_classes, generator=generator)
    batches = [
        flip_labels(
            labels[i : i + batch_size], rate=arm.flip_rate, num_classes=num_classes, generator=generator
        )
        for i in range(0, labels.numel(), batch_size)
    ]
    return torch.cat(batches)


def flip_generator(data: RunData, device: torch.device) -> torch.Generator | None:
    arm = data.run.arm
    if arm.disturb_alpha <= 0 and arm.flip_rate <= 0:
        return None
    gen = torch.Generator(device=device)
    gen.manual_seed(data.run.seed_for("flip"))
    return gen


def diverged(loss: Tensor, max_abs_logit: Tensor) -> Tensor:
    """Elementwise: which losses mark a divergence (see :data:`DIVERGENCE_LIMIT`)."""
    return ~torch.isfinite(loss) | (loss.abs() > DIVERGENCE_LIMIT) | ~(max_abs_logit <= DIVERGENCE_LIMIT)


# --------------------------------------------------------------------------- models and optimization


def build_member(run: RunConfig, dataset: Dataset, *, base_dir: str = ".") -> nn.Module:
    """The run's model, initialized from its ``init`` seed without touching the caller's RNG."""
    model_cfg = run.shared["model"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(run.seed_for("init"))
        if model_cfg.get("factory"):
            factory = load_factory(model_cfg["factory"], base_dir=base_dir)
            return build_from_factory(
                factory,
                input_shape=dataset.input_shape,
                num_classes=dataset.num_classes,
                options=model_cfg.get("options", {}),
            )
        return build_model(
            model_cfg["name"],
            input_shape=dataset.input_shape,
            num_classes=dataset.num_classes,
            options=model_cfg.get("options", {}),
        )


@dataclass(frozen=True)
class Plan:
    """How long training runs: ``epochs`` epochs of ``batches`` batches, stopping at ``total_steps``."""

    epochs: int
    batches: int
    total_steps: int


def plan(train: dict[str, Any], n_train: int) -> Plan:
    batches = max(1, math.ceil(n_train / int(train["batch_size"])))
    if train.get("steps"):
        total = int(train["steps"])
        return Plan(epochs=math.ceil(total / batches), batches=batches, total_steps=total)
    epochs = int(train["epochs"])
    return Plan(epochs=epochs, batches=batches, total_steps=epochs * batches)


def make_optimizer(params: list[Tensor], train: dict[str, Any]) -> torch.optim.Optimizer:
    name, lr, wd = train["optimizer"], float(train["lr"]), float(train["weight_decay"])
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, foreach=False)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, foreach=False)
    return torch.optim.SGD(
        params,
        lr=lr,
        momentum=float(train["momentum"]),
        nesterov=bool(train["nesterov"]),
        weight_decay=wd,
        foreach=False,
    )


def make_schedule(optimizer: torch.optim.Optimizer, train: dict[str, Any], total_steps: int) -> Any:
    if train["lr_schedule"] == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


# --------------------------------------------------------------------------- representation probes


class Probe:
    """Müller et al. 2019 probes for one run: mutual information each epoch, penultimate features at the end.

    The mutual-information examples are ``examples_per_class`` training examples of each of the two
    ``mi_classes`` (by true label), each seen under ``augmentations`` random augmentations drawn once
    per run; the estimate uses the difference of those two classes' logits
    (:func:`smoothflip.metrics.mutual_information`, nats, in ``[0, log N]``). The representation
    sample is ``examples_per_class`` test examples of each of ``classes`` (fewer if the test set has
    fewer). Classes the dataset does not have disable that part of the probe.
    """

    def __init__(self, data: RunData, dataset: Dataset) -> None:
        from smoothflip.data.augment import augment, augmentation_for

        cfg = data.run.probe or {}
        k = dataset.num_classes
        per_class = int(cfg.get("examples_per_class", 100))
        rng = np.random.default_rng(data.run.seed_for("probe"))
        self.mi_classes = [c for c in cfg.get("mi_classes", ()) if c < k]
        self.views: np.ndarray | None = None
        if len(self.mi_classes) == 2:
            true = data.noisy.true_labels[data.train_idx]
            picks = [rng.permutation(data.train_idx[true == c])[:per_class] for c in self.mi_classes]
            chosen = np.concatenate(picks)
            kind = augmentation_for(dataset.name, dataset.input_shape)
            count = int(cfg.get("augmentations", 5))
            if chosen.size >= 2:
                base = dataset.x_train[chosen]
                self.views = np.stack(
                    [augment(base, kind=kind, seed=rng) for _ in range(count)]
                )  # [L, N, ...]
        self.classes = [c for c in cfg.get("classes", ()) if c < k]
        self.test_idx: np.ndarray | None = None
        if len(self.classes) == 3:
            self.test_idx = np.concatenate(
                [np.flatnonzero(dataset.y_test == c)[:per_class] for c in self.classes]
            )
        self.dataset = dataset

    def mutual_information(self, logits_fn: Callable[[Tensor], Tensor], device: torch.device) -> float:
        """MI estimate from ``logits_fn(x [M, ...]) -> [M, K]`` applied to every augmented view."""
        if self.views is None:
            return math.nan
        views = torch.as_tensor(self.views, device=device)
        count, n = views.shape[:2]
        logits = logits_fn(views.reshape(count * n, *views.shape[2:])).reshape(count, n, -1)
        a, b = self.mi_classes
        diffs = (logits[..., a] - logits[..., b]).T.detach().to(torch.float64).cpu().numpy()  # [N, L]
        if not np.isfinite(diffs).all():
            return math.nan
        return metrics.mutual_information(diffs)

    def representation(
        self,
        features_fn: Callable[[Tensor], Tensor] | None,
        head_weight: Tensor | None,
        head_bias: Tensor | None,
        epoch: int,
        device: torch.device,
    ) -> dict[str, Any] | None:
        """Penultimate features of the test sample and the classifier's weights (for the projection)."""
        if self.test_idx is None or features_fn is None or head_weight is None or not self.test_idx.size:
            return None
        x = torch.as_tensor(self.dataset.x_test[self.test_idx], device=device)
        features = features_fn(x).detach().to(torch.float64).cpu().numpy()
        if not np.isfinite(features).all():
            return None
        return {
            "classes": self.classes,
            "class_names": [self.dataset.class_names[c] for c in self.classes],
            "labels": self.dataset.y_test[self.test_idx].tolist(),
            "features": np.round(features, 5).tolist(),
            "head_weight": np.round(head_weight.detach().double().cpu().numpy(), 6).tolist(),
            "head_bias": (
                np.round(head_bias.detach().double().cpu().numpy(), 6).tolist()
                if head_bias is not None
                else None
            ),
            "epoch": epoch,
        }

    def describe(self) -> dict[str, Any] | None:
        if self.views is None:
            return None
        return {
            "classes": self.mi_classes,
            "examples": int(self.views.shape[1]),
            "augmentations": int(self.views.shape[0]),
        }


# --------------------------------------------------------------------------- metrics and history

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


class Tracker:
    """Per-epoch curves, model selection on validation data, and final metrics of one run."""

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
        train_logits: Tensor,
        val_logits: Tensor,
        test_logits: Tensor,
        mi: float = math.nan,
    ) -> bool:
        """Record one epoch; returns True when this epoch becomes the selected one."""
        d, ds = self.data, self.dataset
        train_pred = train_logits.argmax(-1).cpu().numpy()  # on d.train_eval_idx
        labels, flipped = d.noisy.labels[d.train_eval_idx], d.noisy.flipped[d.train_eval_idx]
        true = d.noisy.true_labels[d.train_eval_idx]
        val_labels = d.val_labels
        row = {
            "epoch": float(epoch),
            "train_loss": float(train_loss),
            "train_acc": _acc(train_pred, labels),
            "train_acc_unflipped": _acc(train_pred, labels, ~flipped),
            "train_acc_flipped": _acc(train_pred, labels, flipped),
            "train_acc_flipped_true": _acc(train_pred, true, flipped),
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


def run_result(
    run: RunConfig,
    metrics: dict[str, Any],
    curves: dict[str, Any],
    extras: dict[str, Any],
    timings: dict[str, Any],
    artifacts: dict[str, bytes] | None = None,
) -> RunResult:
    """A finished run as the store keeps it (grid coordinates, config and package versions filled in)."""
    return RunResult(
        run_id=run.run_id,
        arm=run.arm.name,
        condition=run.condition.label,
        noise=run.condition.noise,
        rate=run.condition.rate,
        seed=run.seed,
        config=run.to_dict(),
        metrics=metrics,
        curves=curves,
        extras=extras,
        timings=timings,
        versions=versions(),
        artifacts=artifacts or {},
    )


def pack_step(
    member_loss: Tensor,
    max_abs_logit: Tensor,
    alive: Tensor,
    trackers: Sequence[Any],
    epoch: int,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    params: Mapping[str, Tensor],
) -> Tensor:
    """One optimizer step of a pack; returns the updated ``[P]`` mask of members still training.

    Members whose loss or logits blow up this step (:func:`diverged`) are marked diverged on their
    tracker and frozen out: their loss leaves the sum and their gradients are zeroed.
    """
    bad = diverged(member_loss.detach(), max_abs_logit) & alive
    if bool(bad.any()):
        for m in torch.nonzero(bad).flatten().tolist():
            trackers[m].mark_diverged(epoch)
        alive = alive & ~bad
    optimizer.zero_grad(set_to_none=False)
    torch.where(alive, member_loss, torch.zeros_like(member_loss)).sum().backward()
    if not bool(alive.all()):
        for p in params.values():
            p.grad[~alive] = 0.0
    optimizer.step()
    scheduler.step()
    return alive


def skipped_result(run: RunConfig, dataset: Dataset, reason: str) -> RunResult:
    """The stored result of a run that could not train (e.g. its teacher diverged before any epoch)."""
    tracker = Tracker(prepare_run(run, dataset), dataset)
    tracker.add_extra("skipped", reason)
    return tracker.result({"pack_seconds": 0.0, "pack_size": 0, "seconds_per_run": 0.0, "steps": 0})


def versions() -> dict[str, str]:
    return {
        "smoothflip": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(terse=True),
    }


ProgressFn = Callable[[float], None]
"""Called with the fraction of a pack's (or run's) training done so far."""
