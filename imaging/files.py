"""Files -> canonical scans: PNG, JPEG, NPY, NPZ and DICOM, each refusal a `ScanError`.

The contract: `read_scan_file` returns canonical scans or raises `ScanError`, whatever the bytes.
Limits are checked before the work they guard: the file's size before it is read, an image's
size and aspect ratio from its header before it is decoded, an array's shape, dtype and byte
count from its `.npy` header before it is allocated, a compressed member or data set's inflated
size before it is inflated, and the number of scans a file holds. Each decoder runs only on the
format its suffix names. Any other exception is a bug, reported as the file's refusal
("internal error while reading (TypeName)") and logged by type only (no path, no pixels).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from imaging.arrays import ArrayHeader, load_npy, npz_images
from imaging.canonical import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_SCANS_PER_FILE,
    DecodedScan,
    ScanError,
    canonicalize,
    canonicalize_stack,
    check_array_shape,
    check_dtype,
    check_geometry,
)
from imaging.dicom import looks_like_dicom, read_dicom

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
ARRAY_SUFFIXES = {".npy", ".npz"}
DICOM_SUFFIXES = {".dcm", ".dicom"}
SCAN_SUFFIXES = IMAGE_SUFFIXES | ARRAY_SUFFIXES | DICOM_SUFFIXES
DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024
DECODED_BYTES_PER_FILE_BYTE = 4  # default max_decoded_bytes = 4 x max_file_bytes

logger = logging.getLogger(__name__)


def read_scan_file(
    path: str | os.PathLike[str],
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_scans_per_file: int = DEFAULT_MAX_SCANS_PER_FILE,
    max_decoded_bytes: int | None = None,
) -> list[DecodedScan]:
    """Decode a PNG, JPEG, NPY, NPZ or DICOM file into canonical scans (a stack gives many).

    `max_decoded_bytes` bounds what a file may decode or inflate to (default 4 x
    `max_file_bytes`). Raises `ScanError` and nothing else.
    """
    source = str(path)
    if max_decoded_bytes is None:
        max_decoded_bytes = DECODED_BYTES_PER_FILE_BYTE * max_file_bytes
    try:
        path = Path(path)
        _check_file(path, source, max_file_bytes)
        return _decode(path, source, max_pixels, max_scans_per_file, max_decoded_bytes)
    except ScanError:
        raise
    except PermissionError:
        raise ScanError(source, "permission denied") from None
    except OSError as error:
        raise ScanError(source, f"cannot read file ({error.strerror or error})") from None
    except Exception as error:  # a bug: the file is refused, the call goes on
        name = type(error).__name__
        logger.error("internal error while reading a scan file (%s)", name)
        raise ScanError(source, f"internal error while reading ({name})") from None


def _check_file(path: Path, source: str, max_file_bytes: int) -> None:
    try:
        size = path.stat().st_size
    except OSError as error:
        raise ScanError(source, f"cannot read file ({error.strerror or error})") from None
    if not path.is_file():
        raise ScanError(source, "not a regular file")
    if size == 0:
        raise ScanError(source, "file is empty (0 bytes)")
    if size > max_file_bytes:
        raise ScanError(source, f"file is {size} bytes, over the cap of {max_file_bytes}")
    with path.open(
        "rb"
    ):  # unreadable (permission): refused as such by the caller, whatever the format
        pass


def _decode(
    path: Path, source: str, max_pixels: int, max_scans: int, max_bytes: int
) -> list[DecodedScan]:
    suffix = path.suffix.lower()

    def check(header: ArrayHeader) -> None:
        check_dtype(header.dtype, source)
        check_array_shape(header.shape, source, max_pixels, max_scans)

    if suffix in IMAGE_SUFFIXES:
        return [DecodedScan(source, _read_image(path, source, max_pixels, IMAGE_FORMATS[suffix]))]
    if suffix == ".npy":
        array = load_npy(path, source, check, max_bytes)
        return canonicalize_stack(array, source, max_pixels, max_scans)
    if suffix == ".npz":
        array = npz_images(path, source, check, max_bytes)
        return canonicalize_stack(array, source, max_pixels, max_scans)
    if suffix in DICOM_SUFFIXES or looks_like_dicom(path):
        return read_dicom(path, source, max_pixels, max_scans, max_bytes)
    raise ScanError(
        source, f"unsupported file type {suffix or '(no suffix)'}; use PNG, JPEG, NPY, NPZ or DICOM"
    )


def _read_image(path: Path, source: str, max_pixels: int, kind: str) -> np.ndarray:
    """Only the decoder `kind` (PNG or JPEG) runs; the header's size is checked before decoding."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path, formats=[kind]) as img:
            width, height = img.size
            check_geometry(height, width, source, max_pixels)
            if getattr(img, "n_frames", 1) > 1:
                raise ScanError(source, f"image has {img.n_frames} frames; send one scan per file")
            img.load()
            return canonicalize(_pil_to_array(img), source, max_pixels)
    except ScanError:
        raise
    except UnidentifiedImageError:
        raise ScanError(
            source, f"not a readable {kind} image (content is not {kind}, or it is corrupt)"
        ) from None
    except Image.DecompressionBombError as error:
        raise ScanError(source, f"image refused as a decompression bomb ({error})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ScanError(source, f"corrupt or truncated image ({error})") from None


def _pil_to_array(img) -> np.ndarray:  # noqa: ANN001 - PIL.Image.Image
    if img.mode in ("L", "I;16", "I;16B", "I;16L", "I", "F"):
        return np.asarray(img)
    if img.mode == "1":
        return np.asarray(img.convert("L"))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        return np.asarray(img.convert("RGBA"))
    return np.asarray(img.convert("RGB"))
