"""smoothflip.lm.metrics: hand computations, scipy references, masks, alignment, sparse truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import softmax
from scipy.stats import entropy

from smoothflip.data.language import TokenDistributions
from smoothflip.lm import (
    kl_to_truth,
    lm_metrics,
    model_entropy,
    next_token_accuracy,
    next_token_ece,
    next_token_nll,
    perplexity,
    true_entropy,
)
from smoothflip.metrics import expected_calibration_error

V = 9


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Logits [3, 6, V], padded labels, and a dense true distribution per scored position [3, 5, V]."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 6, V, generator=g) * 2
    labels = torch.randint(0, V, (3, 6), generator=g)
    labels[1, 4:] = -100
    labels[2, 2:] = -100
    rng = np.random.default_rng(0)
    true = rng.dirichlet(np.full(V, 0.3), size=(3, 5))
    true[true < 0.02] = 0.0  # sparse rows, with exact zeros
    true /= true.sum(axis=-1, keepdims=True)
    return logits, labels, true


def _scored(logits: torch.Tensor, labels: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flattened float64 logits, targets and the valid mask of the shifted positions (by hand)."""
    z = logits[:, :-1].double().numpy().reshape(-1, V)
    y = labels[:, 1:].numpy().reshape(-1)
    return z, y, y != -100


def test_nll_and_perplexity_match_cross_entropy(batch) -> None:
    logits, labels, _ = batch
    ref = F.cross_entropy(logits[:, :-1].double().reshape(-1, V), labels[:, 1:].reshape(-1)).item()
    assert next_token_nll(logits, labels) == pytest.approx(ref, rel=1e-12)
    assert perplexity(logits, labels) == pytest.approx(math.exp(ref), rel=1e-12)


def test_accuracy_by_hand(batch) -> None:
    logits, labels, _ = batch
    z, y, valid = _scored(logits, labels)
    assert next_token_accuracy(logits, labels) == pytest.approx(np.mean(z.argmax(1)[valid] == y[valid]))
    # a model that always predicts the next token is perfect; ties go to the first index
    perfect = F.one_hot(labels.clamp(min=0).roll(-1, dims=1), V).float() * 5
    assert next_token_accuracy(perfect, labels) == 1.0
    assert next_token_accuracy(torch.zeros(1, 3, 4), torch.tensor([[0, 0, 1]])) == 0.5


def test_ece_reuses_expected_calibration_error(batch) -> None:
    logits, labels, _ = batch
    z, y, valid = _scored(logits, labels)
    probs = softmax(z[valid], axis=1)
    for n_bins in (5, 15):
        expected = expected_calibration_error(probs, y[valid], n_bins=n_bins)
        assert next_token_ece(logits, labels, n_bins=n_bins) == pytest.approx(expected, abs=1e-12)
    mce = expected_calibration_error(probs, y[valid], n_bins=10, norm="max")
    assert next_token_ece(logits, labels, n_bins=10, norm="max") == pytest.approx(mce, abs=1e-12)


def test_entropies_match_scipy(batch) -> None:
    logits, labels, true = batch
    z, _, valid = _scored(logits, labels)
    model_h = entropy(softmax(z, axis=1), axis=1)
    assert model_entropy(logits, labels) == pytest.approx(model_h[valid].mean(), rel=1e-12)
    assert model_entropy(logits) == pytest.approx(model_h.mean(), rel=1e-12)  # all T - 1 positions
    true_h = entropy(true.reshape(-1, V), axis=1)
    assert true_entropy(true) == pytest.approx(true_h.mean(), rel=1e-12)
    assert true_entropy(true, labels=labels) == pytest.approx(true_h[valid].mean(), rel=1e-12)


def test_kl_to_truth_matches_scipy(batch) -> None:
    logits, labels, true = batch
    z, _, valid = _scored(logits, labels)
    q = softmax(z, axis=1)
    kl = entropy(true.reshape(-1, V), q, axis=1)  # scipy: KL(p || q) in nats
    assert kl_to_truth(true, logits) == pytest.approx(kl.mean(), rel=1e-10)
    assert kl_to_truth(true, logits, labels=labels) == pytest.approx(kl[valid].mean(), rel=1e-10)
    # the truth itself scores 0, and KL = cross-entropy - entropy
    truth_logits = torch.from_numpy(np.log(np.maximum(true, 1e-300)))
    truth_logits = torch.cat([truth_logits, torch.zeros(3, 1, V, dtype=torch.float64)], dim=1)
    assert kl_to_truth(true, truth_logits) == pytest.approx(0.0, abs=1e-10)


