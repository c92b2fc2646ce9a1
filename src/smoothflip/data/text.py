"""The user's own text as a language-modelling corpus: one UTF-8 file → train / validation / test.

:func:`load_text_corpus` reads a text file, tokenizes it, and cuts it into sequences a causal LM
trains on (``input_ids = labels = split``; the loss shifts). The result, a :class:`TextCorpus`,
follows the :class:`~smoothflip.data.language.Corpus` protocol the study engine relies on, like the
synthetic :class:`~smoothflip.data.language.LanguageData` (but without known true distributions).

**Tokens.** ``tokens="char"``: every character is a token, newlines and spaces included.
``tokens="word"``: words (runs of letters, digits and ``_``, with inner apostrophes kept:
``don't``), each punctuation mark on its own, and each newline are tokens; other whitespace only
separates them. ``lowercase=True`` lowercases the text first. Line endings ``\\r\\n`` and ``\\r``
read as ``\\n``; a leading byte-order mark is dropped.

**Splits.** The token stream is split by position: the first ``1 - validation_fraction -
test_fraction`` of it is training text, then comes validation, then test. Each part is cut into
non-overlapping pieces of ``length - 1`` tokens, each put after a ``<bos>``: rows ``[N, length]``.
No window crosses a split boundary, so no validation or test text is ever trained on; the tokens
left over at the end of a part (fewer than ``length - 1``) are dropped.

**Vocabulary.** Built from the training part only: ``<pad>`` (id 0), ``<bos>`` (1), ``<unk>`` (2),
then the training tokens seen at least ``min_count`` times, most frequent first (ties in code-point
order), at most ``max_vocab`` ids in all. Every other token — rare, beyond ``max_vocab``, or not in
the training text at all — becomes ``<unk>``, which can be a target; ``<pad>`` and ``<bos>`` never
are (:attr:`TextCorpus.never_target`).

Example:
    >>> import pathlib, tempfile
    >>> text = "The cat sat on the mat.\\nThe dog sat on the log.\\n" * 20
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = pathlib.Path(folder) / "pets.txt"
    ...     _ = path.write_text(text, encoding="utf-8")
    ...     corpus = load_text_corpus(path, tokens="word", length=8)
    >>> corpus.vocab_size, corpus.train.shape, corpus.validation.shape, corpus.test.shape
    (13, (36, 8), (4, 8), (4, 8))
    >>> corpus.vocab[:5]
    ('<pad>', '<bos>', '<unk>', '\\n', '.')
    >>> corpus.decode(corpus.train[0])
    '<bos> The cat sat on the mat.'
    >>> corpus.decode(corpus.encode("the cat sat on the mat"))
    'the cat sat on the mat'
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from smoothflip._validation import check_choice, check_int, check_range
from smoothflip.data.language import BOS, CORPUS_SPLITS, PAD, TokenDistributions

__all__ = ["SPECIAL_TOKENS", "TEXT_TOKENS", "UNK", "TextCorpus", "load_text_corpus", "tokenize"]

#: Id of ``<unk>``, the token that stands for every token outside the vocabulary.
UNK = 2
#: The special tokens, at ids 0, 1, 2.
SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<bos>", "<unk>")
#: The tokenizations :func:`load_text_corpus` offers.
TEXT_TOKENS: tuple[str, ...] = ("char", "word")

# a word (inner apostrophes kept: don't, l'eau), a newline, or one other non-space character
_WORD_PATTERN = re.compile(r"\w+(?:['’]\w+)*|\n|[^\w\s]")
_NO_SPACE_BEFORE = frozenset(".,;:!?)]}%")
_NO_SPACE_AFTER = frozenset("([{")


def tokenize(text: str, tokens: str) -> list[str]:
    """Split text into tokens: characters (``"char"``) or words and punctuation (``"word"``).

    Example:
        >>> tokenize("Don't panic!\\nOK", "word")
        ["Don't", 'panic', '!', '\\n', 'OK']
        >>> tokenize("hi\\n", "char")
        ['h', 'i', '\\n']
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    tokens = check_choice("data.tokens", tokens, TEXT_TOKENS)
    return list(text) if tokens == "char" else _WORD_PATTERN.findall(text)


