"""What serving merged fold models costs: the forward rate of the seed's 2-conv alone, of k
copies averaged (how `trainer.fit.average_models` merges fold models), of the same k copies
fused into one graph (grouped convolution, per-copy dense layers as one einsum: the same
outputs, fewer ops), of `hog_heads` (k heads) and of `ensemble_best` as published on the dev
scans (hog_heads + k copies). Random weights: speed does not depend on them.

python -m bench.fold_copies [--copies 3] [--scans 2048]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

BATCH = 256
REPEATS = 3


def rate(model, scans: np.ndarray) -> float:  # noqa: ANN001 - keras.Model
    """Best of REPEATS passes in batches of BATCH through one traced forward, scans/s."""
    import tensorflow as tf

    forward = tf.function(lambda batch: model(batch, training=False))
    forward(scans[:BATCH])
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        for start in range(0, len(scans), BATCH):
            forward(scans[start : start + BATCH]).numpy()
        best = min(best, time.perf_counter() - started)
    return len(scans) / best


def fused_copies(copies: int):  # noqa: ANN201 - keras.Model
    """`copies` seed 2-conv nets as one graph: conv32 x k, grouped conv64 x k, einsum heads."""
    import keras
    from keras import layers

    scan = keras.Input((64, 64, 1))
    x = layers.MaxPooling2D()(layers.Conv2D(32 * copies, 3, activation="relu")(scan))
    x = layers.MaxPooling2D()(layers.Conv2D(64 * copies, 3, groups=copies, activation="relu")(x))
    x = layers.Permute((2, 1, 3))(layers.Reshape((14 * 14, copies, 64))(x))
    x = layers.Reshape((copies, 14 * 14 * 64))(x)
    x = layers.EinsumDense("bkf,kfo->bko", (copies, 128), activation="relu")(x)
    x = layers.Softmax()(layers.EinsumDense("bko,koc->bkc", (copies, 3))(x))
    return keras.Model(scan, layers.GlobalAveragePooling1D()(x))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fold_copies")
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--scans", type=int, default=2048)
    args = parser.parse_args()

    from trainer import networks
    from trainer.fit import average_models, configure_tensorflow
    from trainer.hog_heads import heads_model

    configure_tensorflow()
    k = args.copies
    scans = np.random.default_rng(0).random((args.scans, 64, 64, 1)).astype(np.float32)
    heads = [(np.zeros((672, 3), np.float32), np.zeros(3, np.float32))] * k
    copies = [networks.baseline(2) for _ in range(k)]
    models = {
        "baseline_2conv x1": networks.baseline(2),
        f"baseline_2conv x{k} averaged": average_models(copies, "averaged"),
        f"baseline_2conv x{k} fused": fused_copies(k),
        f"hog_heads ({k} heads)": heads_model(heads),
        f"ensemble_best (hog_heads + 2conv x{k})": average_models(
            [heads_model(heads), average_models([networks.baseline(2) for _ in range(k)], "m")],
            "ensemble",
        ),
    }
    rates = {name: round(rate(model, scans)) for name, model in models.items()}
    first = rates["baseline_2conv x1"]
    table = {name: {"scans_per_s": r, "vs_2conv": round(r / first, 2)} for name, r in rates.items()}
    print(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
