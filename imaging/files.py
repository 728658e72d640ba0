"""Files -> canonical scans: PNG, JPEG, NPY, NPZ and DICOM, each refusal a `ScanError`.

The file's size is checked before it is read, and an image's size from its header before it
is decoded.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from imaging.arrays import load_npy, npz_images
from imaging.canonical import (
    DEFAULT_MAX_PIXELS,
    DecodedScan,
    ScanError,
    canonicalize,
    canonicalize_stack,
)
from imaging.dicom import looks_like_dicom, read_dicom

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
ARRAY_SUFFIXES = {".npy", ".npz"}
DICOM_SUFFIXES = {".dcm", ".dicom"}
SCAN_SUFFIXES = IMAGE_SUFFIXES | ARRAY_SUFFIXES | DICOM_SUFFIXES
DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024


def read_scan_file(
    path: str | os.PathLike[str],
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[DecodedScan]:
    """Decode a PNG, JPEG, NPY, NPZ or DICOM file into canonical scans (a stack gives many)."""
    path = Path(path)
    source = str(path)
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
    suffix = path.suffix.lower()
    try:
        if suffix in IMAGE_SUFFIXES:
            return [DecodedScan(source, _read_image(path, source, max_pixels))]
        if suffix == ".npy":
            return canonicalize_stack(load_npy(path, source), source, max_pixels)
        if suffix == ".npz":
            return canonicalize_stack(npz_images(path, source), source, max_pixels)
        if suffix in DICOM_SUFFIXES or looks_like_dicom(path):
            return read_dicom(path, source, max_pixels)
    except ScanError:
        raise
    except PermissionError:
        raise ScanError(source, "permission denied") from None
    except OSError as error:
        raise ScanError(source, f"cannot read file ({error})") from None
    raise ScanError(
        source, f"unsupported file type {suffix or '(no suffix)'}; use PNG, JPEG, NPY, NPZ or DICOM"
    )


def _read_image(path: Path, source: str, max_pixels: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise ScanError(
                    source,
                    f"image is {width}x{height} pixels, over the cap of {max_pixels} (not decoded)",
                )
            if getattr(img, "n_frames", 1) > 1:
                raise ScanError(source, f"image has {img.n_frames} frames; send one scan per file")
            img.load()
            return canonicalize(_pil_to_array(img), source, max_pixels)
    except ScanError:
        raise
    except UnidentifiedImageError:
        raise ScanError(
            source, "not a readable PNG or JPEG image (unknown or corrupt format)"
        ) from None
    except Image.DecompressionBombError as error:
        raise ScanError(source, f"image refused as a decompression bomb ({error})") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ScanError(source, f"corrupt or truncated image ({error})") from None


def _pil_to_array(img) -> np.ndarray:  # noqa: ANN001 - PIL.Image.Image
    if img.mode in ("L", "I;16", "I;16B", "I;16L", "I", "F"):
        return np.asarray(img)
    if img.mode == "1":
        return np.asarray(img.convert("L"))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        return np.asarray(img.convert("RGBA"))
    return np.asarray(img.convert("RGB"))
