"""A synthetic language whose true next-token distribution is known at every position.

:class:`SyntheticLanguage` is a seeded, sparse, higher-order Markov chain over ``vocab_size``
tokens. Because every next-token distribution is known exactly, a language model trained on it can
be scored against the *truth* (:func:`smoothflip.lm.metrics.kl_to_truth`), not only against the
sampled next token — the setting in which to ask whether label smoothing makes a model's
distribution closer to, or further from, the real one.

**Tokens.** ``0`` is ``<pad>`` and ``1`` is ``<bos>`` (every sequence starts with it; neither is
ever a next token). Then come the named words of the phrasebook (``hello``, ``how``, ``are``,
``you``, ...), and every other token is named after its id: ``w17``.

**The generic rule** (every context the phrasebook does not cover). The next token after a
history ``... x_{t-2}, x_{t-1}, x_t`` is drawn from a sparse set of ``candidates`` tokens with
**Zipfian** weights ``p_r ∝ r^(-s)`` over ranks ``r = 1..candidates``:

- *which* tokens are candidates depends on the last token ``x_t`` (a fixed random set per token);
- *how they are ranked* depends on ``x_t`` and on the *classes* of the ``order - 1`` tokens
  before it (each token has one of ``classes`` random classes, like a part of speech), through a
  hash of the context. So the chain has order ``order``, and a model that only sees the last token
  can at best reach the entropy of the mixture over rankings, which is higher.

Every generic context therefore has the same entropy ``H(candidates, s)``: the **entropy knob**.
Give ``mean_entropy`` (nats; the Zipf exponent ``s`` is solved for it exactly) or ``zipf_exponent``
directly. Lower entropy means fewer right answers per context; ``mean_entropy = log(candidates)``
makes all candidates equally likely (``s = 0``), ``0`` makes the chain deterministic. With
``candidates = 32``: ``s = 0`` → 3.47 nats, ``s = 1`` → 2.88, ``s = 1.5`` → 2.15, ``s = 2`` → 1.47,
``s = 3`` → 0.67; the default ``mean_entropy = 2.0`` gives ``s = 1.60``.

**The phrasebook** (``phrases=True``): a few hand-written contexts that override the generic rule,
matched on the longest suffix of the history (so the chain's true order is at least 3):

=====================  ===========================================================================
context                next-token distribution (``*``: the rest follows the generic rule)
=====================  ===========================================================================
``<bos>``              hello 0.25, ``*`` 0.75
``hello``              how 0.5, there 0.2, world 0.1, ``*`` 0.2
``hello how``          are 0.8, is 0.1, do 0.1
``hello how are``      you 0.6, things 0.15, we 0.1, they 0.1, ya 0.05
``how are you``        doing 0.4, today 0.3, ``*`` 0.3
=====================  ===========================================================================

About one sequence in ten starts "hello how are", after which "you" is the most likely token.

Example:
    >>> lang = SyntheticLanguage(200, seed=0)
    >>> lang.most_likely("hello how are", top=3)
    [('you', 0.6), ('things', 0.15), ('we', 0.1)]
    >>> seqs = lang.sample(4, 12, seed=1)           # [N, length], seqs[:, 0] == <bos>
    >>> seqs.shape, lang.decode(seqs[0])[:5]
    ((4, 12), '<bos>')
    >>> true = lang.true_distributions(seqs)        # sparse: indices / probs [N, length - 1, W]
    >>> true.shape, true.dense().shape
    ((4, 11), (4, 11, 200))
    >>> round(lang.generic_entropy, 6)              # the default mean_entropy
    2.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, ClassVar, Protocol, cast, runtime_checkable

import numpy as np
from scipy.optimize import brentq

from smoothflip._validation import SeedLike, as_generator, check_int, check_number

__all__ = [
    "BOS",
    "CORPUS_SPLITS",
    "PAD",
    "Corpus",
    "LanguageData",
    "SyntheticLanguage",
    "TokenDistributions",
    "language_dataset",
    "zipf_entropy",
]

#: Id of the padding token ``<pad>`` (never produced by the chain).
PAD = 0
#: Id of the begin-of-sequence token ``<bos>`` (position 0 of every sequence, never a next token).
BOS = 1
#: The splits of a :class:`Corpus`, in order.
CORPUS_SPLITS: tuple[str, ...] = ("train", "validation", "test")

_SPECIALS = ("<pad>", "<bos>")
_WORDS = ("hello", "how", "are", "you", "things", "we", "they", "ya", "there", "world", "is", "do",
          "doing", "today")  # fmt: skip
# (context, distribution); "*" is the mass left to the generic rule of the same context.
_PHRASES: tuple[tuple[tuple[str, ...], dict[str, float]], ...] = (
    (("<bos>",), {"hello": 0.25, "*": 0.75}),
    (("hello",), {"how": 0.5, "there": 0.2, "world": 0.1, "*": 0.2}),
    (("hello", "how"), {"are": 0.8, "is": 0.1, "do": 0.1}),
    (("hello", "how", "are"), {"you": 0.6, "things": 0.15, "we": 0.1, "they": 0.1, "ya": 0.05}),
    (("how", "are", "you"), {"doing": 0.4, "today": 0.3, "*": 0.3}),
)
_DEFAULT_ENTROPY = 2.0

_U64 = np.uint64


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


@dataclass(frozen=True)
class SyntheticLanguage:
    """A seeded sparse Markov chain with Zipfian next-token distributions (see the module docstring).

    Args:
        vocab_size: ``V``, at least ``candidates + 2`` (and 16 with the phrasebook).
        order: how many previous tokens the generic rule depends on (``>= 1``; default 2).
        mean_entropy: entropy in nats of every generic context, in ``[0, log(candidates)]``;
            default 2.0 when ``zipf_exponent`` is not given either.
        zipf_exponent: the Zipf exponent ``s >= 0`` instead of ``mean_entropy``.
        candidates: plausible next tokens per generic context (default 32).
        classes: token classes whose sequence, for the ``order - 1`` tokens before the last,
            picks the ranking of the candidates (default 4; 1 makes the chain a bigram chain).
        seed: seed of the chain itself (tables and hash salt), in ``[0, 2**63)``.
        phrases: embed the phrasebook (default True).

    Attributes:
        exponent: the Zipf exponent in use.
        generic_entropy: the exact entropy (nats) of every generic context.
        token_names: ``V`` names: ``<pad>``, ``<bos>``, the phrasebook's words, ``w16``, ...

    Example:
        >>> a, b = SyntheticLanguage(300, mean_entropy=1.0), SyntheticLanguage(300, mean_entropy=3.0)
        >>> a.exponent > b.exponent, round(a.generic_entropy, 6), round(b.generic_entropy, 6)
        (True, 1.0, 3.0)
    """

    vocab_size: int
    _: KW_ONLY
    order: int = 2
    mean_entropy: float | None = None
    zipf_exponent: float | None = None
    candidates: int = 32
    classes: int = 4
    seed: int = 0
    phrases: bool = True

    exponent: float = field(init=False, repr=False, compare=False)
    generic_entropy: float = field(init=False, repr=False, compare=False)

    pad_id: ClassVar[int] = PAD
    bos_id: ClassVar[int] = BOS

    def __post_init__(self) -> None:
        k = check_int("candidates", self.candidates, low=1)
        min_vocab = max(k + 2, 2 + len(_WORDS) if self.phrases else 3)
        check_int("vocab_size", self.vocab_size, low=min_vocab)
        check_int("order", self.order, low=1)
        check_int("classes", self.classes, low=1)
        check_int("seed", self.seed, low=0, high=2**63 - 1)
        if not isinstance(self.phrases, bool):
            raise TypeError(f"phrases must be True or False, got {self.phrases!r}")
        if self.mean_entropy is not None and self.zipf_exponent is not None:
            raise ValueError("give mean_entropy or zipf_exponent, not both")
        if self.zipf_exponent is not None:
            s = check_number("zipf_exponent", self.zipf_exponent)
            if s < 0:
                raise ValueError(f"zipf_exponent must be >= 0, got {s!r}")
        else:
            if self.mean_entropy is None:
                object.__setattr__(self, "mean_entropy", _DEFAULT_ENTROPY)
            s = _solve_exponent(k, check_number("mean_entropy", self.mean_entropy))
        object.__setattr__(self, "exponent", s)
        object.__setattr__(self, "generic_entropy", _entropy(_zipf(k, s)))
        self._build_tables()

    # ---------------------------------------------------------------------------------- tokens

    @property
    def token_names(self) -> tuple[str, ...]:
        """``V`` token names, indexed by id."""
        return self._names

    @property
    def never_target(self) -> np.ndarray:
        """``[V]`` bool mask of the tokens that are never a next token (``<pad>``, ``<bos>``).

        Pass it as ``never_target=`` to :func:`smoothflip.lm.causal_lm_loss` to keep smoothing mass
        off them.
        """
        mask = np.zeros(self.vocab_size, dtype=bool)
        mask[[PAD, BOS]] = True
        return mask

    def encode(self, words: str | Sequence[str]) -> np.ndarray:
        """Token ids ``[n]`` (int64) of words (a whitespace-separated string or a list of names).

        Example:
            >>> SyntheticLanguage(100).encode("<bos> hello w20")
            array([ 1,  2, 20])
        """
        if isinstance(words, str):
            words = words.split()
        ids = []
        for word in words:
            if word not in self._ids:
                raise ValueError(
                    f"unknown token {word!r}: names are <pad>, <bos>, the phrasebook's words and w<id>"
                )
            ids.append(self._ids[word])
        return np.array(ids, dtype=np.int64)

    def decode(self, ids: Any) -> str:
        """The names of token ids ``[n]``, joined by spaces.

        Example:
            >>> SyntheticLanguage(100).decode([1, 2, 3, 4])
            '<bos> hello how are'
        """
        array = np.asarray(ids)
        if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
            raise ValueError(f"ids must be a 1-D sequence of token ids, got shape {array.shape}")
        self._check_ids("ids", array)
        return " ".join(self._names[i] for i in array.tolist())

    # ---------------------------------------------------------------------------------- the chain

    def next_token_distribution(self, context: str | Sequence[str] | Any = ()) -> np.ndarray:
        """The true distribution ``[V]`` (float64) of the token after ``context``.

        ``context`` is the history so far: a string of words, a list of names, or token ids. The
        sequence's leading ``<bos>`` may be given or left out (the history is padded with
        ``<bos>`` on the left); the empty context gives the distribution of the first token.

        Example:
            >>> lang = SyntheticLanguage(100)
            >>> p = lang.next_token_distribution("hello how are")
            >>> lang.decode([int(p.argmax())]), float(p.sum())
            ('you', 1.0)
        """
        ids = self._context_ids(context)
        window = self._windows(ids[None, :])[:, -1]  # the context of the next token
        idx, probs = self._rows(window)
        return TokenDistributions(idx[0], probs[0], self.vocab_size).dense()

    def most_likely(
        self, context: str | Sequence[str] | Any = (), *, top: int = 5
    ) -> list[tuple[str, float]]:
        """The ``top`` most likely next tokens after ``context``, as ``(name, probability)``.

        Example:
            >>> SyntheticLanguage(100).most_likely("hello how", top=2)
            [('are', 0.8), ('is', 0.1)]
        """
        top = check_int("top", top, low=1)
        p = self.next_token_distribution(context)
        order = np.argsort(-p, kind="stable")[:top]
        return [(self._names[i], round(float(p[i]), 12)) for i in order if p[i] > 0]

    def sample(self, num_sequences: int, length: int, *, seed: SeedLike) -> np.ndarray:
        """Sample sequences from the chain.

        Args:
            num_sequences: ``N >= 1``.
            length: tokens per sequence, ``<bos>`` included (``>= 2``).
            seed: an int or a ``numpy.random.Generator`` (the global RNG is never used).

        Returns:
            ``[N, length]`` int64 token ids; column 0 is ``<bos>``, the rest are drawn from the
            chain (never ``<pad>`` or ``<bos>``).

        Example:
            >>> lang = SyntheticLanguage(100)
            >>> (lang.sample(3, 8, seed=0) == lang.sample(3, 8, seed=0)).all()
            np.True_
        """
        n = check_int("num_sequences", num_sequences, low=1)
        length = check_int("length", length, low=2)
        rng = as_generator(seed)
        width = self._window
        window = np.full((n, width), BOS, dtype=np.int64)
        out = np.empty((n, length), dtype=np.int64)
        out[:, 0] = BOS
        for t in range(1, length):
            idx, probs = self._rows(window)
            cum = np.cumsum(probs, axis=1)
            u = rng.random(n) * cum[:, -1]
            pick = np.argmax(cum > u[:, None], axis=1)
            token = idx[np.arange(n), pick]
            out[:, t] = token
            window = np.concatenate([window[:, 1:], token[:, None]], axis=1)
        return out

    def true_distributions(self, sequences: Any, *, dense: bool = False) -> TokenDistributions | np.ndarray:
        """The true distribution of every next token of ``sequences``.

        Args:
            sequences: ``[N, L]`` token ids starting with ``<bos>`` (as :meth:`sample` returns);
                ``<pad>`` may follow the end of a sequence.
            dense: return a dense ``[N, L - 1, V]`` array instead of the sparse form
                (``8 * N * (L - 1) * V`` bytes).

        Returns:
            Position ``t`` holds ``P(x_{t+1} | x_0..x_t)``: aligned with ``logits[:, :-1]`` and
            ``labels[:, 1:]`` of a causal LM fed ``sequences`` (``shift=True``). A
            :class:`TokenDistributions` of shape ``[N, L - 1]`` (``W = candidates + 5`` slots), or
            the dense array. Positions whose next token is ``<pad>`` are all-zero rows.

        Example:
            >>> lang = SyntheticLanguage(100)
            >>> seqs = lang.sample(2, 6, seed=0)
            >>> lang.true_distributions(seqs, dense=True).sum(axis=-1)
            array([[1., 1., 1., 1., 1.],
                   [1., 1., 1., 1., 1.]])
        """
        seqs = np.asarray(sequences)
        if seqs.ndim != 2 or seqs.shape[1] < 2 or (seqs.size and seqs.dtype.kind not in "iu"):
            raise ValueError(f"sequences must be [N, L >= 2] integer token ids, got shape {seqs.shape}")
        seqs = seqs.astype(np.int64)
        self._check_ids("sequences", seqs)
        if (seqs[:, 0] != BOS).any():
            raise ValueError(f"sequences must start with <bos> (id {BOS}): the chain's history starts there")
        n, length = seqs.shape
        windows = self._windows(seqs)[:, :-1]  # [N, L - 1, width]: the context of tokens 1..L-1
        idx, probs = self._rows(windows.reshape(-1, self._window))
        idx = idx.reshape(n, length - 1, -1)
        probs = probs.reshape(n, length - 1, -1)
        probs = np.where((seqs[:, 1:] == PAD)[..., None], 0.0, probs)
        out = TokenDistributions(idx, probs, self.vocab_size)
        return out.dense() if dense else out

    def entropy_rate(self, *, length: int = 64, num_sequences: int = 1000, seed: SeedLike = 0) -> float:
        """Mean true next-token entropy (nats) over the positions of sampled sequences.

        This is the cross-entropy a perfect model reaches on such data: :attr:`generic_entropy`
        shifted a little by the phrasebook's contexts (mostly near the start of a sequence).
        Estimated from ``num_sequences`` sequences of ``length`` tokens.

        Example:
            >>> round(SyntheticLanguage(100, phrases=False).entropy_rate(length=16, num_sequences=50), 6)
            2.0
        """
        seqs = self.sample(num_sequences, length, seed=seed)
        dist = self.true_distributions(seqs)
        return float(dist.entropy().mean())

    # ---------------------------------------------------------------------------------- internals

    def _build_tables(self) -> None:
        v, k = self.vocab_size, self.candidates
        regular = v - 2
        rng = np.random.default_rng([self.seed, 0x5F3A_11E5])
        # successor sets: `k` distinct regular tokens per last token, sorted
        succ = np.empty((v, k), dtype=np.int64)
        chunk = max(1, (1 << 21) // regular)
        for start in range(0, v, chunk):
            stop = min(v, start + chunk)
            keys = rng.random((stop - start, regular))
            picked = np.argpartition(keys, k - 1, axis=1)[:, :k] if k < regular else np.argsort(keys, axis=1)
            succ[start:stop] = np.sort(picked, axis=1) + 2
        classes = rng.integers(0, self.classes, size=v)
        salt = rng.integers(0, 2**63, dtype=np.int64)
        names = list(_SPECIALS)
        if self.phrases:
            names += list(_WORDS)
        names += [f"w{i}" for i in range(len(names), v)]
        phrases = []
        if self.phrases:
            ids = {name: i for i, name in enumerate(names)}
            for key, dist in _PHRASES:
                star = dist.get("*", 0.0)
                entries = [(ids[w], p) for w, p in dist.items() if w != "*"]
                phrases.append((np.array([ids[w] for w in key], dtype=np.int64), star, entries))
            phrases.sort(key=lambda item: len(item[0]))  # longer contexts are applied last and win
        longest = max((len(key) for key, _, _ in phrases), default=0)
        for name, value in (
            ("_succ", succ),
            ("_classes", classes),
            ("_salt", _U64(salt)),
            ("_zipf_p", _zipf(k, self.exponent)),
            ("_names", tuple(names)),
            ("_ids", {name: i for i, name in enumerate(names)}),
            ("_phrases", tuple(phrases)),
            ("_extra", max((len(e) for _, _, e in phrases), default=0)),
            ("_window", max(self.order, longest)),
        ):
            if isinstance(value, np.ndarray):
                value.setflags(write=False)
            object.__setattr__(self, name, value)

    def _check_ids(self, name: str, ids: np.ndarray) -> None:
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            bad = ids[(ids < 0) | (ids >= self.vocab_size)].reshape(-1)[0]
            raise ValueError(f"{name} holds token id {int(bad)}, outside [0, {self.vocab_size})")

    def _context_ids(self, context: Any) -> np.ndarray:
        if isinstance(context, str):
            ids = self.encode(context)
        else:
            items = list(context) if not isinstance(context, np.ndarray) else context.tolist()
            if items and all(isinstance(x, str) for x in items):
                ids = self.encode(items)
            else:
                ids = np.asarray(items, dtype=np.int64).reshape(-1)
                self._check_ids("context", ids)
        if ids.size == 0 or ids[0] != BOS:
            ids = np.concatenate([[BOS], ids]).astype(np.int64)
        if (ids[1:] == BOS).any() or (ids == PAD).any():
            raise ValueError("context must not hold <pad>, or <bos> after its start")
        return ids

    def _windows(self, seqs: np.ndarray) -> np.ndarray:
        """``[N, L, width]``: the last ``width`` tokens up to each position, ``<bos>``-padded on the left."""
        width = self._window
        padded = np.concatenate([np.full((seqs.shape[0], width - 1), BOS, dtype=np.int64), seqs], axis=1)
        return np.lib.stride_tricks.sliding_window_view(padded, width, axis=1)

    def _rows(self, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sparse distributions ``[R, W]`` (indices, probs) of the token after each context ``[R, width]``."""
        k = self.candidates
        r = window.shape[0]
        last = window[:, -1]
        gcode = np.zeros(r, dtype=np.uint64)
        for j in range(2, self.order + 1):  # classes of the order - 1 tokens before the last
            gcode = gcode * _U64(self.classes) + self._classes[window[:, -j]].astype(np.uint64)
        key = _mix(_mix(self._salt ^ last.astype(np.uint64)) + gcode)
        keys = _mix(key[:, None] + np.arange(1, k + 1, dtype=np.uint64)[None, :])
        order = np.argsort(keys, axis=1, kind="stable")
        idx = np.take_along_axis(self._succ[last], order, axis=1)
        probs = np.broadcast_to(self._zipf_p, (r, k))
        if not self._phrases:
            return idx, np.array(probs)
        out_idx = np.concatenate([idx, np.full((r, self._extra), -1, dtype=np.int64)], axis=1)
        out_p = np.concatenate([probs, np.zeros((r, self._extra))], axis=1)
        for key_ids, star, entries in self._phrases:
            m = len(key_ids)
            hit = np.nonzero((window[:, -m:] == key_ids).all(axis=1))[0]
            if hit.size == 0:
                continue
            row_idx = np.concatenate([idx[hit], np.full((hit.size, self._extra), -1, dtype=np.int64)], axis=1)
            row_p = np.concatenate([probs[hit] * star, np.zeros((hit.size, self._extra))], axis=1)
            fill = np.full(hit.size, k)
            for token, p in entries:
                same = row_idx == token
                present = same.any(axis=1)
                row_p[same] += p  # at most one slot per row holds the token
                new = np.nonzero(~present)[0]
                row_idx[new, fill[new]] = token
                row_p[new, fill[new]] += p
                fill[new] += 1
            out_idx[hit] = row_idx
            out_p[hit] = row_p
        out_idx[out_idx < 0] = PAD
        order = np.argsort(-out_p, axis=1, kind="stable")
        return np.take_along_axis(out_idx, order, axis=1), np.take_along_axis(out_p, order, axis=1)


