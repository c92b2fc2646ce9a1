"""Label-flip poisoning: flip a budget of training labels to hurt the model trained on them.

One entry point, :func:`label_flip`, with five strategies (:data:`STRATEGIES`). Every strategy
takes features ``X`` ``[N, ...]`` and clean labels ``y`` ``[N]`` and returns a
:class:`~smoothflip.noise.NoisyLabels` (noisy labels, flip mask, realized transition matrix,
realized rate), like every label-noise model in :mod:`smoothflip.noise`.

**Budget.** A float in ``(0, 1)`` is a fraction, a Python/NumPy int a count. The count is realized
*exactly*: a fraction ``f`` flips ``round(f * N)`` labels (rounded half up, as
:func:`smoothflip.noise.symmetric` does in ``"exact"`` mode; for ``"targeted"`` the fraction is
of the source class), and every flipped label differs from its true label, so
``out.flipped.sum() == budget`` and ``out.rate == budget / N``.

**Strategies.**

- ``"random"``: ``budget`` examples chosen uniformly, each flipped to a uniformly chosen other
  class. The baseline every other attack should beat.
- ``"targeted"`` (options ``source``, ``target``): ``budget`` examples of class ``source``, chosen
  uniformly, relabelled ``target``.
- ``"margin"`` (options ``side``, ``one_way``): flip the examples nearest to (or farthest from) a
  surrogate's decision boundary, each to its runner-up class; see :func:`label_flip`.
- ``"greedy"``: rounds of "score every candidate flip with an influence estimate, flip the best
  batch, retrain" against a logistic-regression surrogate; see :func:`label_flip` for exactly
  what is computed.
- ``"alfa"``: ALFA (Xiao, Xiao & Eckert, ECAI 2012) against a binary linear SVM: alternate a
  linear program that picks the flips and retraining the SVM on them; binary labels only.

The surrogate strategies (``margin``, ``greedy``, ``alfa``) only flip between classes present in
``y`` (a surrogate has nothing to say about a class it never saw).

Example:
    >>> import numpy as np
    >>> from smoothflip.attacks import label_flip
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(200, 5)), rng.integers(0, 3, 200)
    >>> out = label_flip(X, y, budget=0.1, strategy="random", seed=0)
    >>> int(out.flipped.sum()), out.rate, bool((out.labels[out.flipped] != y[out.flipped]).all())
    (20, 0.1, True)
    >>> int(label_flip(X, y, budget=15, strategy="margin", seed=0).flipped.sum())
    15
"""

from __future__ import annotations

import contextlib
import copy
import math
import warnings
from collections.abc import Iterator, Mapping
from numbers import Integral, Real
from types import MappingProxyType
from typing import Any

import numpy as np

from smoothflip._validation import (
    SeedLike,
    as_generator,
    check_choice,
    check_features,
    check_int,
    check_range,
)
from smoothflip.noise import NoisyLabels, realized_transition_matrix

__all__ = ["STRATEGIES", "STRATEGY_OPTIONS", "label_flip"]

#: The attack strategies :func:`label_flip` knows.
STRATEGIES: tuple[str, ...] = ("random", "targeted", "margin", "greedy", "alfa")

#: Options each strategy takes (``**options`` of :func:`label_flip`), with their defaults
#: (``None``: required).
STRATEGY_OPTIONS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "random": MappingProxyType({}),
        "targeted": MappingProxyType({"source": None, "target": None}),
        "margin": MappingProxyType({"side": "nearest", "one_way": True, "C": 1.0}),
        "greedy": MappingProxyType(
            {
                "rounds": 10,
                "candidates": 0,
                "validation_fraction": 0.0,
                "objective": "error",
                "C": 1.0,
            }
        ),
        "alfa": MappingProxyType({"max_iter": 10, "C": 1.0}),
    }
)

#: Strategies that only attack binary classifiers.
BINARY_ONLY: tuple[str, ...] = ("alfa",)

_SIDES = ("nearest", "farthest")
_OBJECTIVES = ("error", "ce")
_SMALL_PROBLEM = 4_000_000  # N * d up to which the attacks run on one BLAS thread
_SURROGATE_MAX_ITER = 500  # L-BFGS iterations of the logistic-regression surrogate
_CG_DAMPING = 1e-6  # ridge added to the surrogate's Hessian (its intercepts are unpenalized)


