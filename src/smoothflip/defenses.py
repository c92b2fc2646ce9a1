"""Label sanitization and filtering defences, scored against the flip mask.

Three defences (:data:`DEFENSES`), numpy in / numpy out:

- :func:`knn_relabel` (Paudice, Muñoz-González & Lupu 2018): relabel a point to the majority
  label of its ``k`` nearest neighbours when that label's share is at least ``eta``.
- :func:`confident_learning` (Northcutt et al. 2021): out-of-sample probabilities by
  cross-validation, then **cleanlab**'s ``cleanlab.filter.find_label_issues`` flags the examples
  to drop. cleanlab is imported when this defence runs (``pip install cleanlab``).
- :func:`small_loss_filter` (the small-loss trick of Co-teaching, Han et al. 2018): keep the
  ``keep_fraction`` of examples with the lowest loss after a short warm-up.

:func:`apply_defense` runs any of them by name and returns a :class:`DefenseResult` (cleaned
labels, keep mask, flagged mask) — what a training loop needs: relabelled examples stay with
their new label, dropped ones leave the training set. :func:`score_detection` scores a flagged
mask against the flip mask an attack or noise model returned (precision, recall, F1).

Example:
    >>> import numpy as np
    >>> from sklearn.datasets import make_blobs
    >>> from smoothflip import noise
    >>> from smoothflip.defenses import apply_defense, score_detection
    >>> X, y = make_blobs(n_samples=300, centers=[[0, 0], [8, 0], [0, 8]], random_state=0)
    >>> noisy = noise.symmetric(y, 0.2, 3, mode="exact", seed=0)
    >>> result = apply_defense("knn", X, noisy.labels, k=10, eta=0.5)
    >>> score = score_detection(result.flagged, noisy.flipped)
    >>> score.precision > 0.9, score.recall > 0.9
    (True, True)
    >>> float((result.labels == y).mean()) > 0.95
    True
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from smoothflip._validation import check_choice, check_features, check_int, check_range

__all__ = [
    "DEFENSES",
    "DEFENSE_OPTIONS",
    "FILTER_BY",
    "DefenseResult",
    "DetectionScore",
    "apply_defense",
    "check_defense_options",
    "confident_learning",
    "knn_relabel",
    "score_detection",
    "small_loss_filter",
]

#: The defences :func:`apply_defense` knows.
DEFENSES: tuple[str, ...] = ("knn", "confident_learning", "small_loss")

#: ``filter_by`` methods of ``cleanlab.filter.find_label_issues`` (cleanlab 2.x).
FILTER_BY: tuple[str, ...] = (
    "prune_by_noise_rate",
    "prune_by_class",
    "both",
    "confident_learning",
    "predicted_neq_given",
    "low_normalized_margin",
    "low_self_confidence",
)

#: Default number of SGD epochs of the small-loss warm-up.
DEFAULT_WARMUP_EPOCHS = 5


# --------------------------------------------------------------------------------------------------
# result types
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class DetectionScore:
    """How well a flagged mask finds the flipped labels.

    Attributes:
        precision: ``true_positives / n_predicted``; NaN when nothing was flagged (0/0).
        recall: ``true_positives / n_flipped``; NaN when nothing was flipped (0/0).
        f1: ``2 · true_positives / (n_predicted + n_flipped)`` — the harmonic mean of precision
            and recall wherever both are defined, 0 when only one of the counts is 0 (nothing
            found), NaN only when both are 0.
        n_predicted: number of flagged examples.
        n_flipped: number of flipped examples.
        true_positives: flagged examples that were flipped.
    """

    precision: float
    recall: float
    f1: float
    n_predicted: int
    n_flipped: int
    true_positives: int


@dataclass(frozen=True, eq=False)
class DefenseResult:
    """What a defence did to a training set.

    Attributes:
        labels: ``[N]`` int64 cleaned labels (relabelled where the defence relabels; otherwise a
            copy of the input labels).
        keep: ``[N]`` bool, ``False`` for examples to drop from training.
        flagged: ``[N]`` bool, the examples the defence acted on (relabelled or dropped); score it
            with :func:`score_detection` against a flip mask.
    """

    labels: np.ndarray
    keep: np.ndarray
    flagged: np.ndarray

    @property
    def n_relabelled(self) -> int:
        """Number of examples whose label the defence changed."""
        return int((self.flagged & self.keep).sum())

    @property
    def n_dropped(self) -> int:
        """Number of examples the defence drops."""
        return int((~self.keep).sum())

    def __repr__(self) -> str:
        return (
            f"DefenseResult(n={self.labels.shape[0]}, relabelled={self.n_relabelled}, "
            f"dropped={self.n_dropped})"
        )


# --------------------------------------------------------------------------------------------------
# defences
# --------------------------------------------------------------------------------------------------


def knn_relabel(X: Any, y: Any, *, k: int = 10, eta: float = 0.5) -> np.ndarray:
    """Relabel each point to its neighbours' majority label (Paudice et al. 2018).

    For each example, its ``k`` nearest neighbours (Euclidean, on the flattened features, the
    example itself excluded — with duplicate points, one copy of itself is excluded) vote; if the
    most common label has a share of at least ``eta`` of the ``k`` votes, the example takes that
    label. A tie for the most common label keeps the example's own label if it is among the tied
    ones, else takes the smallest tied label. All examples are decided from the *input* labels
    (one synchronous pass).

    Args:
        X: ``[N, ...]`` finite numeric features, flattened to ``[N, d]``. Scale them first if
            their units differ (the distance is plain Euclidean).
        y: ``[N]`` integer labels (``>= 0``).
        k: number of neighbours, ``1 <= k < N``.
        eta: minimum share of the majority label, in ``(0, 1]``.

    Returns:
        ``[N]`` int64 cleaned labels.

    Raises:
        ValueError: bad ``X``, ``y``, ``k`` or ``eta``.

    Example:
        >>> X = np.array([[0.0], [0.1], [0.2], [0.3], [5.0], [5.1], [5.2], [5.3]])
        >>> knn_relabel(X, [0, 0, 1, 0, 1, 1, 1, 1], k=3, eta=0.6).tolist()
        [0, 0, 0, 0, 1, 1, 1, 1]
    """
    x, labels = _check_xy(X, y)
    n = labels.size
    k = check_int("k", k, low=1)
    if k >= n:
        raise ValueError(f"k must be < N={n} (the number of examples), got {k}")
    eta = check_range("eta", eta, low=0.0, high=1.0, low_open=True)
    from sklearn.neighbors import NearestNeighbors

    _, idx = NearestNeighbors(n_neighbors=k + 1, n_jobs=1).fit(x).kneighbors(x)
    drop = idx == np.arange(n)[:, None]
    no_self = ~drop.any(axis=1)  # duplicates crowded the point itself out: drop the farthest
    drop[no_self, -1] = True
    neighbours = idx[~drop].reshape(n, k)
    classes, encoded = np.unique(labels, return_inverse=True)  # votes [N, K] for the K present
    votes = np.zeros((n, classes.size), dtype=np.int64)
    np.add.at(votes, (np.repeat(np.arange(n), k), encoded[neighbours].ravel()), 1)
    top = votes.max(axis=1)
    own = votes[np.arange(n), encoded] == top  # the own label is among the most common: keep it
    majority = np.where(own, encoded, votes.argmax(axis=1))  # argmax: the smallest tied label
    relabel = top >= eta * k - 1e-9 * k
    return classes[np.where(relabel, majority, encoded)].astype(np.int64)


def confident_learning(
    X: Any,
    y: Any,
    *,
    model: Any = None,
    cv: int = 5,
    seed: int = 0,
    filter_by: str = "prune_by_noise_rate",
    pred_probs: Any = None,
) -> np.ndarray:
    """Confident-learning pruning with cleanlab: the mask of examples to keep.

    1. Out-of-sample probabilities ``[N, K]``:
       ``sklearn.model_selection.cross_val_predict(model, X, y, method="predict_proba",
       cv=StratifiedKFold(cv, shuffle=True, random_state=seed))`` — unless ``pred_probs`` is
       given, which skips this step (it must then be out-of-sample, as cleanlab requires).
    2. ``cleanlab.filter.find_label_issues(labels=y, pred_probs=..., filter_by=filter_by)``
       flags the likely label errors; they are the examples *not* kept.

    Labels are encoded ``0..K-1`` in sorted order of the values present before both steps (and
    must already be ``0..K-1`` columns of ``pred_probs`` when it is given).

    Args:
        X: ``[N, ...]`` finite numeric features (flattened to ``[N, d]``); may be ``None`` when
            ``pred_probs`` is given.
        y: ``[N]`` integer labels (``>= 0``), at least 2 classes.
        model: an unfitted scikit-learn classifier with ``predict_proba`` (cloned per fold);
            default ``make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))``.
        cv: number of folds, ``>= 2``.
        seed: shuffles the folds.
        filter_by: cleanlab's method, one of :data:`FILTER_BY`.
        pred_probs: optional precomputed out-of-sample ``[N, K]`` probabilities.

    Returns:
        ``[N]`` bool keep mask (``True`` = keep).

    Raises:
        ValueError: bad arguments, or cross-validation impossible (e.g. a class with fewer
            examples than ``cv`` folds).
        ImportError: cleanlab is not installed.

    Example:
        >>> from sklearn.datasets import make_blobs
        >>> X, y = make_blobs(n_samples=200, centers=2, random_state=0)
        >>> y_noisy = y.copy()
        >>> y_noisy[:10] = 1 - y_noisy[:10]
        >>> keep = confident_learning(X, y_noisy, seed=0)
        >>> int((~keep[:10]).sum()) >= 9, int((~keep[10:]).sum()) <= 2
        (True, True)
    """
    filter_by = check_choice("filter_by", filter_by, FILTER_BY)
    cv = check_int("cv", cv, low=2)
    seed = check_int("seed", seed, low=0)
    if pred_probs is None:
        x, labels = _check_xy(X, y)
        classes, encoded = np.unique(labels, return_inverse=True)
        if classes.size < 2:
            raise ValueError(f"y has only 1 class ({int(classes[0])}); confident learning needs at least 2")
        probs = _cross_val_probs(x, encoded, model=model, cv=cv, seed=seed)
    else:
        labels = _check_labels(y)
        probs = _check_probs(pred_probs, labels)
        encoded = labels
    try:
        import cleanlab.filter
    except ImportError as exc:
        raise ImportError(f"confident_learning needs cleanlab (pip install 'cleanlab>=2.6'): {exc}") from None

    issues = cleanlab.filter.find_label_issues(
        labels=encoded, pred_probs=probs, filter_by=filter_by, n_jobs=1
    )
    return ~np.asarray(issues, dtype=bool)


def small_loss_filter(
    losses: Any = None,
    *,
    keep_fraction: float,
    X: Any = None,
    y: Any = None,
    model: Any = None,
    warmup_epochs: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Keep the ``keep_fraction`` of examples with the smallest loss (Co-teaching's small-loss trick).

    Early in training a network fits the clean labels before it memorizes the wrong ones, so after
    a short *warm-up* the examples with the largest loss are the likely label errors. Two ways in:

    - **precomputed** ``losses`` ``[N]``: per-example losses from your own model after its own
      warm-up (a few epochs of ordinary training on the noisy labels, well before it fits them
      all). Nothing is trained here.
    - **fit here** (``X`` and ``y``): a linear model is trained on z-scored ``X`` and the given
      labels, and its per-example cross-entropy ``-log p(y_i | x_i)`` on those labels is the
      loss. Default model ``SGDClassifier(loss="log_loss", max_iter=warmup_epochs, tol=None,
      random_state=seed)``: the warm-up is ``warmup_epochs`` (default 5) passes of SGD over the
      data, stopped early on purpose. A custom ``model`` (any scikit-learn classifier with
      ``predict_proba``) is fit once as it is configured — its own iteration limit is its
      warm-up, so ``warmup_epochs`` is refused with it.

    Exactly ``round(keep_fraction · N)`` examples (half up, at least 1) are kept; ties in the
    loss are broken by position.

    Args:
        losses: ``[N]`` finite per-example losses, or ``None`` to fit a model on ``X``, ``y``.
        keep_fraction: share of examples to keep, in ``(0, 1]`` (Co-teaching uses
            ``1 - noise rate``).
        X: ``[N, ...]`` finite numeric features (fit path only).
        y: ``[N]`` integer labels, the (noisy) labels to score (fit path only).
        model: optional unfitted scikit-learn classifier with ``predict_proba`` (fit path only).
        warmup_epochs: SGD epochs of the default model, ``>= 1`` (fit path, default model only).
        seed: seeds the default model.

    Returns:
        ``[N]`` bool keep mask (``True`` = keep).

    Raises:
        ValueError: both or neither of ``losses`` and ``X``/``y``, or a bad argument.

    Example:
        >>> small_loss_filter([0.1, 2.0, 0.3, 0.2], keep_fraction=0.75).tolist()
        [True, False, True, True]
    """
    keep_fraction = check_range("keep_fraction", keep_fraction, low=0.0, high=1.0, low_open=True)
    if losses is not None:
        if X is not None or y is not None or model is not None or warmup_epochs is not None:
            raise ValueError(
                "small_loss_filter: give either losses, or X and y (with optional model / warmup_epochs), "
                "not both"
            )
        values = np.asarray(losses, dtype=np.float64) if _is_numeric(losses) else None
        if values is None or values.ndim != 1 or values.size == 0:
            raise ValueError(f"losses must be a non-empty 1-D array of numbers [N], got {_describe(losses)}")
        if not np.isfinite(values).all():
            raise ValueError(f"losses must be finite; found {int((~np.isfinite(values)).sum())} NaN or inf")
    else:
        if X is None or y is None:
            raise ValueError("small_loss_filter needs losses, or both X and y to fit a warm-up model")
        values = _warmup_losses(X, y, model=model, warmup_epochs=warmup_epochs, seed=seed)
    n = values.size
    n_keep = max(1, math.floor(keep_fraction * n + 0.5 + 1e-9))
    keep = np.zeros(n, dtype=bool)
    keep[np.argsort(values, kind="stable")[:n_keep]] = True
    return keep