def test_sparse_truth_equals_dense(batch) -> None:
    logits, labels, true = batch
    width = int((true > 0).sum(-1).max())
    assert width < V
    order = np.argsort(-true, axis=-1)[..., :width]  # keeps every non-zero entry of every row
    assert np.allclose(np.take_along_axis(true, order, -1).sum(-1), 1.0)
    sparse = TokenDistributions(order, np.take_along_axis(true, order, -1), V)
    np.testing.assert_allclose(sparse.dense(), true, atol=1e-15)
    assert kl_to_truth(sparse, logits, labels=labels) == pytest.approx(
        kl_to_truth(true, logits, labels=labels), rel=1e-12
    )
    assert true_entropy(sparse) == pytest.approx(true_entropy(true), rel=1e-12)


def test_zero_truth_rows_are_skipped(batch) -> None:
    logits, _, true = batch
    holes = true.copy()
    holes[0, 3] = 0.0
    z = logits[:, :-1].double().numpy().reshape(-1, V)
    kl = entropy(true.reshape(-1, V), softmax(z, axis=1), axis=1)
    keep = np.ones(15, dtype=bool)
    keep[3] = False
    assert kl_to_truth(holes, logits) == pytest.approx(kl[keep].mean(), rel=1e-10)


def test_padding_positions_are_ignored_like_dropping_them(batch) -> None:
    logits, labels, true = batch
    short_logits, short_labels = logits[2:, :2], labels[2:, :2]  # row 2 holds 2 real tokens
    padded_nll = next_token_nll(logits[2:], labels[2:])
    assert padded_nll == pytest.approx(next_token_nll(short_logits, short_labels), rel=1e-12)
    assert kl_to_truth(true[2:], logits[2:], labels=labels[2:]) == pytest.approx(
        kl_to_truth(true[2:, :1], short_logits), rel=1e-12
    )


def test_shift_false_aligns_position_t_with_label_t(batch) -> None:
    logits, labels, _ = batch
    aligned_labels = torch.cat([labels[:, 1:], torch.full((3, 1), -100)], dim=1)
    assert next_token_nll(logits, aligned_labels, shift=False) == pytest.approx(
        next_token_nll(logits, labels)
    )


def test_numpy_torch_and_bf16_inputs(batch) -> None:
    logits, labels, true = batch
    a = lm_metrics(logits, labels, true_probs=true)
    b = lm_metrics(logits.numpy(), labels.numpy(), true_probs=torch.from_numpy(true))
    assert a == pytest.approx(b, rel=1e-12)
    c = lm_metrics(logits.to(torch.bfloat16), labels, true_probs=true)
    assert c["nll"] == pytest.approx(a["nll"], rel=2e-2)


def test_lm_metrics_matches_the_single_functions(batch) -> None:
    logits, labels, true = batch
    out = lm_metrics(logits, labels, true_probs=true, n_bins=10)
    assert out["nll"] == pytest.approx(next_token_nll(logits, labels))
    assert out["perplexity"] == pytest.approx(perplexity(logits, labels))
    assert out["accuracy"] == pytest.approx(next_token_accuracy(logits, labels))
    assert out["ece"] == pytest.approx(next_token_ece(logits, labels, n_bins=10))
    assert out["entropy"] == pytest.approx(model_entropy(logits, labels))
    assert out["kl_to_truth"] == pytest.approx(kl_to_truth(true, logits, labels=labels))
    assert out["true_entropy"] == pytest.approx(true_entropy(true, labels=labels))
    assert out["tokens"] == 5 + 3 + 1


def test_chunking_gives_the_same_result(monkeypatch: pytest.MonkeyPatch, batch) -> None:
    import smoothflip.lm.metrics as lm_metrics_module

    logits, labels, true = batch
    whole = lm_metrics(logits, labels, true_probs=true)
    monkeypatch.setattr(lm_metrics_module, "_CHUNK_ELEMENTS", 1)  # one sequence per chunk
    assert lm_metrics(logits, labels, true_probs=true) == pytest.approx(whole, rel=1e-12)


def test_all_ignored_gives_nan() -> None:
    logits = torch.randn(2, 3, V)
    labels = torch.full((2, 3), -100)
    for value in (
        next_token_nll(logits, labels),
        perplexity(logits, labels),
        next_token_accuracy(logits, labels),
        next_token_ece(logits, labels),
        model_entropy(logits, labels),
    ):
        assert math.isnan(value)


def test_errors(batch) -> None:
    logits, labels, true = batch
    with pytest.raises(ValueError, match=r"logits must have shape \[B, T, V\]"):
        perplexity(logits[0], labels)
    with pytest.raises(ValueError, match="labels must have shape"):
        perplexity(logits, labels[:, 1:])
    with pytest.raises(ValueError, match=r"outside \[0, 9\)"):
        perplexity(logits, torch.full_like(labels, V))
    with pytest.raises(ValueError, match="true_probs must cover"):
        kl_to_truth(true, logits, shift=False)
    with pytest.raises(ValueError, match="must sum to 1"):
        kl_to_truth(true * 2, logits)
    with pytest.raises(ValueError, match="non-negative"):
        true_entropy(-true)
    with pytest.raises(TypeError, match="floating point"):
        perplexity(labels, labels)
