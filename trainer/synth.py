"""Synthetic phantom lung scans for tests and the demo (never real patients).

Each phantom is a 64x64 uint8 axial "slice": a body outline, two dark lung fields with
vessel-like dots, a mediastinum and spine, and class-dependent findings:

- 0 healthy: nothing but anatomy, vessels and noise;
- 1 non-urgent: one to three small, very bright calcified nodules or a thin scar line;
- 2 urgent: a larger irregular soft-tissue mass or a patch of consolidation.

Vessels, noise, size jitter and occasional faint findings keep the classes learnable by a
small CNN in a few epochs without making them trivially separable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SIZE = 64
DEFAULT_MIX = (0.79, 0.18, 0.03)
MIN_URGENT_PIXELS = 30
URGENT_ATTEMPTS = 20  # placements tried before the last one is kept
_ROWS, _COLS = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)


def parse_mix(text: str) -> tuple[float, float, float]:
    """'0.79,0.18,0.03' -> a class mix of three non-negative shares summing to 1."""
    try:
        shares = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--mix {text!r}: expected three numbers like 0.79,0.18,0.03") from None
    return _check_mix(shares)


def make_phantoms(
    n: int, mix: tuple[float, float, float] = DEFAULT_MIX, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """`n` phantoms and their labels: images uint8 (n, 64, 64), labels uint8 (n,)."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    shares = np.asarray(_check_mix(tuple(mix)))
    rng = np.random.default_rng(seed)
    counts = np.floor(shares * n).astype(int)
    for index in np.argsort(-(shares * n - counts))[: n - counts.sum()]:
        counts[index] += 1
    labels = np.repeat(np.arange(3, dtype=np.uint8), counts)
    rng.shuffle(labels)
    images = np.stack([_phantom(int(label), rng) for label in labels])
    return images, labels


def write_phantoms(
    path: str | Path, n: int, mix: tuple[float, float, float] = DEFAULT_MIX, seed: int = 0
) -> Path:
    """Write phantoms as a plain .npz (`images`, `labels`, `synthetic=True`)."""
    images, labels = make_phantoms(n, mix, seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        np.savez_compressed(handle, images=images, labels=labels, synthetic=np.array(True))
    return path


def _check_mix(shares: tuple[float, ...]) -> tuple[float, float, float]:
    if len(shares) != 3 or any(share < 0 for share in shares) or not sum(shares) > 0:
        raise ValueError(f"mix must be three non-negative shares, got {shares}")
    total = sum(shares)
    return tuple(share / total for share in shares)  # type: ignore[return-value]


def _ellipse(cy: float, cx: float, ry: float, rx: float, angle: float = 0.0) -> np.ndarray:
    cos, sin = np.cos(angle), np.sin(angle)
    dy, dx = _ROWS - cy, _COLS - cx
    u = (dx * cos + dy * sin) / rx
    v = (-dx * sin + dy * cos) / ry
    return u * u + v * v <= 1.0


def _blob(cy: float, cx: float, radius: float, rng: np.random.Generator) -> np.ndarray:
    """An irregular blob: a circle whose radius wobbles with the angle."""
    angle = np.arctan2(_ROWS - cy, _COLS - cx)
    wobble = sum(
        rng.uniform(0.1, 0.3) * np.cos(k * angle + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5)
    )
    distance = np.hypot(_ROWS - cy, _COLS - cx)
    return distance <= radius * (1.0 + wobble)


def _phantom(label: int, rng: np.random.Generator) -> np.ndarray:
    image = np.zeros((SIZE, SIZE), dtype=np.float32)
    cy, cx = 32 + rng.normal(0, 1.5), 32 + rng.normal(0, 1.5)
    body_ry, body_rx = rng.uniform(20, 25), rng.uniform(27, 31)
    image[_ellipse(cy, cx, body_ry, body_rx)] = rng.uniform(95, 130)
    lung_ry, lung_rx = body_ry * rng.uniform(0.68, 0.8), body_rx * rng.uniform(0.3, 0.36)
    offset = body_rx * rng.uniform(0.42, 0.5)
    lungs = []
    for side in (-1, 1):
        lung = _ellipse(cy - 1, cx + side * offset, lung_ry, lung_rx, rng.normal(0, 0.08))
        image[lung] = rng.uniform(15, 40)
        lungs.append(lung)
    image[_ellipse(cy + body_ry * 0.72, cx, 3.5, 4.0)] = rng.uniform(180, 220)  # spine
    image[_ellipse(cy - 2, cx, 6, 4.5)] = rng.uniform(110, 140)  # mediastinum
    lung_mask = lungs[0] | lungs[1]
    points = np.argwhere(lung_mask)
    for _ in range(rng.integers(4, 10)):  # vessels: small, moderately bright dots everywhere
        y, x = points[rng.integers(len(points))]
        image[_ellipse(y, x, 0.9, 0.9) & lung_mask] = rng.uniform(60, 110)
    if label == 1:
        _add_benign(image, lung_mask, points, rng)
    elif label == 2:
        _add_urgent(image, lung_mask, points, rng)
    image += rng.normal(0, rng.uniform(4, 9), image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _add_benign(
    image: np.ndarray, lung_mask: np.ndarray, points: np.ndarray, rng: np.random.Generator
) -> None:
    if rng.random() < 0.7:
        for _ in range(rng.integers(1, 4)):
            y, x = points[rng.integers(len(points))]
            radius = rng.uniform(1.2, 2.2)
            image[_ellipse(y, x, radius, radius) & lung_mask] = rng.uniform(170, 240)
        return
    y, x = points[rng.integers(len(points))]
    scar = _ellipse(y, x, rng.uniform(0.7, 1.1), rng.uniform(4, 7), rng.uniform(0, np.pi))
    image[scar & lung_mask] = rng.uniform(110, 170)


def _add_urgent(
    image: np.ndarray, lung_mask: np.ndarray, points: np.ndarray, rng: np.random.Generator
) -> None:
    """A mass or consolidation of at least MIN_URGENT_PIXELS inside the lungs: urgent findings
    are never hidden at a lung's edge (a faint urgent phantom teaches a low urgent threshold)."""
    for attempt in range(URGENT_ATTEMPTS):
        y, x = points[rng.integers(len(points))]
        mass = rng.random() < 0.65
        if mass:
            region = _blob(y, x, rng.uniform(4.5, 8.0), rng) & lung_mask
        else:
            axes_and_angle = (rng.uniform(6, 9), rng.uniform(5, 7), rng.uniform(0, np.pi))
            region = _ellipse(y, x, *axes_and_angle) & lung_mask
        if region.sum() >= MIN_URGENT_PIXELS or attempt == URGENT_ATTEMPTS - 1:
            break
    if mass:
        image[region] = rng.uniform(110, 160)
    else:
        image[region] = image[region] * 0.3 + rng.uniform(85, 120)
