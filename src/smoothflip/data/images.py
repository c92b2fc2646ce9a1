"""Image data sources: folders of image files (one folder per class) and image arrays.

**Folders** (``source = "DIR"``), the layout of torchvision's ``ImageFolder``:

- ``DIR/<class>/*.png``: one folder per class, class names = folder names in sorted order (kept as
  ``class_names``); images may sit in subfolders of their class folder. The test split is drawn
  stratified by ``test_fraction`` / ``split_seed``, or is ``test_source``, a second folder of the
  same layout and classes.
- ``DIR/train/<class>/...`` and ``DIR/test/<class>/...``: the two folders are the splits; they
  must hold the same class folders (and nothing else may sit beside them).

Files are decoded with Pillow (never a hand-written decoder); hidden files and folders (a leading
``.``) and files whose extension is not in ``extensions`` are skipped. Each image becomes
``[C, H, W]`` float32 in ``[0, 1]`` (8-bit images ÷ 255, 16-bit grayscale ÷ 65535): ``C = 1`` for
grayscale, 2 with alpha, 3 for colour, 4 with alpha. Options (``[data.options]``, unknown keys
refused, see :data:`FOLDER_OPTIONS`):

- ``resize = [H, W]``: every image is resized to ``H × W`` (Pillow, bilinear). Without it all
  images must have the same size.
- ``grayscale = true | false``: convert every image to grayscale (``C = 1``) or to RGB
  (``C = 3``), dropping alpha; by default the files' mode is kept (``L``, ``LA``, ``RGB`` or
  ``RGBA``) when all files share it, and every image is converted to RGB when they are mixed.
- ``extensions``: the file extensions read (:data:`IMAGE_EXTENSIONS` by default).

Pillow's decompression-bomb guard (``PIL.Image.MAX_IMAGE_PIXELS``) applies: an image with more
pixels is refused before it is decoded.

**Arrays** (``.npy`` and ``.npz`` sources, :mod:`smoothflip.data.files`): ``[N, H, W]`` (grayscale)
and ``[N, H, W, C]`` with ``C`` in 1..4 (channels last; a 4-D array is read this way whenever its
last dimension is 1..4) are stored channels first, ``[N, C, H, W]``; ``[N, C, H, W]`` with ``C``
in 1..4 and a wider last dimension is already channels first and kept (an ``.npz`` with the option
``layout = "as_saved"`` keeps every array as saved). Arrays keep their values (uint8 stays 0..255).
A ``.npy`` holds only images; its labels are the ``.npy`` named by the ``labels`` option.

**Standardization.** With ``standardize = true`` (the default of ``load_dataset``) every image
source is z-scored channel by channel with the *training* split's mean and std (all pixels of a
channel pooled; a constant channel is only centred) — the per-channel normalization image
classifiers use, in the spirit of the per-feature z-scoring of tabular data. With
``standardize = false`` folders keep ``[0, 1]`` and arrays their own values.

Example:
    >>> import tempfile
    >>> from smoothflip.data import load_dataset
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     _ = write_digit_images(folder, per_class=8, test_per_class=2, size=12)
    ...     ds = load_dataset(folder, standardize=False)
    >>> ds.x_train.shape, ds.x_test.shape, ds.class_names[:3]
    ((80, 1, 12, 12), (20, 1, 12, 12), ('0', '1', '2'))
"""

from __future__ import annotations

import os
import struct
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from smoothflip.data._common import Dataset, check_options, finish, one_line
from smoothflip.errors import DataError

__all__ = [
    "FOLDER_OPTIONS",
    "IMAGE_EXTENSIONS",
    "image_array_layout",
    "load_image_folder",
    "to_channels_first",
    "write_digit_images",
]

#: File extensions an image folder is read for by default (compared lower-case).
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
    ".pbm",
)

#: Options of an image-folder source, with their defaults (``None``: see the module docstring).
FOLDER_OPTIONS: Mapping[str, Any] = MappingProxyType(
    {"resize": None, "grayscale": None, "extensions": IMAGE_EXTENSIONS}
)

