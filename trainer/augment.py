"""Augmentation, in one place: what varies between patients, scanners and hospitals.

Geometry (flip, rotation, zoom = field of view, shift, shear) comes from Keras preprocessing
layers. Intensity changes model another window level and width (an affine map of the grey
levels), brightness and contrast (gain and gamma) and detector noise. Some scans get black
bars at top and bottom: in the reference CT data only malignant scans carry them (wider crops
padded to square), and a model must not learn "bars means urgent".

`augment_batch` is the on-the-fly augmentation of training batches (TF ops); `augment_uint8`
makes augmented copies for the balanced training set; `barred` and `jittered` are the numpy
copies the fixed-feature candidate trains on; `site_variations` is what the invariance test
changes (only what differs between hospitals, never the anatomy).
"""

from __future__ import annotations

import numpy as np

BAR_PROBABILITY = 0.15
MAX_BAR_ROWS = 12
WINDOW_SHIFT = 0.08  # grey-level offset of another window level, in [0, 1] units
WINDOW_SCALE = (0.8, 1.25)  # another window width
NOISE_STD = 0.02
JITTER_ZOOM = (0.9, 1.1)
JITTER_SHIFT = 4.0
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


def augment_batch(images, layers, generator, site: bool = True):  # noqa: ANN001, ANN201
    """Geometry, gain and gamma, (with `site`) window and noise, then black bars, on a float
    (N, 64, 64, 1) batch (TF ops)."""
    import tensorflow as tf

    images = tf.clip_by_value(layers(images, training=True), 0.0, 1.0)
    count = tf.shape(images)[0]
    gain = generator.uniform([count, 1, 1, 1], 0.85, 1.15)
    gamma = tf.exp(generator.uniform([count, 1, 1, 1], -0.25, 0.25))
    images = tf.clip_by_value(gain * tf.pow(images + 1e-6, gamma), 0.0, 1.0)
    if site:
        scale = generator.uniform([count, 1, 1, 1], *WINDOW_SCALE)
        shift = generator.uniform([count, 1, 1, 1], -WINDOW_SHIFT, WINDOW_SHIFT)
        noise = generator.normal(tf.shape(images), stddev=NOISE_STD)
        images = tf.clip_by_value(scale * (images - 0.5) + 0.5 + shift + noise, 0.0, 1.0)
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
    """Augmented copies of canonical uint8 scans (N, 64, 64), as uint8 again (no window or
    noise change: copies of one class only must not carry a look the originals lack)."""
    import tensorflow as tf

    layers = augmentation_layers(seed)
    generator = tf.random.Generator.from_seed(seed)
    out = []
    for start in range(0, len(images), batch_size):
        batch = tf.convert_to_tensor(images[start : start + batch_size, :, :, None] / 255.0)
        batch = augment_batch(tf.cast(batch, tf.float32), layers, generator, site=False)
        out.append(np.rint(np.clip(batch.numpy()[..., 0], 0, 1) * 255).astype(np.uint8))
    return np.concatenate(out) if out else images[:0].copy()


def barred(images: np.ndarray, seed: int) -> np.ndarray:
    """A copy of every uint8 scan with equal black bands (2-12 rows) at top and bottom."""
    rng = np.random.default_rng(seed)
    out = images.copy()
    size = images.shape[1]
    for index, rows in enumerate(rng.integers(2, MAX_BAR_ROWS + 1, len(images))):
        out[index, :rows] = 0
        out[index, size - rows :] = 0
    return out


def jittered(images: np.ndarray, seed: int) -> np.ndarray:
    """A copy of every uint8 scan, zoomed about its centre by JITTER_ZOOM and shifted by up to
    JITTER_SHIFT pixels each way (bilinear, black outside)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    out = np.empty_like(images)
    centre = (np.asarray(images.shape[1:3], dtype=float) - 1) / 2
    for index, image in enumerate(images):
        zoom = rng.uniform(*JITTER_ZOOM)
        shift = rng.uniform(-JITTER_SHIFT, JITTER_SHIFT, 2)
        matrix = np.eye(2) / zoom
        offset = centre - matrix @ (centre + shift)
        moved = ndimage.affine_transform(
            image.astype(float), matrix, offset=offset, order=1, cval=0.0
        )
        out[index] = np.clip(np.rint(moved), 0, 255).astype(np.uint8)
    return out


def site_variations(images: np.ndarray, seed: int) -> np.ndarray:
    """The same uint8 scans as another hospital might export them: another window (level and
    width), brightness and a little noise; anatomy and position unchanged."""
    rng = np.random.default_rng(seed)
    x = images.astype(np.float64) / 255.0
    count = len(images)
    scale = rng.uniform(*WINDOW_SCALE, (count, 1, 1))
    shift = rng.uniform(-WINDOW_SHIFT, WINDOW_SHIFT, (count, 1, 1))
    x = scale * (x - 0.5) + 0.5 + shift + rng.normal(0, NOISE_STD, x.shape)
    return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)
