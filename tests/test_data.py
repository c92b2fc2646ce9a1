"""Tests for smoothflip.data: built-ins, user files, splits, standardization, errors, fingerprints."""

from __future__ import annotations

import dataclasses
import io
import os
import random
import struct
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import make_classification

from smoothflip.data import BUILTIN_DATASETS, FILE_TYPES, Dataset, load_dataset
from smoothflip.data import builtin as data_builtin
from smoothflip.errors import DataError

MNIST1D_SMALL = {"num_samples": 1000}


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own on-disk cache folder (never the user's ~/.cache)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv(data_builtin.CACHE_ENV, str(folder))
    return folder


def _numpy_state_equal(a: tuple, b: tuple) -> bool:
    return a[0] == b[0] and np.array_equal(a[1], b[1]) and tuple(a[2:]) == tuple(b[2:])


def _assert_same_arrays(a: Dataset, b: Dataset) -> None:
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)


def _assert_valid(ds: Dataset) -> None:
    assert ds.x_train.dtype == np.float32
    assert ds.x_test.dtype == np.float32
    assert ds.y_train.dtype == np.int64
    assert ds.y_test.dtype == np.int64
    assert ds.x_train.shape[1:] == ds.input_shape == ds.x_test.shape[1:]
    assert len(ds.x_train) == len(ds.y_train)
    assert len(ds.x_test) == len(ds.y_test)
    assert np.isfinite(ds.x_train).all()
    assert np.isfinite(ds.x_test).all()
    assert set(np.unique(ds.y_train)) == set(range(ds.num_classes))
    assert ds.y_test.min() >= 0
    assert ds.y_test.max() < ds.num_classes


# --------------------------------------------------------------------------------------------------
# mnist1d
# --------------------------------------------------------------------------------------------------


def test_mnist1d_defaults() -> None:
    ds = load_dataset("mnist1d")
    _assert_valid(ds)
    assert ds.name == "mnist1d"
    assert ds.x_train.shape == (4000, 40)
    assert ds.x_test.shape == (1000, 40)
    assert ds.input_shape == (40,)
    assert ds.class_names == tuple(str(i) for i in range(10))
    assert ds.x_train.flags.writeable  # the caller's copy, not the cached array


def test_mnist1d_defaults_match_package() -> None:
    from mnist1d.data import get_dataset_args

    package = get_dataset_args(as_dict=True)
    for key, value in data_builtin.MNIST1D_DEFAULTS.items():
        expected = tuple(package[key]) if key == "padding" else package[key]
        assert value == expected, key


def test_mnist1d_matches_generator_is_deterministic_and_keeps_global_rngs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mnist1d.data import get_dataset_args, make_dataset

    monkeypatch.setenv(data_builtin.CACHE_ENV, "off")  # force real generation both times
    data_builtin.clear_memory_cache()
    random.seed(1234)
    np.random.seed(5678)  # noqa: NPY002 (the global state is what is under test)
    python_state, numpy_state = random.getstate(), np.random.get_state()  # noqa: NPY002
    first = load_dataset("mnist1d", options=MNIST1D_SMALL)
    assert random.getstate() == python_state
    assert _numpy_state_equal(np.random.get_state(), numpy_state)  # noqa: NPY002
    data_builtin.clear_memory_cache()
    second = load_dataset("mnist1d", options=MNIST1D_SMALL)
    _assert_same_arrays(first, second)
    assert random.getstate() == python_state
    assert _numpy_state_equal(np.random.get_state(), numpy_state)  # noqa: NPY002

    args = get_dataset_args()
    args.num_samples = 1000
    reference = make_dataset(args)
    np.testing.assert_array_equal(first.x_train, reference["x"].astype(np.float32))
    np.testing.assert_array_equal(first.y_test, reference["y_test"])


def test_mnist1d_restores_global_rngs_when_generation_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    import mnist1d.data

    def broken(args: object) -> dict:
        random.seed(0)
        np.random.seed(0)  # noqa: NPY002
        raise RuntimeError("generator failed")

    monkeypatch.setattr(mnist1d.data, "make_dataset", broken)
    data_builtin.clear_memory_cache()
    python_state, numpy_state = random.getstate(), np.random.get_state()  # noqa: NPY002
    with pytest.raises(RuntimeError, match="generator failed"):
        load_dataset("mnist1d", options={"num_samples": 30})
    assert random.getstate() == python_state
    assert _numpy_state_equal(np.random.get_state(), numpy_state)  # noqa: NPY002


def test_mnist1d_options_change_the_data() -> None:
    small = load_dataset("mnist1d", options=MNIST1D_SMALL)
    assert small.x_train.shape == (800, 40)
    assert small.x_test.shape == (200, 40)
    half = load_dataset("mnist1d", options={"num_samples": 1000, "train_split": 0.5})
    assert len(half.y_train) == 500
    assert len(half.y_test) == 500
    reseeded = load_dataset("mnist1d", options={"num_samples": 1000, "seed": 7})
    assert reseeded.fingerprint() != small.fingerprint()
    shorter = load_dataset("mnist1d", options={"num_samples": 1000, "final_seq_length": 20})
    assert shorter.input_shape == (20,)
    noisier = load_dataset("mnist1d", options={"num_samples": 1000, "iid_noise_scale": 0.5})
    assert not np.array_equal(noisier.x_train, small.x_train)
    # mnist1d brings its own split: test_fraction and split_seed do not move it
    _assert_same_arrays(
        small, load_dataset("mnist1d", options=MNIST1D_SMALL, test_fraction=0.5, split_seed=3)
    )


