"""Sparse next-token distributions and the Zipf arithmetic behind the synthetic language.

:class:`TokenDistributions` is the sparse ``indices`` / ``probs`` form of many next-token
distributions (what the LM metrics accept); :func:`zipf_entropy`, ``_zipf``, ``_entropy`` and
``_solve_exponent`` compute the Zipf weights, their entropy and the exponent that reaches a target
entropy (the language's entropy knob). Re-exported by :mod:`smoothflip.data.language`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import brentq

from smoothflip._validation import check_int, check_number


def zipf_entropy(candidates: int, exponent: float) -> float:
    """Entropy (nats) of the Zipf distribution ``p_r ∝ r^(-exponent)`` over ``r = 1..candidates``.

    Example:
        >>> round(zipf_entropy(32, 0.0), 6) == round(math.log(32), 6)
        True
        >>> round(zipf_entropy(32, 1.0), 4)
        2.8759
    """
    candidates = check_int("candidates", candidates, low=1)
    exponent = check_number("zipf_exponent", exponent)
    if exponent < 0:
        raise ValueError(f"zipf_exponent must be >= 0, got {exponent!r}")
    return _entropy(_zipf(candidates, exponent))


@dataclass(frozen=True)
class TokenDistributions:
    """Sparse next-token distributions: ``probs[..., w]`` is the probability of ``indices[..., w]``.

    Each row has ``W`` slots, sorted by probability (largest first); unused slots have probability
    0 (their index is meaningless, and only such slots may repeat an index). An all-zero row means
    "no next token here" (the target is ``<pad>``). This is the sparse form the LM metrics accept.

    Attributes:
        indices: ``[..., W]`` int64 token ids.
        probs: ``[..., W]`` float64 probabilities; each row sums to 1 (or is all zero).
        vocab_size: ``V``.
    """

    indices: np.ndarray
    probs: np.ndarray
    vocab_size: int

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the positions (``indices.shape[:-1]``)."""
        return tuple(self.indices.shape[:-1])

    def dense(self) -> np.ndarray:
        """``[..., V]`` float64 probabilities (``8 * V`` bytes per position).

        Example:
            >>> TokenDistributions(np.array([[2, 0]]), np.array([[1.0, 0.0]]), 3).dense()
            array([[0., 0., 1.]])
        """
        out = np.zeros((*self.shape, self.vocab_size))
        flat_out = out.reshape(-1, self.vocab_size)
        rows = np.repeat(np.arange(flat_out.shape[0]), self.indices.shape[-1])
        np.add.at(flat_out, (rows, self.indices.reshape(-1)), self.probs.reshape(-1))
        return out

    def entropy(self) -> np.ndarray:
        """``[...]`` entropy in nats of each distribution (0 for an all-zero row)."""
        p = self.probs
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
        return -terms.sum(axis=-1)

    def __getitem__(self, key: Any) -> TokenDistributions:
        """Select positions (``key`` indexes the leading dimensions), e.g. a batch of sequences."""
        return TokenDistributions(self.indices[key], self.probs[key], self.vocab_size)


def _zipf(candidates: int, exponent: float) -> np.ndarray:
    if math.isinf(exponent):
        p = np.zeros(candidates)
        p[0] = 1.0
        return p
    w = np.arange(1, candidates + 1, dtype=np.float64) ** (-exponent)
    return w / w.sum()


def _solve_exponent(candidates: int, target: float) -> float:
    """The Zipf exponent whose entropy over ``candidates`` ranks is ``target`` nats."""
    top = math.log(candidates)
    if not 0.0 <= target <= top + 1e-12:
        raise ValueError(
            f"mean_entropy must be in [0, log(candidates)] = [0, {top:.4f}] nats for "
            f"candidates={candidates}, got {target!r} (raise candidates for more entropy)"
        )
    if target >= top - 1e-12:
        return 0.0
    if target == 0.0:
        return math.inf
    hi = 1.0
    while _entropy(_zipf(candidates, hi)) > target:
        hi *= 2.0
        if hi > 1e4:  # entropy below what float64 can resolve: effectively deterministic
            return math.inf
    return float(brentq(lambda s: _entropy(_zipf(candidates, s)) - target, 0.0, hi, xtol=1e-14, rtol=1e-14))


def _entropy(p: np.ndarray) -> float:
    nz = p[p > 0]
    return float(-(nz * np.log(nz)).sum())
