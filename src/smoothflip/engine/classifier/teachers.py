"""Distillation: a stored teacher's logits on every training example (what its students train on)."""

from __future__ import annotations

import torch
from torch import Tensor

from smoothflip.data import Dataset
from smoothflip.engine.classifier.members import build_classifier
from smoothflip.engine.teachers import TeacherState


def teacher_logits(
    teacher: TeacherState, dataset: Dataset, *, base_dir: str = ".", device: torch.device
) -> Tensor:
    """``[N_train, K]`` logits of the teacher on every training example of the dataset."""
    model = build_classifier(teacher.model, dataset, base_dir=base_dir)
    model.load_state_dict({name: torch.as_tensor(value) for name, value in teacher.state.items()})
    model = model.to(device).eval()
    x = torch.as_tensor(dataset.x_train, device=device)
    with torch.no_grad():
        return torch.cat([model(x[i : i + 1024]) for i in range(0, x.shape[0], 1024)])