@runtime_checkable
class Corpus(Protocol):
    """What the study engine needs of a language-modelling corpus, synthetic or the user's own text.

    :class:`LanguageData` (sampled from a :class:`SyntheticLanguage`) and
    :class:`smoothflip.data.text.TextCorpus` (a user's text file) both follow it. Token ids
    ``0`` and ``1`` are ``<pad>`` and ``<bos>`` in both.

    Attributes:
        train, validation, test: ``[N_split, L]`` int64 token ids in ``[0, V)``, one sequence per
            row, each starting with ``<bos>``; no padding. Train a model with
            ``input_ids = labels = split`` (the loss shifts).
        vocab_size: ``V``.
        token_names: ``V`` display names, indexed by id.
        never_target: ``[V]`` bool mask of the tokens that never are a next token (at least
            ``<pad>`` and ``<bos>``); pass it to :func:`smoothflip.lm.causal_lm_loss`.
        name: a short name for reports.

    Example:
        >>> data = language_dataset(SyntheticLanguage(100), num_train=4, num_validation=2,
        ...                         num_test=2, length=8)
        >>> isinstance(data, Corpus), data.name, data.vocab_size, data.never_target[:3].tolist()
        (True, 'synthetic-language', 100, [True, True, False])
        >>> data.true_distributions("test").shape            # known for a synthetic language
        (2, 7)
    """

    @property
    def train(self) -> np.ndarray: ...
    @property
    def validation(self) -> np.ndarray: ...
    @property
    def test(self) -> np.ndarray: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def token_names(self) -> tuple[str, ...]: ...
    @property
    def never_target(self) -> np.ndarray: ...
    @property
    def name(self) -> str: ...

    def true_distributions(self, split: str) -> TokenDistributions | None:
        """The true next-token distributions of a split (``"train"``, ``"validation"``, ``"test"``).

        A :class:`TokenDistributions` of shape ``[N_split, L - 1]`` aligned with
        ``logits[:, :-1]`` (as :meth:`SyntheticLanguage.true_distributions` returns), or None when
        they are not known (real text).
        """
        ...