_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
# What Pillow raises for a file it cannot read, besides its decompression-bomb error and warning
# (the warning is raised as an error while reading).
_READ_ERRORS = (OSError, SyntaxError, ValueError, EOFError, TypeError, IndexError, KeyError, struct.error)
_CHANNELS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}


# --------------------------------------------------------------------------------------------------
# image arrays
# --------------------------------------------------------------------------------------------------


def image_array_layout(shape: Sequence[int]) -> str | None:
    """How an array of examples ``shape`` holds images: ``"NHW"``, ``"NHWC"``, ``"NCHW"`` or ``None``.

    ``[N, H, W]`` is grayscale; a 4-D array is channels last when its last dimension is 1..4,
    else channels first when its second is; anything else (tabular ``[N, d]``, 5-D, ...) is not
    an image array.

    Example:
        >>> image_array_layout((10, 28, 28)), image_array_layout((10, 32, 32, 3))
        ('NHW', 'NHWC')
        >>> [image_array_layout(s) for s in [(10, 3, 32, 32), (10, 40), (2, 9, 9, 9)]]
        ['NCHW', None, None]
    """
    if len(shape) == 3:
        return "NHW"
    if len(shape) == 4:
        if 1 <= shape[3] <= 4:
            return "NHWC"
        if 1 <= shape[1] <= 4:
            return "NCHW"
    return None


def to_channels_first(x: np.ndarray, layout: str) -> np.ndarray:
    """``x`` in ``layout`` (see :func:`image_array_layout`) as ``[N, C, H, W]`` (a view where possible).

    Example:
        >>> to_channels_first(np.zeros((5, 8, 6, 3)), "NHWC").shape
        (5, 3, 8, 6)
    """
    if layout == "NHW":
        return x[:, None]
    if layout == "NHWC":
        return np.moveaxis(x, 3, 1)
    if layout == "NCHW":
        return x
    raise ValueError(f"layout must be 'NHW', 'NHWC' or 'NCHW', got {layout!r}")


# --------------------------------------------------------------------------------------------------
# folders
# --------------------------------------------------------------------------------------------------


def load_image_folder(
    path: str | os.PathLike[str],
    *,
    test_path: str | os.PathLike[str] | None = None,
    options: Mapping[str, Any] | None = None,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    standardize: bool = True,
) -> Dataset:
    """Load a folder of class folders (or of ``train/`` and ``test/`` splits) as a :class:`Dataset`.

    Prefer :func:`smoothflip.data.load_dataset`, which resolves relative paths and checks
    ``test_fraction`` and ``split_seed``.

    Args:
        path: the folder (see the module docstring for the layouts).
        test_path: a second folder of class folders holding the test images.
        options: ``resize``, ``grayscale``, ``extensions`` (:data:`FOLDER_OPTIONS`).
        test_fraction: held-out share when the test split is drawn, in ``(0, 1)``.
        split_seed: seed of the stratified split.
        standardize: z-score each channel with the training split's mean and std.

    Returns:
        The dataset, named after the folder: ``x`` ``[N, C, H, W]`` float32, labels the class
        folders' indices in sorted order, ``class_names`` the folder names.

    Raises:
        DataError: (one line, naming the path) fewer than 2 class folders, an empty class folder,
            a file Pillow cannot read, an image over the decompression-bomb limit, images of
            different sizes without ``resize``, train/test (or source/test_source) folders with
            different classes, a bad option value.
    """
    root = Path(path)
    resize, grayscale, extensions = _folder_options(options, source=root.name)
    splits = _split_folders(root)
    if splits is not None:
        if test_path is not None:
            raise DataError(
                f"data.test_source: '{root}' already holds train/ and test/ split folders; "
                f"drop test_source or the split folders"
            )
        train_root, test_root = splits
    else:
        train_root, test_root = root, Path(test_path) if test_path is not None else None
    train = _scan(train_root, extensions, key="data.source")
    test = None
    if test_root is not None:
        test = _scan(test_root, extensions, key="data.test_source" if splits is None else "data.source")
        _check_same_classes(train_root, train, test_root, test)
    files = [f for _, f in train] + ([f for _, f in test] if test is not None else [])
    mode, size = _probe_all(files, root=root, grayscale=grayscale, resize=resize)
    x = _decode_all([f for _, f in train], mode=mode, size=size)
    y = np.array([c for c, _ in train], dtype=str)
    x_test = y_test = test_what = None
    if test is not None:
        x_test = _decode_all([f for _, f in test], mode=mode, size=size)
        y_test = np.array([c for c, _ in test], dtype=str)
        test_what = f"'{test_root}'"
    return finish(
        name=root.name or str(root),
        x=x,
        y=y,
        x_test=x_test,
        y_test=y_test,
        test_fraction=test_fraction,
        split_seed=split_seed,
        standardize=standardize,
        what=f"'{train_root}'",
        test_what=test_what,
        per_channel=True,
    )


