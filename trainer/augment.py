"""Augmentation as Keras preprocessing layers, for balancing copies and on-the-fly training.

Geometry (rotation, zoom, shear, shift) comes from Keras layers; intensity changes are a gain
and a gamma that keep the black background black (an additive shift would turn it grey on the
augmented copies only, a shortcut to the minority classes). Some scans get black bars at top
and bottom: in the reference CT data only malignant scans carry
them (wider crops padded to square), and a model must not learn "bars means urgent".
"""

from __future__ import annotations

import numpy as np

BAR_PROBABILITY = 0.15
MAX_BAR_ROWS = 12
# Nearest neighbour keeps the pixel noise of a real scan; bilinear would blur augmented copies
# only, and blur (or its absence) would become a cue for the class that was copied.
INTERPOLATION = "nearest"


def augmentation_layers(seed: int, interpolation: str = INTERPOLATION):  # noqa: ANN201
    """A random geometric transform (keras.Sequential) of float (N, 64, 64, 1) batches."""
    import keras

    options = {"fill_mode": "constant", "interpolation": interpolation}
    layers = [
        keras.layers.RandomFlip("horizontal", seed=seed + 6),  # a finding may sit in either lung
        keras.layers.RandomRotation(0.05, seed=seed, **options),
        keras.layers.RandomZoom((-0.12, 0.12), seed=seed + 1, **options),
        keras.layers.RandomTranslation(0.08, 0.08, seed=seed + 2, **options),
    ]
    if hasattr(keras.layers, "RandomShear"):
        layers.append(keras.layers.RandomShear(0.08, 0.08, seed=seed + 3, **options))
    return keras.Sequential(layers, name="augmentation")


def augment_batch(images, layers, generator):  # noqa: ANN001, ANN201 - TF tensors
    """Geometry, gain and gamma, then black bars, on a float (N, 64, 64, 1) batch (TF ops)."""
    import tensorflow as tf

    images = layers(images, training=True)
    count = tf.shape(images)[0]
    gain = generator.uniform([count, 1, 1, 1], 0.85, 1.15)
    gamma = tf.exp(generator.uniform([count, 1, 1, 1], -0.25, 0.25))
    images = tf.clip_by_value(images, 0.0, 1.0)
    images = tf.clip_by_value(gain * tf.pow(images + 1e-6, gamma), 0.0, 1.0)
    return add_black_bars(images, generator)


def add_black_bars(images, generator, probability: float = BAR_PROBABILITY):  # noqa: ANN001, ANN201
    """Black out equal top and bottom bands in a random share of a float image batch (TF ops)."""
    import tensorflow as tf

    count = tf.shape(images)[0]
    size = tf.shape(images)[1]
    rows = generator.uniform([count], 2, MAX_BAR_ROWS + 1, dtype=tf.int32)
    chosen = generator.uniform([count]) < probability
    rows = tf.where(chosen, rows, tf.zeros_like(rows))
    index = tf.range(size)[None, :]
    keep = (index >= rows[:, None]) & (index < size - rows[:, None])
    mask = tf.cast(keep, images.dtype)[:, :, None, None]
    return tf.clip_by_value(images, 0.0, 1.0) * mask


def augment_uint8(images: np.ndarray, seed: int, batch_size: int = 256) -> np.ndarray:
    """Augmented copies of canonical uint8 scans (N, 64, 64), as uint8 again."""
    import tensorflow as tf

    layers = augmentation_layers(seed)
    generator = tf.random.Generator.from_seed(seed)
    out = []
    for start in range(0, len(images), batch_size):
        batch = tf.convert_to_tensor(images[start : start + batch_size, :, :, None] / 255.0)
        batch = augment_batch(tf.cast(batch, tf.float32), layers, generator)
        out.append(np.rint(np.clip(batch.numpy()[..., 0], 0, 1) * 255).astype(np.uint8))
    return np.concatenate(out) if out else images[:0].copy()
