"""smoothflip.certify: partitions, vote certificates (DPA, Finite Aggregation), certified accuracy.

Checked exhaustively against brute force: every vote vector (k <= 7, C <= 4), Finite Aggregation
against every bucket attack on small ensembles, and end to end on tiny problems with a
deterministic base learner (every relabelling within the radius, re-partitioned and retrained).
"""

from __future__ import annotations

import itertools
import math
import re
from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smoothflip import certify

# --------------------------------------------------------------------------- brute force


def _tie_broken(votes) -> int:
    return int(np.argmax(votes))  # numpy's argmax takes the first maximum: ties to the smaller index


def _compositions(total: int, parts: int):
    for cut in itertools.combinations(range(total + parts - 1), parts - 1):
        edges = (-1, *cut, total + parts - 1)
        yield tuple(edges[i + 1] - edges[i] - 1 for i in range(parts))


def _fewest_changes(votes: tuple[int, ...]) -> int:
    """Breadth-first search over single-vote changes (one learner switches class) until the
    tie-broken prediction changes."""
    start = _tie_broken(votes)
    seen = {votes}
    queue = deque([(votes, 0)])
    while queue:
        v, steps = queue.popleft()
        if _tie_broken(v) != start:
            return steps
        for a in range(len(v)):
            if v[a] == 0:
                continue
            for b in range(len(v)):
                if a != b:
                    w = list(v)
                    w[a] -= 1
                    w[b] += 1
                    w = tuple(w)
                    if w not in seen:
                        seen.add(w)
                        queue.append((w, steps + 1))
    return math.inf  # a single class: nothing can change it


def test_vote_radius_is_the_fewest_single_vote_changes_minus_one_for_every_vote_vector():
    checked = 0
    for k in range(1, 8):
        for c in range(2, 5):
            vectors = list(_compositions(k, c))
            cert = certify.certify_votes(np.array(vectors))
            for v, pred, radius in zip(vectors, cert.prediction, cert.radius, strict=True):
                assert pred == _tie_broken(v)
                assert radius == _fewest_changes(v) - 1, (v, radius)
                assert radius <= k // 2
                checked += 1
    assert checked == sum(math.comb(k + c - 1, c - 1) for k in range(1, 8) for c in range(2, 5))


def _fa_fewest_buckets(preds: np.ndarray, num_classes: int, shifts: np.ndarray) -> int:
    """The fewest buckets whose learners, all set to one class, change the prediction."""
    learners = preds.size
    fed = (np.arange(learners)[:, None] + shifts[None, :]) % learners
    y = _tie_broken(certify.votes_from_predictions(preds[None], num_classes)[0])
    for t in range(learners + 1):
        for buckets in itertools.combinations(range(learners), t):
            touched = np.unique(fed[list(buckets)])
            for c in range(num_classes):
                if c == y:
                    continue
                changed = preds.copy()
                changed[touched] = c
                votes = certify.votes_from_predictions(changed[None], num_classes)[0]
                if _tie_broken(votes) != y:
                    return t
    return math.inf


@settings(max_examples=60, deadline=None)
@given(
    k=st.integers(1, 3),
    d=st.integers(1, 3),
    num_classes=st.integers(2, 3),
    salt=st.integers(0, 50),
    data=st.data(),
)
def test_finite_aggregation_is_sound_against_every_bucket_attack_and_exact_at_d_1(
    k, d, num_classes, salt, data
):
    learners = d * k
    preds = np.array(
        data.draw(st.lists(st.integers(-1, num_classes - 1), min_size=learners, max_size=learners))
    )
    shifts = certify.fa_shifts(k, d, salt=salt)
    cert = certify.certify_finite_aggregation(preds[None], num_classes=num_classes, k=k, d=d, salt=salt)
    fewest = _fa_fewest_buckets(preds, num_classes, shifts)
    assert cert.radius[0] <= fewest - 1  # sound: no attack on `radius` buckets changes the prediction
    assert cert.radius[0] <= k // 2
    if d == 1:
        assert cert.radius[0] == fewest - 1  # DPA is exact at the vote level


