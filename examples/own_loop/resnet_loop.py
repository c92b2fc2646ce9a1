"""Your own PyTorch loop in a smoothflip study: the built-in CIFAR-style ResNet on an image folder.

smoothflip calls ``train(run)`` once per run (arm x label condition x seed). The function builds its
model, trains it with ``run.criterion`` (the arm's technique: label smoothing, online LS, ...) on
``run.train_batches`` (the run's noisy labels, flipped by DisturbLabel arms, augmented), and reports
the logits it predicts for the validation and test examples after every epoch. smoothflip computes
the metrics, selects the epoch on validation, stores the run and writes the verdict and report.
"""

import torch

from smoothflip.models import build_model


def train(run):
    # torch's RNG is seeded with the run's seed before train() starts: this init is reproducible
    model = build_model(
        "resnet", input_shape=run.input_shape, num_classes=run.num_classes, options=run.options
    )
    model = model.to(run.device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=run.train["lr"], momentum=0.9, weight_decay=run.train["weight_decay"]
    )
    steps = run.num_epochs * -(-len(run.train_indices) // run.train["batch_size"])
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=run.train["lr"], total_steps=steps)
    for epoch in run.epochs():
        model.train()
        total, seen = 0.0, 0
        for x, y in run.train_batches():
            loss = run.criterion(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total, seen = total + float(loss.detach()) * len(y), seen + len(y)
        run.report(
            epoch,
            val_logits=run.predict(model, run.x_val),
            test_logits=run.predict(model, run.x_test),
            train_loss=total / seen,
        )
