"""smoothflip.data.language: distributions, sample frequencies, the entropy knob, determinism, phrasebook."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from scipy.stats import chisquare

from smoothflip.data.language import (
    BOS,
    PAD,
    LanguageData,
    SyntheticLanguage,
    TokenDistributions,
    language_dataset,
    zipf_entropy,
)


@pytest.fixture(scope="module")
def lang() -> SyntheticLanguage:
    return SyntheticLanguage(120, seed=3)


@pytest.fixture(scope="module")
def sample(lang: SyntheticLanguage) -> np.ndarray:
    return lang.sample(3000, 40, seed=11)


# ----------------------------------------------------------------------------- distributions


def test_rows_are_distributions(lang: SyntheticLanguage, sample: np.ndarray) -> None:
    dist = lang.true_distributions(sample[:200])
    assert isinstance(dist, TokenDistributions)
    assert dist.shape == (200, 39)
    assert dist.indices.shape[-1] == lang.candidates + 5
    assert np.all(dist.probs >= 0)
    np.testing.assert_allclose(dist.probs.sum(-1), 1.0, atol=1e-12)
    assert np.all(np.diff(dist.probs, axis=-1) <= 0)  # slots sorted by probability
    dense = lang.true_distributions(sample[:20], dense=True)
    np.testing.assert_allclose(dense, dist[:20].dense(), atol=0)
    np.testing.assert_allclose(dense.sum(-1), 1.0, atol=1e-12)
    assert np.all(dense[..., [PAD, BOS]] == 0)  # never a next token
    # within a row, a token id appears in at most one slot with positive probability
    width = dist.indices.shape[-1]
    for row_idx, row_p in zip(
        dist.indices[:5].reshape(-1, width), dist.probs[:5].reshape(-1, width), strict=True
    ):
        assert len(set(row_idx[row_p > 0].tolist())) == int((row_p > 0).sum())


def test_next_token_distribution_agrees_with_true_distributions(lang: SyntheticLanguage, sample) -> None:
    dense = lang.true_distributions(sample[:6], dense=True)
    rng = np.random.default_rng(0)
    for n, t in zip(rng.integers(0, 6, 25), rng.integers(0, 39, 25), strict=True):
        p = lang.next_token_distribution(sample[n, : t + 1])
        np.testing.assert_allclose(p, dense[n, t], atol=1e-15)
        assert p.sum() == pytest.approx(1.0)


def test_empirical_next_token_frequencies_match(lang: SyntheticLanguage, sample: np.ndarray) -> None:
    """Chi-square per context for the most frequent contexts (a distribution depends on the last 3 tokens)."""
    window = 3
    padded = np.concatenate([np.full((sample.shape[0], window - 1), BOS), sample], axis=1)
    contexts = Counter()
    follow: dict[tuple, Counter] = {}
    for row in padded:
        for t in range(window - 1, padded.shape[1] - 1):
            key = tuple(row[t - window + 1 : t + 1].tolist())
            contexts[key] += 1
            follow.setdefault(key, Counter())[int(row[t + 1])] += 1
    tested = 0
    for key, count in contexts.most_common(12):
        p = lang.next_token_distribution([k for k in key if k != BOS])
        observed = follow[key]
        assert all(p[token] > 0 for token in observed)  # never a token outside the support
        support = np.nonzero(p * count >= 5)[0]  # chi-square needs expected counts >= 5
        obs = np.array([observed.get(int(v), 0) for v in support], dtype=float)
        exp = p[support] / p[support].sum() * obs.sum()
        assert chisquare(obs, exp).pvalue > 1e-3, lang.decode([k for k in key])
        tested += 1
    assert tested == 12


def test_sampled_ranks_follow_the_zipf_weights() -> None:
    """Pooled over every generic context: the rank of the sampled token is Zipf-distributed."""
    lang = SyntheticLanguage(200, mean_entropy=1.5, candidates=16, phrases=False, seed=5)
    seqs = lang.sample(2000, 30, seed=2)
    dist = lang.true_distributions(seqs)
    slot = np.argmax(dist.indices == seqs[:, 1:, None], axis=-1)
    assert np.all(dist.indices[np.arange(2000)[:, None], np.arange(29), slot] == seqs[:, 1:])
    zipf = dist.probs[0, 0, :16]
    counts = np.bincount(slot.ravel(), minlength=16)
    assert chisquare(counts, zipf * counts.sum()).pvalue > 1e-3
    # and the mean surprisal of the sampled tokens is the mean true entropy (law of large numbers)
    surprisal = -np.log(np.take_along_axis(dist.probs, slot[..., None], -1)[..., 0])
    assert surprisal.mean() == pytest.approx(
        lang.generic_entropy, abs=4 * surprisal.std() / math.sqrt(slot.size)
    )


# ----------------------------------------------------------------------------- the entropy knob


def test_entropy_knob_moves_the_mean_entropy() -> None:
    targets = [0.5, 1.0, 2.0, 3.0]
    langs = [SyntheticLanguage(150, mean_entropy=h, phrases=False) for h in targets]
    for lang, h in zip(langs, targets, strict=True):
        assert lang.generic_entropy == pytest.approx(h, abs=1e-9)
        assert lang.entropy_rate(length=12, num_sequences=40) == pytest.approx(h, abs=1e-9)
    exponents = [lang.exponent for lang in langs]
    assert exponents == sorted(exponents, reverse=True)  # more entropy = flatter Zipf
    with_phrases = [
        SyntheticLanguage(150, mean_entropy=h).entropy_rate(length=24, num_sequences=300) for h in targets
    ]
    assert with_phrases == sorted(with_phrases)
    assert with_phrases[2] == pytest.approx(2.0, abs=0.1)  # the phrasebook moves it only a little


def test_zipf_exponent_instead_of_entropy() -> None:
    lang = SyntheticLanguage(100, zipf_exponent=1.0)
    assert lang.generic_entropy == pytest.approx(zipf_entropy(32, 1.0))
    assert SyntheticLanguage(100, mean_entropy=math.log(32)).exponent == 0.0
    deterministic = SyntheticLanguage(100, mean_entropy=0.0, phrases=False)
    seqs = deterministic.sample(5, 10, seed=0)
    assert (seqs == seqs[0]).all()  # one path from <bos>
    assert zipf_entropy(4, 0.0) == pytest.approx(math.log(4))


# ----------------------------------------------------------------------------- determinism and order


def test_determinism_and_seeds(lang: SyntheticLanguage) -> None:
    state = np.random.get_state()[1].copy()  # noqa: NPY002 - checking the legacy global RNG
    a = lang.sample(20, 15, seed=7)
    assert np.array_equal(a, lang.sample(20, 15, seed=7))
    assert np.array_equal(a, lang.sample(20, 15, seed=np.random.default_rng(7)))
    assert not np.array_equal(a, lang.sample(20, 15, seed=8))
    assert np.array_equal(state, np.random.get_state()[1])  # noqa: NPY002 - untouched
    same = SyntheticLanguage(120, seed=3)
    assert same == lang
    np.testing.assert_array_equal(
        same.next_token_distribution("w40 w41"), lang.next_token_distribution("w40 w41")
    )
    other = SyntheticLanguage(120, seed=4)
    assert not np.array_equal(
        other.next_token_distribution("w40 w41"), lang.next_token_distribution("w40 w41")
    )


def test_second_order_dependence_through_token_classes() -> None:
    lang = SyntheticLanguage(60, classes=4, phrases=False, seed=1)
    last = 30
    rows = {tuple(lang.next_token_distribution([b, last]).round(12)) for b in range(2, 60)}
    assert 1 < len(rows) <= 4  # the token before the last matters through its class
    bigram = SyntheticLanguage(60, classes=1, phrases=False, seed=1)
    assert len({tuple(bigram.next_token_distribution([b, last]).round(12)) for b in range(2, 60)}) == 1
    first_order = SyntheticLanguage(60, order=1, phrases=False, seed=1)
    assert len({tuple(first_order.next_token_distribution([b, last]).round(12)) for b in range(2, 60)}) == 1


# ----------------------------------------------------------------------------- phrasebook and names


def test_hello_how_are_you(lang: SyntheticLanguage, sample: np.ndarray) -> None:
    p = lang.next_token_distribution("hello how are")
    assert lang.decode([int(p.argmax())]) == "you"
    assert lang.most_likely("hello how are", top=10) == [
        ("you", 0.6),
        ("things", 0.15),
        ("we", 0.1),
        ("they", 0.1),
        ("ya", 0.05),
    ]
    assert lang.most_likely("<bos> hello how", top=3) == [("are", 0.8), ("is", 0.1), ("do", 0.1)]
    starts = sample[:, 1:4]
    frequency = np.mean((starts == lang.encode("hello how are")).all(axis=1))
    assert frequency == pytest.approx(0.25 * 0.5 * 0.8, abs=0.02)  # + a little from the generic rule
    after = sample[(starts == lang.encode("hello how are")).all(axis=1), 4]
    assert np.mean(after == lang.encode("you")[0]) == pytest.approx(0.6, abs=0.06)
    # the longest matching context wins: "how are you" overrides the generic rule mid-sentence
    assert lang.most_likely("w50 how are you", top=2) == [("doing", 0.4), ("today", 0.3)]


def test_names_encode_decode(lang: SyntheticLanguage) -> None:
    names = lang.token_names
    assert len(names) == 120
    assert names[:3] == ("<pad>", "<bos>", "hello")
    assert names[17] == "w17"
    ids = lang.encode("<bos> hello how are w17")
    assert ids.tolist() == [1, 2, 3, 4, 17]
    assert lang.decode(ids) == "<bos> hello how are w17"
    assert lang.encode(["how", "w99"]).tolist() == [3, 99]
    assert lang.never_target.tolist()[:3] == [True, True, False]
    assert lang.never_target.sum() == 2
    plain = SyntheticLanguage(50, phrases=False)
    assert plain.token_names[2] == "w2"
    with pytest.raises(ValueError, match="unknown token 'w200'"):
        lang.encode("w200")


def test_sequences_and_padding(lang: SyntheticLanguage) -> None:
    seqs = lang.sample(4, 12, seed=0)
    assert seqs.dtype == np.int64
    assert np.all(seqs[:, 0] == BOS)
    assert not np.isin(seqs[:, 1:], [PAD, BOS]).any()
    padded = seqs.copy()
    padded[1, 8:] = PAD
    dist = lang.true_distributions(padded)
    assert np.all(dist.probs[1, 7:] == 0)  # no next token where the target is <pad>
    np.testing.assert_allclose(dist.probs[1, :7].sum(-1), 1.0)
    with pytest.raises(ValueError, match="must start with <bos>"):
        lang.true_distributions(seqs[:, 1:])
    with pytest.raises(ValueError, match="outside"):
        lang.true_distributions(np.full((2, 3), 500))


def test_language_dataset(lang: SyntheticLanguage) -> None:
    data = language_dataset(lang, num_train=30, num_validation=5, num_test=7, length=16, seed=2)
    assert isinstance(data, LanguageData)
    assert (data.train.shape, data.validation.shape, data.test.shape) == ((30, 16), (5, 16), (7, 16))
    more = language_dataset(lang, num_train=60, num_validation=5, num_test=7, length=16, seed=2)
    assert np.array_equal(data.test, more.test)  # independent streams per split
    assert np.array_equal(data.validation, more.validation)
    assert not np.array_equal(data.train[:5], data.validation)
    other = language_dataset(lang, num_train=30, num_validation=5, num_test=7, length=16, seed=3)
    assert not np.array_equal(data.test, other.test)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"vocab_size": 20}, "vocab_size must be >= 34"),
        ({"vocab_size": 100, "mean_entropy": 4.0}, r"mean_entropy must be in \[0, log\(candidates\)\]"),
        ({"vocab_size": 100, "mean_entropy": 1.0, "zipf_exponent": 1.0}, "not both"),
        ({"vocab_size": 100, "zipf_exponent": -1.0}, "zipf_exponent must be >= 0"),
        ({"vocab_size": 100, "order": 0}, "order must be >= 1"),
        ({"vocab_size": 100, "classes": 0}, "classes must be >= 1"),
    ],
)
def test_bad_settings(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SyntheticLanguage(**kwargs)


def test_bad_calls(lang: SyntheticLanguage) -> None:
    with pytest.raises(ValueError, match="length must be >= 2"):
        lang.sample(3, 1, seed=0)
    with pytest.raises(ValueError, match="must not hold <pad>"):
        lang.next_token_distribution([2, PAD])
    with pytest.raises(TypeError, match="seed"):
        lang.sample(3, 5, seed="x")
