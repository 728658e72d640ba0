from pathlib import Path

import numpy as np
import pytest

from trainer.synth import draw_phantom, make_phantoms, parse_mix


def test_phantoms_have_the_contract_shape_and_requested_mix() -> None:
    images, labels = make_phantoms(200, mix=(0.5, 0.3, 0.2), seed=1)
    assert images.shape == (200, 64, 64) and images.dtype == np.uint8
    assert labels.dtype == np.uint8
    assert np.bincount(labels, minlength=3).tolist() == [100, 60, 40]


def test_phantoms_are_reproducible_and_seed_dependent() -> None:
    first, _ = make_phantoms(20, seed=3)
    again, _ = make_phantoms(20, seed=3)
    other, _ = make_phantoms(20, seed=4)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.fixture(scope="module")
def each_class() -> tuple[np.ndarray, np.ndarray]:
    return make_phantoms(300, mix=(1 / 3, 1 / 3, 1 / 3), seed=2)


def body_width(images: np.ndarray) -> np.ndarray:
    """Columns crossed by tissue or bone in the middle rows of each slice."""
    return (images[:, 16:48, :].max(axis=1) > 45).sum(axis=1)


def test_phantoms_look_like_lung_window_slices(each_class) -> None:
    images, _ = each_class
    corners = np.concatenate([images[:, :3, :3], images[:, -3:, -3:]], axis=1)
    assert corners.mean() < 10  # air around the body is black
    assert body_width(images).min() >= 25  # a body across the middle of every slice
    dark = (images[:, 18:42, 12:52] < 40).mean(axis=(1, 2))
    assert np.median(dark) > 0.3  # dark lung fields inside the soft tissue
    assert (images >= 190).any(axis=(1, 2)).mean() > 0.95  # bone: ribs and spine


def test_field_of_view_varies_and_padding_bars_mean_no_class(each_class) -> None:
    images, labels = each_class
    assert body_width(images).std() > 3  # bodies of different sizes in the 64-pixel frame
    barred = (images[:, 0, :] == 0).all(axis=1) & (images[:, -1, :] == 0).all(axis=1)
    assert 0.1 < barred.mean() < 0.3
    shares = [barred[labels == label].mean() for label in range(3)]
    assert max(shares) - min(shares) < 0.15, shares


def finding(label: int, seed: int) -> np.ndarray:
    """What class `label`'s finding adds to the same slice drawn healthy."""
    slices = [draw_phantom(k, np.random.default_rng(seed)).astype(float) for k in (0, label)]
    return slices[1] - slices[0]


def test_the_same_seed_draws_the_same_slice_in_every_class_but_its_finding() -> None:
    for seed in range(5):
        healthy = draw_phantom(0, np.random.default_rng(seed))
        assert np.array_equal(healthy, draw_phantom(0, np.random.default_rng(seed)))
        assert finding(1, seed).min() >= 0 and finding(1, seed).max() > 0


def test_benign_findings_are_small_and_bright_urgent_ones_large() -> None:
    benign = [finding(1, seed) for seed in range(40)]
    urgent = [finding(2, seed) for seed in range(40)]
    benign_area = np.array([(change > 40).sum() for change in benign])
    urgent_area = np.array([(np.abs(change) > 40).sum() for change in urgent])
    assert np.median([change.max() for change in benign]) > 120  # calcified: bone-bright
    assert benign_area.max() <= 80 and benign_area.min() >= 2
    assert np.quantile(urgent_area, 0.1) >= 25  # a mass or consolidation, never a speck
    assert np.median(urgent_area) > 2.5 * np.median(benign_area)


@pytest.mark.parametrize("text", ["a,b,c", "0.5,0.5", "-1,1,1", "0,0,0"])
def test_bad_mix_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="mix"):
        parse_mix(text)


def test_synth_command_writes_marked_npz(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from triage.cli import app

    out = tmp_path / "phantoms.npz"
    result = CliRunner().invoke(app, ["synth", "--n", "30", "--out", str(out), "--seed", "2"])
    assert result.exit_code == 0, result.output
    with np.load(out) as archive:
        assert archive["images"].shape == (30, 64, 64)
        assert len(archive["labels"]) == 30
        assert bool(archive["synthetic"])
