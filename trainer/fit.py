"""Train one candidate: batches (augmented on the fly if asked), early stopping, progress bar."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from trainer.candidates import NUM_CLASSES, Candidate

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
BATCH_SIZE = 32
PREDICT_BATCH = 256


@dataclass
class FitResult:
    """A trained model (an ensemble: its members averaged) and the per-epoch histories."""

    model: object
    histories: list[dict[str, list[float]]] = field(default_factory=list)
    seconds: float = 0.0


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


def fit_candidate(
    candidate: Candidate,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None,
    epochs: int,
    seed: int,
    progress=None,  # noqa: ANN001 - rich.progress.Progress
    patience: int = 10,
    label: str | None = None,
    original: tuple[np.ndarray, np.ndarray] | None = None,
) -> FitResult:
    """Train `candidate` on float images and integer labels, with early stopping on `val`
    (best weights restored); without `val`, for exactly `epochs` epochs. `train` is the
    balanced training set; a candidate with a class-weighted loss trains on `original`, the
    training split before balancing, instead."""
    import keras

    class_weight = None
    if candidate.class_weighted_loss:
        if original is None:
            raise ValueError(f"{candidate.name} trains on the unbalanced split: pass `original`")
        train, class_weight = original, inverse_share_weights(original[1])
    started = time.perf_counter()
    keras.utils.set_random_seed(seed)
    model = candidate.build()
    model.compile(
        optimizer=keras.optimizers.Adam(candidate.learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=candidate.label_smoothing),
        metrics=["accuracy"],
    )
    callbacks = []
    if val is not None:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=patience, restore_best_weights=True
            )
        )
    if progress is not None:
        callbacks.append(_progress_callback(progress, label or candidate.name, epochs))
    history = model.fit(
        _training_batches(train, candidate.augment, seed),
        shuffle=False,
        validation_data=None
        if val is None
        else (val[0], keras.utils.to_categorical(val[1], NUM_CLASSES)),
        epochs=epochs,
        callbacks=callbacks,
        class_weight=class_weight,
        verbose=0,
    )
    histories = [{key: [float(v) for v in values] for key, values in history.history.items()}]
    return FitResult(model, histories, time.perf_counter() - started)


def inverse_share_weights(labels: np.ndarray) -> dict[int, float]:
    """Loss weight per present class, n / (classes x its count): every class weighs the same
    (scikit-learn's "balanced" class weights)."""
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(labels)
    weights = compute_class_weight("balanced", classes=present, y=labels)
    return {int(c): float(w) for c, w in zip(present, weights, strict=True)}


def _training_batches(train: tuple[np.ndarray, np.ndarray], augment: str, seed: int):  # noqa: ANN202
    import keras
    import tensorflow as tf

    from trainer.augment import add_black_bars, augment_batch, augmentation_layers

    images, labels = train
    dataset = tf.data.Dataset.from_tensor_slices(
        (images.astype(np.float32), keras.utils.to_categorical(labels, NUM_CLASSES))
    )
    dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(BATCH_SIZE)
    if augment not in ("full", "bars", ""):
        raise ValueError(f"unknown augmentation {augment!r}: use 'full', 'bars' or ''")
    if augment:
        generator = tf.random.Generator.from_seed(seed)
        if augment == "full":
            layers = augmentation_layers(seed)
            dataset = dataset.map(lambda x, y: (augment_batch(x, layers, generator), y))
        else:
            dataset = dataset.map(lambda x, y: (add_black_bars(x, generator), y))
    return dataset.prefetch(2)


def combine_results(candidate: Candidate, members: list[FitResult]) -> FitResult:
    """An ensemble of already trained candidates: mean softmax, no further training."""
    histories = [history for member in members for history in member.histories]
    return FitResult(average_models([m.model for m in members], candidate.name), histories, 0.0)


def average_models(members: list, name: str):  # noqa: ANN201
    """One Keras model whose softmax is the mean of the members' (built-in layers only)."""
    import keras

    if len(members) == 1:
        return members[0]

    inputs = keras.Input(members[0].input_shape[1:])
    outputs = keras.layers.Average()([member(inputs) for member in members])
    return keras.Model(inputs, outputs, name=name)


def _progress_callback(progress, label: str, epochs: int):  # noqa: ANN001, ANN202
    """Keras' LambdaCallback driving one rich progress task, one step per epoch."""
    import keras

    task = progress.add_task(label, total=epochs, status="")

    def on_epoch_end(epoch: int, logs: dict | None) -> None:
        logs = logs or {}
        status = (
            f"loss {logs.get('loss', float('nan')):.3f} "
            f"val_loss {logs.get('val_loss', float('nan')):.3f} "
            f"val_acc {logs.get('val_accuracy', float('nan')):.3f}"
        )
        progress.update(task, advance=1, status=status)

    def on_train_end(logs: dict | None) -> None:
        done = next(item for item in progress.tasks if item.id == task).completed
        progress.update(task, total=done)

    return keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end, on_train_end=on_train_end)
