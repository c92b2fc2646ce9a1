"""Corpora for language-modelling studies: the :class:`Corpus` protocol and synthetic datasets.

:class:`Corpus` is what the study engine needs of a corpus (synthetic or the user's own text);
:class:`LanguageData` and :func:`language_dataset` sample train / validation / test splits from a
:class:`~smoothflip.data.language.SyntheticLanguage`, with their true next-token distributions.
Re-exported by :mod:`smoothflip.data.language`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, cast, runtime_checkable

import numpy as np

from smoothflip._validation import check_int
from smoothflip.data.language._chain import SyntheticLanguage
from smoothflip.data.language._distributions import TokenDistributions

#: The splits of a :class:`Corpus`, in order.
CORPUS_SPLITS: tuple[str, ...] = ("train", "validation", "test")


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
