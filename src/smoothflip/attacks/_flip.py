"""The attack entry point :func:`label_flip`: check the inputs, then dispatch to the strategy.

It validates the strategy, its options, the data and the budget, runs the strategy (on one BLAS
thread for small problems) and wraps the flipped labels in a
:class:`~smoothflip.noise.NoisyLabels`. Its docstring states exactly what each strategy computes.
Re-exported by :mod:`smoothflip.attacks`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from smoothflip._validation import SeedLike, as_generator, check_choice
from smoothflip.attacks._alfa import _alfa
from smoothflip.attacks._common import (
    BINARY_ONLY,
    STRATEGIES,
    _check_bool,
    _check_c,
    _check_data,
    _list_values,
    _noisy_labels,
    _resolve_budget,
    _resolve_options,
    _small_problem_threads,
)
from smoothflip.attacks._greedy import _greedy
from smoothflip.attacks._margin import _SIDES, _margin
from smoothflip.attacks._simple import _random_flips, _targeted
from smoothflip.noise import NoisyLabels


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
