"""Smooth ECE (Błasiok & Nakkiran, ICLR 2024): a binning-free, consistent calibration error.

"Smooth ECE: Principled Reliability Diagrams via Kernel Smoothing". With predictions
``f_i ∈ [0, 1]``, outcomes ``y_i ∈ {0, 1}`` and residuals ``r_i = y_i − f_i``, the kernel-smoothed
residual density is

``h_σ(t) = (1/N) Σ_i r_i K_σ(t, f_i)``,  ``t ∈ [0, 1]``,

with ``K_σ`` the *reflected* Gaussian kernel: the density at ``t`` of ``s + σZ`` (``Z`` standard
normal) folded back into ``[0, 1]`` by reflection at 0 and 1. Then
``smECE_σ = ∫_0^1 |h_σ(t)| dt`` (the paper's ``∫ |r̂_σ(t)| δ̂_σ(t) dt``: smoothed residual times
smoothed density). ``smECE_σ`` is non-increasing in ``σ``, so there is one fixed point
``σ* = smECE_{σ*}``, and ``smECE = smECE_{σ*}``: the bandwidth is chosen by the data themselves.

How it is computed (no binning of the data; agrees with the plain definition to about 1e-10). The
reflected kernel is the heat kernel of ``[0, 1]`` with reflecting ends, whose cosine expansion is
``K_σ(t, s) = 1 + 2 Σ_{m>=1} exp(−π² m² σ² / 2) cos(π m s) cos(π m t)`` (truncated where the factor
drops below ``e^-30``). So ``h_σ(t) = a_0 + 2 Σ_m exp(−π² m² σ² / 2) a_m cos(π m t)`` with the data's
moments ``a_m = (1/N) Σ_i r_i cos(π m f_i)``, computed once whatever ``σ`` (directly, or by a
non-uniform FFT when many terms are needed: ``N = 10⁶`` takes about 2 s). ``h_σ``, ``h_σ'`` and an
antiderivative are evaluated on a grid of spacing about ``σ / 20`` by type-I DCT / DSTs; ``∫ |h_σ|``
is then exact on every grid interval where ``h_σ`` keeps its sign, and uses a cubic Hermite model of
``h_σ`` (error of order ``spacing⁵``) on the few where it changes sign. The fixed point is found by
a bracketed Illinois (false position) search on ``log σ``. Bootstrap resamples only reweight the
examples, so they reuse the same ``cos(π m f_i)`` and the search runs for all resamples at once.
"""

from __future__ import annotations

import math
from typing import Any, Literal, overload

import numpy as np
from scipy.fft import dct, dst, fft, next_fast_len

from smoothflip._validation import check_range
from smoothflip.metrics._common import _as_float_array, _check_probs_labels, _to_numpy, _top_label

__all__ = ["smooth_ece"]

# Cosine terms kept: m <= _TERMS_PER_INV_SIGMA / σ; the first dropped factor is below exp(-30.8).
_TERMS_PER_INV_SIGMA = 2.5
# Grid intervals per cosine term for the integral of |h| (at least _MIN_GRID).
_GRID_PER_TERM = 8
_MIN_GRID = 1024
# Budget of float64 elements per block of the [rows, grid] and [terms, N] work arrays (≈ 32 MB).
_BLOCK_ELEMENTS = 1 << 22
_SPREAD = 14  # grid points on each side of an example in the non-uniform FFT (error ~1e-14)
_XTOL = 1e-10  # the fixed-point search stops at this bracket width in log σ ...
_FTOL = 1e-13  # ... or where |smECE_σ − σ| is this small
_MAX_ITER = 200


