"""Language-model studies (``kind = "lm"``): next-token smoothing trained as packs.

The corpus is the synthetic language (whose true next-token distribution is known at every
position, :mod:`smoothflip.data.language`) or the user's own text (:mod:`smoothflip.data.text`).
Every arm trains the same tiny causal LM (:mod:`smoothflip.lm.models`) on the same sequences; a
run's seed drives its initialization and data order. Packs stack the members under ``torch.vmap``
like the classifier engine; :func:`train_lm_reference` trains one run alone with the same
semantics, and a test holds the two to the same numbers.

Per epoch the validation and test splits are scored (next-token NLL, accuracy, ECE, model entropy,
and on the synthetic language the KL divergence from the true next-token distribution). The
selected epoch is the one with the lowest validation NLL (``[train] selection``); its weights are
kept, and at the end the selected and the last weights are scored in full, with temperature scaling
fitted on the validation tokens, and the model's next-token distribution after a few named contexts
("hello how are ...") is stored beside the true one.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.func import functional_call, stack_module_state

from smoothflip import metrics
from smoothflip.engine.common import (
    ProgressFn,
    diverged,
    make_optimizer,
    make_schedule,
    pack_step,
    plan,
    run_result,
)
from smoothflip.lm.losses import causal_lm_loss, unigram_prior
from smoothflip.lm.metrics import lm_metrics
from smoothflip.lm.models import build_lm
from smoothflip.study.grid import RunConfig
from smoothflip.study.store import RunResult

LM_CURVE_KEYS = (
    "epoch",
    "train_loss",
    "val_nll",
    "val_acc",
    "val_ece",
    "test_nll",
    "test_acc",
    "test_ece",
    "test_kl",
    "test_entropy",
)
EVAL_BATCH = 64
EXAMPLE_CONTEXTS = ("hello how are", "hello how", "how are you")
"""Contexts whose next-token distributions are stored (when the corpus knows their words)."""
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


# --------------------------------------------------------------------------- corpus


def load_corpus(data: Mapping[str, Any], *, base_dir: str = ".") -> Any:
    """The study's corpus: the synthetic language (``source = "language"``) or a ``.txt`` file.

    Raises:
        ValueError: an unknown option (named) or source.
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
    raise ValueError(
        f'data.source = "{source}": a language-model study reads "language" (the synthetic language) '
        "or a .txt file"
    )


def _check_options(options: Mapping[str, Any], allowed: Mapping[str, Any], what: str) -> None:
    for key in options:
        if key not in allowed:
            raise ValueError(f"data.options: unknown key {key!r} for {what}; allowed: {', '.join(allowed)}")


def corpus_fingerprint(corpus: Any) -> str:
    digest = hashlib.sha256()
    for split in (corpus.train, corpus.validation, corpus.test):
        array = np.ascontiguousarray(split)
        digest.update(str((array.dtype.str, array.shape)).encode())
        digest.update(array.tobytes())
    digest.update("\x00".join(corpus.token_names).encode())
    return digest.hexdigest()


def _truth(corpus: Any, split: str) -> Any:
    fn = getattr(corpus, "true_distributions", None)
    return None if fn is None else fn(split)