# --------------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------------


def label_flip(
    X: Any,
    y: Any,
    *,
    budget: float | int,
    strategy: str = "random",
    seed: SeedLike = None,
    num_classes: int | None = None,
    **options: Any,
) -> NoisyLabels:
    """Flip exactly ``budget`` training labels with the chosen attack strategy.

    Args:
        X: ``[N, ...]`` finite numeric features (flattened to ``[N, d]``; only the surrogate
            strategies use them, but their length is always checked).
        y: ``[N]`` integer class labels in ``[0, num_classes)``.
        budget: a fraction in ``(0, 1)`` (float) or a count (int, ``0 <= budget <= eligible``).
            Eligible examples: all ``N``, the source class for ``"targeted"``, the examples
            outside the held-out validation part for ``"greedy"``.
        strategy: one of :data:`STRATEGIES`.
        seed: int, ``numpy.random.Generator`` or ``None``; same seed, same flips.
        num_classes: ``K``; default ``max(y) + 1``. Must be at least 2.
        **options: strategy options (:data:`STRATEGY_OPTIONS`); unknown keys are refused.

            - ``targeted``: ``source`` and ``target`` (required, distinct class indices).
            - ``margin``: ``side`` (``"nearest"``, default, or ``"farthest"``), ``one_way``
              (``True``) and the surrogate's ``C`` (inverse L2 strength, 1.0).
            - ``greedy``: ``rounds`` (10), ``candidates`` (0), ``validation_fraction`` (0.0),
              ``objective`` (``"error"`` or ``"ce"``) and the surrogate's ``C`` (1.0).
            - ``alfa``: ``max_iter`` (10 alternations) and the SVM's ``C`` (1.0).

    **Surrogates.** ``margin`` and ``greedy`` attack scikit-learn's ``LogisticRegression(C)``
    (multinomial; one logit for two classes) fit on z-scored features; ``alfa`` attacks
    ``SVC(kernel="linear", C)`` on z-scored features. They only flip between classes present in
    ``y`` (a surrogate cannot score a class it never saw).

    **Margin, exactly.** The surrogate is fit on ``(X, y)``. Example ``i`` with label ``y_i`` has
    runner-up class ``r_i = argmax_{j != y_i} s_ij`` (``s`` the logits) and distance
    ``d_i = (s_{i,y_i} - s_{i,r_i}) / ||w_{y_i} - w_{r_i}||`` to the boundary between the two
    (Euclidean, in z-scored feature space; negative when the surrogate misclassifies ``i``; for
    two classes the signed distance to the hyperplane). ``side="nearest"`` ranks the correctly
    classified examples by increasing ``d_i``, then the misclassified ones by increasing
    ``|d_i|`` (relabelling a misclassified example to its runner-up, usually the surrogate's own
    prediction, does little harm); ``"farthest"`` ranks by decreasing ``d_i`` (most confidently
    correct first). Ties are broken at random by ``seed``. With ``one_way=True`` flips across
    each class boundary go one way only: for the pair ``{a, b}`` only examples of the class with
    more runner-up candidates on the other (``a -> b`` if more ``a`` examples have runner-up
    ``b`` than the reverse; ties: from the smaller class index) come first in the ranking, the
    others only when the budget needs them. Flips in both directions across one boundary largely
    cancel: on scikit-learn's digits at a 20% budget, ``one_way=False`` "nearest" flips cost a
    logistic-regression victim less accuracy than random flips, ``one_way=True`` ones about 10
    points more. The ``budget`` best-ranked examples are flipped to their runner-up class.

    **Greedy, exactly.** With ``validation_fraction = f > 0`` a validation part (``floor(f·n_k)``
    examples of each class ``k``, at least one left out, chosen by ``seed``) is held out: its
    labels are never flipped and the attacker's objective is measured on it. With ``f = 0`` (the
    default; the attacker knows the clean labels of all examples) the objective is measured on
    every example, and every example may be flipped. The objective, on the *clean* labels, is
    the surrogate's mean soft error ``1 - p(y_true | x)`` (``objective="error"``, the default,
    a smooth stand-in for the 0-1 error) or its mean cross-entropy (``"ce"``). The surrogate is
    fit on the other examples with their current labels, warm-started from round to round. The
    budget is split into ``min(rounds, budget)`` nearly equal batches. Each round:

    1. fit the surrogate on the current labels;
    2. compute ``v = H⁻¹ g``: ``H`` is the Hessian of the surrogate's training objective
       ``Σ_i CE_i + ||W||² / (2C)`` (scikit-learn's; plus a 1e-6 ridge), ``g`` the gradient of
       the attacker's objective; by Jacobi-preconditioned conjugate gradients with exact
       Hessian-vector products (``H`` is never formed);
    3. score every not-yet-flipped candidate ``i`` and class ``c != y_i`` with the first-order
       influence estimate (Koh & Liang 2017) of the objective's change when ``i`` is relabelled
       ``c``: ``Δ_ic = (v_c - v_{y_i}) · [x_i, 1]``;
    4. flip the batch of candidates with the largest ``max_c Δ_ic``, each to its best ``c``.
       With ``candidates`` larger than the batch, the ``candidates`` best-scored flips are first
       re-scored exactly (the surrogate refit, warm-started, with that one flip, and the
       objective measured) and the batch is the best by that measure. It costs ``candidates``
       fits per round and was not consistently better than the influence ranking when we
       measured it, so it is off by default.

    A round costs one fit plus a few dozen Hessian-vector products (``O(N·d·K)`` each); the
    default 10 rounds take about a second on scikit-learn's digits (1,437 examples, 64 features).

    **ALFA, exactly.** Labels become ``s_i = ±1`` (the larger class value is ``+1``). A linear
    SVM trained on the clean labels gives ``f_0``; ``ψ`` are its hinge losses on both copies of
    every point (``max(0, 1 - s_i f_0(x_i))`` for the kept label, ``max(0, 1 + s_i f_0(x_i))``
    for the flipped one). Then, up to ``max_iter`` times:

    1. solve the LP (``scipy.optimize.linprog``, HiGHS) over relaxed ``q ∈ [0, 1]^{2N}``, one
       variable per copy, ``q_i + q_{N+i} = 1``, ``Σ_i q_{N+i} <= budget``, minimizing
       ``Σ q · (ξ - ψ)`` with ``ξ`` the hinge losses of the current tainted SVM on the two copies
       (the first LP uses seeded ``U[0, 1)`` values for ``ξ``, as ALFASVMLib does: at ``f = f_0``
       every cost would be 0);
    2. round: flip the ``budget`` points with the largest ``q_{N+i}`` (ties: the larger decrease
       of the LP objective, then random), so exactly ``budget`` labels flip;
    3. stop if the flip set equals the previous one, else retrain the SVM on the tainted labels.

    Returns:
        :class:`~smoothflip.noise.NoisyLabels`: ``labels`` ``[N]`` (flipped), ``true_labels``
        ``[N]``, ``flipped`` ``[N]`` bool with exactly ``budget`` True, the realized ``[K, K]``
        transition matrix and ``rate = budget / N``.

    Raises:
        ValueError: unknown ``strategy`` or option, a bad ``budget`` (non-positive or ``>= 1`` as
            a fraction, negative or beyond the eligible examples as a count), a binary-only
            strategy on multiclass labels, ``source`` / ``target`` not classes, ``X`` and ``y``
            of different lengths, non-finite ``X``, fewer than 2 classes.
        TypeError: ``budget`` neither an int nor a float.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(1)
        >>> X = rng.normal(size=(300, 4))
        >>> y = (X[:, 0] > 0).astype(int)
        >>> out = label_flip(X, y, budget=0.1, strategy="alfa", seed=0)
        >>> int(out.flipped.sum())
        30
        >>> out = label_flip(X, y, budget=5, strategy="targeted", source=1, target=0, seed=0)
        >>> out.counts[1, 0], out.counts[0, 1]
        (np.int64(5), np.int64(0))
    """
    strategy = check_choice("strategy", strategy, STRATEGIES)
    opts = _resolve_options(strategy, options)
    x, labels, k = _check_data(X, y, num_classes)
    rng = as_generator(seed)
    present = np.unique(labels)
    if strategy in BINARY_ONLY and present.size != 2:
        raise ValueError(
            f"{strategy} attacks binary classifiers; y has {present.size} classes "
            f"({_list_values(present)}) — use 'random', 'targeted', 'margin' or 'greedy' instead"
        )
    if strategy in ("margin", "greedy") and present.size < 2:
        raise ValueError(f"y has only 1 class ({int(present[0])}); the {strategy} attack needs at least 2")

    with _small_problem_threads(x):
        z = _dispatch(strategy, x, labels, k, budget, rng, opts)
    return _noisy_labels(labels, z, k)


