"""A PyTorch Lightning module in a smoothflip study (``pip install 'smoothflip[lightning]'``).

The LightningModule computes its loss with ``run.criterion`` (the arm's technique) on the batches
smoothflip hands out, and a callback reports the validation and test logits after every epoch.
"""

import lightning as L
import torch
from torch import nn


class DigitNet(L.LightningModule):
    def __init__(self, run, hidden: int):
        super().__init__()
        self.run = run
        features = 1
        for size in run.input_shape:
            features *= size
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, run.num_classes)
        )

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.run.criterion(self(x), y)

    def on_train_epoch_start(self):
        self.run.begin_epoch(self.current_epoch + 1)  # warm-up epochs train with plain CE

    def on_train_epoch_end(self):
        epoch = self.current_epoch + 1
        self.run.end_epoch(epoch)  # the epoch hook of a stateful technique (online label smoothing)
        self.run.report(
            epoch,
            val_logits=self.run.predict(self, self.run.x_val),
            test_logits=self.run.predict(self, self.run.x_test),
        )

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.run.train["lr"])


class Batches:
    """One epoch of smoothflip's batches each time Lightning iterates it."""

    def __init__(self, run):
        self.run = run

    def __iter__(self):
        return self.run.train_batches()

    def __len__(self):
        return -(-len(self.run.train_indices) // self.run.train["batch_size"])


def train(run):
    model = DigitNet(run, hidden=run.options.get("hidden", 64))
    trainer = L.Trainer(
        max_epochs=run.num_epochs,
        accelerator="cuda" if run.device.type == "cuda" else "cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, train_dataloaders=Batches(run))
