"""NPY and NPZ files -> numpy arrays, never unpickling; errors name the file and the reason.

Intake (`imaging.files`) and the trainer's data sets (`trainer.data`) both read arrays here.
Every array's `.npy` header is read first (`np.lib.format.read_magic` and
`read_array_header_*`), and the shape, dtype and byte count it declares are checked before a
byte of data is allocated; an NPZ member's uncompressed size is checked before it is inflated.
Only `ScanError` leaves this module.
"""

from __future__ import annotations

import lzma
import math
import struct
import tokenize
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from imaging.canonical import ScanError

NPY_MAX_HEADER_BYTES = 10_000  # numpy's own default for untrusted files
MAX_NPZ_MEMBERS = 1_000  # checked from the end-of-directory record, before zipfile lists them
# what a malformed NPY or ZIP can make numpy and zipfile raise
_BAD_DATA = (
    ValueError,
    OSError,
    EOFError,
    SyntaxError,
    TypeError,
    OverflowError,
    NotImplementedError,
    RuntimeError,
    tokenize.TokenError,  # an NPY header with unbalanced brackets (numpy's tokenizer)
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
)


@dataclass(frozen=True)
class ArrayHeader:
    """What an `.npy` header declares."""

    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int  # bytes before the data

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


HeaderCheck = Callable[[ArrayHeader], None]


def read_header(stream: IO[bytes], source: str, kind: str) -> ArrayHeader:
    """The header of the `.npy` data at the start of `stream` (left just after the header)."""
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(stream, NPY_MAX_HEADER_BYTES)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(stream, NPY_MAX_HEADER_BYTES)
        else:
            raise ScanError(source, f"not a valid {kind} file (NPY version {version} not read)")
        return ArrayHeader(tuple(int(side) for side in shape), np.dtype(dtype), stream.tell())
    except ScanError:
        raise
    except _BAD_DATA as error:
        raise ScanError(source, f"not a valid {kind} file ({_describe(error)})") from None


def load_npy(
    path: Path, source: str, check: HeaderCheck | None = None, max_bytes: int | None = None
) -> np.ndarray:
    """The array of an NPY file, its header checked (by `check` too) before the data is read."""
    return _read_checked(
        lambda: path.open("rb"), path.stat().st_size, source, "NPY", check, max_bytes
    )


