"""A Hugging Face ``Trainer`` text classifier in a smoothflip study (``pip install 'smoothflip[hf]'``).

The model is a one-layer BERT built from a small config with random weights (nothing is downloaded).
Examples are token ids (an ``.npz`` of ``x`` [N, L] and ``y`` [N]; ``make_tokens`` writes a
synthetic set). The Trainer's loss is ``run.criterion`` (``compute_loss_func``), the arm's label
flipping happens in the data collator, and a callback reports the logits after every epoch.
"""

import tempfile
from pathlib import Path

import numpy as np
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)


def make_tokens(path, *, n=900, length=16, vocab=40, classes=3, seed=0):
    """Synthetic topic classification: each class prefers its own band of the vocabulary."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=n)
    band = (vocab - 4) // classes
    topical = 4 + y[:, None] * band + rng.integers(0, band, size=(n, length))
    noise = rng.integers(4, vocab, size=(n, length))
    x = np.where(rng.random((n, length)) < 0.5, topical, noise)
    x[:, 0] = 2  # [CLS]
    np.savez(Path(path), x=x.astype(np.float32), y=y)


class Examples(torch.utils.data.Dataset):
    def __init__(self, ids, labels):
        self.ids, self.labels = ids, labels

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


class Report(TrainerCallback):
    def __init__(self, run, model):
        self.run, self.model = run, model

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.run.begin_epoch(round(state.epoch) + 1)

    def on_epoch_end(self, args, state, control, **kwargs):
        epoch = round(state.epoch)
        self.run.end_epoch(epoch)
        logits = [self.run.predict(_Logits(self.model), x.long()) for x in (self.run.x_val, self.run.x_test)]
        self.run.report(epoch, val_logits=logits[0], test_logits=logits[1])


class _Logits(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids):
        return self.model(input_ids=ids).logits


def train(run):
    config = BertConfig(
        vocab_size=int(run.dataset.x_train.max()) + 1,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=run.input_shape[0],
        num_labels=run.num_classes,
    )
    model = BertForSequenceClassification(config)  # random weights, seeded by smoothflip
    ids = torch.as_tensor(run.dataset.x_train[run.train_indices]).long()
    labels = torch.as_tensor(run.train_labels).long()

    def collate(items):
        batch = {"input_ids": torch.stack([it["input_ids"] for it in items])}
        batch["labels"] = run.flip(torch.stack([it["labels"] for it in items]))  # DisturbLabel arms
        return batch

    scratch = tempfile.TemporaryDirectory()  # the Trainer wants a folder; nothing is saved there
    args = TrainingArguments(
        output_dir=scratch.name,
        num_train_epochs=run.num_epochs,
        per_device_train_batch_size=run.train["batch_size"],
        learning_rate=run.train["lr"],
        save_strategy="no",
        report_to=[],
        logging_strategy="no",
        disable_tqdm=True,
        use_cpu=run.device.type != "cuda",
        seed=run.seed,
        data_seed=run.seed,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=Examples(ids, labels),
        data_collator=collate,
        compute_loss_func=lambda outputs, labels, num_items_in_batch=None: run.criterion(
            outputs.logits, labels
        ),
    )
    trainer.add_callback(Report(run, model))
    with scratch:
        trainer.train()
