"""Tests for smoothflip.flipping: DisturbLabel and fixed-rate per-batch flips."""

from __future__ import annotations

import doctest
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from smoothflip import flipping
from smoothflip.flipping import DisturbLabel, disturb_labels, flip_labels

HYP = settings(max_examples=50, deadline=None)
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _gen(seed: int = 0, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _round_half_up(x: float) -> int:
    # x is rate * n computed in float; the count is round-half-up of that product
    return math.floor(Fraction(x) + Fraction(1, 2))


# --------------------------------------------------------------------------------------------------
# disturb_labels
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("alpha", "k"), [(0.1, 10), (0.2, 10), (0.5, 3), (0.3, 2)])
def test_expected_one_hot_is_label_smoothing_with_eps_alpha(alpha: float, k: int) -> None:
    draws = 4_000
    y = torch.arange(k).repeat(5)  # every class, several times
    out = disturb_labels(y.expand(draws, -1), alpha=alpha, num_classes=k, generator=_gen(1))
    mean = F.one_hot(out, k).double().mean(dim=0)  # [n, k]
    expected = (1 - alpha) * F.one_hot(y, k).double() + alpha / k
    se = (expected * (1 - expected) / draws).sqrt()
    assert ((mean - expected).abs() <= 5 * se).all()
    # pooled over positions: tighter check of the same identity
    pooled_true = mean.gather(1, y[:, None]).mean()
    n_total = draws * y.numel()
    p_true = 1 - alpha + alpha / k
    assert abs(pooled_true - p_true) <= 5 * math.sqrt(p_true * (1 - p_true) / n_total)


@pytest.mark.parametrize(("alpha", "k"), [(0.1, 10), (0.4, 10), (1.0, 5), (0.2, 100)])
def test_realized_wrong_rate_is_alpha_times_k_minus_one_over_k(alpha: float, k: int) -> None:
    n = 200_000
    y = torch.randint(0, k, (n,), generator=_gen(2))
    out = disturb_labels(y, alpha=alpha, num_classes=k, generator=_gen(3))
    wrong = (out != y).double().mean().item()
    p = alpha * (k - 1) / k
    assert abs(wrong - p) <= 5 * math.sqrt(p * (1 - p) / n)
    assert DisturbLabel(alpha, k).wrong_label_rate == pytest.approx(p)


def test_alpha_zero_is_identity_and_alpha_one_is_uniform() -> None:
    y = torch.zeros(60_000, dtype=torch.long)
    assert torch.equal(disturb_labels(y, alpha=0.0, num_classes=6, generator=_gen()), y)
    out = disturb_labels(y, alpha=1.0, num_classes=6, generator=_gen())
    counts = torch.bincount(out, minlength=6)
    assert stats.chisquare(counts.numpy()).pvalue > 1e-4


def test_disturb_respects_ignore_index_and_shape_dtype_device() -> None:
    y = torch.randint(0, 7, (64, 33), generator=_gen(4)).to(torch.int32)
    y[:, ::3] = -100
    before = y.clone()
    out = disturb_labels(y, alpha=1.0, num_classes=7, generator=_gen(5))
    assert out.shape == y.shape
    assert out.dtype == torch.int32
    assert out.device == y.device
    assert torch.equal(y, before)  # input not modified
    assert out.data_ptr() != y.data_ptr()
    assert (out[:, ::3] == -100).all()
    assert ((out[y != -100] >= 0) & (out[y != -100] < 7)).all()
    assert (out != y).any()


def test_disturb_custom_ignore_index_outside_class_range() -> None:
    y = torch.tensor([0, 255, 1, 255, 2], dtype=torch.uint8)
    out = disturb_labels(y, alpha=1.0, num_classes=3, generator=_gen(), ignore_index=255)
    assert out.dtype == torch.uint8
    assert (out[[1, 3]] == 255).all()
    with pytest.raises(ValueError, match="target"):
        disturb_labels(y, alpha=0.5, num_classes=3)  # 255 is not ignored by default


def test_disturb_generator_reproducibility_and_global_rng_untouched() -> None:
    y = torch.randint(0, 10, (5_000,), generator=_gen(6))
    state = torch.get_rng_state()
    a = disturb_labels(y, alpha=0.3, num_classes=10, generator=_gen(7))
    b = disturb_labels(y, alpha=0.3, num_classes=10, generator=_gen(7))
    c = disturb_labels(y, alpha=0.3, num_classes=10, generator=_gen(8))
    assert torch.equal(state, torch.get_rng_state())
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    g = _gen(7)
    first = disturb_labels(y, alpha=0.3, num_classes=10, generator=g)
    second = disturb_labels(y, alpha=0.3, num_classes=10, generator=g)
    assert torch.equal(first, a)
    assert not torch.equal(first, second)


