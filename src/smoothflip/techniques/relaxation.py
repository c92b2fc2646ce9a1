"""Label relaxation (``label_relaxation``): no loss inside the credal set ``p_y >= 1 - alpha``."""

from __future__ import annotations

from smoothflip import losses
from smoothflip.techniques._registry import Technique, register

register(
    Technique(
        name="label_relaxation",
        params={"alpha": 0.1},
        summary="label relaxation: no loss once p_y >= 1 - alpha, else KL to that set of targets",
        build=lambda p, c: losses.LabelRelaxationLoss(p["alpha"], reduction="none"),
        family="smoothing",
        reference="Lienen and Hüllermeier 2021",
        order=25,
    )
)