# --------------------------------------------------------------------------------------------------
# scoring and the uniform entry point
# --------------------------------------------------------------------------------------------------


def score_detection(predicted: Any, flipped: Any) -> DetectionScore:
    """Precision, recall and F1 of a flagged mask against the true flip mask.

    Args:
        predicted: ``[N]`` bool, examples flagged as wrongly labelled (for :func:`knn_relabel`:
            ``cleaned != labels``; for a keep mask: ``~keep``; :attr:`DefenseResult.flagged`).
        flipped: ``[N]`` bool, examples whose label was flipped (``NoisyLabels.flipped``).

    Returns:
        :class:`DetectionScore`. Undefined ratios (0/0) are NaN: precision when nothing is
        flagged, recall when nothing was flipped; F1 is ``2·TP / (n_predicted + n_flipped)``,
        NaN only when both counts are 0.

    Example:
        >>> s = score_detection([True, True, False, False], [True, False, True, False])
        >>> s.precision, s.recall, s.f1, s.true_positives
        (0.5, 0.5, 0.5, 1)
        >>> score_detection([False, False], [True, False]).f1
        0.0
    """
    pred = _check_mask("predicted", predicted)
    true = _check_mask("flipped", flipped)
    if pred.shape != true.shape:
        raise ValueError(f"predicted and flipped must have the same length, got {pred.size} and {true.size}")
    tp = int((pred & true).sum())
    n_pred, n_flip = int(pred.sum()), int(true.sum())
    return DetectionScore(
        precision=tp / n_pred if n_pred else math.nan,
        recall=tp / n_flip if n_flip else math.nan,
        f1=2 * tp / (n_pred + n_flip) if n_pred + n_flip else math.nan,
        n_predicted=n_pred,
        n_flipped=n_flip,
        true_positives=tp,
    )


