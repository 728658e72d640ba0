"""The served model: loads through the published-model contract, one forward pass per batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from schemas.model_card import MODEL_FILE, ModelCard, ModelNotFoundError, set_current, write_card
from schemas.settings import get_settings
from tests.fixtures_model import (
    BRIGHTNESS_MODEL_VERSION,
    brightness_scans,
    expected_probabilities,
    publish_brightness_model,
)
from worker.model import current_model, load_model


def test_a_batch_gets_the_probabilities_the_published_weights_define(model_root: Path) -> None:
    model = current_model(get_settings())
    scans = brightness_scans([20, 60, 90, 110, 180, 230, 250])
    probabilities = model.probabilities(scans)
    assert model.version == BRIGHTNESS_MODEL_VERSION
    assert probabilities.shape == (7, 3)
    np.testing.assert_allclose(probabilities, expected_probabilities(scans), atol=1e-5)
    assert model.is_urgent(probabilities).tolist() == [False] * 4 + [True] * 3


@pytest.mark.parametrize("size", [1, 2, 5, 17, 80, 256, 300])
def test_batches_of_any_size_give_the_same_answer_per_scan(model_root: Path, size: int) -> None:
    model = current_model(get_settings())
    scans = brightness_scans(list(np.linspace(10, 250, size).astype(int)), seed=size)
    batch = model.probabilities(scans)
    assert batch.shape == (size, 3)
    np.testing.assert_allclose(batch, expected_probabilities(scans), atol=1e-5)
    singles = np.concatenate(
        [model.probabilities(scan[None]) for scan in scans[:: max(1, size // 7)]]
    )
    np.testing.assert_allclose(batch[:: max(1, size // 7)], singles, atol=1e-6)


def test_a_new_current_version_is_picked_up(model_root: Path, tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "models"
    publish_brightness_model(root, version="v-a", threshold=0.5)
    publish_brightness_model(root, version="v-b", threshold=0.9)
    set_current(root, "v-a")
    monkeypatch.setenv("TRIAGE_MODEL_DIR", str(root))
    get_settings.cache_clear()
    assert current_model(get_settings()).version == "v-a"
    set_current(root, "v-b")
    model = current_model(get_settings())
    assert (model.version, model.urgent_threshold) == ("v-b", 0.9)


def test_no_published_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="triage train"):
        current_model(get_settings())  # the settings point at an empty data dir
    with pytest.raises(ModelNotFoundError):
        load_model(tmp_path)


def test_a_model_that_would_run_code_on_load_is_refused(tmp_path: Path) -> None:
    """A Lambda layer ships Python bytecode: Keras' safe mode refuses it, so the worker does."""
    import keras

    directory = tmp_path / "models" / "v-lambda"
    directory.mkdir(parents=True)
    network = keras.Sequential(
        [
            keras.Input((64, 64, 1)),
            keras.layers.Lambda(lambda x: x * 1.0),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    network.save(directory / MODEL_FILE)
    write_card(
        directory,
        ModelCard(
            version="v-lambda",
            created_at="2026-01-01T00:00:00Z",
            urgent_threshold=0.5,
            selected_candidate="lambda (tests only)",
            synthetic_data=True,
        ),
    )
    set_current(directory.parent, "v-lambda")
    with pytest.raises(ValueError, match="safe_mode|Lambda"):
        load_model(directory)
