"""The candidates: one interface, every network a softmax, the fixed filters as designed."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.candidates import CANDIDATES, DEFAULT_CANDIDATES, ENSEMBLE, select_candidates


def test_every_network_maps_scans_to_a_softmax() -> None:
    images = np.random.default_rng(0).random((4, 64, 64, 1), dtype=np.float32)
    for candidate in CANDIDATES.values():
        if candidate.build is None:
            continue
        output = np.asarray(candidate.build()(images, training=False))
        assert output.shape == (4, 3), candidate.name
        assert output.sum(axis=1) == pytest.approx(np.ones(4), abs=1e-5), candidate.name


def test_the_default_set_compares_cnns_the_fixed_features_and_an_ensemble() -> None:
    chosen, ensemble = select_candidates(None)
    assert ensemble and ENSEMBLE in DEFAULT_CANDIDATES
    networks = [c for c in chosen if c.build is not None]
    assert len(chosen) >= 5 and len(networks) >= 4
    assert {"baseline_1conv", "baseline_2conv"} <= {c.name for c in networks}
    with pytest.raises(ValueError, match="unknown candidate"):
        select_candidates(["nope"])
    with pytest.raises(ValueError, match="needs at least 2"):
        select_candidates(["hog_heads", ENSEMBLE])


def test_the_gabor_layer_starts_as_a_gabor_bank() -> None:
    from trainer.networks import gabor_bank, gabor_net

    bank = gabor_bank(5)
    assert bank.shape == (5, 5, 1, 16)
    assert np.linalg.norm(bank.reshape(25, 16), axis=0) == pytest.approx(np.ones(16), abs=1e-5)
    weights = gabor_net().get_layer("gabor").get_weights()[0]
    assert weights == pytest.approx(bank)
    assert gabor_net().get_layer("gabor").trainable  # fine-tuned, not fixed


def test_a_network_candidate_trains_on_uint8_scans(phantoms) -> None:  # noqa: ANN001
    images, labels = phantoms
    model = CANDIDATES["residual_mixup"].fit(images[:64], labels[:64], seed=0, epochs=1)
    from imaging.canonical import to_model_input

    output = np.asarray(model(to_model_input(images[:5]), training=False))
    assert output.shape == (5, 3) and np.isfinite(output).all()
