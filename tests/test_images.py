"""Image sources (class folders, train/test folders, .npy arrays), the digit-image writer and the
training augmentation (random crop + flip, per generator and per member)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from smoothflip.data import SOURCE_FILE_TYPES, load_dataset
from smoothflip.data.augment import random_crop_flip, random_crop_flip_members
from smoothflip.data.images import FOLDER_OPTIONS, IMAGE_EXTENSIONS, write_digit_images
from smoothflip.errors import DataError

RNG = np.random.default_rng(0)


def _png(path: Path, array: np.ndarray) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return array


def _folder(root: Path, classes=("cat", "dog", "eel"), per_class=4, shape=(6, 5, 3), seed=0) -> dict:
    """Random 8-bit images in root/<class>/<i>.png; returns {relative path: array}."""
    rng = np.random.default_rng(seed)
    written = {}
    for c in classes:
        for i in range(per_class):
            written[f"{c}/{i}.png"] = _png(root / c / f"{i}.png", rng.integers(0, 256, shape, dtype=np.uint8))
    return written


def _chw(array: np.ndarray) -> np.ndarray:
    a = array.astype(np.float32) / 255.0
    return a[None] if a.ndim == 2 else np.moveaxis(a, 2, 0)


def _one_line_error(match: str, fn, *args, **kwargs) -> str:
    with pytest.raises(DataError, match=match) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


# --------------------------------------------------------------------------------------------------
# folders
# --------------------------------------------------------------------------------------------------


def test_train_test_folders_round_trip_pixels_and_classes(tmp_path: Path) -> None:
    train = _folder(tmp_path / "pets" / "train", seed=1)
    test = _folder(tmp_path / "pets" / "test", per_class=2, seed=2)
    ds = load_dataset(tmp_path / "pets", standardize=False)
    assert ds.name == "pets"
    assert ds.class_names == ("cat", "dog", "eel")
    assert ds.input_shape == (3, 6, 5)
    assert ds.x_train.dtype == np.float32
    # files are read class by class, in sorted order
    np.testing.assert_array_equal(ds.x_train, np.stack([_chw(train[k]) for k in sorted(train)]))
    np.testing.assert_array_equal(ds.x_test, np.stack([_chw(test[k]) for k in sorted(test)]))
    np.testing.assert_array_equal(ds.y_train, np.repeat([0, 1, 2], 4))
    np.testing.assert_array_equal(ds.y_test, np.repeat([0, 1, 2], 2))
    assert ds.x_train.min() >= 0.0
    assert ds.x_train.max() <= 1.0


def test_class_folders_are_split_stratified_by_split_seed(tmp_path: Path) -> None:
    written = _folder(tmp_path / "pets", per_class=8, shape=(4, 4))
    ds = load_dataset(tmp_path / "pets", test_fraction=0.25, split_seed=3, standardize=False)
    assert ds.input_shape == (1, 4, 4)
    assert (len(ds.y_train), len(ds.y_test)) == (18, 6)
    assert np.bincount(ds.y_test).tolist() == [2, 2, 2]
    every = {
        (int(y), x.tobytes())
        for x, y in zip(
            np.concatenate([ds.x_train, ds.x_test]), np.concatenate([ds.y_train, ds.y_test]), strict=True
        )
    }
    expected = {(("cat", "dog", "eel").index(k.split("/")[0]), _chw(a).tobytes()) for k, a in written.items()}
    assert every == expected
    again = load_dataset(tmp_path / "pets", test_fraction=0.25, split_seed=3, standardize=False)
    other = load_dataset(tmp_path / "pets", test_fraction=0.25, split_seed=4, standardize=False)
    assert again.fingerprint() == ds.fingerprint() != other.fingerprint()


def test_relative_folder_and_test_source_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _folder(tmp_path / "study" / "imgs", shape=(4, 4))
    _folder(tmp_path / "study" / "held_out", per_class=1, shape=(4, 4), seed=5)
    ds = load_dataset("imgs", test_source="held_out", base_dir=tmp_path / "study", standardize=False)
    assert (len(ds.y_train), len(ds.y_test)) == (12, 3)
    monkeypatch.chdir(tmp_path / "study")
    assert load_dataset("imgs", test_source="held_out", standardize=False).fingerprint() == ds.fingerprint()


def test_modes_grayscale_option_and_mixed_files(tmp_path: Path) -> None:
    gray = _png(tmp_path / "mix" / "a" / "g.png", RNG.integers(0, 256, (5, 5), dtype=np.uint8))
    rgb = _png(tmp_path / "mix" / "b" / "c.png", RNG.integers(0, 256, (5, 5, 3), dtype=np.uint8))
    for c in ("a", "b"):
        _png(tmp_path / "mix" / c / "extra.png", RNG.integers(0, 256, (5, 5, 3), dtype=np.uint8))
    ds = load_dataset(tmp_path / "mix", test_fraction=0.5, standardize=False)
    assert ds.input_shape == (3, 5, 5)  # mixed L and RGB files: RGB
    every = np.concatenate([ds.x_train, ds.x_test])
    assert any(np.array_equal(x, np.repeat(_chw(gray), 3, axis=0)) for x in every)
    as_gray = load_dataset(
        tmp_path / "mix", test_fraction=0.5, standardize=False, options={"grayscale": True}
    )
    assert as_gray.input_shape == (1, 5, 5)
    expected = _chw(np.asarray(Image.fromarray(rgb).convert("L")))
    assert any(np.array_equal(x, expected) for x in np.concatenate([as_gray.x_train, as_gray.x_test]))
    # all grayscale files keep one channel; grayscale = false makes three
    for name in ("a", "b"):
        for i in range(2):
            _png(tmp_path / "gray" / name / f"{i}.png", RNG.integers(0, 256, (5, 5), dtype=np.uint8))
    assert load_dataset(tmp_path / "gray", test_fraction=0.5).input_shape == (1, 5, 5)
    rgb_opts = {"grayscale": False}
    assert load_dataset(tmp_path / "gray", test_fraction=0.5, options=rgb_opts).input_shape == (3, 5, 5)


def test_alpha_and_16_bit_images(tmp_path: Path) -> None:
    rgba = {
        n: _png(tmp_path / "rgba" / n / f"{i}.png", RNG.integers(0, 256, (3, 4, 4), dtype=np.uint8))
        for n in ("x", "y")
        for i in range(2)
    }
    ds = load_dataset(tmp_path / "rgba", test_fraction=0.5, standardize=False)
    assert ds.input_shape == (4, 3, 4)
    assert {x.tobytes() for x in np.concatenate([ds.x_train, ds.x_test])} >= {_chw(rgba["y"]).tobytes()}
    deep = {}
    for n in ("x", "y"):
        for i in range(2):
            deep[(n, i)] = RNG.integers(0, 65536, (3, 4)).astype(np.uint16)
            _png(tmp_path / "deep" / n / f"{i}.png", deep[(n, i)])
    ds = load_dataset(tmp_path / "deep", test_fraction=0.5, standardize=False)
    assert ds.input_shape == (1, 3, 4)
    values = {x.tobytes() for x in np.concatenate([ds.x_train, ds.x_test])}
    assert (deep[("x", 1)].astype(np.float32) / 65535.0)[None].tobytes() in values


def test_resize_is_pillow_bilinear(tmp_path: Path) -> None:
    a = _png(tmp_path / "r" / "train" / "a" / "0.png", RNG.integers(0, 256, (6, 9, 3), dtype=np.uint8))
    b = _png(tmp_path / "r" / "train" / "b" / "0.png", RNG.integers(0, 256, (10, 7, 3), dtype=np.uint8))
    c = _png(tmp_path / "r" / "test" / "a" / "0.png", RNG.integers(0, 256, (4, 6, 3), dtype=np.uint8))
    _png(tmp_path / "r" / "test" / "b" / "0.png", RNG.integers(0, 256, (4, 6, 3), dtype=np.uint8))
    ds = load_dataset(tmp_path / "r", standardize=False, options={"resize": [4, 6]})
    assert ds.input_shape == (3, 4, 6)

    def resized(array: np.ndarray) -> np.ndarray:
        return _chw(np.asarray(Image.fromarray(array).resize((6, 4), Image.Resampling.BILINEAR)))

    np.testing.assert_array_equal(ds.x_train[0], resized(a))
    np.testing.assert_array_equal(ds.x_train[1], resized(b))
    np.testing.assert_array_equal(ds.x_test[0], _chw(c))  # already 4x6: untouched


def test_hidden_and_other_files_are_skipped_nested_images_read(tmp_path: Path) -> None:
    _folder(tmp_path / "d", classes=("a", "b"), per_class=2, shape=(3, 3))
    (tmp_path / "d" / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "d" / "a" / ".DS_Store").write_bytes(b"\0\1")
    (tmp_path / "d" / ".cache").mkdir()
    (tmp_path / "d" / "README.md").write_text("top-level files are ignored")
    _png(tmp_path / "d" / "b" / "more" / "deep.png", RNG.integers(0, 256, (3, 3), dtype=np.uint8))
    _png(tmp_path / "d" / "b" / ".hidden" / "skip.png", RNG.integers(0, 256, (3, 3), dtype=np.uint8))
    ds = load_dataset(tmp_path / "d", test_fraction=0.4)
    assert ds.class_names == ("a", "b")
    assert len(ds.y_train) + len(ds.y_test) == 5
    only_png = load_dataset(tmp_path / "d", test_fraction=0.4, options={"extensions": ["PNG"]})
    assert len(only_png.y_train) + len(only_png.y_test) == 5
    with pytest.raises(
        DataError, match=r"class folder '.*[/\\]a' holds no image files \(extensions: \.jpg\)"
    ):
        load_dataset(tmp_path / "d", options={"extensions": [".jpg"]})


def test_standardize_z_scores_each_channel_with_training_statistics(tmp_path: Path) -> None:
    _folder(tmp_path / "s" / "train", per_class=6, seed=3)
    _folder(tmp_path / "s" / "test", per_class=3, seed=4)
    raw = load_dataset(tmp_path / "s", standardize=False)
    ds = load_dataset(tmp_path / "s")
    np.testing.assert_allclose(ds.x_train.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.std(axis=(0, 2, 3)), 1.0, atol=1e-5)
    mean = raw.x_train.mean(axis=(0, 2, 3), keepdims=True, dtype=np.float64)
    std = raw.x_train.std(axis=(0, 2, 3), keepdims=True, dtype=np.float64)
    np.testing.assert_allclose(ds.x_test, (raw.x_test - mean) / std, atol=1e-5)
    assert abs(float(ds.x_test.mean())) > 1e-4  # the test split is not re-centred on its own


# --------------------------------------------------------------------------------------------------
# folder errors: one line, a DataError naming the path
# --------------------------------------------------------------------------------------------------


def test_empty_class_folder_and_too_few_classes(tmp_path: Path) -> None:
    _folder(tmp_path / "e", classes=("a",), per_class=2, shape=(3, 3))
    (tmp_path / "e" / "b").mkdir()
    (tmp_path / "e" / "b" / "notes.txt").write_text("x")
    _one_line_error(
        r"class folder '.*e[/\\]b' holds no image files \(extensions: \.png, \.jpg",
        load_dataset,
        tmp_path / "e",
    )
    (tmp_path / "e" / "b" / "notes.txt").unlink()
    (tmp_path / "e" / "b").rmdir()
    _one_line_error(r"'.*e' needs at least 2 class folders .* found only 'a'$", load_dataset, tmp_path / "e")
    flat = tmp_path / "flat"
    _png(flat / "0.png", RNG.integers(0, 256, (3, 3), dtype=np.uint8))
    _one_line_error(r"found none \(it holds image files directly", load_dataset, flat)
    _folder(tmp_path / "half" / "train", shape=(3, 3))
    _one_line_error(
        r"found only 'train' \(split folders need both train/ and test/\)", load_dataset, tmp_path / "half"
    )


def test_unreadable_and_truncated_files_are_named(tmp_path: Path) -> None:
    _folder(tmp_path / "u", classes=("a", "b"), per_class=2, shape=(4, 4))
    bad = tmp_path / "u" / "b" / "broken.png"
    bad.write_bytes(b"this is not a PNG")
    _one_line_error(
        r"^data: '.*u[/\\]b[/\\]broken\.png' is not an image file Pillow can read$",
        load_dataset,
        tmp_path / "u",
    )
    good = (tmp_path / "u" / "a" / "0.png").read_bytes()
    bad.write_bytes(good[: len(good) // 2])  # a PNG whose data stops halfway
    _one_line_error(r"cannot read image file '.*broken\.png'", load_dataset, tmp_path / "u")
    bad.unlink()
    Image.fromarray(RNG.random((4, 4), dtype=np.float32)).save(tmp_path / "u" / "b" / "float.tiff")
    _one_line_error(
        r"'.*float\.tiff' has 32-bit float pixels \(mode 'F'\); save 8- or 16-bit",
        load_dataset,
        tmp_path / "u",
    )


def test_mixed_sizes_without_resize_name_two_files_and_sizes(tmp_path: Path) -> None:
    _folder(tmp_path / "m", classes=("a", "b"), per_class=2, shape=(4, 4))
    _png(tmp_path / "m" / "b" / "wide.png", RNG.integers(0, 256, (4, 7), dtype=np.uint8))
    message = _one_line_error(r"different sizes", load_dataset, tmp_path / "m")
    assert str(tmp_path / "m") in message
    assert "'a/0.png' is 4x4 but 'b/wide.png' is 4x7 (height x width)" in message
    assert "data.options.resize" in message
    resized = load_dataset(tmp_path / "m", options={"resize": [4, 4]}, test_fraction=0.4)
    assert resized.input_shape == (1, 4, 4)


def test_train_and_test_with_different_classes(tmp_path: Path) -> None:
    _folder(tmp_path / "t" / "train", classes=("a", "b", "c"), shape=(3, 3))
    _folder(tmp_path / "t" / "test", classes=("a", "b", "d"), shape=(3, 3))
    message = _one_line_error(r"must hold the same class folders", load_dataset, tmp_path / "t")
    assert re.search(r"only in '.*train': 'c'; only in '.*test': 'd'", message)
    (tmp_path / "t" / "val").mkdir()
    _one_line_error(r"holds train/ and test/ split folders and also 'val'", load_dataset, tmp_path / "t")


def test_decompression_bomb_is_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _folder(tmp_path / "b", classes=("a", "b"), per_class=2, shape=(8, 8))
    _png(tmp_path / "b" / "b" / "big.png", RNG.integers(0, 256, (8, 30), dtype=np.uint8))
    resized = load_dataset(tmp_path / "b", options={"resize": [8, 8]}, test_fraction=0.4)
    assert resized.input_shape == (1, 8, 8)
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(self) or None)
    for limit in (200, 100):  # 240 pixels: over the limit (Pillow warns), over twice it (Pillow errs)
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        message = _one_line_error(
            r"big\.png' has more pixels than Pillow's decompression-bomb limit",
            load_dataset,
            tmp_path / "b",
            options={"resize": [8, 8]},
        )
        assert f"MAX_IMAGE_PIXELS = {limit}" in message
    assert decoded == []


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"resize": [0, 4]}, r"^data\.options\.resize must be \[height, width\], two positive integers"),
        ({"resize": 16}, r"data\.options\.resize must be \[height, width\]"),
        ({"resize": [4, 4, 3]}, r"data\.options\.resize"),
        ({"resize": [4.0, 4]}, r"data\.options\.resize"),
        ({"grayscale": "yes"}, r"^data\.options\.grayscale must be true or false, got 'yes'$"),
        ({"extensions": []}, r"data\.options\.extensions must be a non-empty list"),
        ({"extensions": ".png"}, r"data\.options\.extensions"),
        ({"size": 3}, r"unknown key 'size' for 'o'; allowed: resize, grayscale, extensions$"),
    ],
)
def test_bad_folder_options(tmp_path: Path, options: dict, match: str) -> None:
    _folder(tmp_path / "o", classes=("a", "b"), per_class=2, shape=(3, 3))
    with pytest.raises(ValueError, match=match):
        load_dataset(tmp_path / "o", options=options)


def test_folder_argument_errors(tmp_path: Path) -> None:
    _folder(tmp_path / "f" / "train", shape=(3, 3))
    _folder(tmp_path / "f" / "test", shape=(3, 3))
    _folder(tmp_path / "g", shape=(3, 3))
    (tmp_path / "x.csv").write_text("a,label\n1,2\n")
    with pytest.raises(DataError, match=r"data\.test_source: '.*f' already holds train/ and test/"):
        load_dataset(tmp_path / "f", test_source=tmp_path / "g")
    with pytest.raises(ValueError, match=r"data\.test_source: '.*x\.csv' is not a folder"):
        load_dataset(tmp_path / "g", test_source=tmp_path / "x.csv")
    with pytest.raises(FileNotFoundError, match=r"data\.test_source: folder not found: '.*nope'"):
        load_dataset(tmp_path / "g", test_source=tmp_path / "nope")
    with pytest.raises(ValueError, match=r"is the data\.source folder itself"):
        load_dataset(tmp_path / "g", test_source=tmp_path / "g")
    with pytest.raises(ValueError, match=r"data\.label_column: .* is a folder of images"):
        load_dataset(tmp_path / "g", label_column="label")
    with pytest.raises(ValueError, match=r"unknown dataset 'nope'.*or to a folder of images"):
        load_dataset("nope", base_dir=tmp_path)
    assert SOURCE_FILE_TYPES == (".npz", ".csv", ".parquet", ".npy")
    assert ".png" in IMAGE_EXTENSIONS
    assert set(FOLDER_OPTIONS) == {"resize", "grayscale", "extensions"}


# --------------------------------------------------------------------------------------------------
# .npy image arrays
# --------------------------------------------------------------------------------------------------


def test_npy_images_with_labels_option(tmp_path: Path) -> None:
    hw = RNG.integers(0, 256, (12, 5, 6), dtype=np.uint8)
    hwc = RNG.integers(0, 256, (12, 5, 6, 3), dtype=np.uint8)
    labels = np.array(["ant", "bee"] * 6)
    (tmp_path / "sub").mkdir()
    np.save(tmp_path / "sub" / "hw.npy", hw)
    np.save(tmp_path / "sub" / "hwc.npy", hwc)
    np.save(tmp_path / "sub" / "chw.npy", np.moveaxis(hwc, 3, 1))
    np.save(tmp_path / "sub" / "labels.npy", labels)
    opts = {"labels": "labels.npy"}
    a = load_dataset("hw.npy", options=opts, base_dir=tmp_path / "sub", standardize=False, test_fraction=0.5)
    b = load_dataset("hwc.npy", options=opts, base_dir=tmp_path / "sub", standardize=False, test_fraction=0.5)
    c = load_dataset("chw.npy", options=opts, base_dir=tmp_path / "sub", standardize=False, test_fraction=0.5)
    assert (a.input_shape, b.input_shape, c.input_shape) == ((1, 5, 6), (3, 5, 6), (3, 5, 6))
    assert a.class_names == b.class_names == ("ant", "bee")
    np.testing.assert_array_equal(b.x_train, c.x_train)
    every = np.concatenate([b.x_train, b.x_test])
    assert {x.tobytes() for x in every} == {x.tobytes() for x in np.moveaxis(hwc, 3, 1).astype(np.float32)}
    assert {x.tobytes() for x in np.concatenate([a.x_train, a.x_test])} == {
        x[None].tobytes() for x in hw.astype(np.float32)
    }
    z = load_dataset("hwc.npy", options=opts, base_dir=tmp_path / "sub", test_fraction=0.5)
    np.testing.assert_allclose(z.x_train.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)


def test_npy_test_source_with_test_labels(tmp_path: Path) -> None:
    x = RNG.random((8, 4, 4, 1)).astype(np.float32)
    for name, array in {"x": x, "y": np.arange(8) % 2, "xt": x[:4], "yt": np.array([1, 0, 1, 1])}.items():
        np.save(tmp_path / f"{name}.npy", array)
    ds = load_dataset(
        tmp_path / "x.npy",
        test_source=tmp_path / "xt.npy",
        base_dir=tmp_path,
        options={"labels": "y.npy", "test_labels": "yt.npy"},
        standardize=False,
    )
    np.testing.assert_array_equal(ds.x_test, np.moveaxis(x[:4], 3, 1))
    np.testing.assert_array_equal(ds.y_test, [1, 0, 1, 1])


def test_npy_errors(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", RNG.random((6, 3, 3)))
    np.save(tmp_path / "y.npy", np.arange(6) % 2)
    np.save(tmp_path / "tab.npy", RNG.random((6, 5)))
    with pytest.raises(ValueError, match=r"data\.options\.labels is required for a \.npy source"):
        load_dataset(tmp_path / "x.npy")
    with pytest.raises(FileNotFoundError, match=r"data\.options\.labels: file not found: '.*gone\.npy'"):
        load_dataset(tmp_path / "x.npy", options={"labels": "gone.npy"}, base_dir=tmp_path)
    with pytest.raises(ValueError, match=r"data\.options\.labels: '.*y\.csv' must be a \.npy file"):
        load_dataset(tmp_path / "x.npy", options={"labels": "y.csv"}, base_dir=tmp_path)
    with pytest.raises(ValueError, match=r"test_labels: give it exactly when data\.test_source is a \.npy"):
        load_dataset(
            tmp_path / "x.npy", options={"labels": "y.npy", "test_labels": "y.npy"}, base_dir=tmp_path
        )
    with pytest.raises(ValueError, match=r"unknown key 'label' for 'x\.npy'; allowed: labels, test_labels"):
        load_dataset(tmp_path / "x.npy", options={"label": "y.npy"})
    with pytest.raises(ValueError, match=r"data\.label_column: only \.csv and \.parquet"):
        load_dataset(tmp_path / "x.npy", options={"labels": "y.npy"}, base_dir=tmp_path, label_column="y")
    _one_line_error(
        r"'.*tab\.npy' must hold images \[N, H, W\] or \[N, H, W, C\].*got shape \(6, 5\)",
        load_dataset,
        tmp_path / "tab.npy",
        options={"labels": "y.npy"},
        base_dir=tmp_path,
    )
    np.save(tmp_path / "short.npy", np.arange(5) % 2)
    with pytest.raises(ValueError, match=r"has 6 examples but 5 labels"):
        load_dataset(tmp_path / "x.npy", options={"labels": "short.npy"}, base_dir=tmp_path)
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 3)), y=np.arange(2))
    with pytest.raises(ValueError, match=r"pair \.npz with \.npz, \.npy with \.npy"):
        load_dataset(tmp_path / "x.npy", options={"labels": "y.npy"}, test_source=tmp_path / "d.npz")


def test_npy_object_labels_are_refused_without_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"

    class Booby:
        def __reduce__(self) -> tuple:
            return (os.mkdir, (str(marker),))

    np.save(tmp_path / "x.npy", RNG.random((2, 3, 3)))
    np.save(tmp_path / "y.npy", np.array([Booby(), 1], dtype=object), allow_pickle=True)
    _one_line_error(
        r"data\.options\.labels: '.*y\.npy' holds an object array; smoothflip never unpickles",
        load_dataset,
        tmp_path / "x.npy",
        options={"labels": "y.npy"},
        base_dir=tmp_path,
    )
    assert not marker.exists()


# --------------------------------------------------------------------------------------------------
# the digit-image writer
# --------------------------------------------------------------------------------------------------


def test_write_digit_images_layout_determinism_and_loading(tmp_path: Path) -> None:
    root = write_digit_images(tmp_path / "a", per_class=4, test_per_class=2, size=16, seed=1)
    assert root == tmp_path / "a"
    assert sorted(p.name for p in (root / "train").iterdir()) == [str(d) for d in range(10)]
    assert len(list((root / "train" / "3").glob("*.png"))) == 4
    assert len(list((root / "test" / "3").glob("*.png"))) == 2
    same = write_digit_images(tmp_path / "b", per_class=4, test_per_class=2, size=16, seed=1)
    other = write_digit_images(tmp_path / "c", per_class=4, test_per_class=2, size=16, seed=2)
    files = sorted(p.relative_to(root) for p in root.rglob("*.png"))
    assert all((root / f).read_bytes() == (same / f).read_bytes() for f in files)
    assert any((root / f).read_bytes() != (other / f).read_bytes() for f in files)
    ds = load_dataset(root, standardize=False)
    assert ds.class_names == tuple(str(d) for d in range(10))
    assert (ds.x_train.shape, ds.x_test.shape) == ((40, 1, 16, 16), (20, 1, 16, 16))
    flat = write_digit_images(tmp_path / "d", per_class=3, split=False, size=8)
    assert sorted(p.name for p in flat.iterdir()) == [str(d) for d in range(10)]
    with pytest.raises(ValueError, match=r"must be a new or empty folder"):
        write_digit_images(root)
    with pytest.raises(ValueError, match=r"per_class \+ test_per_class must be <= 174"):
        write_digit_images(tmp_path / "e", per_class=170, test_per_class=10)


def test_written_digits_are_shifted_upscaled_digits_of_their_class(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    size, shift = 12, 2
    root = write_digit_images(tmp_path / "w", per_class=2, test_per_class=1, size=size, shift=shift, seed=3)
    upscaled = np.stack(
        [
            np.asarray(
                Image.fromarray(np.round(im * 255 / 16).astype(np.uint8)).resize(
                    (size, size), Image.Resampling.BILINEAR
                )
            )
            for im in digits.images
        ]
    ).astype(int)
    padded = np.pad(upscaled, ((0, 0), (shift, shift), (shift, shift)))
    moved = 0
    for path in sorted(root.rglob("*.png")):
        image = np.asarray(Image.open(path)).astype(int)
        label = int(path.parent.name)
        matches = set()
        for dy in range(-shift, shift + 1):
            for dx in range(-shift, shift + 1):
                window = padded[:, shift - dy : shift - dy + size, shift - dx : shift - dx + size]
                hit = np.flatnonzero((window == image).all(axis=(1, 2)))
                matches |= {(int(digits.target[j]), dy, dx) for j in hit}
        assert matches, path
        assert {m[0] for m in matches} == {label}
        moved += all((dy, dx) != (0, 0) for _, dy, dx in matches)
    assert moved >= 10  # the shifts are random: most of the 30 images moved


# --------------------------------------------------------------------------------------------------
# training augmentation: random crop of the zero-padded image + horizontal flip
# --------------------------------------------------------------------------------------------------


def _reference(x: torch.Tensor, padding: int, seed: int, flip: bool = True) -> torch.Tensor:
    """The documented draws, applied example by example with F.pad and slicing."""
    g = torch.Generator().manual_seed(seed)
    offsets = torch.randint(0, 2 * padding + 1, (2, x.shape[0]), generator=g)
    flips = (
        torch.randint(0, 2, (x.shape[0],), generator=g) if flip else torch.zeros(x.shape[0], dtype=torch.long)
    )
    h, w = x.shape[-2:]
    out = []
    for b in range(x.shape[0]):
        padded = F.pad(x[b], (padding, padding, padding, padding))
        crop = padded[..., offsets[0, b] : offsets[0, b] + h, offsets[1, b] : offsets[1, b] + w]
        out.append(crop.flip(-1) if flips[b] else crop)
    return torch.stack(out)


@pytest.mark.parametrize(
    ("shape", "padding"), [((64, 3, 8, 8), 4), ((32, 1, 7, 5), 2), ((16, 6, 6), 3), ((8, 2, 4, 4), 0)]
)
def test_random_crop_flip_equals_pad_crop_flip_with_the_documented_draws(shape, padding) -> None:
    x = torch.randn(*shape)
    out = random_crop_flip(x, padding=padding, generator=torch.Generator().manual_seed(5))
    assert out.shape == x.shape
    assert out.dtype == x.dtype
    torch.testing.assert_close(out, _reference(x, padding, 5), rtol=0, atol=0)
    no_flip = random_crop_flip(x, padding=padding, flip=False, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(no_flip, _reference(x, padding, 5, flip=False), rtol=0, atol=0)


def test_random_crop_flip_is_a_shift_of_the_padded_image_and_flips_half_the_time() -> None:
    n, p = 4000, 2
    x = torch.rand(n, 1, 5, 5) + 1.0  # nonzero everywhere, so the zero border shows where the crop went
    out = random_crop_flip(x, padding=p, generator=torch.Generator().manual_seed(0))
    padded = F.pad(x, (p, p, p, p))
    candidates = torch.stack(
        [
            padded[..., dy : dy + 5, dx : dx + 5].flip(-1) if f else padded[..., dy : dy + 5, dx : dx + 5]
            for f in (0, 1)
            for dy in range(2 * p + 1)
            for dx in range(2 * p + 1)
        ]
    )  # [50, N, 1, 5, 5]
    found = (candidates == out[None]).flatten(2).all(dim=2)  # [50, N]
    assert bool((found.sum(dim=0) == 1).all())  # every output is exactly one crop (+ flip) of its input
    which = found.float().argmax(dim=0)
    flipped = (which >= (2 * p + 1) ** 2).float().mean().item()
    assert abs(flipped - 0.5) < 0.04  # Binomial(4000, 1/2): sd 0.008
    counts = torch.bincount(which % (2 * p + 1) ** 2, minlength=(2 * p + 1) ** 2)
    assert counts.min().item() > 0.6 * n / 25  # every offset drawn, about uniformly
    assert counts.max().item() < 1.4 * n / 25


def test_random_crop_flip_uses_only_its_generator() -> None:
    x = torch.randn(16, 3, 8, 8)
    x_before = x.clone()
    torch.manual_seed(0)
    state = torch.random.get_rng_state()
    a = random_crop_flip(x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.manual_seed(123)
    b = random_crop_flip(x, generator=torch.Generator().manual_seed(1))
    c = random_crop_flip(x, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(x, x_before)
    g = torch.Generator().manual_seed(1)
    first, second = random_crop_flip(x, generator=g), random_crop_flip(x, generator=g)
    assert torch.equal(first, a)
    assert not torch.equal(second, first)
    u8 = (torch.rand(4, 3, 6, 6) * 255).to(torch.uint8)
    assert random_crop_flip(u8, padding=1, generator=torch.Generator()).dtype == torch.uint8


def test_random_crop_flip_members_draw_from_their_own_generators() -> None:
    x = torch.randn(3, 10, 2, 6, 6)
    seeds = (7, 8, 9)
    out = random_crop_flip_members(x, padding=2, generators=[torch.Generator().manual_seed(s) for s in seeds])
    for m, s in enumerate(seeds):
        alone = random_crop_flip(x[m], padding=2, generator=torch.Generator().manual_seed(s))
        assert torch.equal(out[m], alone)
    swapped = random_crop_flip_members(
        x, padding=2, generators=[torch.Generator().manual_seed(s) for s in (7, 1, 9)]
    )
    assert torch.equal(swapped[0], out[0])
    assert torch.equal(swapped[2], out[2])
    assert not torch.equal(swapped[1], out[1])
    assert random_crop_flip_members(x[:, :, 0], padding=1, generators=[torch.Generator()] * 3).shape == (
        3,
        10,
        6,
        6,
    )


def test_augmentation_argument_errors() -> None:
    x = torch.zeros(2, 1, 4, 4)
    with pytest.raises(TypeError, match=r"generator must be a torch\.Generator"):
        random_crop_flip(x, generator=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="padding must be >= 0"):
        random_crop_flip(x, padding=-1, generator=torch.Generator())
    with pytest.raises(ValueError, match=r"x must have shape \[B, C, H, W\] or \[B, H, W\], got \[4, 4\]"):
        random_crop_flip(torch.zeros(4, 4), generator=torch.Generator())
    with pytest.raises(TypeError, match="flip must be True or False"):
        random_crop_flip(x, flip=1, generator=torch.Generator())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one generator per member: x has 2, got 1"):
        random_crop_flip_members(torch.zeros(2, 3, 1, 4, 4), generators=[torch.Generator()])
    with pytest.raises(TypeError, match="generators must be a sequence"):
        random_crop_flip_members(torch.zeros(2, 3, 1, 4, 4), generators=torch.Generator())  # type: ignore[arg-type]
