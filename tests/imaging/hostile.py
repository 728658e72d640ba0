"""Hostile files: each is small on disk and would, if trusted, crash a reader or exhaust memory.

Builders take a folder and return the path they wrote; `HOSTILE` lists (kind, builder, words
expected in the reason). Expensive bytes (the inflation bombs) are built once per process.
"""

from __future__ import annotations

import functools
import io
import os
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED = "1.2.840.10008.1.2.1.99"


def ct_dataset(
    rows: int = 64, columns: int = 64, frames: int = 1, syntax: str = EXPLICIT_LE, seed: int = 0
):  # noqa: ANN201 - pydicom FileDataset
    """A CT slice (or stack of frames) with the usual LUT elements, ready to save."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import UID, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(CT)
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = UID(syntax)
    dataset = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.SOPClassUID, dataset.SOPInstanceUID = CT, meta.MediaStorageSOPInstanceUID
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = generate_uid(), generate_uid()
    dataset.Modality = "CT"
    dataset.Rows, dataset.Columns = rows, columns
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 12, 11
    dataset.PixelRepresentation = 0
    dataset.RescaleSlope, dataset.RescaleIntercept = 1, -1024
    dataset.WindowCenter, dataset.WindowWidth = -600, 1500
    if frames > 1:
        dataset.NumberOfFrames = frames
    shape = (frames, rows, columns) if frames > 1 else (rows, columns)
    pixels = np.random.default_rng(seed).integers(0, 4000, size=shape, dtype=np.uint16)
    dataset.PixelData = pixels.tobytes()
    return dataset


def save_dicom(dataset, path: Path) -> Path:  # noqa: ANN001 - pydicom Dataset
    dataset.save_as(path, enforce_file_format=True)
    return path


def dicom_with(path: Path, keyword: str, raw: str) -> Path:
    """A CT slice whose `keyword` holds the raw text `raw` (patched into the bytes, unchecked)."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    raw_bytes = raw.encode("ascii")
    raw_bytes += b" " * (len(raw_bytes) % 2)
    placeholder = "9" * len(raw_bytes)
    dataset = ct_dataset()
    setattr(dataset, keyword, placeholder)
    save_dicom(dataset, path)
    tag, vr = tag_for_keyword(keyword), dictionary_VR(tag_for_keyword(keyword))
    head = struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), len(raw_bytes))
    data = path.read_bytes()
    assert data.count(head + placeholder.encode()) == 1
    path.write_bytes(data.replace(head + placeholder.encode(), head + raw_bytes))
    return path


def npy_claiming(path: Path, shape: tuple[int, ...], dtype: str = "|u1") -> Path:
    """An NPY header claiming `shape`, followed by a few bytes only."""
    buffer = io.BytesIO()
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    path.write_bytes(buffer.getvalue() + b"\x01" * 64)
    return path


