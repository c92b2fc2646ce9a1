"""Training-time label flipping in torch: DisturbLabel and fixed-rate per-batch flips.

These run inside the training loop on each minibatch's targets (any integer tensor shape, any
device), unlike :mod:`smoothflip.noise`, which corrupts a dataset's labels once, in numpy.

Randomness comes only from the ``torch.Generator`` passed in (or held by :class:`DisturbLabel`), so a
seeded run is reproducible. For a CUDA target the generator must live on that CUDA device.

Validating labels (range check) reads one scalar back from the device, i.e. one synchronization
per call on CUDA.

Example:
    >>> import torch
    >>> from smoothflip.flipping import DisturbLabel
    >>> disturb = DisturbLabel(alpha=0.1, num_classes=10, seed=0)
    >>> disturb.wrong_label_rate
    0.09
    >>> y = torch.randint(0, 10, (128,))
    >>> disturb(y).shape
    torch.Size([128])
"""

from __future__ import annotations

import math
from typing import Any, Literal, overload

import torch

from smoothflip._validation import check_int, check_range

__all__ = ["DisturbLabel", "disturb_labels", "flip_labels"]


def _check_target(target: Any, num_classes: int, ignore_index: int) -> torch.Tensor:
    """Validate an integer class-index tensor; returns the ``[...]`` bool mask of non-ignored positions."""
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor of class indices, got {type(target).__name__}")
    if target.dtype == torch.bool or target.is_floating_point() or target.is_complex():
        raise ValueError(f"target must be an integer tensor of class indices, got dtype {target.dtype}")
    valid = target != ignore_index
    bad = valid & ((target < 0) | (target >= num_classes))
    if target.numel() and bool(bad.any()):
        value = int(target[bad].flatten()[0])
        raise ValueError(
            f"target must hold class indices in [0, num_classes={num_classes}) "
            f"or ignore_index={ignore_index}, found {value}"
        )
    return valid


def _check_generator(generator: torch.Generator | None, target: torch.Tensor) -> None:
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if generator.device.type != target.device.type:
        raise ValueError(
            f"generator must live on the target's device ({target.device}), "
            f"got a generator on {generator.device}"
        )


def disturb_labels(
    target: torch.Tensor,
    *,
    alpha: float,
    num_classes: int,
    generator: torch.Generator | None = None,
    ignore_index: int = -100,
) -> torch.Tensor:
    """DisturbLabel (Xie et al., CVPR 2016): redraw each label from a Multinoulli.

    Each non-ignored label ``c`` is replaced by a draw with probability ``1 - α(K-1)/K`` on ``c``
    and ``α/K`` on every other class; equivalently, with probability ``α`` it is replaced by a
    uniform draw over **all** ``K`` classes (which may return ``c`` itself).

    - The realized wrong-label rate is therefore ``α(K-1)/K``, not ``α`` (9% for ``K=10``,
      ``α=0.1``).
    - The expected one-hot target is ``(1-α)·onehot + α/K``: exactly label smoothing with
      ``eps = α`` (the ``F.cross_entropy(label_smoothing=α)`` convention). DisturbLabel is the
      stochastic form of label smoothing; the two share the same expected loss gradient target.

    Args:
        target: ``[*]`` integer tensor of class indices in ``[0, K)`` (any shape, e.g. ``[N]`` or
            ``[N, T]`` for sequences), or ``ignore_index``.
        alpha: redraw probability ``α`` in ``[0, 1]``.
        num_classes: ``K >= 1``.
        generator: ``torch.Generator`` on the target's device, or ``None`` for torch's default one.
        ignore_index: positions holding this value are left untouched (and not validated).

    Returns:
        ``[*]`` new tensor, same dtype and device as ``target``.

    Raises:
        ValueError: ``alpha`` outside ``[0, 1]``, labels outside ``[0, K)``, non-integer target or
            a generator on another device.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> y = torch.tensor([3, 1, -100, 7])
        >>> out = disturb_labels(y, alpha=0.5, num_classes=10, generator=g)
        >>> out.shape, int(out[2])
        (torch.Size([4]), -100)
    """
    alpha = check_range("alpha", alpha, low=0.0, high=1.0)
    num_classes = check_int("num_classes", num_classes, low=1)
    ignore_index = check_int("ignore_index", ignore_index)
    valid = _check_target(target, num_classes, ignore_index)
    _check_generator(generator, target)
    u = torch.rand(target.shape, generator=generator, device=target.device)
    new = torch.randint(
        0, num_classes, target.shape, generator=generator, device=target.device, dtype=target.dtype
    )
    return torch.where(valid & (u < alpha), new, target)


def _round_half_up(x: float) -> int:
    nearest = round(x)
    if abs(x - nearest) <= 1e-9 * max(1.0, abs(x)):  # 0.7 * 10 -> 7, not 7.000000000000001
        return int(nearest)
    return math.floor(x + 0.5)


@overload
def flip_labels(
    target: torch.Tensor,
    *,
    rate: float,
    num_classes: int,
    generator: torch.Generator | None = ...,
    ignore_index: int = ...,
    return_mask: Literal[False] = ...,
) -> torch.Tensor: ...


@overload
def flip_labels(
    target: torch.Tensor,
    *,
    rate: float,
    num_classes: int,
    generator: torch.Generator | None = ...,
    ignore_index: int = ...,
    return_mask: Literal[True],
) -> tuple[torch.Tensor, torch.Tensor]: ...


