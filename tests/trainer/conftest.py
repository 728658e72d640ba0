"""Small synthetic data sets for the trainer tests."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def phantoms() -> tuple[np.ndarray, np.ndarray]:
    """240 synthetic phantoms with every class well represented."""
    from trainer.synth import make_phantoms

    return make_phantoms(240, mix=(0.5, 0.25, 0.25), seed=5)
