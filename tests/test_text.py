"""smoothflip.data.text: tokenization, round trips, contiguous splits, train-only vocabulary, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from smoothflip.data.language import BOS, PAD, Corpus, LanguageData, SyntheticLanguage, language_dataset
from smoothflip.data.text import SPECIAL_TOKENS, UNK, TextCorpus, load_text_corpus, tokenize
from smoothflip.lm import build_lm, causal_lm_loss

PROSE = (
    "It was the best of times, it was the worst of times; it was the age of wisdom.\n"
    "Don't panic! (Really.) Café, naïve — ok?\n"
)


def _write(folder: Path, text: str | bytes, name: str = "corpus.txt") -> Path:
    path = folder / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def _letters(n: int, seed: int = 0, alphabet: str = "abcdefgh \n") -> str:
    rng = np.random.default_rng(seed)
    return "".join(rng.choice(list(alphabet), size=n))


def _stream(corpus: TextCorpus, split: str) -> np.ndarray:
    rows = getattr(corpus, split)
    assert (rows[:, 0] == BOS).all()
    return rows[:, 1:].reshape(-1)


# ------------------------------------------------------------------------------------ tokenization


def test_word_tokens_are_words_punctuation_and_newlines() -> None:
    assert tokenize("Don't panic!\n\n(Really.)  x_1 café", "word") == [
        "Don't", "panic", "!", "\n", "\n", "(", "Really", ".", ")", "x_1", "café",
    ]  # fmt: skip
    assert tokenize("a b\n", "char") == ["a", " ", "b", "\n"]
    with pytest.raises(ValueError, match=r"data.tokens must be one of 'char', 'word', got 'byte'"):
        tokenize("a", "byte")


def test_char_round_trip(tmp_path: Path) -> None:
    corpus = load_text_corpus(_write(tmp_path, PROSE * 5), tokens="char", length=16)
    assert corpus.tokens == "char"
    assert corpus.vocab[:3] == SPECIAL_TOKENS == ("<pad>", "<bos>", "<unk>")
    ids = corpus.encode(PROSE)
    assert ids.dtype == np.int64
    assert ids.shape == (len(PROSE),)
    assert corpus.decode(ids) == PROSE  # every character of PROSE is in the training part
    assert corpus.decode(np.concatenate([[BOS], ids]), skip_special=True) == PROSE
    assert corpus.decode(np.concatenate([[BOS], ids[:3]])) == "<bos>" + PROSE[:3]
    assert corpus.decode(corpus.encode("It€")) == "It<unk>"


def test_word_round_trip(tmp_path: Path) -> None:
    corpus = load_text_corpus(_write(tmp_path, PROSE * 10), tokens="word", length=8)
    ids = corpus.encode(PROSE)
    assert UNK not in ids.tolist()
    text = corpus.decode(ids)
    assert text.startswith("It was the best of times, it was the worst of times; it was the age of wisdom.\n")
    assert "Don't panic! (Really.) Café, naïve — ok?" in text
    np.testing.assert_array_equal(corpus.encode(text), ids)
    for row in corpus.train[:5]:  # decode then encode gives any sequence back
        np.testing.assert_array_equal(corpus.encode(corpus.decode(row, skip_special=True)), row[1:])


def test_line_endings_byte_order_mark_and_lowercase(tmp_path: Path) -> None:
    raw = ("\ufeff" + "Ab\r\nCd\rEf\n" * 20).encode()
    corpus = load_text_corpus(_write(tmp_path, raw), length=5, lowercase=True)
    assert "\r" not in corpus.vocab
    assert "\ufeff" not in corpus.vocab
    assert set(corpus.vocab[3:]) == set("abcdef\n")
    assert corpus.decode(_stream(corpus, "train"))[:9] == "ab\ncd\nef\n"
    assert corpus.decode(corpus.encode("AB")) == "ab"  # encode lowercases like the corpus


# ------------------------------------------------------------------------------------ splits


def test_splits_are_contiguous_and_sized(tmp_path: Path) -> None:
    text = _letters(1003)
    corpus = load_text_corpus(_write(tmp_path, text), length=11, validation_fraction=0.2, test_fraction=0.1)
    n_val, n_test = round(1003 * 0.2), round(1003 * 0.1)  # 201, 100
    n_train = 1003 - n_val - n_test  # 702
    assert corpus.train.shape == (n_train // 10, 11)
    assert corpus.validation.shape == (n_val // 10, 11)
    assert corpus.test.shape == (n_test // 10, 11)
    assert corpus.length == 11
    starts = {"train": 0, "validation": n_train, "test": n_train + n_val}
    for split, start in starts.items():
        stream = _stream(corpus, split)
        # the split's text, in order, from its own start; only its tail (< length - 1) is dropped
        assert corpus.decode(stream) == text[start : start + len(stream)]
    assert repr(corpus).startswith("TextCorpus(name='corpus.txt', tokens='char', vocab_size=13, length=11")


def test_word_splits_are_contiguous(tmp_path: Path) -> None:
    words = [f"w{i % 37}" for i in range(500)]
    corpus = load_text_corpus(
        _write(tmp_path, " ".join(words)), tokens="word", length=6, validation_fraction=0.1, test_fraction=0.1
    )
    assert corpus.train.shape == (80, 6)
    assert corpus.validation.shape == (10, 6)
    assert corpus.test.shape == (10, 6)
    assert corpus.decode(_stream(corpus, "train")).split() == words[:400]
    assert corpus.decode(_stream(corpus, "validation")).split() == words[400:450]
    assert corpus.decode(_stream(corpus, "test")).split() == words[450:500]


def test_vocabulary_comes_from_the_training_part_only(tmp_path: Path) -> None:
    # train: a/b only; validation adds 'x'; test adds 'y' and 'z'
    text = "ab" * 400 + "ax" * 50 + "yz" * 50
    corpus = load_text_corpus(_write(tmp_path, text), length=9)
    assert corpus.vocab == ("<pad>", "<bos>", "<unk>", "a", "b")
    assert corpus.unknown_rate("train") == 0.0
    assert corpus.unknown_rate("validation") == pytest.approx(0.5)
    assert corpus.unknown_rate("test") == 1.0
    assert (corpus.test[:, 1:] == UNK).all()
    assert corpus.decode(corpus.encode("abxy")) == "ab<unk><unk>"
    np.testing.assert_array_equal(corpus.never_target, [True, True, False, False, False])


def test_min_count_max_vocab_and_frequency_order(tmp_path: Path) -> None:
    train = "a" * 50 + "b" * 30 + "c" * 30 + "d" * 2 + "e"
    text = train + "abcde" * 6 + "abcde" * 6  # 113 train, then validation and test
    path = _write(tmp_path, text)
    kwargs = {"length": 6, "validation_fraction": 30 / 173, "test_fraction": 30 / 173}
    corpus = load_text_corpus(path, **kwargs)
    assert corpus.vocab[3:] == ("a", "b", "c", "d", "e")  # most frequent first, ties in code-point order
    assert load_text_corpus(path, min_count=2, **kwargs).vocab[3:] == ("a", "b", "c", "d")
    capped = load_text_corpus(path, max_vocab=5, **kwargs)
    assert capped.vocab == ("<pad>", "<bos>", "<unk>", "a", "b")
    assert capped.decode(capped.encode("abcde")) == "ab<unk><unk><unk>"
    assert capped.unknown_rate("test") == pytest.approx(0.6)


def test_base_dir_resolves_relative_paths(tmp_path: Path) -> None:
    _write(tmp_path, _letters(200), name="notes.md")
    corpus = load_text_corpus("notes.md", length=8, base_dir=tmp_path)
    assert corpus.name == "notes.md"


# ------------------------------------------------------------------------------------ the protocol


def test_text_corpus_and_language_data_follow_the_corpus_protocol(tmp_path: Path) -> None:
    corpus = load_text_corpus(_write(tmp_path, _letters(400)), length=8)
    data = language_dataset(SyntheticLanguage(60, candidates=8), num_train=5, num_validation=2, num_test=3,
                            length=7)  # fmt: skip
    assert isinstance(corpus, Corpus)
    assert isinstance(data, Corpus)
    assert isinstance(data, LanguageData)
    for c in (corpus, data):
        assert c.never_target.shape == (c.vocab_size,)
        assert c.never_target[[PAD, BOS]].all()
        assert len(c.token_names) == c.vocab_size
        assert c.token_names[PAD] == "<pad>"
        assert c.token_names[BOS] == "<bos>"
        assert isinstance(c.name, str)
        for split in ("train", "validation", "test"):
            rows = getattr(c, split)
            assert rows.dtype == np.int64
            assert rows.ndim == 2
            assert (rows[:, 0] == BOS).all()
            assert rows.max() < c.vocab_size
        with pytest.raises(ValueError, match="split must be one of 'train', 'validation', 'test'"):
            c.true_distributions("dev")
    assert corpus.true_distributions("test") is None
    truth = data.true_distributions("test")
    assert truth.shape == (3, 6)
    np.testing.assert_allclose(truth.probs.sum(axis=-1), 1.0)
    assert data.vocab_size == 60
    assert data.name == "synthetic-language"


def test_a_text_corpus_trains_a_language_model(tmp_path: Path) -> None:
    corpus = load_text_corpus(_write(tmp_path, PROSE * 20), tokens="word", length=12)
    ids = torch.from_numpy(corpus.train)
    torch.manual_seed(0)
    model = build_lm("gru", vocab_size=corpus.vocab_size, context=12, options={"dim": 8, "hidden": 16})
    loss = causal_lm_loss(model(ids), ids, kind="smoothed", eps=0.1, never_target=corpus.never_target)
    loss.backward()
    assert torch.isfinite(loss)


# ------------------------------------------------------------------------------------ errors


def test_missing_folder_empty_and_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"data.source: file not found: '.*nope\.txt'"):
        load_text_corpus(tmp_path / "nope.txt")
    with pytest.raises(FileNotFoundError, match="file not found"):
        load_text_corpus("nope.txt", base_dir=tmp_path)
    with pytest.raises(ValueError, match="is not a file"):
        load_text_corpus(tmp_path)
    with pytest.raises(ValueError, match=r"data.source: '.*empty\.txt' is empty"):
        load_text_corpus(_write(tmp_path, b"", name="empty.txt"))
    latin1 = "café crème\n".encode("latin-1") * 50
    with pytest.raises(ValueError, match=r"is not UTF-8 text \(byte 0xe9 at offset 3 is invalid\)"):
        load_text_corpus(_write(tmp_path, latin1, name="latin1.txt"))
    with pytest.raises(ValueError, match="holds no words"):
        load_text_corpus(_write(tmp_path, "  \t  ", name="blank.txt"), tokens="word")
    with pytest.raises(TypeError, match=r"data.source must be a file path"):
        load_text_corpus(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"data.source must not be empty"):
        load_text_corpus(" ")


def test_a_split_too_small_for_one_sequence(tmp_path: Path) -> None:
    path = _write(tmp_path, _letters(200))
    with pytest.raises(
        ValueError,
        match=r"the validation split of 'corpus.txt' has 20 character tokens \(10% of 200\); one sequence "
        r"of data.length=32 needs 31 — give more text or lower data.length or raise data.validation_fraction",
    ):
        load_text_corpus(path, length=32)
    with pytest.raises(
        ValueError, match=r"the test split of 'corpus.txt' has 2 character tokens \(1% of 200\)"
    ):
        load_text_corpus(path, length=8, test_fraction=0.01)
    with pytest.raises(ValueError, match=r"the train split of 'corpus.txt' has 20 character tokens"):
        load_text_corpus(path, length=30, validation_fraction=0.45, test_fraction=0.45)
    words = _write(tmp_path, "one two three four five six seven eight nine ten", name="w.txt")
    with pytest.raises(ValueError, match=r"the validation split of 'w.txt' has 1 word tokens"):
        load_text_corpus(words, tokens="word", length=3)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"tokens": "bpe"}, ValueError, "data.tokens must be one of 'char', 'word', got 'bpe'"),
        ({"length": 1}, ValueError, "data.length must be >= 2, got 1"),
        ({"length": 8.0}, TypeError, "data.length must be an integer"),
        ({"validation_fraction": 0.0}, ValueError, r"data.validation_fraction must be in \(0, 1\), got 0.0"),
        ({"validation_fraction": 1.0}, ValueError, r"data.validation_fraction must be in \(0, 1\)"),
        ({"test_fraction": -0.1}, ValueError, r"data.test_fraction must be in \(0, 1\), got -0.1"),
        ({"test_fraction": float("nan")}, ValueError, "data.test_fraction must be finite"),
        ({"validation_fraction": 0.5, "test_fraction": 0.5}, ValueError, "must be below 1"),
        ({"min_count": 0}, ValueError, "data.min_count must be >= 1, got 0"),
        ({"min_count": 10_000}, ValueError, "data.min_count=10000 leaves no token"),
        ({"max_vocab": 3}, ValueError, "data.max_vocab must be >= 4, got 3"),
        ({"lowercase": "yes"}, TypeError, "data.lowercase must be true or false"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, error: type, match: str) -> None:
    path = _write(tmp_path, _letters(400))
    with pytest.raises(error, match=match):
        load_text_corpus(path, **{"length": 8, **kwargs})


def test_bad_ids_and_text() -> None:
    corpus = TextCorpus(
        np.array([[1, 3]]), np.array([[1, 3]]), np.array([[1, 3]]), vocab=(*SPECIAL_TOKENS, "a"), name="a",
        tokens="char",
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"ids holds token id 4, outside \[0, 4\)"):
        corpus.decode([1, 4])
    with pytest.raises(ValueError, match="ids must be a 1-D sequence"):
        corpus.decode([[1, 3]])
    with pytest.raises(TypeError, match="text must be a str"):
        corpus.encode([3])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="vocab must start with <pad>, <bos>, <unk>"):
        TextCorpus(corpus.train, corpus.validation, corpus.test, vocab=("a",), name="a", tokens="char")