def test_mnist1d_disk_cache_is_written_atomically_and_reused(
    private_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mnist1d.data

    options = {"num_samples": 200, "seed": 3}
    data_builtin.clear_memory_cache()
    fresh = load_dataset("mnist1d", options=options)
    files = list(private_cache.iterdir())
    assert len(files) == 1
    assert files[0].suffix == ".npz"
    with np.load(files[0], allow_pickle=False) as archive:
        np.testing.assert_array_equal(archive["x"], fresh.x_train)

    def must_not_run(args: object) -> dict:
        raise AssertionError("regenerated although the disk cache holds the data")

    monkeypatch.setattr(mnist1d.data, "make_dataset", must_not_run)
    data_builtin.clear_memory_cache()
    _assert_same_arrays(fresh, load_dataset("mnist1d", options=options))

    # a corrupt cache file is regenerated and replaced, not trusted
    monkeypatch.undo()
    monkeypatch.setenv(data_builtin.CACHE_ENV, str(private_cache))
    files[0].write_bytes(b"not a zip")
    data_builtin.clear_memory_cache()
    _assert_same_arrays(fresh, load_dataset("mnist1d", options=options))
    with np.load(files[0], allow_pickle=False) as archive:
        np.testing.assert_array_equal(archive["y_test"], fresh.y_test)

    # a file made for other options (same shapes) is not taken for this one
    other_options = {"num_samples": 200, "seed": 4}
    other = load_dataset("mnist1d", options=other_options)
    (other_file,) = set(private_cache.iterdir()) - {files[0]}
    other_file.write_bytes(files[0].read_bytes())
    data_builtin.clear_memory_cache()
    _assert_same_arrays(other, load_dataset("mnist1d", options=other_options))


def test_mnist1d_memory_cache_hits() -> None:
    data_builtin.clear_memory_cache()
    first = load_dataset("mnist1d", options={"num_samples": 100})
    again = load_dataset("mnist1d", options={"num_samples": 100, "train_split": 0.8, "padding": [36, 60]})
    info = data_builtin._mnist1d_arrays.cache_info()
    assert (info.hits, info.misses) == (1, 1)
    _assert_same_arrays(first, again)
    again.x_train[0, 0] = 123.0  # the caller's copy: the cache is untouched
    assert load_dataset("mnist1d", options={"num_samples": 100}).x_train[0, 0] != 123.0


def test_cache_dir_can_be_switched_off(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(data_builtin.CACHE_ENV, "off")
    assert data_builtin.cache_dir() is None
    monkeypatch.setenv(data_builtin.CACHE_ENV, str(tmp_path))
    assert data_builtin.cache_dir() == tmp_path
    monkeypatch.delenv(data_builtin.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert data_builtin.cache_dir() == tmp_path / "smoothflip"


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"num_sample": 10}, ValueError, r"unknown key 'num_sample' for 'mnist1d'; allowed: num_samples, "),
        ({"num_samples": 5}, ValueError, r"data\.options\.num_samples must be >= 10, got 5"),
        ({"seed": "a"}, TypeError, r"data\.options\.seed must be an integer"),
        ({"train_split": 1.0}, ValueError, r"data\.options\.train_split must be in \(0, 1\)"),
        ({"num_samples": 10, "train_split": 0.05}, ValueError, r"train_split.*0 train / 10 test"),
        ({"padding": [5]}, TypeError, r"data\.options\.padding must be a pair"),
        ({"padding": [9, 3]}, ValueError, r"data\.options\.padding\[1\] must be >= 9"),
        ({"shuffle_seq": 1}, TypeError, r"data\.options\.shuffle_seq must be true or false"),
        ({"shear_scale": -1.0}, ValueError, r"data\.options\.shear_scale must be >= 0"),
    ],
)
def test_mnist1d_bad_options(options: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        load_dataset("mnist1d", options=options)


# --------------------------------------------------------------------------------------------------
# digits and synthetic
# --------------------------------------------------------------------------------------------------


def _class_shares(y: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(y, minlength=k) / len(y)


def test_digits_shapes_scale_and_stratified_split() -> None:
    ds = load_dataset("digits", test_fraction=0.25)
    _assert_valid(ds)
    assert ds.x_train.shape == (1347, 8, 8)
    assert ds.x_test.shape == (450, 8, 8)
    assert ds.class_names == tuple(str(i) for i in range(10))
    # images keep their [0, 1] scale even with standardize=True (the default)
    assert ds.x_train.min() == 0.0
    assert ds.x_train.max() == 1.0
    assert set(np.unique(ds.x_train * 16)) <= set(range(17))
    np.testing.assert_allclose(_class_shares(ds.y_train, 10), _class_shares(ds.y_test, 10), atol=0.01)


def test_digits_split_depends_on_split_seed_only() -> None:
    a = load_dataset("digits", split_seed=0)
    assert load_dataset("digits", split_seed=0).fingerprint() == a.fingerprint()
    b = load_dataset("digits", split_seed=1)
    assert b.fingerprint() != a.fingerprint()
    assert len(b.y_test) == len(a.y_test) == 360  # ceil(0.2 * 1797)
    # the same 1797 images either way
    whole_a = np.sort(np.concatenate([a.x_train, a.x_test]).reshape(1797, -1), axis=0)
    whole_b = np.sort(np.concatenate([b.x_train, b.x_test]).reshape(1797, -1), axis=0)
    np.testing.assert_array_equal(whole_a, whole_b)


def test_synthetic_defaults_standardized_on_train() -> None:
    ds = load_dataset("synthetic")
    _assert_valid(ds)
    assert ds.x_train.shape == (1600, 20)
    assert ds.x_test.shape == (400, 20)
    assert ds.class_names == ("0", "1", "2", "3")
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.std(axis=0), 1.0, atol=1e-5)
    assert np.abs(ds.x_test.mean(axis=0)).max() > 1e-3  # test data uses train statistics, not its own
    np.testing.assert_allclose(_class_shares(ds.y_train, 4), _class_shares(ds.y_test, 4), atol=0.01)


def test_synthetic_forwards_options_and_keeps_labels_clean() -> None:
    options = {"n_samples": 300, "n_features": 6, "n_informative": 3, "n_redundant": 1, "n_classes": 3}
    options |= {"class_sep": 2.0, "random_state": 5}
    ds = load_dataset("synthetic", options=options, standardize=False, test_fraction=0.3)
    assert ds.x_train.shape == (210, 6)
    assert ds.num_classes == 3
    assert np.abs(ds.x_train.mean(axis=0)).max() > 0.05  # not standardized
    x, y = make_classification(**options, n_repeated=0, n_clusters_per_class=1, flip_y=0.0)
    label_of_row = {row.astype(np.float32).tobytes(): label for row, label in zip(x, y, strict=True)}
    ours = zip(np.concatenate([ds.x_train, ds.x_test]), np.concatenate([ds.y_train, ds.y_test]), strict=True)
    assert all(label_of_row[row.tobytes()] == label for row, label in ours)


def test_synthetic_split_changes_with_split_seed_not_data() -> None:
    a = load_dataset("synthetic", options={"n_samples": 200}, split_seed=0, standardize=False)
    b = load_dataset("synthetic", options={"n_samples": 200}, split_seed=9, standardize=False)
    assert not np.array_equal(a.y_test, b.y_test) or not np.array_equal(a.x_test, b.x_test)
    rows = [np.sort(np.concatenate([d.x_train, d.x_test]), axis=0) for d in (a, b)]
    np.testing.assert_array_equal(*rows)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        (
            {"n_sample": 10},
            ValueError,
            r"^data\.options: unknown key 'n_sample' for 'synthetic'; allowed: n_samples, n_features, "
            r"n_informative, n_redundant, n_classes, n_clusters_per_class, class_sep, random_state$",
        ),
        (
            {"n_informative": 1, "n_classes": 4},
            ValueError,
            r"^data\.options: impossible combination.*n_classes",
        ),
        ({"n_features": 5, "n_informative": 5, "n_redundant": 2}, ValueError, r"^data\.options: impossible"),
        ({"n_classes": 1}, ValueError, r"data\.options\.n_classes must be >= 2"),
        ({"class_sep": "wide"}, TypeError, r"data\.options\.class_sep must be a real number"),
        ({"random_state": -1}, ValueError, r"data\.options\.random_state must be >= 0"),
    ],
)
def test_synthetic_bad_options(options: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match) as info:
        load_dataset("synthetic", options=options)
    assert "\n" not in str(info.value)