def apply_defense(name: str, X: Any, y: Any, *, seed: int = 0, **options: Any) -> DefenseResult:
    """Run a defence by name and return what it did as a :class:`DefenseResult`.

    - ``"knn"`` (:func:`knn_relabel`; options ``k``, ``eta``): relabels; keeps every example;
      ``flagged`` = labels it changed.
    - ``"confident_learning"`` (:func:`confident_learning`; options ``model``, ``cv``,
      ``filter_by``, ``pred_probs``): drops the examples cleanlab flags; labels unchanged.
    - ``"small_loss"`` (:func:`small_loss_filter` on ``X``, ``y``; options ``keep_fraction``
      (required), ``model``, ``warmup_epochs``): drops the large-loss examples; labels unchanged.

    Args:
        name: one of :data:`DEFENSES`.
        X: ``[N, ...]`` finite numeric features.
        y: ``[N]`` integer labels (the possibly noisy training labels).
        seed: seeds the defence's own randomness (CV folds, the warm-up model); ``knn`` has none.
        **options: the defence's options (:data:`DEFENSE_OPTIONS`); unknown keys are refused.

    Returns:
        :class:`DefenseResult` with ``labels`` ``[N]``, ``keep`` ``[N]`` and ``flagged`` ``[N]``.

    Example:
        >>> X = np.array([[0.0], [0.1], [0.2], [0.3], [5.0], [5.1], [5.2], [5.3]])
        >>> r = apply_defense("knn", X, [0, 0, 1, 0, 1, 1, 1, 1], k=3, eta=0.6)
        >>> r.flagged.tolist(), bool(r.keep.all())
        ([False, False, True, False, False, False, False, False], True)
    """
    name = check_defense_options(name, options)
    labels = _check_labels(y)
    if name == "knn":
        cleaned = knn_relabel(X, labels, **options)
        return DefenseResult(labels=cleaned, keep=np.ones(labels.size, dtype=bool), flagged=cleaned != labels)
    if name == "confident_learning":
        keep = confident_learning(X, labels, seed=seed, **options)
    else:
        keep = small_loss_filter(X=X, y=labels, seed=seed, **options)
    return DefenseResult(labels=labels.copy(), keep=keep, flagged=~keep)