@settings(max_examples=200, deadline=None)
@given(
    k=st.integers(1, 40),
    num_classes=st.integers(2, 6),
    n=st.integers(1, 20),
    seed=st.integers(0, 2**32 - 1),
)
def test_finite_aggregation_with_d_1_equals_dpa(k, num_classes, n, seed):
    rng = np.random.default_rng(seed)
    preds = rng.integers(-1, num_classes, size=(n, k))
    labels = rng.integers(0, num_classes, size=n)
    fa = certify.certify_finite_aggregation(preds, num_classes=num_classes, k=k, d=1, labels=labels)
    dpa = certify.certify_votes(certify.votes_from_predictions(preds, num_classes), labels=labels)
    np.testing.assert_array_equal(fa.prediction, dpa.prediction)
    np.testing.assert_array_equal(fa.radius, dpa.radius)
    assert (dpa.radius <= k // 2).all()


@settings(max_examples=200, deadline=None)
@given(radius=st.lists(st.integers(-1, 30), min_size=1, max_size=40))
def test_certified_accuracy_never_increases_with_r_and_the_median_is_its_50_percent_point(radius):
    rs = np.arange(0, 33)
    acc = certify.certified_accuracy(radius, rs)
    assert (np.diff(acc) <= 0).all()
    assert acc[0] == np.mean(np.array(radius) >= 0)  # r = 0: the clean accuracy
    median = certify.median_certified_radius(radius)
    qualifying = [r for r in rs if acc[r] >= 0.5]
    assert median == (max(qualifying) if qualifying else -1)
    dpa_printed = int(np.sum(acc >= 0.5))  # what the DPA code prints as "median certified robustness"
    assert dpa_printed == median + 1


def test_certificates_mark_wrong_predictions_and_scalars_give_floats():
    cert = certify.certify_votes([[3, 1], [1, 3], [2, 2]], labels=[0, 0, 1])
    assert cert.prediction.tolist() == [0, 1, 0]
    assert cert.radius.tolist() == [1, -1, -1]
    assert certify.certify_votes([[2, 2]]).radius.tolist() == [0]  # a tie: class 0, not certified past 0
    assert isinstance(certify.certified_accuracy([1, 0], 1), float)


# --------------------------------------------------------------------------- partitions


def test_partitions_ignore_labels_follow_the_content_and_vary_with_the_salt():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    a = certify.partition(x, 7, salt=1)
    perm = rng.permutation(300)
    np.testing.assert_array_equal(certify.partition(x[perm], 7, salt=1), a[perm])  # content, not position
    assert not np.array_equal(certify.partition(x, 7, salt=2), a)
    assert set(a.tolist()) == set(range(7))
    sizes = [len(i) for i in certify.learner_indices(a, 7)]
    assert sum(sizes) == 300


def test_sorted_partitions_are_the_rank_mod_k_and_balanced():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(103, 3))
    rank = certify.lexicographic_rank(x)
    order = sorted(range(103), key=lambda i: tuple(x[i]))
    assert [order[r] for r in range(103)] == [int(np.flatnonzero(rank == r)[0]) for r in range(103)]
    parts = certify.partition(x, 10, scheme="sorted", salt=99)
    np.testing.assert_array_equal(parts, rank % 10)
    assert sorted({len(i) for i in certify.learner_indices(parts, 10)}) == [10, 11]


@pytest.mark.parametrize("scheme", ["hash", "sorted"])
def test_finite_aggregation_feeds_every_example_to_d_distinct_learners_of_d_buckets_each(scheme):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 3))
    k, d = 5, 3
    learners = certify.partition(x, k, d=d, scheme=scheme, salt=4)
    assert learners.shape == (500, d)
    assert all(len(set(row)) == d for row in learners.tolist())
    shifts = certify.fa_shifts(k, d, salt=4)
    np.testing.assert_array_equal(learners, (learners[:, :1] + shifts[None, :]) % (d * k))
    bucket = learners[:, 0]
    for learner, idx in enumerate(certify.learner_indices(learners, d * k)):
        assert set(bucket[idx].tolist()) <= {(learner - s) % (d * k) for s in shifts.tolist()}
    assert certify.partition(x, k, d=1, scheme=scheme, salt=4).shape == (500,)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: certify.partition(np.zeros((5, 2)) + np.arange(5)[:, None], 6), "more than the 5 training"),
        (lambda: certify.partition(np.arange(10.0)[:, None], 0), "k must be a whole number >= 1"),
        (lambda: certify.partition(np.arange(10.0)[:, None], 2.5), "k must be a whole number"),
        (lambda: certify.partition(np.array([[1.0], [2.0], [1.0]]), 2, scheme="sorted"), "examples 0 and 2"),
        (lambda: certify.partition(np.arange(12.0)[:, None], 12), "is empty"),
        (lambda: certify.partition(np.arange(12.0)[:, None], 3, scheme="rank"), "scheme must be one of"),
        (lambda: certify.partition(np.arange(12.0)[:, None], 3, d=0), "d must be a whole number >= 1"),
        (lambda: certify.certified_accuracy([1, 2], [-1]), "r must be whole numbers >= 0"),
        (lambda: certify.certified_accuracy([1, 2], [0.5]), "r must be whole numbers >= 0"),
        (lambda: certify.certified_accuracy([], 0), "at least one test point"),
        (lambda: certify.certify_votes([[1, -1]]), "non-negative"),
        (lambda: certify.certify_votes([[1], [2]]), "at least 2 classes"),
        (lambda: certify.certify_votes([[1, 0]], labels=[2]), "class indices in [0, 2)"),
        (lambda: certify.check_radii([1, -2]), "radii must be whole numbers >= 0"),
        (lambda: certify.check_radii([1.5]), "radii must be whole numbers >= 0"),
    ],
)
def test_bad_input_is_a_one_line_value_error(call, match):
    with pytest.raises(ValueError, match=re.escape(match)) as info:
        call()
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- end to end, exhaustive