def test_digits_takes_no_options() -> None:
    with pytest.raises(ValueError, match=r"unknown key 'n_class' for 'digits'; allowed: none"):
        load_dataset("digits", options={"n_class": 5})


# --------------------------------------------------------------------------------------------------
# user files
# --------------------------------------------------------------------------------------------------

WORDS = np.array(["ant", "bee", "cat"])


def _table(n_per_class: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``x [3n, 4]`` float32 (shifted per class) and int labels ``[3n]`` in 0..2, shuffled."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n_per_class)
    x = (rng.normal(size=(len(y), 4)) + 3.0 * y[:, None]).astype(np.float32)
    order = rng.permutation(len(y))
    return x[order], y[order]


def _frame(x: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame(x.astype(np.float64), columns=[f"f{j}" for j in range(x.shape[1])])
    frame["label"] = labels
    return frame


def test_npz_csv_parquet_round_trip_to_the_same_arrays(tmp_path: Path) -> None:
    x, y = _table()
    np.savez(tmp_path / "ints.npz", x=x, y=y)
    np.savez(tmp_path / "words.npz", x=x, y=WORDS[y])
    _frame(x, WORDS[y]).to_csv(tmp_path / "words.csv", index=False)
    _frame(x, y).to_csv(tmp_path / "ints.csv", index=False)
    _frame(x, WORDS[y]).to_parquet(tmp_path / "words.parquet", index=False)

    kw = {"test_fraction": 0.25, "split_seed": 4, "base_dir": tmp_path}
    ints = load_dataset("ints.npz", **kw)
    _assert_valid(ints)
    assert ints.name == "ints.npz"
    assert ints.class_names == ("0", "1", "2")
    assert ints.x_train.shape == (45, 4)
    assert ints.x_test.shape == (15, 4)
    np.testing.assert_allclose(ints.x_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(ints.x_train.std(axis=0), 1.0, atol=1e-5)
    others = [
        load_dataset("words.npz", **kw),
        load_dataset("ints.csv", label_column="label", **kw),
        load_dataset("words.csv", label_column="label", **kw),
        load_dataset(tmp_path / "words.parquet", label_column="label", test_fraction=0.25, split_seed=4),
    ]
    for other in others:
        _assert_same_arrays(ints, other)
    assert others[0].class_names == others[2].class_names == others[3].class_names == ("ant", "bee", "cat")
    assert others[1].class_names == ("0", "1", "2")
    assert len({d.fingerprint() for d in [ints, others[1]]}) == 1
    assert others[0].fingerprint() != ints.fingerprint()  # class names count


def test_labels_sorted_numerically_and_names_kept(tmp_path: Path) -> None:
    x, y = _table()
    raw = np.array([10, 2, 7])[y]  # sorted classes: 2, 7, 10
    np.savez(tmp_path / "d.npz", x=x, y=raw)
    ds = load_dataset(tmp_path / "d.npz", standardize=False)
    assert ds.class_names == ("2", "7", "10")
    whole_x = np.concatenate([ds.x_train, ds.x_test])
    whole_y = np.array(ds.class_names)[np.concatenate([ds.y_train, ds.y_test])]
    order = np.lexsort(whole_x.T)
    np.testing.assert_array_equal(whole_x[order], x[np.lexsort(x.T)])
    np.testing.assert_array_equal(whole_y[order], raw[np.lexsort(x.T)].astype(str))


def test_test_source_and_own_test_split(tmp_path: Path) -> None:
    x, y = _table(seed=1)
    x_te, y_te = _table(n_per_class=5, seed=2)
    _frame(x, WORDS[y]).to_csv(tmp_path / "train.csv", index=False)
    _frame(x_te, WORDS[y_te])[["label", "f3", "f2", "f1", "f0"]].to_parquet(tmp_path / "test.parquet")
    ds = load_dataset("train.csv", label_column="label", test_source="test.parquet", base_dir=tmp_path)
    assert len(ds.y_train) == 60
    assert len(ds.y_test) == 15
    mean, std = x.astype(np.float64).mean(axis=0), x.astype(np.float64).std(axis=0)
    np.testing.assert_allclose(ds.x_test, (x_te - mean) / std, rtol=1e-5, atol=1e-5)  # train statistics
    np.testing.assert_array_equal(ds.y_test, y_te)

    np.savez(tmp_path / "own.npz", x=x, y=y, x_test=x_te, y_test=y_te)
    np.savez(tmp_path / "train.npz", x=x, y=y)
    np.savez(tmp_path / "test.npz", x=x_te, y=y_te)
    own = load_dataset(tmp_path / "own.npz", standardize=False)
    separate = load_dataset(tmp_path / "train.npz", test_source=tmp_path / "test.npz", standardize=False)
    _assert_same_arrays(own, separate)
    np.testing.assert_array_equal(own.x_train, x)
    np.testing.assert_array_equal(own.x_test, x_te)


def test_npz_images_are_stored_channels_first_and_standardized_per_channel(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(40, 4, 5, 2), dtype=np.uint8)
    x[..., 1] //= 4  # the second channel has its own scale
    np.savez(tmp_path / "img.npz", x=x, y=np.tile(np.arange(4), 10))
    raw = load_dataset(tmp_path / "img.npz", test_fraction=0.5, standardize=False)
    assert raw.input_shape == (2, 4, 5)
    assert set(np.unique(raw.x_train)) <= set(range(256))  # arrays keep their values
    every = np.concatenate([raw.x_train, raw.x_test])
    np.testing.assert_array_equal(np.sort(every.reshape(-1)), np.sort(x.reshape(-1).astype(np.float32)))
    ds = load_dataset(tmp_path / "img.npz", test_fraction=0.5)
    assert ds.input_shape == (2, 4, 5)
    mean = raw.x_train.mean(axis=(0, 2, 3), dtype=np.float64)
    std = raw.x_train.std(axis=(0, 2, 3), dtype=np.float64)
    np.testing.assert_allclose(ds.x_train.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.std(axis=(0, 2, 3)), 1.0, atol=1e-5)
    expected = (raw.x_test - mean[None, :, None, None]) / std[None, :, None, None]
    np.testing.assert_allclose(ds.x_test, expected, atol=1e-5)  # the test split uses training statistics
    # [N, H, W] is grayscale [N, 1, H, W]; [N, C, H, W] is kept; other arrays are left as they are
    np.savez(tmp_path / "gray.npz", x=x[..., 0], y=np.tile(np.arange(4), 10))
    assert load_dataset(tmp_path / "gray.npz").input_shape == (1, 4, 5)
    np.savez(tmp_path / "chw.npz", x=np.moveaxis(x, 3, 1).repeat(3, axis=3), y=np.tile(np.arange(4), 10))
    assert load_dataset(tmp_path / "chw.npz").input_shape == (2, 4, 15)
    volumes = rng.integers(0, 256, size=(40, 5, 6, 7)).astype(np.float32)
    np.savez(tmp_path / "vol.npz", x=volumes, y=np.tile(np.arange(4), 10))
    vol = load_dataset(tmp_path / "vol.npz")
    assert vol.input_shape == (5, 6, 7)
    assert vol.x_train.max() > 1.0  # not standardized
    # layout = "as_saved": multichannel signals [N, C, L] (for cnn1d) stay as they are, unstandardized
    signals = load_dataset(tmp_path / "gray.npz", options={"layout": "as_saved"})
    assert signals.input_shape == (4, 5)
    assert set(np.unique(signals.x_train)) <= set(range(256))
    same = load_dataset(tmp_path / "img.npz", options={"layout": "as_saved"}, test_fraction=0.5)
    assert same.input_shape == (4, 5, 2)
    with pytest.raises(
        ValueError, match=r"^data\.options\.layout must be one of 'auto', 'as_saved', got 'chw'$"
    ):
        load_dataset(tmp_path / "img.npz", options={"layout": "chw"})


def test_relative_paths_resolve_against_base_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _table()
    (tmp_path / "sub").mkdir()
    np.savez(tmp_path / "sub" / "d.npz", x=x, y=y)
    monkeypatch.chdir(tmp_path)
    a = load_dataset("d.npz", base_dir=tmp_path / "sub")
    b = load_dataset("sub/d.npz")
    _assert_same_arrays(a, b)


@settings(max_examples=25, deadline=None)
@given(
    labels=st.lists(st.sampled_from(["x", "y", "zz", "10", "2"]), min_size=2, max_size=5, unique=True),
    per_class=st.integers(2, 6),
    seed=st.integers(0, 2**32 - 1),
)
def test_split_is_stratified_and_labels_decode(labels: list[str], per_class: int, seed: int) -> None:
    import tempfile

    k = len(labels)
    y = np.repeat(np.array(labels), per_class)
    x = np.arange(len(y) * 2, dtype=np.float32).reshape(-1, 2)
    with tempfile.TemporaryDirectory() as folder:
        np.savez(Path(folder) / "d.npz", x=x, y=y)
        fraction = 0.5
        ds = load_dataset(Path(folder) / "d.npz", test_fraction=fraction, split_seed=seed, standardize=False)
    assert ds.class_names == tuple(sorted(labels))
    assert len(ds.y_test) == int(np.ceil(fraction * len(y)))
    for i in range(k):  # every class on both sides of a stratified split
        assert (ds.y_train == i).any()
        assert (ds.y_test == i).any()
    decoded = np.array(ds.class_names)[np.concatenate([ds.y_train, ds.y_test])]
    rows = np.concatenate([ds.x_train, ds.x_test])[:, 0].astype(int) // 2
    np.testing.assert_array_equal(decoded, y[rows])


# --------------------------------------------------------------------------------------------------
# bad inputs
# --------------------------------------------------------------------------------------------------


def _write(tmp_path: Path, name: str, **arrays: np.ndarray) -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"data\.source: file not found: .*nowhere\.csv"):
        load_dataset("nowhere.csv", base_dir=tmp_path, label_column="y")
    x, y = _table()
    train = _write(tmp_path, "d.npz", x=x, y=y)
    with pytest.raises(FileNotFoundError, match=r"data\.test_source: file not found: .*gone\.npz"):
        load_dataset(train, test_source=tmp_path / "gone.npz")


def test_unknown_extension_and_unknown_builtin(tmp_path: Path) -> None:
    (tmp_path / "d.txt").write_text("1,2\n")
    with pytest.raises(ValueError, match=r"unknown file type '\.txt'.*allowed: \.npz, \.csv, \.parquet"):
        load_dataset(tmp_path / "d.txt")
    with pytest.raises(ValueError, match=r"unknown file type \(no extension\)"):
        load_dataset("data/train")
    with pytest.raises(
        ValueError, match=r"unknown dataset 'mnist' \(did you mean 'mnist1d'\?\); built-ins: mnist1d"
    ):
        load_dataset("mnist")
    with pytest.raises(
        ValueError, match=r"unknown dataset 'cifar10'; built-ins: mnist1d, digits, synthetic, "
    ):
        load_dataset("cifar10")
    with pytest.raises(TypeError, match=r"data\.source must be a dataset name or a file path"):
        load_dataset(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5, -0.1])
def test_test_fraction_outside_open_interval(fraction: float) -> None:
    with pytest.raises(ValueError, match=r"data\.test_fraction must be in \(0, 1\)"):
        load_dataset("digits", test_fraction=fraction)


def test_bad_split_seed_and_standardize() -> None:
    with pytest.raises(ValueError, match=r"data\.split_seed must be >= 0, got -1"):
        load_dataset("digits", split_seed=-1)
    with pytest.raises(TypeError, match=r"data\.standardize must be true or false"):
        load_dataset("digits", standardize="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"data\.options must be a table"):
        load_dataset("digits", options=["a"])  # type: ignore[arg-type]


def test_builtin_refuses_file_settings() -> None:
    with pytest.raises(
        ValueError, match=r"data\.label_column: only \.csv and \.parquet.*'digits' is a built-in"
    ):
        load_dataset("digits", label_column="y")
    with pytest.raises(ValueError, match=r"data\.test_source: only file sources.*'mnist1d'"):
        load_dataset("mnist1d", test_source="t.npz")


def test_npz_object_array_is_refused_without_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"

    class Booby:
        def __reduce__(self) -> tuple:
            return (os.mkdir, (str(marker),))

    path = tmp_path / "evil.npz"
    np.savez(path, x=np.array([Booby(), {"a": 1}], dtype=object), y=np.array([0, 1]))
    with pytest.raises(ValueError, match=r"holds an object array 'x'; smoothflip never unpickles user files"):
        load_dataset(path)
    assert not marker.exists()

    np.savez(path, x=np.zeros((2, 3)), y=np.array(["a", {"b": 2}], dtype=object))
    with pytest.raises(ValueError, match=r"object array 'y'"):
        load_dataset(path)


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"x": np.zeros((0, 3)), "y": np.zeros(0, dtype=int)}, r"holds no examples"),
        ({"x": np.zeros((10, 3)), "y": np.zeros(9, dtype=int)}, r"has 10 examples but 9 labels"),
        ({"x": np.zeros((10, 3))}, r"has no array 'y' \(it holds 'x'\)"),
        ({"x": np.zeros((4, 3)), "y": np.arange(4), "x_val": np.zeros(2)}, r"unexpected array\(s\) 'x_val'"),
        (
            {"x": np.zeros((4, 3)), "y": np.arange(4), "x_test": np.zeros((2, 3))},
            r"holds x_test but no y_test",
        ),
        ({"x": np.zeros((4, 3)), "y": np.array([0.0, 1.5, 1.0, 0.0])}, r"integer or string labels.*1\.5"),
        ({"x": np.zeros((4, 3)), "y": np.zeros((4, 1), dtype=int)}, r"must be a 1-D array of labels \[N\]"),
        ({"x": np.array(["a", "b"]), "y": np.arange(2)}, r"must be numeric .*got dtype <U1"),
        (
            {"x": np.zeros((6, 2)), "y": np.zeros(6, dtype=int)},
            r"every label is the same class, 0; at least 2 different classes",
        ),
    ],
)
def test_bad_npz(tmp_path: Path, arrays: dict, match: str) -> None:
    path = _write(tmp_path, "bad.npz", **arrays)
    with pytest.raises(ValueError, match=match) as info:
        load_dataset(path)
    assert "\n" not in str(info.value)