def check_defense_options(name: str, options: Mapping[str, Any]) -> str:
    """Check a defence's name and the names and values of its options without any data.

    What depends on the data (``k`` below the number of examples, enough examples per class for
    ``cv`` folds) is checked when the defence runs. Returns the name.

    Example:
        >>> check_defense_options("knn", {"k": 5, "eta": 0.5})
        'knn'
    """
    name = check_choice("defense", name, DEFENSES)
    allowed = DEFENSE_OPTIONS[name]
    unknown = [key for key in options if key not in allowed]
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for defense {name!r}; "
            f"allowed: {', '.join(allowed)}"
        )
    if name == "small_loss" and "keep_fraction" not in options:
        raise ValueError("defense 'small_loss' needs option keep_fraction (the share of examples to keep)")
    if "k" in options:
        check_int("k", options["k"], low=1)
    if "eta" in options:
        check_range("eta", options["eta"], low=0.0, high=1.0, low_open=True)
    if "cv" in options:
        check_int("cv", options["cv"], low=2)
    if "filter_by" in options:
        check_choice("filter_by", options["filter_by"], FILTER_BY)
    if "keep_fraction" in options:
        check_range("keep_fraction", options["keep_fraction"], low=0.0, high=1.0, low_open=True)
    if options.get("warmup_epochs") is not None:
        check_int("warmup_epochs", options["warmup_epochs"], low=1)
    return name


