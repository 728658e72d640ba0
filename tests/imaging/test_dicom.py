"""Compressed DICOM decodes through pydicom's plugins, to the scan its uncompressed twin gives.

pydicom ships a corpus with every common transfer syntax (`pydicom.data`); each compressed
image in it is accepted, or refused for a reason of its own (too small, no pixel data, a
stream no decoder reads), never because it is compressed.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imaging.canonical import ScanError
from imaging.dicom import can_decode
from imaging.files import read_scan_file
from tests.fixtures_model import expected_probabilities

# streams pydicom ships as broken or non-conformant: libjpeg reports a misplaced marker
# segment in the first; the second's codestream claims a size that is not the header's
NON_CONFORMANT = {"JPEG-lossy.dcm", "JPEG2000-embedded-sequence-delimiter.dcm"}
REFUSED_FOR_THEIR_OWN_REASONS = ("below 16 a side", "no pixel data")
SYNTAXES = {
    "JPEG baseline": "1.2.840.10008.1.2.4.50",
    "JPEG extended": "1.2.840.10008.1.2.4.51",
    "JPEG lossless": "1.2.840.10008.1.2.4.57",
    "JPEG lossless SV1": "1.2.840.10008.1.2.4.70",
    "JPEG-LS lossless": "1.2.840.10008.1.2.4.80",
    "JPEG-LS near-lossless": "1.2.840.10008.1.2.4.81",
    "JPEG 2000 lossless": "1.2.840.10008.1.2.4.90",
    "JPEG 2000": "1.2.840.10008.1.2.4.91",
    "RLE lossless": "1.2.840.10008.1.2.5",
    "deflated": "1.2.840.10008.1.2.1.99",
}


def _compressed_corpus() -> list[tuple[str, str]]:
    """(path, transfer syntax name) of every compressed or deflated file in pydicom's data."""
    import pydicom
    from pydicom.data import get_testdata_files

    found = []
    for path in sorted(get_testdata_files()):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                meta = pydicom.dcmread(path, stop_before_pixels=True).file_meta
            syntax = meta.TransferSyntaxUID
        except Exception:  # DICOMDIRs, folders and files without file meta
            continue
        if syntax.is_transfer_syntax and (syntax.is_compressed or syntax.is_deflated):
            found.append((path, str(syntax.name)))
    return found


def _scan(path: str | Path) -> np.ndarray:
    return read_scan_file(path, max_file_bytes=1 << 28)[0].pixels


def _testdata(name: str) -> str:
    from pydicom.data import get_testdata_file

    return str(get_testdata_file(name))


@pytest.mark.parametrize("name", sorted(SYNTAXES))
def test_every_common_syntax_has_a_decoder(name: str) -> None:
    assert can_decode(SYNTAXES[name]), f"no installed plugin decodes {name}"


def test_pydicom_corpus_compressed_images_are_accepted() -> None:
    corpus = _compressed_corpus()
    accepted, syntaxes = 0, set()
    for path, syntax in corpus:
        name = Path(path).name
        try:
            _scan(path)
        except ScanError as error:
            assert "not installed" not in error.reason, (name, error.reason)
            if "corrupt or not conformant" in error.reason or "not the header's" in error.reason:
                assert name in NON_CONFORMANT, (name, error.reason)
            else:
                assert any(words in error.reason for words in REFUSED_FOR_THEIR_OWN_REASONS), (
                    name,
                    error.reason,
                )
            continue
        accepted += 1
        syntaxes.add(syntax)
    assert len(corpus) >= 40
    assert accepted >= 33, f"{accepted} of {len(corpus)} compressed files accepted"
    assert len(syntaxes) >= 9, syntaxes  # every family above, lossless and lossy


@pytest.mark.parametrize(
    ("twin", "original", "tolerance"),
    [
        ("MR_small_RLE.dcm", "MR_small.dcm", 0.0),  # RLE, 16-bit MR
        ("MR_small_jp2klossless.dcm", "MR_small.dcm", 0.0),  # JPEG 2000 lossless
        ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm", 0.0),  # JPEG-LS lossless
        ("SC_rgb_jpeg_gdcm.dcm", "SC_rgb_rle.dcm", 0.0),  # JPEG lossless, RGB
        ("SC_rgb_gdcm_KY.dcm", "SC_rgb_rle.dcm", 0.0),  # JPEG 2000
        ("SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_rle.dcm", 1.0),  # JPEG baseline (lossy), YBR
        ("SC_rgb_dcmtk_+eb+cr.dcm", "SC_rgb_rle.dcm", 1.0),  # JPEG baseline, RGB
        ("SC_rgb_jls_lossy_line.dcm", "SC_rgb_rle.dcm", 1.5),  # JPEG-LS near-lossless
        ("SC_rgb_jpeg.dcm", "SC_rgb_jpeg_dcmd.dcm", 0.5),  # JPEG baseline vs its decompression
    ],
)
def test_compressed_twin_gives_the_same_scan(twin: str, original: str, tolerance: float) -> None:
    compressed, plain = _scan(_testdata(twin)), _scan(_testdata(original))
    difference = np.abs(compressed.astype(int) - plain.astype(int)).mean()
    assert difference <= tolerance
    same_class = expected_probabilities(np.stack([compressed, plain])).argmax(axis=1)
    assert same_class[0] == same_class[1]


