"""The served model: the version the model root's CURRENT names, loaded in each worker process
and loaded again when CURRENT moves, so a newly published model is served from the next job.

A batch is classified in forward passes of a `tf.function` with a fixed input signature
(traced once for every batch size), not `model.predict`, which builds a data pipeline on every
call (its cost: BENCHMARKS.md, "What was changed"). TensorFlow is imported here only, inside
functions, and only in worker processes after fork.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imaging.canonical import SCAN_SIZE, to_model_input
from schemas.model_card import MODEL_FILE, ModelCard, read_card, resolve_model_dir
from schemas.settings import Settings

log = logging.getLogger(__name__)
FORWARD_CHUNK = 64


@dataclass(frozen=True)
class ServingModel:
    """A published model ready to classify batches of canonical scans."""

    version: str
    directory: Path
    card: ModelCard
    forward: Callable[[np.ndarray], np.ndarray]

    @property
    def urgent_threshold(self) -> float:
        return self.card.urgent_threshold

    def probabilities(self, scans: np.ndarray) -> np.ndarray:
        """Canonical uint8 scans (N, 64, 64) -> class probabilities (N, 3), in forward passes
        of at most FORWARD_CHUNK scans: the default model's features make large intermediate
        tensors, so a whole job in one pass peaks higher and runs slower (BENCHMARKS.md, "The
        forward pass in chunks of 64")."""
        inputs = to_model_input(scans)
        if len(inputs) <= FORWARD_CHUNK:
            return self.forward(inputs)
        return np.concatenate(
            [
                self.forward(inputs[start : start + FORWARD_CHUNK])
                for start in range(0, len(inputs), FORWARD_CHUNK)
            ]
        )

    def predicted_classes(self, probabilities: np.ndarray) -> np.ndarray:
        """The class each scan is sorted into, by the card's decision rule."""
        return self.card.predicted_classes(probabilities)

    def is_urgent(self, probabilities: np.ndarray) -> np.ndarray:
        """The card's urgent flag (P(class 2) >= the threshold the trainer chose)."""
        return self.card.is_urgent(probabilities)


def load_model(directory: Path) -> ServingModel:
    """Load one published model directory (model.keras + card.json) and trace its forward pass.

    Keras' safe mode is on: a model holding code (a `Lambda` layer) raises ValueError.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ banner quiet
    import keras
    import tensorflow as tf

    card = read_card(directory)
    # safe_mode refuses archives that would run code on load (Lambda layers' bytecode,
    # arbitrary callables in config.json): a published model is data, never code
    network = keras.saving.load_model(directory / MODEL_FILE, compile=False, safe_mode=True)
    signature = tf.TensorSpec([None, SCAN_SIZE, SCAN_SIZE, 1], tf.float32)
    graph = tf.function(lambda x: network(x, training=False), input_signature=[signature])

    def forward(batch: np.ndarray) -> np.ndarray:
        return np.asarray(graph(tf.constant(batch)), dtype=np.float64)

    probe = forward(np.zeros((1, SCAN_SIZE, SCAN_SIZE, 1), np.float32))
    if probe.shape != (1, 3):
        raise ValueError(f"{directory}: model outputs shape {probe.shape[1:]}, expected (3,)")
    return ServingModel(card.version, directory, card, forward)


_loaded: ServingModel | None = None


def current_model(settings: Settings) -> ServingModel:
    """The model CURRENT points at, reloaded when the pointer moves to a new version."""
    global _loaded
    directory = resolve_model_dir(settings.resolved_model_dir)
    if _loaded is None or _loaded.directory != directory:
        _loaded = load_model(directory)
        log.info("loaded model %s from %s", _loaded.version, directory)
    return _loaded