def _option_names(fn: Callable[..., Any], exclude: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in exclude
    )


#: Options each defence takes in :func:`apply_defense`.
DEFENSE_OPTIONS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "knn": _option_names(knn_relabel, ()),
        "confident_learning": _option_names(confident_learning, ("seed",)),
        "small_loss": _option_names(small_loss_filter, ("seed", "X", "y")),
    }
)


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def _is_numeric(values: Any) -> bool:
    try:
        return np.asarray(values).dtype.kind in "biuf"
    except (TypeError, ValueError):
        return False


def _describe(values: Any) -> str:
    arr = np.asarray(values) if _is_numeric(values) else None
    if arr is None:
        return type(values).__name__
    return f"shape {arr.shape}"


def _check_labels(y: Any) -> np.ndarray:
    labels = np.asarray(y)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"y must be a non-empty 1-D array of class indices [N], got shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise ValueError(f"y must hold integer class indices, got dtype {labels.dtype}")
    if labels.min() < 0:
        raise ValueError(f"y must be >= 0, found {int(labels.min())}")
    return labels.astype(np.int64)


def _check_xy(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    labels = _check_labels(y)
    if X is None:
        raise ValueError("X is required (features [N, ...])")
    return check_features(X, labels.size), labels


def _check_mask(name: str, mask: Any) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D bool mask [N], got shape {arr.shape}")
    if arr.dtype != bool:
        if arr.dtype.kind in "iu" and np.isin(arr, (0, 1)).all():
            return arr.astype(bool)
        raise ValueError(f"{name} must be a bool mask (or 0/1 integers), got dtype {arr.dtype}")
    return arr


def _check_probs(pred_probs: Any, labels: np.ndarray) -> np.ndarray:
    probs = np.asarray(pred_probs, dtype=np.float64) if _is_numeric(pred_probs) else None
    if probs is None or probs.ndim != 2 or probs.shape[0] != labels.size or probs.shape[1] < 2:
        raise ValueError(
            f"pred_probs must be [N={labels.size}, K >= 2] probabilities, got {_describe(pred_probs)}"
        )
    if not np.isfinite(probs).all() or (probs < 0).any():
        raise ValueError("pred_probs must be finite and non-negative")
    if labels.max() >= probs.shape[1]:
        raise ValueError(
            f"y must be < K={probs.shape[1]} (the columns of pred_probs), found {int(labels.max())}"
        )
    return probs


def _default_proba_model() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))


