"""Corpora for language-model studies: the synthetic language or the user's own ``.txt`` file.

:func:`load_corpus` is the corpus registry a ``kind = "lm"`` study's ``[data]`` reads:
``source = "language"`` is the synthetic language (:mod:`smoothflip.data.language`, whose true
next-token distribution is known at every position) with :data:`LANGUAGE_OPTIONS`; a path ending in
``.txt`` is the user's text (:mod:`smoothflip.data.text`) with :data:`TEXT_OPTIONS`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from smoothflip.errors import DataError

LANGUAGE_OPTIONS = {
    "vocab_size": 512,
    "order": 2,
    "mean_entropy": 2.0,
    "candidates": 32,
    "classes": 4,
    "seed": 0,
    "num_train": 2000,
    "num_validation": 200,
    "num_test": 200,
    "length": 32,
}
TEXT_OPTIONS = {"tokens": "char", "length": 64, "lowercase": False, "min_count": 1, "max_vocab": None}


def load_corpus(data: Mapping[str, Any], *, base_dir: str = ".") -> Any:
    """The study's corpus: the synthetic language (``source = "language"``) or a ``.txt`` file.

    Args:
        data: the study's ``[data]`` table as a dict (``source``, ``options``, split fractions).
        base_dir: folder a relative ``.txt`` path resolves against.

    Raises:
        DataError: an unknown option (named) or source.
    """
    source = data["source"]
    options = dict(data.get("options", {}))
    if source == "language":
        from smoothflip.data.language import SyntheticLanguage, language_dataset

        _check_options(options, LANGUAGE_OPTIONS, "language")
        opts = {**LANGUAGE_OPTIONS, **options}
        language = SyntheticLanguage(
            int(opts["vocab_size"]),
            order=int(opts["order"]),
            mean_entropy=float(opts["mean_entropy"]),
            candidates=int(opts["candidates"]),
            classes=int(opts["classes"]),
            seed=int(opts["seed"]),
        )
        return language_dataset(
            language,
            num_train=int(opts["num_train"]),
            num_validation=int(opts["num_validation"]),
            num_test=int(opts["num_test"]),
            length=int(opts["length"]),
            seed=int(opts["seed"]),
        )
    if str(source).lower().endswith(".txt"):
        from smoothflip.data.text import load_text_corpus

        _check_options(options, TEXT_OPTIONS, "a .txt file")
        opts = {**TEXT_OPTIONS, **options}
        return load_text_corpus(
            source,
            tokens=opts["tokens"],
            length=int(opts["length"]),
            validation_fraction=float(data.get("validation_fraction", 0.1)),
            test_fraction=float(data.get("test_fraction", 0.1)),
            min_count=int(opts["min_count"]),
            lowercase=bool(opts["lowercase"]),
            max_vocab=opts["max_vocab"],
            base_dir=base_dir,
        )
    raise DataError(
        f'data.source = "{source}": a language-model study reads "language" (the synthetic language) '
        "or a .txt file"
    )


def _check_options(options: Mapping[str, Any], allowed: Mapping[str, Any], what: str) -> None:
    for key in options:
        if key not in allowed:
            raise DataError(f"data.options: unknown key {key!r} for {what}; allowed: {', '.join(allowed)}")


def corpus_fingerprint(corpus: Any) -> str:
    digest = hashlib.sha256()
    for split in (corpus.train, corpus.validation, corpus.test):
        array = np.ascontiguousarray(split)
        digest.update(str((array.dtype.str, array.shape)).encode())
        digest.update(array.tobytes())
    digest.update("\x00".join(corpus.token_names).encode())
    return digest.hexdigest()
