"""Synthetic phantom lung scans for tests, the demo and the benchmarks (never real patients).

Each phantom is a 64x64 uint8 axial "slice" in a lung window, drawn like the real dev slices:
black air, a scanner table below, a body of soft tissue with a darker fat rim, ribs, spine,
heart and mediastinum, and two dark lung fields with branching vessels (lines from the hilum
that taper and fork) and vessel cross-sections (dots). Every phantom gets its own field of
view (scale and position), sometimes black padding bars (a wider crop squared), window
(gain and gamma), a slight blur and noise. Class-dependent findings:

- 0 healthy: nothing but anatomy, vessels and noise;
- 1 non-urgent: one to three small calcified nodules (bone-bright) or a thin scar band;
- 2 urgent: a larger irregular soft-tissue mass or a patch of consolidation (with air
  bronchograms), at least MIN_URGENT_PIXELS inside the lungs.

Deterministic by seed. The default recipe (`triage train`) learns them clearly (TRAINING.md,
"Phantoms"); they say nothing about how a model does on patients.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SIZE = 64
DEFAULT_MIX = (0.79, 0.18, 0.03)
MIN_URGENT_PIXELS = 40
MIN_INSIDE_SHARE = 0.8  # of an urgent finding's area, inside the lung fields
URGENT_ATTEMPTS = 20  # placements tried before the last one is kept
BAR_SHARE = 0.2  # phantoms padded to square from a wider crop (black bars top and bottom)
VESSEL_DEPTH = 3  # forks of each vessel tree
NODULE_MARGIN = 3  # pixels between a calcified nodule's centre and the lung's edge
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
    images = np.stack([draw_phantom(int(label), rng) for label in labels])
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


class _View:
    """Pixel coordinates of one phantom's field of view: anatomy is drawn in body units
    (the body about 56 x 40 at scale 1, centred on 0), mapped to pixels by scale and shift."""

    def __init__(self, scale: float, cy: float, cx: float) -> None:
        self.scale, self.cy, self.cx = scale, cy, cx
        self.y, self.x = (_ROWS - cy) / scale, (_COLS - cx) / scale

    def ellipse(self, y: float, x: float, ry: float, rx: float, angle: float = 0.0) -> np.ndarray:
        cos, sin = np.cos(angle), np.sin(angle)
        dy, dx = self.y - y, self.x - x
        u, v = (dx * cos + dy * sin) / rx, (-dx * sin + dy * cos) / ry
        return u * u + v * v <= 1.0

    def segment(self, start: np.ndarray, end: np.ndarray, width: float) -> np.ndarray:
        """Pixels within width/2 (body units) of the segment start-end."""
        direction = end - start
        length2 = float(direction @ direction) or 1e-6
        t = np.clip(((self.y - start[0]) * direction[0] + (self.x - start[1]) * direction[1]) / length2, 0, 1)  # fmt: skip
        dy, dx = self.y - (start[0] + t * direction[0]), self.x - (start[1] + t * direction[1])
        return dy * dy + dx * dx <= (width / 2) ** 2

    def to_pixel(self, point: np.ndarray) -> tuple[float, float]:
        return point[0] * self.scale + self.cy, point[1] * self.scale + self.cx

    def to_body(self, row: float, col: float) -> np.ndarray:
        return np.array([(row - self.cy) / self.scale, (col - self.cx) / self.scale])


def _blob(view: _View, y: float, x: float, radius: float, rng: np.random.Generator) -> np.ndarray:
    """An irregular blob (body units): a circle whose radius wobbles with the angle."""
    angle = np.arctan2(view.y - y, view.x - x)
    wobble = sum(
        rng.uniform(0.1, 0.3) * np.cos(k * angle + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5)
    )
    return np.hypot(view.y - y, view.x - x) <= radius * (1.0 + wobble)


def draw_phantom(label: int, rng: np.random.Generator) -> np.ndarray:
    """One phantom of class `label`. The anatomy and the acquisition come from one child of
    `rng`, the finding from another: the same `rng` state gives the same slice in every class,
    differing only by its finding."""
    body_rng, finding_rng = rng.spawn(2)
    bars = int(body_rng.integers(4, 11)) if body_rng.random() < BAR_SHARE else 0
    scale = body_rng.uniform(0.82, 1.06) * (SIZE - 2 * bars) / SIZE
    view = _View(scale, 31.5 + body_rng.normal(0, 1.5), 31.5 + body_rng.normal(0, 1.5))
    image = np.zeros((SIZE, SIZE), dtype=np.float32)
    lungs = _anatomy(image, view, body_rng)
    _add_vessels(image, view, lungs, body_rng)
    if label == 1:
        _add_benign(image, view, lungs, finding_rng)
    elif label == 2:
        _add_urgent(image, view, lungs, finding_rng)
    return _acquire(image, bars, body_rng)


def _anatomy(image: np.ndarray, view: _View, rng: np.random.Generator) -> np.ndarray:
    """Table, body, fat rim, ribs, spine, heart and mediastinum, lungs; returns the lung mask."""
    ry, rx = rng.uniform(18, 21), rng.uniform(26, 29)
    table = view.ellipse(0, 0, ry + 5, rx + 3) & ~view.ellipse(0, 0, ry + 3.8, rx + 1.8)
    image[table & (view.y > ry * 0.55)] = rng.uniform(90, 140)  # the table's curved top
    image[view.ellipse(0, 0, ry, rx)] = rng.uniform(25, 45)  # subcutaneous fat
    image[view.ellipse(0, 0, ry - 2.5, rx - 2.5)] = rng.uniform(55, 85)  # muscle, soft tissue
    for angle in np.linspace(0.35, np.pi - 0.35, int(rng.integers(5, 8))):  # ribs, both sides
        for side in (-1, 1):
            y, x = -np.cos(angle) * (ry - 3.6), side * np.sin(angle) * (rx - 3.6)
            image[view.ellipse(y, x, 1.1, 1.6, side * angle)] = rng.uniform(190, 240)
    image[view.ellipse(ry - 6, 0, 3.6, 4.0)] = rng.uniform(200, 245)  # vertebral body
    image[view.ellipse(ry - 2.5, 0, 2.2, 1.3)] = rng.uniform(200, 245)  # spinous process
    lung_ry, lung_rx, offset = ry * rng.uniform(0.7, 0.78), rx * rng.uniform(0.32, 0.37), rx * 0.47
    lungs = np.zeros_like(image, dtype=bool)
    for side in (-1, 1):
        lung = view.ellipse(-1.5, side * offset, lung_ry, lung_rx, side * rng.normal(0.1, 0.05))
        lungs |= lung & ~view.ellipse(ry - 6, 0, 5.5, 6.0)
    heart = view.ellipse(
        rng.uniform(-1, 2), rng.uniform(-3, 0), rng.uniform(7, 9.5), rng.uniform(7, 9)
    )
    lungs &= ~heart & ~view.ellipse(-ry * 0.55, 0, 5, 3.5)  # mediastinum above the heart
    image[lungs] = rng.uniform(3, 16)
    image[heart] = rng.uniform(85, 120)
    return lungs


def _add_vessels(
    image: np.ndarray, view: _View, lungs: np.ndarray, rng: np.random.Generator
) -> None:
    """A vessel tree per lung from its hilum (forking, tapering, dimming) and cross-sections."""
    brightness = rng.uniform(80, 125)
    for side in (-1, 1):
        hilum = np.array([rng.uniform(-4, 0), side * rng.uniform(8, 10)])
        stack = [(hilum, rng.uniform(-0.5, 0.5) + (0 if side > 0 else np.pi), 6.5, 1.5, 0)]
        while stack:
            start, heading, length, width, depth = stack.pop()
            end = start + length * np.array([np.sin(heading), np.cos(heading)])
            image[view.segment(start, end, width) & lungs] = brightness * (1 - 0.12 * depth)
            if depth < VESSEL_DEPTH:
                for turn in (-1, 1):
                    new_heading = heading + turn * rng.uniform(0.3, 0.7)
                    stack.append((end, new_heading, length * rng.uniform(0.6, 0.8), width * 0.7, depth + 1))  # fmt: skip
    points = np.argwhere(lungs)
    for _ in range(rng.integers(4, 10)):
        row, col = points[rng.integers(len(points))]
        dot = view.ellipse(*view.to_body(row, col), 0.9, 0.9) & lungs
        image[dot] = np.maximum(image[dot], rng.uniform(70, 120))


def _add_benign(
    image: np.ndarray, view: _View, lungs: np.ndarray, rng: np.random.Generator
) -> None:
    """Calcified nodules inside the lung fields (NODULE_MARGIN pixels from their edge: a
    nodule against a rib would be a rib), or a scar band."""
    from scipy.ndimage import binary_erosion

    interior = binary_erosion(lungs, iterations=NODULE_MARGIN)
    points = np.argwhere(interior if interior.any() else lungs)
    if rng.random() < 0.7:
        for _ in range(rng.integers(1, 4)):
            y, x = view.to_body(*points[rng.integers(len(points))])
            radius = rng.uniform(1.6, 2.5)
            image[view.ellipse(y, x, radius, radius) & lungs] = rng.uniform(190, 250)
        return
    y, x = view.to_body(*points[rng.integers(len(points))])
    scar = view.ellipse(y, x, rng.uniform(1.0, 1.4), rng.uniform(4, 7), rng.uniform(0, np.pi))
    image[scar & lungs] = rng.uniform(170, 220)


def _add_urgent(
    image: np.ndarray, view: _View, lungs: np.ndarray, rng: np.random.Generator
) -> None:
    """A mass or consolidation of at least MIN_URGENT_PIXELS, mostly inside the lungs: urgent
    findings are never hidden against the heart or the chest wall (a hidden urgent phantom
    teaches a low urgent threshold)."""
    points = np.argwhere(lungs)
    for attempt in range(URGENT_ATTEMPTS):
        y, x = view.to_body(*points[rng.integers(len(points))])
        mass = rng.random() < 0.65
        if mass:
            shape = _blob(view, y, x, rng.uniform(5.0, 8.5), rng)
        else:
            shape = view.ellipse(
                y, x, rng.uniform(6.5, 9), rng.uniform(5.5, 7), rng.uniform(0, np.pi)
            )
        region = shape & lungs
        inside = region.sum() >= max(MIN_URGENT_PIXELS, MIN_INSIDE_SHARE * shape.sum())
        if inside or attempt == URGENT_ATTEMPTS - 1:
            break
    if mass:
        image[region] = rng.uniform(125, 165) + rng.normal(0, 6, int(region.sum()))
        return
    image[region] = rng.uniform(95, 130) + rng.normal(0, 10, int(region.sum()))
    start = np.array([y, x])
    for _ in range(2):  # air bronchograms: dark branches through the consolidation
        heading = rng.uniform(0, 2 * np.pi)
        end = start + rng.uniform(4, 7) * np.array([np.sin(heading), np.cos(heading)])
        image[view.segment(start, end, 0.9) & region] = rng.uniform(5, 25)


def _acquire(image: np.ndarray, bars: int, rng: np.random.Generator) -> np.ndarray:
    """The scanner and export: slight blur, window (gain, gamma), noise, padding bars."""
    from scipy.ndimage import gaussian_filter

    image = gaussian_filter(image, rng.uniform(0.4, 0.8))
    image = 255.0 * (image / 255.0) ** rng.uniform(0.85, 1.2) * rng.uniform(0.85, 1.15)
    image += rng.normal(0, rng.uniform(3, 8), image.shape)
    if bars:
        image[:bars], image[SIZE - bars :] = 0, 0
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)