def _dispatch(
    strategy: str,
    x: np.ndarray,
    labels: np.ndarray,
    k: int,
    budget: Any,
    rng: np.random.Generator,
    opts: dict[str, Any],
) -> np.ndarray:
    if strategy == "random":
        n_flip = _resolve_budget(budget, labels.size, what="examples")
        z = _random_flips(labels, n_flip, k, rng)
    elif strategy == "targeted":
        z = _targeted(labels, budget, k, rng, source=opts["source"], target=opts["target"])
    elif strategy == "margin":
        side = check_choice("side", opts["side"], _SIDES)
        n_flip = _resolve_budget(budget, labels.size, what="examples")
        z = _margin(
            x,
            labels,
            n_flip,
            rng,
            side=side,
            one_way=_check_bool("one_way", opts["one_way"]),
            c=_check_c(opts["C"]),
        )
    elif strategy == "greedy":
        z = _greedy(x, labels, budget, rng, opts)
    else:
        n_flip = _resolve_budget(budget, labels.size, what="examples")
        z = _alfa(x, labels, n_flip, rng, max_iter=opts["max_iter"], c=_check_c(opts["C"]))
    return z


# --------------------------------------------------------------------------------------------------
# checks and shared helpers
# --------------------------------------------------------------------------------------------------


