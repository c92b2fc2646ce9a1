"""Augmentations for the mutual-information probe: seeded, shape-preserving, gentle."""

from __future__ import annotations

import numpy as np
import pytest

from smoothflip.data import load_dataset
from smoothflip.data.augment import AUGMENTATIONS, augment, augmentation_for


def test_family_is_chosen_by_dataset_and_shape():
    assert augmentation_for("mnist1d", (40,)) == "mnist1d"
    assert augmentation_for("digits", (8, 8)) == "image"
    assert augmentation_for("x.csv", (20,)) == "tabular"


@pytest.mark.parametrize("kind", AUGMENTATIONS)
def test_seeded_shape_preserving_and_random(kind):
    x = np.random.default_rng(0).normal(size=(16, 8, 8) if kind == "image" else (16, 40)).astype(np.float32)
    a, b = augment(x, kind=kind, seed=1), augment(x, kind=kind, seed=1)
    np.testing.assert_array_equal(a, b)
    assert a.shape == x.shape
    assert a.dtype == np.float32
    assert not np.array_equal(a, augment(x, kind=kind, seed=2))
    assert not np.array_equal(a, x)
    state = np.random.get_state()[1].copy()  # noqa: NPY002 - checking the legacy global RNG is untouched
    augment(x, kind=kind, seed=3)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # noqa: NPY002


def test_image_shift_moves_pixels_by_at_most_one():
    x = np.zeros((200, 8, 8), dtype=np.float32)
    x[:, 4, 4] = 1.0
    out = augment(x, kind="image", seed=0)
    peaks = np.array([np.unravel_index(np.argmax(o), o.shape) for o in out])
    assert (np.abs(peaks - 4) <= 1).all()
    assert len({tuple(p) for p in peaks}) > 3


def test_mnist1d_augmentation_keeps_the_signal_recognizable():
    ds = load_dataset("mnist1d", options={"num_samples": 500})
    x = ds.x_train[:100]
    out = augment(x, kind="mnist1d", seed=0)
    # a gentle transform: up to its shift of at most 3 steps, the augmented signal stays far closer to
    # its own source than to any other example of the sample

    def aligned(a, b):  # distance after undoing the best circular shift
        return min(np.linalg.norm(a - np.roll(b, s)) for s in range(-3, 4))

    own = np.array([aligned(out[i], x[i]) for i in range(len(x))])
    other = np.array([aligned(out[i], x[(i + 1) % len(x)]) for i in range(len(x))])
    assert np.median(own) < 0.5 * np.median(other)
    assert (own < other).mean() > 0.9
