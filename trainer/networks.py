"""The Keras networks the candidates train: float (N, 64, 64, 1) in [0, 1] -> 3-way softmax.

Built-in layers only, so the worker loads a published model without trainer code, and no
pretrained weights (nothing can be downloaded; filters that start from a known shape are
set here). BatchNorm + global pooling collapsed to one class on the 719 real slices
(PITFALLS), so the learned nets end in a small flattened head.

- `baseline(n)`: the seed's recipe, n conv blocks (32, 64) + dense 128.
- `residual_net`: a small residual net (16-32-64 channels), for weight decay and mixup.
- `gabor_net`: a CNN whose first 5x5 layer starts as a Gabor filter bank (4 orientations, 2
  wavelengths, 2 phases) and is fine-tuned: edges and texture from the first step.
- `hog_conv_net`: learned convolutions over the cells of the fixed gradient histograms below.
- `hog_trunk_layers`: histograms of oriented gradients (8x8 cells, 9 directions) and a 32-bin
  intensity histogram as fixed conv layers (Dalal & Triggs), shared by the last candidate and
  by the fixed-feature heads (trainer.hog_heads).
"""

from __future__ import annotations

import numpy as np

INPUT_SHAPE = (64, 64, 1)
NUM_CLASSES = 3
HOG_ORIENTATIONS = 9  # unsigned gradient directions, 20 degrees apart
HOG_CELL = 8  # pixels per cell side: an 8x8 grid of cells over the 64x64 scan
INTENSITY_BINS = 32
BLANK_CELL_ENERGY = 1e-4  # about one grey level of edge in a cell: less reads as blank
WEIGHT_DECAY_L2 = 1e-4


def baseline(conv_blocks: int):  # noqa: ANN201 - keras.Model
    """The seed's CNN: conv32 (+ conv64) blocks, dropout, dense 128, softmax."""
    import keras
    from keras import layers

    model = [keras.Input(INPUT_SHAPE)]
    for block in range(conv_blocks):
        model += [layers.Conv2D(32 * 2**block, 3, activation="relu"), layers.MaxPooling2D()]
    model += [
        layers.Dropout(0.25),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.5),
        layers.Dense(NUM_CLASSES, activation="softmax"),
    ]
    return keras.Sequential(model, name=f"baseline_{conv_blocks}conv")


def _head(features):  # noqa: ANN001, ANN202 - keras tensors
    from keras import layers, regularizers

    features = layers.Dropout(0.5)(layers.Flatten()(features))
    return layers.Dense(
        NUM_CLASSES, activation="softmax", kernel_regularizer=regularizers.L2(1e-3)
    )(features)


def residual_net():  # noqa: ANN201 - keras.Model
    """Stem conv16 + max-pool, then three residual stages (16, 32, 64; stride 2 between),
    average-pooled to 4x4 and a flattened softmax head."""
    import keras
    from keras import layers, regularizers

    l2 = regularizers.L2(WEIGHT_DECAY_L2)
    scan = keras.Input(INPUT_SHAPE)
    x = layers.Conv2D(16, 3, padding="same", activation="relu", kernel_regularizer=l2)(scan)
    x = layers.MaxPooling2D()(x)  # 32x32
    for width, stride in ((16, 1), (32, 2), (64, 2)):
        shortcut = x
        if stride > 1 or shortcut.shape[-1] != width:
            shortcut = layers.Conv2D(width, 1, strides=stride, kernel_regularizer=l2)(x)
        y = layers.Conv2D(
            width, 3, strides=stride, padding="same", activation="relu", kernel_regularizer=l2
        )(x)
        y = layers.Conv2D(width, 3, padding="same", kernel_regularizer=l2)(y)
        x = layers.ReLU()(layers.Add()([shortcut, y]))
    x = layers.AveragePooling2D(2)(x)  # 4x4x64
    return keras.Model(scan, _head(x), name="residual_net")


def gabor_bank(size: int = 5) -> np.ndarray:
    """(size, size, 1, 16) Gabor kernels: 4 orientations x 2 wavelengths x cos/sin phase,
    zero mean (the cos ones), unit L2 norm."""
    half = size // 2
    rows, cols = np.mgrid[-half : half + 1, -half : half + 1].astype(float)
    kernels = []
    for angle in np.arange(4) * np.pi / 4:
        along = cols * np.cos(angle) + rows * np.sin(angle)
        for wavelength in (3.0, 5.0):
            envelope = np.exp(-(rows**2 + cols**2) / (2 * (0.5 * wavelength) ** 2))
            for phase in (np.cos, np.sin):
                kernel = envelope * phase(2 * np.pi * along / wavelength)
                kernel -= kernel.mean()
                kernels.append(kernel / max(np.linalg.norm(kernel), 1e-9))
    return np.stack(kernels, axis=-1)[:, :, None, :].astype(np.float32)


