r"""Random-effects meta-analysis on plain arrays: one pooled effect from many studies' effects.

Each of ``k`` studies gives an effect ``y_i`` (for a smoothflip study: the mean paired difference
``arm - baseline`` over its seeds) and its sampling variance ``v_i`` (``s_i² / n_i``). The
random-effects model says ``y_i = μ + u_i + e_i`` with ``u_i ~ N(0, τ²)`` (the studies' true effects
differ: other data, other models) and ``e_i ~ N(0, v_i)``. :func:`random_effects` estimates ``μ``,
``τ²`` and the intervals, with the formulas of metafor (Viechtbauer 2010), PyMARE and statsmodels:

- weights ``w_i = 1 / v_i`` (fixed effect) and ``w*_i = 1 / (v_i + τ²)``; ``μ̂ = Σw*y / Σw*`` with
  model standard error ``(Σw*)^(-1/2)``; Cochran's ``Q = Σw (y - μ̂_FE)²`` on ``k - 1`` df.
- ``method`` (how ``τ²`` is estimated): ``"reml"`` (default; the fixed point
  ``τ² = Σw*²((y - μ̂)² - v) / Σw*² + 1 / Σw*``, truncated at 0; when it does not converge the
  result falls back to ``"pm"``, then ``"dl"``, and says so in ``notes``), ``"pm"`` (Paule-Mandel:
  ``Σw*(y - μ̂)² = k - 1``; 0 when the left side is already below at ``τ² = 0``), ``"dl"``
  (DerSimonian-Laird, ``max(0, (Q - (k - 1)) / (Σw - Σw² / Σw))``; statsmodels does **not**
  truncate at 0) and ``"fe"`` (fixed effect, ``τ² = 0``).
- ``interval``: ``"hksj"`` (default; Hartung-Knapp-Sidik-Jonkman: ``q = Σw*(y - μ̂)² / (k - 1)``,
  ``SE = sqrt(q / Σw*)``, t with ``k - 1`` df; metafor's ``test="knha"``), ``"hksj_modified"``
  (``q ← max(q, 1)``, never narrower than the model's interval; metafor's ``test="adhoc"``) or
  ``"wald"`` (normal with the model SE; DerSimonian-Laird's classic interval, anti-conservative with
  few studies: IntHout et al. 2014 measured error rates above 30% where HKSJ stays near nominal).
- the **prediction interval** (Riley et al. 2011) for the effect in a new study like these:
  ``μ̂ ± t_{k-2} sqrt(τ² + SE_model²)``; it needs ``k >= 3``.
- **I²**, as metafor defines it for random-effects models: ``100 τ² / (τ² + ṽ)`` with the typical
  within-study variance ``ṽ = (k - 1) Σw / ((Σw)² - Σw²)``, and ``H² = (τ² + ṽ) / ṽ``. It equals
  Higgins' ``(Q - df) / Q`` (statsmodels, PyMARE) only for DerSimonian-Laird. For ``method="fe"``
  it is Higgins' ``100 max(0, (Q - df) / Q)`` and ``H² = Q / df``, as in metafor.

**Few studies.** ``k = 1`` gives the study's own estimate with a normal interval and a note
(nothing is pooled, ``τ²`` is NaN); ``k = 2`` says that ``τ²`` is not estimable (the value shown
comes from the method and carries almost no information; no prediction interval); ``k <= 4``
warns that intervals are wide and ``τ²`` unreliable (Bender et al. 2018: correct but with very low
power). HKSJ can be *narrower* than the fixed-effect interval when the studies agree closely
(Wiksten et al. 2016): show the fixed-effect and modified-HKSJ rows beside it.

:func:`leave_one_out` refits without each study in turn; :meth:`MetaResult.tost` tests equivalence
of the pooled effect to 0 within a margin (two one-sided tests on the interval's distribution).

Checked against metafor on the BCG vaccine trials (``dat.bcg``, 1e-4), statsmodels'
``combine_effects`` and PyMARE's Knapp-Hartung estimators (``tests/test_meta.py``).

Example:
    >>> from smoothflip.analysis.meta import random_effects
    >>> r = random_effects([0.30, 0.10, 0.45, 0.22, 0.05], [0.01, 0.02, 0.015, 0.01, 0.03])
    >>> round(r.estimate, 4), tuple(round(x, 4) for x in r.ci), r.method, r.k
    (0.25, (0.0713, 0.4287), 'reml', 5)
    >>> round(r.tau2, 5), round(r.i2, 1), tuple(round(x, 3) for x in r.pi)
    (0.00324, 18.0, (-0.013, 0.513))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, stats

from smoothflip._validation import check_choice, check_int, check_range
from smoothflip.analysis.verdicts import tost_p_value

__all__ = [
    "INTERVALS",
    "INTERVAL_NAMES",
    "METHODS",
    "METHOD_NAMES",
    "LeaveOneOut",
    "MetaResult",
    "leave_one_out",
    "random_effects",
    "reading",
    "sensitivity",
]

#: How ``τ²`` is estimated.
METHODS = ("reml", "pm", "dl", "fe")
#: How the interval of the pooled effect is computed.
INTERVALS = ("hksj", "hksj_modified", "wald")
_FALLBACK = {"reml": ("pm", "dl"), "pm": ("dl",)}
#: Each method and interval in words, for tables, captions and reports.
METHOD_NAMES = {"reml": "REML", "pm": "Paule-Mandel", "dl": "DerSimonian-Laird", "fe": "fixed effect"}
INTERVAL_NAMES = {"hksj": "HKSJ", "hksj_modified": "modified HKSJ", "wald": "Wald"}


def reading(method: str, interval: str) -> str:
    """How a pooled estimate was read, in words: ``reading("reml", "hksj") == "REML + HKSJ"``."""
    return f"{METHOD_NAMES[method]} + {INTERVAL_NAMES[interval]}"


@dataclass(frozen=True)
class MetaResult:
    """A pooled effect and what goes with it (:func:`random_effects`).

    Attributes:
        estimate: the pooled effect ``μ̂``.
        se: the standard error the interval uses (HKSJ-adjusted for ``"hksj"`` /
            ``"hksj_modified"``, the model SE for ``"wald"``), as metafor reports it.
        ci: ``(low, high)`` at ``level``.
        pi: the prediction interval ``(low, high)`` (Riley 2011, t on ``k - 2`` df), None for ``k < 3``.
        tau2: between-study variance ``τ²`` (NaN for ``k = 1``).
        tau: its square root.
        q: Cochran's Q (fixed-effect weights).
        q_df: its degrees of freedom ``k - 1``.
        q_pvalue: the chi-square p-value of homogeneity (NaN for ``k = 1``).
        i2: I² in percent, metafor's ``τ²``-based definition (module docstring); NaN for ``k = 1``.
        h2: H² (module docstring).
        weights: each study's share of the pooled estimate (``w*_i / Σw*``, sums to 1).
        k: studies pooled.
        df: degrees of freedom of the interval's t (``inf`` for ``"wald"`` and ``k = 1``).
        p_value: two-sided p-value of ``μ = 0`` on the interval's distribution.
        se_model: the model standard error ``(Σw*)^(-1/2)``.
        method: the ``τ²`` method actually used (after a fallback: not the one asked for).
        requested: the method asked for.
        interval: ``"hksj"``, ``"hksj_modified"`` or ``"wald"``.
        level: the interval's level.
        notes: sentences about what was done (a fallback; a single study).
        warnings: sentences about what to distrust (few studies, τ² not estimable).
        y: the effects, as given.
        v: their variances, as given.
    """

    estimate: float
    se: float
    ci: tuple[float, float]
    pi: tuple[float, float] | None
    tau2: float
    tau: float
    q: float
    q_df: int
    q_pvalue: float
    i2: float
    h2: float
    weights: tuple[float, ...]
    k: int
    df: float
    p_value: float
    se_model: float
    method: str
    requested: str
    interval: str
    level: float
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    y: tuple[float, ...] = ()
    v: tuple[float, ...] = ()

    def critical(self, level: float) -> float:
        """The interval's two-sided critical value at ``level`` (t on :attr:`df`, or normal)."""
        level = check_range("level", level, low=0.0, high=1.0, low_open=True, high_open=True)
        q = 0.5 + level / 2.0
        return float(stats.norm.ppf(q) if math.isinf(self.df) else stats.t.ppf(q, self.df))

    def interval_at(self, level: float) -> tuple[float, float]:
        """The pooled effect's interval at another ``level`` (e.g. ``1 - alpha / m`` simultaneous)."""
        half = self.critical(level) * self.se
        return (self.estimate - half, self.estimate + half)

    def tost(self, margin: float) -> float:
        """p-value of the two one-sided tests of ``|μ| >= margin`` (small: equivalent within ``±margin``).

        On the interval's distribution: ``max(P(T >= (μ̂ + δ) / SE), P(T <= (μ̂ - δ) / SE))``.

        Example:
            >>> r = random_effects([0.01, -0.02, 0.0, 0.015], [1e-4, 1e-4, 1e-4, 1e-4])
            >>> round(r.tost(0.1), 4), round(r.tost(0.01), 2)
            (0.0005, 0.17)
        """
        delta = check_range("margin", margin, low=0.0, low_open=True)
        return tost_p_value(self.estimate, self.se, self.df, delta)

    def leave_one_out(self) -> LeaveOneOut:
        """:func:`leave_one_out` with this result's studies and options."""
        return leave_one_out(self.y, self.v, method=self.requested, interval=self.interval, level=self.level)