def png_rows(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of width x height (all black), written chunk by chunk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\0" * (1 + (width + 7) // 8)
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(row * height, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def wide_png(path: Path) -> Path:
    path.write_bytes(png_rows(2_500_000, 16))
    return path


@functools.cache
def _npz_bomb_bytes() -> bytes:
    """An NPZ whose `images.npy` inflates to 1 GiB (16,384 x 256 x 256 uint8 zeros)."""
    buffer = io.BytesIO()
    block = bytes(1 << 20)
    header = {"descr": "|u1", "fortran_order": False, "shape": (16_384, 256, 256)}
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
        archive.open("images.npy", "w", force_zip64=True) as member,
    ):
        np.lib.format.write_array_header_1_0(member, header)
        for _ in range(1024):
            member.write(block)
    return buffer.getvalue()


def npz_bomb(path: Path) -> Path:
    path.write_bytes(_npz_bomb_bytes())
    return path


@functools.cache
def _deflated_dicom_bytes() -> bytes:
    """A deflated CT whose data set inflates to 300 MB (a PixelData element of zeros)."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info

    dataset = ct_dataset(512, 512, syntax=DEFLATED)
    dataset.NumberOfFrames = 600
    del dataset.PixelData
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, dataset)
    size = 600 * 512 * 512 * 2
    element = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, size)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [deflater.compress(body.getvalue() + element)]
    block = bytes(1 << 20)
    for _ in range(size >> 20):
        parts.append(deflater.compress(block))
    parts.append(deflater.flush())
    head = DicomBytesIO()
    head.is_little_endian, head.is_implicit_VR = True, False
    head.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(head, dataset.file_meta, enforce_standard=True)
    return head.getvalue() + b"".join(parts)


def deflated_dicom(path: Path) -> Path:
    path.write_bytes(_deflated_dicom_bytes())
    return path


def npz_of_many_members(path: Path, count: int = 20_000) -> Path:
    """An NPZ of `count` tiny members: listing them alone would cost memory and time."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for index in range(count):
            archive.writestr(f"m{index}.npy", b"")
    return path


def multiframe_claim(path: Path, frames: int, side: int = 64) -> Path:
    """A CT claiming `frames` frames of side x side, holding the pixels of one frame only."""
    dataset = ct_dataset(side, side)
    dataset.NumberOfFrames = frames
    return save_dicom(dataset, path)


def image_as(path: Path, fmt: str) -> Path:
    """A good-looking scan saved in format `fmt` under whatever name `path` has."""
    pixels = np.random.default_rng(1).integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def nested_folders(top: Path, depth: int) -> Path:
    """top/d/d/... `depth` levels deep, made one level at a time (mkdir(parents=True) recurses)."""
    top.mkdir(exist_ok=True)
    for _ in range(depth):
        top = top / "d"
        top.mkdir()
    return top


def remove_tree(top: Path) -> None:
    """rm -rf without recursion: pytest's own temp cleanup overflows the stack on deep nests."""
    pending: list[tuple[str, bool]] = [(str(top), False)]
    while pending:
        path, emptied = pending.pop()
        if emptied:
            os.rmdir(path)
            continue
        pending.append((path, True))
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    pending.append((entry.path, False))
                else:
                    os.unlink(entry.path)


# (kind, builder(folder) -> path, words expected in the reason)
HOSTILE: list[tuple[str, Callable[[Path], Path], str]] = [
    (
        "NPY header claiming 10^12 elements",
        lambda d: npy_claiming(d / "huge.npy", (1_000_000, 1_000_000)),
        "over the cap of",
    ),
    (
        "NPY header claiming more data than the file holds",
        lambda d: npy_claiming(d / "liar.npy", (200, 64, 64)),
        "header declares",
    ),
    (
        "NPY stack over the scans-per-file cap",
        lambda d: npy_claiming(d / "many.npy", (20_000, 64, 64)),
        "max_scans_per_file",
    ),
    ("PNG of 2,500,000 x 16 pixels", lambda d: wide_png(d / "wide.png"), "8:1"),
    (
        "DICOM NumberOfFrames 1A",
        lambda d: dicom_with(d / "frames.dcm", "NumberOfFrames", "1A"),
        "malformed NumberOfFrames",
    ),
    (
        "DICOM RescaleSlope ab",
        lambda d: dicom_with(d / "slope.dcm", "RescaleSlope", "ab"),
        "malformed RescaleSlope",
    ),
    (
        "DICOM WindowWidth 0",
        lambda d: dicom_with(d / "window.dcm", "WindowWidth", "0"),
        "malformed WindowWidth",
    ),
    ("NPZ inflating to 1 GiB", lambda d: npz_bomb(d / "bomb.npz"), "decoded-size limit"),
    ("NPZ of 20,000 members", lambda d: npz_of_many_members(d / "members.npz"), "members"),
    (
        "deflated DICOM inflating to 300 MB",
        lambda d: deflated_dicom(d / "deflated.dcm"),
        "decoded-size limit",
    ),
    (
        "multi-frame DICOM over the scans-per-file cap",
        lambda d: multiframe_claim(d / "frames20k.dcm", 20_000),
        "max_scans_per_file",
    ),
    (
        "multi-frame DICOM over the decoded-size limit",
        lambda d: multiframe_claim(d / "frames2k.dcm", 2_000, side=512),
        "decoded-size limit",
    ),
    ("TIFF named .png", lambda d: image_as(d / "tiff.png", "TIFF"), "content is not PNG"),
    ("BMP named .png", lambda d: image_as(d / "bmp.png", "BMP"), "content is not PNG"),
    ("GIF named .jpg", lambda d: image_as(d / "gif.jpg", "GIF"), "content is not JPEG"),
    ("PNG named .jpg", lambda d: image_as(d / "png.jpg", "PNG"), "content is not JPEG"),
]
