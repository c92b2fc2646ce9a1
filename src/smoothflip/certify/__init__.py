"""Provable robustness to label flipping: partition-aggregation certificates (numpy in, numpy out).

Train ``k`` base classifiers on ``k`` disjoint parts of the training set chosen **without looking at
the labels**, predict by vote, and the vote gap bounds how many training labels an adversary must
flip to change a prediction (Deep Partition Aggregation, Levine & Feizi, ICLR 2021; Finite
Aggregation, Wang, Levine & Feizi, ICML 2022). This module knows nothing of studies or training:

- :func:`partition` — a label-independent assignment of examples to learners: a salted content hash
  of each example's feature bytes mod ``k`` (``scheme="hash"``, DPA) or its lexicographic rank mod
  ``k`` (``scheme="sorted"``, SS-DPA; duplicates refused); ``d > 1`` gives Finite Aggregation's
  ``d`` overlapping buckets out of ``d*k`` learners. :func:`learner_indices` lists each learner's
  examples.
- :func:`certify_votes` — the DPA prediction (ties to the smaller class) and radius
  ``floor((n_c - max_{c'≠c}(n_{c'} + 1[c' < c])) / 2)`` per test point from ``[N, C]`` vote counts;
  :func:`certify_finite_aggregation` the Finite Aggregation radius from each learner's prediction
  (``d = 1`` gives DPA's). :func:`votes_from_predictions` counts votes (``-1`` abstains).
- :func:`certified_accuracy` (for one ``r`` or an array) and :func:`median_certified_radius`
  (defined as the largest ``r`` whose certified accuracy is at least 50%, ``-1`` when none is;
  DPA's code prints that value plus one).

**What the radius counts.** With a label-independent partition, flipping one training label
changes one learner's training set (one part; ``d`` learners with Finite Aggregation), so it moves
at most one vote: the radius is a number of **label flips**, valid for any flips whatever the
adversary knows. Under DPA's own threat model (inserting or deleting training examples) the same
radius bounds the **symmetric difference**: insertions plus deletions, each touching one part — but
only when every learner's training depends on its own part alone (the number of training steps,
normalization statistics and the partition of the *other* examples included). A label flip is a
deletion plus an insertion in the same part, so under a label-*dependent* partition it could move
two votes and count twice.

Example:
    >>> import numpy as np
    >>> from smoothflip import certify
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(200, 5))
    >>> parts = certify.partition(x, 10, salt=3)          # the labels play no part
    >>> [len(i) for i in certify.learner_indices(parts, 10)][:4]
    [9, 22, 28, 22]
    >>> votes = np.array([[7, 2, 1], [4, 4, 2], [1, 3, 6]])
    >>> cert = certify.certify_votes(votes, labels=[0, 1, 2])
    >>> cert.prediction.tolist(), cert.radius.tolist()
    ([0, 0, 2], [2, -1, 1])
    >>> certify.certified_accuracy(cert.radius, [0, 1, 2]).tolist()
    [0.6666666666666666, 0.6666666666666666, 0.3333333333333333]
    >>> certify.median_certified_radius(cert.radius)
    1
"""

from __future__ import annotations

from smoothflip.certify._partition import (
    SCHEMES,
    content_hash,
    fa_shifts,
    learner_indices,
    lexicographic_rank,
    partition,
)
from smoothflip.certify._votes import (
    ABSTAIN,
    Certificate,
    certified_accuracy,
    certify_finite_aggregation,
    certify_votes,
    check_radii,
    median_certified_radius,
    votes_from_predictions,
)

__all__ = [
    "ABSTAIN",
    "SCHEMES",
    "Certificate",
    "certified_accuracy",
    "certify_finite_aggregation",
    "certify_votes",
    "check_radii",
    "content_hash",
    "fa_shifts",
    "learner_indices",
    "lexicographic_rank",
    "median_certified_radius",
    "partition",
    "votes_from_predictions",
]