@dataclass(frozen=True, eq=False)
class LanguageData:
    """Train / validation / test token arrays sampled from one :class:`SyntheticLanguage`.

    Follows the :class:`Corpus` protocol.

    Attributes:
        language: the language they come from (its true distributions score a model).
        train, validation, test: ``[N_split, length]`` int64 sequences starting with ``<bos>``.
        seed: the seed they were sampled with.
    """

    language: SyntheticLanguage
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    seed: int

    @property
    def vocab_size(self) -> int:
        """``V`` of the language."""
        return self.language.vocab_size

    @property
    def token_names(self) -> tuple[str, ...]:
        """The language's ``V`` token names, indexed by id."""
        return self.language.token_names

    @property
    def never_target(self) -> np.ndarray:
        """``[V]`` bool mask of ``<pad>`` and ``<bos>``, the tokens the chain never produces."""
        return self.language.never_target

    @property
    def name(self) -> str:
        """``"synthetic-language"``."""
        return "synthetic-language"

    def true_distributions(self, split: str) -> TokenDistributions:
        """The language's true next-token distributions ``[N_split, length - 1]`` of one split (sparse).

        Example:
            >>> data = language_dataset(SyntheticLanguage(100), num_train=3, num_validation=1,
            ...                         num_test=1, length=6)
            >>> data.true_distributions("train").shape
            (3, 5)
        """
        if split not in CORPUS_SPLITS:
            raise ValueError(f"split must be one of {', '.join(map(repr, CORPUS_SPLITS))}, got {split!r}")
        return cast(TokenDistributions, self.language.true_distributions(getattr(self, split)))


