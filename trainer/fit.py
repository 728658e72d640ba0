"""Train one Keras network for a fixed number of epochs, and the helpers every model needs.

No early stopping: stopping on held-out scans would make a choice on the scans that score
the model. The number of epochs is part of the candidate's recipe.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from trainer.networks import NUM_CLASSES

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
BATCH_SIZE = 64
PREDICT_BATCH = 256


@dataclass(frozen=True)
class Schedule:
    """How a network is trained: epochs, optimiser, on-the-fly augmentation and mixup."""

    epochs: int = 8
    learning_rate: float = 1e-3
    weight_decay: float = 0.0  # AdamW's decoupled weight decay; 0: plain Adam
    augment: bool = False  # trainer.augment.augment_batch on every training batch
    mixup: float = 0.0  # Beta(a, a) mixing of pairs of training scans; 0: none
    label_smoothing: float = 0.0


def configure_tensorflow(threads: int | None = None) -> None:
    """Quiet logs, and at most `threads` (default: all CPUs, max 4) TF threads."""
    import tensorflow as tf

    threads = threads or min(4, os.cpu_count() or 1)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
    except RuntimeError:  # already initialised in this process: keep the existing pools
        pass
    tf.get_logger().setLevel("ERROR")


def predict_proba(model, images: np.ndarray, batch_size: int = PREDICT_BATCH) -> np.ndarray:  # noqa: ANN001
    """Softmax for float (N, 64, 64, 1) images, by direct batched calls (not model.predict)."""
    outputs = [
        np.asarray(model(images[start : start + batch_size], training=False))
        for start in range(0, len(images), batch_size)
    ]
    return np.concatenate(outputs) if outputs else np.zeros((0, NUM_CLASSES), np.float32)


def train_network(build, images: np.ndarray, labels: np.ndarray, schedule: Schedule, seed: int):  # noqa: ANN001, ANN201
    """A network from `build()` trained on float images and integer labels (balanced set)."""
    import keras

    keras.utils.set_random_seed(seed)
    model = build()
    if schedule.weight_decay:
        optimizer = keras.optimizers.AdamW(schedule.learning_rate, schedule.weight_decay)
    else:
        optimizer = keras.optimizers.Adam(schedule.learning_rate)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=schedule.label_smoothing),
    )
    model.fit(
        _training_batches(images, labels, schedule, seed),
        epochs=schedule.epochs,
        shuffle=False,
        verbose=0,
    )
    return model


def _training_batches(images: np.ndarray, labels: np.ndarray, schedule: Schedule, seed: int):  # noqa: ANN202
    import keras
    import tensorflow as tf

    from trainer.augment import augment_batch, augmentation_layers

    dataset = tf.data.Dataset.from_tensor_slices(
        (
            images.astype(np.float32),
            keras.utils.to_categorical(labels, NUM_CLASSES).astype(np.float32),
        )
    )
    dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(BATCH_SIZE)
    generator = tf.random.Generator.from_seed(seed)
    if schedule.augment:
        layers = augmentation_layers(seed)
        dataset = dataset.map(lambda x, y: (augment_batch(x, layers, generator), y))
    if schedule.mixup:
        dataset = dataset.map(lambda x, y: _mixup(x, y, schedule.mixup, generator))
    return dataset.prefetch(2)


def _mixup(images, targets, alpha: float, generator):  # noqa: ANN001, ANN202 - TF tensors
    """Each scan mixed with another of the batch, weight ~ Beta(alpha, alpha) (Zhang 2018)."""
    import tensorflow as tf

    count = tf.shape(images)[0]
    seeds = generator.make_seeds(2)
    first = tf.random.stateless_gamma([count], seeds[:, 0], alpha)
    second = tf.random.stateless_gamma([count], seeds[:, 1], alpha)
    weight = first / (first + second + 1e-9)
    order = tf.argsort(generator.uniform([count]))
    mixed = weight[:, None, None, None] * images + (1 - weight[:, None, None, None]) * tf.gather(
        images, order
    )
    mixed_targets = weight[:, None] * targets + (1 - weight[:, None]) * tf.gather(targets, order)
    return mixed, mixed_targets


def average_models(members: list, name: str):  # noqa: ANN201
    """One Keras model whose softmax is the mean of the members' (built-in layers only)."""
    import keras

    if len(members) == 1:
        return members[0]
    inputs = keras.Input(members[0].input_shape[1:])
    for index, member in enumerate(members):
        member.name = f"{name}_member{index}"  # unique names inside the average
    outputs = keras.layers.Average()([member(inputs) for member in members])
    return keras.Model(inputs, outputs, name=name)