def test_not_an_npz_archive(tmp_path: Path) -> None:
    path = tmp_path / "junk.npz"
    path.write_bytes(b"garbage bytes")
    with pytest.raises(ValueError, match=r"is not an \.npz archive"):
        load_dataset(path)


def test_non_finite_features_are_counted_and_located(tmp_path: Path) -> None:
    x, y = _table()
    frame = _frame(x, y)
    frame.loc[[1, 5], "f1"] = np.nan
    frame.loc[3, "f3"] = np.inf
    frame.to_csv(tmp_path / "nan.csv", index=False)
    with pytest.raises(
        ValueError, match=r"3 non-finite feature values \(2 NaN, 1 inf\) in columns 'f1' \(2\), 'f3' \(1\)"
    ):
        load_dataset(tmp_path / "nan.csv", label_column="label")

    x_te = x[:6].copy()
    x_te[2, 0] = np.inf
    path = _write(tmp_path, "inf.npz", x=x, y=y, x_test=x_te, y_test=y[:6])
    with pytest.raises(
        ValueError, match=r"test split \(x_test, y_test\) .* 1 non-finite feature value \(0 NaN, 1 inf\)"
    ):
        load_dataset(path)

    images = np.zeros((6, 2, 2))
    images[4, 1, 0] = np.nan
    path = _write(tmp_path, "img.npz", x=images, y=np.array([0, 1] * 3))
    with pytest.raises(ValueError, match=r"first at example 4, position \(1, 0\)"):
        load_dataset(path)

    path = _write(tmp_path, "huge.npz", x=np.full((6, 2), 1e300), y=np.array([0, 1] * 3))
    with pytest.raises(ValueError, match=r"too large for float32"):
        load_dataset(path)


