"""Tests for smoothflip.metrics.smooth_ece (Błasiok & Nakkiran, ICLR 2024).

References: the definition written plainly here (reflected Gaussian kernel as a sum of images,
integral on a fine grid), the authors' package ``relplot`` (1.0.3), and exact properties.

About the tolerance against ``relplot``: relplot 1.0.3 evaluates ``∫ |r̂| δ̂`` as a normalized
Riemann sum over 200 (or 10/σ) points, smooths on a 2000-point grid with a kernel truncated at
±1/2 and reflected once, and stops its bandwidth search at a resolution of 2^-10. Those
approximations measure up to 0.5 % here (with one-signed residuals the exact value is
``|mean(y − f)|`` and relplot is 0.5 % off), and up to 7e-5 absolute on small values, so values are
compared with ``rtol=1e-2, atol=1e-4`` and the bandwidth within relplot's search resolution. The
plain definition is matched to 1e-8.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import softmax

from smoothflip.metrics import smooth_ece
from smoothflip.metrics.smooth import _Moments

try:
    import relplot
except ImportError:  # pragma: no cover - the reference is a test dependency
    relplot = None
needs_relplot = pytest.mark.skipif(relplot is None, reason="relplot (the smooth ECE reference) is missing")

FAST = settings(max_examples=30, deadline=None)
RELPLOT_RTOL = 1e-2
RELPLOT_ATOL = 1e-4
RELPLOT_STEP = 2.0**-10  # relplot.smECE's bisection stops at this bandwidth resolution


def plain_smooth_ece(f: np.ndarray, y: np.ndarray, sigma: float, *, points: int = 200_001) -> float:
    """∫_0^1 |(1/N) Σ_i (y_i − f_i) K(t, f_i)| dt, K = Σ_k φ_σ(t − f − 2k) + φ_σ(t + f − 2k)."""
    t = np.linspace(0.0, 1.0, points)
    r = y - f
    images = int(np.ceil(6 * sigma)) + 1
    h = np.zeros_like(t)
    for k in range(-images, images + 1):
        for centre in (f + 2 * k, -f + 2 * k):
            if np.min(np.maximum(centre - 1.0, -centre)) > 12 * sigma:
                continue  # every kernel of this image is below exp(-72) on [0, 1]
            d = (t[:, None] - centre[None, :]) / sigma
            h += np.exp(-0.5 * d * d) @ r
    h /= f.size * sigma * np.sqrt(2 * np.pi)
    return float(np.trapezoid(np.abs(h), t))


def draw_multiclass(rng, n, k, temperature):
    """Labels drawn from softmax(z); the model reports softmax(temperature * z)."""
    z = rng.normal(size=(n, k)) * 2.0
    y = (rng.uniform(size=(n, 1)) > softmax(z, axis=1).cumsum(axis=1)).sum(axis=1)
    return softmax(temperature * z, axis=1), y


# ----------------------------------------------------------------------------------------------
# The definition
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "sigma"), [(40, 0.004), (30, 0.02), (60, 0.07), (25, 0.3), (20, 0.9)])
def test_fixed_bandwidth_matches_the_plain_definition(n, sigma):
    rng = np.random.default_rng(n)
    f = rng.uniform(size=n)
    y = (rng.uniform(size=n) < f**1.5).astype(float)
    expected = plain_smooth_ece(f, y, sigma, points=400_001 if sigma < 0.01 else 100_001)
    assert smooth_ece(f, y, bandwidth=sigma) == pytest.approx(expected, rel=1e-8, abs=1e-10)


def test_direct_moments_and_the_non_uniform_fft_agree():
    rng = np.random.default_rng(4)
    f = np.concatenate([rng.uniform(size=2000), [0.0, 0.0, 1.0, 1.0, 0.5]])
    r = (rng.uniform(size=f.size) < f) - f
    weights = rng.integers(0, 3, size=(3, f.size)).astype(float)
    for w in (None, weights):
        moments = _Moments(f, r, w)
        direct = moments._direct(0, 600)
        # the direct sum written plainly, for the first terms
        plain = (r if w is None else w * r) @ np.cos(np.pi * np.arange(20)[:, None] * f[None, :]).T / f.size
        np.testing.assert_allclose(direct[..., :20], np.atleast_2d(plain), rtol=0, atol=1e-15)
        np.testing.assert_allclose(moments._spread(600), direct, rtol=0, atol=1e-13)


def test_top_label_version_is_confidence_against_correctness():
    rng = np.random.default_rng(5)
    p, y = draw_multiclass(rng, 60, 4, 1.7)
    f = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(float)
    assert smooth_ece(p, y) == smooth_ece(f, correct)
    expected = plain_smooth_ece(f, correct, 0.05, points=50_001)
    assert smooth_ece(p, y, bandwidth=0.05) == pytest.approx(expected, rel=1e-8)


def test_bandwidth_is_the_fixed_point():
    rng = np.random.default_rng(6)
    for temperature in (0.5, 1.0, 2.0):
        p, y = draw_multiclass(rng, 500, 5, temperature)
        value, sigma = smooth_ece(p, y, return_bandwidth=True)
        assert value == pytest.approx(sigma, abs=1e-9)
        assert smooth_ece(p, y, bandwidth=sigma) == pytest.approx(sigma, abs=1e-9)
        # below the fixed point smECE_σ > σ, above it smECE_σ < σ
        assert smooth_ece(p, y, bandwidth=0.8 * sigma) > 0.8 * sigma
        assert smooth_ece(p, y, bandwidth=min(1.0, 1.25 * sigma)) < 1.25 * sigma


# ----------------------------------------------------------------------------------------------
# Against relplot
# ----------------------------------------------------------------------------------------------


def reference_cases():
    rng = np.random.default_rng(7)
    cases = []
    settings_ = ((1000, 10, 1.0), (1000, 10, 2.0), (2000, 10, 0.5), (400, 3, 1.3), (5000, 5, 1.0))
    for n, k, temperature in settings_:
        p, y = draw_multiclass(rng, n, k, temperature)
        cases.append(pytest.param(p, y, id=f"top-label n={n} k={k} T={temperature}"))
    for name, power in (("calibrated", 1.0), ("miscalibrated", 2.0), ("underconfident", 0.5)):
        f = rng.uniform(size=1500)
        y = (rng.uniform(size=1500) < f**power).astype(float)
        cases.append(pytest.param(f, y, id=f"binary {name}"))
    return cases


@needs_relplot
@pytest.mark.parametrize(("probs", "labels"), reference_cases())
def test_matches_relplot(probs, labels):
    if probs.ndim == 2:  # relplot's own top-label reduction: (max prob, correctness)
        f, y = relplot.multiclass_logits_to_confidences(probs, labels, probs=True)
    else:
        f, y = probs, labels
    value, sigma = smooth_ece(probs, labels, return_bandwidth=True)
    ref_value, ref_width = relplot.smECE(f, y, return_width=True)
    # relplot returns smECE at the upper end of its final bracket [width - 2^-10, width]
    assert smooth_ece(probs, labels, bandwidth=ref_width) == pytest.approx(
        ref_value, rel=RELPLOT_RTOL, abs=RELPLOT_ATOL
    )
    assert (ref_width - RELPLOT_STEP) * (1 - RELPLOT_RTOL) <= sigma <= ref_width * (1 + RELPLOT_RTOL)
    assert value == pytest.approx(ref_value, rel=RELPLOT_RTOL, abs=RELPLOT_STEP)
    for fixed in (0.01, 0.05, 0.2):
        assert smooth_ece(probs, labels, bandwidth=fixed) == pytest.approx(
            relplot.smECE_sigma(f, y, fixed), rel=RELPLOT_RTOL, abs=RELPLOT_ATOL
        )


# ----------------------------------------------------------------------------------------------
# Properties
# ----------------------------------------------------------------------------------------------


@FAST
@given(
    f=st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=40),
    data=st.data(),
    sigma=st.floats(0.005, 1.0),
)
def test_bounds_and_monotone_in_bandwidth(f, data, sigma):
    f = np.array(f)
    y = np.array(data.draw(st.lists(st.booleans(), min_size=f.size, max_size=f.size)), dtype=float)
    r = y - f
    value = smooth_ece(f, y, bandwidth=sigma)
    # |∫ h| <= ∫ |h| <= (1/N) Σ |r_i| ∫ K(t, f_i) dt, and ∫ K = 1
    assert abs(r.mean()) - 1e-9 <= value <= np.abs(r).mean() + 1e-9
    assert smooth_ece(f, y, bandwidth=min(1.0, 2 * sigma)) <= value + 1e-9  # smoothing contracts L1
    star = smooth_ece(f, y)
    assert 0.0 <= star <= 1.0


def test_one_signed_residuals_give_the_mean_residual():
    rng = np.random.default_rng(8)
    f = rng.uniform(0.2, 1.0, 800)
    y = np.zeros(800)  # every residual is -f: h is one-signed
    assert smooth_ece(f, y) == pytest.approx(f.mean(), rel=1e-12)
    assert smooth_ece(f, y, bandwidth=0.003) == pytest.approx(f.mean(), rel=1e-12)


def test_zero_residuals_and_the_minimum_bandwidth():
    f = np.array([0.0, 1.0, 1.0, 0.0])
    value, sigma = smooth_ece(f, f.copy(), return_bandwidth=True)
    assert value == 0.0
    assert sigma == 1e-3
    f, y = np.full(6, 0.5), np.array([0, 1] * 3)  # residuals cancel at one point
    value, sigma = smooth_ece(f, y, min_bandwidth=0.01, return_bandwidth=True)
    assert value == pytest.approx(0.0, abs=1e-15)
    assert sigma == 0.01


def test_calibrated_data_score_low_and_miscalibrated_high():
    # For calibrated data smECE shrinks like N^-1/2 (it is consistent); 0.03 is ~3x its size here.
    rng = np.random.default_rng(9)
    p, y = draw_multiclass(rng, 20_000, 10, 1.0)
    assert smooth_ece(p, y) < 0.03
    p, y = draw_multiclass(rng, 20_000, 10, 2.0)
    assert smooth_ece(p, y) > 0.1


def test_row_order_torch_and_booleans():
    rng = np.random.default_rng(10)
    p, y = draw_multiclass(rng, 300, 4, 1.5)
    perm = rng.permutation(300)
    assert smooth_ece(p[perm], y[perm]) == pytest.approx(smooth_ece(p, y), abs=1e-12)
    assert smooth_ece(torch.tensor(p), torch.tensor(y)) == pytest.approx(smooth_ece(p, y), abs=1e-12)
    f, correct = p.max(axis=1), p.argmax(axis=1) == y
    assert smooth_ece(f, correct) == smooth_ece(f, correct.astype(int))


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        smooth_ece(np.array([0.2, 0.7]), np.array([0, 2]))
    with pytest.raises(ValueError, match=r"probs must lie in \[0, 1\]"):
        smooth_ece(np.array([0.2, 1.7]), np.array([0, 1]))
    with pytest.raises(ValueError, match="labels must have shape"):
        smooth_ece(np.array([0.2, 0.7]), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="bandwidth"):
        smooth_ece(np.array([0.2, 0.7]), np.array([0, 1]), bandwidth=0.0)
    with pytest.raises(ValueError, match="min_bandwidth"):
        smooth_ece(np.array([0.2, 0.7]), np.array([0, 1]), min_bandwidth=1.0)
    with pytest.raises(ValueError, match="probs must be"):
        smooth_ece(np.zeros((2, 2, 2)), np.array([0, 1]))