def test_deflated_file_decodes() -> None:
    assert _scan(_testdata("image_dfl.dcm")).shape == (64, 64)


# -- the same CT slice as an exported 8-bit PNG and as a 16-bit DICOM in Hounsfield units --

CENTER, WIDTH = -600.0, 1500.0


def _ct_slice_hu(size: int = 512, seed: int = 3) -> np.ndarray:
    """A chest-like slice in HU: air, soft tissue, two lungs, a nodule, a spine, noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size - 0.5
    hu = np.full((size, size), -1000.0)
    hu[(x / 0.42) ** 2 + (y / 0.32) ** 2 < 1] = 40.0
    for side in (-0.17, 0.17):
        hu[((x - side) / 0.13) ** 2 + (y / 0.22) ** 2 < 1] = -850.0
    hu[(x - 0.15) ** 2 + (y + 0.05) ** 2 < 0.02**2] = 30.0
    hu[x**2 + (y - 0.24) ** 2 < 0.04**2] = 700.0
    return hu + rng.normal(0, 20, hu.shape)


def _lung_window_png(hu: np.ndarray) -> np.ndarray:
    """What a viewer exports: the DICOM LINEAR window (PS3.3 C.11.2.1.2) onto 0..255."""
    scaled = (hu - (CENTER - 0.5)) / (WIDTH - 1) + 0.5
    return np.rint(np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def _hu_dicom(path: Path, hu: np.ndarray) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    dataset.StudyInstanceUID, dataset.Modality = generate_uid(), "CT"
    dataset.Rows, dataset.Columns = hu.shape
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 12, 11
    dataset.PixelRepresentation = 0
    dataset.RescaleSlope, dataset.RescaleIntercept = 1, -1024
    dataset.WindowCenter, dataset.WindowWidth = CENTER, WIDTH
    dataset.PixelData = np.clip(np.rint(hu + 1024), 0, 4095).astype(np.uint16).tobytes()
    dataset.save_as(path, enforce_file_format=True)
    return path


def test_png_export_and_hu_dicom_give_the_same_scan(tmp_path: Path) -> None:
    hu = _ct_slice_hu()
    png = tmp_path / "slice.png"
    Image.fromarray(_lung_window_png(hu)).save(png)
    from_png = _scan(png).astype(int)
    from_dicom = _scan(_hu_dicom(tmp_path / "slice.dcm", hu)).astype(int)
    assert np.abs(from_png - from_dicom).mean() < 3
    classes = expected_probabilities(np.stack([from_png, from_dicom]).astype(np.uint8))
    assert classes.argmax(axis=1)[0] == classes.argmax(axis=1)[1]


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_window_matches_pydicom_windowing(tmp_path: Path, function: str) -> None:
    """The window onto 0..255 is pydicom's `apply_windowing` over its output range."""
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_windowing

    hu = _ct_slice_hu(size=128)
    path = _hu_dicom(tmp_path / "slice.dcm", hu)
    dataset = pydicom.dcmread(path)
    dataset.VOILUTFunction = function
    dataset.save_as(path)
    expected = apply_windowing(apply_modality_lut(dataset.pixel_array, dataset), dataset)
    expected = np.rint((expected + 1024) / 4095 * 255)  # the output range: 0..4095 stored - 1024
    ours = read_scan_file(path)[0].pixels
    reference = read_scan_file(_array_png(tmp_path / "reference.png", expected))[0].pixels
    assert np.abs(ours.astype(int) - reference.astype(int)).max() <= 1


def _array_png(path: Path, values: np.ndarray) -> Path:
    Image.fromarray(np.clip(values, 0, 255).astype(np.uint8)).save(path)
    return path


@pytest.mark.parametrize(("kind", "syntax"), [("JPEG2000", "1.2.840.10008.1.2.4.90"),
                                              ("JPEG", "1.2.840.10008.1.2.4.50")])  # fmt: skip
def test_a_frame_larger_than_its_header_is_refused_before_decoding(
    tmp_path: Path, kind: str, syntax: str
) -> None:
    """A tiny codestream claiming a huge image (a decompression bomb) is never decoded."""
    import io

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

    buffer = io.BytesIO()
    Image.new("L", (3000, 2000), 7).save(buffer, format=kind)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = meta.MediaStorageSOPClassUID, generate_uid()
    dataset.Rows = dataset.Columns = 64
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 8, 8, 7
    dataset.PixelRepresentation = 0
    dataset.PixelData = encapsulate([buffer.getvalue()])
    dataset["PixelData"].VR = "OB"
    dataset.save_as(tmp_path / "bomb.dcm", enforce_file_format=True)
    with pytest.raises(ScanError, match=r"frame size \(3000x2000\) is not the header's 64x64"):
        read_scan_file(tmp_path / "bomb.dcm")
