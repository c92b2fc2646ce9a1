"""A certified run's result: each ensemble's certificates and metrics, and its attack checks."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from smoothflip import certify
from smoothflip.data import Dataset
from smoothflip.engine.certified.pack import ChunkOutput
from smoothflip.engine.certified.plan import Member, RunPlan, partition_salt
from smoothflip.engine.results import run_result
from smoothflip.study.spec.certify import metric_suffix
from smoothflip.study.store import RunResult

Outputs = Mapping[str, tuple[ChunkOutput, int]]
"""A learner's key -> (the output of its chunk, its row in the chunk)."""


def predictions(members: list[Member], outputs: Outputs) -> np.ndarray:
    """``[N_test, L]`` every learner's prediction on the test set (``-1``: abstains)."""
    return np.stack([outputs[m.key][0].predictions[outputs[m.key][1]] for m in members], axis=1)


def certificate(
    preds: np.ndarray, plan: RunPlan, k: int, num_classes: int, labels: np.ndarray | None = None
) -> certify.Certificate:
    """DPA (``d = 1``) or Finite Aggregation (``d > 1``) certificate of one ensemble's predictions."""
    settings = plan.settings
    if settings.d == 1:
        return certify.certify_votes(certify.votes_from_predictions(preds, num_classes), labels=labels)
    return certify.certify_finite_aggregation(
        preds, num_classes=num_classes, k=k, d=settings.d, salt=partition_salt(plan.run), labels=labels
    )


def _attack_check(
    plan: RunPlan, k: int, variant: int, main: np.ndarray, dataset: Dataset, outputs: Outputs
) -> dict[str, Any]:
    """Retrained on the ``variant``-th attacked labels: did a prediction certified at the budget change?"""
    budget = plan.budgets[variant - 1]
    members = plan.members[(k, variant)]
    attacked = predictions(members, outputs)
    num_classes = dataset.num_classes
    before = certificate(main, plan, k, num_classes)
    after = certificate(attacked, plan, k, num_classes)
    flipped = np.flatnonzero(plan.variants[variant] != plan.variants[0])
    touched = np.array([np.isin(m.part, flipped).any() for m in members], dtype=bool)
    moved = (attacked != main).any(axis=0)
    covered = before.radius >= budget
    changed = after.prediction != before.prediction
    return {
        "k": k,
        "check": variant,
        "attack": plan.settings.attack,
        "budget": int(budget),
        "flipped": int(flipped.size),
        "learners_touched": int(touched.sum()),
        "certified": int(covered.sum()),
        "broken": int((covered & changed).sum()),
        "changed": int(changed.sum()),
        "untouched_learners_changed": int((moved & ~touched).sum()),
    }


def run_outcome(plan: RunPlan, dataset: Dataset, outputs: Outputs, timings: dict[str, Any]) -> RunResult:
    """The stored result of one certified run."""
    settings = plan.settings
    y_test = dataset.y_test
    block: dict[str, float] = {}
    ensembles, checks = [], []
    diverged_learners = 0
    total_learners = 0
    curve: list[float] = []
    for k in settings.partitions:
        sfx = metric_suffix(settings, k)
        members = plan.members[(k, 0)]
        preds = predictions(members, outputs)
        cert = certificate(preds, plan, k, dataset.num_classes, labels=y_test)
        accuracy = certify.certified_accuracy(cert.radius, list(settings.radii))
        for r, value in zip(settings.radii, accuracy, strict=True):
            block[f"test_cert_acc_r{r}{sfx}"] = float(value)
        voting = preds >= 0
        per_learner = [
            float(np.mean(preds[:, j] == y_test)) for j in range(preds.shape[1]) if voting[:, j].all()
        ]
        block[f"test_mcr{sfx}"] = float(certify.median_certified_radius(cert.radius))
        block[f"test_acc{sfx}"] = float(np.mean(cert.prediction == y_test))
        block[f"test_base_acc{sfx}"] = float(np.mean(per_learner)) if per_learner else math.nan
        diverged = [bool(outputs[m.key][0].diverged[outputs[m.key][1]]) for m in members]
        diverged_learners += sum(diverged)
        total_learners += len(members)
        sizes = np.array([m.train_idx.size for m in members])
        ensembles.append(
            {
                "k": k,
                "d": settings.d,
                "scheme": settings.scheme,
                "learners": len(members),
                "part_sizes": [int(sizes.min()), float(np.median(sizes)), int(sizes.max())],
                "diverged_learners": int(sum(diverged)),
                "radius": cert.radius.tolist(),
            }
        )
        if not curve:
            losses = np.stack([outputs[m.key][0].losses[outputs[m.key][1]] for m in members])
            curve = np.nanmean(np.where(np.isfinite(losses), losses, np.nan), axis=0).tolist()
        for variant in range(1, len(plan.variants)):
            checks.append(_attack_check(plan, k, variant, preds, dataset, outputs))
    noisy = plan.noisy
    summary = {
        "selected": dict(block),
        "last": dict(block),
        "diverged": diverged_learners == total_learners,
        "diverged_epoch": math.nan,
        "diverged_learners": float(diverged_learners),
        "noise_rate": float(noisy.rate),
        "noise_rate_train": float(noisy.flipped.mean()),
        "n_train": float(dataset.y_train.shape[0]),
        "n_val": 0.0,
        "n_test": float(y_test.shape[0]),
    }
    curves = {"epoch": [float(e) for e in range(1, len(curve) + 1)], "train_loss": [float(v) for v in curve]}
    extras = {
        "certify": {
            "partitions": list(settings.partitions),
            "selection": settings.selection,
            "ensembles": ensembles,
            "attack_checks": checks,
        }
    }
    return run_result(plan.run, summary, curves, extras, timings)
