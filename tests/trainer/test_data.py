"""Every loader works on its layout and refuses bad input with a clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainer.data import DataError, deal_groups, load_groups, load_scans


def save_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def write_dicom(path: Path, pixels: np.ndarray) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = meta.MediaStorageSOPClassUID, generate_uid()
    dataset.Modality, dataset.PhotometricInterpretation = "CT", "MONOCHROME2"
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.SamplesPerPixel, dataset.BitsAllocated, dataset.BitsStored = 1, 16, 12
    dataset.HighBit, dataset.PixelRepresentation = 11, 0
    dataset.PixelData = pixels.astype(np.uint16).tobytes()
    dataset.save_as(path, enforce_file_format=True)
    return path


def test_plain_npz(tmp_path: Path, phantoms) -> None:
    images, labels = phantoms
    scans = load_scans(save_npz(tmp_path / "d.npz", images=images, labels=labels))
    assert np.array_equal(scans.images, images)
    assert np.array_equal(scans.labels, labels)
    assert not scans.synthetic and scans.given_splits == {}


def test_synthetic_marker_is_carried(tmp_path: Path, phantoms) -> None:
    images, labels = phantoms
    path = save_npz(tmp_path / "d.npz", images=images, labels=labels, synthetic=np.array(True))
    assert load_scans(path).synthetic


def test_medmnist_npz_keeps_its_splits_and_flattens_labels(tmp_path: Path, phantoms) -> None:
    images, labels = phantoms
    rgb = np.repeat(images[:40, :, :, None], 3, axis=-1)  # colour is made grey
    path = save_npz(
        tmp_path / "m.npz",
        train_images=images[:100], train_labels=labels[:100, None],
        val_images=images[100:140], val_labels=labels[100:140, None],
        test_images=rgb, test_labels=labels[:40, None],
    )  # fmt: skip
    scans = load_scans(path)
    assert scans.images.shape == (180, 64, 64)
    assert {k: len(v) for k, v in scans.given_splits.items()} == {
        "train": 100,
        "val": 40,
        "test": 40,
    }
    assert np.array_equal(scans.labels[scans.given_splits["test"]], labels[:40])
    assert np.array_equal(scans.images[scans.given_splits["test"]], images[:40])


def test_npy_pair_and_resizing(tmp_path: Path) -> None:
    images = np.random.default_rng(0).random((6, 100, 80)).astype(np.float32)
    np.save(tmp_path / "x.npy", images)
    np.save(tmp_path / "y.npy", np.array([0, 1, 2, 2, 1, 0]))
    scans = load_scans(f"{tmp_path / 'x.npy'},{tmp_path / 'y.npy'}")
    assert scans.images.shape == (6, 64, 64) and scans.images.dtype == np.uint8
    assert scans.labels.tolist() == [0, 1, 2, 2, 1, 0]


def test_class_folders_of_png_and_dicom(tmp_path: Path, phantoms) -> None:
    images, _ = phantoms
    for name, label in (("healthy", 0), ("1", 1), ("malignant", 2)):
        (tmp_path / name).mkdir()
        for index in range(3):
            Image.fromarray(images[label * 3 + index]).save(tmp_path / name / f"s{index}.png")
    write_dicom(tmp_path / "malignant" / "s9.dcm", images[9].astype(np.uint16) * 16)
    scans = load_scans(tmp_path)
    assert scans.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    assert np.array_equal(scans.images[0], images[0])
    assert np.corrcoef(scans.images[-1].ravel(), images[9].ravel())[0, 1] > 0.99


def test_unlabelled_forms_load_for_prediction(tmp_path: Path, phantoms) -> None:
    images, _ = phantoms
    np.save(tmp_path / "x.npy", images[:5])
    assert load_scans(tmp_path / "x.npy", require_labels=False).labels is None
    folder = tmp_path / "pngs"
    folder.mkdir()
    for index in range(4):
        Image.fromarray(images[index]).save(folder / f"{index:02d}.png")
    loaded = load_scans(folder, require_labels=False)
    assert np.array_equal(loaded.images, images[:4])
    with pytest.raises(DataError, match="holds no labels"):
        load_scans(tmp_path / "x.npy")


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.array([0, 1, 3, 0]), "labels must be 0, 1 or 2; image 2 has 3"),
        (np.array([0, 1, -1, 0]), "labels must be 0, 1 or 2"),
        (np.array([0, 1, 2]), "3 labels for 4 images"),
        (np.array([0.0, 1.5, 2.0, 0.0]), "whole numbers"),
        (np.array(["a", "b", "c", "d"]), "dtype"),
        (np.zeros((4, 2), dtype=int), "1-D"),
    ],
)
def test_bad_labels_are_refused(tmp_path: Path, phantoms, labels, message: str) -> None:  # noqa: ANN001
    path = save_npz(tmp_path / "bad.npz", images=phantoms[0][:4], labels=labels)
    with pytest.raises(DataError, match=message) as error:
        load_scans(path)
    assert "bad.npz" in str(error.value)


def test_bad_files_are_refused_with_names(tmp_path: Path, phantoms) -> None:
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="corrupt.npz: not a valid NPZ"):
        load_scans(corrupt)
    with pytest.raises(DataError, match="no such file"):
        load_scans(tmp_path / "missing.npz")
    wrong = save_npz(tmp_path / "wrong.npz", pictures=phantoms[0][:3])
    with pytest.raises(DataError, match="expected `images`"):
        load_scans(wrong)
    half = save_npz(tmp_path / "half.npz", train_images=phantoms[0][:3], train_labels=np.zeros(3))
    with pytest.raises(DataError, match="lacks `val_images`"):
        load_scans(half)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(DataError, match="unsupported file type"):
        load_scans(text)


def test_bad_class_folders_are_refused(tmp_path: Path, phantoms) -> None:
    (tmp_path / "cats").mkdir()
    with pytest.raises(DataError, match="unknown: cats"):
        load_scans(tmp_path)
    (tmp_path / "cats").rmdir()
    (tmp_path / "0").mkdir()
    Image.fromarray(phantoms[0][0]).save(tmp_path / "0" / "a.png")
    (tmp_path / "0" / "b.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(DataError, match="b.png"):
        load_scans(tmp_path)
    (tmp_path / "0" / "b.png").unlink()
    (tmp_path / "0" / "c.csv").write_text("x")
    with pytest.raises(DataError, match="found c.csv"):
        load_scans(tmp_path)


def test_groups_csv_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "groups.csv"
    path.write_text("index,case\n0,a\n1,a\n2,b\n")
    assert load_groups(path, "case", 3).tolist() == ["a", "a", "b"]
    with pytest.raises(DataError, match="3 rows but the data set has 4 images"):
        load_groups(path, "case", 4)
    with pytest.raises(DataError, match="no column 'patient'"):
        load_groups(path, "patient", 3)


def test_dealt_groups_never_span_two_parts_and_every_part_has_every_class() -> None:
    rng = np.random.default_rng(0)
    group_labels = rng.choice(3, size=60, p=[0.5, 0.2, 0.3])
    sizes = rng.integers(2, 12, size=60)
    groups = np.repeat(np.arange(60), sizes).astype(str)
    labels = np.repeat(group_labels, sizes)
    part = deal_groups(labels, groups, (1.0, 1.0, 1.0), seed=3)
    members = [set(groups[part == k]) for k in range(3)]
    assert not members[0] & members[1] and not members[0] & members[2]
    assert not members[1] & members[2]
    for k in range(3):  # stratified: every class present in every part
        assert set(labels[part == k]) == {0, 1, 2}
        assert np.mean(part == k) == pytest.approx(1 / 3, abs=0.1)
