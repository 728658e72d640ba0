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
  (the preparation of the reference lung-CT data set);
- refused with `ScanError`: empty, smaller than 16 pixels a side, uniform (every pixel equal),
  NaN or infinite values, non-numeric dtypes, wrong number of
  dimensions, images over `max_pixels` (checked from the header, before decoding), files over
  `max_file_bytes`, zero-byte files, corrupt or truncated files, DICOM without pixel data or in
  a compressed transfer syntax that cannot be decoded here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCAN_SIZE = 64
MIN_SIDE = 16  # smaller images hold too little to be a scan
DEFAULT_MAX_PIXELS = 40_000_000


class ScanError(ValueError):
    """A scan that cannot be used, naming the input and the reason."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


@dataclass(frozen=True)
class DecodedScan:
    """One canonical scan and where it came from (`file.npy[3]` for a scan inside a stack)."""

    source: str
    pixels: np.ndarray  # (64, 64) uint8


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


def canonicalize(
    image: np.ndarray, source: str, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """One image array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) -> (64, 64) uint8."""
    image = np.asarray(image)
    if image.dtype == object or not (np.issubdtype(image.dtype, np.number) or image.dtype == bool):
        raise ScanError(source, f"dtype {image.dtype} is not numeric pixel data")
    if np.issubdtype(image.dtype, np.complexfloating):
        raise ScanError(source, "complex values are not pixel data")
    if image.ndim == 3 and image.shape[-1] in (1, 3, 4):
        image = _to_gray(image, source)
    if image.ndim != 2:
        raise ScanError(source, f"expected a 2-D grayscale image, got shape {image.shape}")
    if image.size == 0:
        raise ScanError(source, f"image is empty (shape {image.shape})")
    if image.size > max_pixels:
        raise ScanError(source, f"image has {image.size} pixels, over the cap of {max_pixels}")
    if min(image.shape) < MIN_SIDE:
        raise ScanError(
            source, f"image is {image.shape[1]}x{image.shape[0]} pixels, below {MIN_SIDE} a side"
        )
    gray = _to_uint8(image, source)
    if gray.min() == gray.max():
        raise ScanError(source, "image is uniform (every pixel equal): no scan content")
    if gray.shape == (SCAN_SIZE, SCAN_SIZE):
        return gray
    return _pad_and_resize(gray)


def canonicalize_stack(
    images: np.ndarray, source: str, max_pixels: int = DEFAULT_MAX_PIXELS
) -> list[DecodedScan]:
    """An array holding one image or a stack (N, H, W[, C]) -> one DecodedScan per image."""
    images = np.asarray(images)
    if images.ndim == 2 or (
        images.ndim == 3 and images.shape[-1] in (3, 4) and images.shape[0] > 4
    ):
        return [DecodedScan(source, canonicalize(images, source, max_pixels))]
    if images.ndim == 4 and images.shape[-1] in (1, 3, 4):
        pass
    elif images.ndim != 3:
        raise ScanError(
            source, f"expected an image (H, W) or a stack (N, H, W), got shape {images.shape}"
        )
    if len(images) == 0:
        raise ScanError(source, "the stack holds no images")
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
    channels = image.shape[-1]
    if channels == 1:
        return image[..., 0]
    values = image.astype(np.float64)
    if channels == 4:  # composite on black: colour times alpha
        alpha = values[..., 3:4]
        scale = 255.0 if image.dtype == np.uint8 or values[..., 3].max() > 1 else 1.0
        values = values[..., :3] * (alpha / scale)
    gray = values[..., 0] * 0.299 + values[..., 1] * 0.587 + values[..., 2] * 0.114
    return (
        gray.astype(np.float64)
        if image.dtype != np.uint8
        else np.clip(np.rint(gray), 0, 255).astype(np.uint8)
    )


def _to_uint8(image: np.ndarray, source: str) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == bool:
        return image.astype(np.uint8) * 255
    values = image.astype(np.float64)
    if not np.isfinite(values).all():
        raise ScanError(source, "image holds NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if np.issubdtype(image.dtype, np.floating) and low >= 0.0 and high <= 1.0:
        values = values * 255.0
    elif np.issubdtype(image.dtype, np.integer) and low >= 0 and high <= 255:
        pass
    elif high > low:
        values = (values - low) * (255.0 / (high - low))
    else:
        values = np.zeros_like(values)
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _pad_and_resize(gray: np.ndarray) -> np.ndarray:
    from PIL import Image

    height, width = gray.shape
    side = max(height, width)
    square = np.zeros((side, side), dtype=np.uint8)
    top, left = (side - height) // 2, (side - width) // 2
    square[top : top + height, left : left + width] = gray
    resized = Image.fromarray(square, mode="L").resize(
        (SCAN_SIZE, SCAN_SIZE), Image.Resampling.LANCZOS
    )
    return np.asarray(resized, dtype=np.uint8)
