"""Online label smoothing (``online_ls``): soft targets learned from the model's correct predictions."""

from __future__ import annotations

from smoothflip import losses
from smoothflip.techniques._registry import Technique, register

register(
    Technique(
        name="online_ls",
        params={"alpha": 0.5, "init_eps": 0.0},
        summary="online label smoothing: each class's target is last epoch's mean prediction on its "
        "correctly classified training examples; alpha weights the hard-label CE",
        build=lambda p, c: losses.OnlineLabelSmoothing(
            c.num_classes, p["alpha"], init_eps=p["init_eps"], reduction="none"
        ),
        family="smoothing",
        reference="Zhang et al. 2021, Delving Deep into Label Smoothing",
        stateful=True,
        order=15,
    )
)
