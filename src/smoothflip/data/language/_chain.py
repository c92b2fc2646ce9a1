"""The synthetic language itself: token ids, the phrasebook and the :class:`SyntheticLanguage` chain.

:data:`PAD` and :data:`BOS`, the phrasebook's words and contexts, and :class:`SyntheticLanguage`:
the seeded sparse higher-order Markov chain (tables, hashing of contexts, sampling and the exact
next-token distributions). The chain's rules are described in :mod:`smoothflip.data.language`,
which re-exports everything public here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, ClassVar

import numpy as np

from smoothflip._validation import SeedLike, as_generator, check_int, check_number
from smoothflip.data.language._distributions import (
    TokenDistributions,
    _entropy,
    _solve_exponent,
    _zipf,
)

#: Id of the padding token ``<pad>`` (never produced by the chain).
PAD = 0
#: Id of the begin-of-sequence token ``<bos>`` (position 0 of every sequence, never a next token).
BOS = 1

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


@dataclass(frozen=True)
class SyntheticLanguage:
    """A seeded sparse Markov chain with Zipfian next-token distributions (see the package docstring).

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


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer on uint64 (wrap-around arithmetic)."""
    x = x.astype(np.uint64, copy=False) + _U64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))