@dataclass(frozen=True)
class LeaveOneOut:
    """Each study left out in turn (:func:`leave_one_out`); arrays ``[k]``, entry ``i`` without study ``i``.

    Attributes:
        estimate: pooled effect without study ``i``.
        ci_low: lower end of its interval.
        ci_high: upper end.
        tau2: its ``τ²``.
        i2: its I² (percent).
    """

    estimate: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    tau2: np.ndarray
    i2: np.ndarray

    @property
    def range(self) -> tuple[float, float]:
        """Smallest and largest pooled effect over the left-out studies."""
        return (float(np.min(self.estimate)), float(np.max(self.estimate)))


def _sf(x: float, df: float) -> float:
    return float(stats.norm.sf(x) if math.isinf(df) else stats.t.sf(x, df))


def _check(y: Any, v: Any) -> tuple[np.ndarray, np.ndarray]:
    try:
        y = np.asarray(y, dtype=float)
        v = np.asarray(v, dtype=float)
    except (TypeError, ValueError) as error:
        raise TypeError(
            "y and v must be arrays of numbers (one effect and one variance per study)"
        ) from error
    if y.ndim != 1 or v.ndim != 1:
        raise ValueError(
            f"y and v must be one-dimensional (one entry per study), got shapes {y.shape}, {v.shape}"
        )
    if y.shape != v.shape:
        raise ValueError(f"y and v must have one entry per study each, got {y.size} and {v.size}")
    if y.size == 0:
        raise ValueError("y must hold at least one study's effect, got none")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"y must be finite, got {y.tolist()}")
    if not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise ValueError(
            f"v must hold finite variances > 0 (floor a zero variance before pooling), got {v.tolist()}"
        )
    return y, v


