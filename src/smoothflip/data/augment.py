"""Label-preserving random augmentations: for the mutual-information probe, and for training images.

**Training augmentation for images** (torch, vectorized, on any device): :func:`random_crop_flip`
takes a batch ``[B, C, H, W]`` and returns, for each example, a random ``H × W`` crop of the image
zero-padded by ``padding`` pixels on every side, flipped horizontally with probability 1/2 — the
CIFAR augmentation of He et al. 2016 (§4.2). All draws come from the ``torch.Generator`` passed in,
never from the global RNG. :func:`random_crop_flip_members` does the same for a pack
``[P, B, C, H, W]`` with one generator per member, so that each member's augmentation depends on
its own seed only: its output for member ``m`` equals ``random_crop_flip(x[m],
generator=generators[m])``.

**The probe's augmentations** (numpy, seeded) feed the mutual-information probe of Müller et al.
2019 (appendix A.2), which measures how much of an example's identity survives in a logit
difference under random augmentation:

- ``mnist1d``: MNIST-1D's own generative transforms, applied gently to the finished 40-step signal —
  a circular shift of up to 3 steps, an amplitude scale of ``1 ± 0.1``, a linear shear of up to
  ``±0.25``, correlated noise (Gaussian-filtered, scale 0.1) and i.i.d. noise (scale 0.02);
- ``image`` (2-D examples such as digits): a shift of up to one pixel in each direction (zero fill)
  and i.i.d. noise of scale 0.02;
- ``tabular`` (anything else): i.i.d. Gaussian noise of scale 0.1 (features are standardized).

Example:
    >>> import numpy as np
    >>> x = np.zeros((4, 8, 8), dtype=np.float32)
    >>> augment(x, kind="image", seed=0).shape
    (4, 8, 8)
    >>> import torch
    >>> batch = torch.rand(16, 3, 32, 32)
    >>> random_crop_flip(batch, padding=4, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([16, 3, 32, 32])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from smoothflip._validation import SeedLike, as_generator, check_choice, check_int

__all__ = ["AUGMENTATIONS", "augment", "augmentation_for", "random_crop_flip", "random_crop_flip_members"]

AUGMENTATIONS = ("mnist1d", "image", "tabular")


def augmentation_for(dataset_name: str, input_shape: tuple[int, ...]) -> str:
    """The augmentation family for a dataset: by name for MNIST-1D, else by the shape of one example."""
    if dataset_name == "mnist1d":
        return "mnist1d"
    if len(input_shape) == 2 or (len(input_shape) == 3 and input_shape[0] <= 4):
        return "image"
    return "tabular"


def augment(x: np.ndarray, *, kind: str, seed: SeedLike = None) -> np.ndarray:
    """One random augmentation of each example.

    Args:
        x: ``[N, *input_shape]`` examples.
        kind: ``"mnist1d"``, ``"image"`` or ``"tabular"`` (see the module docstring).
        seed: int, ``numpy.random.Generator`` or None.

    Returns:
        ``[N, *input_shape]`` float32 augmented copies.
    """
    check_choice("kind", kind, AUGMENTATIONS)
    rng = as_generator(seed)
    x = np.asarray(x, dtype=np.float32)
    n = x.shape[0]
    if kind == "mnist1d":
        flat = x.reshape(n, -1)
        length = flat.shape[1]
        shifts = rng.integers(-3, 4, size=n)
        cols = (np.arange(length)[None, :] - shifts[:, None]) % length
        out = np.take_along_axis(flat, cols, axis=1)
        out = out * (1.0 + 0.2 * (rng.random((n, 1)) - 0.5))
        out = out - 0.5 * (rng.random((n, 1)) - 0.5) * np.linspace(-0.5, 0.5, length)[None, :]
        out = out + gaussian_filter1d(0.1 * rng.standard_normal((n, length)), 2.0, axis=1)
        out = out + 0.02 * rng.standard_normal((n, length))
        return out.reshape(x.shape).astype(np.float32)
    if kind == "image":
        out = np.zeros_like(x)
        dy = rng.integers(-1, 2, size=n)
        dx = rng.integers(-1, 2, size=n)
        h, w = x.shape[-2], x.shape[-1]
        for i in range(n):
            src = x[i, ..., max(0, -dy[i]) : h - max(0, dy[i]), max(0, -dx[i]) : w - max(0, dx[i])]
            out[i, ..., max(0, dy[i]) : h - max(0, -dy[i]), max(0, dx[i]) : w - max(0, -dx[i])] = src
        return (out + 0.02 * rng.standard_normal(x.shape)).astype(np.float32)
    return (x + 0.1 * rng.standard_normal(x.shape)).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# training augmentation for images (torch)
# --------------------------------------------------------------------------------------------------


def random_crop_flip(
    x: torch.Tensor, *, padding: int = 4, flip: bool = True, generator: torch.Generator
) -> torch.Tensor:
    """Per-example random crop of the zero-padded images and random horizontal flip.

    Output example ``b`` is the ``H × W`` window at offset ``(dy[b], dx[b])``, each drawn uniformly
    from ``0 .. 2·padding``, of ``x[b]`` zero-padded by ``padding`` on every side, then mirrored
    left-right when ``flips[b]`` (probability 1/2) — torchvision's ``RandomCrop(padding=...)``
    followed by ``RandomHorizontalFlip()``, for a whole batch at once (two gathers, no loop).
    Padding with zeros pads with the channel mean when the images are standardized.

    Randomness: exactly two calls on ``generator`` (on its own device), in this order:
    ``torch.randint(0, 2·padding + 1, (2, B))`` (the rows ``dy`` and columns ``dx``), then, with
    ``flip``, ``torch.randint(0, 2, (B,))`` (the flips). Nothing else is drawn.

    Args:
        x: ``[B, C, H, W]`` images (or ``[B, H, W]``; any dtype and device).
        padding: zero padding on each side, ``>= 0`` (0 turns the crop off).
        flip: draw the horizontal flips (``False``: never flip).
        generator: the only source of randomness; a CPU generator serves a CUDA ``x`` too.

    Returns:
        ``[B, C, H, W]``, same dtype and device as ``x`` (a new tensor; ``x`` is not modified).

    Example:
        >>> import torch
        >>> x = torch.arange(16.0).view(1, 1, 4, 4)
        >>> out = random_crop_flip(x, padding=0, generator=torch.Generator().manual_seed(1))
        >>> torch.equal(out, x) or torch.equal(out, x.flip(-1))
        True
    """
    _check_images(x, low=3, what="x", shape="[B, C, H, W] or [B, H, W]")
    dy, dx, flips = _draws(x.shape[0], padding=padding, flip=flip, generator=generator)
    return _crop_flip(x, dy.to(x.device), dx.to(x.device), flips.to(x.device), padding=padding)


def random_crop_flip_members(
    x: torch.Tensor, *, padding: int = 4, flip: bool = True, generators: Sequence[torch.Generator]
) -> torch.Tensor:
    """:func:`random_crop_flip` for a pack: member ``m``'s batch ``x[m]`` with ``generators[m]``.

    The result equals ``torch.stack([random_crop_flip(x[m], padding=padding, flip=flip,
    generator=generators[m]) for m in range(P)])``: each member draws from its own generator
    exactly what it would draw alone (so a member's augmentation does not depend on which pack it
    is in), and the crop and flip of the whole pack are one vectorized gather. The only Python
    loop is over the ``P`` generators, two small draws each.

    Args:
        x: ``[P, B, C, H, W]`` (or ``[P, B, H, W]``): ``B`` images for each of ``P`` members.
        padding: zero padding on each side, ``>= 0``.
        flip: draw the horizontal flips.
        generators: ``P`` generators, one per member (e.g. seeded from each run's seed).

    Returns:
        ``[P, B, C, H, W]``, same dtype and device as ``x``.

    Example:
        >>> import torch
        >>> x = torch.rand(3, 8, 1, 6, 6)
        >>> gens = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
        >>> random_crop_flip_members(x, padding=2, generators=gens).shape
        torch.Size([3, 8, 1, 6, 6])
    """
    _check_images(x, low=4, what="x", shape="[P, B, C, H, W] or [P, B, H, W]")
    if isinstance(generators, torch.Generator) or not isinstance(generators, Sequence):
        raise TypeError(
            f"generators must be a sequence of torch.Generator, one per member, got {generators!r}"
        )
    if len(generators) != x.shape[0]:
        raise ValueError(
            f"generators must hold one generator per member: x has {x.shape[0]}, got {len(generators)}"
        )
    draws = [_draws(x.shape[1], padding=padding, flip=flip, generator=g) for g in generators]
    dy, dx, flips = (torch.cat([d[i].to(x.device) for d in draws]) for i in range(3))
    out = _crop_flip(x.reshape(-1, *x.shape[2:]), dy, dx, flips, padding=padding)
    return out.reshape(x.shape)


def _check_images(x: torch.Tensor, *, low: int, what: str, shape: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor {shape}, got {type(x).__name__}")
    if x.ndim < low:
        raise ValueError(f"{what} must have shape {shape}, got {list(x.shape)}")


def _draws(
    n: int, *, padding: int, flip: bool, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(dy [n], dx [n], flips [n] bool)`` drawn from ``generator`` on its device."""
    padding = check_int("padding", padding, low=0)
    if not isinstance(flip, bool):
        raise TypeError(f"flip must be True or False, got {flip!r}")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    device = generator.device
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=device)
    if flip:
        flips = torch.randint(0, 2, (n,), generator=generator, device=device).bool()
    else:
        flips = torch.zeros(n, dtype=torch.bool, device=device)
    return offsets[0], offsets[1], flips


def _crop_flip(
    x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flips: torch.Tensor, *, padding: int
) -> torch.Tensor:
    """Crop ``x [B, ..., H, W]`` at padded offsets ``(dy, dx)`` and mirror where ``flips``."""
    n, height, width = x.shape[0], x.shape[-2], x.shape[-1]
    images = x.reshape(n, -1, height, width)
    channels = images.shape[1]
    rows = dy[:, None] - padding + torch.arange(height, device=x.device)  # [B, H] source rows
    cols = dx[:, None] - padding + torch.arange(width, device=x.device)  # [B, W] source columns
    cols = torch.where(flips[:, None], cols.flip(-1), cols)
    inside = ((rows >= 0) & (rows < height))[:, None, :, None] & ((cols >= 0) & (cols < width))[
        :, None, None, :
    ]
    picked = images.gather(2, rows.clamp(0, height - 1)[:, None, :, None].expand(n, channels, height, width))
    picked = picked.gather(3, cols.clamp(0, width - 1)[:, None, None, :].expand(n, channels, height, width))
    return torch.where(inside, picked, torch.zeros((), dtype=x.dtype, device=x.device)).reshape(x.shape)