def load_npz(path: Path, source: str, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """Every `.npy` array of an NPZ file, by name (without `.npy`), each header checked first."""
    with _open_zip(path, source) as archive:
        members = _npy_members(archive)
        return {
            name: _read_member(archive, info, source, None, max_bytes)
            for name, info in members.items()
        }


def npz_images(
    path: Path, source: str, check: HeaderCheck | None = None, max_bytes: int | None = None
) -> np.ndarray:
    """The `images` array of an NPZ (or its only array); no other member is inflated."""
    with _open_zip(path, source) as archive:
        members = _npy_members(archive)
        if "images" in members:
            info = members["images"]
        elif len(members) == 1:
            info = next(iter(members.values()))
        else:
            raise ScanError(source, f"NPZ has no `images` array (found: {_some(members)})")
        return _read_member(archive, info, source, check, max_bytes)


def _check_header(
    header: ArrayHeader,
    available: int,
    source: str,
    kind: str,
    check: HeaderCheck | None,
    max_bytes: int | None,
) -> None:
    if header.dtype.hasobject:
        raise ScanError(source, f"{kind} holds Python objects (pickled data is refused)")
    if check is not None:
        check(header)
    if max_bytes is not None and header.nbytes > max_bytes:
        raise ScanError(
            source,
            f"{kind} array is {header.nbytes} bytes, over the decoded-size limit of "
            f"{max_bytes} bytes (max_decoded_bytes)",
        )
    if header.nbytes > available:
        raise ScanError(
            source,
            f"not a valid {kind} file (header declares {header.nbytes} bytes of data, "
            f"the file holds {max(available, 0)})",
        )


def _open_zip(path: Path, source: str) -> zipfile.ZipFile:
    """The archive, after its members are counted from the central directory itself (the
    end record's count can lie) against the cap; at most MAX_NPZ_MEMBERS + 1 entries are read."""
    try:
        with path.open("rb") as handle:
            end = zipfile._EndRecData(handle)  # what ZipFile itself reads first
            if end is None:
                raise zipfile.BadZipFile("no end-of-directory record")
            members = _count_directory_entries(handle, end, MAX_NPZ_MEMBERS + 1)
        if members > MAX_NPZ_MEMBERS:
            raise ScanError(source, f"NPZ has over {MAX_NPZ_MEMBERS} members, the cap (not listed)")
        return zipfile.ZipFile(path)
    except ScanError:
        raise
    except _BAD_DATA as error:
        raise ScanError(source, f"not a valid NPZ file ({_describe(error)})") from None


def _count_directory_entries(handle: IO[bytes], end: list, limit: int) -> int:
    """Entries in the central directory the end record points to, counted up to `limit`,
    one fixed-size header at a time (names, extras and comments are skipped, not read)."""
    size, offset = int(end[zipfile._ECD_SIZE]), int(end[zipfile._ECD_OFFSET])
    start = int(end[zipfile._ECD_LOCATION]) - size  # where ZipFile finds it (prepended data)
    if end[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:
        start -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator
    if start < 0 or offset < 0:
        raise zipfile.BadZipFile("central directory outside the file")
    handle.seek(start)
    count, read = 0, 0
    while read < size and count < limit:
        header = handle.read(zipfile.sizeCentralDir)
        if len(header) < zipfile.sizeCentralDir or header[:4] != zipfile.stringCentralDir:
            break
        fields = struct.unpack(zipfile.structCentralDir, header)
        skip = (
            fields[zipfile._CD_FILENAME_LENGTH]
            + fields[zipfile._CD_EXTRA_FIELD_LENGTH]
            + fields[zipfile._CD_COMMENT_LENGTH]
        )
        handle.seek(skip, 1)
        read += zipfile.sizeCentralDir + skip
        count += 1
    return count


def _some(names: Iterable[str], shown: int = 5, chars: int = 40) -> str:
    """A few of these names, each cut short, and how many more: a refusal stays short."""
    names = list(names)
    listed = ", ".join(name[:chars] for name in names[:shown]) or "nothing"
    return listed if len(names) <= shown else f"{listed} and {len(names) - shown} more"


def _npy_members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    return {
        info.filename[: -len(".npy")]: info
        for info in archive.infolist()
        if info.filename.endswith(".npy")
    }


def _read_member(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    source: str,
    check: HeaderCheck | None,
    max_bytes: int | None,
) -> np.ndarray:
    """One member: its recorded size, then its header, are checked before it is inflated."""
    name = info.filename
    if max_bytes is not None and info.file_size > max_bytes:
        raise ScanError(
            source,
            f"NPZ member {name} inflates to {info.file_size} bytes, over the decoded-size "
            f"limit of {max_bytes} bytes (max_decoded_bytes)",
        )
    return _read_checked(
        lambda: archive.open(info), info.file_size, source, "NPZ", check, max_bytes
    )


def _read_checked(
    open_stream: Callable[[], Any],  # a binary file or zip member
    size: int,
    source: str,
    kind: str,
    check: HeaderCheck | None,
    max_bytes: int | None,
) -> np.ndarray:
    """An `.npy` stream of `size` bytes: header read and checked, then the array."""
    try:
        with open_stream() as stream:
            header = read_header(stream, source, kind)
            _check_header(header, size - header.offset, source, kind, check, max_bytes)
            stream.seek(0)
            return np.lib.format.read_array(stream, allow_pickle=False)
    except ScanError:
        raise
    except _BAD_DATA as error:
        raise ScanError(source, f"not a valid {kind} file ({_describe(error)})") from None


def _describe(error: BaseException) -> str:
    text = str(error).splitlines()[0][:200] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