def _mu(y: np.ndarray, v: np.ndarray, tau2: float) -> tuple[float, np.ndarray]:
    w = 1.0 / (v + tau2)
    return float(np.sum(w * y) / np.sum(w)), w


def _dl(y: np.ndarray, v: np.ndarray) -> float:
    w = 1.0 / v
    mu = np.sum(w * y) / np.sum(w)
    q = float(np.sum(w * (y - mu) ** 2))
    c = float(np.sum(w) - np.sum(w**2) / np.sum(w))
    return max(0.0, (q - (y.size - 1)) / c) if c > 0 else 0.0


def _pm(y: np.ndarray, v: np.ndarray, tol: float) -> float | None:
    k = y.size

    def excess(tau2: float) -> float:
        mu, w = _mu(y, v, tau2)
        return float(np.sum(w * (y - mu) ** 2)) - (k - 1)

    if excess(0.0) <= 0:
        return 0.0
    high = max(float(np.var(y, ddof=1)), float(np.max(v)), 1e-300)
    for _ in range(200):
        if excess(high) < 0:
            break
        high *= 2.0
    else:
        return None
    try:
        return float(
            optimize.brentq(excess, 0.0, high, xtol=tol * float(np.mean(v)), rtol=1e-14, maxiter=500)
        )
    except (RuntimeError, ValueError):
        return None


def _reml(y: np.ndarray, v: np.ndarray, tol: float, max_iter: int) -> float | None:
    tau2 = _dl(y, v)
    scale = float(np.mean(v))  # tolerances relative to the variances: scaling y and v changes nothing
    for _ in range(max_iter):
        mu, w = _mu(y, v, tau2)
        new = float(np.sum(w**2 * ((y - mu) ** 2 - v)) / np.sum(w**2) + 1.0 / np.sum(w))
        new = max(new, 0.0)
        if abs(new - tau2) <= tol * max(scale, tau2):
            return new
        tau2 = new
    return None


