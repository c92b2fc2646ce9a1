"""smoothflip.lm.hf: the Trainer's compute_loss_func with a tiny randomly initialized GPT-2 (no downloads)."""

from __future__ import annotations

import copy
import importlib
import sys

import pytest
import torch
import torch.nn.functional as F

V = 64


def test_import_without_transformers_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    monkeypatch.delitem(sys.modules, "smoothflip.lm.hf", raising=False)
    with pytest.raises(ImportError, match=r"pip install smoothflip\[hf\]"):
        importlib.import_module("smoothflip.lm.hf")


@pytest.fixture(scope="module")
def hf():
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")  # the Trainer needs it
    return importlib.import_module("smoothflip.lm.hf")


def _shifted_ce(
    logits: torch.Tensor, labels: torch.Tensor, eps: float, reduction: str = "mean"
) -> torch.Tensor:
    v = logits.shape[-1]
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, v), labels[:, 1:].reshape(-1), label_smoothing=eps, reduction=reduction
    )


def test_loss_function_on_plain_outputs(hf) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, V, generator=g, dtype=torch.float64)
    labels = torch.randint(0, V, (3, 7), generator=g)
    labels[2, 3:] = -100
    fn = hf.compute_loss_func("smoothed", eps=0.1)
    ref = _shifted_ce(logits, labels, 0.1)
    for outputs in ({"logits": logits}, (logits, None), [logits], logits):
        torch.testing.assert_close(fn(outputs, labels), ref)
    # with num_items_in_batch: this batch's token sum over the accumulated batch's count
    total = _shifted_ce(logits, labels, 0.1, reduction="sum")
    torch.testing.assert_close(fn({"logits": logits}, labels, num_items_in_batch=40), total / 40)
    torch.testing.assert_close(
        fn({"logits": logits}, labels, num_items_in_batch=torch.tensor(40)), total / 40
    )
    # a batch without labels: 0 by default (no NaN in the run's loss), NaN on request
    empty = torch.full_like(labels, -100)
    assert fn({"logits": logits}, empty, num_items_in_batch=0).item() == 0.0
    nan_fn = hf.compute_loss_func("smoothed", eps=0.1, all_ignored="nan")
    assert torch.isnan(nan_fn({"logits": logits}, empty, num_items_in_batch=0))
    assert "smoothed" in repr(fn)


def test_loss_function_errors(hf) -> None:
    with pytest.raises(ValueError, match="use kind='negative'"):
        hf.compute_loss_func("smoothed", eps=-0.1)  # checked when built, not at the first step
    with pytest.raises(ValueError, match="needs beta"):
        hf.compute_loss_func("confidence_penalty")
    fn = hf.compute_loss_func("ce")
    with pytest.raises(ValueError, match="no 'logits'"):
        fn({"loss": torch.tensor(1.0)}, torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="needs labels"):
        fn({"logits": torch.zeros(1, 2, 3)}, None)


# ----------------------------------------------------------------------------- a real Trainer


class _Sequences(torch.utils.data.Dataset):
    """Eight sequences of 12 tokens; some end in padding (labels -100, input_ids kept valid)."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(1)
        self.input_ids = torch.randint(0, V, (8, 12), generator=g)
        self.labels = self.input_ids.clone()
        for i, keep in enumerate([12, 9, 12, 5, 12, 7, 10, 12]):
            self.labels[i, keep:] = -100

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids[i], "labels": self.labels[i]}

    def index_of(self, labels_row: torch.Tensor) -> int:
        return int(torch.nonzero((self.labels == labels_row).all(dim=1))[0, 0])


def _tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        n_layer=1,
        n_head=2,
        n_embd=32,
        vocab_size=V,
        n_positions=32,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )
    torch.manual_seed(0)
    return GPT2LMHeadModel(config)


def _train(hf, tmp_path, *, batch_size: int, accumulation: int, max_steps: int, eps: float = 0.1):
    from transformers import Trainer, TrainingArguments

    model = hf.count_shifted_labels(_tiny_gpt2())
    initial = copy.deepcopy(model).eval()
    data = _Sequences()
    loss_fn = hf.compute_loss_func("smoothed", eps=eps)
    calls = []

    def recording(outputs, labels, num_items_in_batch=None):
        loss = loss_fn(outputs, labels, num_items_in_batch=num_items_in_batch)
        calls.append((outputs["logits"].detach().clone(), labels.clone(), num_items_in_batch, loss.item()))
        return loss

    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=data, compute_loss_func=recording)
    trainer.train()
    logged = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return initial, data, calls, logged


def test_trainer_logs_our_loss(hf, tmp_path) -> None:
    initial, data, calls, logged = _train(hf, tmp_path, batch_size=4, accumulation=1, max_steps=2)
    assert len(calls) == 2
    assert len(logged) == 2
    logits, labels, num_items, value = calls[0]
    assert int(num_items) == int(
        (labels[:, 1:] != -100).sum()
    )  # the shifted tokens, thanks to count_shifted_labels
    # the loss by hand: the initial model on the same batch, smoothed CE on the shifted labels
    rows = [data.index_of(row) for row in labels]
    with torch.no_grad():
        hand_logits = initial(input_ids=data.input_ids[rows]).logits
    torch.testing.assert_close(logits, hand_logits, rtol=1e-5, atol=1e-5)
    hand = _shifted_ce(hand_logits, labels, 0.1).item()
    assert value == pytest.approx(hand, rel=1e-5)
    assert logged[0] == pytest.approx(hand, rel=1e-5)
    assert logged[1] == pytest.approx(calls[1][3], rel=1e-6)


def test_gradient_accumulation_gives_the_token_mean_of_the_whole_batch(hf, tmp_path) -> None:
    _, _, calls, logged = _train(hf, tmp_path, batch_size=2, accumulation=2, max_steps=1)
    assert len(calls) == 2  # two micro-batches, one optimizer step
    logits = torch.cat([c[0] for c in calls])
    labels = torch.cat([c[1] for c in calls])
    tokens = int((labels[:, 1:] != -100).sum())
    assert all(int(c[2]) == tokens for c in calls)
    token_mean = _shifted_ce(logits, labels, 0.1).item()
    assert logged[0] == pytest.approx(token_mean, rel=1e-5)
    per_batch_means = [_shifted_ce(c[0], c[1], 0.1).item() for c in calls]
    assert abs(sum(per_batch_means) / 2 - token_mean) > 1e-3  # the padding makes the naive average differ


def test_count_shifted_labels(hf) -> None:
    model = _tiny_gpt2()
    before = model.loss_type  # None in transformers 5.x: GPT2LMHeadModel is not named ...ForCausalLM
    assert hf.count_shifted_labels(model) is model
    assert model.loss_type == (before or "ForCausalLM")
    with pytest.raises(TypeError, match="PreTrainedModel"):
        hf.count_shifted_labels(torch.nn.Linear(2, 2))
