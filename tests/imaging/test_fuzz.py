"""Property: whatever the bytes, `read_scan_file` returns canonical scans or raises `ScanError`.

Each valid seed must itself read into canonical scans (else its mutations test nothing), and
random bytes, which hold no valid file, must be refused with a `ScanError`.

Valid PNG, JPEG, NPY, NPZ and DICOM files are mutated (byte flips, truncation, insertion,
overwritten runs, and for NPY/DICOM the header region in particular) and read back. Any other
exception escaping the readers is reported by `read_scan_file` as "internal error while
reading", which fails the property. Examples are derandomized and the database is off, so a run
is repeatable and leaves nothing behind; any crasher found is saved under
tests/imaging/crashers/ and read again by tests/imaging/test_files.py.
"""

from __future__ import annotations

import functools
import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from imaging.canonical import SCAN_SIZE, DecodedScan, ScanError
from imaging.files import read_scan_file
from tests.imaging.hostile import DEFLATED, ct_dataset

FUZZ = settings(
    max_examples=100,
    deadline=2000,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
rng = np.random.default_rng(11)


def _image_bytes(fmt: str, mode: str = "L") -> bytes:
    pixels = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format=fmt)
    return buffer.getvalue()


def _png16_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 4000, (30, 40)).astype(np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue()


def _npy_bytes() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, rng.integers(0, 4000, (2, 20, 24)).astype(np.int16))
    return buffer.getvalue()


def _npz_bytes(compressed: bool = True) -> bytes:
    buffer = io.BytesIO()
    save = np.savez_compressed if compressed else np.savez
    save(buffer, images=rng.integers(0, 256, (2, 20, 24), dtype=np.uint8), labels=np.arange(2))
    return buffer.getvalue()


def _dicom_bytes(syntax: str | None = None) -> bytes:
    buffer = io.BytesIO()
    dataset = ct_dataset(20, 24, frames=2, syntax=syntax) if syntax else ct_dataset(20, 24)
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@functools.cache
def seeds() -> dict[str, tuple[str, bytes]]:
    """name -> (suffix, valid bytes)."""
    return {
        "png": (".png", _image_bytes("PNG")),
        "png-rgba": (".png", _image_bytes("PNG", "RGBA")),
        "png-palette": (".png", _image_bytes("PNG", "P")),
        "png-16bit": (".png", _png16_bytes()),
        "jpeg": (".jpg", _image_bytes("JPEG")),
        "npy": (".npy", _npy_bytes()),
        "npz": (".npz", _npz_bytes()),
        "npz-stored": (".npz", _npz_bytes(compressed=False)),
        "dicom": (".dcm", _dicom_bytes()),
        "dicom-deflated": (".dcm", _dicom_bytes(DEFLATED)),
    }


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` after 1-4 random edits; edits favour the first 400 bytes (the headers)."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        if not out:
            break
        limit = len(out) - 1 if draw(st.booleans()) else min(len(out) - 1, 400)
        at = draw(st.integers(0, limit))
        edit = draw(st.sampled_from(["flip", "truncate", "insert", "overwrite"]))
        if edit == "flip":
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif edit == "truncate":
            del out[at:]
        elif edit == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            run = draw(st.sampled_from([b"\x00", b"\xff", b"\x7f", b"9"]))
            out[at : at + 4] = run * 4
    return bytes(out)


def read_fuzzed(suffix: str, data: bytes) -> list[DecodedScan] | ScanError:
    """What `read_scan_file` makes of `data` saved under `suffix`: its scans, or its refusal."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzzed{suffix}"
        path.write_bytes(data)
        try:
            return read_scan_file(path)
        except ScanError as error:
            return error


def assert_canonical(scans: list[DecodedScan]) -> None:
    assert scans, "read without a scan and without an error"
    for scan in scans:
        assert scan.pixels.shape == (SCAN_SIZE, SCAN_SIZE) and scan.pixels.dtype == np.uint8


def check_contract(suffix: str, data: bytes) -> None:
    """Canonical scans, or a `ScanError` that is a refusal, not an internal error."""
    outcome = read_fuzzed(suffix, data)
    if isinstance(outcome, ScanError):
        assert not outcome.reason.startswith("internal error"), outcome.reason
    else:
        assert_canonical(outcome)


@pytest.mark.parametrize("name", list(seeds()))
def test_mutated_files_give_scans_or_a_scan_error(name: str) -> None:
    suffix, data = seeds()[name]
    seed = read_fuzzed(suffix, data)
    assert not isinstance(seed, ScanError), f"the unmutated seed is refused: {seed.reason}"
    assert_canonical(seed)

    @FUZZ
    @given(mutated(data))
    def property_holds(fuzzed: bytes) -> None:
        check_contract(suffix, fuzzed)

    property_holds()


@FUZZ
@given(st.sampled_from([".png", ".jpg", ".npy", ".npz", ".dcm"]), st.binary(max_size=600))
def test_random_bytes_give_a_scan_error(suffix: str, data: bytes) -> None:
    outcome = read_fuzzed(suffix, data)
    assert isinstance(outcome, ScanError), f"{len(data)} random bytes decoded into scans"
    assert not outcome.reason.startswith("internal error"), outcome.reason