def test_disturb_without_generator_uses_torch_default_rng() -> None:
    y = torch.randint(0, 10, (1_000,), generator=_gen(9))
    torch.manual_seed(0)
    a = disturb_labels(y, alpha=0.5, num_classes=10)
    torch.manual_seed(0)
    b = disturb_labels(y, alpha=0.5, num_classes=10)
    assert torch.equal(a, b)


def test_disturb_empty_target() -> None:
    y = torch.empty(0, 4, dtype=torch.long)
    assert disturb_labels(y, alpha=0.5, num_classes=3).shape == (0, 4)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"alpha": -0.1}, "alpha"),
        ({"alpha": 1.1}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"num_classes": 0}, "num_classes"),
        ({"target": torch.tensor([0, 10])}, "target"),
        ({"target": torch.tensor([0, -1])}, "target"),
        ({"target": torch.tensor([0.0, 1.0])}, "target"),
        ({"target": torch.tensor([True, False])}, "target"),
    ],
)
def test_disturb_bad_input_names_argument(kwargs: dict, name: str) -> None:
    args = {"target": torch.tensor([0, 1, 2]), "alpha": 0.1, "num_classes": 10} | kwargs
    with pytest.raises(ValueError, match=name):
        disturb_labels(args.pop("target"), **args)


def test_disturb_non_tensor_is_type_error() -> None:
    with pytest.raises(TypeError, match="target"):
        disturb_labels([0, 1], alpha=0.1, num_classes=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="generator"):
        disturb_labels(torch.tensor([0]), alpha=0.1, num_classes=3, generator=0)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# DisturbLabel
# --------------------------------------------------------------------------------------------------


def test_disturb_label_object_matches_function_with_same_seed() -> None:
    y = torch.randint(0, 10, (2_000,), generator=_gen(10))
    hook = DisturbLabel(0.2, 10, seed=42)
    g = _gen(42)
    for _ in range(3):  # successive batches continue the same stream
        assert torch.equal(hook(y), disturb_labels(y, alpha=0.2, num_classes=10, generator=g))


def test_disturb_label_object_seeding() -> None:
    y = torch.randint(0, 10, (2_000,), generator=_gen(11))
    assert torch.equal(DisturbLabel(0.2, 10, seed=1)(y), DisturbLabel(0.2, 10, seed=1)(y))
    assert not torch.equal(DisturbLabel(0.2, 10, seed=1)(y), DisturbLabel(0.2, 10, seed=2)(y))
    hook = DisturbLabel(0.2, 10)
    assert isinstance(hook.seed, int)
    assert torch.equal(hook(y), DisturbLabel(0.2, 10, seed=hook.seed)(y))


def test_disturb_label_object_repr_rate_and_ignore_index() -> None:
    hook = DisturbLabel(0.1, 10, ignore_index=-1, seed=3)
    assert hook.wrong_label_rate == pytest.approx(0.09)
    assert repr(hook) == (
        "DisturbLabel(alpha=0.1, num_classes=10, ignore_index=-1, seed=3, wrong_label_rate=0.09)"
    )
    y = torch.tensor([-1, 3, -1, 4] * 100)
    assert (hook(y)[y == -1] == -1).all()


