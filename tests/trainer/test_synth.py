from pathlib import Path

import numpy as np
import pytest

from trainer.synth import make_phantoms, parse_mix


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


def test_urgent_findings_differ_from_healthy_scans() -> None:
    images, labels = make_phantoms(300, mix=(0.5, 0.0, 0.5), seed=2)
    lungs = images[:, 20:44, 8:56].astype(float)
    # masses fill dark lung fields with soft tissue: more mid-grey pixels in class 2
    mid_grey = ((lungs > 70) & (lungs < 160)).mean(axis=(1, 2))
    assert mid_grey[labels == 2].mean() > mid_grey[labels == 0].mean() * 1.1


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