def _tau2(
    method: str, y: np.ndarray, v: np.ndarray, tol: float, max_iter: int
) -> tuple[float, str, list[str]]:
    """``τ²`` by ``method``, falling back (REML -> PM -> DL) when an iteration does not converge."""
    notes: list[str] = []
    for candidate in (method, *_FALLBACK.get(method, ())):
        if candidate == "fe":
            return 0.0, "fe", notes
        if candidate == "dl":
            return _dl(y, v), "dl", notes
        found = _pm(y, v, tol) if candidate == "pm" else _reml(y, v, tol, max_iter)
        if found is not None:
            return found, candidate, notes
        notes.append(f"{candidate.upper()} did not converge")
    raise AssertionError("unreachable: DL always gives an estimate")  # pragma: no cover


def random_effects(
    y: Any,
    v: Any,
    *,
    method: str = "reml",
    interval: str = "hksj",
    level: float = 0.95,
    tol: float = 1e-10,
    max_iter: int = 1000,
) -> MetaResult:
    """Pool per-study effects ``y`` with sampling variances ``v`` (random effects; module docstring).

    Args:
        y: effects ``[k]``, one per study (finite).
        v: their sampling variances ``[k]`` (finite, ``> 0``).
        method: ``"reml"`` (default), ``"pm"``, ``"dl"`` or ``"fe"``: how ``τ²`` is estimated.
        interval: ``"hksj"`` (default), ``"hksj_modified"`` or ``"wald"``.
        level: level of the confidence and prediction intervals, in ``(0, 1)``.
        tol: convergence tolerance on ``τ²`` for REML and PM, relative to ``max(τ², mean(v))``.
        max_iter: most REML iterations before the fallback to PM.

    Returns:
        A :class:`MetaResult`.

    Raises:
        ValueError: empty or mismatched arrays, a non-finite effect, a variance that is not
            finite and positive, a bad option.
        TypeError: non-numeric input.

    Example:
        >>> r = random_effects([0.5], [0.04])                     # one study: its own result
        >>> r.estimate, round(r.ci[0], 3), r.pi, r.notes[0][:30]
        (0.5, 0.108, None, 'one study: its own estimate an')
        >>> r = random_effects([0.1, 0.2, 0.3, 0.2], [0.04, 0.04, 0.04, 0.04])
        >>> r.tau2, r.warnings[0][:25]                            # Q < k - 1: no heterogeneity
        (0.0, '4 studies: the intervals ')
    """
    y, v = _check(y, v)
    check_choice("method", method, METHODS)
    check_choice("interval", interval, INTERVALS)
    level = check_range("level", level, low=0.0, high=1.0, low_open=True, high_open=True)
    tol = check_range("tol", tol, low=0.0, low_open=True)
    max_iter = check_int("max_iter", max_iter, low=1)
    k = int(y.size)
    z = float(stats.norm.ppf(0.5 + level / 2.0))
    given = {"y": tuple(y.tolist()), "v": tuple(v.tolist()), "requested": method, "interval": interval}
    if k == 1:
        se = math.sqrt(v[0])
        p = 2.0 * float(stats.norm.sf(abs(y[0]) / se))
        return MetaResult(
            estimate=float(y[0]),
            se=se,
            ci=(float(y[0] - z * se), float(y[0] + z * se)),
            pi=None,
            tau2=math.nan,
            tau=math.nan,
            q=0.0,
            q_df=0,
            q_pvalue=math.nan,
            i2=math.nan,
            h2=math.nan,
            weights=(1.0,),
            k=1,
            df=math.inf,
            p_value=p,
            se_model=se,
            method=method,
            level=level,
            notes=("one study: its own estimate and normal interval; nothing was pooled",),
            **given,
        )

    tau2, used, notes = _tau2(method, y, v, tol, max_iter)
    if notes:
        notes = [f"{'; '.join(notes)}: tau^2 by {used.upper()} instead"]
    w_fe = 1.0 / v
    mu_fe = float(np.sum(w_fe * y) / np.sum(w_fe))
    q = float(np.sum(w_fe * (y - mu_fe) ** 2))
    df_q = k - 1
    q_p = float(stats.chi2.sf(q, df_q))
    mu, w = _mu(y, v, tau2)
    se_model = 1.0 / math.sqrt(float(np.sum(w)))
    if interval == "wald":
        se, df = se_model, math.inf
    else:
        scale = float(np.sum(w * (y - mu) ** 2)) / df_q
        if interval == "hksj_modified":
            scale = max(scale, 1.0)
        se, df = math.sqrt(scale / float(np.sum(w))), float(df_q)
    crit = z if math.isinf(df) else float(stats.t.ppf(0.5 + level / 2.0, df))
    ci = (mu - crit * se, mu + crit * se)
    if se > 0:
        p = 2.0 * _sf(abs(mu) / se, df)
    else:
        p = 0.0 if mu != 0 else 1.0
    pi = None
    if k >= 3:
        half = float(stats.t.ppf(0.5 + level / 2.0, k - 2)) * math.sqrt(tau2 + se_model**2)
        pi = (mu - half, mu + half)
    if used == "fe":
        i2 = 100.0 * max(0.0, (q - df_q) / q) if q > 0 else 0.0
        h2 = q / df_q
    else:
        sw, sw2 = float(np.sum(w_fe)), float(np.sum(w_fe**2))
        typical = df_q * sw / (sw**2 - sw2) if sw**2 > sw2 else math.inf
        i2 = 100.0 * tau2 / (tau2 + typical) if math.isfinite(typical) else 0.0
        h2 = (tau2 + typical) / typical if math.isfinite(typical) else 1.0
    warns = []
    if k == 2:
        warns.append(
            "2 studies: tau^2 is not estimable (the value shown comes from the method and says "
            "almost nothing); no prediction interval"
        )
    if k <= 4:
        warns.append(f"{k} studies: the intervals are wide and tau^2 is unreliable with so few studies")
    return MetaResult(
        estimate=mu,
        se=se,
        ci=ci,
        pi=pi,
        tau2=tau2,
        tau=math.sqrt(tau2),
        q=q,
        q_df=df_q,
        q_pvalue=q_p,
        i2=i2,
        h2=h2,
        weights=tuple((w / np.sum(w)).tolist()),
        k=k,
        df=df,
        p_value=min(1.0, p),
        se_model=se_model,
        method=used,
        level=level,
        notes=tuple(notes),
        warnings=tuple(warns),
        **given,
    )