def _folder_options(
    options: Mapping[str, Any] | None, *, source: str
) -> tuple[tuple[int, int] | None, bool | None, tuple[str, ...]]:
    opts = {**FOLDER_OPTIONS, **check_options(options, tuple(FOLDER_OPTIONS), source=source)}
    resize = opts["resize"]
    if resize is not None:
        if (
            isinstance(resize, (str, bytes))
            or not isinstance(resize, Sequence)
            or len(resize) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in resize)
        ):
            raise DataError(
                f"data.options.resize must be [height, width], two positive integers, got {resize!r}"
            )
        resize = (int(resize[0]), int(resize[1]))
    grayscale = opts["grayscale"]
    if grayscale is not None and not isinstance(grayscale, bool):
        raise DataError(f"data.options.grayscale must be true or false, got {grayscale!r}")
    extensions = opts["extensions"]
    if (
        isinstance(extensions, (str, bytes))
        or not isinstance(extensions, Sequence)
        or not extensions
        or not all(isinstance(e, str) and e.strip(". ") for e in extensions)
    ):
        raise DataError(
            f"data.options.extensions must be a non-empty list of file extensions such as "
            f"['.png', '.jpg'], got {extensions!r}"
        )
    normalized = tuple("." + e.strip().lstrip(".").lower() for e in extensions)
    return resize, grayscale, normalized


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _split_folders(root: Path) -> tuple[Path, Path] | None:
    names = {p.name: p for p in _subfolders(root)}
    if "train" not in names or "test" not in names:
        return None
    others = sorted(set(names) - {"train", "test"})
    if others:
        listed = ", ".join(repr(n) for n in others)
        raise DataError(
            f"data.source: '{root}' holds train/ and test/ split folders and also {listed}; keep only "
            f"train/ and test/, each with one folder per class"
        )
    return names["train"], names["test"]


def _scan(folder: Path, extensions: tuple[str, ...], *, key: str) -> list[tuple[str, Path]]:
    """``(class name, file)`` of every image under ``folder``'s class folders, sorted."""
    classes = _subfolders(folder)
    if len(classes) < 2:
        found = f"only {classes[0].name!r}" if classes else "none"
        hint = ""
        if classes and classes[0].name in ("train", "test"):
            hint = " (split folders need both train/ and test/)"
        elif any(p.is_file() and p.suffix.lower() in extensions for p in folder.iterdir()):
            hint = " (it holds image files directly; put each class's images in a folder of its own)"
        raise DataError(
            f"{key}: '{folder}' needs at least 2 class folders (one folder of images per class), "
            f"found {found}{hint}"
        )
    out: list[tuple[str, Path]] = []
    for class_dir in classes:
        files = sorted(
            p
            for p in class_dir.rglob("*")
            if p.suffix.lower() in extensions
            and not any(part.startswith(".") for part in p.relative_to(class_dir).parts)
            and p.is_file()
        )
        if not files:
            raise DataError(
                f"{key}: class folder '{class_dir}' holds no image files "
                f"(extensions: {', '.join(extensions)})"
            )
        out.extend((class_dir.name, f) for f in files)
    return out


