"""Tests for smoothflip.noise: realized rates, realized matrices, exact modes, seeding, errors."""

from __future__ import annotations

import dataclasses
import doctest
import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from smoothflip import noise

K = 10
HYP = settings(max_examples=50, deadline=None)


def _labels(n: int = 20_000, k: int = K, seed: int = 123) -> np.ndarray:
    """Imbalanced labels covering every class."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(k, 5.0))
    return rng.choice(k, size=n, p=p)


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5 + 1e-9)


def _check_consistent(out: noise.NoisyLabels, y: np.ndarray, k: int) -> None:
    """Invariants every NoisyLabels must satisfy."""
    y = np.asarray(y)
    assert out.labels.dtype == np.int64
    assert out.labels.shape == y.shape
    assert out.true_labels.dtype == np.int64
    np.testing.assert_array_equal(out.true_labels, y)
    np.testing.assert_array_equal(out.flipped, out.labels != y)
    assert out.flipped.dtype == bool
    assert out.num_classes == k
    assert ((out.labels >= 0) & (out.labels < k)).all()
    assert out.rate == pytest.approx(out.flipped.mean(), abs=0)
    t = out.transition_matrix
    assert t.shape == (k, k)
    np.testing.assert_allclose(t.sum(axis=1), 1.0, atol=1e-12)
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (y, out.labels), 1)
    np.testing.assert_array_equal(out.counts, counts)
    n = counts.sum(axis=1)
    for i in range(k):
        expected = counts[i] / n[i] if n[i] else np.eye(k)[i]
        np.testing.assert_allclose(t[i], expected, atol=1e-15)
    np.testing.assert_allclose(out.per_class_rate, 1 - np.diag(t))


def _assert_near(realized: float, expected: float, n: int) -> None:
    se = math.sqrt(max(expected * (1 - expected), 1e-12) / n)
    assert abs(realized - expected) <= 5 * se, (realized, expected, se)


# --------------------------------------------------------------------------------------------------
# realized rates for every model and mode
# --------------------------------------------------------------------------------------------------


def _source_share(y: np.ndarray, mapping: dict[int, int]) -> float:
    return float(np.isin(y, list(mapping)).mean())


RANDOM_CASES = {
    "symmetric-exclude": (lambda y, s: noise.symmetric(y, 0.3, K, seed=s), lambda y: 0.3),
    "symmetric-include": (
        lambda y, s: noise.symmetric(y, 0.3, K, mode="include_true", seed=s),
        lambda y: 0.3 * (K - 1) / K,
    ),
    "pair": (lambda y, s: noise.pair_flip(y, 0.45, K, seed=s), lambda y: 0.45),
    "asym-cifar10": (
        lambda y, s: noise.asymmetric(y, 0.4, "cifar10", seed=s),
        lambda y: 0.4 * _source_share(y, dict(noise.ASYMMETRIC_PRESETS["cifar10"])),
    ),
    "asym-mnist": (
        lambda y, s: noise.asymmetric(y, 0.2, "mnist", seed=s),
        lambda y: 0.2 * _source_share(y, dict(noise.ASYMMETRIC_PRESETS["mnist"])),
    ),
    "matrix": (
        lambda y, s: noise.from_transition_matrix(
            y, noise.random_transition_matrix(K, rate=0.25, seed=7), seed=s
        ),
        lambda y: float(np.mean(1 - np.diag(noise.random_transition_matrix(K, rate=0.25, seed=7))[y])),
    ),
}


@pytest.mark.parametrize("case", list(RANDOM_CASES))
def test_random_modes_realize_requested_rate(case: str) -> None:
    make, expected = RANDOM_CASES[case]
    y = _labels()
    out = make(y, 0)
    _check_consistent(out, y, K)
    _assert_near(out.rate, expected(y), y.size)


EXACT_CASES = {
    "symmetric": (lambda y, s: noise.symmetric(y, 0.3, K, mode="exact", seed=s), None),
    "pair": (lambda y, s: noise.pair_flip(y, 0.45, K, mode="exact", seed=s), None),
    "asym": (
        lambda y, s: noise.asymmetric(y, 0.4, "cifar10", mode="exact", seed=s),
        dict(noise.ASYMMETRIC_PRESETS["cifar10"]),
    ),
}


@pytest.mark.parametrize("case", list(EXACT_CASES))
def test_exact_modes_realize_exact_count(case: str) -> None:
    make, mapping = EXACT_CASES[case]
    rate = {"symmetric": 0.3, "pair": 0.45, "asym": 0.4}[case]
    y = _labels(n=20_003)
    out = make(y, 0)
    _check_consistent(out, y, K)
    eligible = np.isin(y, list(mapping)) if mapping else np.ones(y.size, bool)
    assert out.flipped.sum() == _round_half_up(rate * eligible.sum())
    assert out.rate == out.flipped.sum() / y.size


@given(
    counts=st.lists(st.integers(0, 40), min_size=2, max_size=8).filter(lambda c: sum(c) > 0),
    rate=st.floats(0.0, 0.99),
    seed=st.integers(0, 2**16),
    model=st.sampled_from(["symmetric", "pair", "asym"]),
)
@HYP
def test_exact_apportioning_property(counts: list[int], rate: float, seed: int, model: str) -> None:
    k = len(counts)
    y = np.repeat(np.arange(k), counts)
    if model == "symmetric":
        out = noise.symmetric(y, rate, k, mode="exact", seed=seed)
        eligible = np.ones(k, bool)
    elif model == "pair":
        out = noise.pair_flip(y, rate, k, mode="exact", seed=seed)
        eligible = np.ones(k, bool)
    else:
        mapping = {0: 1, 1: 0} if k > 2 else {0: 1}
        out = noise.asymmetric(y, rate, mapping, num_classes=k, mode="exact", seed=seed)
        eligible = np.isin(np.arange(k), list(mapping))
    _check_consistent(out, y, k)
    n = np.asarray(counts)
    per_class = np.bincount(y[out.flipped], minlength=k)
    quota = rate * n * eligible
    assert (per_class >= np.floor(quota - 1e-9)).all()
    assert (per_class <= np.ceil(quota + 1e-9)).all()
    assert per_class.sum() == _round_half_up(rate * n[eligible].sum())


@given(
    counts=st.lists(st.integers(0, 60), min_size=2, max_size=6).filter(lambda c: sum(c) > 0),
    seed=st.integers(0, 2**16),
    sparsity=st.floats(0.0, 1.0),
)
@HYP
def test_matrix_exact_cells_are_floor_or_ceil(counts: list[int], seed: int, sparsity: float) -> None:
    k = len(counts)
    t = noise.random_transition_matrix(k, rate=0.4, sparsity=sparsity, seed=seed)
    y = np.repeat(np.arange(k), counts)
    out = noise.from_transition_matrix(y, t, mode="exact", seed=seed)
    _check_consistent(out, y, k)
    quota = np.asarray(counts)[:, None] * t
    assert (out.counts >= np.floor(quota - 1e-9)).all()
    assert (out.counts <= np.ceil(quota + 1e-9)).all()
    assert (out.counts[t == 0] == 0).all()
    np.testing.assert_array_equal(out.counts.sum(axis=1), counts)


def test_matrix_exact_small_example_is_exact() -> None:
    t = np.array([[0.5, 0.25, 0.25], [0.0, 1.0, 0.0], [0.1, 0.0, 0.9]])
    y = np.repeat([0, 1, 2], [8, 5, 10])
    out = noise.from_transition_matrix(y, t, mode="exact", seed=3)
    np.testing.assert_array_equal(out.counts, [[4, 2, 2], [0, 5, 0], [1, 0, 9]])
    np.testing.assert_allclose(out.transition_matrix, t)


def test_matrix_random_realizes_each_cell() -> None:
    t = np.array([[0.6, 0.3, 0.1, 0.0], [0.0, 0.8, 0.0, 0.2], [0.25, 0.25, 0.25, 0.25], [0, 0, 0, 1.0]])
    y = np.repeat(np.arange(4), 10_000)
    out = noise.from_transition_matrix(y, t, seed=5)
    _check_consistent(out, y, 4)
    se = np.sqrt(t * (1 - t) / 10_000)
    assert (np.abs(out.transition_matrix - t) <= 5 * se + 1e-12).all()
    assert (out.counts[t == 0] == 0).all()


def test_include_true_realizes_rate_times_k_minus_one_over_k() -> None:
    y = _labels(n=50_000)
    out = noise.symmetric(y, 0.5, K, mode="include_true", seed=1)
    _assert_near(out.rate, 0.45, y.size)
    # off-diagonal mass rate/K each, diagonal 1 - rate + rate/K
    assert np.mean(np.diag(out.transition_matrix)) == pytest.approx(0.55, abs=0.02)


def test_exclude_true_targets_are_uniform_over_other_classes() -> None:
    y = np.zeros(30_000, dtype=np.int64)
    out = noise.symmetric(y, 0.5, 6, seed=2)
    flipped_to = np.bincount(out.labels[out.flipped], minlength=6)
    assert flipped_to[0] == 0
    assert stats.chisquare(flipped_to[1:]).pvalue > 1e-4
    _assert_near(out.rate, 0.5, y.size)


def test_rate_zero_is_identity_everywhere() -> None:
    y = _labels(n=2_000)
    outs = [
        noise.symmetric(y, 0.0, K, seed=0),
        noise.symmetric(y, 0.0, K, mode="include_true", seed=0),
        noise.symmetric(y, 0.0, K, mode="exact", seed=0),
        noise.pair_flip(y, 0.0, K, mode="exact", seed=0),
        noise.asymmetric(y, 0.0, "cifar10", seed=0),
        noise.from_transition_matrix(y, np.eye(K), seed=0),
        noise.instance_dependent(np.ones((y.size, 3)), y, rate=0.0, seed=0),
    ]
    for out in outs:
        assert out.rate == 0.0
        np.testing.assert_array_equal(out.labels, y)
        np.testing.assert_array_equal(out.transition_matrix, np.eye(K))


def test_absent_class_gets_identity_row() -> None:
    y = np.array([0, 0, 1, 1, 3, 3] * 50)
    out = noise.symmetric(y, 0.5, 5, seed=0)
    np.testing.assert_array_equal(out.transition_matrix[2], np.eye(5)[2])
    np.testing.assert_array_equal(out.transition_matrix[4], np.eye(5)[4])
    assert out.counts[2].sum() == 0
    assert out.per_class_rate[2] == 0.0


def test_realized_transition_matrix_function() -> None:
    t = noise.realized_transition_matrix([0, 0, 1, 1], [0, 1, 1, 1], 3)
    np.testing.assert_array_equal(t, [[0.5, 0.5, 0], [0, 1, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match="noisy_labels"):
        noise.realized_transition_matrix([0, 1], [0, 1, 1], 3)


# --------------------------------------------------------------------------------------------------
# pair / asymmetric structure
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["random", "exact"])
def test_pair_flip_goes_only_to_next_class(mode: str) -> None:
    y = _labels(n=5_000)
    out = noise.pair_flip(y, 0.45, K, mode=mode, seed=0)
    np.testing.assert_array_equal(out.labels[out.flipped], (y[out.flipped] + 1) % K)
    allowed = np.eye(K, dtype=bool) | np.roll(np.eye(K, dtype=bool), 1, axis=1)
    assert (out.counts[~allowed] == 0).all()


def test_presets_are_patrini_maps() -> None:
    assert dict(noise.ASYMMETRIC_PRESETS["mnist"]) == {2: 7, 3: 8, 5: 6, 6: 5, 7: 1}
    assert dict(noise.ASYMMETRIC_PRESETS["cifar10"]) == {9: 1, 2: 0, 3: 5, 5: 3, 4: 7}


@pytest.mark.parametrize("preset", ["mnist", "cifar10"])
@pytest.mark.parametrize("mode", ["random", "exact"])
def test_asymmetric_flips_only_along_the_map(preset: str, mode: str) -> None:
    mapping = dict(noise.ASYMMETRIC_PRESETS[preset])
    y = _labels(n=10_000)
    out = noise.asymmetric(y, 0.45, preset, mode=mode, seed=0)
    _check_consistent(out, y, K)
    allowed = np.eye(K, dtype=bool)
    for s, t in mapping.items():
        allowed[s, t] = True
    assert (out.counts[~allowed] == 0).all()
    for c in set(range(K)) - set(mapping):
        np.testing.assert_array_equal(out.transition_matrix[c], np.eye(K)[c])


def test_asymmetric_decides_once_per_example_no_double_flip() -> None:
    # cat<->dog at 90%: with ELR's in-place loop most cats would be flipped back.
    y = np.repeat([3, 5, 2, 7], 5_000)
    out = noise.asymmetric(y, 0.9, "cifar10", seed=0)
    _assert_near(out.transition_matrix[3, 5], 0.9, 5_000)
    _assert_near(out.transition_matrix[5, 3], 0.9, 5_000)
    # MNIST chain 2->7->1: a true 2 only ever ends as 2 or 7
    out = noise.asymmetric(y, 0.9, "mnist", seed=0)
    assert out.counts[2, 1] == 0
    _assert_near(out.transition_matrix[2, 7], 0.9, 5_000)


def test_asymmetric_custom_mapping_and_inferred_num_classes() -> None:
    y = np.repeat([0, 1, 2], 1_000)
    out = noise.asymmetric(y, 0.3, {0: 4}, seed=0)
    assert out.num_classes == 5
    _assert_near(out.rate, 0.1, y.size)
    assert set(np.unique(out.labels[out.flipped])) == {4}


# --------------------------------------------------------------------------------------------------
# random_transition_matrix
# --------------------------------------------------------------------------------------------------


@given(
    k=st.integers(2, 30),
    rate=st.one_of(st.just(0.0), st.floats(1e-12, 0.999)),  # (subnormal rates underflow off-diagonals)
    sparsity=st.floats(0.0, 1.0),
    row_spread=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
@HYP
def test_random_transition_matrix_properties(
    k: int, rate: float, sparsity: float, row_spread: float, seed: int
) -> None:
    t = noise.random_transition_matrix(k, rate=rate, sparsity=sparsity, row_spread=row_spread, seed=seed)
    assert t.shape == (k, k)
    assert (t >= 0).all()
    np.testing.assert_allclose(t.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    row_rate = 1 - np.diag(t)
    assert abs(row_rate.mean() - rate) <= 1e-12
    assert (np.diag(t) > 0).all()
    if rate == 0:
        np.testing.assert_array_equal(t, np.eye(k))
        return
    off = ~np.eye(k, dtype=bool)
    assert (row_rate <= min(1.0, 2 * rate) + 1e-12).all()
    assert (row_rate >= max(0.0, 2 * rate - 1) - 1e-12).all()
    zeros = (t[off] == 0).sum()
    assert zeros == min(_round_half_up(sparsity * k * (k - 1)), k * (k - 2))
    per_row_nonzero = ((t > 0) & off).sum(axis=1)
    assert (per_row_nonzero >= 1).all()
    assert per_row_nonzero.max() - per_row_nonzero.min() <= 1  # zeros spread evenly over rows
    if row_spread == 0:
        np.testing.assert_allclose(row_rate, rate, atol=1e-12)


def test_random_transition_matrix_seeding_and_variety() -> None:
    a = noise.random_transition_matrix(8, rate=0.3, seed=1)
    np.testing.assert_array_equal(a, noise.random_transition_matrix(8, rate=0.3, seed=1))
    assert not np.array_equal(a, noise.random_transition_matrix(8, rate=0.3, seed=2))
    assert np.ptp(1 - np.diag(a)) > 0.01  # per-row rates really vary


def test_random_matrix_noise_does_not_underflip_with_many_classes() -> None:
    # cleanlab #977: K=120, N=20k, "20%" gave ~4%. Here the realized rate is ~20%.
    t = noise.random_transition_matrix(120, rate=0.2, seed=0)
    y = np.random.default_rng(0).integers(0, 120, 20_000)
    out = noise.from_transition_matrix(y, t, mode="exact", seed=0)
    expected = float(np.mean(1 - np.diag(t)[y]))
    assert abs(out.rate - expected) < 0.01
    assert abs(out.rate - 0.2) < 0.02


# --------------------------------------------------------------------------------------------------
# instance_dependent
# --------------------------------------------------------------------------------------------------


def _features(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d))


@pytest.mark.parametrize("rate", [0.02, 0.05, 0.2, 0.4, 0.9])
def test_instance_dependent_realized_rate_is_the_request(rate: float) -> None:
    n = 20_000
    y = _labels(n=n)
    out = noise.instance_dependent(_features(n), y, rate=rate, seed=0)
    _check_consistent(out, y, K)
    _assert_near(out.rate, rate, n)
    assert (out.labels[out.flipped] != y[out.flipped]).all()


@pytest.mark.parametrize("rate", [0.02, 0.05, 0.2, 0.4])
def test_instance_dependent_without_matching_is_xia_truncated_normal_mean(rate: float) -> None:
    # Xia et al.'s sampling: TruncNormal(rate, 0.1) on [0, 1]; at rate=0.05 its mean is about 0.10.
    n = 20_000
    y = _labels(n=n)
    out = noise.instance_dependent(_features(n), y, rate=rate, match_rate=False, seed=0)
    mean = stats.truncnorm.mean((0 - rate) / 0.1, (1 - rate) / 0.1, loc=rate, scale=0.1)
    _assert_near(out.rate, mean, n)
    if rate <= 0.05:
        assert out.rate > 1.7 * rate  # the reason match_rate exists


def test_instance_dependent_depends_on_features() -> None:
    n = 3_000
    y = _labels(n=n)
    a = noise.instance_dependent(_features(n, seed=1), y, rate=0.4, seed=0)
    b = noise.instance_dependent(_features(n, seed=2), y, rate=0.4, seed=0)
    assert not np.array_equal(a.labels, b.labels)
    # with normalization, the scale of the features does not matter
    c = noise.instance_dependent(_features(n, seed=1) * 1e3, y, rate=0.4, seed=0)
    np.testing.assert_array_equal(a.labels, c.labels)


def test_instance_dependent_targets_depend_on_the_example() -> None:
    # Identical examples share the flip distribution; the targets are not uniform over classes.
    n = 20_000
    x = np.tile(_features(1, d=8), (n, 1))
    y = np.zeros(n, dtype=np.int64)
    out = noise.instance_dependent(x, y, rate=0.5, rate_std=0.0, seed=0)
    _assert_near(out.rate, 0.5, n)
    to = np.bincount(out.labels[out.flipped], minlength=K)[1:]
    assert stats.chisquare(to).pvalue < 1e-6


def test_instance_dependent_flattens_features_and_infers_k() -> None:
    x = np.random.default_rng(0).normal(size=(500, 2, 3, 4))
    y = np.random.default_rng(1).integers(0, 4, 500)
    out = noise.instance_dependent(x, y, rate=0.3, seed=0)
    assert out.num_classes == int(y.max()) + 1
    np.testing.assert_array_equal(
        out.labels, noise.instance_dependent(x.reshape(500, -1), y, rate=0.3, seed=0).labels
    )


# --------------------------------------------------------------------------------------------------
# seeding
# --------------------------------------------------------------------------------------------------


def _all_calls(seed: int | None) -> list[np.ndarray]:
    y = _labels(n=3_000)
    x = _features(3_000, d=5)
    t = noise.random_transition_matrix(K, rate=0.3, sparsity=0.3, seed=seed)
    return [
        noise.symmetric(y, 0.3, K, seed=seed).labels,
        noise.symmetric(y, 0.3, K, mode="include_true", seed=seed).labels,
        noise.symmetric(y, 0.3, K, mode="exact", seed=seed).labels,
        noise.pair_flip(y, 0.3, K, seed=seed).labels,
        noise.pair_flip(y, 0.3, K, mode="exact", seed=seed).labels,
        noise.asymmetric(y, 0.3, "cifar10", seed=seed).labels,
        noise.asymmetric(y, 0.3, "mnist", mode="exact", seed=seed).labels,
        noise.from_transition_matrix(y, t, seed=seed).labels,
        noise.from_transition_matrix(y, t, mode="exact", seed=seed).labels,
        noise.instance_dependent(x, y, rate=0.3, seed=seed).labels,
        t,
    ]


def test_same_seed_same_output_different_seed_differs() -> None:
    a, b, c = _all_calls(11), _all_calls(11), _all_calls(12)
    for x, y_, z in zip(a, b, c, strict=True):
        np.testing.assert_array_equal(x, y_)
        assert not np.array_equal(x, z)


def test_generator_seed_is_accepted_and_advanced() -> None:
    y = _labels(n=1_000)
    g = np.random.default_rng(5)
    first = noise.symmetric(y, 0.3, K, seed=g).labels
    second = noise.symmetric(y, 0.3, K, seed=g).labels
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, noise.symmetric(y, 0.3, K, seed=np.random.default_rng(5)).labels)
    assert noise.symmetric(y, 0.3, K, seed=None).labels.shape == y.shape


def test_global_numpy_rng_is_untouched() -> None:
    np.random.seed(2024)  # noqa: NPY002 - the legacy global RNG is what must stay untouched
    before = np.random.get_state()  # noqa: NPY002
    _all_calls(3)
    _all_calls(None)
    after = np.random.get_state()  # noqa: NPY002
    np.testing.assert_array_equal(before[1], after[1])
    assert before[2:] == after[2:]


# --------------------------------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------------------------------


def test_accepts_lists_and_small_int_dtypes_and_copies_input() -> None:
    y_list = [0, 1, 2, 3] * 25
    out = noise.symmetric(y_list, 0.5, 4, seed=0)
    assert out.labels.dtype == np.int64
    y8 = np.array(y_list, dtype=np.uint8)
    np.testing.assert_array_equal(noise.symmetric(y8, 0.5, 4, seed=0).labels, out.labels)
    y = np.array(y_list)
    res = noise.symmetric(y, 0.5, 4, seed=0)
    res.true_labels[0] = 3
    assert y[0] == 0


def test_noisy_labels_is_frozen_and_has_short_repr() -> None:
    out = noise.symmetric(np.arange(4).repeat(5), 0.5, 4, mode="exact", seed=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.rate = 0.1  # type: ignore[misc]
    assert repr(out) == "NoisyLabels(n=20, num_classes=4, rate=0.5, flipped=10)"
    assert len(out) == 20


# --------------------------------------------------------------------------------------------------
# cleanlab interop
# --------------------------------------------------------------------------------------------------


def test_cleanlab_converters_round_trip() -> None:
    t = noise.random_transition_matrix(6, rate=0.4, seed=0)
    m = noise.to_cleanlab(t)
    np.testing.assert_allclose(m.sum(axis=0), 1.0)
    np.testing.assert_array_equal(m, t.T)
    np.testing.assert_array_equal(noise.from_cleanlab(m), t)


def test_cleanlab_generated_matrix_converts_to_row_stochastic() -> None:
    gen = pytest.importorskip("cleanlab.benchmarking.noise_generation")
    state = np.random.get_state()  # noqa: NPY002 - cleanlab uses the global RNG; restore it
    try:
        py = np.full(5, 0.2)
        m = gen.generate_noise_matrix_from_trace(5, 3.5, py=py, valid_noise_matrix=True, seed=0)
        t = noise.from_cleanlab(m)
        np.testing.assert_allclose(t.sum(axis=1), 1.0, atol=1e-9)
        assert np.trace(t) == pytest.approx(3.5)
        # Direction check: cleanlab's sampler with to_cleanlab(pair-flip T) flips i -> i+1.
        pair = np.eye(5) * 0.6 + np.roll(np.eye(5), 1, axis=1) * 0.4
        y = np.repeat(np.arange(5), 200)
        np.random.seed(0)  # noqa: NPY002
        z = gen.generate_noisy_labels(y, noise.to_cleanlab(pair))
        moved = z != y
        assert moved.any()
        np.testing.assert_array_equal(z[moved], (y[moved] + 1) % 5)
    finally:
        np.random.set_state(state)  # noqa: NPY002


# --------------------------------------------------------------------------------------------------
# errors name the argument
# --------------------------------------------------------------------------------------------------

_Y = np.array([0, 1, 2, 3] * 5)
_X = np.ones((20, 3))

ERROR_CASES = [
    # rate
    (lambda: noise.symmetric(_Y, -0.1, 4), "rate"),
    (lambda: noise.symmetric(_Y, 1.0, 4), "rate"),
    (lambda: noise.pair_flip(_Y, 1.5, 4), "rate"),
    (lambda: noise.asymmetric(_Y, 1.0, {0: 1}), "rate"),
    (lambda: noise.instance_dependent(_X, _Y, rate=1.0), "rate"),
    (lambda: noise.random_transition_matrix(4, rate=1.0), "rate"),
    (lambda: noise.instance_dependent(_X, _Y, rate=0.2, rate_std=-1.0), "rate_std"),
    # labels
    (lambda: noise.symmetric(np.zeros((4, 5), dtype=int), 0.1, 4), "labels"),
    (lambda: noise.symmetric(_Y.astype(float), 0.1, 4), "labels"),
    (lambda: noise.symmetric(np.array([True, False]), 0.1, 4), "labels"),
    (lambda: noise.symmetric(_Y, 0.1, 3), "labels"),
    (lambda: noise.symmetric(_Y - 1, 0.1, 4), "labels"),
    (lambda: noise.symmetric([], 0.1, 4), "labels"),
    (lambda: noise.pair_flip(_Y, 0.1, 2), "labels"),
    (lambda: noise.from_transition_matrix(_Y, np.eye(3)), "labels"),
    (lambda: noise.asymmetric(np.array([0, 10]), 0.1, "cifar10"), "labels"),
    (lambda: noise.instance_dependent(_X, _Y, rate=0.1, num_classes=3), "labels"),
    # num_classes / mode / sparsity
    (lambda: noise.symmetric(_Y, 0.1, 1), "num_classes"),
    (lambda: noise.symmetric(_Y, 0.1, 4, mode="uniform"), "mode"),
    (lambda: noise.pair_flip(_Y, 0.1, 4, mode="exclude_true"), "mode"),
    (lambda: noise.random_transition_matrix(4, rate=0.1, sparsity=1.5), "sparsity"),
    (lambda: noise.random_transition_matrix(4, rate=0.1, row_spread=-0.5), "row_spread"),
    (lambda: noise.random_transition_matrix(1, rate=0.1), "num_classes"),
    # matrices
    (lambda: noise.from_transition_matrix(_Y, np.ones((4, 3)) / 3), "transition_matrix"),
    (lambda: noise.from_transition_matrix(_Y, np.ones(4)), "transition_matrix"),
    (lambda: noise.from_transition_matrix(_Y, np.full((4, 4), 0.3)), "transition_matrix"),
    (
        lambda: noise.from_transition_matrix(_Y, [[1.5, -0.5, 0, 0], *np.eye(4)[1:].tolist()]),
        "transition_matrix",
    ),
    (lambda: noise.from_transition_matrix(_Y, np.full((4, 4), np.nan)), "transition_matrix"),
    (lambda: noise.to_cleanlab(np.full((3, 3), 0.5)), "transition_matrix"),
    (lambda: noise.from_cleanlab([[0.5, 0.5], [0.2, 0.8]]), "noise_matrix"),
    (lambda: noise.from_cleanlab(np.ones((2, 3))), "noise_matrix"),
    # mapping
    (lambda: noise.asymmetric(_Y, 0.1, {0: 7}, num_classes=4), "mapping"),
    (lambda: noise.asymmetric(_Y, 0.1, {9: 0}, num_classes=4), "mapping"),
    (lambda: noise.asymmetric(_Y, 0.1, {-1: 0}), "mapping"),
    (lambda: noise.asymmetric(_Y, 0.1, {1: 1}), "mapping"),
    (lambda: noise.asymmetric(_Y, 0.1, {}), "mapping"),
    (lambda: noise.asymmetric(_Y, 0.1, {0.5: 1}), "mapping"),
    (lambda: noise.asymmetric(_Y, 0.1, "cifar100"), "mapping"),
    (lambda: noise.asymmetric(_Y, 0.1, "cifar10", num_classes=5), "mapping"),
    # features
    (lambda: noise.instance_dependent(np.ones((19, 3)), _Y, rate=0.1), "features"),
    (lambda: noise.instance_dependent(np.ones(()), _Y, rate=0.1), "features"),
    (lambda: noise.instance_dependent(np.where(np.eye(20, 3) > 0, np.nan, 1.0), _Y, rate=0.1), "features"),
    (lambda: noise.instance_dependent(np.full((20, 3), np.inf), _Y, rate=0.1), "features"),
    (lambda: noise.instance_dependent(np.ones((20, 0)), _Y, rate=0.1), "features"),
]


@pytest.mark.parametrize(
    ("call", "name"), ERROR_CASES, ids=[f"{i}-{n}" for i, (_, n) in enumerate(ERROR_CASES)]
)
def test_bad_input_raises_value_error_naming_argument(call: Callable[[], object], name: str) -> None:
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        call()


def test_non_numeric_rate_is_type_error() -> None:
    with pytest.raises(TypeError, match="rate"):
        noise.symmetric(_Y, "0.1", 4)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="mapping"):
        noise.asymmetric(_Y, 0.1, [(0, 1)])  # type: ignore[arg-type]


def test_docstring_examples_run() -> None:
    result = doctest.testmod(noise, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_transition_matrix_too_small_for_the_labels_is_named() -> None:
    with pytest.raises(ValueError, match=r"transition_matrix is 3x3 but labels hold class 3"):
        noise.from_transition_matrix(np.array([0, 1, 2, 3] * 5), np.eye(3))