def _one_nn(x_train, y_train, x_test):
    """A deterministic base learner: the label of the nearest training example (ties: lowest index)."""
    dist = ((x_test[:, None, :] - x_train[None, :, :]) ** 2).sum(-1)
    return y_train[np.argmin(dist, axis=1)]


def _ensemble(x, y, x_test, k, d, salt, num_classes, scheme="hash"):
    learners = certify.partition(x, k, d=d, salt=salt, scheme=scheme, allow_empty=True)
    preds = np.full((x_test.shape[0], d * k), certify.ABSTAIN)
    for learner, idx in enumerate(certify.learner_indices(learners, d * k)):
        if idx.size:
            preds[:, learner] = _one_nn(x[idx], y[idx], x_test)
    return certify.certify_finite_aggregation(preds, num_classes=num_classes, k=k, d=d, salt=salt)


def _relabellings(y, flips, num_classes):
    for where in itertools.combinations(range(y.size), flips):
        for new in itertools.product(range(num_classes - 1), repeat=flips):
            z = y.copy()
            for i, shift in zip(where, new, strict=True):
                z[i] = (y[i] + 1 + shift) % num_classes
            yield z


def _check_within_radius(x, y, x_test, k, d, num_classes, scheme="hash") -> int:
    """Retrain on every relabelling within the largest radius; return the largest radius."""
    base = _ensemble(x, y, x_test, k, d, 5, num_classes, scheme)
    top = int(base.radius.max())
    checked = 0
    for flips in range(1, top + 1):
        covered = base.radius >= flips
        for z in _relabellings(y, flips, num_classes):
            again = _ensemble(x, z, x_test, k, d, 5, num_classes, scheme)  # re-partitioned, retrained
            np.testing.assert_array_equal(again.prediction[covered], base.prediction[covered])
            checked += 1
    assert checked == sum(math.comb(y.size, f) * (num_classes - 1) ** f for f in range(1, top + 1))
    return top


@pytest.mark.parametrize("num_classes", [2, 3])
@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("d", [1, 2])
def test_every_relabelling_within_the_radius_retrained_keeps_every_certified_prediction(num_classes, k, d):
    """Three tiny clustered problems per setting (one label already wrong), hash partitions, 1-NN
    learners; some test point is certified at least once for every k >= 2."""
    tops = []
    for rep in range(3):
        rng = np.random.default_rng(1000 * rep + 100 * num_classes + 10 * k + d)
        n = 12 if d == 1 else 10
        y = rng.integers(0, num_classes, size=n)
        x = (3.0 * y + rng.normal(size=n))[:, None]
        y[0] = (y[0] + 1) % num_classes
        x_test = np.linspace(-2.0, 3.0 * num_classes - 1.0, 15)[:, None]
        tops.append(_check_within_radius(x, y, x_test, k, d, num_classes))
    assert max(tops) <= k // 2
    assert max(tops) >= (1 if k >= 2 else 0)


@pytest.mark.parametrize("num_classes", [2, 3])
def test_relabellings_up_to_radius_two_with_sorted_parts_holding_every_class(num_classes):
    """k = 4 sorted parts of 12 examples, each holding both ends of the range: the outer test points
    are certified at radius 2 = k / 2, and every relabelling of up to 2 labels keeps them."""
    x = np.concatenate([np.arange(6.0), 10.0 + np.arange(6.0)])[:, None]
    y = np.repeat([0, num_classes - 1], 6)
    x_test = np.array([[-5.0], [2.5], [7.5], [20.0]])
    assert _check_within_radius(x, y, x_test, 4, 1, num_classes, scheme="sorted") == 2


@pytest.mark.parametrize("num_classes", [2, 3])
def test_singleton_partitions_are_tight_some_radius_plus_one_flips_change_the_prediction(num_classes):
    rng = np.random.default_rng(num_classes)
    for _ in range(5):
        n = 9
        y = rng.integers(0, num_classes, size=n)
        x = np.arange(n, dtype=float)[:, None]  # distinct examples: k = n sorted parts are singletons

        def predict(labels, x=x, n=n):  # each learner predicts its one label, for any test point
            parts = certify.partition(x, n, scheme="sorted")
            preds = np.empty((1, n), dtype=np.int64)
            for learner, idx in enumerate(certify.learner_indices(parts, n)):
                preds[0, learner] = labels[idx[0]]
            return certify.certify_votes(certify.votes_from_predictions(preds, num_classes))

        base = predict(y)
        r = int(base.radius[0])
        for flips in range(1, r + 1):
            assert all(
                predict(z).prediction[0] == base.prediction[0] for z in _relabellings(y, flips, num_classes)
            )
        assert any(
            predict(z).prediction[0] != base.prediction[0] for z in _relabellings(y, r + 1, num_classes)
        )