def leave_one_out(
    y: Any, v: Any, *, method: str = "reml", interval: str = "hksj", level: float = 0.95
) -> LeaveOneOut:
    """Refit :func:`random_effects` without each study in turn (needs ``k >= 2``).

    Example:
        >>> loo = leave_one_out([0.3, 0.1, 0.45, 0.22, 0.05], [0.01, 0.02, 0.015, 0.01, 0.03])
        >>> tuple(round(x, 3) for x in loo.range)
        (0.207, 0.278)
    """
    y, v = _check(y, v)
    if y.size < 2:
        raise ValueError(f"leave_one_out needs at least 2 studies, got {y.size}")
    fits = [
        random_effects(np.delete(y, i), np.delete(v, i), method=method, interval=interval, level=level)
        for i in range(y.size)
    ]
    return LeaveOneOut(
        estimate=np.array([f.estimate for f in fits]),
        ci_low=np.array([f.ci[0] for f in fits]),
        ci_high=np.array([f.ci[1] for f in fits]),
        tau2=np.array([f.tau2 for f in fits]),
        i2=np.array([f.i2 for f in fits]),
    )


def sensitivity(result: MetaResult) -> dict[str, MetaResult]:
    """The same studies under the other readings a careful reader asks for.

    ``"fixed effect"`` (``method="fe"``, Wald), ``"wald"`` (the method, normal interval) and
    ``"hksj_modified"`` (the method, ``q ← max(q, 1)``), each at the result's level.

    Example:
        >>> r = random_effects([0.3, 0.1, 0.45, 0.22, 0.05], [0.01, 0.02, 0.015, 0.01, 0.03])
        >>> sorted(sensitivity(r))
        ['fixed effect', 'hksj_modified', 'wald']
    """
    if result.k < 2:
        return {}
    options: dict[str, dict[str, str]] = {
        "fixed effect": {"method": "fe", "interval": "wald"},
        "wald": {"method": result.requested, "interval": "wald"},
        "hksj_modified": {"method": result.requested, "interval": "hksj_modified"},
    }
    return {
        name: random_effects(result.y, result.v, level=result.level, **opts) for name, opts in options.items()
    }
