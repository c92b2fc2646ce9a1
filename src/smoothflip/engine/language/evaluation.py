"""Scoring a language model: next-token metrics per split, the full final scoring, named contexts."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from smoothflip import metrics
from smoothflip.lm.metrics import lm_metrics

EVAL_BATCH = 64
EXAMPLE_CONTEXTS = ("hello how are", "hello how", "how are you")
"""Contexts whose next-token distributions are stored (when the corpus knows their words)."""


def truth(corpus: Any, split: str) -> Any:
    """The corpus's true next-token distributions on ``split`` (synthetic language), or None."""
    fn = getattr(corpus, "true_distributions", None)
    return None if fn is None else fn(split)


def evaluate(
    logits_fn: Callable[[Tensor], Tensor], ids: np.ndarray, true_probs: Any, device: torch.device
) -> dict[str, float]:
    """Next-token metrics of one model on one split (``logits_fn``: ``[n, T] -> [n, T, V]``)."""
    x = torch.as_tensor(ids, device=device)
    with torch.no_grad():
        logits = torch.cat([logits_fn(x[i : i + EVAL_BATCH]) for i in range(0, x.shape[0], EVAL_BATCH)])
    if not bool(torch.isfinite(logits).all()):
        return {
            "nll": math.nan,
            "accuracy": math.nan,
            "ece": math.nan,
            "entropy": math.nan,
            "kl_to_truth": math.nan,
        }
    return lm_metrics(logits.cpu(), x.cpu(), true_probs=true_probs)


def final_metrics(
    logits_fn: Callable[[Tensor], Tensor], corpus: Any, device: torch.device, epoch: int
) -> dict[str, float]:
    """Full scoring of one set of weights: test metrics, and temperature scaling fitted on validation."""
    x_val = torch.as_tensor(corpus.validation, device=device)
    x_test = torch.as_tensor(corpus.test, device=device)
    with torch.no_grad():
        val = torch.cat(
            [logits_fn(x_val[i : i + EVAL_BATCH]) for i in range(0, len(x_val), EVAL_BATCH)]
        ).cpu()
        test = torch.cat(
            [logits_fn(x_test[i : i + EVAL_BATCH]) for i in range(0, len(x_test), EVAL_BATCH)]
        ).cpu()
    out = {"epoch": float(epoch)}
    if not (bool(torch.isfinite(val).all()) and bool(torch.isfinite(test).all())):
        keys = (
            "val_nll",
            "test_nll",
            "test_perplexity",
            "test_acc",
            "test_ece",
            "test_entropy",
            "test_kl",
            "true_entropy",
            "temperature",
            "test_ece_ts",
            "test_nll_ts",
            "test_brier",
        )
        return {**out, **dict.fromkeys(keys, math.nan)}
    test_truth = truth(corpus, "test")
    m = lm_metrics(test, x_test.cpu(), true_probs=test_truth)
    out.update(
        {
            "val_nll": lm_metrics(val, x_val.cpu())["nll"],
            "test_nll": m["nll"],
            "test_perplexity": m["perplexity"],
            "test_acc": m["accuracy"],
            "test_ece": m["ece"],
            "test_entropy": m["entropy"],
            "test_kl": m.get("kl_to_truth", math.nan),
            "true_entropy": m.get("true_entropy", math.nan),
            "test_brier": math.nan,
        }
    )
    flat_val, y_val = _flat_targets(val, x_val.cpu())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        temperature = metrics.fit_temperature(flat_val, y_val)
    out["temperature"] = temperature
    scaled = test.to(torch.float64) / temperature
    m_scaled = lm_metrics(scaled, x_test.cpu())
    out["test_ece_ts"] = m_scaled["ece"]
    out["test_nll_ts"] = m_scaled["nll"]
    return out


def _flat_targets(logits: Tensor, ids: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Positions that predict a next token: ``[M, V]`` logits and ``[M]`` targets."""
    lg = logits[:, :-1].reshape(-1, logits.shape[-1]).to(torch.float64).numpy()
    return lg, ids[:, 1:].reshape(-1).numpy()


def next_token_examples(
    logits_fn: Callable[[Tensor], Tensor], corpus: Any, device: torch.device, top: int = 8
) -> list[dict[str, Any]]:
    """The model's and (when known) the true next-token distribution after a few named contexts."""
    language = getattr(corpus, "language", None)
    names = list(corpus.token_names)
    out = []
    for context in EXAMPLE_CONTEXTS:
        words = context.split()
        if not all(w in names for w in words):
            continue
        ids = torch.as_tensor([[1] + [names.index(w) for w in words]], device=device)  # 1 = <bos>
        with torch.no_grad():
            probs = torch.softmax(logits_fn(ids)[0, -1].to(torch.float64), dim=-1).cpu().numpy()
        entry: dict[str, Any] = {"context": context, "model": _top(probs, names, top)}
        if language is not None:
            entry["true"] = _top(np.asarray(language.next_token_distribution(words)), names, top)
        out.append(entry)
    return out


def _top(probs: np.ndarray, names: Sequence[str], k: int) -> list[list[Any]]:
    order = np.argsort(-probs, kind="stable")[:k]
    return [[names[i], round(float(probs[i]), 5)] for i in order]
