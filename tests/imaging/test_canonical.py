"""The decoding contract the trainer's loaders rely on: shapes, dtypes and the fast paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imaging.canonical import ScanError, canonicalize, canonicalize_stack, to_model_input
from imaging.files import read_scan_file

rng = np.random.default_rng(3)


def test_to_model_input_scales_to_unit_floats_with_a_channel() -> None:
    scans = rng.integers(0, 256, (5, 64, 64), dtype=np.uint8)
    model_input = to_model_input(scans)
    assert model_input.shape == (5, 64, 64, 1) and model_input.dtype == np.float32
    assert np.allclose(model_input[..., 0] * 255, scans)
    assert to_model_input(scans[0]).shape == (1, 64, 64, 1)
    with pytest.raises(ValueError, match="uint8 scans"):
        to_model_input(scans.astype(np.float32))


def test_canonical_uint8_stack_passes_unchanged_with_indexed_sources() -> None:
    scans = rng.integers(0, 256, (4, 64, 64), dtype=np.uint8)
    decoded = canonicalize_stack(scans, "stack.npy")
    assert [scan.source for scan in decoded] == [f"stack.npy[{i}]" for i in range(4)]
    assert np.array_equal(np.stack([scan.pixels for scan in decoded]), scans)


def test_float_unit_range_is_scaled_and_other_sizes_are_resized() -> None:
    image = rng.random((128, 96))
    canonical = canonicalize(image, "float")
    assert canonical.shape == (64, 64) and canonical.dtype == np.uint8
    small = canonicalize(rng.random((64, 64)), "small")
    assert small.max() > 200  # [0, 1] floats are scaled by 255, not kept below 2


def test_png_npy_and_npz_files_decode_to_the_same_scan(tmp_path: Path) -> None:
    scan = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(scan).save(tmp_path / "a.png")
    np.save(tmp_path / "a.npy", scan)
    np.savez(tmp_path / "a.npz", images=scan[None])
    for name in ("a.png", "a.npy", "a.npz"):
        (decoded,) = read_scan_file(tmp_path / name)
        assert np.array_equal(decoded.pixels, scan), name


def test_rgb_stack_is_made_grey_per_image() -> None:
    rgb = np.repeat(rng.integers(0, 256, (3, 64, 64, 1), dtype=np.uint8), 3, axis=-1)
    decoded = canonicalize_stack(rgb, "rgb")
    assert len(decoded) == 3
    assert np.array_equal(decoded[1].pixels, rgb[1, :, :, 0])


def test_wrong_dimensions_are_refused_naming_the_source() -> None:
    with pytest.raises(ScanError, match="odd: expected"):
        canonicalize_stack(np.zeros((2, 3, 4, 5, 6)), "odd")