def language_dataset(
    language: SyntheticLanguage,
    *,
    num_train: int = 2000,
    num_validation: int = 200,
    num_test: int = 200,
    length: int = 64,
    seed: int = 0,
) -> LanguageData:
    """Sample the three splits of a language-modelling dataset, each from its own random stream.

    Args:
        language: the :class:`SyntheticLanguage`.
        num_train, num_validation, num_test: sequences per split (each ``>= 1``).
        length: tokens per sequence, ``<bos>`` included.
        seed: seed of the samples (not of the language); the three splits use independent streams
            spawned from it, so changing ``num_train`` leaves the validation and test splits as
            they are.

    Returns:
        A :class:`LanguageData`. Train a model with ``input_ids = labels = split`` (the loss shifts).

    Example:
        >>> lang = SyntheticLanguage(100)
        >>> data = language_dataset(lang, num_train=8, num_validation=2, num_test=2, length=10)
        >>> data.train.shape, data.test.shape
        ((8, 10), (2, 10))
    """
    if not isinstance(language, SyntheticLanguage):
        raise TypeError(f"language must be a SyntheticLanguage, got {type(language).__name__}")
    seed = check_int("seed", seed, low=0)
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)]
    splits = [
        language.sample(check_int(name, count, low=1), length, seed=rng)
        for name, count, rng in zip(
            ("num_train", "num_validation", "num_test"),
            (num_train, num_validation, num_test),
            streams,
            strict=True,
        )
    ]
    return LanguageData(language, *splits, seed=seed)


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


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


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer on uint64 (wrap-around arithmetic)."""
    x = x.astype(np.uint64, copy=False) + _U64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))
