"""DICOM files -> canonical scans, through the modality and VOI LUTs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imaging.canonical import DecodedScan, ScanError, canonicalize


def looks_like_dicom(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(128)
        return handle.read(4) == b"DICM"


def read_dicom(path: Path, source: str, max_pixels: int) -> list[DecodedScan]:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=False)
    except InvalidDicomError:
        raise ScanError(source, "not a DICOM file (no DICM preamble)") from None
    except Exception as error:  # pydicom raises many types for corrupt files
        raise ScanError(source, f"corrupt DICOM file ({type(error).__name__})") from None
    if "PixelData" not in dataset and "FloatPixelData" not in dataset:
        raise ScanError(source, "DICOM has no pixel data")
    rows, columns = int(dataset.get("Rows", 0)), int(dataset.get("Columns", 0))
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if rows * columns == 0:
        raise ScanError(source, "DICOM has no image size (Rows/Columns)")
    if rows * columns > max_pixels:
        raise ScanError(source, f"DICOM is {columns}x{rows} pixels, over the cap of {max_pixels}")
    try:
        pixels = dataset.pixel_array
    except Exception as error:  # missing codec, truncated pixel data
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
        if syntax is not None and syntax.is_compressed:
            raise ScanError(
                source,
                f"compressed DICOM ({syntax.name}) cannot be decoded here; send it uncompressed",
            ) from None
        raise ScanError(
            source, f"DICOM pixel data cannot be read ({type(error).__name__})"
        ) from None
    pixels = _apply_dicom_luts(dataset, pixels)
    if str(dataset.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        pixels = pixels.max() - pixels
    if frames > 1 and pixels.ndim >= 3 and pixels.shape[0] == frames:
        return [
            DecodedScan(f"{source}[{i}]", canonicalize(frame, f"{source}[{i}]", max_pixels))
            for i, frame in enumerate(pixels)
        ]
    return [DecodedScan(source, canonicalize(pixels, source, max_pixels))]


def _apply_dicom_luts(dataset, pixels: np.ndarray) -> np.ndarray:  # noqa: ANN001 - pydicom Dataset
    """Rescale to modality units (HU for CT), then apply the stored window if there is one."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    if str(dataset.get("PhotometricInterpretation", "")).startswith("MONOCHROME"):
        pixels = apply_modality_lut(pixels, dataset)
        if "WindowCenter" in dataset and "WindowWidth" in dataset:
            pixels = apply_voi_lut(pixels, dataset, index=0)
    return np.asarray(pixels, dtype=np.float64) if pixels.dtype != np.uint8 else pixels