def test_one_class_and_rare_class_and_tiny_test_split(tmp_path: Path) -> None:
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    path = _write(tmp_path, "one.npz", x=x, y=np.full(10, 3))
    with pytest.raises(ValueError, match=r"every label is the same class, 3; at least 2 different"):
        load_dataset(path)
    path = _write(tmp_path, "rare.npz", x=x, y=np.array(["a"] * 5 + ["b"] * 4 + ["c"]))
    with pytest.raises(ValueError, match=r"class\(es\) 'c' with only 1 example; a stratified"):
        load_dataset(path)
    path = _write(tmp_path, "few.npz", x=x, y=np.array([0, 1, 2, 3, 4] * 2))
    with pytest.raises(ValueError, match=r"data\.test_fraction: 0\.2 of the 10 examples .* 8 train / 2 test"):
        load_dataset(path)


def test_training_with_one_class_via_test_source(tmp_path: Path) -> None:
    x, _ = _table()
    train = _write(tmp_path, "train.npz", x=x, y=np.zeros(len(x), dtype=int))
    test = _write(tmp_path, "test.npz", x=x[:4], y=np.array([0, 1, 0, 1]))
    with pytest.raises(ValueError, match=r"training split of .*: every label is the same class, 0"):
        load_dataset(train, test_source=test)


