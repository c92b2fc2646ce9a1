"""Label-preserving random augmentations, one family per kind of data (numpy, seeded).

They feed the mutual-information probe of Müller et al. 2019 (appendix A.2), which measures how
much of an example's identity survives in a logit difference under random augmentation:

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
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from smoothflip._validation import SeedLike, as_generator, check_choice

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