def _resolve_options(strategy: str, options: Mapping[str, Any]) -> dict[str, Any]:
    allowed = STRATEGY_OPTIONS[strategy]
    unknown = [key for key in options if key not in allowed]
    if unknown:
        listed = ", ".join(allowed) if allowed else "none"
        raise ValueError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for strategy {strategy!r}; allowed: {listed}"
        )
    merged = {**allowed, **options}
    missing = [key for key, value in merged.items() if value is None]
    if missing:
        raise ValueError(f"strategy {strategy!r} needs option(s) {', '.join(missing)}")
    return merged


def _check_data(X: Any, y: Any, num_classes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """``(x [N, d] float64, y [N] int64, K)`` or raise naming the argument."""
    labels = np.asarray(y)
    if labels.ndim != 1:
        raise ValueError(f"y must be a 1-D array of class indices [N], got shape {labels.shape}")
    if labels.size == 0:
        raise ValueError("y must not be empty")
    if labels.dtype.kind not in "iu":
        raise ValueError(f"y must hold integer class indices, got dtype {labels.dtype}")
    if labels.min() < 0:
        raise ValueError(f"y must be >= 0, found {int(labels.min())}")
    labels = labels.astype(np.int64)
    if num_classes is None:
        num_classes = int(labels.max()) + 1
        if num_classes < 2:
            raise ValueError("y has only 1 class (0); label-flip attacks need at least 2 classes")
    k = check_int("num_classes", num_classes, low=2)
    if labels.max() >= k:
        raise ValueError(f"y must be < num_classes={k}, found {int(labels.max())}")
    return check_features(X, labels.size), labels, k


def _resolve_budget(budget: Any, n_eligible: int, *, what: str) -> int:
    """The number of flips: ``round(fraction * n_eligible)`` (half up) or the count itself."""
    if isinstance(budget, bool | np.bool_) or not isinstance(budget, Real):
        raise TypeError(
            f"budget must be a fraction in (0, 1) (float) or a count (int), got {budget!r} "
            f"({type(budget).__name__})"
        )
    if isinstance(budget, Integral):
        count = int(budget)
        if count < 0:
            raise ValueError(f"budget must be >= 0 as a count, got {count}")
        if count > n_eligible:
            raise ValueError(f"budget={count} flips exceeds the {n_eligible} {what} that can be flipped")
        return count
    fraction = float(budget)
    if not math.isfinite(fraction) or not 0.0 < fraction < 1.0:
        raise ValueError(
            f"budget must be in (0, 1) as a fraction, got {fraction!r} (pass an int for a number of flips)"
        )
    return math.floor(fraction * n_eligible + 0.5 + 1e-9)


@contextlib.contextmanager
def _small_problem_threads(x: np.ndarray) -> Iterator[None]:
    """One BLAS thread while attacking a small problem.

    The surrogate strategies make many small matrix products (``[N, d] @ [d, K]``); on small
    problems a multi-threaded BLAS spends more time synchronizing than computing, and on a busy
    machine it can be ten times slower than one thread.
    """
    if x.size > _SMALL_PROBLEM:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _check_c(value: Any) -> float:
    return check_range("C", value, low=0.0, low_open=True)


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


def _noisy_labels(y: np.ndarray, z: np.ndarray, k: int) -> NoisyLabels:
    flipped = z != y
    return NoisyLabels(
        labels=z,
        true_labels=y.copy(),
        flipped=flipped,
        transition_matrix=realized_transition_matrix(y, z, k),
        rate=float(flipped.mean()),
        num_classes=k,
    )


def _list_values(values: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(str(int(v)) for v in values[:limit])
    return shown + (f" and {values.size - limit} more" if values.size > limit else "")


def _top(scores: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of the ``count`` largest ``scores``, ties broken uniformly at random."""
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((rng.random(scores.size), -scores))
    return order[:count]


def _zscore(x: np.ndarray) -> np.ndarray:
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)


# --------------------------------------------------------------------------------------------------
# random and targeted
# --------------------------------------------------------------------------------------------------


def _random_flips(y: np.ndarray, n_flip: int, k: int, rng: np.random.Generator) -> np.ndarray:
    chosen = rng.choice(y.size, size=n_flip, replace=False)
    z = y.copy()
    z[chosen] = (y[chosen] + rng.integers(1, k, size=n_flip)) % k  # uniform over the other K - 1
    return z


def _targeted(
    y: np.ndarray, budget: Any, k: int, rng: np.random.Generator, *, source: Any, target: Any
) -> np.ndarray:
    for name, value in (("source", source), ("target", target)):
        if isinstance(value, bool | np.bool_) or not isinstance(value, Integral) or not 0 <= value < k:
            raise ValueError(f"{name} must be a class index in [0, {k}), got {value!r}")
    source, target = int(source), int(target)
    if source == target:
        raise ValueError(f"source and target must be different classes, both are {source}")
    members = np.flatnonzero(y == source)
    if members.size == 0:
        raise ValueError(f"source={source} has no examples in y; nothing to flip")
    n_flip = _resolve_budget(budget, members.size, what=f"examples of source class {source}")
    z = y.copy()
    z[rng.choice(members, size=n_flip, replace=False)] = target
    return z


# --------------------------------------------------------------------------------------------------
# logistic-regression surrogate
# --------------------------------------------------------------------------------------------------


class _Surrogate:
    """A scikit-learn logistic regression with its parameters as one ``[m, d + 1]`` score matrix.

    ``scores(x) = [x, 1] @ W.T`` gives one logit per class in ``classes``; for two classes
    scikit-learn fits a single logit, stored as ``W = [[0, ..., 0], [w, b]]``.
    """

    def __init__(self, *, c: float, max_iter: int = _SURROGATE_MAX_ITER) -> None:
        from sklearn.linear_model import LogisticRegression

        self.c = c
        self.model = LogisticRegression(C=c, max_iter=max_iter, warm_start=True)
        self.classes = np.zeros(0, dtype=np.int64)
        self.weights = np.zeros((0, 0))

    def fit(self, xs: np.ndarray, labels: np.ndarray) -> _Surrogate:
        from sklearn.exceptions import ConvergenceWarning

        classes = np.unique(labels)
        if not np.array_equal(classes, self.classes) and hasattr(self.model, "coef_"):
            self.model = self.model.__class__(**self.model.get_params())  # class set changed: cold start
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model.fit(xs, labels)
        self.classes = self.model.classes_.astype(np.int64)
        coef = np.hstack([self.model.coef_, self.model.intercept_[:, None]])
        self.weights = np.vstack([np.zeros_like(coef), coef]) if self.classes.size == 2 else coef
        return self

    def scores(self, xb: np.ndarray) -> np.ndarray:
        """``[n, m]`` logits of features with a bias column, ``xb`` ``[n, d + 1]``."""
        return xb @ self.weights.T

    def index(self, labels: np.ndarray) -> np.ndarray:
        """Column of each label in :attr:`classes` (``-1`` for a class the surrogate never saw)."""
        pos = np.searchsorted(self.classes, labels).clip(0, self.classes.size - 1)
        return np.where(self.classes[pos] == labels, pos, -1)


def _softmax(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _with_bias(x: np.ndarray) -> np.ndarray:
    return np.hstack([x, np.ones((x.shape[0], 1))])


# --------------------------------------------------------------------------------------------------
# margin
# --------------------------------------------------------------------------------------------------


def _margin(
    x: np.ndarray,
    y: np.ndarray,
    n_flip: int,
    rng: np.random.Generator,
    *,
    side: str,
    one_way: bool,
    c: float,
) -> np.ndarray:
    xb = _with_bias(_zscore(x))
    surrogate = _Surrogate(c=c).fit(xb[:, :-1], y)
    s = surrogate.scores(xb)
    own = surrogate.index(y)
    rows = np.arange(y.size)
    others = s.copy()
    others[rows, own] = -np.inf
    runner_up = others.argmax(axis=1)
    w = surrogate.weights[:, :-1]
    norm = np.linalg.norm(w[own] - w[runner_up], axis=1)
    dist = (s[rows, own] - s[rows, runner_up]) / np.maximum(norm, np.finfo(np.float64).tiny)
    if side == "nearest":  # correctly classified, closest first; then misclassified, least wrong first
        key = np.where(dist >= 0, -dist, dist - (np.abs(dist).max() + 1.0))
    else:
        key = dist
    order = _top(key, y.size, rng)
    if one_way:
        m = surrogate.classes.size
        pairs = np.zeros((m, m), dtype=np.int64)
        np.add.at(pairs, (own, runner_up), 1)
        forward = pairs[own, runner_up]
        backward = pairs[runner_up, own]
        allowed = (forward > backward) | ((forward == backward) & (own < runner_up))
        order = np.concatenate([order[allowed[order]], order[~allowed[order]]])  # stable: keeps the ranking
    chosen = order[:n_flip]
    z = y.copy()
    z[chosen] = surrogate.classes[runner_up[chosen]]
    return z


# --------------------------------------------------------------------------------------------------
# greedy (influence-guided rounds)
# --------------------------------------------------------------------------------------------------


def _greedy(x: np.ndarray, y: np.ndarray, budget: Any, rng: np.random.Generator, opts: dict) -> np.ndarray:
    rounds = check_int("rounds", opts["rounds"], low=1)
    n_candidates = check_int("candidates", opts["candidates"], low=0)
    frac = check_range("validation_fraction", opts["validation_fraction"], low=0.0, high=1.0, high_open=True)
    objective = check_choice("objective", opts["objective"], _OBJECTIVES)
    c = _check_c(opts["C"])

    n = y.size
    held = np.zeros(n, dtype=bool)
    if frac > 0:
        for cls in np.unique(y):
            members = np.flatnonzero(y == cls)
            take = min(math.floor(frac * members.size), members.size - 1)
            held[rng.choice(members, size=take, replace=False)] = True
    train = np.flatnonzero(~held)
    val = np.flatnonzero(held) if held.any() else np.arange(n)
    eligible = (
        "examples"
        if train.size == n
        else f"examples outside the validation part (validation_fraction={frac:g})"
    )
    if isinstance(budget, Integral) and not isinstance(budget, bool | np.bool_):
        n_flip = _resolve_budget(budget, train.size, what=eligible)
    else:
        n_flip = _resolve_budget(budget, n, what="examples")
        if n_flip > train.size:
            raise ValueError(
                f"budget={budget!r} means {n_flip} flips, more than the {train.size} {eligible}; "
                f"lower the budget or validation_fraction"
            )

    xb = _with_bias(_zscore(x))
    x_train, x_val, y_val = xb[train], xb[val], y[val]
    current = y.copy()
    flipped = np.zeros(n, dtype=bool)
    surrogate = _Surrogate(c=c)
    n_rounds = min(rounds, n_flip)
    for r in range(n_rounds):
        batch = n_flip // n_rounds + (r < n_flip % n_rounds)
        if np.unique(current[train]).size < 2:  # one class left: no surrogate to fit
            _flip_rest_at_random(y, current, train[~flipped[train]], n_flip - int(flipped.sum()), rng)
            break
        surrogate.fit(x_train[:, :-1], current[train])
        v = _influence_direction(surrogate, x_train, x_val, y_val, objective)
        cand = train[~flipped[train]]
        rows = np.arange(cand.size)
        gain = xb[cand] @ v.T  # [n_cand, m]: v_c · [x_i, 1]
        own = surrogate.index(y[cand])
        gain -= gain[rows, own][:, None]
        gain[rows, own] = -np.inf
        best_col = gain.argmax(axis=1)
        best_gain = gain[rows, best_col]
        if n_candidates > batch:
            pool = _top(best_gain, min(n_candidates, cand.size), rng)
            measured = np.array(
                [
                    _loss_after_flip(
                        surrogate,
                        x_train,
                        current[train],
                        int(np.searchsorted(train, cand[p])),
                        int(surrogate.classes[best_col[p]]),
                        x_val,
                        y_val,
                        objective,
                    )
                    for p in pool
                ]
            )
            pick = pool[_top(measured, batch, rng)]
        else:
            pick = _top(best_gain, batch, rng)
        current[cand[pick]] = surrogate.classes[best_col[pick]]
        flipped[cand[pick]] = True
    return current


def _flip_rest_at_random(
    y: np.ndarray, current: np.ndarray, candidates: np.ndarray, count: int, rng: np.random.Generator
) -> None:
    """Flip ``count`` of ``candidates`` in place, each to a uniformly chosen other class of ``y``."""
    classes = np.unique(y)
    pick = rng.choice(candidates, size=count, replace=False)
    pos = np.searchsorted(classes, y[pick])
    current[pick] = classes[(pos + rng.integers(1, classes.size, size=count)) % classes.size]


def _objective_weights(probs_true: np.ndarray, objective: str) -> np.ndarray:
    """Per-example factor turning the cross-entropy gradient into the objective's gradient.

    ``d CE / d s = p - e_y``; ``d (1 - p_y) / d s = p_y (p - e_y)``.
    """
    return probs_true if objective == "error" else np.ones_like(probs_true)


def _influence_direction(
    surrogate: _Surrogate, x_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, objective: str
) -> np.ndarray:
    """``v = H⁻¹ g`` as an ``[m, d + 1]`` matrix (zero row for the reference class when binary).

    ``H`` is the Hessian of ``Σ_i CE_i + ||W||² / (2C)`` at the surrogate's solution (plus a small
    ridge; scikit-learn leaves the intercept unpenalized) and ``g`` the gradient of the mean
    validation objective (clean labels), both in the surrogate's own parameterization. Solved by
    Jacobi-preconditioned conjugate gradients with exact Hessian-vector products.
    """
    from scipy.sparse.linalg import LinearOperator, cg

    m = surrogate.classes.size
    dim = x_train.shape[1]
    reg = np.full(dim, 1.0 / surrogate.c)
    reg[-1] = 0.0
    reg += _CG_DAMPING
    cols = surrogate.index(y_val)
    known = cols >= 0
    xv = x_val[known]
    count = max(int(known.sum()), 1)
    sq = x_train * x_train
    if m == 2:
        w = surrogate.weights[1]
        p = 1.0 / (1.0 + np.exp(-(x_train @ w)))
        curvature = p * (1.0 - p)
        p_val = 1.0 / (1.0 + np.exp(-(xv @ w)))
        is_one = cols[known] == 1
        factor = _objective_weights(np.where(is_one, p_val, 1.0 - p_val), objective)
        g = (factor * (p_val - is_one)) @ xv / count
        diag = curvature @ sq + reg

        def hvp(vec: np.ndarray) -> np.ndarray:
            return x_train.T @ (curvature * (x_train @ vec)) + reg * vec

        size = dim
    else:
        probs = _softmax(surrogate.scores(x_train))
        p_val = _softmax(surrogate.scores(xv))
        rows = np.arange(xv.shape[0])
        factor = _objective_weights(p_val[rows, cols[known]].copy(), objective)
        p_val[rows, cols[known]] -= 1.0
        g = ((factor[:, None] * p_val).T @ xv / count).ravel()
        diag = ((probs * (1.0 - probs)).T @ sq + reg).ravel()

        def hvp(vec: np.ndarray) -> np.ndarray:
            v = vec.reshape(m, dim)
            a = probs * (x_train @ v.T)
            b = a - probs * a.sum(axis=1, keepdims=True)
            return (b.T @ x_train + reg * v).ravel()

        size = m * dim
    op = LinearOperator((size, size), matvec=hvp, dtype=np.float64)
    jacobi = LinearOperator((size, size), matvec=lambda vec: vec / diag, dtype=np.float64)
    sol, _ = cg(op, g, rtol=1e-6, atol=0.0, maxiter=300, M=jacobi)
    return np.vstack([np.zeros(dim), sol]) if m == 2 else sol.reshape(m, dim)


def _validation_objective(
    surrogate: _Surrogate, x_val: np.ndarray, y_val: np.ndarray, objective: str
) -> float:
    probs = _softmax(surrogate.scores(x_val))
    cols = surrogate.index(y_val)
    ok = cols >= 0
    p_true = probs[np.flatnonzero(ok), cols[ok]]
    if objective == "error":
        return float(1.0 - p_true.mean())
    return float(-np.log(np.maximum(p_true, 1e-300)).mean())


def _loss_after_flip(
    surrogate: _Surrogate,
    x_train: np.ndarray,
    labels: np.ndarray,
    position: int,
    new_label: int,
    x_val: np.ndarray,
    y_val: np.ndarray,
    objective: str,
) -> float:
    """Validation objective after refitting the surrogate (warm-started) with one more flip."""
    trial = copy.deepcopy(surrogate)
    changed = labels.copy()
    changed[position] = new_label
    trial.fit(x_train[:, :-1], changed)
    return _validation_objective(trial, x_val, y_val, objective)


# --------------------------------------------------------------------------------------------------
# ALFA
# --------------------------------------------------------------------------------------------------


def _alfa(
    x: np.ndarray, y: np.ndarray, n_flip: int, rng: np.random.Generator, *, max_iter: Any, c: float
) -> np.ndarray:
    from scipy import sparse
    from scipy.optimize import linprog

    max_iter = check_int("max_iter", max_iter, low=1)
    classes = np.unique(y)
    n = y.size
    sign = np.where(y == classes[1], 1.0, -1.0)
    z = y.copy()
    if n_flip == 0:
        return z
    xs = _zscore(x)
    f0 = _svm_decision(xs, sign, c)
    psi = np.concatenate([np.maximum(0.0, 1.0 - sign * f0), np.maximum(0.0, 1.0 + sign * f0)])
    xi = rng.random(2 * n)  # first LP: random tainted losses (at f = f0 every cost would be 0)

    eye = sparse.identity(n, format="csr")
    a_eq = sparse.hstack([eye, eye], format="csr")  # keep copy + flipped copy = 1
    a_ub = sparse.hstack([sparse.csr_matrix((1, n)), sparse.csr_matrix(np.ones((1, n)))], format="csr")
    previous: np.ndarray | None = None
    flips = np.zeros(0, dtype=np.int64)
    for _ in range(max_iter):
        cost = xi - psi
        result = linprog(
            cost,
            A_ub=a_ub,
            b_ub=[n_flip],
            A_eq=a_eq,
            b_eq=np.ones(n),
            bounds=(0.0, 1.0),
            method="highs",
        )
        if result.status != 0:  # pragma: no cover - the LP is always feasible and bounded
            raise RuntimeError(f"alfa: the linear program failed: {result.message}")
        q_flip = result.x[n:]
        delta = cost[n:] - cost[:n]  # how much flipping point i lowers the objective (more negative)
        order = np.lexsort((rng.random(n), delta, -np.round(q_flip, 9)))
        flips = np.sort(order[:n_flip])
        if previous is not None and np.array_equal(flips, previous):
            break
        previous = flips
        tainted = sign.copy()
        tainted[flips] = -tainted[flips]
        if np.unique(tainted).size < 2:  # every point of one class flipped: nothing left to fit
            break
        f = _svm_decision(xs, tainted, c)
        xi = np.concatenate([np.maximum(0.0, 1.0 - sign * f), np.maximum(0.0, 1.0 + sign * f)])
    z[flips] = np.where(y[flips] == classes[1], classes[0], classes[1])
    return z


def _svm_decision(xs: np.ndarray, sign: np.ndarray, c: float) -> np.ndarray:
    """Decision values on ``xs`` of a linear SVM trained on ``(xs, sign)``."""
    from sklearn.svm import SVC

    return SVC(kernel="linear", C=c).fit(xs, sign).decision_function(xs)