def gabor_net():  # noqa: ANN201 - keras.Model
    """A 5x5 Gabor-initialised conv16 (fine-tuned), then conv32 and conv64 blocks, L2."""
    import keras
    from keras import layers, regularizers

    l2 = regularizers.L2(WEIGHT_DECAY_L2)
    scan = keras.Input(INPUT_SHAPE)
    gabor = layers.Conv2D(16, 5, padding="same", name="gabor")
    x = layers.MaxPooling2D()(layers.ReLU()(gabor(scan)))
    for width in (32, 64):
        x = layers.Conv2D(width, 3, padding="same", activation="relu", kernel_regularizer=l2)(x)
        x = layers.MaxPooling2D()(x)
    x = layers.AveragePooling2D(2)(x)  # 4x4x64
    model = keras.Model(scan, _head(x), name="gabor_net")
    gabor.set_weights([gabor_bank(5), np.zeros(16, np.float32)])
    return model


def hog_conv_net():  # noqa: ANN201 - keras.Model
    """Learned 3x3 convolutions (32, then 32) over the 8x8 grid of HOG cells, flattened with
    the intensity histogram into a softmax head."""
    import keras
    from keras import layers, regularizers

    l2 = regularizers.L2(WEIGHT_DECAY_L2)
    scan = keras.Input(INPUT_SHAPE)
    cells, histogram, set_fixed_weights = hog_trunk_layers(scan)
    x = layers.Conv2D(32, 3, padding="same", activation="relu", kernel_regularizer=l2)(cells)
    x = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", kernel_regularizer=l2)(x)
    features = layers.Concatenate()([layers.Flatten()(x), histogram])
    model = keras.Model(scan, _head(features), name="hog_conv_net")
    set_fixed_weights()
    return model


def hog_features(scan):  # noqa: ANN001, ANN201 - keras tensors
    """The fixed trunk flattened into one `features` tensor (N, 672), and its weight setter."""
    from keras import layers

    cells, histogram, set_fixed_weights = hog_trunk_layers(scan)
    features = layers.Concatenate(name="features")([layers.Flatten()(cells), histogram])
    return features, set_fixed_weights


def hog_trunk_layers(scan):  # noqa: ANN001, ANN201 - keras tensors
    """Fixed layers on a (N, 64, 64, 1) input: the HOG cells (N, 8, 8, 9 directions + a blank
    channel, unit length per cell) and the soft intensity histogram (N, 32). Returns both and
    a function that sets the fixed filters (call it after keras.Model())."""
    from keras import layers

    # |directional derivative| in each orientation = relu(+d) + relu(-d), central differences;
    # the pairs are summed after the (linear) cell average, on 8x8 cells instead of 64x64 pixels
    gradients = layers.Conv2D(
        2 * HOG_ORIENTATIONS, 3, padding="same", use_bias=False, trainable=False,
        name="oriented_derivatives",
    )  # fmt: skip
    magnitudes = layers.Conv2D(
        HOG_ORIENTATIONS, 1, use_bias=False, trainable=False, name="unsigned_magnitudes"
    )
    cells = magnitudes(layers.AveragePooling2D(HOG_CELL)(layers.ReLU()(gradients(scan))))
    # v / sqrt(|v|^2 + eps^2): a constant eps channel joins each cell before unit length, so a
    # blank cell reads (0, ..., 0, 1) instead of amplified rounding noise
    floor = layers.Conv2D(1, 1, trainable=False, name="blank_floor")
    cells = layers.UnitNormalization(axis=-1)(layers.Concatenate()([cells, floor(cells)]))
    # soft intensity histogram: a triangle is the second difference of three ramps
    # relu((x - knot) / width), so the per-pixel work is one ramp per knot
    ramps = layers.Conv2D(INTENSITY_BINS + 2, 1, trainable=False, name="bin_ramps")
    ramp_means = layers.GlobalAveragePooling2D()(layers.ReLU()(ramps(scan)))
    triangles = layers.Dense(INTENSITY_BINS, trainable=False, name="bin_triangles")
    histogram = triangles(ramp_means)

    def set_fixed_weights() -> None:
        angles = np.arange(HOG_ORIENTATIONS) * np.pi / HOG_ORIENTATIONS
        dx = np.array([[0, 0, 0], [-0.5, 0, 0.5], [0, 0, 0]])  # d/dx by central difference
        kernels = np.cos(angles) * dx[..., None] + np.sin(angles) * dx.T[..., None]
        gradients.set_weights([np.concatenate([kernels, -kernels], -1)[:, :, None, :]])
        pairs = np.concatenate([np.eye(HOG_ORIENTATIONS)] * 2)
        magnitudes.set_weights([pairs[None, None]])
        floor.set_weights([np.zeros((1, 1, HOG_ORIENTATIONS, 1)), np.array([BLANK_CELL_ENERGY])])
        width = 1.0 / INTENSITY_BINS
        knots = (np.arange(-1, INTENSITY_BINS + 1) + 0.5) * width  # centres and one beyond
        ramps.set_weights([np.full((1, 1, 1, len(knots)), 1 / width), -knots / width])
        second_difference = np.zeros((len(knots), INTENSITY_BINS))
        for bin_ in range(INTENSITY_BINS):  # triangle = ramp(k - 1) - 2 ramp(k) + ramp(k + 1)
            second_difference[bin_ : bin_ + 3, bin_] = (1, -2, 1)
        triangles.set_weights([second_difference, np.zeros(INTENSITY_BINS)])

    return cells, histogram, set_fixed_weights