def _check_same_classes(
    train_root: Path, train: list[tuple[str, Path]], test_root: Path, test: list[tuple[str, Path]]
) -> None:
    a = {c for c, _ in train}
    b = {c for c, _ in test}
    if a != b:
        parts = []
        if a - b:
            parts.append(f"only in '{train_root}': {', '.join(repr(c) for c in sorted(a - b))}")
        if b - a:
            parts.append(f"only in '{test_root}': {', '.join(repr(c) for c in sorted(b - a))}")
        raise DataError(
            f"data: '{train_root}' and '{test_root}' must hold the same class folders; " + "; ".join(parts)
        )


def _read_error(path: Path, exc: BaseException) -> DataError:
    from PIL import Image, UnidentifiedImageError

    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return DataError(
            f"data: image file '{path}' has more pixels than Pillow's decompression-bomb limit "
            f"(PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS}); refusing to decode it"
        )
    if isinstance(exc, UnidentifiedImageError):
        return DataError(f"data: '{path}' is not an image file Pillow can read")
    return DataError(f"data: cannot read image file '{path}': {one_line(exc)}")


def _family(img: Any, path: Path) -> str:
    """The mode an image keeps by default: ``L``, ``LA``, ``RGB`` or ``RGBA``."""
    mode = img.mode
    if mode in ("1", "L", *_SIXTEEN_BIT):
        return "L"
    if mode in ("LA", "La"):
        return "LA"
    if mode in ("RGBA", "RGBa", "PA") or (mode == "P" and "transparency" in img.info):
        return "RGBA"
    if mode in ("I", "F"):
        raise DataError(
            f"data: image file '{path}' has 32-bit {'integer' if mode == 'I' else 'float'} pixels "
            f"(mode {mode!r}); save 8- or 16-bit images"
        )
    return "RGB"