def test_test_labels_never_seen_in_training_are_named(tmp_path: Path) -> None:
    x, y = _table()
    _frame(x, WORDS[y]).to_csv(tmp_path / "train.csv", index=False)
    _frame(x[:5], np.array(["ant", "dog", "dog", "eel", "bee"])).to_csv(tmp_path / "test.csv", index=False)
    with pytest.raises(ValueError, match=r"labels never seen in training: 'dog', 'eel' \(3 test examples\)"):
        load_dataset(tmp_path / "train.csv", label_column="label", test_source=tmp_path / "test.csv")
    _frame(x[:5], np.arange(5) % 3).to_csv(tmp_path / "ints.csv", index=False)
    with pytest.raises(ValueError, match=r"labels of .* are strings but those of .* are integers"):
        load_dataset(tmp_path / "train.csv", label_column="label", test_source=tmp_path / "ints.csv")


def test_table_errors(tmp_path: Path) -> None:
    x, y = _table()
    frame = _frame(x, WORDS[y])
    frame.to_csv(tmp_path / "ok.csv", index=False)
    with pytest.raises(
        ValueError, match=r"label_column is required for \.csv sources; columns of .*'f0', 'f1'"
    ):
        load_dataset(tmp_path / "ok.csv")
    with pytest.raises(
        ValueError, match=r"'target' is not a column of .*; columns: 'f0', 'f1', 'f2', 'f3', 'label'"
    ):
        load_dataset(tmp_path / "ok.csv", label_column="target")

    frame.assign(color=["red"] * len(frame)).to_parquet(tmp_path / "text.parquet")
    with pytest.raises(
        ValueError, match=r"column 'color' of .* is not numeric \(dtype .*, e\.g\. 'red' in row 1\)"
    ):
        load_dataset(tmp_path / "text.parquet", label_column="label")

    frame.iloc[:0].to_csv(tmp_path / "empty.csv", index=False)
    with pytest.raises(ValueError, match=r"empty\.csv' holds no examples"):
        load_dataset(tmp_path / "empty.csv", label_column="label")
    (tmp_path / "blank.csv").write_text("")
    with pytest.raises(ValueError, match=r"cannot read .*blank\.csv' as csv"):
        load_dataset(tmp_path / "blank.csv", label_column="label")

    frame.assign(label=[None] * 2 + list(frame["label"][2:])).to_csv(tmp_path / "holes.csv", index=False)
    with pytest.raises(ValueError, match=r"column 'label' of .* has 2 missing label\(s\)"):
        load_dataset(tmp_path / "holes.csv", label_column="label")

    frame.drop(columns="f2").to_csv(tmp_path / "narrow.csv", index=False)
    with pytest.raises(ValueError, match=r"must have the same columns as .*; missing: 'f2'"):
        load_dataset(tmp_path / "ok.csv", label_column="label", test_source=tmp_path / "narrow.csv")

    with pytest.raises(ValueError, match=r"unknown key 'delimiter' for 'ok\.csv'; allowed: sep"):
        load_dataset(tmp_path / "ok.csv", label_column="label", options={"delimiter": ";"})
    frame.to_csv(tmp_path / "semi.csv", index=False, sep=";")
    semi = load_dataset(tmp_path / "semi.csv", label_column="label", options={"sep": ";"})
    _assert_same_arrays(semi, load_dataset(tmp_path / "ok.csv", label_column="label"))


