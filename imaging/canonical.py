"""The canonical scan: any accepted image array becomes a 64x64 uint8 grayscale scan.

Trainer and worker both call these functions, so a scan is prepared the same way for training
and for serving (files are decoded into arrays by `imaging.files` and `imaging.dicom`). The canonical form is what the database stores (4,096 bytes a scan);
`to_model_input` turns a stack of them into the float tensor the model eats.

Rules (stated once, tested in tests/imaging):
- grayscale is enforced: RGB is converted by luminance (ITU-R 601-2), RGBA and LA are
  composited on black first, palette images are expanded;
- intensities: uint8 (and integers within 0..255) are kept; floats within [0, 1] are scaled by
  255; anything else (16-bit, Hounsfield units, other float ranges) is min-max scaled per image;
- geometry: padded to square with black, centred, then resized to 64x64 with Lanczos
  (the preparation of the reference lung-CT data set; an image over 3x the target is first
  box-reduced to no less than 3x it, Pillow's `reducing_gap`: its cost and error are in
  BENCHMARKS.md, "Receive stage");
- refused with `ScanError`: empty, smaller than 16 pixels a side, uniform (every pixel equal),
  NaN or infinite values, non-numeric dtypes, wrong number of
  dimensions, images over `max_pixels` or longer than 8:1 (both checked from the header, before
  decoding, and again here before padding), files over `max_file_bytes`, files holding more than
  `max_scans_per_file` scans, zero-byte files, corrupt or truncated files, DICOM without pixel
  data, with malformed header values, or in a compressed transfer syntax that cannot be decoded.

Every reader in `imaging` raises only `ScanError`, whatever the bytes (see `imaging.files`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imaging.identity import DicomIdentity

SCAN_SIZE = 64
MIN_SIDE = 16  # smaller images hold too little to be a scan
LANCZOS_REDUCING_GAP = 3.0
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_SCANS_PER_FILE = 10_000
DEFAULT_MAX_DECODED_BYTES = 256 * 1024 * 1024  # what one file may decode or inflate to
GRAY_BLOCK_PIXELS = 1 << 20  # rows converted to grey at a time (bounds float copies)
MAX_ASPECT = 8  # longer side / shorter side; beyond it a scan is refused, never padded


class ScanError(ValueError):
    """A scan that cannot be used, naming the input and the reason."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


@dataclass(frozen=True)
class DecodedScan:
    """One canonical scan and where it came from (`file.npy[3]` for a scan inside a stack),
    with its DICOM identity when it came as DICOM."""

    source: str
    pixels: np.ndarray  # (64, 64) uint8
    identity: DicomIdentity | None = None


def to_model_input(scans: np.ndarray) -> np.ndarray:
    """Canonical uint8 scans (N, 64, 64) -> float32 (N, 64, 64, 1) in [0, 1]."""
    scans = np.asarray(scans)
    if scans.ndim == 2:
        scans = scans[None]
    if scans.shape[1:] != (SCAN_SIZE, SCAN_SIZE) or scans.dtype != np.uint8:
        raise ValueError(
            f"model input must be uint8 scans of shape (N, {SCAN_SIZE}, {SCAN_SIZE}), "
            f"got {scans.dtype} {scans.shape}"
        )
    return (scans.astype(np.float32) / 255.0)[..., None]


def check_geometry(height: int, width: int, source: str, max_pixels: int) -> None:
    """Refuse an image size (from a header or an array) before any pixel is touched."""
    if height <= 0 or width <= 0:
        raise ScanError(source, f"image is empty ({width}x{height} pixels)")
    if height * width > max_pixels:
        raise ScanError(
            source, f"image has {height * width} pixels, over the cap of {max_pixels} (max_pixels)"
        )
    if min(height, width) < MIN_SIDE:
        raise ScanError(source, f"image is {width}x{height} pixels, below {MIN_SIDE} a side")
    if max(height, width) > MAX_ASPECT * min(height, width):
        raise ScanError(
            source,
            f"image is {width}x{height} pixels, longer than {MAX_ASPECT}:1 (aspect ratio cap)",
        )


def stack_layout(shape: tuple[int, ...], source: str) -> tuple[int, int, int] | None:
    """(count, height, width) of a stack shape, or None for one image (H, W[, C])."""
    if len(shape) == 2 or (len(shape) == 3 and shape[-1] in (3, 4) and shape[0] > 4):
        return None
    if not (len(shape) == 3 or (len(shape) == 4 and shape[-1] in (1, 3, 4))):
        raise ScanError(
            source, f"expected an image (H, W) or a stack (N, H, W), got shape {tuple(shape)}"
        )
    return shape[0], shape[1], shape[2]


def check_array_shape(
    shape: tuple[int, ...],
    source: str,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_scans: int | None = DEFAULT_MAX_SCANS_PER_FILE,
) -> None:
    """Refuse an array (one image or a stack) from its shape alone, before it is loaded."""
    layout = stack_layout(shape, source)
    if layout is None:
        check_geometry(shape[0], shape[1], source, max_pixels)
        return
    count, height, width = layout
    if count == 0:
        raise ScanError(source, "the stack holds no images")
    if max_scans is not None and count > max_scans:
        raise ScanError(
            source, f"holds {count} scans, over the cap of {max_scans} (max_scans_per_file)"
        )
    check_geometry(height, width, source, max_pixels)


