"""DICOM files -> canonical scans, through the modality and VOI LUTs.

Sizes are checked before the work: a deflated data set's inflated size (counted with a bounded
`zlib.decompressobj`) before pydicom inflates it, NumberOfFrames x Rows x Columns before the
pixel data is decoded, and each JPEG, JPEG-LS or JPEG 2000 frame's own size against Rows x
Columns (a decoder allocates what the codestream claims). Header values the LUTs use
(RescaleSlope, WindowWidth, ...) are checked and a malformed one refuses the file, naming the
element; nothing is repaired. Frames are converted one at a time. Compressed pixel data (JPEG
baseline, extended and lossless, JPEG-LS, JPEG 2000, RLE) is decoded by pydicom's plugins
(pylibjpeg with its libjpeg, openjpeg and rle decoders); a refusal says whether a plugin is
missing or the data is corrupt. Only `ScanError` leaves this module.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from imaging.canonical import (
    DEFAULT_MAX_DECODED_BYTES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_SCANS_PER_FILE,
    DecodedScan,
    ScanError,
    canonicalize,
    check_geometry,
)
from imaging.identity import DicomIdentity
from imaging.patient_modules import modules_json

log = logging.getLogger(__name__)
DEFLATED = "1.2.840.10008.1.2.1.99"
INFLATE_CHUNK = 1 << 20
MAX_UID_CHARS = 64
UID_GRAMMAR = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def looks_like_dicom(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(128)
        return handle.read(4) == b"DICM"


def read_dicom(
    path: Path,
    source: str,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_scans: int = DEFAULT_MAX_SCANS_PER_FILE,
    max_bytes: int = DEFAULT_MAX_DECODED_BYTES,
) -> list[DecodedScan]:
    """One scan per frame; the whole file is refused if any frame is."""
    _redact_pydicom()
    dataset = _read_dataset(path, source, max_bytes)
    return decode_dataset(dataset, source, max_pixels, max_scans, max_bytes)


def decode_dataset(
    dataset: Any,  # noqa: ANN401 - pydicom Dataset
    source: str,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_scans: int = DEFAULT_MAX_SCANS_PER_FILE,
    max_bytes: int = DEFAULT_MAX_DECODED_BYTES,
) -> list[DecodedScan]:
    """A parsed data set (a file's, or one received over the network) -> one scan per frame,
    each with the instance's DICOM identity; the whole instance is refused if any frame is."""
    _redact_pydicom()
    if not any(keyword in dataset for keyword in PIXEL_KEYWORDS):
        raise ScanError(source, "DICOM has no pixel data")
    frames = _check_size(dataset, source, max_pixels, max_scans, max_bytes)
    _check_frame_headers(dataset, source, frames)
    _check_lut_values(dataset, source)
    identity = dicom_identity(dataset, source)
    pixels = _pixel_array(dataset, source)
    inverted = _text(dataset, "PhotometricInterpretation", source).upper() == "MONOCHROME1"
    if frames > 1 and pixels.ndim >= 3 and pixels.shape[0] == frames:
        return [
            _frame(dataset, frame, f"{source}[{i}]", max_pixels, inverted, identity)
            for i, frame in enumerate(pixels)
        ]
    return [_frame(dataset, pixels, source, max_pixels, inverted, identity)]


def dicom_identity(dataset: Any, source: str) -> DicomIdentity:  # noqa: ANN401 - Dataset
    """Study, series and instance UIDs, accession, patient id, modality and position, and
    the patient and study modules as received.

    A malformed InstanceNumber or ImagePositionPatient, or a UID longer than 64 characters
    or outside the UID grammar, refuses the instance (naming the element, never its value);
    an absent one is None. Over-long texts are cut to the ledger's column sizes.
    """
    position = _numbers(dataset, "ImagePositionPatient", source)
    number = _integer(dataset, "InstanceNumber", source, default=-1)

    def text(keyword: str, size: int) -> str | None:
        return _text(dataset, keyword, source)[:size] or None

    return DicomIdentity(
        study_uid=_uid(dataset, "StudyInstanceUID", source),
        series_uid=_uid(dataset, "SeriesInstanceUID", source),
        sop_uid=_uid(dataset, "SOPInstanceUID", source),
        accession=text("AccessionNumber", 128),
        patient_id=text("PatientID", 128),
        modality=text("Modality", 16),
        instance_number=None if number == -1 else number,
        slice_position=position[2] if len(position) == 3 else None,
        patient_issuer=text("IssuerOfPatientID", 64),
        patient_name=text("PatientName", 256),
        study_date=text("StudyDate", 16),
        modules=modules_json(dataset, source),
    )


def _uid(dataset: Any, keyword: str, source: str) -> str | None:  # noqa: ANN401 - Dataset
    """A UID element's value (None when absent or empty); refused when over 64 characters or
    not digits in dot-separated components without leading zeros (PS3.5 9.1)."""
    value = _text(dataset, keyword, source)
    if not value:
        return None
    if len(value) > MAX_UID_CHARS:
        raise ScanError(source, f"malformed {keyword} (longer than {MAX_UID_CHARS} characters)")
    if not UID_GRAMMAR.fullmatch(value):
        raise ScanError(source, f"malformed {keyword} (not a UID: digits and dots)")
    return value


class _WithheldPydicomRecords(logging.Handler):
    """pydicom's log records, re-logged on our logger at DEBUG without their text, arguments
    or traceback: they quote header values (patient data), and a decoder plugin that fails
    before another succeeds logs an ERROR with a traceback that is no error of the input."""

    def emit(self, record: logging.LogRecord) -> None:
        log.debug("pydicom %s withheld (it may quote header values)", record.levelname.lower())


@functools.cache
def _redact_pydicom() -> None:
    """Once per process, for every thread: pydicom reads without validating values (its
    warnings quote them), its warnings are ignored, and its log records (its own logger and
    every child, which propagate to it) go to `_WithheldPydicomRecords` only. Nothing is
    saved and restored, so concurrent reads (the receiver's associations) cannot undo it."""
    from pydicom import config

    config.settings.reading_validation_mode = config.IGNORE
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
    pydicom_log = logging.getLogger("pydicom")
    pydicom_log.addHandler(_WithheldPydicomRecords())
    pydicom_log.propagate = False


def _frame(
    dataset: Any,  # noqa: ANN401 - pydicom Dataset
    pixels: np.ndarray,
    source: str,
    max_pixels: int,
    inverted: bool,
    identity: DicomIdentity,
) -> DecodedScan:
    values = _apply_dicom_luts(dataset, pixels, source)
    if inverted:
        values = 255 - values if values.dtype == np.uint8 else values.max() - values
    return DecodedScan(source, canonicalize(values, source, max_pixels), identity)


def _read_dataset(path: Path, source: str, max_bytes: int) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with path.open("rb") as handle:
            pydicom.filereader.read_preamble(handle, False)
            meta = pydicom.filereader._read_file_meta_info(handle)
            if str(meta.get("TransferSyntaxUID", "")) == DEFLATED:
                check_inflated_size(handle, source, max_bytes)
        return pydicom.dcmread(path)
    except ScanError:
        raise
    except InvalidDicomError:
        raise ScanError(source, "not a DICOM file (no DICM preamble)") from None
    except Exception as error:  # pydicom raises many types for corrupt files
        raise ScanError(source, f"corrupt DICOM file ({type(error).__name__})") from None


def check_inflated_size(handle: Any, source: str, max_bytes: int) -> None:  # noqa: ANN401
    """Inflate the deflated data set (read from `handle` on) into nothing, counting, and stop
    past `max_bytes`."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    while not inflater.eof:
        chunk = inflater.unconsumed_tail or handle.read(INFLATE_CHUNK)
        if not chunk:
            break
        try:
            total += len(inflater.decompress(chunk, INFLATE_CHUNK))
        except zlib.error:
            raise ScanError(source, "corrupt deflated DICOM (bad deflate stream)") from None
        if total > max_bytes:
            raise ScanError(
                source,
                f"deflated DICOM inflates past the decoded-size limit of {max_bytes} bytes "
                "(max_decoded_bytes); not inflated",
            )


def _check_size(dataset: Any, source: str, max_pixels: int, max_scans: int, max_bytes: int) -> int:
    """Frame count, checked with the frame size and byte count, before any pixel is decoded."""
    frames = _integer(dataset, "NumberOfFrames", source, default=1)
    rows = _integer(dataset, "Rows", source, default=0)
    columns = _integer(dataset, "Columns", source, default=0)
    if frames < 1:
        raise ScanError(source, f"malformed NumberOfFrames ({frames})")
    if rows * columns == 0:
        raise ScanError(source, "DICOM has no image size (Rows/Columns)")
    if frames > max_scans:
        raise ScanError(
            source,
            f"DICOM has {frames} frames, over the cap of {max_scans} scans per file "
            "(max_scans_per_file)",
        )
    check_geometry(rows, columns, source, max_pixels)
    samples = max(1, _integer(dataset, "SamplesPerPixel", source, default=1))
    bits = max(1, _integer(dataset, "BitsAllocated", source, default=16))
    size = frames * rows * columns * samples * math.ceil(bits / 8)
    if size > max_bytes:
        raise ScanError(
            source,
            f"DICOM pixel data would be {size} bytes ({frames} frames of {columns}x{rows}), "
            f"over the decoded-size limit of {max_bytes} bytes (max_decoded_bytes)",
        )
    return frames


JPEG_SYNTAXES = {f"1.2.840.10008.1.2.4.{n}" for n in (50, 51, 57, 70, 80, 81)}
J2K_SYNTAXES = {f"1.2.840.10008.1.2.4.{n}" for n in (90, 91, 201, 202, 203)}
JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}


def _check_frame_headers(dataset: Any, source: str, frames: int) -> None:
    """Each JPEG, JPEG-LS or JPEG 2000 frame's own size must be the header's Rows x Columns:
    a decoder allocates what the codestream claims, before pydicom compares the result with
    the header (the measured case is in RELIABILITY.md, "Figures")."""
    from pydicom.encaps import generate_frames

    try:
        syntax = str(dataset.file_meta.TransferSyntaxUID)
    except AttributeError:
        return
    if syntax not in JPEG_SYNTAXES | J2K_SYNTAXES or "PixelData" not in dataset:
        return
    expected = (_integer(dataset, "Rows", source, 0), _integer(dataset, "Columns", source, 0))
    read_size = _j2k_size if syntax in J2K_SYNTAXES else _jpeg_size
    try:
        for frame in generate_frames(dataset.PixelData, number_of_frames=frames):
            size = read_size(frame)
            if size != expected:
                found = "unreadable" if size is None else f"{size[1]}x{size[0]}"
                raise ScanError(
                    source,
                    f"compressed frame size ({found}) is not the header's "
                    f"{expected[1]}x{expected[0]}; not decoded",
                )
    except ScanError:
        raise
    except Exception as error:  # malformed encapsulation
        raise ScanError(
            source, f"compressed pixel data is corrupt ({type(error).__name__})"
        ) from None


def _jpeg_size(stream: bytes) -> tuple[int, int] | None:
    """(rows, columns) from a JPEG or JPEG-LS frame's SOF segment, or None."""
    if stream[:2] != b"\xff\xd8":
        return None
    offset = 2
    while offset + 9 <= len(stream):
        if stream[offset] != 0xFF:
            return None
        marker = stream[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker in JPEG_SOF:
            start = offset + 5
            return int.from_bytes(stream[start : start + 2]), int.from_bytes(
                stream[start + 2 : start + 4]
            )
        offset += 2 + int.from_bytes(stream[offset + 2 : offset + 4])
    return None


def _j2k_size(stream: bytes) -> tuple[int, int] | None:
    """(rows, columns) from a JPEG 2000 frame's SIZ segment (inside a JP2 wrapper too)."""
    offset = 0
    if stream[4:8] == b"jP  ":  # JP2 boxes: find the contiguous codestream box
        offset = 12
        while offset + 8 <= len(stream) and stream[offset + 4 : offset + 8] != b"jp2c":
            length = int.from_bytes(stream[offset : offset + 4])
            if length < 8:
                return None
            offset += length
        offset += 8
    siz = stream[offset : offset + 24]
    if len(siz) < 24 or siz[:4] != b"\xff\x4f\xff\x51":
        return None
    width = int.from_bytes(siz[8:12]) - int.from_bytes(siz[16:20])
    height = int.from_bytes(siz[12:16]) - int.from_bytes(siz[20:24])
    return height, width


def _check_lut_values(dataset: Any, source: str) -> None:
    """The values the modality and VOI LUTs use: numbers, finite, and a window of width >= 1."""
    for keyword in ("RescaleSlope", "RescaleIntercept", "WindowCenter"):
        _numbers(dataset, keyword, source)
    widths = _numbers(dataset, "WindowWidth", source)
    exact = _text(dataset, "VOILUTFunction", source).upper() in ("LINEAR_EXACT", "SIGMOID")
    for width in widths:
        if width <= 0 or (width < 1 and not exact):
            raise ScanError(source, f"malformed WindowWidth ({width:g}; it must be at least 1)")


def _pixel_array(dataset: Any, source: str) -> np.ndarray:
    try:
        return dataset.pixel_array
    except Exception as error:  # missing codec, truncated or corrupt pixel data, unknown syntax
        syntax = _compressed_syntax(dataset)
        if not syntax:
            reason = f"DICOM pixel data cannot be read ({type(error).__name__})"
        elif not _decoder_available(dataset):
            reason = (
                f"compressed DICOM ({syntax}) needs a decoder plugin that is not installed "
                "(pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg: the project's dependencies)"
            )
        else:
            reason = (
                f"compressed pixel data ({syntax}) is corrupt or not conformant: "
                f"no decoder could read it ({type(error).__name__})"
            )
        raise ScanError(source, reason) from None


def _compressed_syntax(dataset: Any) -> str:
    """The name of the data set's transfer syntax if it is a known compressed one, else ''."""
    try:
        syntax = dataset.file_meta.TransferSyntaxUID
        return str(syntax.name) if syntax.is_transfer_syntax and syntax.is_compressed else ""
    except Exception:  # no file meta, or a UID that is not a transfer syntax
        return ""


def _decoder_available(dataset: Any) -> bool:
    try:
        return can_decode(dataset.file_meta.TransferSyntaxUID)
    except Exception:  # no file meta
        return False


def can_decode(syntax: str) -> bool:
    """Whether an installed decoder reads pixel data in this transfer syntax (a receiver
    offers only those)."""
    from pydicom.pixels import get_decoder

    try:
        return bool(get_decoder(syntax).is_available)
    except Exception:  # a syntax pydicom has no decoder for at all
        return False


def _apply_dicom_luts(dataset: Any, pixels: np.ndarray, source: str) -> np.ndarray:
    """Rescale to modality units (HU for CT), then apply the stored VOI LUT or window.

    A window maps onto all 8 bits, as a viewer or a PNG export does (below it black, above it
    white), so the same slice gives the same canonical scan as DICOM and as an exported image;
    other values are min-max scaled later.
    """
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    if not _text(dataset, "PhotometricInterpretation", source).startswith("MONOCHROME"):
        return pixels
    try:
        windowed = "WindowCenter" in dataset and "WindowWidth" in dataset
        if windowed and not dataset.get("VOILUTSequence"):
            return _window(dataset, _rescaled(dataset, pixels, source), source)
        pixels = apply_modality_lut(pixels, dataset)
        if windowed:
            pixels = apply_voi_lut(pixels, dataset, index=0)
    except Exception as error:  # a LUT pydicom cannot apply (e.g. a malformed LUT sequence)
        raise ScanError(source, f"DICOM LUT cannot be applied ({type(error).__name__})") from None
    return np.asarray(pixels, dtype=np.float64) if pixels.dtype != np.uint8 else pixels


def _rescaled(dataset: Any, pixels: np.ndarray, source: str) -> np.ndarray:  # noqa: ANN401
    """Modality units in float32: the linear RescaleSlope/Intercept done here, in one pass
    (pydicom's `apply_modality_lut` works in float64); a Modality LUT Sequence goes to pydicom."""
    from pydicom.pixels import apply_modality_lut

    if "ModalityLUTSequence" in dataset:
        return np.asarray(apply_modality_lut(pixels, dataset), dtype=np.float32)
    slope = (_numbers(dataset, "RescaleSlope", source) or [1.0])[0]
    intercept = (_numbers(dataset, "RescaleIntercept", source) or [0.0])[0]
    values = pixels.astype(np.float32)
    if slope != 1.0:
        values *= np.float32(slope)
    if intercept != 0.0:
        values += np.float32(intercept)
    return values


def _window(dataset: Any, values: np.ndarray, source: str) -> np.ndarray:
    """The first stored window (PS3.3 C.11.2.1.2: LINEAR, LINEAR_EXACT, SIGMOID) onto 0..255;
    pydicom's `apply_windowing` computes the same, several times slower."""
    center = _numbers(dataset, "WindowCenter", source)[0]
    width = _numbers(dataset, "WindowWidth", source)[0]
    function = _text(dataset, "VOILUTFunction", source).upper() or "LINEAR"
    values = np.asarray(values, dtype=np.float32)
    if function == "SIGMOID":
        scaled = 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    elif function in ("LINEAR", "LINEAR_EXACT"):
        if function == "LINEAR":
            center, width = center - 0.5, width - 1
        if width <= 0:  # LINEAR of width 1: a threshold
            return np.where(values > center, 255, 0).astype(np.uint8)
        scaled = (values - center) / width + 0.5
    else:
        raise ScanError(source, f"unsupported VOILUTFunction ({function[:16]})")
    return np.rint(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8)


def _values(dataset: Any, keyword: str, source: str) -> list[Any]:
    """The element's values as a list (empty if absent or empty); unparsable values refuse."""
    if keyword not in dataset:
        return []
    try:
        value = dataset[keyword].value
        if value is None or (isinstance(value, str | bytes) and not value.strip()):
            return []
        return list(value) if isinstance(value, list | tuple) or _is_multi(value) else [value]
    except Exception:
        raise ScanError(source, f"malformed {keyword} (not a valid value)") from None


def _is_multi(value: Any) -> bool:
    from pydicom.multival import MultiValue

    return isinstance(value, MultiValue)


def _numbers(dataset: Any, keyword: str, source: str) -> list[float]:
    numbers = []
    for value in _values(dataset, keyword, source):
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise ScanError(source, f"malformed {keyword} (not a number)") from None
        if not math.isfinite(number):
            raise ScanError(source, f"malformed {keyword} (not finite)")
        numbers.append(number)
    return numbers


def _integer(dataset: Any, keyword: str, source: str, default: int) -> int:
    values = _values(dataset, keyword, source)
    if not values:
        return default
    if len(values) != 1:
        raise ScanError(source, f"malformed {keyword} (several values)")
    try:
        number = float(str(values[0]).strip()) if not isinstance(values[0], int) else values[0]
    except ValueError:
        raise ScanError(source, f"malformed {keyword} (not an integer)") from None
    if not (math.isfinite(number) and number == int(number)):
        raise ScanError(source, f"malformed {keyword} (not an integer)")
    return int(number)


def _text(dataset: Any, keyword: str, source: str) -> str:
    values = _values(dataset, keyword, source)
    return str(values[0]).strip() if values else ""
