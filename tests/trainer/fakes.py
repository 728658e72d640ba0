"""Candidates whose models are known in advance, so tests can check what saw what."""

from __future__ import annotations

import numpy as np

from trainer.candidates import Candidate


def _dense_model(kernel: np.ndarray, bias: np.ndarray):  # noqa: ANN202
    """Mean intensity -> Dense(3) softmax (built-in layers)."""
    import keras

    model = keras.Sequential(
        [
            keras.Input((64, 64, 1)),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.layers[-1].set_weights([kernel.reshape(1, 3).astype(np.float32), bias.astype(np.float32)])
    return model


def reader_model():  # noqa: ANN201
    """Reads the class from the mean intensity m (0, 0.5 or 1): logits 20 (k m - k^2 / 4)."""
    k = np.arange(3)
    return _dense_model(20.0 * k, -5.0 * k**2)


def intensity_scans(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """uint8 scans whose mean intensity says their label (0, 127 or 255 plus a little noise),
    and whose pixel (0, 0)/(0, 1) carry their index."""
    rng = np.random.default_rng(seed)
    base = np.asarray(labels, float)[:, None, None] * 127.5
    images = np.clip(base + rng.normal(0, 3, (len(labels), 64, 64)), 0, 255).astype(np.uint8)
    index = np.arange(len(labels))
    images[:, 0, 0], images[:, 0, 1] = index // 256, index % 256
    return images


def reader(name: str = "reader") -> Candidate:
    return Candidate(name, "knows the rule", fitter=lambda images, labels, seed: reader_model())


def prior(seen: list | None = None, name: str = "prior") -> Candidate:
    """Predicts the class shares of its training labels; records the indices it trained on."""

    def fit(images: np.ndarray, labels: np.ndarray, seed: int):  # noqa: ANN202
        if seen is not None:
            seen.append(set((images[:, 0, 0].astype(int) * 256 + images[:, 0, 1]).tolist()))
        shares = np.bincount(labels, minlength=3) / len(labels)
        return _dense_model(np.zeros(3), np.log(shares + 1e-6))

    return Candidate(name, "class shares", fitter=fit)


def no_balancing(monkeypatch) -> None:  # noqa: ANN001
    """The training scans as given (so a recorded index is a real scan's)."""
    monkeypatch.setattr(
        "trainer.crossfit.balance_by_augmentation", lambda images, labels, seed: (images, labels)
    )