def flip_labels(
    target: torch.Tensor,
    *,
    rate: float,
    num_classes: int,
    generator: torch.Generator | None = None,
    ignore_index: int = -100,
    return_mask: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Flip exactly ``round(rate·n_valid)`` labels of the batch, each to a different class.

    The positions are chosen uniformly among the ``n_valid`` non-ignored ones (``round`` is half up);
    each chosen label moves to a uniformly chosen *other* class, so every flip is wrong and the
    batch's wrong-label fraction is fixed (contrast :func:`disturb_labels`, whose rate fluctuates
    and which may redraw the true class).

    Args:
        target: ``[*]`` integer tensor of class indices in ``[0, K)`` or ``ignore_index``.
        rate: fraction of non-ignored labels to flip, in ``[0, 1]``.
        num_classes: ``K >= 2``.
        generator: ``torch.Generator`` on the target's device, or ``None`` for torch's default one.
        ignore_index: positions holding this value are never flipped (and not validated).
        return_mask: also return the ``[*]`` bool mask of flipped positions.

    Returns:
        ``[*]`` new tensor (same dtype/device), or ``(labels, mask)`` when ``return_mask``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> y = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, -100])
        >>> out, mask = flip_labels(y, rate=0.3, num_classes=10, generator=g, return_mask=True)
        >>> int(mask.sum()), bool((out[mask] != y[mask]).all()), int(out[-1])
        (3, True, -100)
    """
    rate = check_range("rate", rate, low=0.0, high=1.0)
    num_classes = check_int("num_classes", num_classes, low=2)
    ignore_index = check_int("ignore_index", ignore_index)
    valid = _check_target(target, num_classes, ignore_index)
    _check_generator(generator, target)
    flat_valid = valid.reshape(-1)
    n_valid = int(flat_valid.sum())
    n_flip = _round_half_up(rate * n_valid)
    keys = torch.rand(flat_valid.shape, generator=generator, device=target.device)
    keys = keys.masked_fill(~flat_valid, 2.0)  # ignored positions sort last, never chosen
    idx = torch.topk(keys, n_flip, largest=False, sorted=False).indices
    offset = torch.randint(
        1, num_classes, (n_flip,), generator=generator, device=target.device, dtype=torch.int64
    )
    flat = target.reshape(-1).clone()  # logical (row-major) order, like flat_valid
    # int64 arithmetic: label + offset may not fit a small integer dtype (int8 with K = 100)
    flat[idx] = ((flat[idx].long() + offset) % num_classes).to(target.dtype)
    out = flat.reshape(target.shape)
    if not return_mask:
        return out
    mask = torch.zeros(flat_valid.shape, dtype=torch.bool, device=target.device)
    mask[idx] = True
    return out, mask.reshape(target.shape)


class DisturbLabel:
    """Callable DisturbLabel hook holding its own seeded ``torch.Generator``.

    Call it on each minibatch's targets before the loss: ``loss = ce(logits, disturb(y))``.
    The wrong-label rate is ``α(K-1)/K``; the expected target equals label smoothing with ``eps=α``
    (see :func:`disturb_labels`).

    One generator per device is created lazily, each seeded with the same seed, so a CPU run is
    reproducible from ``seed`` and a CUDA run is reproducible on the same device.

    Args:
        alpha: redraw probability in ``[0, 1]``.
        num_classes: ``K >= 1``.
        ignore_index: target value left untouched.
        seed: seed for the generator; ``None`` draws a fresh one (readable as :attr:`seed`).

    Example:
        >>> d = DisturbLabel(0.2, 10, seed=0)
        >>> d
        DisturbLabel(alpha=0.2, num_classes=10, ignore_index=-100, seed=0, wrong_label_rate=0.18)
        >>> y = torch.zeros(4, dtype=torch.long)
        >>> torch.equal(d(y), DisturbLabel(0.2, 10, seed=0)(y))
        True
    """

    def __init__(
        self, alpha: float, num_classes: int, *, ignore_index: int = -100, seed: int | None = None
    ) -> None:
        self.alpha = check_range("alpha", alpha, low=0.0, high=1.0)
        self.num_classes = check_int("num_classes", num_classes, low=1)
        self.ignore_index = check_int("ignore_index", ignore_index)
        cpu = torch.Generator()
        if seed is None:
            cpu.seed()
        else:
            cpu.manual_seed(check_int("seed", seed, low=0))
        self.seed: int = int(cpu.initial_seed())
        self._generators: dict[torch.device, torch.Generator] = {torch.device("cpu"): cpu}

    @property
    def wrong_label_rate(self) -> float:
        """Expected fraction of labels that end up wrong, ``α(K-1)/K``."""
        return self.alpha * (self.num_classes - 1) / self.num_classes

    def generator(self, device: torch.device | str = "cpu") -> torch.Generator:
        """The generator used for targets on ``device`` (created and seeded on first use)."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[device]

    def __call__(self, target: torch.Tensor) -> torch.Tensor:
        """Disturb ``target`` (``[*]`` class indices); returns a new tensor of the same shape."""
        if not isinstance(target, torch.Tensor):
            raise TypeError(f"target must be a torch.Tensor of class indices, got {type(target).__name__}")
        return disturb_labels(
            target,
            alpha=self.alpha,
            num_classes=self.num_classes,
            generator=self.generator(target.device),
            ignore_index=self.ignore_index,
        )

    def __repr__(self) -> str:
        return (
            f"DisturbLabel(alpha={self.alpha:g}, num_classes={self.num_classes}, "
            f"ignore_index={self.ignore_index}, seed={self.seed}, "
            f"wrong_label_rate={self.wrong_label_rate:g})"
        )
