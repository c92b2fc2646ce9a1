r"""Multiplicity corrections on plain arrays of p-values: Holm (FWER) and Benjamini-Hochberg (FDR).

A study compares 5 arms under 3 label conditions on 5 metrics: 75 tests. At a per-test level of
0.05 and no effect anywhere, about 4 of them come out "significant" by chance. Two corrections:

**Holm** (:func:`holm`; Holm 1979, "A simple sequentially rejective multiple test procedure",
Scand. J. Statist. 6:65-70) controls the *family-wise error rate* — the probability of even one
false claim — at α under **any** dependence between the tests. Sort the ``m`` p-values,
``p_(1) <= ... <= p_(m)``; reject ``H_(1), H_(2), ...`` while ``p_(i) <= α / (m - i + 1)`` and stop
at the first that fails. Adjusted p-values: ``p̃_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``
(monotone; ``H_(i)`` is rejected iff ``p̃_(i) <= α``). Holm is uniformly more powerful than
Bonferroni (``m p``) and needs nothing but valid marginal p-values.

*Logically related hypotheses* (Shaffer 1986, "Modified sequentially rejective multiple test
procedures", JASA 81:826-831): when at most ``k < m`` of the hypotheses can be true at once, the
divisor at step ``i`` may be ``min(k, m - i + 1)`` instead of ``m - i + 1`` (``max_true=k``). Proof
sketch: when the first true hypothesis is rejected at step ``i``, the ``i - 1`` rejected before it
are false, so at most ``min(k, m - i + 1)`` hypotheses are true, and a true one has
``p <= α / min(k, m - i + 1) <= α / m_0``; by Bonferroni over the ``m_0`` true ones this has
probability ``<= α``. The family verdicts use it: a cell's "no difference" hypothesis ``μ = 0`` and
its "not equivalent" hypothesis ``|μ| >= δ`` cannot both be true, so the ``2m`` hypotheses of ``m``
cells are corrected as if there were ``m``.

**Benjamini-Hochberg** (:func:`benjamini_hochberg`; Benjamini & Hochberg 1995, JRSS-B 57:289-300)
controls the *false discovery rate* — the expected fraction of false claims among the claims — at
α for independent or positively dependent (PRDS) tests (Benjamini & Yekutieli 2001). Step-up: find
the largest ``i`` with ``p_(i) <= i α / m`` and reject ``H_(1) .. H_(i)``. Adjusted q-values:
``q_(i) = min_{j >= i} min(1, m p_(j) / j)``. It is the correction for *secondary* metrics, where
a few false claims among many true ones are tolerable; the primary metric gets Holm.

Both take ``[..., m]`` arrays and correct along the last axis, each row on its own; NaN marks a
hypothesis that was not tested: it is neither counted in ``m`` nor rejected, and its adjusted
value is NaN.

**Reading a family** (:func:`read_family`): the one rule that turns a family's raw p-values into
words, shared by a study's cells (:func:`smoothflip.analysis.family_verdicts`) and pooled keys
(:func:`smoothflip.analysis.meta_family.pooled_verdicts`): the ``m`` p-values of ``μ = 0`` and the
``m`` of ``|μ| >= margin`` corrected together (:data:`CORRECTIONS`: Holm with ``max_true = m``, BH,
or none), then *helps* / *hurts* / *equivalent* / *inconclusive* / *no verdict*.

Example:
    >>> from smoothflip.analysis import benjamini_hochberg, holm
    >>> p = [0.01, 0.04, 0.03, 0.005]
    >>> holm(p).p_adjusted.tolist(), holm(p).reject.tolist()
    ([0.03, 0.06, 0.06, 0.02], [True, False, False, True])
    >>> benjamini_hochberg(p).p_adjusted.round(4).tolist(), benjamini_hochberg(p).reject.tolist()
    ([0.02, 0.04, 0.04, 0.02], [True, True, True, True])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from smoothflip._validation import check_choice, check_range

__all__ = ["CORRECTIONS", "FamilyReading", "MultipleTests", "benjamini_hochberg", "holm", "read_family"]

#: The multiplicity corrections of a family of verdicts (:func:`read_family`).
CORRECTIONS = ("holm", "bh", "none")


@dataclass(frozen=True)
class MultipleTests:
    """Corrected p-values and rejections, each ``[..., m]`` like the input.

    Attributes:
        p_adjusted: adjusted p-values (Holm) or q-values (BH); NaN where the input was NaN.
        reject: ``p_adjusted <= alpha`` (False where the input was NaN).
        alpha: the level used.
    """

    p_adjusted: np.ndarray
    reject: np.ndarray
    alpha: float


def _pvalues(pvalues: Any) -> np.ndarray:
    try:
        p = np.asarray(pvalues, dtype=float)
    except (TypeError, ValueError) as error:
        raise TypeError(f"pvalues must be an array of numbers, got {type(pvalues).__name__}") from error
    if p.ndim == 0:
        p = p[None]
    finite = p[~np.isnan(p)]
    if finite.size and (finite.min() < 0.0 or finite.max() > 1.0):
        raise ValueError("pvalues must lie in [0, 1] (NaN marks a hypothesis that was not tested)")
    return p


def _sorted(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.argsort(p, axis=-1, kind="stable")  # NaN sort last
    ps = np.take_along_axis(p, order, axis=-1)
    m = np.sum(~np.isnan(p), axis=-1, keepdims=True)
    return order, ps, m


def _unsort(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    result = np.empty_like(values)
    np.put_along_axis(result, order, values, axis=-1)
    return result


def holm(pvalues: Any, *, alpha: float = 0.05, max_true: Any = None) -> MultipleTests:
    """Holm's step-down correction (family-wise error rate), optionally with Shaffer's logical bound.

    ``p̃_(i) = max_{j <= i} min(1, min(k, m - j + 1) · p_(j))`` with ``k = max_true`` (``k = m``:
    plain Holm); ``reject = p̃ <= alpha``. See the module docstring.

    Args:
        pvalues: ``[..., m]`` p-values in ``[0, 1]``; NaN marks a hypothesis not tested.
        alpha: family-wise error rate, in ``(0, 1)``.
        max_true: the most hypotheses of a row that can be true at once (an int, or an array of
            the leading shape); default: all that were tested.

    Returns:
        :class:`MultipleTests` with arrays of the input's shape (a scalar input counts as ``[1]``).

    Raises:
        ValueError: a p-value outside ``[0, 1]``; a bad ``alpha`` or ``max_true < 1``.

    Example:
        >>> holm([0.01, 0.02, float("nan")]).p_adjusted.tolist()
        [0.02, 0.02, nan]
        >>> holm([0.01, 0.02, 0.03, 0.04], max_true=2).p_adjusted.tolist()   # at most 2 true
        [0.02, 0.04, 0.06, 0.06]
    """
    alpha = check_range("alpha", alpha, low=0.0, high=1.0, low_open=True, high_open=True)
    p = _pvalues(pvalues)
    order, ps, m = _sorted(p)
    remaining = m - np.arange(p.shape[-1])
    if max_true is not None:
        k = np.asarray(max_true)
        if not np.issubdtype(k.dtype, np.number) or np.any(k < 1):
            raise ValueError(f"max_true must be an integer >= 1 (or an array of them), got {max_true!r}")
        remaining = np.minimum(remaining, np.asarray(k, dtype=float)[..., None])
    adjusted = np.minimum(1.0, remaining * ps)
    adjusted = np.fmax.accumulate(adjusted, axis=-1)
    adjusted = np.where(np.isnan(ps), np.nan, adjusted)
    adjusted = _unsort(adjusted, order)
    return MultipleTests(adjusted, np.nan_to_num(adjusted, nan=2.0) <= alpha, alpha)


def benjamini_hochberg(pvalues: Any, *, alpha: float = 0.05) -> MultipleTests:
    """Benjamini-Hochberg step-up correction (false discovery rate).

    ``q_(i) = min_{j >= i} min(1, m p_(j) / j)``; ``reject = q <= alpha``. See the module docstring.

    Args:
        pvalues: ``[..., m]`` p-values in ``[0, 1]``; NaN marks a hypothesis not tested.
        alpha: false discovery rate, in ``(0, 1)``.

    Returns:
        :class:`MultipleTests` with arrays of the input's shape (a scalar input counts as ``[1]``).

    Raises:
        ValueError: a p-value outside ``[0, 1]``; a bad ``alpha``.

    Example:
        >>> benjamini_hochberg([0.01, 0.02, 0.03, 0.5]).p_adjusted.round(4).tolist()
        [0.04, 0.04, 0.04, 0.5]
    """
    alpha = check_range("alpha", alpha, low=0.0, high=1.0, low_open=True, high_open=True)
    p = _pvalues(pvalues)
    order, ps, m = _sorted(p)
    rank = np.arange(1, p.shape[-1] + 1)
    with np.errstate(invalid="ignore"):
        q = np.minimum(1.0, ps * (m / rank))
    q = np.flip(np.fmin.accumulate(np.flip(q, axis=-1), axis=-1), axis=-1)
    q = np.where(np.isnan(ps), np.nan, q)
    q = _unsort(q, order)
    return MultipleTests(q, np.nan_to_num(q, nan=2.0) <= alpha, alpha)


@dataclass(frozen=True)
class FamilyReading:
    """What :func:`read_family` makes of a family's raw p-values; arrays ``[..., m]``.

    Attributes:
        p_adjusted: corrected p-values of ``μ = 0`` (NaN where untested).
        p_equivalence_adjusted: corrected p-values of ``|μ| >= margin``.
        significant: ``p_adjusted <= alpha``.
        equivalent: ``p_equivalence_adjusted <= alpha``.
        verdict: helps / hurts / equivalent / inconclusive / no verdict.
    """

    p_adjusted: np.ndarray
    p_equivalence_adjusted: np.ndarray
    significant: np.ndarray
    equivalent: np.ndarray
    verdict: np.ndarray


def read_family(
    p_value: Any,
    p_equivalence: Any,
    sign: Any,
    tested: Any,
    *,
    higher_is_better: Any,
    alpha: float,
    correction: str,
) -> FamilyReading:
    """Correct a family's ``2m`` p-values together and give each member its word.

    The one rule behind a study's :func:`~smoothflip.analysis.family_verdicts` and the pooled
    :func:`~smoothflip.analysis.meta_family.pooled_verdicts`: Holm's step-down with Shaffer's bound
    ``max_true = m`` (``m`` tested members), Benjamini-Hochberg, or none, over the p-values of
    ``μ = 0`` and of ``|μ| >= margin`` at once; then *helps* / *hurts* (``μ = 0`` rejected; the sign and
    the direction say which), *equivalent*, *inconclusive*, or *no verdict* (not tested).

    Args:
        p_value: ``[..., m]`` raw p-values of ``μ = 0`` (NaN where untested).
        p_equivalence: ``[..., m]`` raw TOST p-values (NaN: no margin, or untested).
        sign: ``[..., m]`` each effect's sign (0: no direction, never helps or hurts).
        tested: ``[..., m]`` which members were tested.
        higher_is_better: the metric's direction (broadcast to ``[..., m]``).
        alpha: the error rate.
        correction: ``"holm"``, ``"bh"`` or ``"none"``.

    Returns:
        A :class:`FamilyReading`.

    Example:
        >>> r = read_family([0.001, 0.5, 0.4], [0.9, 0.002, 0.3], [1.0, -1.0, 1.0], [True, True, True],
        ...                 higher_is_better=True, alpha=0.05, correction="holm")
        >>> r.verdict.tolist()
        ['helps', 'equivalent', 'inconclusive']
    """
    check_choice("correction", correction, CORRECTIONS)
    p0 = np.asarray(p_value, dtype=float)
    p_eq = np.asarray(p_equivalence, dtype=float)
    sign = np.asarray(sign, dtype=float)
    tested = np.asarray(tested, dtype=bool)
    size = p0.shape[-1]
    m = np.maximum(tested.sum(axis=-1), 1)
    both = np.concatenate([p0, p_eq], axis=-1)
    if correction == "holm":
        adjusted = holm(both, alpha=alpha, max_true=m).p_adjusted
    elif correction == "bh":
        adjusted = benjamini_hochberg(both, alpha=alpha).p_adjusted
    else:
        adjusted = both
    p0_adj, p_eq_adj = adjusted[..., :size], adjusted[..., size:]
    significant = np.nan_to_num(p0_adj, nan=2.0) <= alpha
    equivalent = np.nan_to_num(p_eq_adj, nan=2.0) <= alpha
    better_up = np.broadcast_to(np.asarray(higher_is_better, dtype=bool), p0.shape)
    helps = significant & (sign != 0) & ((sign > 0) == better_up)
    hurts = significant & (sign != 0) & ~helps
    verdict = np.select(
        [~tested, helps, hurts, equivalent], ["no verdict", "helps", "hurts", "equivalent"], "inconclusive"
    )
    return FamilyReading(p0_adj, p_eq_adj, significant, equivalent, verdict)
