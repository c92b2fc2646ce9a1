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

Layout: :mod:`~smoothflip.attacks._common` holds :data:`STRATEGIES`, :data:`STRATEGY_OPTIONS`
and the checks and helpers the strategies share; :mod:`~smoothflip.attacks._flip` the entry point
:func:`label_flip`; one private module per strategy family: ``_simple`` (random, targeted),
``_surrogate`` (the logistic-regression surrogate), ``_margin``, ``_greedy`` and ``_alfa``. Import
everything from :mod:`smoothflip.attacks` itself.

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

from smoothflip.attacks._common import BINARY_ONLY as BINARY_ONLY  # public beside __all__
from smoothflip.attacks._common import STRATEGIES, STRATEGY_OPTIONS
from smoothflip.attacks._flip import label_flip

__all__ = ["STRATEGIES", "STRATEGY_OPTIONS", "label_flip"]