def auto_lm_pack_size(run: RunConfig, corpus: Any, batch_size: int, device: torch.device) -> int:
    """The largest pack of language models that fits a quarter of free memory (capped like classifiers)."""
    from smoothflip.engine.sizing import MAX_PACK, MEMORY_SHARE, free_memory

    params = sum(p.numel() for p in build_lm_member(run, corpus).parameters())
    tokens = batch_size * corpus.train.shape[1]
    per_member = 4 * (4 * params + 6 * tokens * corpus.vocab_size)  # logits, log-softmax, grads, slack
    fit = int(MEMORY_SHARE * free_memory(device) // per_member)
    return max(1, min(MAX_PACK.get(device.type, 64), fit))


# --------------------------------------------------------------------------- members


def build_lm_member(run: RunConfig, corpus: Any) -> torch.nn.Module:
    """The run's language model, initialized from its ``init`` seed without touching the caller's RNG."""
    cfg = run.shared["model"]
    options = {k: v for k, v in cfg.get("options", {}).items() if k != "context"}
    context = int(cfg.get("options", {}).get("context", 8))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(run.seed_for("init"))
        return build_lm(cfg["name"], vocab_size=corpus.vocab_size, context=context, options=options)


def lm_loss_fn(
    run: RunConfig, corpus: Any, epoch: int
) -> tuple[tuple[Any, ...], Callable[[Tensor, Tensor], Tensor]]:
    """``fn(logits [B, T, V], ids [B, T]) -> [B, T-1]`` per-token losses for the run in ``epoch``, and a
    key telling which runs can share one call."""
    arm = run.arm
    never = torch.as_tensor(np.asarray(corpus.never_target, dtype=bool))
    warming = epoch <= arm.warmup_epochs
    z_loss = 0.0 if warming else float(arm.params.get("z_loss", 0.0))
    common = {"reduction": "none", "all_ignored": "zero", "z_loss": z_loss}
    if warming or arm.loss == "ce":
        key: tuple[Any, ...] = ("ce", z_loss)
        kwargs: dict[str, Any] = {"kind": "ce", **common}
    elif arm.loss == "confidence_penalty":
        key = ("arm", arm.name)
        kwargs = {
            "kind": "confidence_penalty",
            "beta": arm.params["beta"],
            "hinge": arm.params.get("hinge"),
            **common,
        }
    else:
        eps = float(arm.params["eps"])
        key = ("arm", arm.name)
        if arm.params.get("prior") == "train":
            prior = unigram_prior(corpus.train[:, 1:], corpus.vocab_size, smoothing=1.0, never_target=never)
            kwargs = {"kind": "prior", "eps": eps, "prior": prior, **common}
        else:
            kwargs = {
                "kind": "negative" if eps < 0 else "smoothed",
                "eps": eps,
                "never_target": never,
                **common,
            }

    def fn(logits: Tensor, ids: Tensor) -> Tensor:
        moved = {k: v.to(logits.device) if isinstance(v, Tensor) else v for k, v in kwargs.items()}
        return causal_lm_loss(logits, ids, **moved)

    return key, fn


# --------------------------------------------------------------------------- evaluation


def evaluate(
    logits_fn: Callable[[Tensor], Tensor], ids: np.ndarray, truth: Any, device: torch.device
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
    return lm_metrics(logits.cpu(), x.cpu(), true_probs=truth)


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
    truth = _truth(corpus, "test")
    m = lm_metrics(test, x_test.cpu(), true_probs=truth)
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


# --------------------------------------------------------------------------- tracking


class LMTracker:
    """Per-epoch curves and model selection (lowest validation NLL) for one language-model run."""

    def __init__(self, run: RunConfig) -> None:
        self.run = run
        self.curves: dict[str, list[float]] = {k: [] for k in LM_CURVE_KEYS}
        self.best = math.inf
        self.selected_epoch: int | None = None
        self.selected_state: dict[str, Tensor] | None = None
        self.diverged_epoch: int | None = None
        self.selection = run.shared["train"]["selection"]

    def record(
        self, epoch: int, train_loss: float, val: Mapping[str, float], test: Mapping[str, float]
    ) -> bool:
        row = {
            "epoch": float(epoch),
            "train_loss": float(train_loss),
            "val_nll": val["nll"],
            "val_acc": val["accuracy"],
            "val_ece": val["ece"],
            "test_nll": test["nll"],
            "test_acc": test["accuracy"],
            "test_ece": test["ece"],
            "test_kl": test.get("kl_to_truth", math.nan),
            "test_entropy": test["entropy"],
        }
        for key in LM_CURVE_KEYS:
            self.curves[key].append(float(row[key]))
        score = val["nll"] if self.selection == "val_nll" else -val["accuracy"]
        if math.isfinite(score) and score < self.best:
            self.best = score
            self.selected_epoch = epoch
            return True
        return False

    def mark_diverged(self, epoch: int) -> None:
        if self.diverged_epoch is None:
            self.diverged_epoch = epoch

    def result(
        self,
        timings: dict[str, Any],
        selected: dict[str, float],
        last: dict[str, float],
        extras: dict[str, Any],
    ) -> RunResult:
        run = self.run
        summary = {
            "selected": selected,
            "last": last,
            "diverged": self.diverged_epoch is not None,
            "diverged_epoch": float(self.diverged_epoch) if self.diverged_epoch is not None else math.nan,
            "epochs_recorded": float(len(self.curves["epoch"])),
            "noise_rate": 0.0,
        }
        return run_result(run, summary, self.curves, extras, timings)


def _finish(
    tracker: LMTracker,
    corpus: Any,
    device: torch.device,
    current: Callable[[Tensor], Tensor] | None,
    selected: Callable[[Tensor], Tensor] | None,
    timings: dict[str, Any],
) -> RunResult:
    nan = dict.fromkeys(("epoch", "test_acc", "test_nll", "test_ece", "test_ece_ts", "test_brier"), math.nan)
    last_epoch = len(tracker.curves["epoch"])
    last = (
        final_metrics(current, corpus, device, last_epoch)
        if current is not None and last_epoch
        else dict(nan)
    )
    best = (
        final_metrics(selected, corpus, device, tracker.selected_epoch or 0)
        if selected is not None and tracker.selected_epoch
        else dict(nan)
    )
    extras = (
        {"next_token_examples": next_token_examples(selected, corpus, device)} if selected is not None else {}
    )
    return tracker.result(timings, best, last, extras)


# --------------------------------------------------------------------------- trainers


def train_lm_pack(
    runs: Sequence[RunConfig],
    corpus: Any,
    *,
    device: str | torch.device = "cpu",
    progress: ProgressFn | None = None,
) -> list[RunResult]:
    """Train language-model runs that share corpus, model and schedule together; one result per run."""
    if not runs:
        return []
    if len({r.pack_key for r in runs}) != 1:
        raise ValueError("a pack's runs must share data, model and schedule (one pack key)")
    started = time.perf_counter()
    device = torch.device(device)
    train_cfg = runs[0].shared["train"]
    size = len(runs)
    n_train = corpus.train.shape[0]
    schedule = plan(train_cfg, n_train)
    batch_size = int(train_cfg["batch_size"])
    tokens = torch.as_tensor(corpus.train, device=device)
    models = [build_lm_member(r, corpus) for r in runs]
    params, buffers = stack_module_state(models)
    params = {k: v.detach().to(device).requires_grad_(True) for k, v in params.items()}
    buffers = {k: v.to(device) for k, v in buffers.items()}
    base = copy.deepcopy(models[0]).to("meta")

    def call(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(base, (p, b), (x,))

    forward_each = torch.vmap(call, in_dims=(0, 0, 0))

    def member(m: int, state: Mapping[str, Tensor] | None = None) -> Callable[[Tensor], Tensor]:
        p = state if state is not None else {k: v[m] for k, v in params.items()}
        b = {k: v[m] for k, v in buffers.items()}
        return lambda x: functional_call(base, (p, b), (x,))

    optimizer = make_optimizer(list(params.values()), train_cfg)
    scheduler = make_schedule(optimizer, train_cfg, schedule.total_steps)
    orders = [np.random.default_rng(r.seed_for("order")) for r in runs]
    trackers = [LMTracker(r) for r in runs]
    alive = torch.ones(size, dtype=torch.bool, device=device)
    truth_val, truth_test = _truth(corpus, "validation"), _truth(corpus, "test")
    step = 0
    for epoch in range(1, schedule.epochs + 1):
        groups: dict[tuple[Any, ...], tuple[list[int], Callable]] = {}
        for m, run in enumerate(runs):
            key, fn = lm_loss_fn(run, corpus, epoch)
            groups.setdefault(key, ([], fn))[0].append(m)
        group_list = [(torch.tensor(ms, device=device), fn) for ms, fn in groups.values()]
        perms = torch.as_tensor(np.stack([rng.permutation(n_train) for rng in orders]), device=device)
        loss_sum = torch.zeros(size, dtype=torch.float64, device=device)
        seen = 0
        for b in range(schedule.batches):
            if step >= schedule.total_steps:
                break
            idx = perms[:, b * batch_size : (b + 1) * batch_size]  # [P, B]
            ids = tokens[idx]  # [P, B, T]
            logits = forward_each(params, buffers, ids)  # [P, B, T, V]
            member_loss = _member_losses(logits, ids, group_list)
            max_logit = logits.detach().abs().amax(dim=(1, 2, 3))
            alive = pack_step(member_loss, max_logit, alive, trackers, epoch, optimizer, scheduler, params)
            step += 1
            loss_sum += member_loss.detach().to(torch.float64) * idx.shape[1]
            seen += idx.shape[1]
        train_losses = (loss_sum / max(seen, 1)).tolist()
        for m, tracker in enumerate(trackers):
            if not bool(alive[m]):
                continue
            fn = member(m)
            val = evaluate(fn, corpus.validation, truth_val, device)
            test = evaluate(fn, corpus.test, truth_test, device)
            if tracker.record(epoch, train_losses[m], val, test):
                tracker.selected_state = {k: v[m].detach().clone() for k, v in params.items()}
        if progress is not None:
            progress(epoch / schedule.epochs)
        if step >= schedule.total_steps:
            break
    seconds = time.perf_counter() - started
    timings = {"pack_seconds": seconds, "pack_size": size, "seconds_per_run": seconds / size, "steps": step}
    results = []
    for m, tracker in enumerate(trackers):
        current = member(m) if bool(alive[m]) else None
        selected = member(m, tracker.selected_state) if tracker.selected_state is not None else None
        results.append(_finish(tracker, corpus, device, current, selected, timings))
    return results


def _member_losses(logits: Tensor, ids: Tensor, groups: Sequence[tuple[Tensor, Callable]]) -> Tensor:
    """``[P]`` mean per-token loss of each member's batch."""
    _, _, t, v = logits.shape
    parts, order = [], []
    for members, fn in groups:
        per_token = fn(logits[members].reshape(-1, t, v), ids[members].reshape(-1, t))  # [G*B, T-1]
        parts.append(per_token.reshape(len(members), -1).mean(dim=1))
        order.append(members)
    return torch.cat(parts)[torch.argsort(torch.cat(order))]


def train_lm_reference(
    run: RunConfig, corpus: Any, *, device: str | torch.device = "cpu", progress: ProgressFn | None = None
) -> RunResult:
    """Train one language-model run alone (same semantics as :func:`train_lm_pack`)."""
    started = time.perf_counter()
    device = torch.device(device)
    train_cfg = run.shared["train"]
    n_train = corpus.train.shape[0]
    schedule = plan(train_cfg, n_train)
    batch_size = int(train_cfg["batch_size"])
    tokens = torch.as_tensor(corpus.train, device=device)
    model = build_lm_member(run, corpus).to(device)
    optimizer = make_optimizer(list(model.parameters()), train_cfg)
    scheduler = make_schedule(optimizer, train_cfg, schedule.total_steps)
    order = np.random.default_rng(run.seed_for("order"))
    tracker = LMTracker(run)
    truth_val, truth_test = _truth(corpus, "validation"), _truth(corpus, "test")
    step, failed = 0, False
    for epoch in range(1, schedule.epochs + 1):
        _, loss_fn = lm_loss_fn(run, corpus, epoch)
        perm = torch.as_tensor(order.permutation(n_train), device=device)
        total, seen = 0.0, 0
        for b in range(schedule.batches):
            if step >= schedule.total_steps:
                break
            ids = tokens[perm[b * batch_size : (b + 1) * batch_size]]
            logits = model(ids)
            loss = loss_fn(logits, ids).reshape(-1).mean()
            if bool(diverged(loss.detach(), logits.detach().abs().amax())):
                tracker.mark_diverged(epoch)
                failed = True
                break
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            total += float(loss.detach()) * ids.shape[0]
            seen += ids.shape[0]
        if failed:
            break
        val = evaluate(model, corpus.validation, truth_val, device)
        test = evaluate(model, corpus.test, truth_test, device)
        if tracker.record(epoch, total / max(seen, 1), val, test):
            tracker.selected_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if progress is not None:
            progress(epoch / schedule.epochs)
        if step >= schedule.total_steps:
            break
    seconds = time.perf_counter() - started
    timings = {"pack_seconds": seconds, "pack_size": 1, "seconds_per_run": seconds, "steps": step}
    selected = None
    if tracker.selected_state is not None:
        best = copy.deepcopy(model)
        best.load_state_dict(tracker.selected_state)
        selected = best
    return _finish(tracker, corpus, device, None if failed else model, selected, timings)