def _cross_val_probs(x: np.ndarray, labels: np.ndarray, *, model: Any, cv: int, seed: int) -> np.ndarray:
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    smallest = int(np.bincount(labels).min())
    if smallest < cv:
        raise ValueError(
            f"cv={cv} folds need at least {cv} examples of every class; the smallest class has {smallest} "
            f"— lower cv or pass pred_probs"
        )
    model = _default_proba_model() if model is None else model
    if not hasattr(model, "predict_proba"):
        raise ValueError(f"model must have predict_proba, {type(model).__name__} does not")
    folds = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        return cross_val_predict(model, x, labels, cv=folds, method="predict_proba", n_jobs=1)


def _warmup_losses(X: Any, y: Any, *, model: Any, warmup_epochs: int | None, seed: int) -> np.ndarray:
    """Per-example cross-entropy on ``y`` of a model trained briefly on ``(X, y)``."""
    from sklearn.exceptions import ConvergenceWarning

    x, labels = _check_xy(X, y)
    if np.unique(labels).size < 2:
        raise ValueError("y has only 1 class; the small-loss warm-up model needs at least 2")
    x = (x - x.mean(axis=0)) / np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
    if model is None:
        from sklearn.linear_model import SGDClassifier

        epochs = check_int(
            "warmup_epochs", DEFAULT_WARMUP_EPOCHS if warmup_epochs is None else warmup_epochs, low=1
        )
        model = SGDClassifier(
            loss="log_loss", max_iter=epochs, tol=None, random_state=check_int("seed", seed)
        )
    else:
        if warmup_epochs is not None:
            raise ValueError(
                "warmup_epochs only sets the default model's SGD epochs; with your own model, set its own "
                "iteration limit (e.g. max_iter) instead"
            )
        if not hasattr(model, "predict_proba"):
            raise ValueError(f"model must have predict_proba, {type(model).__name__} does not")
        from sklearn.base import clone

        model = clone(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=ConvergenceWarning)
        model.fit(x, labels)
    probs = np.asarray(model.predict_proba(x), dtype=np.float64)
    cols = np.searchsorted(model.classes_, labels)
    picked = probs[np.arange(labels.size), cols]
    return -np.log(np.clip(picked, 1e-300, None))