@dataclass(frozen=True, eq=False)
class TextCorpus:
    """A tokenized text split into train / validation / test sequences (see the module docstring).

    Follows the :class:`~smoothflip.data.language.Corpus` protocol.

    Attributes:
        train, validation, test: ``[N_split, length]`` int64 token ids; column 0 is ``<bos>``.
        vocab: ``V`` token strings, indexed by id: ``<pad>``, ``<bos>``, ``<unk>``, then the
            training tokens, most frequent first.
        name: the file's name.
        tokens: ``"char"`` or ``"word"``.
        lowercase: whether the text was lowercased (:meth:`encode` does the same).

    Example:
        >>> corpus = TextCorpus(
        ...     np.array([[1, 3, 4]]), np.array([[1, 4, 3]]), np.array([[1, 2, 3]]),
        ...     vocab=("<pad>", "<bos>", "<unk>", "a", "b"), name="ab", tokens="char")
        >>> corpus.vocab_size, corpus.never_target.tolist()
        (5, [True, True, False, False, False])
        >>> corpus.encode("abc"), corpus.decode([1, 3, 4, 2], skip_special=True)
        (array([3, 4, 2]), 'ab<unk>')
    """

    train: np.ndarray = field(repr=False)
    validation: np.ndarray = field(repr=False)
    test: np.ndarray = field(repr=False)
    vocab: tuple[str, ...]
    name: str
    tokens: str
    lowercase: bool = False
    _index: dict[str, int] = field(init=False, repr=False)

    pad_id: ClassVar[int] = PAD
    bos_id: ClassVar[int] = BOS
    unk_id: ClassVar[int] = UNK

    def __post_init__(self) -> None:
        check_choice("tokens", self.tokens, TEXT_TOKENS)
        vocab = tuple(self.vocab)
        if vocab[: len(SPECIAL_TOKENS)] != SPECIAL_TOKENS or len(set(vocab)) != len(vocab):
            raise ValueError(f"vocab must start with {', '.join(SPECIAL_TOKENS)} and hold no token twice")
        object.__setattr__(self, "vocab", vocab)
        length = None
        for split in CORPUS_SPLITS:
            array = getattr(self, split)
            if not isinstance(array, np.ndarray) or array.ndim != 2 or array.dtype != np.int64:
                raise ValueError(f"{split} must be an [N, length] int64 array")
            if length is not None and array.shape[1] != length:
                raise ValueError(f"every split must have the same length; {split} has {array.shape[1]}")
            length = array.shape[1]
        object.__setattr__(self, "_index", {token: i for i, token in enumerate(vocab)})

    def __repr__(self) -> str:
        shapes = ", ".join(f"{split}={getattr(self, split).shape}" for split in CORPUS_SPLITS)
        return (
            f"TextCorpus(name={self.name!r}, tokens={self.tokens!r}, vocab_size={self.vocab_size}, "
            f"length={self.length}, {shapes})"
        )

    @property
    def vocab_size(self) -> int:
        """``V``, the number of token ids (the specials included)."""
        return len(self.vocab)

    @property
    def token_names(self) -> tuple[str, ...]:
        """``V`` token strings indexed by id (the same as :attr:`vocab`)."""
        return self.vocab

    @property
    def length(self) -> int:
        """Tokens per sequence, ``<bos>`` included."""
        return int(self.train.shape[1])

    @property
    def never_target(self) -> np.ndarray:
        """``[V]`` bool mask of the tokens that are never a next token: ``<pad>`` and ``<bos>``.

        ``<unk>`` is not in it: it stands for real tokens, and is a target where they occur.
        """
        mask = np.zeros(self.vocab_size, dtype=bool)
        mask[[PAD, BOS]] = True
        return mask

    def true_distributions(self, split: str) -> TokenDistributions | None:
        """None: the next-token distributions of real text are not known (``split`` is checked)."""
        check_choice("split", split, CORPUS_SPLITS)
        return None

    def unknown_rate(self, split: str) -> float:
        """The fraction of a split's tokens (``<bos>`` not counted) that are ``<unk>``.

        Example:
            >>> corpus = TextCorpus(np.array([[1, 3]]), np.array([[1, 3]]), np.array([[1, 2]]),
            ...                     vocab=(*SPECIAL_TOKENS, "a"), name="a", tokens="char")
            >>> corpus.unknown_rate("train"), corpus.unknown_rate("test")
            (0.0, 1.0)
        """
        ids = getattr(self, check_choice("split", split, CORPUS_SPLITS))[:, 1:]
        return float((ids == UNK).mean()) if ids.size else 0.0

    def encode(self, text: str) -> np.ndarray:
        """Token ids ``[n]`` (int64) of a text, tokenized like the corpus; no ``<bos>`` is added.

        Tokens outside the vocabulary become ``<unk>``. Lowercases first if the corpus did.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        text = _normalize(text.lower() if self.lowercase else text)
        pieces = tokenize(text, self.tokens)
        index = self._index
        return np.fromiter((index.get(p, UNK) for p in pieces), dtype=np.int64, count=len(pieces))

    def decode(self, ids: Any, *, skip_special: bool = False) -> str:
        """The text of token ids ``[n]``.

        Characters are joined as they are; words are joined by spaces, except before closing
        punctuation (``.,;:!?)]}%``), after opening brackets and around newlines, so that
        ``encode(decode(ids))`` gives ``ids`` back whenever they hold no special token. Special
        tokens appear by name (``<unk>``, ...); ``skip_special`` leaves out ``<pad>`` and ``<bos>``.
        """
        array = np.asarray(ids)
        if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
            raise ValueError(f"ids must be a 1-D sequence of token ids, got shape {array.shape}")
        if array.size and (array.min() < 0 or array.max() >= self.vocab_size):
            bad = array[(array < 0) | (array >= self.vocab_size)][0]
            raise ValueError(f"ids holds token id {int(bad)}, outside [0, {self.vocab_size})")
        ids_list = array.tolist()
        if skip_special:
            ids_list = [i for i in ids_list if i not in (PAD, BOS)]
        pieces = [self.vocab[i] for i in ids_list]
        if self.tokens == "char":
            return "".join(pieces)
        out: list[str] = []
        for i, piece in enumerate(pieces):
            if i and not (
                piece == "\n"
                or piece in _NO_SPACE_BEFORE
                or pieces[i - 1] == "\n"
                or pieces[i - 1] in _NO_SPACE_AFTER
            ):
                out.append(" ")
            out.append(piece)
        return "".join(out)


def load_text_corpus(
    path: str | os.PathLike[str],
    *,
    tokens: str = "char",
    length: int = 64,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    min_count: int = 1,
    lowercase: bool = False,
    max_vocab: int | None = None,
    base_dir: str | os.PathLike[str] | None = None,
) -> TextCorpus:
    """Read a UTF-8 text file as a language-modelling corpus (see the module docstring).

    Args:
        path: the text file (any extension); a relative path resolves against ``base_dir`` (the
            study file's folder) or, without one, the working directory.
        tokens: ``"char"`` (characters) or ``"word"`` (words, punctuation marks and newlines).
        length: tokens per sequence, ``<bos>`` included (``>= 2``).
        validation_fraction, test_fraction: shares of the token stream, each in ``(0, 1)`` and
            together below 1, for the validation part (after the training part) and the test
            part (the end of the text).
        min_count: training occurrences a token needs to get its own id (``>= 1``).
        lowercase: lowercase the text first.
        max_vocab: the most ids in all, the 3 specials included (``>= 4``); None: no limit.
        base_dir: folder for a relative ``path``.

    Returns:
        A :class:`TextCorpus`: ``train`` / ``validation`` / ``test`` ``[N_split, length]`` int64
        rows starting with ``<bos>``, named after the file.

    Raises:
        FileNotFoundError: nothing at the path (the message gives the resolved path).
        ValueError: the path is a folder; the file is empty, not UTF-8, or holds no tokens; a
            split too short for one sequence (the message gives its token count and the count one
            sequence needs); ``min_count`` leaves no token; a bad ``tokens``, ``length``, fraction,
            ``min_count`` or ``max_vocab``. Messages name the setting as ``data.<argument>``
            (``data.source`` for ``path``).
        TypeError: an argument of the wrong kind.

    Example:
        >>> import pathlib, tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     _ = (pathlib.Path(folder) / "abc.txt").write_text("abcabcabd" * 30, encoding="utf-8")
        ...     corpus = load_text_corpus("abc.txt", length=10, base_dir=folder)
        >>> corpus.vocab, corpus.train.shape, corpus.test.shape
        (('<pad>', '<bos>', '<unk>', 'a', 'b', 'c', 'd'), (24, 10), (3, 10))
    """
    tokens = check_choice("data.tokens", tokens, TEXT_TOKENS)
    length = check_int("data.length", length, low=2)
    fractions = {}
    for key, value in (("validation_fraction", validation_fraction), ("test_fraction", test_fraction)):
        fractions[key] = check_range(f"data.{key}", value, low=0.0, high=1.0, low_open=True, high_open=True)
    if sum(fractions.values()) >= 1.0:
        raise ValueError(
            f"data.validation_fraction + data.test_fraction must be below 1 to leave training text, "
            f"got {validation_fraction!r} + {test_fraction!r}"
        )
    min_count = check_int("data.min_count", min_count, low=1)
    if max_vocab is not None:
        max_vocab = check_int("data.max_vocab", max_vocab, low=len(SPECIAL_TOKENS) + 1)
    if not isinstance(lowercase, bool):
        raise TypeError(f"data.lowercase must be true or false, got {lowercase!r}")
    file = _resolve(path, base_dir)

    text = _read_text(file)
    if lowercase:
        text = text.lower()
    stream = tokenize(text, tokens)
    if not stream:
        raise ValueError(f"data.source: '{file}' holds no {_unit(tokens)}s (only whitespace)")

    total = len(stream)
    n_val = round(total * fractions["validation_fraction"])
    n_test = round(total * fractions["test_fraction"])
    n_train = total - n_val - n_test
    bounds = {
        "train": (0, n_train, 1.0 - sum(fractions.values())),
        "validation": (n_train, n_train + n_val, fractions["validation_fraction"]),
        "test": (n_train + n_val, total, fractions["test_fraction"]),
    }
    need = length - 1
    for split, (start, stop, share) in bounds.items():
        if stop - start < need:
            raise ValueError(
                f"data: the {split} split of '{file.name}' has {stop - start} {_unit(tokens)} tokens "
                f"({share:.0%} of {total}); one sequence of data.length={length} needs {need} — "
                f"give more text or lower data.length"
                + (f" or raise data.{split}_fraction" if split != "train" else "")
            )

    counts = Counter(stream[:n_train])
    kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
    if not kept:
        raise ValueError(
            f"data.min_count={min_count} leaves no token of '{file.name}' in the vocabulary: the most "
            f"frequent training token occurs {max(counts.values())} time(s)"
        )
    if max_vocab is not None:
        kept = kept[: max_vocab - len(SPECIAL_TOKENS)]
    vocab = (*SPECIAL_TOKENS, *kept)
    index = {token: i for i, token in enumerate(vocab)}
    ids = np.fromiter((index.get(t, UNK) for t in stream), dtype=np.int64, count=total)

    splits = {split: _chunk(ids[start:stop], length) for split, (start, stop, _) in bounds.items()}
    return TextCorpus(**splits, vocab=vocab, name=file.name, tokens=tokens, lowercase=lowercase)


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def _resolve(path: Any, base_dir: Any) -> Path:
    if isinstance(path, bool) or not isinstance(path, str | os.PathLike):
        raise TypeError(f"data.source must be a file path (str), got {type(path).__name__}")
    if not os.fspath(path).strip():
        raise ValueError("data.source must not be empty: give the path of a UTF-8 text file")
    if base_dir is not None and not isinstance(base_dir, str | os.PathLike):
        raise TypeError(f"base_dir must be a path, got {type(base_dir).__name__}")
    file = Path(path).expanduser()
    if not file.is_absolute() and base_dir is not None:
        file = Path(base_dir).expanduser() / file
    file = file.absolute()
    if not file.exists():
        raise FileNotFoundError(f"data.source: file not found: '{file}'")
    if not file.is_file():
        raise ValueError(f"data.source: '{file}' is not a file")
    return file


def _read_text(file: Path) -> str:
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ValueError(f"data.source: cannot read '{file}': {' '.join(str(exc).split())}") from None
    if not raw:
        raise ValueError(f"data.source: '{file}' is empty")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"data.source: '{file}' is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start} "
            f"is invalid); save it as UTF-8"
        ) from None
    return _normalize(text)


def _normalize(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _unit(tokens: str) -> str:
    return "character" if tokens == "char" else "word"


def _chunk(ids: np.ndarray, length: int) -> np.ndarray:
    """``[n]`` ids → ``[n // (length - 1), length]`` rows of ``<bos>`` + ``length - 1`` ids (tail dropped)."""
    step = length - 1
    rows = len(ids) // step
    out = np.empty((rows, length), dtype=np.int64)
    out[:, 0] = BOS
    out[:, 1:] = ids[: rows * step].reshape(rows, step)
    return out