@pytest.mark.parametrize(
    ("args", "kwargs", "name"),
    [
        ((1.5, 10), {}, "alpha"),
        ((-0.5, 10), {}, "alpha"),
        ((0.1, 0), {}, "num_classes"),
        ((0.1, 10), {"seed": -1}, "seed"),
    ],
)
def test_disturb_label_object_bad_input(args: tuple, kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        DisturbLabel(*args, **kwargs)


def test_disturb_label_object_bad_target() -> None:
    with pytest.raises(ValueError, match="target"):
        DisturbLabel(0.1, 3, seed=0)(torch.tensor([0, 3]))


# --------------------------------------------------------------------------------------------------
# flip_labels
# --------------------------------------------------------------------------------------------------


@given(
    n=st.integers(0, 300),
    k=st.integers(2, 12),
    rate=st.floats(0.0, 1.0),
    ignore_frac=st.floats(0.0, 0.9),
    seed=st.integers(0, 2**31),
)
@HYP
def test_flip_labels_exact_count_all_wrong(
    n: int, k: int, rate: float, ignore_frac: float, seed: int
) -> None:
    g = _gen(seed)
    y = torch.randint(0, k, (n,), generator=g)
    ignored = torch.rand(n, generator=g) < ignore_frac
    y[ignored] = -100
    out, mask = flip_labels(y, rate=rate, num_classes=k, generator=g, return_mask=True)
    n_valid = int((~ignored).sum())
    assert int(mask.sum()) == _round_half_up(rate * n_valid)
    assert torch.equal(mask, out != y)  # every chosen position really changed
    assert not (mask & ignored).any()
    assert (out[ignored] == -100).all()
    assert ((out[~ignored] >= 0) & (out[~ignored] < k)).all()


def test_flip_labels_targets_uniform_over_other_classes() -> None:
    y = torch.zeros(40_000, dtype=torch.long)
    out, mask = flip_labels(y, rate=0.5, num_classes=5, generator=_gen(12), return_mask=True)
    assert int(mask.sum()) == 20_000
    counts = torch.bincount(out[mask], minlength=5)
    assert counts[0] == 0
    assert stats.chisquare(counts[1:].numpy()).pvalue > 1e-4


def test_flip_labels_multi_dim_non_contiguous_and_dtype() -> None:
    y = (torch.arange(60).reshape(6, 10) % 4).to(torch.int16).t()  # [10, 6], non-contiguous
    assert not y.is_contiguous()
    before = y.clone()
    out, mask = flip_labels(y, rate=0.25, num_classes=4, generator=_gen(13), return_mask=True)
    assert out.shape == y.shape
    assert mask.shape == y.shape
    assert out.dtype == torch.int16
    assert torch.equal(y, before)
    assert int(mask.sum()) == 15
    assert torch.equal(mask, out != y)


def test_flip_labels_edges_and_reproducibility() -> None:
    y = torch.randint(0, 2, (101,), generator=_gen(14))
    out = flip_labels(y, rate=1.0, num_classes=2, generator=_gen(15))
    assert torch.equal(out, 1 - y)  # K=2: the only other class
    assert torch.equal(flip_labels(y, rate=0.0, num_classes=2, generator=_gen()), y)
    a = flip_labels(y, rate=0.3, num_classes=2, generator=_gen(16))
    assert torch.equal(a, flip_labels(y, rate=0.3, num_classes=2, generator=_gen(16)))
    assert not torch.equal(a, flip_labels(y, rate=0.3, num_classes=2, generator=_gen(17)))
    assert int((flip_labels(y, rate=0.5, num_classes=2, generator=_gen()) != y).sum()) == 51  # half up


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"rate": -0.1}, "rate"),
        ({"rate": 1.5}, "rate"),
        ({"num_classes": 1}, "num_classes"),
        ({"target": torch.tensor([0, 5])}, "target"),
        ({"target": torch.tensor([0.5])}, "target"),
    ],
)
def test_flip_labels_bad_input_names_argument(kwargs: dict, name: str) -> None:
    args = {"target": torch.tensor([0, 1, 2]), "rate": 0.1, "num_classes": 3} | kwargs
    with pytest.raises(ValueError, match=name):
        flip_labels(args.pop("target"), **args)


# --------------------------------------------------------------------------------------------------
# CUDA (skipped on CPU-only machines)
# --------------------------------------------------------------------------------------------------


@CUDA
def test_cuda_generator_must_match_device() -> None:
    y = torch.randint(0, 10, (100,), device="cuda")
    with pytest.raises(ValueError, match="generator"):
        disturb_labels(y, alpha=0.1, num_classes=10, generator=_gen(0))
    with pytest.raises(ValueError, match="generator"):
        flip_labels(y, rate=0.1, num_classes=10, generator=_gen(0))


@CUDA
def test_cuda_reproducible_and_on_device() -> None:
    y = torch.randint(0, 10, (10_000,), device="cuda")
    a = disturb_labels(y, alpha=0.3, num_classes=10, generator=_gen(1, "cuda"))
    b = disturb_labels(y, alpha=0.3, num_classes=10, generator=_gen(1, "cuda"))
    assert a.device == y.device
    assert torch.equal(a, b)
    hook = DisturbLabel(0.3, 10, seed=1)
    assert torch.equal(hook(y), DisturbLabel(0.3, 10, seed=1)(y))
    out, mask = flip_labels(y, rate=0.3, num_classes=10, generator=_gen(2, "cuda"), return_mask=True)
    assert int(mask.sum()) == 3_000
    assert torch.equal(mask, out != y)


# --------------------------------------------------------------------------------------------------


def test_module_exports_and_doctests() -> None:
    assert set(flipping.__all__) == {"DisturbLabel", "disturb_labels", "flip_labels"}
    result = doctest.testmod(flipping)
    assert result.attempted > 0
    assert result.failed == 0


def test_small_integer_dtypes_flip_uniformly() -> None:
    # label + offset overflows int8 (90 + 99 > 127) unless computed in int64
    target = torch.full((49_500,), 90, dtype=torch.int8)
    out = flip_labels(target, rate=1.0, num_classes=100, generator=torch.Generator().manual_seed(0))
    assert out.dtype == torch.int8
    counts = torch.bincount(out.long(), minlength=100).numpy()
    assert counts[90] == 0
    others = np.delete(counts, 90)
    assert stats.chisquare(others).pvalue > 1e-4, others.min()
