"""A tiny deterministic model for pipeline tests: P(class 2) rises with image brightness.

GlobalAveragePooling2D -> Dense(3, softmax) with hand-set weights, so a test knows which
scans must come out urgent without training anything:

    logits = (5 - 10 m, 0, 10 m - 5)   where m is the scan's mean brightness in [0, 1]

With the urgent threshold 0.5, scans brighter than m ~ 0.55 are urgent, darker than ~0.45
are class 0. Published like the trainer publishes (model.keras + card.json + CURRENT), so the
worker loads it through the real contract.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from schemas.model_card import MODEL_FILE, ModelCard, set_current, write_card

BRIGHTNESS_MODEL_VERSION = "test-brightness-1"
URGENT_THRESHOLD = 0.5


def expected_probabilities(scans: np.ndarray) -> np.ndarray:
    """What the brightness model must output for canonical uint8 scans (N, 64, 64)."""
    mean = scans.reshape(len(scans), -1).astype(np.float64).mean(axis=1) / 255.0
    logits = np.stack([5 - 10 * mean, np.zeros_like(mean), 10 * mean - 5], axis=1)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def publish_brightness_model(
    model_root: Path, version: str = BRIGHTNESS_MODEL_VERSION, threshold: float = URGENT_THRESHOLD
) -> Path:
    """Write the brightness model as a published version under `model_root` and point at it."""
    import keras

    directory = model_root / version
    directory.mkdir(parents=True, exist_ok=True)
    network = keras.Sequential(
        [
            keras.Input((64, 64, 1)),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    network.layers[-1].set_weights(
        [np.array([[-10.0, 0.0, 10.0]], np.float32), np.array([5.0, 0.0, -5.0], np.float32)]
    )
    network.save(directory / MODEL_FILE)
    write_card(
        directory,
        ModelCard(
            version=version,
            created_at="2026-01-01T00:00:00Z",
            urgent_threshold=threshold,
            selected_candidate="brightness (tests only)",
            synthetic_data=True,
        ),
    )
    set_current(model_root, version)
    return directory


def brightness_scans(means: list[int], seed: int = 0) -> np.ndarray:
    """Canonical scans (N, 64, 64) uint8 with these mean intensities and a little noise."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(-8, 9, size=(len(means), 64, 64))
    return np.clip(np.asarray(means)[:, None, None] + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def published_model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model root holding the brightness model as CURRENT (built once per session)."""
    root = tmp_path_factory.mktemp("models")
    publish_brightness_model(root)
    return root


@pytest.fixture
def model_root(
    published_model_root: Path, triage_env: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """TRIAGE_MODEL_DIR pointing at the brightness model for this test."""
    from schemas.settings import get_settings

    monkeypatch.setenv("TRIAGE_MODEL_DIR", str(published_model_root))
    get_settings.cache_clear()
    return published_model_root