def _smooth_inputs(probs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(f, y)``: the top-label pair for ``[N, K]`` probs, or binary predictions for ``[N]`` ones."""
    array = _to_numpy("probs", probs)
    if array.ndim == 2:
        p, y = _check_probs_labels(probs, labels)
        confidence, correct = _top_label(p, y)
        return confidence, correct.astype(np.float64)
    if array.ndim != 1:
        raise ValueError(f"probs must be [N, K] probabilities or [N] binary predictions, got {array.shape}")
    f = _as_float_array("probs", array, ndim=1)
    if f.size < 1:
        raise ValueError("probs must have at least one element")
    if f.min() < 0.0 or f.max() > 1.0:
        raise ValueError(f"probs must lie in [0, 1], got values in [{f.min():g}, {f.max():g}]")
    y = _to_numpy("labels", labels)
    if y.dtype.kind not in "biuf":
        raise TypeError(f"labels must hold 0/1 values (ints, bools or floats), got dtype {y.dtype}")
    if y.shape != f.shape:
        raise ValueError(f"labels must have shape {f.shape} to match probs, got {tuple(y.shape)}")
    y = y.astype(np.float64)
    if np.any((y != 0.0) & (y != 1.0)):
        raise ValueError("labels must be 0 or 1 when probs is [N] (binary predictions)")
    return f, y


class _Moments:
    """``a[r, m] = (1/N) Σ_i w[r, i] r_i cos(π m f_i)`` for ``m = 0, 1, ...``, extended on demand.

    Two exact-to-rounding ways, whichever is cheaper for the terms asked for:

    - directly: blocks of ``B`` terms from ``m0`` use ``cos((m0 + j)θ) = cos(m0 θ) cos(jθ) −
      sin(m0 θ) sin(jθ)`` with ``cos(jθ)``, ``sin(jθ)`` (``j < B``) computed once, then a matrix
      product (cost ``∝ N · terms``);
    - by a type-1 non-uniform FFT with Gaussian gridding (Greengard & Lee 2004): each example is
      spread onto an oversampled periodic grid, one FFT, then the Gaussian is divided out (cost
      ``∝ N · 2 · _SPREAD + grid log grid``; absolute error about 1e-14 for moments of size 1e-2).
    """

    def __init__(self, f: np.ndarray, resid: np.ndarray, weights: np.ndarray | None) -> None:
        # [R, N] weighted residuals over N (resample weights sum to N, so the moments stay means)
        self.wr = (resid[None, :] if weights is None else weights * resid[None, :]) / f.size
        self.theta = np.pi * f
        self.a = np.zeros((self.wr.shape[0], 0))
        self.basis: tuple[np.ndarray, np.ndarray] | None = None  # cos(jθ), sin(jθ) for j < B

    def get(self, n_terms: int) -> np.ndarray:
        have = self.a.shape[1]
        if n_terms > have:
            stop = max(n_terms, 2 * have)  # grow geometrically: few, large blocks
            n_rows = self.wr.shape[0]
            # rough per-example costs (ns): direct ~(3 + R/2) per term, spreading ~10 per grid point and row
            if (stop - have) * (3 + 0.5 * n_rows) > 20 * _SPREAD * n_rows:
                self.a = self._spread(stop)
            else:
                self.a = np.concatenate([self.a, self._direct(have, stop)], axis=1)
        return self.a[:, :n_terms]

    def _direct(self, start: int, stop: int) -> np.ndarray:
        n = self.theta.size
        if self.basis is None:
            block = int(min(64, max(1, _BLOCK_ELEMENTS // (2 * n))))
            # e^{ijθ} for j < B as running products of e^{iθ} (rounding grows like j ε: below 1e-14)
            powers = np.cumprod(np.broadcast_to(np.exp(1j * self.theta), (block, n)), axis=0)
            powers = np.concatenate([np.ones((1, n)), powers[:-1]])
            self.basis = (powers.real.copy(), powers.imag.copy())  # [B, N] each
        cos_j, sin_j = self.basis
        blocks = []
        for m0 in range(start, stop, cos_j.shape[0]):
            c0, s0 = np.cos(m0 * self.theta), np.sin(m0 * self.theta)
            cos_block = c0[None, :] * cos_j - s0[None, :] * sin_j  # cos((m0 + j) θ)
            blocks.append(self.wr @ cos_block[: stop - m0].T)
        return np.concatenate(blocks, axis=1)

    def _spread(self, n_terms: int) -> np.ndarray:
        """All moments ``m < n_terms`` by Gaussian gridding on ``[0, 2π)`` (θ = π f lies in ``[0, π]``)."""
        n_rows, n = self.wr.shape
        modes = 2 * n_terms  # frequencies −M .. M − 1 of the periodic problem
        size = next_fast_len(2 * modes)  # oversampling ratio 2
        tau = np.pi * _SPREAD / (modes * modes * 2 * 1.5)  # Greengard & Lee: π M_sp / (M² R (R − 1/2))
        step = 2.0 * np.pi / size
        left = np.floor(self.theta / step).astype(np.int64)
        offset = self.theta - left * step
        out = np.empty((n_rows, n_terms))
        chunk = max(1, _BLOCK_ELEMENTS // n)
        k = np.arange(n_terms, dtype=np.float64)
        scale = np.sqrt(np.pi / tau) * np.exp(k * k * tau) / size
        for start in range(0, n_rows, chunk):
            wr = self.wr[start : start + chunk]
            shift = (size * np.arange(wr.shape[0]))[:, None]
            grid = np.zeros(wr.shape[0] * size)
            for j in range(1 - _SPREAD, _SPREAD + 1):
                kernel = np.exp(-((offset - j * step) ** 2) / (4.0 * tau))  # Gaussian at grid point left + j
                index = (((left + j) % size)[None, :] + shift).ravel()
                grid += np.bincount(index, weights=(wr * kernel[None, :]).ravel(), minlength=grid.size)
            # e^{-ik x} over the grid (numpy's FFT sign), then divide the Gaussian's transform out
            out[start : start + chunk] = (fft(grid.reshape(-1, size), axis=1)[:, :n_terms] * scale).real
        return out


def _abs_integral(h: np.ndarray, dh: np.ndarray, big_h: np.ndarray, dx: float) -> np.ndarray:
    """``∫_0^1 |h|`` per row from ``h``, ``h'`` and an antiderivative ``H`` on a uniform grid ``[R, G + 1]``.

    On a grid interval where ``h`` keeps its sign the integral is exact, ``|H_{j+1} − H_j|``. Where
    ``h`` changes sign, ``h`` is replaced by its cubic Hermite interpolant (from ``h`` and ``h'`` at
    both ends), whose root ``z`` is found by Newton's method; with ``I_z`` the cubic's integral up to
    ``z`` and ``I`` the exact one over the interval, ``∫|h| = sgn(h_j) (2 I_z − I)``. The error is of
    order ``dx⁵`` per sign change.
    """
    whole = big_h[:, 1:] - big_h[:, :-1]
    crossing = (h[:, :-1] * h[:, 1:]) < 0.0
    total = np.abs(whole).sum(axis=1)
    rows, cols = np.nonzero(crossing)
    if rows.size:
        h0, h1 = h[rows, cols], h[rows, cols + 1]
        d0, d1 = dx * dh[rows, cols], dx * dh[rows, cols + 1]
        # p(s) = c0 + c1 s + c2 s² + c3 s³ on s ∈ [0, 1]: the cubic Hermite interpolant of h
        c0, c1 = h0, d0
        c2 = 3.0 * (h1 - h0) - 2.0 * d0 - d1
        c3 = 2.0 * (h0 - h1) + d0 + d1
        z = h0 / (h0 - h1)  # the linear interpolant's root, in (0, 1)
        for _ in range(4):
            slope = c1 + z * (2.0 * c2 + 3.0 * c3 * z)
            value = c0 + z * (c1 + z * (c2 + c3 * z))
            step = np.divide(value, slope, out=np.zeros_like(value), where=slope != 0.0)
            z = np.clip(z - step, 0.0, 1.0)
        left = dx * z * (c0 + z * (c1 / 2.0 + z * (c2 / 3.0 + z * c3 / 4.0)))
        exact = whole[rows, cols]
        fixed = np.sign(h0) * (2.0 * left - exact) - np.abs(exact)
        total += np.bincount(rows, weights=fixed, minlength=h.shape[0])
    return total


def _smece_at(moments: _Moments, rows: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """``smECE_σ`` for the moment rows ``rows`` at their bandwidths ``sigma`` (both ``[R']``)."""
    out = np.empty(rows.size)
    n_terms = math.ceil(_TERMS_PER_INV_SIGMA / float(sigma.min())) + 1
    grid = next_fast_len(max(_MIN_GRID, _GRID_PER_TERM * n_terms))  # intervals; needs n_terms < grid
    a = moments.get(n_terms)
    m = np.arange(n_terms, dtype=np.float64)
    step = max(1, _BLOCK_ELEMENTS // (3 * grid))
    for start in range(0, rows.size, step):
        part = slice(start, start + step)
        s = sigma[part]
        b = a[rows[part]] * np.exp(-0.5 * (np.pi * m[None, :] * s[:, None]) ** 2)  # [R', M]
        # h(j/G) by a DCT-I: y_j = x_0 + (-1)^j x_G + 2 Σ_{n=1}^{G-1} x_n cos(π j n / G)
        x = np.zeros((s.size, grid + 1))
        x[:, :n_terms] = b
        h = dct(x, type=1, axis=1)
        # h'(j/G) = −2 Σ π m b_m sin(π m j/G) and H(j/G) = a_0 j/G + 2 Σ b_m sin(π m j/G) / (π m) by
        # DSTs-I over the interior points: y_k = 2 Σ_{n=0}^{G-2} x_n sin(π (k+1)(n+1) / G).
        sine = np.zeros((s.size, grid - 1))
        sine[:, : n_terms - 1] = -np.pi * m[None, 1:] * b[:, 1:]
        dh = np.zeros_like(h)
        dh[:, 1:-1] = dst(sine, type=1, axis=1)
        sine[:, : n_terms - 1] = b[:, 1:] / (np.pi * m[None, 1:])
        big_h = np.zeros_like(h)
        big_h[:, 1:-1] = dst(sine, type=1, axis=1)
        big_h += b[:, :1] * np.linspace(0.0, 1.0, grid + 1)[None, :]
        out[part] = _abs_integral(h, dh, big_h, 1.0 / grid)
    return out


def _fixed_point(moments: _Moments, *, min_bandwidth: float, start: float) -> tuple[np.ndarray, np.ndarray]:
    """Per moment row, ``σ*`` with ``smECE_σ* = σ*`` in ``[min_bandwidth, 1]``: ``(values, sigmas)``.

    ``S(σ) = smECE_σ`` is non-increasing, so ``F(u) = S(e^u) − e^u`` is strictly decreasing with one
    root. One evaluation at ``σ0 = start`` brackets it: if ``S(σ0) > σ0`` then ``σ0 < σ* <= S(σ0)``
    (as ``σ* = S(σ*) <= S(σ0)``), otherwise ``S(σ0) <= σ* <= σ0``. Illinois false position on
    ``u = log σ`` then refines the bracket. A row with ``F(log min_bandwidth) <= 0`` stops at
    ``σ = min_bandwidth``.
    """
    n_rows = moments.wr.shape[0]
    all_rows = np.arange(n_rows)
    sigma0 = np.full(n_rows, min(max(start, min_bandwidth), 1.0))
    s0 = _smece_at(moments, all_rows, sigma0)
    below = s0 > sigma0  # sigma0 < σ*
    other = np.where(below, np.minimum(s0, 1.0), np.maximum(s0, min_bandwidth))
    s_other = _smece_at(moments, all_rows, other)
    lo = np.log(np.where(below, sigma0, other))
    hi = np.log(np.where(below, other, sigma0))
    f_lo = np.where(below, s0 - sigma0, s_other - other)
    f_hi = np.where(below, s_other - other, s0 - sigma0)
    # F(lo) <= 0: the root is at lo (or below min_bandwidth); F(hi) >= 0: it is at hi (rounding aside).
    # (Where smECE_σ is flat, e.g. one-signed residuals, S(σ0) is the root itself.)
    at_lo = f_lo <= _FTOL
    at_hi = ~at_lo & (f_hi >= -_FTOL)
    hi[at_lo] = lo[at_lo]
    lo[at_hi] = hi[at_hi]
    active = hi - lo > _XTOL
    side = np.zeros(n_rows, dtype=np.int8)  # which end moved last: -1 lo, +1 hi
    for _ in range(_MAX_ITER):
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        a, b, fa, fb = lo[rows], hi[rows], f_lo[rows], f_hi[rows]
        c = b - fb * (b - a) / (fb - fa)
        bad = ~((c > a) & (c < b))
        c[bad] = 0.5 * (a[bad] + b[bad])
        fc = _smece_at(moments, rows, np.exp(c)) - np.exp(c)
        move_lo = fc > 0.0
        lo[rows[move_lo]], f_lo[rows[move_lo]] = c[move_lo], fc[move_lo]
        hi[rows[~move_lo]], f_hi[rows[~move_lo]] = c[~move_lo], fc[~move_lo]
        # Illinois: an end kept twice in a row has its F halved, so that end moves next time.
        f_hi[rows[move_lo & (side[rows] == -1)]] *= 0.5
        f_lo[rows[~move_lo & (side[rows] == 1)]] *= 0.5
        side[rows] = np.where(move_lo, -1, 1)
        root = np.abs(fc) <= _FTOL
        lo[rows[root]], hi[rows[root]] = c[root], c[root]
        active[rows] = hi[rows] - lo[rows] > _XTOL
    sigma = np.exp(0.5 * (lo + hi))
    sigma[np.abs(sigma - min_bandwidth) <= 1e-12 * min_bandwidth] = min_bandwidth  # exp(log(x)) != x
    return _smece_at(moments, all_rows, sigma), sigma


def _smooth_ece_rows(
    f: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None,
    *,
    bandwidth: float | None,
    min_bandwidth: float,
    start: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """``(values [R], bandwidths [R])`` for one row (``weights=None``) or ``R`` reweightings ``[R, N]``."""
    moments = _Moments(f, y - f, weights)
    n_rows = moments.wr.shape[0]
    if bandwidth is not None:
        sigma = np.full(n_rows, bandwidth)
        return _smece_at(moments, np.arange(n_rows), sigma), sigma
    return _fixed_point(moments, min_bandwidth=min_bandwidth, start=start)


@overload
def smooth_ece(
    probs: Any,
    labels: Any,
    *,
    bandwidth: float | None = ...,
    min_bandwidth: float = ...,
    return_bandwidth: Literal[False] = ...,
) -> float: ...


@overload
def smooth_ece(
    probs: Any,
    labels: Any,
    *,
    bandwidth: float | None = ...,
    min_bandwidth: float = ...,
    return_bandwidth: Literal[True],
) -> tuple[float, float]: ...


def smooth_ece(
    probs: Any,
    labels: Any,
    *,
    bandwidth: float | None = None,
    min_bandwidth: float = 1e-3,
    return_bandwidth: bool = False,
) -> float | tuple[float, float]:
    """Smooth ECE with the self-consistent bandwidth (Błasiok & Nakkiran, ICLR 2024).

    ``smECE_σ = ∫_0^1 |(1/N) Σ_i (y_i − f_i) K_σ(t, f_i)| dt`` with ``K_σ`` the reflected Gaussian
    kernel of standard deviation ``σ``; ``smECE = smECE_{σ*}`` at the fixed point ``σ* = smECE_{σ*}``
    (see the module docstring for the definition and the exact computation). It is consistent (it
    tends to 0 for a calibrated model as ``N`` grows, unlike a binned ECE whose bias depends on the
    bins), needs no bins, and is within constant factors of the distance to calibration.

    What is measured:

    - ``probs`` ``[N, K]`` with ``labels`` ``[N]`` in ``[0, K)``: *top-label (confidence)
      calibration*, ``f_i = max_k p_ik`` and ``y_i = 1[argmax_k p_ik = labels_i]`` (ties go to the
      first index), the convention of the paper's multiclass experiments, of ``relplot``'s
      ``multiclass_logits_to_confidences`` and of :func:`~smoothflip.metrics.expected_calibration_error`.
      This is what the study reports. Note that ``K = 2`` probabilities also give the top-label
      version (``f >= 0.5``), not the calibration of ``p_1``.
    - ``probs`` ``[N]`` with ``labels`` ``[N]`` in ``{0, 1}``: binary predictions ``f_i = P(y_i = 1)``.

    The fixed point is searched in ``[min_bandwidth, 1]``. When ``smECE_σ <= σ`` already at
    ``σ = min_bandwidth`` (the model is calibrated to within that resolution, e.g. zero residuals), the
    value at ``min_bandwidth`` is returned, like ``relplot``'s ``eps=0.001``.

    Args:
        probs: ``[N, K]`` class probabilities, or ``[N]`` predicted probabilities of a binary event.
        labels: ``[N]`` integer labels in ``[0, K)``, or ``[N]`` 0/1 outcomes for ``[N]`` probs.
        bandwidth: a fixed ``σ`` in ``[1e-4, 1]`` instead of the fixed point (gives ``smECE_σ``).
        min_bandwidth: lower end of the fixed-point search, in ``[1e-4, 1)``.
        return_bandwidth: also return the bandwidth used.

    Returns:
        smECE in ``[0, 1]``, or ``(smECE, σ)`` when ``return_bandwidth`` is true.

    Example:
        >>> f = np.array([0.2, 0.4, 0.6, 0.8] * 25)
        >>> y = (np.arange(100) % 4 >= 2).astype(int)  # outcomes 0, 0, 1, 1 for f = 0.2 ... 0.8
        >>> value, sigma = smooth_ece(f, y, return_bandwidth=True)
        >>> abs(value - sigma) < 1e-8, 0.0 < value < 0.3
        (True, True)
    """
    min_bandwidth = check_range("min_bandwidth", min_bandwidth, low=1e-4, high=1.0, high_open=True)
    if bandwidth is not None:
        bandwidth = check_range("bandwidth", bandwidth, low=1e-4, high=1.0)
    f, y = _smooth_inputs(probs, labels)
    values, sigmas = _smooth_ece_rows(f, y, None, bandwidth=bandwidth, min_bandwidth=min_bandwidth)
    if return_bandwidth:
        return float(values[0]), float(sigmas[0])
    return float(values[0])