def test_file_kind_mismatches(tmp_path: Path) -> None:
    x, y = _table()
    npz = _write(tmp_path, "d.npz", x=x, y=y, x_test=x[:3], y_test=y[:3])
    _frame(x, y).to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(
        ValueError, match=r"data\.label_column: only \.csv and \.parquet sources have columns"
    ):
        load_dataset(npz, label_column="label")
    with pytest.raises(
        ValueError, match=r"data\.test_source: .*d\.csv' is a \.csv file but data\.source .* is \.npz"
    ):
        load_dataset(npz, test_source=tmp_path / "d.csv")
    other = _write(tmp_path, "t.npz", x=x, y=y)
    with pytest.raises(ValueError, match=r"already holds x_test and y_test"):
        load_dataset(npz, test_source=other)
    with pytest.raises(ValueError, match=r"is the data\.source file itself"):
        load_dataset(tmp_path / "d.csv", label_column="label", test_source=tmp_path / "d.csv")
    wide = _write(tmp_path, "wide.npz", x=np.zeros((4, 5)), y=np.arange(4) % 2)
    with pytest.raises(ValueError, match=r"have shape \(5,\) but training examples have shape \(4,\)"):
        load_dataset(other, test_source=wide)


def test_every_builtin_and_file_type_is_listed() -> None:
    assert BUILTIN_DATASETS == ("mnist1d", "digits", "synthetic", "iris", "wine", "breast_cancer")
    assert FILE_TYPES == (".npz", ".csv", ".parquet")


# --------------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------------


def _small() -> Dataset:
    return load_dataset("synthetic", options={"n_samples": 100, "n_classes": 2}, test_fraction=0.3)


def test_fingerprint_stable_and_sensitive() -> None:
    ds = _small()
    reference = ds.fingerprint()
    assert len(reference) == 64
    assert int(reference, 16) >= 0
    assert _small().fingerprint() == reference
    assert dataclasses.replace(ds, name="renamed").fingerprint() == reference

    y = ds.y_train.copy()
    y[0] = 1 - y[0]
    assert dataclasses.replace(ds, y_train=y).fingerprint() != reference
    y_test = ds.y_test.copy()
    y_test[-1] = 1 - y_test[-1]
    assert dataclasses.replace(ds, y_test=y_test).fingerprint() != reference
    x = ds.x_train.copy()
    x[3, 2] = np.nextafter(x[3, 2], np.float32(np.inf))
    assert dataclasses.replace(ds, x_train=x).fingerprint() != reference
    assert dataclasses.replace(ds, class_names=("a", "b")).fingerprint() != reference
    # moving one example from train to test changes it even though the union is the same
    moved = dataclasses.replace(
        ds,
        x_train=ds.x_train[1:],
        y_train=ds.y_train[1:],
        x_test=np.concatenate([ds.x_train[:1], ds.x_test]),
        y_test=np.concatenate([ds.y_train[:1], ds.y_test]),
    )
    assert moved.fingerprint() != reference


def test_dataset_checks_its_invariants() -> None:
    ds = _small()
    with pytest.raises(TypeError, match=r"Dataset\.x_train must be a float32"):
        dataclasses.replace(ds, x_train=ds.x_train.astype(np.float64))
    with pytest.raises(ValueError, match=r"Dataset\.y_test must hold class indices in \[0, 2\)"):
        dataclasses.replace(ds, y_test=ds.y_test + 1)
    with pytest.raises(ValueError, match=r"Dataset\.class_names must name at least 2 classes"):
        dataclasses.replace(ds, class_names=("only",))
    with pytest.raises(ValueError, match=r"Dataset\.x_test must have shape"):
        dataclasses.replace(ds, x_test=ds.x_test[:, :3])
    bad = ds.x_train.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"Dataset\.x_train must be finite"):
        dataclasses.replace(ds, x_train=bad)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "other"  # type: ignore[misc]
    assert repr(ds) == "Dataset(name='synthetic', train=70, test=30, input_shape=(20,), num_classes=2)"


# --------------------------------------------------------------------------------------------------
# forged .npy headers: checked against the bytes present before numpy reads (or allocates) anything
# --------------------------------------------------------------------------------------------------

HUGE = (2**40, 4)
HUGE_MESSAGE = (
    r"the header declares an array of shape \(1099511627776, 4\) and dtype {dtype} \({size}\) but only "
    r"\d+ bytes of data follow it; the file is truncated or forged$"
)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _forged(shape: tuple[int, ...] = HUGE, descr: str = "<f8", total: int = 600) -> bytes:
    """A .npy of ``total`` bytes whose header claims ``shape``."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_2_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    buffer.write(b"\0" * (total - buffer.tell()))
    return buffer.getvalue()


@pytest.fixture
def no_array_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """numpy must not start reading (allocating) any array: the header check comes first."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("numpy.lib.format.read_array was called")

    monkeypatch.setattr(np.lib.format, "read_array", refuse)


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
@pytest.mark.parametrize(
    ("member", "descr", "dtype"),
    [("x", "<f8", "float64"), ("y", "<i8", "int64"), ("x_test", "<f4", "float32"), ("y_test", "<U9", "<U9")],
)
def test_forged_npz_member_is_a_one_line_error_before_loading(
    tmp_path: Path, no_array_read: None, compression: int, member: str, descr: str, dtype: str
) -> None:
    arrays = {
        "x": np.zeros((8, 3)),
        "y": np.arange(8) % 2,
        "x_test": np.zeros((4, 3)),
        "y_test": np.arange(4) % 2,
    }
    path = tmp_path / "forged.npz"
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, array in arrays.items():
            archive.writestr(f"{name}.npy", _forged(descr=descr) if name == member else _npy_bytes(array))
    size = {"float64": "32.0 TiB", "int64": "32.0 TiB", "float32": "16.0 TiB", "<U9": "144.0 TiB"}[dtype]
    match = rf"^data\.source: array '{member}' of '.*forged\.npz': " + HUGE_MESSAGE.format(
        dtype=dtype, size=size
    )
    with pytest.raises(DataError, match=match) as info:
        load_dataset(path)
    assert "\n" not in str(info.value)
    assert os.path.getsize(path) < 4000


