"""Reading ``.npy`` arrays (alone or inside an ``.npz``) without trusting their headers.

A ``.npy`` header declares the array's dtype and shape, and NumPy allocates the whole array before
it reads the data. A forged header (a 600-byte file claiming shape ``(2**40, 4)``) would make it
allocate terabytes. Every user array is therefore checked first: the header is read with
:func:`numpy.lib.format.read_magic` and ``read_array_header_1_0`` / ``_2_0``, and the bytes it
declares must fit in the bytes that follow it — the file's size for a ``.npy``, the member's
uncompressed size for an ``.npz`` member, whose own claim is bounded by its compressed size
(deflate expands at most 1032-fold; numpy writes members stored or deflated, nothing else is
read). Object arrays are left to ``numpy.load(allow_pickle=False)``, which refuses them.

Example:
    >>> import io
    >>> import numpy as np
    >>> buffer = io.BytesIO()
    >>> np.lib.format.write_array_header_2_0(buffer, {"descr": "<f8", "fortran_order": False,
    ...                                               "shape": (2**40, 4)})
    >>> _ = buffer.write(b"\\0" * 64)
    >>> size = buffer.tell()
    >>> _ = buffer.seek(0)
    >>> check_npy_header(buffer, available=size, where="'forged.npy'")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    smoothflip.errors.DataError: 'forged.npy': the header declares an array of shape (1099511627776, 4) ...
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np

from smoothflip.data._common import one_line
from smoothflip.errors import DataError

__all__ = ["check_npy_header", "check_npz_members", "read_npy"]

#: The most a deflate stream can expand (bytes out per byte in), plus slack for tiny members.
_DEFLATE_RATIO = 1032
_DEFLATE_SLACK = 1024


def check_npy_header(fp: IO[bytes], *, available: int, where: str) -> tuple[tuple[int, ...], np.dtype]:
    """Read a ``.npy`` header from ``fp`` and check that the array it declares fits the data.

    Args:
        fp: a binary stream positioned at the start of the ``.npy`` data; left after the header.
        available: bytes of ``.npy`` data in the stream, header included.
        where: how messages name the array, e.g. ``"data.source: '/data/x.npy'"``.

    Returns:
        ``(shape, dtype)`` as declared.

    Raises:
        DataError: not a ``.npy`` header, a format version other than 1.0 / 2.0, or a declared
            size larger than the data present (one line naming ``where``).
    """
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise DataError(
                f"{where}: .npy format version {version[0]}.{version[1]} is not supported (1.0 and 2.0 are)"
            )
    except DataError:
        raise
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as exc:
        raise DataError(f"{where}: not a valid .npy array: {one_line(exc)}") from None
    if dtype.hasobject:
        return shape, dtype  # numpy.load(allow_pickle=False) refuses it without reading further
    declared = math.prod(shape) * dtype.itemsize
    present = max(available - fp.tell(), 0)
    if declared > present:
        raise DataError(
            f"{where}: the header declares an array of shape {shape} and dtype {dtype} "
            f"({_bytes(declared)}) but only {_bytes(present)} of data follow it; the file is truncated "
            f"or forged"
        )
    return shape, dtype


def read_npy(path: Path, *, key: str) -> np.ndarray:
    """Load a ``.npy`` file after checking its header against its size (never unpickling).

    Raises:
        DataError: a bad or forged header, an object array, or a file NumPy cannot read.
    """
    where = f"{key}: '{path}'"
    try:
        with open(path, "rb") as fp:
            check_npy_header(fp, available=path.stat().st_size, where=where)
        return np.load(path, allow_pickle=False)
    except DataError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError(
                f"{where} holds an object array; smoothflip never unpickles user files — save a numeric "
                f"or string array"
            ) from None
        raise DataError(f"{where}: cannot read it as .npy: {one_line(exc)}") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{where}: cannot read it as .npy: {one_line(exc)}") from None


def check_npz_members(path: Path, names: list[str], *, key: str) -> None:
    """Check the header of each ``.npz`` member ``names`` (without ``.npy``) before NumPy reads it.

    Raises:
        DataError: a member stored with an unexpected compression, claiming more uncompressed bytes
            than its compressed size allows, or whose header declares more than the member holds.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            for name in names:
                info = _member(archive, name)
                where = f"{key}: array {name!r} of '{path}'"
                _check_member_size(info, where=where)
                with archive.open(info) as fp:
                    check_npy_header(fp, available=info.file_size, where=where)
    except DataError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, NotImplementedError) as exc:
        raise DataError(f"{key}: cannot read '{path}' as .npz: {one_line(exc)}") from None


def _member(archive: zipfile.ZipFile, name: str) -> zipfile.ZipInfo:
    for candidate in (f"{name}.npy", name):
        try:
            return archive.getinfo(candidate)
        except KeyError:
            continue
    raise DataError(f"no member {name!r} in the archive")  # numpy listed it, so this does not happen


def _check_member_size(info: zipfile.ZipInfo, *, where: str) -> None:
    if info.compress_type == zipfile.ZIP_STORED:
        if info.file_size != info.compress_size:
            raise DataError(
                f"{where}: the archive claims {_bytes(info.file_size)} for an uncompressed member of "
                f"{_bytes(info.compress_size)}; the file is corrupt or forged"
            )
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        if info.file_size > _DEFLATE_RATIO * info.compress_size + _DEFLATE_SLACK:
            raise DataError(
                f"{where}: the archive claims {_bytes(info.file_size)} uncompressed from "
                f"{_bytes(info.compress_size)} compressed, more than deflate can expand; the file is "
                f"corrupt or forged"
            )
    else:
        raise DataError(
            f"{where}: compressed with zip method {info.compress_type}; smoothflip reads archives "
            f"written by numpy.savez or numpy.savez_compressed (stored or deflate)"
        )


def _bytes(n: Any) -> str:
    n = int(n)
    if n < 1024:
        return f"{n} bytes"
    value = float(n)
    units = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    for unit in units:
        value /= 1024
        if value < 1024 or unit == units[-1]:
            break
    return f"{value:.1f} {unit}"