def check_dtype(dtype: np.dtype, source: str) -> None:
    """Refuse dtypes that are not pixel data (objects, text, records, complex)."""
    if dtype.hasobject:
        raise ScanError(source, "array holds Python objects (pickled data is refused)")
    if not (np.issubdtype(dtype, np.number) or dtype.kind == "b"):
        raise ScanError(source, f"dtype {dtype} is not numeric pixel data")
    if np.issubdtype(dtype, np.complexfloating):
        raise ScanError(source, "complex values are not pixel data")


def canonicalize(
    image: np.ndarray, source: str, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """One image array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) -> (64, 64) uint8."""
    image = np.asarray(image)
    if image.dtype == object:
        raise ScanError(source, f"dtype {image.dtype} is not numeric pixel data")
    check_dtype(image.dtype, source)
    colour = image.ndim == 3 and image.shape[-1] in (1, 3, 4)
    if image.ndim != 2 and not colour:
        raise ScanError(source, f"expected a 2-D grayscale image, got shape {image.shape}")
    check_geometry(image.shape[0], image.shape[1], source, max_pixels)
    if colour:
        image = _to_gray(image, source)
    gray = _to_uint8(image, source)
    if gray.min() == gray.max():
        raise ScanError(source, "image is uniform (every pixel equal): no scan content")
    if gray.shape == (SCAN_SIZE, SCAN_SIZE):
        return gray
    return _pad_and_resize(gray)


def canonicalize_stack(
    images: np.ndarray,
    source: str,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_scans: int | None = None,
) -> list[DecodedScan]:
    """An array holding one image or a stack (N, H, W[, C]) -> one DecodedScan per image."""
    images = np.asarray(images)
    if images.ndim in (2, 3, 4):
        check_array_shape(images.shape, source, max_pixels, max_scans)
    if stack_layout(images.shape, source) is None:
        return [DecodedScan(source, canonicalize(images, source, max_pixels))]
    if (
        images.dtype == np.uint8
        and images.shape[1:3] == (SCAN_SIZE, SCAN_SIZE)
        and images.ndim == 3
    ):
        flat = images.reshape(len(images), -1)
        uniform = np.flatnonzero(flat.min(axis=1) == flat.max(axis=1))
        if len(uniform):
            raise ScanError(
                f"{source}[{uniform[0]}]", "image is uniform (every pixel equal): no scan content"
            )
        return [DecodedScan(f"{source}[{i}]", image) for i, image in enumerate(images)]
    return [
        DecodedScan(f"{source}[{i}]", canonicalize(image, f"{source}[{i}]", max_pixels))
        for i, image in enumerate(images)
    ]


# -- helpers -------------------------------------------------------------------------------


def _to_gray(image: np.ndarray, source: str) -> np.ndarray:
    """Luminance (ITU-R 601-2), in blocks of rows so that float copies stay small."""
    channels = image.shape[-1]
    if channels == 1:
        return image[..., 0]
    scale = 1.0
    if channels == 4:
        scale = 255.0 if image.dtype == np.uint8 or float(image[..., 3].max()) > 1 else 1.0
    gray = np.empty(image.shape[:2], dtype=np.float64)
    step = max(1, GRAY_BLOCK_PIXELS // max(1, image.shape[1]))
    for top in range(0, image.shape[0], step):
        gray[top : top + step] = _gray_block(image[top : top + step], scale)
    if image.dtype != np.uint8:
        return gray
    np.rint(gray, out=gray)
    np.clip(gray, 0, 255, out=gray)
    return gray.astype(np.uint8)


def _gray_block(block: np.ndarray, scale: float) -> np.ndarray:
    values = block.astype(np.float64)
    if block.shape[-1] == 4:  # composite on black: colour times alpha
        values = values[..., :3] * (values[..., 3:4] / scale)
    return values[..., 0] * 0.299 + values[..., 1] * 0.587 + values[..., 2] * 0.114


def _to_uint8(image: np.ndarray, source: str) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == bool:
        return image.astype(np.uint8) * 255
    values = image.astype(np.float64)  # a copy: the arithmetic below is in place
    if not np.isfinite(values).all():
        raise ScanError(source, "image holds NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if np.issubdtype(image.dtype, np.floating) and low >= 0.0 and high <= 1.0:
        values *= 255.0
    elif np.issubdtype(image.dtype, np.integer) and low >= 0 and high <= 255:
        pass
    elif high > low:
        values -= low
        values *= 255.0 / (high - low)
    else:
        values[...] = 0.0
    np.rint(values, out=values)
    np.clip(values, 0, 255, out=values)
    return values.astype(np.uint8)


def _pad_and_resize(gray: np.ndarray) -> np.ndarray:
    from PIL import Image

    height, width = gray.shape
    side = max(height, width)
    square = np.zeros((side, side), dtype=np.uint8)
    top, left = (side - height) // 2, (side - width) // 2
    square[top : top + height, left : left + width] = gray
    # reducing_gap: a large image is first box-reduced to at least 3x the target, then
    # Lanczos-resampled: much cheaper on a CT slice, for a fraction of a grey level
    resized = Image.fromarray(square, mode="L").resize(
        (SCAN_SIZE, SCAN_SIZE), Image.Resampling.LANCZOS, reducing_gap=LANCZOS_REDUCING_GAP
    )
    return np.asarray(resized, dtype=np.uint8)