def _patch_central_size(path: Path, member: str, size: int) -> None:
    """Overwrite the uncompressed size the zip's central directory records for ``member``."""
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        name_length = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46 : at + 46 + name_length].decode() == member:
            struct.pack_into("<I", data, at + 24, size)
            path.write_bytes(bytes(data))
            return
        at = data.find(b"PK\x01\x02", at + 4)
    raise AssertionError(f"no {member} in {path}")


@pytest.mark.parametrize(
    ("compression", "match"),
    [
        (zipfile.ZIP_STORED, r"the archive claims 2\.0 GiB for an uncompressed member of \d+ bytes"),
        (
            zipfile.ZIP_DEFLATED,
            r"the archive claims 2\.0 GiB uncompressed from \d+ bytes compressed, more than",
        ),
    ],
)
def test_npz_whose_zip_directory_lies_about_sizes(tmp_path: Path, compression: int, match: str) -> None:
    path = tmp_path / "lying.npz"
    with zipfile.ZipFile(path, "w", compression) as archive:
        archive.writestr("x.npy", _npy_bytes(np.zeros((6, 2))))
        archive.writestr("y.npy", _npy_bytes(np.arange(6) % 2))
    assert load_dataset(path, test_fraction=0.5).input_shape == (2,)
    _patch_central_size(path, "x.npy", 2**31)
    with pytest.raises(DataError, match=rf"^data\.source: array 'x' of '.*lying\.npz': {match}"):
        load_dataset(path)


def test_forged_and_truncated_npy_sources_and_labels(tmp_path: Path, no_array_read: None) -> None:
    (tmp_path / "forged.npy").write_bytes(_forged())
    assert (tmp_path / "forged.npy").stat().st_size == 600
    labels = tmp_path / "labels.npy"
    labels.write_bytes(_npy_bytes(np.arange(4) % 2))
    match = r"^data\.source: '.*forged\.npy': " + HUGE_MESSAGE.format(dtype="float64", size="32.0 TiB")
    with pytest.raises(DataError, match=match):
        load_dataset(tmp_path / "forged.npy", options={"labels": "labels.npy"}, base_dir=tmp_path)


def test_forged_npy_labels_truncated_and_garbage_npy(tmp_path: Path) -> None:
    labels = tmp_path / "labels.npy"
    images = tmp_path / "images.npy"
    images.write_bytes(_npy_bytes(np.zeros((4, 3, 3), dtype=np.float32)))
    labels.write_bytes(_forged(shape=(2**40,), descr="<i8"))
    with pytest.raises(DataError, match=r"^data\.options\.labels: '.*labels\.npy': the header declares"):
        load_dataset(images, options={"labels": "labels.npy"}, base_dir=tmp_path)
    whole = _npy_bytes(np.zeros((4, 3, 3), dtype=np.float32))
    images.write_bytes(whole[:-8])  # 8 bytes short
    with pytest.raises(
        DataError, match=r"declares an array of shape \(4, 3, 3\) .*\(144 bytes\) but only 136 bytes"
    ):
        load_dataset(images, options={"labels": "labels.npy"}, base_dir=tmp_path)
    images.write_bytes(b"\x93NUMPY\x01\x00\x10\x00{not a header}  \n")
    with pytest.raises(DataError, match=r"^data\.source: '.*images\.npy': not a valid \.npy array"):
        load_dataset(images, options={"labels": "labels.npy"}, base_dir=tmp_path)


def test_forged_header_check_leaves_genuine_files_alone(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    np.savez_compressed(tmp_path / "zipped.npz", x=x, y=np.arange(20) % 2)
    np.savez(tmp_path / "plain.npz", x=x, y=np.arange(20) % 2)
    big = np.zeros((3000, 2))  # compresses about 900-fold: inside deflate's bound
    np.savez_compressed(tmp_path / "zeros.npz", x=big, y=np.arange(3000) % 2)
    a = load_dataset(tmp_path / "zipped.npz", standardize=False)
    b = load_dataset(tmp_path / "plain.npz", standardize=False)
    assert a.fingerprint() == b.fingerprint()
    assert load_dataset(tmp_path / "zeros.npz").x_train.shape == (2400, 2)


@pytest.mark.parametrize(
    ("name", "shape", "classes"),
    [("iris", (4,), 3), ("wine", (13,), 3), ("breast_cancer", (30,), 2)],
)
def test_sklearn_tabular_builtins(name: str, shape: tuple[int, ...], classes: int) -> None:
    import sklearn.datasets

    from smoothflip.data.builtin import SKLEARN_TABULAR

    bunch = getattr(sklearn.datasets, SKLEARN_TABULAR[name])()
    ds = load_dataset(name, test_fraction=0.25, split_seed=3)
    assert ds.input_shape == shape
    assert ds.num_classes == classes
    assert len(ds.y_train) + len(ds.y_test) == len(bunch.target)
    assert set(ds.class_names) == {str(n) for n in bunch.target_names}
    # z-scored with training statistics; the test split is fixed by split_seed
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.std(axis=0), 1.0, atol=1e-3)
    again = load_dataset(name, test_fraction=0.25, split_seed=3)
    np.testing.assert_array_equal(again.y_test, ds.y_test)
    # class counts follow scikit-learn's labels
    counts = np.bincount(np.concatenate([ds.y_train, ds.y_test]), minlength=classes)
    assert sorted(counts.tolist()) == sorted(np.bincount(bunch.target).tolist())
    raw = load_dataset(name, test_fraction=0.25, split_seed=3, standardize=False)
    rows = {tuple(r) for r in np.round(bunch.data.astype(np.float32), 3)}
    assert {tuple(r) for r in np.round(raw.x_test, 3)} <= rows  # unscaled: scikit-learn's own rows
    with pytest.raises(ValueError, match=f"unknown key 'x' for '{name}'"):
        load_dataset(name, options={"x": 1})