def _probe_all(
    files: list[Path], *, root: Path, grayscale: bool | None, resize: tuple[int, int] | None
) -> tuple[str, tuple[int, int]]:
    """The common mode and ``(H, W)`` of all images, from their headers (nothing is decoded)."""
    from PIL import Image

    families: set[str] = set()
    sizes: dict[tuple[int, int], Path] = {}
    for path in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as img:
                    families.add(_family(img, path))
                    sizes.setdefault((img.height, img.width), path)
        except DataError:
            raise
        except (*_READ_ERRORS, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _read_error(path, exc) from None
    if grayscale is not None:
        mode = "L" if grayscale else "RGB"
    else:
        mode = families.pop() if len(families) == 1 else "RGB"
    if resize is not None:
        return mode, resize
    if len(sizes) > 1:
        (s1, f1), (s2, f2) = list(sizes.items())[:2]
        raise DataError(
            f"data.source: the images in '{root}' have different sizes: '{_rel(f1, root)}' is "
            f"{s1[0]}x{s1[1]} but '{_rel(f2, root)}' is {s2[0]}x{s2[1]} (height x width); "
            f"give data.options.resize = [height, width]"
        )
    return mode, next(iter(sizes))


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _decode_all(files: list[Path], *, mode: str, size: tuple[int, int]) -> np.ndarray:
    """``[N, C, H, W]`` float32 in ``[0, 1]`` of ``files`` converted to ``mode`` and ``size``."""
    from PIL import Image

    height, width = size
    out = np.empty((len(files), _CHANNELS[mode], height, width), dtype=np.float32)
    for i, path in enumerate(files):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as img:
                    out[i] = _decode(img, mode=mode, size=size).transpose(2, 0, 1)
        except (*_READ_ERRORS, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _read_error(path, exc) from None
    return out


def _decode(img: Any, *, mode: str, size: tuple[int, int]) -> np.ndarray:
    """One image as ``[H, W, C]`` float32 in ``[0, 1]``."""
    from PIL import Image

    height, width = size
    if img.mode in _SIXTEEN_BIT:  # keep the 16 bits: resize in float, scale by 65535
        plane = img.convert("F")
        if plane.size != (width, height):
            plane = plane.resize((width, height), Image.Resampling.BILINEAR)
        gray = np.asarray(plane, dtype=np.float32) / 65535.0
        channels = [gray] * (3 if mode in ("RGB", "RGBA") else 1)
        if mode in ("LA", "RGBA"):
            channels.append(np.ones_like(gray))
        return np.stack(channels, axis=-1)
    converted = img if img.mode == mode else img.convert(mode)
    if converted.size != (width, height):
        converted = converted.resize((width, height), Image.Resampling.BILINEAR)
    pixels = np.asarray(converted, dtype=np.uint8).astype(np.float32) / 255.0
    return pixels[..., None] if pixels.ndim == 2 else pixels


# --------------------------------------------------------------------------------------------------
# a demo image set
# --------------------------------------------------------------------------------------------------


def write_digit_images(
    directory: str | os.PathLike[str],
    *,
    per_class: int = 30,
    test_per_class: int = 10,
    size: int = 16,
    shift: int = 2,
    seed: int = 0,
    split: bool = True,
) -> Path:
    """Write scikit-learn's 8x8 digits as PNG files in class-folder layout: a small image set, offline.

    Each image is one digit (values 0..16) scaled to 0..255, upscaled to ``size × size`` (Pillow,
    bilinear) and shifted by a random ``(dy, dx)`` in ``[-shift, shift]`` (zero fill), saved as an
    8-bit grayscale PNG. The digits are drawn per class without replacement, the test images from
    other digits than the training images. The same arguments write the same bytes.

    Args:
        directory: where to write; created if missing, refused if it holds anything.
        per_class: training images per class (``split``) or images per class (no split).
        test_per_class: test images per class (``split`` only).
        size: height and width of the images, ``>= 8``.
        shift: largest shift in pixels, ``>= 0``.
        seed: seed of the digit choice and the shifts.
        split: write ``train/<digit>/`` and ``test/<digit>/``; else ``<digit>/`` only.

    Returns:
        ``directory`` as a :class:`~pathlib.Path`, holding ``0`` .. ``9`` class folders (under
        ``train/`` and ``test/`` with ``split``) of files ``0000.png``, ``0001.png``, ...

    Raises:
        ValueError: a bad argument, more images per class than scikit-learn has (at least 174),
            or a ``directory`` that is not empty.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     root = write_digit_images(folder, per_class=3, test_per_class=1, size=10)
        ...     sorted(p.name for p in (root / "train" / "7").iterdir())
        ['0000.png', '0001.png', '0002.png']
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    from smoothflip._validation import check_int

    per_class = check_int("per_class", per_class, low=1)
    test_per_class = check_int("test_per_class", test_per_class, low=1 if split else 0)
    size = check_int("size", size, low=8)
    shift = check_int("shift", shift, low=0, high=size - 1)
    seed = check_int("seed", seed, low=0)
    if not isinstance(split, bool):
        raise TypeError(f"split must be True or False, got {split!r}")
    root = Path(directory)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ValueError(f"directory '{root}' must be a new or empty folder")
    digits = load_digits()
    images, labels = digits.images, digits.target
    needed = per_class + (test_per_class if split else 0)
    fewest = int(np.bincount(labels).min())
    if needed > fewest:
        raise ValueError(
            f"per_class + test_per_class must be <= {fewest} (the digits of the rarest class), got {needed}"
        )
    rng = np.random.default_rng(seed)
    for digit in range(10):
        chosen = rng.permutation(np.flatnonzero(labels == digit))[:needed]
        parts = [("train", chosen[:per_class]), ("test", chosen[per_class:])] if split else [("", chosen)]
        for part, indices in parts:
            folder = (root / part / str(digit)) if part else root / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            for i, index in enumerate(indices):
                small = Image.fromarray(np.round(images[index] * (255 / 16)).astype(np.uint8))
                big = np.asarray(small.resize((size, size), Image.Resampling.BILINEAR))
                dy, dx = rng.integers(-shift, shift + 1, size=2)
                moved = np.zeros_like(big)
                moved[max(dy, 0) : size + min(dy, 0), max(dx, 0) : size + min(dx, 0)] = big[
                    max(-dy, 0) : size - max(dy, 0), max(-dx, 0) : size - max(dx, 0)
                ]
                Image.fromarray(moved).save(folder / f"{i:04d}.png")
    return root
