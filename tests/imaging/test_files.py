"""The bad-input catalogue for single files: each kind is refused with a message naming the file
and the reason, or converted by a stated rule. (Batch-level kinds — folders mixing good and bad
files, duplicate ids, unknown priorities — are tested where scans are submitted.) The hostile
kinds (inflation bombs, lying headers, malformed DICOM values, formats behind the wrong suffix)
come from tests/imaging/hostile.py; fuzzing is in tests/imaging/test_fuzz.py.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imaging.canonical import MAX_ASPECT, ScanError, canonicalize
from imaging.files import read_scan_file
from tests.imaging.hostile import HOSTILE, ct_dataset, save_dicom

rng = np.random.default_rng(7)


def scan_like(height: int = 64, width: int = 64, dtype=np.uint8) -> np.ndarray:  # noqa: ANN001
    high = 255 if dtype == np.uint8 else 4000
    return rng.integers(0, high, size=(height, width)).astype(dtype)


def png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def dicom_file(
    path: Path, *, pixels: bool = True, syntax: str = "1.2.840.10008.1.2.1", **uids: str
) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.2")
    meta.MediaStorageSOPInstanceUID = UID(uids.get("sop", "1.2.3.4"))
    meta.TransferSyntaxUID = UID(syntax)
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = uids.get("sop", "1.2.3.4")
    dataset.StudyInstanceUID = uids.get("study", "1.2.3")
    dataset.Modality = "CT"
    dataset.Rows, dataset.Columns = 80, 80
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 12, 11
    dataset.PixelRepresentation = 0
    dataset.RescaleSlope, dataset.RescaleIntercept = 1, -1024
    if pixels:
        data = scan_like(80, 80, np.uint16).tobytes()
        if syntax != "1.2.840.10008.1.2.1":  # a compressed syntax: encapsulate junk fragments
            from pydicom.encaps import encapsulate

            data = encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 64])
        dataset.PixelData = data
    dataset.save_as(path, enforce_file_format=True)
    return path


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def npy(path: Path, array: np.ndarray, allow_pickle: bool = False) -> Path:
    np.save(path, array, allow_pickle=allow_pickle)
    return path


# Each case: (name, builder(tmp_path) -> path, expected words in the reason)
REFUSED: list[tuple[str, Callable[[Path], Path], str]] = [
    ("zero-byte file", lambda d: write(d / "empty.png", b""), "empty"),
    (
        "truncated PNG",
        lambda d: write(d / "cut.png", png_bytes(scan_like(200, 200))[:300]),
        "truncated",
    ),
    (
        "text renamed .png",
        lambda d: write(d / "note.png", b"patient notes, not an image\n"),
        "not a readable",
    ),
    (
        "truncated JPEG",
        lambda d: write(d / "cut.jpg", _jpeg(scan_like(300, 300))[:200]),
        "truncated",
    ),
    ("unsupported suffix", lambda d: write(d / "scan.gif", b"GIF89a...."), "unsupported file type"),
    ("no suffix", lambda d: write(d / "scan", b"\x00" * 300), "unsupported file type"),
    ("decompression bomb", lambda d: write(d / "bomb.png", _bomb_png()), "over the cap"),
    ("tiny image", lambda d: write(d / "tiny.png", png_bytes(scan_like(8, 8))), "below 16"),
    (
        "uniform image",
        lambda d: write(d / "blank.png", png_bytes(np.zeros((64, 64), np.uint8))),
        "uniform",
    ),
    ("multi-frame PNG", lambda d: write(d / "anim.png", _animated_png()), "frames"),
    ("NPY 1-D", lambda d: npy(d / "line.npy", np.arange(100, dtype=np.uint8)), "shape"),
    ("NPY 5-D", lambda d: npy(d / "five.npy", np.zeros((2, 2, 64, 64, 1), np.uint8)), "shape"),
    (
        "NPY wrong channels",
        lambda d: npy(d / "chan.npy", np.zeros((2, 64, 64, 7), np.uint8)),
        "shape",
    ),
    (
        "NPY empty stack",
        lambda d: npy(d / "none.npy", np.zeros((0, 64, 64), np.uint8)),
        "no images",
    ),
    ("NPY NaN", lambda d: npy(d / "nan.npy", _with(scan_like(dtype=np.float32), np.nan)), "NaN"),
    (
        "NPY inf",
        lambda d: npy(d / "inf.npy", _with(scan_like(dtype=np.float32), np.inf)),
        "infinite",
    ),
    ("NPY object dtype", lambda d: npy(d / "obj.npy", np.array([{"a": 1}, None]), True), "pickled"),
    ("NPY strings", lambda d: npy(d / "str.npy", np.array([["a"] * 64] * 64)), "not numeric"),
    ("NPY complex", lambda d: npy(d / "cplx.npy", scan_like().astype(np.complex64)), "complex"),
    (
        "NPY truncated",
        lambda d: write(d / "cut.npy", (npy(d / "x.npy", scan_like())).read_bytes()[:100]),
        "not a valid NPY",
    ),
    ("NPZ not a zip", lambda d: write(d / "bad.npz", b"PK\x03\x04 broken"), "not a valid NPZ"),
    (
        "NPZ without images",
        lambda d: _npz(d / "two.npz", a=scan_like(), b=scan_like()),
        "no `images`",
    ),
    ("NPZ with objects", lambda d: _npz_pickled(d / "obj.npz"), "pickled"),
    (
        "DICOM without pixel data",
        lambda d: dicom_file(d / "nopix.dcm", pixels=False),
        "no pixel data",
    ),
    (
        "compressed DICOM",
        lambda d: dicom_file(d / "j2k.dcm", syntax="1.2.840.10008.1.2.4.90"),
        "compressed",
    ),
    ("not DICOM named .dcm", lambda d: write(d / "fake.dcm", b"\x00" * 400), "not a DICOM"),
    (
        "directory as file",
        lambda d: (d / "folder.png").mkdir() or d / "folder.png",
        "not a regular file",
    ),
    ("missing file", lambda d: d / "gone.png", "cannot read"),
    ("symlink loop", lambda d: _symlink_loop(d), "cannot read"),
    ("dangling symlink", lambda d: _dangling(d), "cannot read"),
    *HOSTILE,
]


def _with(array: np.ndarray, value: float) -> np.ndarray:
    array[3, 5] = value
    return array


def _jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG")
    return buffer.getvalue()


def _bomb_png() -> bytes:
    """A tiny file claiming 8,000 x 8,000 pixels (over our cap, under Pillow's own): refused from the header, never decoded."""
    buffer = io.BytesIO()
    Image.new("1", (8_000, 8_000)).save(buffer, format="PNG")
    return buffer.getvalue()


def _animated_png() -> bytes:
    buffer = io.BytesIO()
    frames = [Image.fromarray(scan_like()) for _ in range(3)]
    frames[0].save(buffer, format="PNG", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def _npz_pickled(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive, archive.open("images.npy", "w") as member:
        np.save(member, np.array([object(), 1], dtype=object), allow_pickle=True)
    return path


def _symlink_loop(directory: Path) -> Path:
    (directory / "a.png").symlink_to(directory / "b.png")
    (directory / "b.png").symlink_to(directory / "a.png")
    return directory / "a.png"


def _dangling(directory: Path) -> Path:
    (directory / "link.png").symlink_to(directory / "nowhere.png")
    return directory / "link.png"


@pytest.mark.parametrize(("kind", "build", "reason"), REFUSED, ids=[case[0] for case in REFUSED])
def test_bad_file_is_refused_naming_file_and_reason(
    tmp_path: Path, kind: str, build: Callable[[Path], Path], reason: str
) -> None:
    path = build(tmp_path)
    with pytest.raises(ScanError) as caught:
        read_scan_file(path)
    assert str(path) in str(caught.value), f"{kind}: message does not name the file"
    assert reason.lower() in caught.value.reason.lower(), f"{kind}: {caught.value}"


def test_file_over_size_cap_is_refused_before_reading(tmp_path: Path) -> None:
    path = write(tmp_path / "big.npy", b"\x93NUMPY" + b"\x00" * 5000)
    with pytest.raises(ScanError, match="over the cap of 4096"):
        read_scan_file(path, max_file_bytes=4096)


# -- converted by a stated rule ----------------------------------------------------------------


def test_16_bit_png_is_min_max_scaled(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(1000, 3000, 64, dtype=np.uint16), (64, 1))
    path = write(tmp_path / "ct16.png", png_bytes(ramp))
    (scan,) = read_scan_file(path)
    assert scan.pixels.dtype == np.uint8
    assert scan.pixels.min() == 0 and scan.pixels.max() == 255


def test_rgb_png_becomes_luminance(tmp_path: Path) -> None:
    gray = scan_like()
    rgb = np.stack([gray, gray, gray], axis=-1)
    (scan,) = read_scan_file(write(tmp_path / "rgb.png", png_bytes(rgb)))
    np.testing.assert_array_equal(scan.pixels, gray)


def test_rgba_png_is_composited_on_black(tmp_path: Path) -> None:
    gray = scan_like()
    alpha = np.full((64, 64), 255, np.uint8)
    alpha[:, :32] = 0  # left half fully transparent -> black
    rgba = np.stack([gray, gray, gray, alpha], axis=-1)
    (scan,) = read_scan_file(write(tmp_path / "rgba.png", png_bytes(rgba)))
    assert scan.pixels[:, :32].max() == 0
    np.testing.assert_array_equal(scan.pixels[:, 32:], gray[:, 32:])


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_hostile_dicom_uids_are_never_used_as_paths(tmp_path: Path) -> None:
    hostile = "../../../../tmp/evil"
    before = set(os.listdir(tmp_path))
    path = dicom_file(tmp_path / "hostile.dcm", sop=hostile, study=hostile)
    with pytest.raises(ScanError, match=r"malformed StudyInstanceUID \(not a UID") as refused:
        read_scan_file(path)
    assert refused.value.source == str(path) and hostile not in refused.value.reason
    assert set(os.listdir(tmp_path)) - before == {"hostile.dcm"}


@pytest.mark.parametrize(
    ("uids", "refusal"),
    [
        ({"sop": "1." + "2" * 63}, "malformed SOPInstanceUID (longer than 64 characters)"),
        ({"study": "1.2.3" + "4" * 130}, "malformed StudyInstanceUID (longer than 64"),
        ({"study": "1.02.3"}, "malformed StudyInstanceUID (not a UID"),
        ({"sop": "1.2.3.PAT-SECRET"}, "malformed SOPInstanceUID (not a UID"),
        ({"study": "1.2..3"}, "malformed StudyInstanceUID (not a UID"),
    ],
)
def test_uids_over_64_characters_or_outside_the_grammar_are_refused(
    tmp_path: Path, uids: dict[str, str], refusal: str
) -> None:
    path = dicom_file(tmp_path / "uid.dcm", **uids)
    with pytest.raises(ScanError) as refused:
        read_scan_file(path)
    assert refusal in refused.value.reason and "SECRET" not in refused.value.reason


def test_a_uid_of_64_characters_is_accepted(tmp_path: Path) -> None:
    sop = "1." + "2" * 62
    (scan,) = read_scan_file(dicom_file(tmp_path / "long.dcm", sop=sop))
    assert scan.identity.sop_uid == sop


def test_non_square_image_is_padded_not_stretched(tmp_path: Path) -> None:
    wide = np.full((32, 128), 200, np.uint8)
    wide[:, :4] = 10  # not uniform
    (scan,) = read_scan_file(write(tmp_path / "wide.png", png_bytes(wide)))
    assert scan.pixels[:10].max() < 20, "the top band must be black padding"
    assert scan.pixels[32, 32] > 150


# -- limits and the decoding contract -------------------------------------------------------


def test_aspect_ratio_up_to_8_to_1_is_accepted_and_beyond_is_refused() -> None:
    image = rng.integers(0, 256, (16, 16 * MAX_ASPECT), dtype=np.uint8)
    assert canonicalize(image, "8:1").shape == (64, 64)
    assert canonicalize(image.T, "1:8").shape == (64, 64)
    with pytest.raises(ScanError, match="longer than 8:1"):
        canonicalize(rng.integers(0, 256, (16, 16 * MAX_ASPECT + 1), dtype=np.uint8), "wide")


def test_a_png_beyond_8_to_1_is_refused_from_its_header(tmp_path: Path) -> None:
    path = write(tmp_path / "strip.png", png_bytes(scan_like(16, 16 * MAX_ASPECT + 1)))
    with pytest.raises(ScanError, match="aspect ratio"):
        read_scan_file(path)


def test_scans_per_file_cap_names_the_limit(tmp_path: Path) -> None:
    path = npy(tmp_path / "five.npy", rng.integers(0, 256, (5, 64, 64), dtype=np.uint8))
    assert len(read_scan_file(path, max_scans_per_file=5)) == 5
    with pytest.raises(ScanError, match=r"5 scans, over the cap of 4 \(max_scans_per_file\)"):
        read_scan_file(path, max_scans_per_file=4)


def test_decoded_size_limit_applies_to_npz_members(tmp_path: Path) -> None:
    path = _npz(tmp_path / "stack.npz", images=rng.integers(0, 256, (4, 64, 64), dtype=np.uint8))
    assert len(read_scan_file(path)) == 4
    with pytest.raises(ScanError, match="decoded-size limit of 1000 bytes"):
        read_scan_file(path, max_decoded_bytes=1000)


def test_good_ct_slices_single_multi_frame_and_deflated_are_accepted(tmp_path: Path) -> None:
    from tests.imaging.hostile import DEFLATED

    assert len(read_scan_file(save_dicom(ct_dataset(512, 512), tmp_path / "ct.dcm"))) == 1
    frames = read_scan_file(save_dicom(ct_dataset(frames=3), tmp_path / "three.dcm"))
    assert [scan.source[-3:] for scan in frames] == ["[0]", "[1]", "[2]"]
    deflated = save_dicom(ct_dataset(syntax=DEFLATED), tmp_path / "deflated.dcm")
    assert read_scan_file(deflated)[0].pixels.shape == (64, 64)


def test_any_other_exception_is_an_internal_error_logged_without_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import imaging.files

    def broken(*args: object) -> None:
        raise KeyError("patient 12345")

    monkeypatch.setattr(imaging.files, "load_npy", broken)
    path = npy(tmp_path / "secret-name.npy", scan_like())
    with pytest.raises(ScanError) as caught:
        read_scan_file(path)
    assert caught.value.reason == "internal error while reading (KeyError)"
    assert "KeyError" in caplog.text
    assert "secret-name" not in caplog.text and "12345" not in caplog.text


def test_pydicom_test_files_are_accepted_or_refused_never_crash() -> None:
    from pydicom.data import get_testdata_files

    outcomes: dict[str, int] = {"accepted": 0, "refused": 0}
    for name in get_testdata_files():
        try:
            read_scan_file(name)
            outcomes["accepted"] += 1
        except ScanError as error:
            assert not error.reason.startswith("internal error"), f"{name}: {error.reason}"
            outcomes["refused"] += 1
    assert outcomes["accepted"] > 20 and outcomes["refused"] > 20, outcomes


CRASHERS = Path(__file__).parent / "crashers"


def test_every_saved_crasher_is_refused_or_accepted_never_crashes() -> None:
    files = sorted(path for path in CRASHERS.iterdir() if not path.name.startswith("README"))
    assert files, "tests/imaging/crashers/ holds the fuzzer's finds"
    for path in files:
        try:
            read_scan_file(path)
        except ScanError as error:
            assert not error.reason.startswith("internal error"), f"{path.name}: {error.reason}"


def npz_claiming_one_member(path: Path, members: int) -> Path:
    """An NPZ of `members` tiny arrays whose end-of-directory record claims it holds 1."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for number in range(members):
            archive.writestr(f"member-{number:05d}-{'x' * 60}.npy", b"")
    data = bytearray(buffer.getvalue())
    end = data.rfind(b"PK\x05\x06")
    data[end + 8 : end + 12] = (1).to_bytes(2, "little") * 2  # entries on this disk, in all
    path.write_bytes(bytes(data))
    return path


def test_npz_members_are_counted_from_the_central_directory(tmp_path: Path) -> None:
    path = npz_claiming_one_member(tmp_path / "lying.npz", 2_000)
    with pytest.raises(ScanError, match="NPZ has over 1000 members") as refused:
        read_scan_file(path)
    assert len(str(refused.value)) < 300


def test_a_refusal_naming_npz_members_stays_short(tmp_path: Path) -> None:
    path = npz_claiming_one_member(tmp_path / "many.npz", 900)
    with pytest.raises(ScanError, match="no `images` array") as refused:
        read_scan_file(path)
    assert "and 895 more" in refused.value.reason and len(refused.value.reason) < 400
